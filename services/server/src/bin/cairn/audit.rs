//! `cairn audit verify FILES… [--public-key HEX|FILE]`.

use std::path::PathBuf;

use cairn_services::audit;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain through audit log files (oldest first) and, given the public key, every checkpoint's signature; report the first modified, deleted, inserted or reordered record and exit 1.
    Verify {
        /// Audit log files, oldest first (rotated FILE.000001, FILE.000002, ..., then FILE).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The ed25519 public key: 64 hex digits, or a file holding them (audit/signing-key.pub in the data dir).
        #[arg(long, value_name = "HEX|FILE")]
        public_key: Option<String>,
    },
}

pub fn verify(files: &[PathBuf], public_key: Option<&str>) -> std::process::ExitCode {
    let key = match public_key.map(audit::parse_public_key).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    match audit::verify(files, key.as_deref()) {
        Ok(Ok(r)) => {
            println!(
                "audit log ok: {} records{}, {} checkpoints ({}), seq {}..={}{}",
                r.records,
                if r.admin_records > 0 {
                    format!(" ({} admin)", r.admin_records)
                } else {
                    String::new()
                },
                r.checkpoints,
                if key.is_some() {
                    format!("{} signatures verified", r.signatures_checked)
                } else {
                    "signatures not checked: pass --public-key".to_string()
                },
                r.first_seq,
                r.last_seq,
                if r.starts_mid_chain {
                    "; the first file continues an earlier one that was not given"
                } else {
                    ""
                }
            );
            std::process::ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            println!("audit log TAMPERED: {e}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
