//! Authentication (API tokens) and the per-repository read rule.
//!
//! Tokens live hashed (SHA-256; they are 256-bit random, so a slow hash adds
//! nothing), in one of two places:
//!
//! - with the embedded store, `tokens.json` in the data dir, outside the
//!   vector store's lock: `cairn token create` / `revoke` work while
//!   `cairn serve` runs, and the server re-reads the file whenever it
//!   changed, so a revocation applies to the next request;
//! - with a Qdrant server, one document ([`SHARED_KEY`]) in the store's
//!   metadata collection, so every replica reads the same tokens. Each
//!   server re-reads it every [`SHARED_REFRESH`]: a revocation reaches every
//!   replica within that bound (plus one read). Writes are compare-and-swap
//!   on the document's writer nonce, so two admins never lose each other's
//!   change. A server that cannot read the document for [`SHARED_STALE_AFTER`]
//!   refuses tokens (503) rather than honour ones that may be revoked.
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
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use cairn_indexer::registry::Sensitivity;
use cairn_indexer::store::meta::{Guard, MetaStore};

pub use crate::access::{ADMIN_GROUP, Access, Principal};
pub use cairn_config::auth::{AuthConfig, AuthMode, check_name, parse_groups};
const TOKEN_PREFIX: &str = "cairn_";

/// The key of the token document in a shared metadata store.
pub const SHARED_KEY: &str = "tokens";
/// How often a server re-reads shared tokens: the bound on how long a
/// revoked token keeps working on a replica that did not revoke it.
pub const SHARED_REFRESH: Duration = Duration::from_secs(2);
/// How long a server keeps honouring tokens it could not re-read.
pub const SHARED_STALE_AFTER: Duration = Duration::from_secs(15);
/// Compare-and-swap attempts before a token write gives up.
const CAS_ATTEMPTS: usize = 16;

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

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
struct TokenFile {
    tokens: Vec<TokenRecord>,
    /// In a shared store: a nonce naming the write that made this version
    /// (the compare-and-swap key). Absent in `tokens.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    holder: Option<String>,
}

impl TokenFile {
    fn principal(&self, token: &str) -> Option<Principal> {
        if !token.starts_with(TOKEN_PREFIX) {
            return None;
        }
        let hash = sha256_hex(token.as_bytes());
        self.tokens.iter().find(|t| t.sha256 == hash).map(|t| Principal {
            name: t.principal.clone(),
            groups: t.groups.iter().cloned().collect(),
            clearance: t.max_sensitivity.unwrap_or(Sensitivity::Restricted),
        })
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

fn random_hex(n: usize) -> anyhow::Result<String> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness available"))?;
    Ok(hex::encode(bytes))
}

/// The token store: `tokens.json` in a data dir, or a document in a shared
/// metadata store (see the module docs), with the cache the server uses.
pub struct TokenStore {
    backend: Backend,
}

enum Backend {
    File {
        path: PathBuf,
        cache: Mutex<Option<(Option<SystemTime>, u64, TokenFile)>>,
    },
    Shared {
        meta: Arc<dyn MetaStore>,
        snapshot: RwLock<Snapshot>,
    },
}

/// The last shared document read, when (`None`: never), and the last
/// read's error.
struct Snapshot {
    file: TokenFile,
    read_at: Option<Instant>,
    error: Option<String>,
}

impl TokenStore {
    /// `tokens.json` in `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            backend: Backend::File {
                path: data_dir.join("tokens.json"),
                cache: Mutex::new(None),
            },
        }
    }

    /// The token document in `meta`, shared by every process that uses the
    /// same store. When the store has none yet and `data_dir` has a
    /// `tokens.json` (a deployment moving from the embedded store), its
    /// tokens are copied in, so they keep working.
    ///
    /// A store that cannot be read now is not an error here (a replica
    /// starts while Qdrant is down): tokens are refused until a read
    /// succeeds (see [`Self::keep_fresh`]).
    pub async fn shared(meta: Arc<dyn MetaStore>, data_dir: &Path) -> anyhow::Result<Self> {
        let store = Self {
            backend: Backend::Shared {
                meta: meta.clone(),
                snapshot: RwLock::new(Snapshot {
                    file: TokenFile::default(),
                    read_at: None,
                    error: None,
                }),
            },
        };
        if let Err(e) = store.adopt(meta.as_ref(), data_dir).await {
            tracing::warn!(error = %format!("{e:#}"), store = %meta.describe(), "cannot read the shared tokens yet; tokens are refused until a read succeeds");
            if let Backend::Shared { snapshot, .. } = &store.backend {
                snapshot.write().unwrap_or_else(|p| p.into_inner()).error = Some(format!("{e:#}"));
            }
        }
        Ok(store)
    }

    /// Copies `data_dir`'s `tokens.json` into an empty shared store, then
    /// reads the shared tokens.
    async fn adopt(&self, meta: &dyn MetaStore, data_dir: &Path) -> anyhow::Result<()> {
        let store = self;
        if meta.get(SHARED_KEY).await?.is_none() {
            let local = Self::new(data_dir);
            let tokens = local.read_file()?.tokens;
            if !tokens.is_empty() {
                let n = tokens.len();
                store
                    .update(|f| {
                        if f.tokens.is_empty() {
                            f.tokens = tokens.clone();
                        }
                        Ok(())
                    })
                    .await?;
                tracing::warn!(
                    tokens = n,
                    from = %data_dir.join("tokens.json").display(),
                    to = %meta.describe(),
                    "copied the data dir's tokens into the shared token store; tokens.json is no longer read"
                );
            }
        }
        store.refresh().await
    }

    /// The store `config` names: shared in the Qdrant server's metadata
    /// collection when `[store] kind = "qdrant"`, else `tokens.json` in the
    /// data dir.
    pub async fn for_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        match config.store.kind {
            crate::store_config::StoreKind::Qdrant => {
                let meta = cairn_indexer::store::meta::QdrantMeta::new(config.store.qdrant_settings())?;
                Self::shared(Arc::new(meta), &config.data_dir).await
            }
            crate::store_config::StoreKind::Edge => Ok(Self::new(&config.data_dir)),
        }
    }

    /// Where the tokens live, for messages.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::File { path, .. } => path.display().to_string(),
            Backend::Shared { meta, .. } => format!("document {SHARED_KEY:?} in {}", meta.describe()),
        }
    }

    /// Re-reads a shared store every [`SHARED_REFRESH`] until `store` is
    /// dropped (nothing to do for `tokens.json`, which is re-read when it
    /// changes).
    pub fn keep_fresh(store: &Arc<Self>) {
        if !matches!(store.backend, Backend::Shared { .. }) {
            return;
        }
        let weak = Arc::downgrade(store);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SHARED_REFRESH).await;
                let Some(store) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = store.refresh().await {
                    tracing::warn!(error = %format!("{e:#}"), store = %store.describe(), "failed to re-read the shared tokens");
                }
            }
        });
    }

    /// Reads a shared store's document now (a no-op for `tokens.json`).
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let Backend::Shared { meta, snapshot } = &self.backend else {
            return Ok(());
        };
        let read = Self::read_shared(meta.as_ref()).await;
        let mut s = snapshot.write().unwrap_or_else(|p| p.into_inner());
        match read {
            Ok(file) => {
                *s = Snapshot {
                    file,
                    read_at: Some(Instant::now()),
                    error: None,
                };
                Ok(())
            }
            Err(e) => {
                s.error = Some(format!("{e:#}"));
                Err(e)
            }
        }
    }

    async fn read_shared(meta: &dyn MetaStore) -> anyhow::Result<TokenFile> {
        match meta.get(SHARED_KEY).await? {
            Some(doc) => serde_json::from_value(doc)
                .with_context(|| format!("the token document in {} is not valid", meta.describe())),
            None => Ok(TokenFile::default()),
        }
    }

    fn read_file(&self) -> anyhow::Result<TokenFile> {
        let Backend::File { path, .. } = &self.backend else {
            anyhow::bail!("not a token file");
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).with_context(|| format!("{} is not a valid token store", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
            Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
        }
    }

    /// Runs `f` on the tokens and stores the result: for `tokens.json`
    /// under an exclusive lock, written atomically (temp file + rename); for
    /// a shared store as a compare-and-swap on the document's writer nonce,
    /// retried when another writer came between the read and the write.
    async fn update<T>(&self, mut f: impl FnMut(&mut TokenFile) -> anyhow::Result<T>) -> anyhow::Result<T> {
        match &self.backend {
            Backend::File { path, .. } => self.update_file(path, f),
            Backend::Shared { meta, .. } => {
                for _ in 0..CAS_ATTEMPTS {
                    let before = Self::read_shared(meta.as_ref()).await?;
                    let mut file = before.clone();
                    let out = f(&mut file)?;
                    if file.tokens == before.tokens {
                        return Ok(out);
                    }
                    let nonce = random_hex(16)?;
                    file.holder = Some(nonce.clone());
                    let guard = Guard {
                        holder: before.holder.clone().unwrap_or_default(),
                        or_expired_before_ms: None,
                    };
                    meta.put_guarded(SHARED_KEY, &serde_json::to_value(&file)?, &guard)
                        .await?;
                    let now = Self::read_shared(meta.as_ref()).await?;
                    if now.holder.as_deref() == Some(nonce.as_str()) {
                        let _ = self.refresh().await;
                        return Ok(out);
                    }
                    // another writer's version is there: redo on top of it
                }
                anyhow::bail!(
                    "the shared tokens in {} changed {CAS_ATTEMPTS} times while writing; try again",
                    meta.describe()
                )
            }
        }
    }

    fn update_file<T>(&self, path: &Path, f: impl FnOnce(&mut TokenFile) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        let lock = File::create(dir.join("tokens.lock"))?;
        lock.lock()?;
        let mut file = self.read_file()?;
        let out = f(&mut file)?;
        let tmp = path.with_extension("json.tmp");
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
        std::fs::rename(&tmp, path)?;
        Ok(out)
    }

    /// Creates a token; returns its record and the token (shown once).
    pub async fn create(&self, principal: &str, groups: Vec<String>) -> anyhow::Result<(TokenRecord, String)> {
        self.create_capped(principal, groups, None).await
    }

    /// [`Self::create`] with a clearance cap (`--max-sensitivity`).
    pub async fn create_capped(
        &self,
        principal: &str,
        groups: Vec<String>,
        max_sensitivity: Option<Sensitivity>,
    ) -> anyhow::Result<(TokenRecord, String)> {
        check_name("principal", principal)?;
        let token = format!("{TOKEN_PREFIX}{}", random_hex(32)?);
        let record = TokenRecord {
            id: format!("tok_{}", random_hex(6)?),
            principal: principal.to_string(),
            groups,
            sha256: sha256_hex(token.as_bytes()),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            max_sensitivity,
        };
        self.update(|f| {
            f.tokens.push(record.clone());
            Ok(())
        })
        .await?;
        Ok((record, token))
    }

    /// Revokes the token with this id, or every token of this principal.
    /// Returns how many were revoked.
    pub async fn revoke(&self, id_or_principal: &str) -> anyhow::Result<usize> {
        self.update(|f| {
            let before = f.tokens.len();
            f.tokens
                .retain(|t| t.id != id_or_principal && t.principal != id_or_principal);
            Ok(before - f.tokens.len())
        })
        .await
    }

    /// Every token's record, read from the store now.
    pub async fn list(&self) -> anyhow::Result<Vec<TokenRecord>> {
        match &self.backend {
            Backend::File { .. } => Ok(self.read_file()?.tokens),
            Backend::Shared { meta, .. } => Ok(Self::read_shared(meta.as_ref()).await?.tokens),
        }
    }

    /// The principal a bearer token stands for: from `tokens.json`, re-read
    /// when it changed on disk since the last call, or from the last read of
    /// a shared store (an error once that is older than
    /// [`SHARED_STALE_AFTER`]).
    pub fn authenticate(&self, token: &str) -> anyhow::Result<Option<Principal>> {
        match &self.backend {
            Backend::File { path, cache } => {
                let meta = match std::fs::metadata(path) {
                    Ok(m) => Some(m),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(e).context("failed to stat the token store"),
                };
                let stamp = (
                    meta.as_ref().and_then(|m| m.modified().ok()),
                    meta.as_ref().map_or(0, |m| m.len()),
                );
                let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                let fresh = matches!(&*cache, Some((t, len, _)) if (*t, *len) == stamp);
                if !fresh {
                    *cache = Some((stamp.0, stamp.1, self.read_file()?));
                }
                Ok(cache.as_ref().and_then(|(_, _, file)| file.principal(token)))
            }
            Backend::Shared { meta, snapshot } => {
                let s = snapshot.read().unwrap_or_else(|p| p.into_inner());
                let error = s.error.as_deref().unwrap_or("no read since");
                match s.read_at.map(|t| t.elapsed()) {
                    None => anyhow::bail!(
                        "the shared tokens in {} could not be read yet: {error}",
                        meta.describe()
                    ),
                    Some(age) if age > SHARED_STALE_AFTER => anyhow::bail!(
                        "the shared tokens in {} were last read {}s ago: {error}",
                        meta.describe(),
                        age.as_secs(),
                    ),
                    Some(_) => {}
                }
                Ok(s.file.principal(token))
            }
        }
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

    #[tokio::test]
    async fn tokens_authenticate_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let (rec, token) = store.create("alice", vec!["payments".into()]).await.unwrap();
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
        assert_eq!(store.revoke(&rec.id).await.unwrap(), 1);
        assert!(server.authenticate(&token).unwrap().is_none());
        assert_eq!(store.revoke("nobody").await.unwrap(), 0);
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

    #[tokio::test]
    async fn token_clearance_is_stored_and_old_tokens_are_uncapped() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let (rec, capped) = store
            .create_capped("carol", vec!["dev".into()], Some(Sensitivity::Internal))
            .await
            .unwrap();
        assert_eq!(rec.max_sensitivity, Some(Sensitivity::Internal));
        let (_, free) = store.create("dave", vec!["dev".into()]).await.unwrap();
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

    /// Two replicas over one metadata store: what one writes the other
    /// reads at its next refresh, revocations included.
    #[tokio::test]
    async fn shared_tokens_reach_every_replica_and_revocations_too() {
        use cairn_indexer::store::meta::MemoryMeta;
        let meta: Arc<dyn MetaStore> = Arc::new(MemoryMeta::default());
        let dir = tempfile::tempdir().unwrap();
        let a = TokenStore::shared(meta.clone(), dir.path()).await.unwrap();
        let b = TokenStore::shared(meta.clone(), dir.path()).await.unwrap();
        let (rec, token) = a.create("alice", vec!["pay".into()]).await.unwrap();
        assert_eq!(a.authenticate(&token).unwrap().unwrap().name, "alice");
        // b sees it at its next read, not before
        assert!(b.authenticate(&token).unwrap().is_none());
        b.refresh().await.unwrap();
        assert_eq!(b.authenticate(&token).unwrap().unwrap().name, "alice");
        assert_eq!(b.list().await.unwrap(), std::slice::from_ref(&rec));
        // stored hashed, never the token; no tokens.json written
        let doc = meta.get(SHARED_KEY).await.unwrap().unwrap();
        assert!(!doc.to_string().contains(&token));
        assert!(doc[cairn_indexer::store::meta::HOLDER].is_string(), "{doc}");
        assert!(!dir.path().join("tokens.json").exists());
        // revoked on b: a honours it until its next read, then refuses
        assert_eq!(b.revoke(&rec.id).await.unwrap(), 1);
        assert!(b.authenticate(&token).unwrap().is_none());
        a.refresh().await.unwrap();
        assert!(a.authenticate(&token).unwrap().is_none());
        assert_eq!(a.revoke("nobody").await.unwrap(), 0);
    }

    /// Writers that interleave never lose each other's tokens.
    #[tokio::test]
    async fn concurrent_shared_writes_keep_every_token() {
        use cairn_indexer::store::meta::MemoryMeta;
        let meta: Arc<dyn MetaStore> = Arc::new(MemoryMeta::default());
        let dir = tempfile::tempdir().unwrap();
        let mut writers = Vec::new();
        for w in 0..4 {
            let store = Arc::new(TokenStore::shared(meta.clone(), dir.path()).await.unwrap());
            writers.push(tokio::spawn(async move {
                let mut made = Vec::new();
                for i in 0..5 {
                    made.push(store.create(&format!("p{w}-{i}"), vec![]).await.unwrap().1);
                    tokio::task::yield_now().await;
                }
                made
            }));
        }
        let mut all = Vec::new();
        for w in writers {
            all.extend(w.await.unwrap());
        }
        let reader = TokenStore::shared(meta, dir.path()).await.unwrap();
        assert_eq!(reader.list().await.unwrap().len(), 20);
        for t in &all {
            assert!(reader.authenticate(t).unwrap().is_some());
        }
    }

    /// A deployment moving to a Qdrant server keeps its data dir's tokens;
    /// a store that cannot be re-read stops honouring tokens.
    #[tokio::test]
    async fn shared_store_adopts_tokens_json_and_fails_closed_when_stale() {
        use cairn_indexer::store::meta::MemoryMeta;
        let dir = tempfile::tempdir().unwrap();
        let (_, old) = TokenStore::new(dir.path()).create("bob", vec![]).await.unwrap();
        let meta: Arc<dyn MetaStore> = Arc::new(MemoryMeta::default());
        let shared = TokenStore::shared(meta.clone(), dir.path()).await.unwrap();
        assert_eq!(shared.authenticate(&old).unwrap().unwrap().name, "bob");
        // adopted once: later tokens.json changes are not read
        TokenStore::new(dir.path()).create("eve", vec![]).await.unwrap();
        let again = TokenStore::shared(meta, dir.path()).await.unwrap();
        assert_eq!(again.list().await.unwrap().len(), 1);
        if let Backend::Shared { snapshot, .. } = &again.backend {
            snapshot.write().unwrap().read_at = Instant::now().checked_sub(SHARED_STALE_AFTER + Duration::from_secs(1));
        }
        let err = again.authenticate(&old).unwrap_err().to_string();
        assert!(err.contains("shared tokens"), "{err}");
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
