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
    }
}
