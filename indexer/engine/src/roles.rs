//! Split roles for a Qdrant-server deployment: one active `cairn indexer`
//! (holding a lease) runs the daemon and publishes the repo registry and the
//! serving generation to the metadata collection; any number of
//! `cairn serve --no-indexer` replicas mirror them into their own data dir,
//! so access rules, repo names and the collection to search are the
//! indexer's, and follow it within [`MIRROR_EVERY`].
//!
//! # The lease
//! The lease is a document `{holder, expires_at_ms}` written with a guarded
//! write ([`MetaStore::put_guarded`]; with Qdrant a conditional update),
//! which the store applies only over a lease that is free, expired or
//! already ours; the writer then waits [`Lease::settle`] and reads it back.
//! Of two indexers that start together exactly one holds it. The holder
//! renews every third of the TTL with a write guarded by its own name, so a
//! holder that was paused past the TTL can never overwrite its successor's
//! lease: it reads the successor back and stops (to be restarted as a
//! standby). Expiry uses wall clocks: the machines' clocks must agree to
//! well within the TTL (NTP).
//!
//! # Fencing the registry
//! Only the holder publishes, and the published registry is guarded the same
//! way: it carries its holder and that holder's lease expiry, so once a
//! successor has published, a former holder's publication is refused (and
//! it stops). The chunk points themselves are not fenced: two indexers that
//! overlap write the same deterministic points, so the index converges.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_indexer::generation::{self, Generation};
use cairn_indexer::registry::{Registry, RepoRecord};
use cairn_indexer::store::meta::{Guard, MetaStore};
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
    #[serde(alias = "by")]
    pub holder: String,
    /// Until when only its holder may replace it: the holder's lease expiry
    /// when it published, 0 once it let the lease go.
    #[serde(default)]
    pub expires_at_ms: u64,
}

impl Published {
    /// Whether `other` publishes the same generation and registry.
    fn same_content(&self, other: &Published) -> bool {
        self.generation == other.generation && self.repos == other.repos
    }
}

/// What [`publish`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Publication {
    /// Nothing changed since the last publication.
    Unchanged,
    Written,
    /// Another holder published since: this process lost the lease.
    Refused {
        holder: String,
    },
}

/// Reads the data dir's registry and generation and publishes them as
/// `holder`'s, protected until `expires_at_ms` (its lease's expiry; 0 to
/// let a successor replace them at once), when they or the expiry differ
/// from `last`. The write is refused when a successor published since.
pub async fn publish(
    meta: &dyn MetaStore,
    root: &Path,
    holder: &str,
    expires_at_ms: u64,
    last: &mut Option<Published>,
) -> anyhow::Result<Publication> {
    let doc = local_view(root, holder, expires_at_ms)?;
    if last.as_ref() == Some(&doc) {
        return Ok(Publication::Unchanged);
    }
    let guard = Guard {
        holder: holder.to_string(),
        or_expired_before_ms: Some(now_ms()),
    };
    meta.put_guarded(REGISTRY_KEY, &serde_json::to_value(&doc)?, &guard)
        .await?;
    let there: Option<Published> = match meta.get(REGISTRY_KEY).await? {
        Some(v) => serde_json::from_value(v).ok(),
        None => None,
    };
    match there {
        Some(there) if there.holder != holder => Ok(Publication::Refused { holder: there.holder }),
        _ => {
            let renewal = last
                .as_ref()
                .is_some_and(|l| l.holder == doc.holder && l.same_content(&doc));
            if !renewal {
                // what this data dir last published, for `seed` after a restart
                let bytes = serde_json::to_vec(&doc)?;
                cairn_indexer::cache::write_atomic(&last_published_path(root), &bytes)?;
            }
            *last = Some(doc);
            Ok(Publication::Written)
        }
    }
}

/// The data dir's registry and generation, as `holder` would publish them.
fn local_view(root: &Path, holder: &str, expires_at_ms: u64) -> anyhow::Result<Published> {
    Ok(Published {
        generation: generation::load(root)?,
        repos: Registry::new(root.join("repos.json")).load()?,
        holder: holder.to_string(),
        expires_at_ms,
    })
}

/// The published registry and generation, if any.
async fn fetch(meta: &dyn MetaStore) -> anyhow::Result<Option<Published>> {
    let Some(doc) = meta.get(REGISTRY_KEY).await? else {
        return Ok(None);
    };
    serde_json::from_value(doc)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("the published registry in {} is not readable: {e}", meta.describe()))
}

/// Writes the published registry and generation into the data dir at `root`.
fn adopt(root: &Path, doc: &Published) -> anyhow::Result<()> {
    if let Some(g) = &doc.generation {
        generation::save(root, g)?;
    }
    Registry::new(root.join("repos.json")).replace_all(doc.repos.clone())?;
    Ok(())
}

/// `<data dir>/published.json`: this data dir's last publication.
fn last_published_path(root: &Path) -> std::path::PathBuf {
    root.join("published.json")
}

/// Copies the published registry and generation into the data dir at
/// `root` when they differ from `last`; returns the new copy, or `None`
/// when nothing changed or nothing is published yet.
pub async fn mirror(
    meta: &dyn MetaStore,
    root: &Path,
    last: &mut Option<Published>,
) -> anyhow::Result<Option<Published>> {
    let Some(doc) = fetch(meta).await? else {
        return Ok(None);
    };
    if last.as_ref().is_some_and(|l| l.same_content(&doc)) {
        return Ok(None);
    }
    adopt(root, &doc)?;
    *last = Some(doc.clone());
    Ok(Some(doc))
}

/// What [`seed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeded {
    /// No indexer published yet: the data dir stays as it is.
    NothingPublished,
    /// The data dir holds what was published, or published it last (the
    /// holder restarting on its own volume, perhaps after a crash that lost
    /// its last publication): it is kept.
    Current,
    /// The data dir was fresh, or held an older view (a volume that last
    /// indexed before another indexer took over); it now holds the published
    /// registry and generation, and its manifests and unfinished builds are
    /// gone, so each repo's next run rebuilds it (reusing stored vectors).
    Adopted { fresh: bool },
}

/// Makes the data dir of a new lease holder agree with what was published,
/// so it writes to the collection that serves and replicas keep every repo
/// (and its readers) while it catches up. Local manifests describe what the
/// local view wrote; they are kept only when that view is the published one.
pub async fn seed(meta: &dyn MetaStore, root: &Path) -> anyhow::Result<Seeded> {
    let Some(published) = fetch(meta).await? else {
        return Ok(Seeded::NothingPublished);
    };
    let local = local_view(root, "", 0)?;
    let ours = std::fs::read(last_published_path(root))
        .ok()
        .and_then(|b| serde_json::from_slice::<Published>(&b).ok())
        .is_some_and(|last| last.holder == published.holder && last.same_content(&published));
    if ours || local.same_content(&published) {
        return Ok(Seeded::Current);
    }
    let fresh = local.generation.is_none() && local.repos.is_empty();
    if !fresh {
        let mut stale = vec![root.join("state")];
        if let Ok(entries) = std::fs::read_dir(root.join("store")) {
            stale.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "build")),
            );
        }
        for dir in stale.into_iter().filter(|d| d.exists()) {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| anyhow::anyhow!("cannot remove the stale {}: {e}", dir.display()))?;
        }
    }
    adopt(root, &published)?;
    Ok(Seeded::Adopted { fresh })
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
    /// When the lease we last wrote expires (0: not held).
    expires_at_ms: std::sync::atomic::AtomicU64,
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
            expires_at_ms: Default::default(),
        }
    }

    /// When our lease expires, as last written (0 when not held).
    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn current(&self) -> anyhow::Result<Option<LeaseDoc>> {
        Ok(match self.meta.get(LEASE_KEY).await? {
            Some(v) => Some(serde_json::from_value(v)?),
            None => None,
        })
    }

    /// Writes our lease over a free one, our own, or (`or_expired`) an
    /// expired one, then reads back who holds it: `None` when we do.
    async fn write(&self, expires_at_ms: u64, or_expired: bool) -> anyhow::Result<Option<HeldBy>> {
        let now = now_ms();
        let doc = LeaseDoc {
            holder: self.holder.clone(),
            expires_at_ms,
        };
        let guard = Guard {
            holder: self.holder.clone(),
            or_expired_before_ms: or_expired.then_some(now),
        };
        self.meta
            .put_guarded(LEASE_KEY, &serde_json::to_value(doc)?, &guard)
            .await?;
        if or_expired {
            // a store that ignored the guard (a Qdrant server before 1.16)
            // still settles on the last writer: wait for it
            tokio::time::sleep(self.settle).await;
        }
        match self.current().await? {
            Some(doc) if doc.holder == self.holder => {
                self.expires_at_ms
                    .store(doc.expires_at_ms, std::sync::atomic::Ordering::Relaxed);
                Ok(None)
            }
            Some(doc) => {
                self.expires_at_ms.store(0, std::sync::atomic::Ordering::Relaxed);
                Ok(Some(doc.held_by()))
            }
            None => anyhow::bail!("the lease written to {} is not there", self.meta.describe()),
        }
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
        // of contenders that read the lease free at the same moment, the
        // store lets the first write through and refuses the others
        self.write(now + self.ttl.as_millis() as u64, true).await
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

    /// Extends the lease; `Ok(Some(..))` when another process holds it now
    /// (the write never replaces another holder's lease).
    pub async fn renew(&self) -> anyhow::Result<Option<HeldBy>> {
        self.write(now_ms() + self.ttl.as_millis() as u64, false).await
    }

    /// Gives the lease up (a standby can take it at once).
    pub async fn release(&self) -> anyhow::Result<()> {
        self.write(0, false).await?;
        self.expires_at_ms.store(0, std::sync::atomic::Ordering::Relaxed);
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
        let later = now_ms() + 60_000;
        assert_eq!(
            publish(&meta, indexer.path(), "idx-1", later, &mut published)
                .await
                .unwrap(),
            Publication::Written
        );
        assert_eq!(
            publish(&meta, indexer.path(), "idx-1", later, &mut published)
                .await
                .unwrap(),
            Publication::Unchanged,
            "unchanged: not written again"
        );
        let copy = mirror(&meta, replica.path(), &mut seen)
            .await
            .unwrap()
            .expect("a new copy");
        assert_eq!(copy.holder, "idx-1");
        assert_eq!(generation::load(replica.path()).unwrap(), Some(g));
        let mirrored = Registry::new(replica.path().join("repos.json")).load().unwrap();
        assert_eq!(mirrored.get("acme-auth"), Some(&record));
        assert!(
            mirror(&meta, replica.path(), &mut seen).await.unwrap().is_none(),
            "unchanged"
        );

        // a new indexer on a fresh volume starts from what was published;
        // the holder restarting on its own volume keeps its state
        let fresh = tempfile::tempdir().unwrap();
        assert_eq!(
            seed(&meta, fresh.path()).await.unwrap(),
            Seeded::Adopted { fresh: true }
        );
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
        std::fs::create_dir_all(indexer.path().join("state")).unwrap();
        assert_eq!(seed(&meta, indexer.path()).await.unwrap(), Seeded::Current);
        assert!(indexer.path().join("state").exists(), "its manifests are kept");
        // a volume that last indexed before another indexer took over takes
        // the published view and drops its manifests and unfinished builds
        let stale = tempfile::tempdir().unwrap();
        let old = Generation::for_model("old-fp", "chunking", 8, serde_json::json!({}));
        generation::save(stale.path(), &old).unwrap();
        for dir in ["state", "store/gen-aaaaaaaaaaaa.build", "store/gen-aaaaaaaaaaaa"] {
            std::fs::create_dir_all(stale.path().join(dir)).unwrap();
        }
        assert_eq!(
            seed(&meta, stale.path()).await.unwrap(),
            Seeded::Adopted { fresh: false }
        );
        assert_eq!(generation::load(stale.path()).unwrap(), copy.generation);
        assert!(!stale.path().join("state").exists() && !stale.path().join("store/gen-aaaaaaaaaaaa.build").exists());
        assert!(
            stale.path().join("store/gen-aaaaaaaaaaaa").exists(),
            "stores are not its to remove"
        );
        assert_eq!(
            seed(&MemoryMeta::default(), stale.path()).await.unwrap(),
            Seeded::NothingPublished
        );
        // a removal on the indexer reaches the replica
        registry.remove("acme-auth").unwrap();
        assert_eq!(
            publish(&meta, indexer.path(), "idx-1", later, &mut published)
                .await
                .unwrap(),
            Publication::Written
        );
        assert!(mirror(&meta, replica.path(), &mut seen).await.unwrap().is_some());
        // a renewed lease republishes with the new expiry; replicas see no change
        assert_eq!(
            publish(&meta, indexer.path(), "idx-1", later + 1, &mut published)
                .await
                .unwrap(),
            Publication::Written
        );
        assert!(mirror(&meta, replica.path(), &mut seen).await.unwrap().is_none());
        assert!(
            Registry::new(replica.path().join("repos.json"))
                .load()
                .unwrap()
                .is_empty()
        );

        // the last publisher that ran on after its last publication (a crash
        // before the final one) keeps its newer state
        registry
            .put(RepoRecord {
                name: "indexed-after".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(seed(&meta, indexer.path()).await.unwrap(), Seeded::Current);
        assert!(indexer.path().join("state").exists());
        // ...unless another holder published since, even the same content
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            seed(&meta, other.path()).await.unwrap(),
            Seeded::Adopted { fresh: true }
        );
        registry.remove("indexed-after").unwrap();
        let by_other = publish(&meta, other.path(), "idx-2", later, &mut None).await;
        assert_eq!(by_other.unwrap(), Publication::Refused { holder: "idx-1".into() });
        publish(&meta, indexer.path(), "idx-1", 0, &mut published)
            .await
            .unwrap();
        assert_eq!(
            publish(&meta, other.path(), "idx-2", later, &mut None).await.unwrap(),
            Publication::Written
        );
        registry
            .put(RepoRecord {
                name: "indexed-after".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            seed(&meta, indexer.path()).await.unwrap(),
            Seeded::Adopted { fresh: false }
        );
        assert!(!indexer.path().join("state").exists());
    }

    #[tokio::test]
    async fn a_former_holder_can_overwrite_neither_the_lease_nor_the_registry() {
        let meta: Arc<dyn MetaStore> = Arc::new(MemoryMeta::default());
        let (a, b) = (lease(&meta, 300), lease(&meta, 5_000));
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (dir, repo) in [(&dir_a, "from-a"), (&dir_b, "from-b")] {
            Registry::new(dir.path().join("repos.json"))
                .put(RepoRecord {
                    name: repo.into(),
                    ..Default::default()
                })
                .unwrap();
        }
        assert_eq!(a.try_acquire().await.unwrap(), None);
        assert!(a.expires_at_ms() > now_ms());
        let (mut pa, mut pb) = (None, None);
        let published = publish(meta.as_ref(), dir_a.path(), &a.holder, a.expires_at_ms(), &mut pa);
        assert_eq!(published.await.unwrap(), Publication::Written);
        // b cannot publish over a live holder
        let refused = publish(meta.as_ref(), dir_b.path(), &b.holder, now_ms() + 5_000, &mut pb);
        assert_eq!(
            refused.await.unwrap(),
            Publication::Refused {
                holder: a.holder.clone()
            }
        );

        // a is paused past its TTL; b takes over and publishes
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(b.try_acquire().await.unwrap(), None);
        let published = publish(meta.as_ref(), dir_b.path(), &b.holder, b.expires_at_ms(), &mut pb);
        assert_eq!(published.await.unwrap(), Publication::Written);

        // a wakes up: its renewal does not overwrite b's lease, and its
        // registry (changed meanwhile) is refused
        assert_eq!(a.renew().await.unwrap().map(|h| h.holder), Some(b.holder.clone()));
        assert_eq!(a.expires_at_ms(), 0);
        Registry::new(dir_a.path().join("repos.json"))
            .put(RepoRecord {
                name: "late".into(),
                ..Default::default()
            })
            .unwrap();
        let refused = publish(meta.as_ref(), dir_a.path(), &a.holder, now_ms() + 300, &mut pa);
        assert_eq!(
            refused.await.unwrap(),
            Publication::Refused {
                holder: b.holder.clone()
            }
        );
        let replica = tempfile::tempdir().unwrap();
        let copy = mirror(meta.as_ref(), replica.path(), &mut None).await.unwrap().unwrap();
        assert_eq!(copy.repos.keys().collect::<Vec<_>>(), ["from-b"]);
        assert_eq!(
            meta.get(LEASE_KEY).await.unwrap().unwrap()["holder"],
            serde_json::json!(b.holder)
        );

        // b exits: its last publication expires at once, so a successor
        // publishes without waiting for b's lease to run out
        let last = publish(meta.as_ref(), dir_b.path(), &b.holder, 0, &mut pb);
        assert_eq!(last.await.unwrap(), Publication::Written);
        b.release().await.unwrap();
        assert_eq!(a.try_acquire().await.unwrap(), None);
        let published = publish(meta.as_ref(), dir_a.path(), &a.holder, a.expires_at_ms(), &mut pa);
        assert_eq!(published.await.unwrap(), Publication::Written);
    }
}
