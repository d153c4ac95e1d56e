//! `[audit]`: the hash-chained audit log's settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[audit]` settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Write the audit log at all.
    pub enabled: bool,
    /// The live log file; rotated files sit next to it as `FILE.000001`, ….
    /// Empty: `audit/audit.jsonl` in the data dir.
    pub path: PathBuf,
    /// Store each query's text; when false only its SHA-256 is kept.
    pub store_queries: bool,
    /// Records between two signed checkpoints.
    pub checkpoint_every: u64,
    /// PKCS#8 ed25519 signing key. Empty: `audit/signing-key.pk8` in the data
    /// dir, generated on first use (public key next to it, `.pub`, hex).
    pub signing_key: PathBuf,
    /// Rotate the live file when it grows past this many bytes.
    pub rotate_bytes: u64,
    /// Rotated files to keep (oldest removed first); 0 keeps all.
    pub retain_files: usize,
    /// A file outside the data dir (another volume, a WORM mount) that every
    /// checkpoint (seq, line hash, time) is also appended and synced to, and
    /// every rotated file's removal noted in. With it, `cairn audit verify
    /// --anchor` detects a log cut back at any point and missing rotated
    /// files, and a writer refuses to continue a log cut behind its anchor.
    /// Empty: no anchor.
    pub anchor_path: PathBuf,
    /// When records reach the disk: `checkpoint` (written at once, synced at
    /// each checkpoint) or `every_record` (synced before a response that
    /// returns code is sent).
    pub fsync: FsyncMode,
    /// Records waiting for the writer at most; past it, requests answer 503
    /// rather than go unrecorded.
    pub queue_capacity: usize,
    /// This replica's name, carried by every line of its log and every
    /// anchor entry, so replicas can share one anchor and `cairn audit
    /// verify` can check their logs together. Empty: a single instance.
    pub instance_id: String,
}

/// `[audit] fsync`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FsyncMode {
    /// Records are written as they come and synced at each checkpoint.
    #[default]
    Checkpoint,
    /// Every batch of records is synced, and a request that returns code
    /// waits for its record to be on disk.
    EveryRecord,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::new(),
            store_queries: true,
            checkpoint_every: 1000,
            signing_key: PathBuf::new(),
            rotate_bytes: 64 << 20,
            retain_files: 0,
            anchor_path: PathBuf::new(),
            fsync: FsyncMode::Checkpoint,
            queue_capacity: 10_000,
            instance_id: String::new(),
        }
    }
}
impl AuditConfig {
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.checkpoint_every == 0 {
            errors.push("audit.checkpoint_every: must be at least 1".into());
        }
        if self.rotate_bytes < 4096 {
            errors.push("audit.rotate_bytes: must be at least 4096".into());
        }
        if !self
            .instance_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            || self.instance_id.len() > 128
        {
            errors.push("audit.instance_id: use at most 128 letters, digits and . _ -".into());
        }
        if self.queue_capacity == 0 {
            errors.push("audit.queue_capacity: must be at least 1".into());
        }
    }
}
