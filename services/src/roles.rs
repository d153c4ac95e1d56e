//! Split roles for a Qdrant-server deployment: one active `cairn indexer`
//! (holding a lease) runs the daemon and publishes the repo registry and the
//! serving generation to the metadata collection; any number of
//! `cairn serve --no-indexer` replicas mirror them into their own data dir,
//! so access rules, repo names and the collection to search are the
//! indexer's, and follow it within [`MIRROR_EVERY`].
//!
//! # The lease
//! Qdrant has no compare-and-swap, so the lease is taken by writing, waiting
//! [`Lease::settle`], and reading back: of two indexers that start together
//! the later write wins and the other sees it. The holder renews every third
//! of the TTL and gives up (the process stops, to be restarted as a standby)
//! when it finds another holder. Expiry uses wall clocks: the machines'
//! clocks must agree to well within the TTL (NTP). Only the holder publishes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_indexer::generation::{self, Generation};
use cairn_indexer::registry::{Registry, RepoRecord};
use cairn_indexer::store::meta::MetaStore;
use serde::{Deserialize, Serialize};

/// The published registry's key.
pub const REGISTRY_KEY: &str = "registry";
/// The indexer lease's key.
pub const LEASE_KEY: &str = "indexer-lease";
/// How often replicas look for a newer registry and the indexer publishes.
pub const MIRROR_EVERY: Duration = Duration::from_secs(2);

/// What the indexer publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The generation searches use (the collection and the model).
    pub generation: Option<Generation>,
    pub repos: BTreeMap<String, RepoRecord>,
    /// The lease holder that published it.
    pub by: String,
}

/// Reads the data dir's registry and generation and publishes them when
/// they differ from `last`; returns whether it wrote.
pub async fn publish(
    meta: &dyn MetaStore,
    root: &Path,
    by: &str,
    last: &mut Option<Published>,
) -> anyhow::Result<bool> {
    let doc = Published {
        generation: generation::load(root)?,
        repos: Registry::new(root.join("repos.json")).load()?,
        by: by.to_string(),
    };
    if last.as_ref() == Some(&doc) {
        return Ok(false);
    }
    meta.put(REGISTRY_KEY, &serde_json::to_value(&doc)?).await?;
    *last = Some(doc);
    Ok(true)
}

/// Copies the published registry and generation into the data dir at
/// `root` when they differ from `last`; returns the new copy, or `None`
/// when nothing changed or nothing is published yet.
pub async fn mirror(
    meta: &dyn MetaStore,
    root: &Path,
    last: &mut Option<Published>,
) -> anyhow::Result<Option<Published>> {
    let Some(doc) = meta.get(REGISTRY_KEY).await? else {
        return Ok(None);
    };
    let doc: Published = serde_json::from_value(doc)
        .map_err(|e| anyhow::anyhow!("the published registry in {} is not readable: {e}", meta.describe()))?;
    if last.as_ref() == Some(&doc) {
        return Ok(None);
    }
    if let Some(g) = &doc.generation {
        generation::save(root, g)?;
    }
    Registry::new(root.join("repos.json")).replace_all(doc.repos.clone())?;
    *last = Some(doc.clone());
    Ok(Some(doc))
}

/// An indexer on a fresh data dir (a new volume) takes the published
/// registry and generation as its own, so it writes to the collection that
/// serves and replicas keep every repo (and its readers) while it catches
/// up: with no manifest, each repo's next run rebuilds it. Returns whether
/// it seeded anything; a data dir with a registry or generation is left alone.
pub async fn seed(meta: &dyn MetaStore, root: &Path) -> anyhow::Result<bool> {
    let fresh = generation::load(root)?.is_none() && Registry::new(root.join("repos.json")).load()?.is_empty();
    if !fresh {
        return Ok(false);
    }
    Ok(mirror(meta, root, &mut None).await?.is_some())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseDoc {
    holder: String,
    /// Milliseconds since the Unix epoch.
    expires_at_ms: u64,
}

impl LeaseDoc {
    fn held_by(self) -> HeldBy {
        HeldBy {
            expires_in: Duration::from_millis(self.expires_at_ms.saturating_sub(now_ms())),
            holder: self.holder,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The indexer lease (see the module docs).
pub struct Lease {
    meta: Arc<dyn MetaStore>,
    /// This process: host, pid and a random part.
    pub holder: String,
    pub ttl: Duration,
    /// How long to wait between writing the lease and reading it back.
    pub settle: Duration,
}

/// Who holds the lease, when it is not us.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldBy {
    pub holder: String,
    pub expires_in: Duration,
}

impl Lease {
    pub fn new(meta: Arc<dyn MetaStore>, ttl: Duration) -> Self {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".into());
        let random = uuid::Uuid::new_v4().simple().to_string();
        Self {
            meta,
            holder: format!("{host}/{}/{}", std::process::id(), &random[..8]),
            ttl,
            settle: Duration::from_secs(2).min(ttl / 4),
        }
    }

    async fn current(&self) -> anyhow::Result<Option<LeaseDoc>> {
        Ok(match self.meta.get(LEASE_KEY).await? {
            Some(v) => Some(serde_json::from_value(v)?),
            None => None,
        })
    }

    async fn write(&self, expires_at_ms: u64) -> anyhow::Result<()> {
        let doc = LeaseDoc {
            holder: self.holder.clone(),
            expires_at_ms,
        };
        self.meta.put(LEASE_KEY, &serde_json::to_value(doc)?).await?;
        Ok(())
    }

    /// Takes the lease if it is free, expired or already ours: `Ok(None)`
    /// when we hold it, else who does.
    pub async fn try_acquire(&self) -> anyhow::Result<Option<HeldBy>> {
        let now = now_ms();
        if let Some(doc) = self.current().await?
            && doc.holder != self.holder
            && doc.expires_at_ms > now
        {
            return Ok(Some(doc.held_by()));
        }
        self.write(now + self.ttl.as_millis() as u64).await?;
        // a contender that read the lease free at the same moment writes too:
        // the later write wins, and both read back the winner
        tokio::time::sleep(self.settle).await;
        match self.current().await? {
            Some(doc) if doc.holder == self.holder => Ok(None),
            Some(doc) => Ok(Some(doc.held_by())),
            None => anyhow::bail!("the lease written to {} is not there", self.meta.describe()),
        }
    }

    /// Waits (as a standby) until the lease is ours; `false` when `stop`
    /// ended the wait first.
    pub async fn acquire(&self, stop: &tokio_util::sync::CancellationToken) -> anyhow::Result<bool> {
        loop {
            let held = match self.try_acquire().await {
                Ok(None) => return Ok(true),
                Ok(Some(h)) => {
                    tracing::info!(holder = %h.holder, expires_in_s = h.expires_in.as_secs(), "another indexer holds the lease; standing by");
                    h.expires_in.min(self.ttl / 3)
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot read the indexer lease; retrying");
                    self.ttl / 3
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return Ok(false),
                _ = tokio::time::sleep(held.max(Duration::from_millis(100))) => {}
            }
        }
    }

    /// Extends the lease; `Ok(Some(..))` when another process holds it now.
    pub async fn renew(&self) -> anyhow::Result<Option<HeldBy>> {
        match self.current().await? {
            Some(doc) if doc.holder != self.holder => Ok(Some(doc.held_by())),
            _ => {
                self.write(now_ms() + self.ttl.as_millis() as u64).await?;
                Ok(None)
            }
        }
    }

    /// Gives the lease up (a standby can take it at once).
    pub async fn release(&self) -> anyhow::Result<()> {
        if matches!(self.current().await?, Some(doc) if doc.holder == self.holder) {
            self.write(0).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_indexer::store::meta::MemoryMeta;

    fn lease(meta: &Arc<dyn MetaStore>, ttl_ms: u64) -> Lease {
        let mut l = Lease::new(meta.clone(), Duration::from_millis(ttl_ms));
        l.settle = Duration::from_millis(20);
        l
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_an_expired_lease_is_taken_over() {
        let meta: Arc<dyn MetaStore> = Arc::new(MemoryMeta::default());
        let (a, b) = (lease(&meta, 400), lease(&meta, 400));
        assert_ne!(a.holder, b.holder);
        assert_eq!(a.try_acquire().await.unwrap(), None);
        let held = b.try_acquire().await.unwrap().expect("a holds it");
        assert_eq!(held.holder, a.holder);
        // renewing keeps it; b still cannot take it
        assert_eq!(a.renew().await.unwrap(), None);
        assert!(b.try_acquire().await.unwrap().is_some());
        // a stops renewing: after the TTL b takes it, and a learns it lost
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(b.try_acquire().await.unwrap(), None);
        assert_eq!(a.renew().await.unwrap().map(|h| h.holder), Some(b.holder.clone()));
        // a release hands it over at once
        b.release().await.unwrap();
        assert_eq!(a.try_acquire().await.unwrap(), None);
    }

    #[tokio::test]
    async fn two_indexers_starting_together_end_with_one_holder() {
        let meta: Arc<dyn MetaStore> = Arc::new(MemoryMeta::default());
        let (a, b) = (lease(&meta, 5_000), lease(&meta, 5_000));
        let (ra, rb) = tokio::join!(a.try_acquire(), b.try_acquire());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(ra.is_none() != rb.is_none(), "exactly one holder: {ra:?} {rb:?}");
    }

    #[tokio::test]
    async fn a_standby_waits_until_the_holder_releases_or_stops() {
        let meta: Arc<dyn MetaStore> = Arc::new(MemoryMeta::default());
        let (a, b) = (lease(&meta, 3_000), lease(&meta, 3_000));
        assert_eq!(a.try_acquire().await.unwrap(), None);
        let stop = tokio_util::sync::CancellationToken::new();
        let waiting = tokio::spawn(async move { (b.acquire(&stop).await.unwrap(), b) });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "the standby waits while the lease is held");
        a.release().await.unwrap();
        let (got, b) = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(got);
        assert_eq!(a.renew().await.unwrap().map(|h| h.holder), Some(b.holder));
    }

    #[tokio::test]
    async fn replicas_mirror_what_the_indexer_publishes() {
        let meta = MemoryMeta::default();
        let (indexer, replica) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut seen = None;
        assert!(
            mirror(&meta, replica.path(), &mut seen).await.unwrap().is_none(),
            "nothing published yet"
        );

        let g = Generation::for_model("fp", "chunking", 8, serde_json::json!({}));
        generation::save(indexer.path(), &g).unwrap();
        let registry = Registry::new(indexer.path().join("repos.json"));
        let record = RepoRecord {
            name: "acme-auth".into(),
            source: "/src/acme-auth".into(),
            indexed_commit: "abc".into(),
            files: 3,
            chunks: 9,
            groups: vec!["payments".into()],
            ..Default::default()
        };
        registry.put(record.clone()).unwrap();

        let mut published = None;
        assert!(publish(&meta, indexer.path(), "idx-1", &mut published).await.unwrap());
        assert!(
            !publish(&meta, indexer.path(), "idx-1", &mut published).await.unwrap(),
            "unchanged: not written again"
        );
        let copy = mirror(&meta, replica.path(), &mut seen)
            .await
            .unwrap()
            .expect("a new copy");
        assert_eq!(copy.by, "idx-1");
        assert_eq!(generation::load(replica.path()).unwrap(), Some(g));
        let mirrored = Registry::new(replica.path().join("repos.json")).load().unwrap();
        assert_eq!(mirrored.get("acme-auth"), Some(&record));
        assert!(
            mirror(&meta, replica.path(), &mut seen).await.unwrap().is_none(),
            "unchanged"
        );

        // a new indexer on a fresh volume starts from what was published;
        // one with its own state keeps it
        let fresh = tempfile::tempdir().unwrap();
        assert!(seed(&meta, fresh.path()).await.unwrap());
        assert_eq!(
            generation::load(fresh.path()).unwrap().map(|g| g.name),
            Some(copy.generation.clone().unwrap().name)
        );
        assert!(
            Registry::new(fresh.path().join("repos.json"))
                .load()
                .unwrap()
                .contains_key("acme-auth")
        );
        assert!(!seed(&meta, indexer.path()).await.unwrap());

        // a removal on the indexer reaches the replica
        registry.remove("acme-auth").unwrap();
        assert!(publish(&meta, indexer.path(), "idx-1", &mut published).await.unwrap());
        assert!(mirror(&meta, replica.path(), &mut seen).await.unwrap().is_some());
        assert!(
            Registry::new(replica.path().join("repos.json"))
                .load()
                .unwrap()
                .is_empty()
        );
    }
}
