//! The audit slot of one request: a task-local that the gate
//! ([`crate::gate`]) opens around each HTTP request and gRPC call, that
//! [`crate::audit::AuditLog::record`] marks, and that tells the gate whether
//! the services wrote the request's one record.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::auth::Access;

/// The audit slot of one request.
#[derive(Default)]
pub struct Slot {
    records: AtomicUsize,
    access: Mutex<Option<Access>>,
}

impl Slot {
    /// How many records the request has written.
    pub fn records(&self) -> usize {
        self.records.load(Ordering::SeqCst)
    }

    pub fn access(&self) -> Access {
        self.access
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(Access::open)
    }
}

tokio::task_local! {
    static SLOT: Arc<Slot>;
}

/// Runs `f` as one request with `slot` as its audit slot.
pub async fn scoped<F: Future>(slot: Arc<Slot>, f: F) -> F::Output {
    SLOT.scope(slot, f).await
}

/// Called for every record written: marks the current request's slot. A
/// second record for one request is a bug, logged as one.
pub fn note_recorded(surface: &str) {
    let _ = SLOT.try_with(|slot| {
        if slot.records.fetch_add(1, Ordering::SeqCst) > 0 {
            tracing::error!(surface, "a second audit record for one request");
        }
    });
}

/// Called once authentication succeeded: later fallback records name the principal.
pub fn note_access(access: &Access) {
    let _ = SLOT.try_with(|slot| {
        *slot.access.lock().unwrap_or_else(|p| p.into_inner()) = Some(access.clone());
    });
}
