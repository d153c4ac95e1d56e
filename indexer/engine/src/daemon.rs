//! The indexer daemon: keeps the `[[repos]]` of the configuration fresh.
//!
//! One worker task per repo waits for its next scheduled time (`every` or
//! `cron`, with jitter), a trigger (reindex call, webhook, a change in a
//! watched local directory) or shutdown, then takes a slot of the global
//! concurrency limit and runs [`RepoIndexer::run`]. A repo runs at most once
//! at a time; triggers that arrive during a run queue exactly one follow-up
//! run (a [`Notify`] holds at most one permit). A failed run puts the repo
//! in `error` and retries it after an exponential backoff; other repos go on.
//!
//! A repo with no checkpoint (no registry record) is indexed as soon as the
//! daemon starts. Repos indexed with `cairn index` get a worker (without a
//! schedule) the first time they are triggered.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_indexer::embed::Embed;
use cairn_indexer::generation::{self, Generation};
use cairn_indexer::pipeline::Progress;
use cairn_indexer::registry::{Registry, RepoRecord};
use cairn_indexer::repo::{Phase, RepoIndexer, RepoSpec, RunProgress};
use serde::Serialize;
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use cairn_config::schedule::{Schedule, backoff, with_jitter};
use cairn_config::{Config, IndexerConfig, RepoConfig};
use cairn_indexer::serving::Serving;

use crate::metrics::{Metrics, RepoGauges};

/// How long a run in progress may go on after shutdown was asked for before
/// it is abandoned (its checkpoint has not moved, so nothing is lost).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// What a repo is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    #[default]
    Idle,
    Syncing,
    Indexing,
    /// The last run failed (`last_error` says why); retried after a backoff.
    Error,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Syncing => "syncing",
            Self::Indexing => "indexing",
            Self::Error => "error",
        }
    }
}

/// Progress of the run in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct RunProgressInfo {
    pub files_total: usize,
    pub files_done: usize,
    pub chunks_done: usize,
}

/// The status of one repo (`GET /v1/repos/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepoStatus {
    pub name: String,
    pub state: RunState,
    /// The newest commit known of the source (from the last run or a webhook).
    pub head_commit: Option<String>,
    /// The commit whose index is durable (the checkpoint).
    pub indexed_commit: Option<String>,
    pub files: usize,
    pub chunks: usize,
    /// Files not indexed, by reason.
    pub skipped: BTreeMap<String, usize>,
    pub last_indexed_at: Option<String>,
    pub last_error: Option<String>,
    /// Whether `[[repos]]` lists it (it then runs on a schedule).
    pub configured: bool,
    /// Present while a run is indexing.
    pub progress: Option<RunProgressInfo>,
}

/// Why a trigger or removal was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DaemonError {
    /// Neither configured nor indexed.
    UnknownRepo(String),
    /// Indexed but the source it came from is not a local path the daemon can reindex.
    NotReindexable(String),
    /// The daemon is shutting down.
    ShuttingDown,
}

#[derive(Debug, Default)]
struct WorkerState {
    state: RunState,
    last_error: Option<String>,
    failures: u32,
    pending_full: bool,
    head_commit: Option<String>,
    progress: Option<RunProgressInfo>,
}

struct Worker {
    notify: Notify,
    state: Mutex<WorkerState>,
    /// Held during a run and a removal, so they never overlap.
    run_lock: tokio::sync::Mutex<()>,
    /// Stops this worker (its repo was removed).
    stop: CancellationToken,
}

/// A new generation of the index being built (the embedding model changed;
/// see [`cairn_indexer::generation`]): runs go to it, and once every repo
/// has a checkpoint there the daemon switches searches over.
pub struct PendingSwitch {
    pub to: Generation,
    /// Runs after the switch: the new store and model, the data dir's registry.
    pub after: RepoIndexer,
    /// The serving generation's indexer (a purge removes from both).
    pub before: RepoIndexer,
    /// What searches use, and the pair that replaces it (the new model
    /// without the daemon's metrics wrapper).
    pub serving: Serving,
    pub embedder: Arc<dyn Embed>,
}

impl PendingSwitch {
    /// The switch `engine` is waiting for, if its model changed; `wrap`
    /// decorates the indexer used after it (metrics).
    pub fn of(
        engine: &crate::engine::Engine,
        config: &Config,
        wrap: impl Fn(RepoIndexer) -> RepoIndexer,
    ) -> Option<Self> {
        let m = engine.migration.as_ref()?;
        Some(Self {
            to: m.to.clone(),
            after: wrap(engine.switched_indexer(config)?),
            before: engine.serving_indexer(config),
            serving: engine.serving.clone(),
            embedder: m.embedder.clone(),
        })
    }
}

struct Inner {
    /// What runs use: the generation being built, else the serving one.
    indexer: std::sync::RwLock<RepoIndexer>,
    /// The serving generation's registry: status, access, groups.
    registry: Registry,
    migration: Mutex<Option<PendingSwitch>>,
    /// Runs hold it shared; a switch holds it exclusively.
    switching: tokio::sync::RwLock<()>,
    /// When the store was last optimized (or the daemon started).
    last_optimize: Mutex<Instant>,
    settings: IndexerConfig,
    /// Where the index lives (replaced Qdrant generations are dropped).
    store: cairn_config::store::StoreConfig,
    configured: BTreeMap<String, RepoConfig>,
    workers: Mutex<HashMap<String, Arc<Worker>>>,
    permits: Semaphore,
    waiting: AtomicUsize,
    running: AtomicUsize,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<RepoStatus>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// A worker's live state: phase, last error, head commit, progress.
type Live = (RunState, Option<String>, Option<String>, Option<RunProgressInfo>);

/// A repo's status from its registry record and, in the process that runs
/// it, the worker's live state (`None`: idle, as a retrieval replica sees
/// every repo).
pub fn record_status(name: &str, record: Option<&RepoRecord>, configured: bool, live: Option<Live>) -> RepoStatus {
    let (state, last_error, head, progress) = live.unwrap_or((RunState::Idle, None, None, None));
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let indexed = record.and_then(|r| nonempty(&r.indexed_commit));
    RepoStatus {
        name: name.to_string(),
        state,
        head_commit: head.or_else(|| indexed.clone()),
        indexed_commit: indexed,
        files: record.map_or(0, |r| r.files),
        chunks: record.map_or(0, |r| r.chunks),
        skipped: record
            .map(|r| r.skipped.iter().map(|(k, v)| (k.as_str().to_string(), *v)).collect())
            .unwrap_or_default(),
        last_indexed_at: record.and_then(|r| nonempty(&r.last_indexed_at)),
        last_error,
        configured,
        progress,
    }
}

/// A generation of the index, as status reports show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerationInfo {
    pub generation: String,
    /// The embedding model's fingerprint.
    pub model: String,
    pub dim: usize,
    /// The chunking signature.
    pub chunking: String,
}

impl GenerationInfo {
    fn of(g: &Generation) -> Self {
        Self {
            generation: g.name.clone(),
            model: g.fingerprint.clone(),
            dim: g.dim,
            chunking: g.chunking.clone(),
        }
    }
}

/// A generation being built, with the readable repos rebuilt and pending.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexBuild {
    #[serde(flatten)]
    pub generation: GenerationInfo,
    pub rebuilt: Vec<String>,
    pub pending: Vec<String>,
}

/// The index's generations: the one searches use and the one being built.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexStatus {
    pub serving: Option<GenerationInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub building: Option<IndexBuild>,
}

impl IndexStatus {
    /// The generation serving from the data dir at `root`, none building.
    pub fn serving(root: &Path) -> Self {
        Self {
            serving: generation::load(root).ok().flatten().as_ref().map(GenerationInfo::of),
            building: None,
        }
    }
}

/// The running daemon; clones share it.
#[derive(Clone)]
pub struct Daemon(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

impl Daemon {
    /// Starts the daemon over `indexer` for `config.repos`: prunes repos no
    /// longer configured (with `prune = true`), applies the configured
    /// groups and sensitivity to existing records, starts one worker per
    /// repo (indexing at once those without a checkpoint) and a watcher
    /// for each local directory. Everything stops when `shutdown` is
    /// cancelled; [`Daemon::wait`] waits for that.
    pub async fn start(
        indexer: RepoIndexer,
        config: &Config,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        Self::start_with(indexer, None, config, metrics, shutdown).await
    }

    /// [`Daemon::start`], building a new generation first when `pending`
    /// (then `indexer` is the new generation's).
    pub async fn start_with(
        indexer: RepoIndexer,
        pending: Option<PendingSwitch>,
        config: &Config,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let (events, _) = broadcast::channel(256);
        let registry = pending
            .as_ref()
            .map_or_else(|| indexer.registry.clone(), |p| p.before.registry.clone());
        let migrating = pending.is_some();
        let building = pending.as_ref().map(|p| p.to.name.clone());
        let inner = Inner {
            registry,
            migration: Mutex::new(pending),
            switching: tokio::sync::RwLock::new(()),
            last_optimize: Mutex::new(Instant::now()),
            settings: config.indexer.clone(),
            store: config.store.clone(),
            configured: config.repos.iter().map(|r| (r.name.clone(), r.clone())).collect(),
            workers: Mutex::new(HashMap::new()),
            permits: Semaphore::new(config.indexer.concurrency.max(1)),
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            metrics,
            events,
            shutdown,
            tasks: TaskTracker::new(),
            indexer: std::sync::RwLock::new(indexer),
        };
        let daemon = Self(Arc::new(inner));
        // generations replaced before the last stop
        if let Some(serving) = generation::load(&daemon.indexer().root).ok().flatten() {
            daemon.retire_replaced(serving.name, building, Duration::ZERO);
        }
        let records = daemon.0.registry.load()?;
        if config.prune {
            for name in records.keys().filter(|n| !daemon.0.configured.contains_key(*n)) {
                tracing::info!(repo = %name, "pruning a repo that [[repos]] does not list");
                daemon.purge(name).await?;
            }
        }
        // checkpoints of the generation runs write to
        let built = daemon.indexer().registry.load()?;
        for (name, repo) in &daemon.0.configured {
            daemon.apply_access(repo)?;
            let first = !built.contains_key(name);
            daemon.spawn_worker(repo.spec(), Some(repo.schedule()), first);
            let path = Path::new(&repo.url);
            if repo.is_local() && path.is_dir() && !cairn_indexer::source::is_git_repo(path) {
                daemon.watch(name.clone(), path.to_path_buf())?;
            }
        }
        if migrating {
            // repos indexed with `cairn index` are rebuilt from where they came
            for name in daemon.0.registry.load()?.keys() {
                if !daemon.0.configured.contains_key(name) && !built.contains_key(name) {
                    match daemon.trigger(name, false) {
                        Ok(()) | Err(DaemonError::NotReindexable(_)) => {}
                        Err(e) => tracing::warn!(repo = %name, error = ?e, "cannot rebuild for the new model"),
                    }
                }
            }
            daemon.maybe_switch().await;
        }
        daemon.0.tasks.close();
        Ok(daemon)
    }

    /// The indexer runs use now.
    fn indexer(&self) -> RepoIndexer {
        self.0.indexer.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether a new generation is being built.
    pub fn migrating(&self) -> Option<String> {
        lock(&self.0.migration).as_ref().map(|p| p.to.name.clone())
    }

    /// Removes `name` from the generation runs write to and, during a
    /// migration, from the serving one too.
    async fn purge(&self, name: &str) -> anyhow::Result<()> {
        let before = lock(&self.0.migration).as_ref().map(|p| p.before.clone());
        if let Some(before) = before {
            before.remove(name).await?;
        }
        self.indexer().remove(name).await?;
        Ok(())
    }

    /// Optimizes the store in the background when nothing is running or
    /// waiting and `optimize_every` passed since the last time. Incremental
    /// runs only flush, so this is what keeps the store compact and indexed.
    fn maybe_optimize(&self) {
        let Some(every) = self.0.settings.optimize_interval() else {
            return;
        };
        if self.0.running.load(Ordering::Relaxed) > 0 || self.0.waiting.load(Ordering::Relaxed) > 0 {
            return;
        }
        {
            let mut last = lock(&self.0.last_optimize);
            if last.elapsed() < every {
                return;
            }
            *last = Instant::now();
        }
        let store = self.indexer().store;
        let metrics = self.0.metrics.clone();
        self.0.tasks.spawn(async move {
            let started = Instant::now();
            match store.optimize().await {
                Ok(()) => {
                    metrics.optimizations.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(took_ms = started.elapsed().as_millis() as u64, "store optimized");
                }
                Err(e) => tracing::warn!(error = %e, "store optimization failed; it is retried later"),
            }
        });
    }

    /// The repos with a checkpoint in the generation `building` writes to,
    /// and those that can be rebuilt but have none yet (sorted names).
    fn rebuild_progress(&self, building: &RepoIndexer) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let built = building.registry.load()?;
        let serving = self.0.registry.load()?;
        let rebuildable = |name: &String| {
            self.0.configured.contains_key(name)
                || serving
                    .get(name)
                    .is_some_and(|r| !r.source.is_empty() && !r.source.contains("://") && Path::new(&r.source).exists())
        };
        let mut needed: Vec<String> = serving
            .keys()
            .chain(self.0.configured.keys())
            .filter(|n| rebuildable(n))
            .cloned()
            .collect();
        needed.sort();
        needed.dedup();
        let (done, pending) = needed.into_iter().partition(|n| built.contains_key(n));
        Ok((done, pending))
    }

    /// The index's generations for `GET /v1/repos` and gRPC `ListRepos`:
    /// the serving one and, while the model or chunking changes, the one
    /// being built with the readable repos already rebuilt and still to go.
    pub fn index_status(&self, visible: &[String]) -> IndexStatus {
        let indexer = self.indexer();
        let mut out = IndexStatus::serving(&indexer.root);
        let to = lock(&self.0.migration).as_ref().map(|p| p.to.clone());
        if let Some(to) = to
            && let Ok((done, pending)) = self.rebuild_progress(&indexer)
        {
            let only_visible =
                |names: Vec<String>| names.into_iter().filter(|n| visible.contains(n)).collect::<Vec<_>>();
            out.building = Some(IndexBuild {
                generation: GenerationInfo::of(&to),
                rebuilt: only_visible(done),
                pending: only_visible(pending),
            });
        }
        out
    }

    /// Switches searches and runs to the generation being built once every
    /// repo that can be rebuilt has a checkpoint in it.
    async fn maybe_switch(&self) {
        let Some(to) = lock(&self.0.migration).as_ref().map(|p| p.to.clone()) else {
            return;
        };
        let building = self.indexer();
        match self.rebuild_progress(&building) {
            Ok((_, pending)) if pending.is_empty() => {}
            Ok(_) => return,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot tell whether the new generation is complete");
                return;
            }
        }
        // no run writes while the generations change places
        let _exclusive = self.0.switching.write().await;
        // the pending switch stays visible until searches and runs moved
        let mut slot = lock(&self.0.migration);
        let Some(pending) = slot.as_ref() else {
            return;
        };
        match generation::switch(&building.root, &self.0.registry, &to) {
            Ok(dropped) => {
                for name in dropped {
                    tracing::warn!(repo = %name, "dropped at the model switch: its source is gone, so it could not be rebuilt");
                }
                pending
                    .serving
                    .replace(pending.embedder.clone(), pending.after.store.clone());
                *self.0.indexer.write().unwrap_or_else(|p| p.into_inner()) = pending.after.clone();
                *slot = None;
                tracing::info!(generation = %to.name, model = %to.fingerprint, "switched to the new generation of the index");
                self.retire_replaced(to.name.clone(), None, crate::engine::RETIRE_AFTER);
            }
            Err(e) => {
                tracing::error!(error = %e, "switching to the new generation failed; retrying after the next run");
            }
        }
    }

    /// Drops, `after` a grace period, the stores of generations other than
    /// `serving` and `building`: at start (nothing serves them), and after a
    /// switch once replicas moved on ([`crate::engine::RETIRE_AFTER`]).
    /// A shutdown first leaves them to the next start.
    fn retire_replaced(&self, serving: String, building: Option<String>, after: Duration) {
        let (store, shutdown) = (self.0.store.clone(), self.0.shutdown.clone());
        self.0.tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(after) => {}
            }
            if let Err(e) = crate::engine::drop_replaced_collections(&store, &serving, building.as_deref()).await {
                tracing::warn!(error = %format!("{e:#}"), "cannot drop the collections of replaced generations; the next start retries");
            }
        });
    }

    /// Waits until every worker and watcher stopped (after shutdown).
    pub async fn wait(&self) {
        self.0.tasks.wait().await;
    }

    /// The configuration of a repo listed in `[[repos]]`.
    pub fn configured(&self, name: &str) -> Option<&RepoConfig> {
        self.0.configured.get(name)
    }

    /// Every repo `[[repos]]` lists.
    pub fn configured_repos(&self) -> impl Iterator<Item = &RepoConfig> {
        self.0.configured.values()
    }

    /// Status events: one on every state change and progress step.
    pub fn subscribe(&self) -> broadcast::Receiver<RepoStatus> {
        self.0.events.subscribe()
    }

    /// The record the read rule checks for `name`: its registry record, or
    /// before its first run one carrying its configured groups and
    /// sensitivity. `None`: no such repo.
    pub fn access_record(&self, name: &str) -> anyhow::Result<Option<RepoRecord>> {
        let records = self.0.registry.load()?;
        Ok(match (records.get(name), self.0.configured.get(name)) {
            (Some(r), _) => Some(r.clone()),
            (None, Some(c)) => Some(RepoRecord {
                groups: c.groups.clone(),
                sensitivity: c.sensitivity.map(|s| s.as_str().to_string()).unwrap_or_default(),
                ..RepoRecord::default()
            }),
            (None, None) => None,
        })
    }

    /// The configured `maintainers` of `name` (principals or groups who may
    /// reindex or remove it besides admins); empty for unknown repos.
    pub fn maintainers(&self, name: &str) -> &[String] {
        self.0.configured.get(name).map_or(&[], |c| c.maintainers.as_slice())
    }

    /// Every configured or indexed repo, by name.
    pub fn list(&self) -> anyhow::Result<Vec<RepoStatus>> {
        let records = self.0.registry.load()?;
        let mut names: Vec<&String> = records.keys().chain(self.0.configured.keys()).collect();
        names.sort();
        names.dedup();
        Ok(names.into_iter().map(|n| self.status_of(n, records.get(n))).collect())
    }

    /// One repo's status, `None` when it is neither configured nor indexed.
    pub fn status(&self, name: &str) -> anyhow::Result<Option<RepoStatus>> {
        let records = self.0.registry.load()?;
        if !records.contains_key(name) && !self.0.configured.contains_key(name) {
            return Ok(None);
        }
        Ok(Some(self.status_of(name, records.get(name))))
    }

    fn status_of(&self, name: &str, record: Option<&RepoRecord>) -> RepoStatus {
        let worker = lock(&self.0.workers).get(name).cloned();
        let live = worker.map(|w| {
            let s = lock(&w.state);
            (s.state, s.last_error.clone(), s.head_commit.clone(), s.progress)
        });
        record_status(name, record, self.0.configured.contains_key(name), live)
    }

    /// Asks for a run of `name` (a rebuild when `full`). A run in progress
    /// finishes first; any number of triggers during it add one run.
    pub fn trigger(&self, name: &str, full: bool) -> Result<(), DaemonError> {
        self.trigger_at(name, full, None)
    }

    /// [`Daemon::trigger`] that also records the source's new head commit
    /// (from a webhook payload).
    pub fn trigger_at(&self, name: &str, full: bool, head: Option<String>) -> Result<(), DaemonError> {
        if self.0.shutdown.is_cancelled() {
            return Err(DaemonError::ShuttingDown);
        }
        let existing = lock(&self.0.workers).get(name).cloned();
        let worker = match existing {
            Some(w) => w,
            None => {
                // an indexed repo that is not configured: reindex it from where it came
                let record = self
                    .0
                    .registry
                    .load()
                    .ok()
                    .and_then(|mut r| r.remove(name))
                    .ok_or_else(|| DaemonError::UnknownRepo(name.to_string()))?;
                if record.source.is_empty() || record.source.contains("://") || !Path::new(&record.source).exists() {
                    return Err(DaemonError::NotReindexable(name.to_string()));
                }
                let spec = RepoSpec {
                    name: name.to_string(),
                    url: record.source,
                    ..RepoSpec::default()
                };
                self.spawn_worker(spec, None, false)
            }
        };
        {
            let mut s = lock(&worker.state);
            s.pending_full |= full;
            if head.is_some() {
                s.head_commit = head;
            }
        }
        worker.notify.notify_one();
        Ok(())
    }

    /// Purges `name` (points, mirror, cache entries, record), after any run
    /// of it in progress. A configured repo is indexed again at its next
    /// scheduled time; another one's worker stops.
    pub async fn remove(&self, name: &str) -> anyhow::Result<bool> {
        let existed = self.0.registry.load()?.contains_key(name);
        let worker = lock(&self.0.workers).get(name).cloned();
        match worker {
            Some(w) => {
                let _guard = w.run_lock.lock().await;
                self.purge(name).await?;
                *lock(&w.state) = WorkerState::default();
                if !self.0.configured.contains_key(name) {
                    w.stop.cancel();
                    lock(&self.0.workers).remove(name);
                }
            }
            None => self.purge(name).await?,
        }
        tracing::info!(repo = %name, "repo removed");
        Ok(existed || self.0.configured.contains_key(name))
    }

    /// The Prometheus text of the daemon's metrics, with per-repo series
    /// for the repos in `visible` only.
    pub fn metrics_text(&self, visible: &[String]) -> String {
        let now = chrono::Utc::now();
        let gauges: Vec<RepoGauges> = self
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| visible.contains(&s.name))
            .map(|s| RepoGauges {
                lag_seconds: s
                    .last_indexed_at
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| (now - t.with_timezone(&chrono::Utc)).num_milliseconds().max(0) as f64 / 1000.0),
                behind: s.head_commit != s.indexed_commit,
                name: s.name,
            })
            .collect();
        self.0.metrics.render(
            self.0.waiting.load(Ordering::Relaxed),
            self.0.running.load(Ordering::Relaxed),
            &gauges,
            visible,
        )
    }

    /// Sets the configured groups (and sensitivity, when given) on the
    /// repo's record, if it has one.
    fn apply_access(&self, repo: &RepoConfig) -> anyhow::Result<()> {
        let mut groups = repo.groups.clone();
        groups.sort();
        groups.dedup();
        self.0.registry.update(&repo.name, |record| {
            let mut record = record?;
            record.groups = groups;
            if let Some(s) = repo.sensitivity {
                record.sensitivity = s.as_str().to_string();
            }
            Some(record)
        })?;
        Ok(())
    }

    fn spawn_worker(&self, spec: RepoSpec, schedule: Option<Schedule>, run_now: bool) -> Arc<Worker> {
        let worker = Arc::new(Worker {
            notify: Notify::new(),
            state: Mutex::new(WorkerState::default()),
            run_lock: tokio::sync::Mutex::new(()),
            stop: self.0.shutdown.child_token(),
        });
        lock(&self.0.workers).insert(spec.name.clone(), worker.clone());
        let daemon = self.clone();
        let w = worker.clone();
        self.0
            .tasks
            .spawn(async move { daemon.worker_loop(spec, schedule, w, run_now).await });
        worker
    }

    fn next_due(&self, schedule: Option<&Schedule>) -> Option<Instant> {
        schedule.map(|s| {
            let delay = with_jitter(s.delay_from(chrono::Utc::now()), self.0.settings.jitter, random_unit());
            Instant::now() + delay
        })
    }

    async fn worker_loop(self, spec: RepoSpec, schedule: Option<Schedule>, worker: Arc<Worker>, run_now: bool) {
        let mut due = if run_now {
            Some(Instant::now())
        } else {
            self.next_due(schedule.as_ref())
        };
        let stop = worker.stop.clone();
        loop {
            let sleep = async {
                match due {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = worker.notify.notified() => {}
                _ = sleep => {}
            }
            self.0.waiting.fetch_add(1, Ordering::Relaxed);
            let permit = tokio::select! {
                p = self.0.permits.acquire() => p,
                _ = stop.cancelled() => {
                    self.0.waiting.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            };
            self.0.waiting.fetch_sub(1, Ordering::Relaxed);
            let Ok(_permit) = permit else { return };
            let full = std::mem::take(&mut lock(&worker.state).pending_full);
            let ok = self.run_once(&spec, full, &worker).await;
            if ok == Some(true) {
                self.maybe_switch().await;
                self.maybe_optimize();
            }
            due = match ok {
                Some(true) => self.next_due(schedule.as_ref()),
                Some(false) => {
                    let failures = lock(&worker.state).failures;
                    let (base, max) = self.0.settings.backoff_bounds();
                    let wait = backoff(failures, base, max);
                    tracing::info!(repo = %spec.name, failures, retry_in_s = wait.as_secs(), "retrying after backoff");
                    Some(Instant::now() + wait)
                }
                None => return,
            };
        }
    }

    /// One run; `None` when it was abandoned at shutdown.
    async fn run_once(&self, spec: &RepoSpec, full: bool, worker: &Arc<Worker>) -> Option<bool> {
        let _guard = worker.run_lock.lock().await;
        let name = spec.name.as_str();
        self.0.running.fetch_add(1, Ordering::Relaxed);
        let progress = StatusProgress {
            daemon: self.clone(),
            worker: worker.clone(),
            name: name.to_string(),
        };
        progress.set(|s| {
            s.state = RunState::Syncing;
            s.progress = None;
        });
        let started = Instant::now();
        let shutdown = self.0.shutdown.clone();
        let outcome = {
            let _shared = self.0.switching.read().await;
            let indexer = self.indexer();
            tokio::select! {
                r = CatchUnwind(Box::pin(indexer.run(spec, full, &progress))) => Some(r.unwrap_or_else(|panic| {
                    // a bug, not a bad repo: the run fails like any other and its checkpoint stays
                    let message = cairn_indexer::pipeline::panic_message(panic.as_ref());
                    Err(cairn_indexer::IndexError::Internal(format!("the indexing run panicked: {message}")))
                })),
                _ = async {
                    shutdown.cancelled().await;
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                } => None,
            }
        };
        self.0.running.fetch_sub(1, Ordering::Relaxed);
        let seconds = started.elapsed().as_secs_f64();
        let m = &self.0.metrics;
        let ok = match outcome {
            None => {
                tracing::warn!(repo = %name, "run abandoned at shutdown; its checkpoint did not move");
                return None;
            }
            Some(Ok(report)) => {
                m.run_seconds.observe(seconds);
                m.runs_ok.fetch_add(1, Ordering::Relaxed);
                m.files_indexed.fetch_add(report.index.files as u64, Ordering::Relaxed);
                m.chunks_indexed
                    .fetch_add(report.index.chunks as u64, Ordering::Relaxed);
                m.chunks_embedded
                    .fetch_add(report.chunks_embedded as u64, Ordering::Relaxed);
                if let Some(repo) = self.0.configured.get(name)
                    && let Err(e) = self.apply_access(repo)
                {
                    tracing::error!(repo = %name, error = %e, "failed to set the repo's groups");
                }
                tracing::info!(
                    repo = %name,
                    commit = %report.index.commit,
                    files = report.index.files,
                    chunks = report.index.chunks,
                    chunks_embedded = report.chunks_embedded,
                    files_changed = report.files_changed,
                    full = report.full,
                    took_ms = (seconds * 1000.0) as u64,
                    "indexed"
                );
                let commit = report.index.commit;
                progress.set(|s| {
                    s.state = RunState::Idle;
                    s.last_error = None;
                    s.failures = 0;
                    s.progress = None;
                    if !commit.is_empty() {
                        s.head_commit = Some(commit);
                    }
                });
                true
            }
            Some(Err(e)) => {
                m.run_seconds.observe(seconds);
                m.failed(name);
                // errors can quote a remote's URL (git's do): never its credentials
                let message = cairn_indexer::sync::scrub_urls(&e.to_string());
                tracing::error!(repo = %name, error = %message, "indexing run failed");
                progress.set(|s| {
                    s.state = RunState::Error;
                    s.last_error = Some(message);
                    s.failures = s.failures.saturating_add(1);
                    s.progress = None;
                });
                false
            }
        };
        Some(ok)
    }

    /// Watches a local directory: after `debounce_ms` without further
    /// changes, triggers a run.
    fn watch(&self, name: String, path: PathBuf) -> anyhow::Result<()> {
        use notify::{EventKind, RecursiveMode, Watcher};
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(64);
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(e) = event
                && matches!(
                    e.kind,
                    EventKind::Create(_)
                        | EventKind::Modify(_)
                        | EventKind::Remove(_)
                        | EventKind::Access(notify::event::AccessKind::Close(notify::event::AccessMode::Write))
                )
            {
                // a full channel already holds a pending change
                let _ = tx.try_send(());
            }
        })?;
        watcher.watch(&path, RecursiveMode::Recursive)?;
        tracing::info!(repo = %name, path = %path.display(), "watching a local directory");
        let debounce = Duration::from_millis(self.0.settings.debounce_ms);
        let daemon = self.clone();
        let stop = self.0.shutdown.clone();
        self.0.tasks.spawn(async move {
            let _watcher = watcher;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    ev = rx.recv() => if ev.is_none() { return },
                }
                loop {
                    match tokio::time::timeout(debounce, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                tracing::debug!(repo = %name, "local directory changed");
                if daemon.trigger(&name, false).is_err() {
                    return;
                }
            }
        });
        Ok(())
    }
}

/// Feeds a run's phase and progress into the worker's state and the event stream.
/// Resolves to `Err` with the panic's payload when polling the future
/// panics, so a panic in a run fails that run instead of killing the
/// repo's worker task (which would leave it `indexing` forever).
struct CatchUnwind<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let future = self.get_mut().0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.poll(cx))) {
            Ok(std::task::Poll::Ready(out)) => std::task::Poll::Ready(Ok(out)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    }
}

struct StatusProgress {
    daemon: Daemon,
    worker: Arc<Worker>,
    name: String,
}

impl StatusProgress {
    fn set(&self, f: impl FnOnce(&mut WorkerState)) {
        f(&mut lock(&self.worker.state));
        if self.daemon.0.events.receiver_count() > 0
            && let Ok(Some(status)) = self.daemon.status(&self.name)
        {
            let _ = self.daemon.0.events.send(status);
        }
    }
}

impl Progress for StatusProgress {
    fn start(&self, files: usize) {
        self.set(|s| {
            s.progress = Some(RunProgressInfo {
                files_total: files,
                ..RunProgressInfo::default()
            })
        });
    }

    fn advance(&self, files_done: usize, chunks_done: usize) {
        self.set(|s| {
            let p = s.progress.get_or_insert_with(RunProgressInfo::default);
            p.files_done = files_done;
            p.chunks_done = chunks_done;
        });
    }
}

impl RunProgress for StatusProgress {
    fn phase(&self, phase: Phase) {
        self.set(|s| {
            s.state = match phase {
                Phase::Syncing => RunState::Syncing,
                Phase::Indexing => RunState::Indexing,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_indexer::datadir::DataDir;
    use cairn_indexer::embed::{Embed, Embedded, HashEmbedder};

    use crate::engine::Engine;

    /// A deterministic embedder slow enough that a run is still going when
    /// the test triggers more.
    struct Slow(HashEmbedder);

    impl Embed for Slow {
        fn dim(&self) -> usize {
            self.0.dim()
        }
        fn fingerprint(&self) -> &str {
            self.0.fingerprint()
        }
        fn embed_documents(&self, texts: &[&str]) -> cairn_indexer::error::Result<Embedded> {
            std::thread::sleep(Duration::from_millis(300));
            self.0.embed_documents(texts)
        }
        fn embed_query(&self, text: &str) -> cairn_indexer::error::Result<Vec<f32>> {
            self.0.embed_query(text)
        }
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..600 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn triggers_during_a_run_queue_one_follow_up_and_failures_do_not_stop_others() {
        let data = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.rs"), "fn alpha() -> u32 { 1 }\n").unwrap();
        let repo = |name: &str, url: &str| RepoConfig {
            name: name.into(),
            url: url.into(),
            every: Some("1h".into()),
            groups: vec!["dev".into()],
            sensitivity: Some(cairn_config::Sensitivity::Confidential),
            ..RepoConfig::default()
        };
        let mut config = Config {
            repos: vec![
                repo("local", src.path().to_str().unwrap()),
                repo("remote", "https://git.invalid/x.git"),
            ],
            ..Config::default()
        };
        config.indexer.backoff = "1h".into();
        config.indexer.debounce_ms = 100;
        let dir = DataDir::open(data.path(), "test").unwrap();
        let engine = Engine::with_embedder(&config, dir, Arc::new(Slow(HashEmbedder::new(32)))).unwrap();
        let metrics = Arc::new(Metrics::default());
        let shutdown = CancellationToken::new();
        let daemon = Daemon::start(engine.repo_indexer(&config), &config, metrics.clone(), shutdown.clone())
            .await
            .unwrap();
        let status = |n: &str| daemon.status(n).unwrap().unwrap();

        // both had no checkpoint: both run at once; the remote one fails, the local one is indexed
        until("the first runs", || {
            status("local").last_indexed_at.is_some() && status("remote").state == RunState::Error
        })
        .await;
        assert!(status("remote").last_error.is_some());
        assert_eq!(status("local").state, RunState::Idle);
        let record = engine.data.registry().load().unwrap().remove("local").unwrap();
        assert_eq!(record.groups, ["dev"], "configured groups reach the record");
        assert_eq!(record.sensitivity, "confidential");
        assert_eq!(metrics.runs_failed.load(Ordering::Relaxed), 1);
        let runs = || metrics.runs_ok.load(Ordering::Relaxed);
        assert_eq!(runs(), 1);

        // five triggers during one run: exactly one follow-up run. The run
        // must have something to embed to last (runs are incremental), so
        // it is started by an edit the watcher sees, not by a trigger.
        std::fs::write(src.path().join("a.rs"), "fn alpha() -> u32 { 11 }\n").unwrap();
        until("the run to start", || status("local").state != RunState::Idle).await;
        for _ in 0..5 {
            daemon.trigger("local", false).unwrap();
        }
        until("two more runs", || {
            runs() == 3 && status("local").state == RunState::Idle
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(runs(), 3, "no run beyond the one follow-up");

        // a watched directory: a saved file is reindexed without a trigger
        std::fs::write(src.path().join("b.rs"), "fn beta() -> u32 { 2 }\n").unwrap();
        until("the watcher's run", || {
            runs() >= 4 && status("local").state == RunState::Idle
        })
        .await;
        until("b.rs indexed", || status("local").files == 2).await;

        assert_eq!(
            daemon.trigger("nope", false),
            Err(DaemonError::UnknownRepo("nope".into()))
        );
        assert!(daemon.remove("local").await.unwrap());
        assert!(status("local").indexed_commit.is_none() && status("local").last_indexed_at.is_none());
        shutdown.cancel();
        daemon.wait().await;
        assert_eq!(daemon.trigger("local", false), Err(DaemonError::ShuttingDown));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_store_is_optimized_when_idle_not_after_every_run() {
        let data = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.rs"), "fn alpha() -> u32 { 1 }\n").unwrap();
        let mut config = Config {
            repos: vec![RepoConfig {
                name: "local".into(),
                url: src.path().to_str().unwrap().into(),
                every: Some("1h".into()),
                ..RepoConfig::default()
            }],
            ..Config::default()
        };
        config.indexer.optimize_every = "1s".into();
        config.indexer.debounce_ms = 50;
        let engine = Engine::with_embedder(
            &config,
            DataDir::open(data.path(), "test").unwrap(),
            Arc::new(HashEmbedder::new(16)),
        )
        .unwrap();
        let metrics = Arc::new(Metrics::default());
        let shutdown = CancellationToken::new();
        let daemon = Daemon::start(engine.repo_indexer(&config), &config, metrics.clone(), shutdown.clone())
            .await
            .unwrap();
        let runs = || metrics.runs_ok.load(Ordering::Relaxed);
        let optimized = || metrics.optimizations.load(Ordering::Relaxed);
        until("the first run", || runs() == 1).await;
        assert_eq!(optimized(), 0, "not before optimize_every passed");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        std::fs::write(src.path().join("a.rs"), "fn alpha() -> u32 { 2 }\n").unwrap();
        until("the second run", || runs() == 2).await;
        until("an optimization after it", || optimized() == 1).await;
        // a run right after does not optimize again
        std::fs::write(src.path().join("a.rs"), "fn alpha() -> u32 { 3 }\n").unwrap();
        until("the third run", || runs() == 3).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(optimized(), 1);
        assert!(daemon.metrics_text(&[]).contains("cairn_store_optimizations_total 1"));
        // the index is intact after it
        assert_eq!(daemon.status("local").unwrap().unwrap().chunks, 1);
        shutdown.cancel();
        daemon.wait().await;
    }

    /// Like `inner`, but its fingerprint panics while `panic` is set: a
    /// panic on the run's own task (not a pipeline thread), mid-run.
    struct PanicsOnTheRunsTask {
        inner: HashEmbedder,
        panic: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Embed for PanicsOnTheRunsTask {
        fn dim(&self) -> usize {
            self.inner.dim()
        }
        fn fingerprint(&self) -> &str {
            if self.panic.load(Ordering::SeqCst) {
                panic!("injected panic");
            }
            self.inner.fingerprint()
        }
        fn embed_documents(&self, texts: &[&str]) -> cairn_indexer::error::Result<Embedded> {
            self.inner.embed_documents(texts)
        }
        fn embed_query(&self, text: &str) -> cairn_indexer::error::Result<Vec<f32>> {
            self.inner.embed_query(text)
        }
    }

    /// A run that panics is a failed run: the repo shows `error` with the
    /// panic, the failure is counted, the checkpoint stays, and the worker
    /// lives on to run again (before, the panic ended the worker's task and
    /// the repo stayed `syncing` for good).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_panicking_run_fails_and_the_checkpoint_stays() {
        let data = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.rs"), "fn alpha() -> u32 { 1 }\n").unwrap();
        let mut config = Config {
            repos: vec![RepoConfig {
                name: "local".into(),
                url: src.path().to_str().unwrap().into(),
                every: Some("1h".into()),
                ..RepoConfig::default()
            }],
            ..Config::default()
        };
        config.indexer.backoff = "1h".into();
        config.indexer.debounce_ms = 50;
        let panic = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let embedder = PanicsOnTheRunsTask {
            inner: HashEmbedder::new(16),
            panic: panic.clone(),
        };
        let engine =
            Engine::with_embedder(&config, DataDir::open(data.path(), "test").unwrap(), Arc::new(embedder)).unwrap();
        let metrics = Arc::new(Metrics::default());
        let shutdown = CancellationToken::new();
        let daemon = Daemon::start(engine.repo_indexer(&config), &config, metrics.clone(), shutdown.clone())
            .await
            .unwrap();
        let status = || daemon.status("local").unwrap().unwrap();
        let record = || engine.data.registry().load().unwrap().remove("local");
        let runs_ok = || metrics.runs_ok.load(Ordering::Relaxed);
        until("the first run", || runs_ok() == 1 && status().state == RunState::Idle).await;
        let before = record();
        assert_eq!(before.as_ref().map(|r| r.files), Some(1));

        panic.store(true, Ordering::SeqCst);
        std::fs::write(src.path().join("b.rs"), "fn beta() -> u32 { 2 }\n").unwrap();
        daemon.trigger("local", false).unwrap();
        until("the run to fail", || status().state == RunState::Error).await;
        let failed = status();
        let error = failed.last_error.unwrap_or_default();
        assert!(error.contains("panicked: injected panic"), "{error}");
        assert!(failed.progress.is_none());
        assert!(metrics.runs_failed.load(Ordering::Relaxed) >= 1);
        assert_eq!(record(), before, "the checkpoint did not move");

        panic.store(false, Ordering::SeqCst);
        daemon.trigger("local", false).unwrap();
        until("a good run", || runs_ok() >= 2 && status().state == RunState::Idle).await;
        assert_eq!(status().files, 2);
        assert!(status().last_error.is_none());
        shutdown.cancel();
        daemon.wait().await;
    }

    /// Embeds documents only once `open` is set (a rebuild that is still
    /// going), then like `inner`; queries at once.
    struct Gated {
        inner: HashEmbedder,
        open: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Embed for Gated {
        fn dim(&self) -> usize {
            self.inner.dim()
        }
        fn fingerprint(&self) -> &str {
            self.inner.fingerprint()
        }
        fn embed_documents(&self, texts: &[&str]) -> cairn_indexer::error::Result<Embedded> {
            while !self.open.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.inner.embed_documents(texts)
        }
        fn embed_query(&self, text: &str) -> cairn_indexer::error::Result<Vec<f32>> {
            self.inner.embed_query(text)
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_model_change_builds_a_new_generation_and_switches_when_it_is_complete() {
        use cairn_indexer::pipeline::NoProgress;
        use cairn_indexer::sparse;
        use cairn_indexer::store::SearchFilter;

        let data = tempfile::tempdir().unwrap();
        let (local, cli, gone) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        std::fs::write(
            local.path().join("invoice.rs"),
            "fn settle_invoice_total() -> u32 { 1 }\n",
        )
        .unwrap();
        std::fs::write(cli.path().join("keys.py"), "def rotate_signing_keys():\n    return 2\n").unwrap();
        std::fs::write(
            gone.path().join("old.go"),
            "package old\nfunc Legacy() int { return 3 }\n",
        )
        .unwrap();
        let mut config = Config {
            repos: vec![RepoConfig {
                name: "local".into(),
                url: local.path().to_str().unwrap().into(),
                every: Some("1h".into()),
                groups: vec!["dev".into()],
                ..RepoConfig::default()
            }],
            data_dir: data.path().to_path_buf(),
            ..Config::default()
        };
        config.embed.kind = cairn_config::EmbedKind::Hash;
        config.embed.hash_dim = 32;

        // generation 1 (32-d): three repos, one of them only through `cairn index`
        {
            let engine = Engine::open(&config, "test").unwrap();
            for (name, dir) in [("local", &local), ("cli", &cli), ("gone", &gone)] {
                engine.index(dir.path(), name, &config, &NoProgress).await.unwrap();
            }
            engine.set_groups("cli", vec!["ops".into()]).unwrap();
            assert_eq!(engine.generation.name, generation::LEGACY);
        }
        let gone_path = gone.path().to_path_buf();
        drop(gone);
        assert!(!gone_path.exists());

        // generation 2 (48-d): its documents wait at the gate
        config.embed.hash_dim = 48;
        let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let engine = Engine::with_embedder(
            &config,
            DataDir::open(data.path(), "test").unwrap(),
            Arc::new(Gated {
                inner: HashEmbedder::new(48),
                open: open.clone(),
            }),
        )
        .unwrap();
        let to = engine
            .migration
            .as_ref()
            .expect("a new model starts a migration")
            .to
            .clone();
        assert_eq!((engine.generation.dim, to.dim), (32, 48));
        // what a search reads: the serving pair, embedder and store together
        // (the dense query must fit the store's vectors; BM25 ranks the files)
        let pair = engine.serving.clone();
        let search = |q: &str| {
            let (pair, q) = (pair.clone(), q.to_string());
            async move {
                let (embedder, store) = pair.get();
                let filter = SearchFilter::default();
                let vector = embedder.embed_query(&q).unwrap();
                store.search_dense(vector, &filter, 3).await.unwrap();
                let hits = store.search_sparse(sparse::query_vector(&q), &filter, 3).await.unwrap();
                hits.into_iter().map(|h| h.payload).collect::<Vec<_>>()
            }
        };
        let shutdown = CancellationToken::new();
        let daemon = Daemon::start_with(
            engine.repo_indexer(&config),
            PendingSwitch::of(&engine, &config, |i| i),
            &config,
            Arc::new(Metrics::default()),
            shutdown.clone(),
        )
        .await
        .unwrap();
        assert_eq!(daemon.migrating(), Some(to.name.clone()));
        until("a rebuild run to start", || {
            ["local", "cli"]
                .iter()
                .any(|n| daemon.status(n).unwrap().unwrap().state != RunState::Idle)
        })
        .await;

        // meanwhile searches answer from generation 1, with its model
        let hits = search("settle invoice total").await;
        assert_eq!(hits.first().map(|h| h.path.as_str()), Some("invoice.rs"), "{hits:?}");
        assert_eq!(engine.serving.get().0.dim(), 32);
        assert_eq!(
            daemon.migrating(),
            Some(to.name.clone()),
            "nothing switched before the build completed"
        );
        assert_eq!(generation::load(data.path()).unwrap().unwrap().dim, 32);
        let all = ["cli".to_string(), "gone".to_string(), "local".to_string()];
        let status = serde_json::to_value(daemon.index_status(&all)).unwrap();
        assert_eq!(status["serving"]["dim"], 32, "{status}");
        assert_eq!(status["building"]["generation"], to.name.as_str(), "{status}");
        assert_eq!(
            status["building"]["pending"],
            serde_json::json!(["cli", "local"]),
            "{status}"
        );
        assert_eq!(
            serde_json::to_value(daemon.index_status(&["local".to_string()])).unwrap()["building"]["pending"],
            serde_json::json!(["local"]),
            "only readable repos are named"
        );

        open.store(true, Ordering::SeqCst);
        until("the switch", || daemon.migrating().is_none()).await;
        let serving = generation::load(data.path()).unwrap().unwrap();
        assert_eq!((serving.name.as_str(), serving.dim), (to.name.as_str(), 48));
        let status = serde_json::to_value(daemon.index_status(&all)).unwrap();
        assert!(
            status.get("building").is_none() && status["serving"]["dim"] == 48,
            "{status}"
        );
        let records = engine.data.registry().load().unwrap();
        assert_eq!(
            records.keys().collect::<Vec<_>>(),
            ["cli", "local"],
            "gone could not be rebuilt"
        );
        assert_eq!(records["cli"].groups, ["ops"], "readers carry over");
        assert_eq!(records["local"].groups, ["dev"]);
        assert!(records.values().all(|r| r.embedder == "hash-48"));
        assert_eq!(engine.serving.get().0.dim(), 48);
        let hits = search("rotate signing keys").await;
        assert_eq!(hits.first().map(|h| h.path.as_str()), Some("keys.py"), "{hits:?}");
        assert!(hits.iter().all(|h| h.repo != "gone"));

        // runs after the switch go to the new generation with the data dir's checkpoints
        std::fs::write(local.path().join("refund.rs"), "fn issue_refund() -> u32 { 4 }\n").unwrap();
        daemon.trigger("local", false).unwrap();
        until("the refund indexed", || {
            daemon.status("local").unwrap().unwrap().files == 2
        })
        .await;
        let hits = search("issue refund").await;
        assert_eq!(hits.first().map(|h| h.path.as_str()), Some("refund.rs"), "{hits:?}");
        shutdown.cancel();
        daemon.wait().await;
        drop((daemon, pair, engine));

        // the next start serves generation 2 and removes generation 1's store
        let engine = Engine::open(&config, "test").unwrap();
        assert!(engine.migration.is_none());
        assert_eq!(engine.generation.name, to.name);
        assert!(!data.path().join("store/edge").exists());
        assert!(!generation::build_dir(data.path(), &to.name).exists());
    }
}
