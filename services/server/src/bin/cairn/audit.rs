//! `cairn audit verify FILES… [--public-key HEX|FILE] [--anchor FILE] [--open-tail]`.

use std::path::PathBuf;

use cairn_services::audit;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain through audit log files (oldest first; several replicas' logs are told apart by their instance id and checked each); that rotated files and the log end with a checkpoint; given the public key, every checkpoint's signature; given the anchor, that every anchored checkpoint is in the log. Reports the first modified, deleted, inserted or reordered record, a cut tail or missing files, and exits 1.
    Verify {
        /// Audit log files, oldest first (rotated FILE.000001, FILE.000002, ..., then FILE).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The ed25519 public key: 64 hex digits, or a file holding them (audit/signing-key.pub in the data dir).
        #[arg(long, value_name = "HEX|FILE")]
        public_key: Option<String>,
        /// The anchor file ([audit] anchor_path; that setting when not given): detects a log cut back at any point and missing rotated files.
        #[arg(long, value_name = "FILE")]
        anchor: Option<PathBuf>,
        /// The last file is a running server's live file: records after its last checkpoint are accepted (and counted).
        #[arg(long)]
        open_tail: bool,
    },
}

pub fn verify(
    files: &[PathBuf],
    public_key: Option<&str>,
    anchor: Option<PathBuf>,
    open_tail: bool,
) -> std::process::ExitCode {
    let key = match public_key.map(audit::parse_public_key).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(a) = &anchor
        && !a.is_file()
    {
        eprintln!("error: the anchor {} is not a file", a.display());
        return std::process::ExitCode::from(2);
    }
    let options = audit::VerifyOptions {
        public_key: key,
        anchor: anchor.clone(),
        open_tail,
    };
    let results = match audit::verify_set(files, &options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut failed = false;
    for (instance, result) in results {
        let who = if instance.is_empty() {
            String::new()
        } else {
            format!("instance {instance}: ")
        };
        match result {
            Ok(r) => println!("{who}{}", summary(&r, &options, anchor.as_deref())),
            Err(e) => {
                failed = true;
                println!("{who}audit log TAMPERED: {e}");
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

fn summary(r: &audit::VerifyReport, options: &audit::VerifyOptions, anchor: Option<&std::path::Path>) -> String {
    let mut notes = Vec::new();
    if options.public_key.is_some() {
        notes.push(format!("{} signatures verified", r.signatures_checked));
    } else {
        notes.push("NO signature checked: pass --public-key".to_string());
    }
    match anchor {
        Some(a) => notes.push(format!(
            "{} anchored checkpoints found in {}{}",
            r.anchored,
            a.display(),
            if r.retired > 0 {
                format!(", {} in files removed by retain_files", r.retired)
            } else {
                String::new()
            }
        )),
        None => notes.push("no anchor checked: a log cut back to an earlier checkpoint passes without --anchor".into()),
    }
    if r.open_tail > 0 {
        notes.push(format!("{} records after the last checkpoint (open tail)", r.open_tail));
    }
    if r.starts_mid_chain {
        notes.push("the first file continues an earlier one that was not given".into());
    }
    format!(
        "audit log ok: {} records{}, {} checkpoints, seq {}..={}; {}",
        r.records,
        if r.admin_records > 0 {
            format!(" ({} admin)", r.admin_records)
        } else {
            String::new()
        },
        r.checkpoints,
        r.first_seq,
        r.last_seq,
        notes.join("; ")
    )
}
