//! `cairn token create | revoke | list`: API tokens, hashed in the data dir
//! (or, with a Qdrant server, in its metadata collection: see `auth`).

use anyhow::Context;
use cairn_services::audit;
use cairn_services::auth::{self, TokenStore};
use cairn_services::config::{Config, Sensitivity};
use clap::Subcommand;

use crate::admin_log;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed alone on the last line, once (only its hash is stored).
    Create {
        /// Who the token stands for (audit records name it).
        #[arg(long)]
        principal: String,
        /// Groups (comma-separated); `admin` reads every repo.
        #[arg(long, value_name = "A,B", default_value = "")]
        groups: String,
        /// public | internal | confidential | restricted: the most sensitive
        /// repos the token reads, on every surface. Default: no cap.
        #[arg(long, value_name = "LEVEL")]
        max_sensitivity: Option<String>,
    },
    /// Revoke a token by id, or every token of a principal; applies to the next request.
    Revoke {
        /// Token id (`tok_…`, see `cairn token list`) or principal name.
        id_or_principal: String,
    },
    /// List tokens (ids, principals, groups, created, clearance; never the tokens).
    List,
}

pub async fn run(cmd: TokenCommand, config: Config) -> anyhow::Result<()> {
    let store = TokenStore::for_config(&config).await?;
    match cmd {
        TokenCommand::Create {
            principal,
            groups,
            max_sensitivity,
        } => {
            let groups = auth::parse_groups(&groups)?;
            let max_sensitivity = max_sensitivity.as_deref().map(parse_sensitivity).transpose()?;
            let mut admin = admin_log(&config)?;
            let created = store.create_capped(&principal, groups.clone(), max_sensitivity).await;
            let event = audit::AdminEvent::new("token.create", &principal);
            let event = match &created {
                Ok((record, _)) => event.token(record),
                Err(_) => event
                    .detail("groups", &groups)
                    .detail("max_sensitivity", max_sensitivity),
            };
            let (record, token) = admin.finish(event, created)?;
            println!(
                "created {} for {} (groups: {}{}); it is shown once:",
                record.id,
                record.principal,
                if record.groups.is_empty() {
                    "none".to_string()
                } else {
                    record.groups.join(",")
                },
                record
                    .max_sensitivity
                    .map(|s| format!("; max sensitivity: {}", s.as_str()))
                    .unwrap_or_default()
            );
            println!("{token}");
        }
        TokenCommand::Revoke { id_or_principal } => {
            let mut admin = admin_log(&config)?;
            let revoked = store.revoke(&id_or_principal).await.and_then(|n| match n {
                0 => Err(anyhow::anyhow!("no token with id or principal {id_or_principal:?}")),
                n => Ok(n),
            });
            let event = audit::AdminEvent::new("token.revoke", &id_or_principal);
            let event = match &revoked {
                Ok(n) => event.detail("revoked", n),
                Err(_) => event,
            };
            let n = admin.finish(event, revoked)?;
            println!("revoked {n} token(s)");
        }
        TokenCommand::List => {
            for t in store.list().await? {
                // the clearance is the last column: `-` is no cap
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.principal,
                    t.groups.join(","),
                    t.created_at,
                    t.max_sensitivity.map_or("-", |s| s.as_str())
                );
            }
        }
    }
    Ok(())
}

/// A `--max-sensitivity` value.
fn parse_sensitivity(s: &str) -> anyhow::Result<Sensitivity> {
    Sensitivity::parse(s)
        .with_context(|| format!("invalid --max-sensitivity {s:?}: use public, internal, confidential or restricted"))
}
