//! Authentication (API tokens) and the per-repository read rule.
//!
//! Tokens live hashed (SHA-256; they are 256-bit random, so a slow hash adds
//! nothing) in `tokens.json` in the data dir, outside the vector store's lock:
//! `cairn token create` / `revoke` work while `cairn serve` runs, and the
//! server re-reads the file whenever it changed, so a revocation applies to
//! the next request.
//!
//! A principal may read a repo when they share a group with it, or belong to
//! [`ADMIN_GROUP`]; repos indexed without groups are readable by admins only.
//! The readable set is computed per request and goes into the store query
//! (see `SearchService::search`), never applied afterwards.
//!
//! A caller also has a clearance (a [`Sensitivity`]): a token's
//! `max_sensitivity`, an OIDC claim, or `[auth] none_max_sensitivity`.
//! Repos above it are not readable, exactly as if their groups excluded the
//! caller, so the same set carries both rules into every query.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Context;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use cairn_indexer::registry::Sensitivity;

pub use crate::access::{ADMIN_GROUP, Access, Principal};
pub use cairn_config::auth::{AuthConfig, AuthMode, check_name, parse_groups};
const TOKEN_PREFIX: &str = "cairn_";

/// One stored token (its hash, never the token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenRecord {
    pub id: String,
    pub principal: String,
    pub groups: Vec<String>,
    pub sha256: String,
    pub created_at: String,
    /// The most sensitive code the token reads; absent: no cap (tokens made
    /// before clearances existed keep working as they did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sensitivity: Option<Sensitivity>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct TokenFile {
    tokens: Vec<TokenRecord>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// `tokens.json` in a data dir, with the cache the server uses.
pub struct TokenStore {
    path: PathBuf,
    cache: Mutex<Option<(Option<SystemTime>, u64, TokenFile)>>,
}

impl TokenStore {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("tokens.json"),
            cache: Mutex::new(None),
        }
    }

    fn read(&self) -> anyhow::Result<TokenFile> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a valid token store", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
            Err(e) => Err(e).with_context(|| format!("failed to read {}", self.path.display())),
        }
    }

    /// Runs `f` on the token file under an exclusive lock and writes the
    /// result atomically (temp file + rename).
    fn update<T>(&self, f: impl FnOnce(&mut TokenFile) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        let lock = File::create(dir.join("tokens.lock"))?;
        lock.lock()?;
        let mut file = self.read()?;
        let out = f(&mut file)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        {
            use std::io::Write;
            let mut t = opts.open(&tmp)?;
            t.write_all(&serde_json::to_vec_pretty(&file)?)?;
            t.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        Ok(out)
    }

    /// Creates a token; returns its record and the token (shown once).
    pub fn create(&self, principal: &str, groups: Vec<String>) -> anyhow::Result<(TokenRecord, String)> {
        self.create_capped(principal, groups, None)
    }

    /// [`Self::create`] with a clearance cap (`--max-sensitivity`).
    pub fn create_capped(
        &self,
        principal: &str,
        groups: Vec<String>,
        max_sensitivity: Option<Sensitivity>,
    ) -> anyhow::Result<(TokenRecord, String)> {
        check_name("principal", principal)?;
        let rng = SystemRandom::new();
        let mut secret = [0u8; 32];
        rng.fill(&mut secret)
            .map_err(|_| anyhow::anyhow!("no randomness available"))?;
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
        let mut id_bytes = [0u8; 6];
        rng.fill(&mut id_bytes)
            .map_err(|_| anyhow::anyhow!("no randomness available"))?;
        let record = TokenRecord {
            id: format!("tok_{}", hex::encode(id_bytes)),
            principal: principal.to_string(),
            groups,
            sha256: sha256_hex(token.as_bytes()),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            max_sensitivity,
        };
        let r = record.clone();
        self.update(move |f| {
            f.tokens.push(r);
            Ok(())
        })?;
        Ok((record, token))
    }

    /// Revokes the token with this id, or every token of this principal.
    /// Returns how many were revoked.
    pub fn revoke(&self, id_or_principal: &str) -> anyhow::Result<usize> {
        self.update(|f| {
            let before = f.tokens.len();
            f.tokens
                .retain(|t| t.id != id_or_principal && t.principal != id_or_principal);
            Ok(before - f.tokens.len())
        })
    }

    pub fn list(&self) -> anyhow::Result<Vec<TokenRecord>> {
        Ok(self.read()?.tokens)
    }

    /// The principal a bearer token stands for, re-reading the store when
    /// it changed on disk since the last call.
    pub fn authenticate(&self, token: &str) -> anyhow::Result<Option<Principal>> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).context("failed to stat the token store"),
        };
        let stamp = (
            meta.as_ref().and_then(|m| m.modified().ok()),
            meta.as_ref().map_or(0, |m| m.len()),
        );
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = matches!(&*cache, Some((t, len, _)) if (*t, *len) == stamp);
        if !fresh {
            *cache = Some((stamp.0, stamp.1, self.read()?));
        }
        let Some((_, _, file)) = cache.as_ref() else {
            return Ok(None);
        };
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let hash = sha256_hex(token.as_bytes());
        Ok(file.tokens.iter().find(|t| t.sha256 == hash).map(|t| Principal {
            name: t.principal.clone(),
            groups: t.groups.iter().cloned().collect(),
            clearance: t.max_sensitivity.unwrap_or(Sensitivity::Restricted),
        }))
    }
}

/// Whether every listen address is a loopback one (`auth.mode = "none"` is
/// refused otherwise).
pub fn loopback_only(addrs: &[std::net::SocketAddr]) -> bool {
    addrs.iter().all(|a| a.ip().is_loopback())
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cairn_indexer::registry::RepoRecord;

    use super::*;

    fn repo(name: &str, groups: &[&str]) -> RepoRecord {
        RepoRecord {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..RepoRecord::default()
        }
    }

    #[test]
    fn tokens_authenticate_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let (rec, token) = store.create("alice", vec!["payments".into()]).unwrap();
        assert!(token.starts_with("cairn_") && token.len() == 6 + 64);
        let raw = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!raw.contains(&token), "the token itself is never stored");
        // a second handle (the server) sees it, and sees the revocation
        let server = TokenStore::new(dir.path());
        let p = server.authenticate(&token).unwrap().unwrap();
        assert_eq!(p.name, "alice");
        assert!(p.groups.contains("payments"));
        assert!(server.authenticate("cairn_0000").unwrap().is_none());
        assert!(server.authenticate("").unwrap().is_none());
        assert_eq!(store.revoke(&rec.id).unwrap(), 1);
        assert!(server.authenticate(&token).unwrap().is_none());
        assert_eq!(store.revoke("nobody").unwrap(), 0);
    }

    #[test]
    fn read_rule_is_deny_by_default() {
        let repos: BTreeMap<String, RepoRecord> = [
            repo("pay", &["payments"]),
            repo("web", &["web", "payments"]),
            repo("secret", &[]),
        ]
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
        let who = |groups: &[&str]| Access::for_principal(Principal::new("p", groups.iter().map(|g| g.to_string())));
        assert_eq!(who(&["payments"]).readable(&repos), ["pay", "web"]);
        assert_eq!(who(&["web"]).readable(&repos), ["web"]);
        assert!(who(&[]).readable(&repos).is_empty());
        assert!(who(&["other"]).readable(&repos).is_empty());
        assert_eq!(who(&["admin"]).readable(&repos), ["pay", "secret", "web"]);
        assert_eq!(Access::open().readable(&repos).len(), 3);
    }

    #[test]
    fn clearance_hides_repos_above_it() {
        let level = |name: &str, s: &str| RepoRecord {
            sensitivity: s.into(),
            ..repo(name, &["dev"])
        };
        let repos: BTreeMap<String, RepoRecord> = [
            level("pub", "public"),
            level("int", ""),
            level("conf", "confidential"),
            level("res", "restricted"),
            level("odd", "secret-ish"),
        ]
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
        let capped = |s: Sensitivity| {
            let mut p = Principal::new("p", ["dev".to_string()]);
            p.clearance = s;
            Access::for_principal(p)
        };
        assert_eq!(capped(Sensitivity::Public).readable(&repos), ["pub"]);
        // unset counts as internal; an unknown word as restricted (fail closed)
        assert_eq!(capped(Sensitivity::Internal).readable(&repos), ["int", "pub"]);
        assert_eq!(
            capped(Sensitivity::Confidential).readable(&repos),
            ["conf", "int", "pub"]
        );
        assert_eq!(capped(Sensitivity::Restricted).readable(&repos).len(), 5);
        // admins are capped too
        let mut admin = Principal::new("root", ["admin".to_string()]);
        admin.clearance = Sensitivity::Public;
        assert_eq!(Access::for_principal(admin).readable(&repos), ["pub"]);
        // mode none: uncapped reads all and names nothing; capped filters
        assert!(!Access::open().filters());
        let open = Access::open_with_clearance(Sensitivity::Internal);
        assert!(open.filters());
        assert_eq!(open.readable(&repos), ["int", "pub"]);
    }

    #[test]
    fn token_clearance_is_stored_and_old_tokens_are_uncapped() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let (rec, capped) = store
            .create_capped("carol", vec!["dev".into()], Some(Sensitivity::Internal))
            .unwrap();
        assert_eq!(rec.max_sensitivity, Some(Sensitivity::Internal));
        let (_, free) = store.create("dave", vec!["dev".into()]).unwrap();
        assert_eq!(
            store.authenticate(&capped).unwrap().unwrap().clearance,
            Sensitivity::Internal
        );
        assert_eq!(
            store.authenticate(&free).unwrap().unwrap().clearance,
            Sensitivity::Restricted
        );
        // a token file from before clearances: no field, no cap
        let raw = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert!(v["tokens"][1].get("max_sensitivity").is_none(), "{raw}");
    }

    #[test]
    fn names_and_headers() {
        assert_eq!(parse_groups("b, a,,a").unwrap(), ["a", "b"]);
        assert!(parse_groups("a b").is_err());
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert!(loopback_only(&[
            "127.0.0.1:1".parse().unwrap(),
            "[::1]:2".parse().unwrap()
        ]));
        assert!(!loopback_only(&["0.0.0.0:1".parse().unwrap()]));
    }
}
