//! Configuration: defaults → TOML file (`--config FILE` or `CAIRN_CONFIG`,
//! never picked up implicitly) → `CAIRN_*` environment variables (`__` for
//! nesting: `CAIRN_SERVER__HTTP=0.0.0.0:7700`) → command-line flags.
//!
//! Unknown keys are errors, and [`Config::validate`] reports every problem at
//! once.
//!
//! This crate is a leaf above the index: every `[section]` as plain data
//! with its defaults and checks, and nothing that acts on them. Features
//! read their section from here; nothing here imports a feature.
//!
//! # Layout
//! - this file: [`Config`], loading (file → environment → flags) and [`Config::validate`];
//!   `[server]`, `[embed]`, `[indexer]`, `[[repos]]`, `[answer]`, `[secrets]`, `[log]`.
//! - [`audit`]: `[audit]`; [`auth`]: `[auth]`, `[auth.oidc]` and the name rules for groups;
//!   [`limits`]: `[limits]`; [`tls`]: `[server.tls]`; [`search`]: `[search]` ranking settings;
//!   [`store`]: `[store]`; [`schedule`]: `every`/`cron` schedules, jitter and backoff.

pub mod audit;
pub mod auth;
pub mod limits;
pub mod schedule;
pub mod search;
pub mod store;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cairn_indexer::embed::{ModelSettings, Provider};
use serde::{Deserialize, Serialize};

use crate::search::RankSettings;

/// Runtime library and default model, installed by `make setup` under the
/// project-local `.local/` directory.
pub const DEFAULT_RUNTIME: &str = ".local/onnxruntime/libonnxruntime.so.1.31.1";
pub const DEFAULT_MODEL: &str = ".local/models/all-minilm-l6-v2-int8";
pub const DEFAULT_DATA_DIR: &str = ".cairn/data";
/// Info for cairn; only warnings from ONNX Runtime and errors from the embedded engine, which are chatty.
pub const DEFAULT_LOG_LEVEL: &str = "info,ort=warn,qdrant_edge=error";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the index, registry and lock live.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub embed: EmbedConfig,
    pub index: IndexConfig,
    pub search: RankSettings,
    /// Context assembly and answers (`[answer]`).
    pub answer: AnswerConfig,
    /// OpenAI-compatible LLM backends (`[[backends]]`); empty: no answers.
    pub backends: Vec<BackendConfig>,
    pub log: LogConfig,
    pub audit: audit::AuditConfig,
    pub auth: auth::AuthConfig,
    /// The vector store (`[store]`): embedded (default) or a Qdrant server.
    pub store: store::StoreConfig,
    /// Repos the daemon follows (`[[repos]]`).
    pub repos: Vec<RepoConfig>,
    /// When the daemon starts, purge every indexed repo that `[[repos]]`
    /// does not list (repos indexed with `cairn index` included). Off: they
    /// stay until `DELETE /v1/repos/{name}` or `cairn repo remove`.
    pub prune: bool,
    /// The daemon's scheduler (`[indexer]`).
    pub indexer: IndexerConfig,
    /// Webhook secrets (`[webhooks]`).
    pub webhooks: WebhookConfig,
    /// Per-principal request-rate and concurrency caps (`[limits]`).
    pub limits: limits::LimitsConfig,
    /// Extra secret rules (`[secrets]`).
    pub secrets: SecretsConfig,
    /// `CAIRN_*` variables that cannot be configuration keys and were
    /// ignored (see [`not_a_config_key`]); logged once logging is set up.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

/// One repository the daemon follows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RepoConfig {
    /// Name its points are filed under (`acme/auth` style names allowed).
    pub name: String,
    /// `https://`, `ssh://`, `file://` URL, or a local path (a git repo, or a
    /// plain directory, which is watched for changes).
    pub url: String,
    /// Branch to follow; unset: the remote HEAD.
    pub branch: Option<String>,
    /// Interval between runs (`10m`, `1h30m`); default `15m` unless `cron` is set.
    pub every: Option<String>,
    /// 5-field cron expression in UTC, instead of `every`.
    pub cron: Option<String>,
    /// Globs of paths to index (empty: everything).
    pub include: Vec<String>,
    /// Globs of paths never to index.
    pub exclude: Vec<String>,
    /// Set on the repo's record; unset keeps what it has (`internal` when none).
    pub sensitivity: Option<Sensitivity>,
    /// Groups that may read it (besides `admin`).
    pub groups: Vec<String>,
    /// Principals or groups that may trigger a reindex or remove it (besides `admin`).
    pub maintainers: Vec<String>,
    /// Environment variable holding an HTTPS token.
    pub token_env: Option<String>,
    /// Private key for ssh:// remotes.
    pub ssh_key: Option<PathBuf>,
    /// Extra CA certificates (PEM) for HTTPS.
    pub ca_bundle: Option<PathBuf>,
    /// known_hosts file for ssh:// remotes.
    pub known_hosts: Option<PathBuf>,
    /// HTTP(S) proxy URL.
    pub proxy: Option<String>,
}

/// Default interval of a repo without `every` or `cron`.
pub const DEFAULT_EVERY: &str = "15m";

impl RepoConfig {
    /// The repo's schedule (call after [`Config::validate`]; a bad value
    /// falls back to the default interval).
    pub fn schedule(&self) -> crate::schedule::Schedule {
        use crate::schedule::{Cron, Schedule, parse_duration};
        if let Some(c) = self.cron.as_deref().and_then(|c| Cron::parse(c).ok()) {
            return Schedule::Cron(c);
        }
        let every = self.every.as_deref().unwrap_or(DEFAULT_EVERY);
        Schedule::Every(parse_duration(every).unwrap_or(std::time::Duration::from_secs(900)))
    }

    /// What the indexer needs to know about it.
    pub fn spec(&self) -> cairn_indexer::repo::RepoSpec {
        cairn_indexer::repo::RepoSpec {
            name: self.name.clone(),
            url: self.url.clone(),
            branch: self.branch.clone(),
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            credentials: cairn_indexer::repo::Credentials {
                token_env: self.token_env.clone(),
                ssh_key: self.ssh_key.clone(),
                ca_bundle: self.ca_bundle.clone(),
                known_hosts: self.known_hosts.clone(),
                proxy: self.proxy.clone(),
            },
            access: Some(cairn_indexer::repo::RepoAccess {
                groups: {
                    let mut g = self.groups.clone();
                    g.sort();
                    g.dedup();
                    g
                },
                sensitivity: self.sensitivity.map(|s| s.as_str().to_string()),
            }),
        }
    }

    /// Whether `url` is a local path (no scheme).
    pub fn is_local(&self) -> bool {
        !self.url.contains("://")
    }

    fn validate(&self, i: usize, errors: &mut Vec<String>) {
        let at = if self.name.is_empty() {
            format!("repos[{i}]")
        } else {
            format!("repos.{}", self.name)
        };
        if let Err(e) = validate_repo_name(&self.name) {
            errors.push(format!("{at}.name: {e}"));
        }
        let url = self.url.as_str();
        if url.is_empty() {
            errors.push(format!("{at}.url: must not be empty"));
        } else if url.contains("://")
            && !["https://", "http://", "ssh://", "file://"]
                .iter()
                .any(|s| url.starts_with(s))
        {
            errors.push(format!(
                "{at}.url: {:?} must be an https://, ssh://, file:// URL or a local path",
                cairn_indexer::sync::display_url(url)
            ));
        }
        if self.branch.as_deref().is_some_and(|b| {
            b.is_empty() || b.starts_with('-') || b.contains("..") || b.chars().any(|c| c.is_whitespace() || c == ':')
        }) {
            errors.push(format!("{at}.branch: {:?} is not a valid branch name", self.branch));
        }
        match (&self.every, &self.cron) {
            (Some(_), Some(_)) => errors.push(format!("{at}: set either every or cron, not both")),
            (Some(e), None) => match crate::schedule::parse_duration(e) {
                Ok(d) if d.as_secs() < 1 => errors.push(format!("{at}.every: must be at least 1s")),
                Ok(_) => {}
                Err(err) => errors.push(format!("{at}.every: {err}")),
            },
            (None, Some(c)) => {
                if let Err(err) = crate::schedule::Cron::parse(c) {
                    errors.push(format!("{at}.cron: {err}"));
                }
            }
            (None, None) => {}
        }
        for (key, globs) in [("include", &self.include), ("exclude", &self.exclude)] {
            for g in globs {
                if g.is_empty() {
                    errors.push(format!("{at}.{key}: empty glob"));
                }
            }
        }
        for g in self.groups.iter().chain(&self.maintainers) {
            if let Err(e) = auth::parse_groups(g) {
                errors.push(format!("{at}: {e}"));
            }
        }
        if self.token_env.is_some() && url.starts_with("http://") {
            errors.push(format!(
                "{at}.token_env: the token would be sent over plain http to {url:?}; use an https:// URL"
            ));
        }
        if self
            .token_env
            .as_deref()
            .is_some_and(|v| v.is_empty() || v.starts_with("CAIRN_"))
        {
            errors.push(format!(
                "{at}.token_env: name a non-empty variable that is not CAIRN_* (those are configuration keys)"
            ));
        }
        if let Some(proxy) = self.proxy.as_deref().filter(|p| !p.contains("://")) {
            // never echo a proxy password
            let shown = proxy
                .rsplit_once('@')
                .map_or(proxy.to_string(), |(_, host)| format!("***@{host}"));
            errors.push(format!("{at}.proxy: {shown:?} must be a URL like http://proxy:3128"));
        }
        for (key, path) in [
            ("ssh_key", &self.ssh_key),
            ("ca_bundle", &self.ca_bundle),
            ("known_hosts", &self.known_hosts),
        ] {
            if let Some(p) = path
                && !p.is_file()
            {
                errors.push(format!("{at}.{key}: {} is not a readable file", p.display()));
            }
        }
    }
}

/// `[indexer]`: the daemon's scheduler.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IndexerConfig {
    /// Runs at the same time, across all repos.
    pub concurrency: usize,
    /// Up to this fraction of a repo's interval is added at random to each
    /// wait, so repos on the same schedule do not start together.
    pub jitter: f64,
    /// First wait after a failed run; doubles with each failure in a row.
    pub backoff: String,
    /// Longest wait after failures.
    pub max_backoff: String,
    /// Quiet time after the last change in a watched local directory before it is reindexed.
    pub debounce_ms: u64,
    /// Least time between store optimizations (compaction, vector index),
    /// which run when no run is going; `0s` turns them off. Incremental runs
    /// do not optimize: full builds do, and this keeps the store compact.
    pub optimize_every: String,
    /// How long the `cairn indexer` lease (Qdrant deployments) lasts without
    /// renewal; a standby takes over this long after the holder died. The
    /// holder renews every third of it.
    pub lease_ttl: String,
}

impl Default for IndexerConfig {
    fn default() -> Self {
        Self {
            concurrency: 1,
            jitter: 0.1,
            backoff: "30s".into(),
            max_backoff: "1h".into(),
            debounce_ms: 400,
            optimize_every: "1h".into(),
            lease_ttl: "30s".into(),
        }
    }
}

impl IndexerConfig {
    /// `backoff` and `max_backoff` parsed (defaults when invalid; validation reports them).
    pub fn backoff_bounds(&self) -> (std::time::Duration, std::time::Duration) {
        let p = |s: &str, d: u64| crate::schedule::parse_duration(s).unwrap_or(std::time::Duration::from_secs(d));
        (p(&self.backoff, 30), p(&self.max_backoff, 3600))
    }

    /// `lease_ttl` parsed (30 s when invalid; validation reports it).
    pub fn lease_ttl(&self) -> std::time::Duration {
        crate::schedule::parse_duration(&self.lease_ttl).unwrap_or(std::time::Duration::from_secs(30))
    }

    /// `optimize_every` parsed; `None`: off.
    pub fn optimize_interval(&self) -> Option<std::time::Duration> {
        crate::schedule::parse_duration(&self.optimize_every)
            .ok()
            .filter(|d| !d.is_zero())
    }
}

/// `[webhooks]`: where each provider's secret is read from (a provider
/// whose variable is unset, or not named, refuses every call), and how much
/// one source address may send.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Webhook calls one source address may make per minute, counted before
    /// any signature is checked; past it, 429. 0: no limit.
    pub per_source_per_minute: u32,
    /// Calls one source may make at once above that rate.
    pub per_source_burst: u32,
    /// A source's refused calls (bad signatures, over the rate) are audited
    /// at most once per this many seconds; the record counts the ones
    /// left out since the last.
    pub refusal_audit_window_secs: u64,
    /// Variable holding the GitHub webhook secret (`X-Hub-Signature-256`).
    pub github_secret_env: Option<String>,
    /// Variable holding the GitLab webhook token (`X-Gitlab-Token`).
    pub gitlab_token_env: Option<String>,
    /// Variable holding the Gitea webhook secret (`X-Gitea-Signature`).
    pub gitea_secret_env: Option<String>,
    /// The secrets read when the configuration was loaded.
    #[serde(skip)]
    pub secrets: WebhookSecrets,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            per_source_per_minute: 60,
            per_source_burst: 20,
            refusal_audit_window_secs: 60,
            github_secret_env: None,
            gitlab_token_env: None,
            gitea_secret_env: None,
            secrets: WebhookSecrets::default(),
        }
    }
}

/// Webhook secrets, never shown in logs.
#[derive(Clone, PartialEq, Default)]
pub struct WebhookSecrets {
    pub github: Option<String>,
    pub gitlab: Option<String>,
    pub gitea: Option<String>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("WebhookSecrets")
            .field("github", &shown(&self.github))
            .field("gitlab", &shown(&self.gitlab))
            .field("gitea", &shown(&self.gitea))
            .finish()
    }
}

/// Context assembly and answer post-processing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerConfig {
    /// Token budget of `/v1/context` when the request names none.
    pub context_tokens: usize,
    /// Search hits considered when assembling a context.
    pub candidates: usize,
    /// Most pieces (after merging) taken from one file.
    pub max_pieces_per_file: usize,
    /// Hosts (and their subdomains) answers may link to; links and images
    /// to any other host are removed from answers.
    pub allowed_link_hosts: Vec<String>,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        Self {
            context_tokens: 2048,
            candidates: 30,
            max_pieces_per_file: 3,
            allowed_link_hosts: Vec::new(),
        }
    }
}

/// Data sensitivity (defined beside the registry records that carry it).
pub use cairn_indexer::registry::Sensitivity;

/// One OpenAI-compatible chat-completions backend (vLLM, llama.cpp server,
/// Ollama, TGI, …).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// The id clients use (`backend` in `/v1/answer`, `model` in `/v1/chat/completions`).
    pub name: String,
    /// Base URL ending in `/v1`; cairn appends `/chat/completions`.
    pub base_url: String,
    /// The model id the backend knows.
    pub model: String,
    /// Environment variable holding the API key (sent as a bearer token).
    pub api_key_env: Option<String>,
    pub max_sensitivity: Sensitivity,
    /// The backend's context window: prompt (with the assembled context) plus answer must fit.
    pub context_tokens: usize,
    /// Tokens reserved for the answer (`max_tokens` sent to the backend).
    pub answer_tokens: usize,
    pub connect_timeout_ms: u64,
    /// Longest wait for the first token (connect, queue and prompt processing included).
    pub first_token_timeout_ms: u64,
    /// Longest a whole answer may take.
    pub total_timeout_ms: u64,
    /// Extra attempts when the backend fails before its first token.
    pub retries: u32,
    /// First retry delay; doubles with each attempt.
    pub retry_backoff_ms: u64,
    /// The key read from `api_key_env` when the configuration was loaded.
    #[serde(skip)]
    pub api_key: Option<String>,
}

impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key_env", &self.api_key_env)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            base_url: String::new(),
            model: String::new(),
            api_key_env: None,
            max_sensitivity: Sensitivity::Public,
            context_tokens: 4096,
            answer_tokens: 512,
            connect_timeout_ms: 2_000,
            first_token_timeout_ms: 60_000,
            total_timeout_ms: 300_000,
            retries: 2,
            retry_backoff_ms: 200,
            api_key: None,
        }
    }
}

impl BackendConfig {
    /// `base_url` + `/chat/completions`.
    pub fn completions_url(&self) -> String {
        format!("{}/chat/completions", self.base_url.trim_end_matches('/'))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub http: String,
    pub grpc: String,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// TLS on both listeners (`[server.tls]`); off when `cert` is empty.
    pub tls: tls::TlsConfig,
    /// Host names HTTP requests may address (`Host`, and `Origin` when a
    /// browser sends one); others get 403 before routing. Empty: the
    /// loopback names plus the listen address's host, or every host when
    /// listening on a wildcard address. `"*"` admits every host.
    pub allowed_hosts: Vec<String>,
}

/// Which embedder `[embed]` configures.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmbedKind {
    /// The ONNX model of `model_dir`.
    #[default]
    Onnx,
    /// The deterministic test embedder ([`cairn_indexer::embed::HashEmbedder`]).
    Hash,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedConfig {
    /// `onnx` (default): the model below through ONNX Runtime. `hash`: a
    /// small deterministic bag-of-tokens embedder (64 dimensions, no model
    /// files) meant only for tests; its vectors carry little meaning.
    pub kind: EmbedKind,
    /// `libonnxruntime.so` to load; relative paths are looked up from the
    /// working directory, then from the project the binary was built in.
    pub runtime_library: PathBuf,
    /// Model directory (`model.onnx`, `tokenizer.json`, optional `cairn-model.toml`).
    pub model_dir: PathBuf,
    /// Intra-op threads per session; 0 = automatic.
    pub threads: usize,
    /// Model sessions embedding batches side by side; 0 = automatic (one
    /// single-threaded session per core on the CPU, one on a GPU).
    pub sessions: usize,
    pub provider: Provider,
    /// Padded tokens per model call; short texts share a call.
    pub batch_tokens: usize,
    /// Overrides the model directory's own settings when given.
    pub model: Option<ModelSettings>,
    /// Dimension of the `hash` test embedder.
    pub hash_dim: usize,
}

/// `[secrets]`: rules beyond the built-in ones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// A rules file in gitleaks' TOML format (`[[rules]]` with `id`,
    /// `regex`, `secretGroup`, `entropy`, `keywords`, allowlists), applied
    /// after the built-in rules when indexing and when serving file reads.
    /// Empty: built-in rules only.
    pub rules_file: PathBuf,
}

impl SecretsConfig {
    /// The rules file, when one is set.
    pub fn rules_file(&self) -> Option<&Path> {
        (!self.rules_file.as_os_str().is_empty()).then_some(self.rules_file.as_path())
    }

    /// Adds a problem when the rules file does not load.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if let Some(path) = self.rules_file()
            && let Err(e) = cairn_indexer::secrets::Scanner::with_rules_file(path)
        {
            errors.push(format!("secrets.rules_file: {e}"));
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    pub max_file_bytes: usize,
    /// Chunks embedded and written together.
    pub group_size: usize,
    pub chunk_max_chars: usize,
    pub chunk_merge_chars: usize,
    pub chunk_container_chars: usize,
    /// Replace secrets (keys, tokens, passwords) with `[REDACTED:<rule>]`
    /// before chunking, embedding and storing.
    pub redact_secrets: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable when stderr is a terminal, JSON otherwise.
    #[default]
    Auto,
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info,cairn_indexer=debug`.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            server: ServerConfig::default(),
            embed: EmbedConfig::default(),
            index: IndexConfig::default(),
            search: RankSettings::default(),
            answer: AnswerConfig::default(),
            backends: Vec::new(),
            log: LogConfig::default(),
            audit: audit::AuditConfig::default(),
            auth: auth::AuthConfig::default(),
            store: store::StoreConfig::default(),
            repos: Vec::new(),
            prune: false,
            indexer: IndexerConfig::default(),
            webhooks: WebhookConfig::default(),
            limits: limits::LimitsConfig::default(),
            secrets: SecretsConfig::default(),
            ignored_env: Vec::new(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http: "127.0.0.1:7700".into(),
            grpc: "127.0.0.1:7701".into(),
            max_body_bytes: 1024 * 1024,
            tls: tls::TlsConfig::default(),
            allowed_hosts: Vec::new(),
        }
    }
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            kind: EmbedKind::Onnx,
            runtime_library: PathBuf::from(DEFAULT_RUNTIME),
            model_dir: PathBuf::from(DEFAULT_MODEL),
            threads: 0,
            sessions: 0,
            provider: Provider::Cpu,
            batch_tokens: 256,
            model: None,
            hash_dim: HASH_EMBED_DIM,
        }
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        let chunk = cairn_indexer::chunk::ChunkerConfig::default();
        Self {
            max_file_bytes: 1024 * 1024,
            group_size: 256,
            chunk_max_chars: chunk.max_chars,
            chunk_merge_chars: chunk.merge_chars,
            chunk_container_chars: chunk.container_chars,
            redact_secrets: true,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: DEFAULT_LOG_LEVEL.into(),
        }
    }
}

/// Dimension of the test embedder (`[embed] kind = "hash"`) by default.
pub const HASH_EMBED_DIM: usize = 64;

/// Repository names: 1–128 characters of `A-Z a-z 0-9 . _ - /`, not starting
/// with `.` or `/`.
/// Whether `url` (`scheme://[user@]host[:port]/…`) names this machine:
/// `localhost`, `127.0.0.0/8` or `::1`. Credentials go over plain http only
/// to such a host.
pub fn is_loopback_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub fn validate_repo_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(['.', '/'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    anyhow::ensure!(
        ok,
        "invalid repo name {name:?}: use 1-128 characters of letters, digits, '.', '_', '-' and '/'"
    );
    Ok(())
}

/// Problems found while loading or validating configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Loads configuration from `file` (or `CAIRN_CONFIG` when `file` is
    /// None) and the `CAIRN_*` environment, and validates it.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// [`Config::load`] with an explicit environment (for tests).
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let from_env = env
            .iter()
            .find(|(k, _)| k == "CAIRN_CONFIG")
            .map(|(_, v)| PathBuf::from(v));
        let file = file.map(Path::to_path_buf).or(from_env);
        let mut table = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(vec![format!("failed to read config {}: {e}", path.display())]))?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError(vec![format!("{}: {}", path.display(), e.message())]))?
            }
            None => toml::Table::new(),
        };
        let mut errors = Vec::new();
        let mut ignored = Vec::new();
        for (key, value) in env {
            let Some(rest) = key.strip_prefix("CAIRN_") else {
                continue;
            };
            if rest == "CONFIG" || rest.is_empty() {
                continue;
            }
            if not_a_config_key(rest) {
                ignored.push(key.clone());
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            if let Err(e) = set_path(&mut table, &path, value) {
                errors.push(format!("{key}: {e}"));
            }
        }
        let mut config: Config = match toml::Value::Table(table).try_into() {
            Ok(c) => c,
            Err(e) => {
                let source = file
                    .as_ref()
                    .map_or("environment".to_string(), |p| p.display().to_string());
                errors.push(format!("{source}: {}", e.message()));
                return Err(ConfigError(errors));
            }
        };
        for b in &mut config.backends {
            if let Some(var) = b.api_key_env.as_deref().filter(|v| !v.is_empty()) {
                match env.iter().find(|(k, _)| k == var) {
                    Some((_, v)) => b.api_key = Some(v.clone()),
                    None => errors.push(format!(
                        "backends.{}.api_key_env: environment variable {var} is not set",
                        b.name
                    )),
                }
            }
        }
        config.store.resolve_key(env, &mut errors);
        let lookup = |var: &Option<String>, key: &str, errors: &mut Vec<String>| {
            let var = var.as_deref().filter(|v| !v.is_empty())?;
            match env.iter().find(|(k, _)| k == var) {
                Some((_, v)) if !v.is_empty() => Some(v.clone()),
                _ => {
                    errors.push(format!("webhooks.{key}: environment variable {var} is not set"));
                    None
                }
            }
        };
        let w = &config.webhooks;
        config.webhooks.secrets = WebhookSecrets {
            github: lookup(&w.github_secret_env, "github_secret_env", &mut errors),
            gitlab: lookup(&w.gitlab_token_env, "gitlab_token_env", &mut errors),
            gitea: lookup(&w.gitea_secret_env, "gitea_secret_env", &mut errors),
        };
        if let Err(ConfigError(more)) = config.validate() {
            errors.extend(more);
        }
        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        ignored.sort();
        config.ignored_env = ignored;
        Ok(config)
    }

    /// Checks every value; reports all problems together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        self.secrets.validate(&mut errors);
        for (name, addr) in [("server.http", &self.server.http), ("server.grpc", &self.server.grpc)] {
            if addr.parse::<SocketAddr>().is_err() {
                errors.push(format!("{name}: {addr:?} is not a socket address like 127.0.0.1:7700"));
            }
        }
        if self.server.max_body_bytes < 1024 {
            errors.push("server.max_body_bytes: must be at least 1024".into());
        }
        if !(2..=4096).contains(&self.embed.hash_dim) {
            errors.push("embed.hash_dim: must be between 2 and 4096".into());
        }
        if self.embed.batch_tokens == 0 || self.embed.batch_tokens > 1 << 20 {
            errors.push("embed.batch_tokens: must be between 1 and 1048576".into());
        }
        if self.index.group_size == 0 {
            errors.push("index.group_size: must be at least 1".into());
        }
        if self.index.max_file_bytes == 0 {
            errors.push("index.max_file_bytes: must be at least 1".into());
        }
        if self.index.chunk_max_chars < 200 || self.index.chunk_merge_chars > self.index.chunk_max_chars {
            errors.push("index.chunk_max_chars must be ≥ 200 and ≥ index.chunk_merge_chars".into());
        }
        if self.search.candidates == 0 || self.search.candidates > 1000 {
            errors.push("search.candidates: must be between 1 and 1000".into());
        }
        let finite_non_negative = |x: f32| x.is_finite() && x >= 0.0;
        if ![
            self.search.rrf_k,
            self.search.dense_weight,
            self.search.sparse_weight,
            self.search.items_weight,
        ]
        .into_iter()
        .all(finite_non_negative)
        {
            errors
                .push("search.rrf_k, dense_weight, sparse_weight and items_weight must be non-negative numbers".into());
        }
        self.audit.validate(&mut errors);
        self.store.validate(&mut errors);
        self.limits.validate(&mut errors);
        self.auth.validate(&mut errors);
        self.server.tls.validate(&mut errors);
        if let Some(m) = &self.embed.model
            && (m.max_length == 0 || m.max_length > 8192)
        {
            errors.push("embed.model.max_length: must be between 1 and 8192".into());
        }
        if self.answer.context_tokens < 64 || self.answer.context_tokens > 1 << 20 {
            errors.push("answer.context_tokens: must be between 64 and 1048576".into());
        }
        if self.answer.candidates == 0 || self.answer.candidates > search::MAX_K as usize {
            errors.push(format!("answer.candidates: must be between 1 and {}", search::MAX_K));
        }
        if self.answer.max_pieces_per_file == 0 {
            errors.push("answer.max_pieces_per_file: must be at least 1".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            let at = if b.name.is_empty() {
                format!("backends[{i}]")
            } else {
                format!("backends.{}", b.name)
            };
            if b.name.is_empty() {
                errors.push(format!("{at}.name: must not be empty"));
            } else if !b.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-:/".contains(c)) {
                errors.push(format!(
                    "{at}.name: use letters, digits and . _ - : / (it is a model id clients send)"
                ));
            } else if !names.insert(b.name.as_str()) {
                errors.push(format!("{at}.name: defined twice"));
            }
            let url = b.base_url.trim_end_matches('/');
            if !url.starts_with("http://") || !url.ends_with("/v1") {
                errors.push(format!(
                    "{at}.base_url: {:?} must be an http:// URL ending in /v1 (cairn appends /chat/completions; https needs a TLS-terminating proxy)",
                    b.base_url
                ));
            }
            if b.model.is_empty() {
                errors.push(format!(
                    "{at}.model: must not be empty (the model id the backend serves)"
                ));
            }
            if b.answer_tokens == 0 || b.context_tokens < b.answer_tokens + 256 {
                errors.push(format!(
                    "{at}: context_tokens ({}) must leave at least 256 tokens beside answer_tokens ({}, at least 1)",
                    b.context_tokens, b.answer_tokens
                ));
            }
            if b.connect_timeout_ms == 0 || b.first_token_timeout_ms == 0 || b.total_timeout_ms == 0 {
                errors.push(format!("{at}: timeouts must be at least 1 ms"));
            }
            if b.api_key_env.is_some() && !is_loopback_url(url) {
                errors.push(format!(
                    "{at}.api_key_env: the API key would be sent over plain http to {:?}; reach a remote backend through a TLS-terminating proxy on loopback",
                    b.base_url
                ));
            }
            if b.api_key_env.as_deref().is_some_and(|v| v.starts_with("CAIRN_")) {
                errors.push(format!(
                    "{at}.api_key_env: CAIRN_* variables are configuration keys; name another variable"
                ));
            }
            if b.retries > 10 {
                errors.push(format!("{at}.retries: at most 10"));
            }
        }
        let mut repo_names = std::collections::HashSet::new();
        for (i, r) in self.repos.iter().enumerate() {
            r.validate(i, &mut errors);
            if !r.name.is_empty() && !repo_names.insert(r.name.as_str()) {
                errors.push(format!("repos.{}.name: defined twice", r.name));
            }
        }
        if self.indexer.concurrency == 0 || self.indexer.concurrency > 64 {
            errors.push("indexer.concurrency: must be between 1 and 64".into());
        }
        if !(0.0..=1.0).contains(&self.indexer.jitter) {
            errors.push("indexer.jitter: must be a fraction between 0 and 1".into());
        }
        for (key, v) in [
            ("backoff", &self.indexer.backoff),
            ("max_backoff", &self.indexer.max_backoff),
        ] {
            match crate::schedule::parse_duration(v) {
                Ok(d) if d.is_zero() => errors.push(format!("indexer.{key}: must be at least 1s")),
                Ok(_) => {}
                Err(e) => errors.push(format!("indexer.{key}: {e}")),
            }
        }
        if let Err(e) = crate::schedule::parse_duration(&self.indexer.optimize_every) {
            errors.push(format!("indexer.optimize_every: {e}"));
        }
        match crate::schedule::parse_duration(&self.indexer.lease_ttl) {
            Ok(d) if d < std::time::Duration::from_secs(3) => errors.push(format!(
                "indexer.lease_ttl: {} is too short (at least 3s)",
                self.indexer.lease_ttl
            )),
            Ok(_) => {}
            Err(e) => errors.push(format!("indexer.lease_ttl: {e}")),
        }
        if self.indexer.debounce_ms == 0 || self.indexer.debounce_ms > 60_000 {
            errors.push("indexer.debounce_ms: must be between 1 and 60000".into());
        }
        for (key, var) in [
            ("github_secret_env", &self.webhooks.github_secret_env),
            ("gitlab_token_env", &self.webhooks.gitlab_token_env),
            ("gitea_secret_env", &self.webhooks.gitea_secret_env),
        ] {
            if var.as_deref().is_some_and(|v| v.starts_with("CAIRN_")) {
                errors.push(format!(
                    "webhooks.{key}: CAIRN_* variables are configuration keys; name another variable"
                ));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            errors.push(format!("log.level: {:?} is not a valid filter", self.log.level));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(errors))
        }
    }

    /// The runtime library path, resolved (see [`resolve_asset`]).
    pub fn runtime_library(&self) -> PathBuf {
        resolve_asset(&self.embed.runtime_library)
    }

    /// The model directory, resolved (see [`resolve_asset`]).
    pub fn model_dir(&self) -> PathBuf {
        resolve_asset(&self.embed.model_dir)
    }
}

/// Sets a dotted path in a TOML table from an environment string: TOML
/// literals (numbers, booleans, arrays) are parsed, anything else is a string.
/// Whether `CAIRN_<rest>` is a variable that cannot be a configuration key:
/// the setup script's own (`CAIRN_SETUP_*`), and the service links
/// Kubernetes injects for Services named `cairn…` (`CAIRN_SERVICE_HOST`,
/// `CAIRN_SERVICE_PORT[_NAME]`, `CAIRN_PORT`, `CAIRN_PORT_7700_TCP[_…]`,
/// `CAIRN_QDRANT_SERVICE_HOST`, …). Keys are nested with `__`, so a name
/// holding `__` always looks like configuration and stays checked.
pub fn not_a_config_key(rest: &str) -> bool {
    if rest.starts_with("SETUP_") {
        return true;
    }
    if rest.contains("__") {
        return false;
    }
    let service_link = rest == "SERVICE_HOST"
        || rest.starts_with("SERVICE_PORT")
        || rest.ends_with("_SERVICE_HOST")
        || rest.contains("_SERVICE_PORT");
    let port_link = rest == "PORT" || rest.ends_with("_PORT") || rest.starts_with("PORT_") || rest.contains("_PORT_");
    service_link || port_link
}

fn set_path(table: &mut toml::Table, path: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut().ok_or_else(|| format!("{p} is not a section"))?;
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut v| v.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    t.insert(last.clone(), value);
    Ok(())
}

/// Resolves a relative asset path: as given when it exists from the working
/// directory, else relative to the project the binary was built in
/// (`<root>/target/<profile>/cairn`), so `target/release/cairn` finds
/// `.local/` from anywhere.
pub fn resolve_asset(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    if let Ok(exe) = std::env::current_exe() {
        for ancestor in exe.ancestors().skip(1).take(4) {
            let candidate = ancestor.join(path);
            if candidate.exists() {
                return candidate;
            }
        }
    }
    path.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load_from(None, &[]).unwrap();
        assert_eq!(c.server.http, "127.0.0.1:7700");
        assert_eq!(c.server.grpc, "127.0.0.1:7701");
    }

    #[test]
    fn file_then_env_layering() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cairn.toml");
        std::fs::write(&f, "data_dir = \"/tmp/x\"\n[server]\nhttp = \"127.0.0.1:9000\"\n").unwrap();
        let c = Config::load_from(
            Some(&f),
            &env(&[("CAIRN_SERVER__HTTP", "127.0.0.1:9100"), ("CAIRN_EMBED__THREADS", "3")]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.server.http, "127.0.0.1:9100");
        assert_eq!(c.embed.threads, 3);
    }

    #[test]
    fn config_env_var_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[search]\ncandidates = 7\n").unwrap();
        let c = Config::load_from(None, &env(&[("CAIRN_CONFIG", f.to_str().unwrap())])).unwrap();
        assert_eq!(c.search.candidates, 7);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[server]\nhtp = \"x\"\n").unwrap();
        let e = Config::load_from(Some(&f), &[]).unwrap_err().to_string();
        assert!(e.contains("htp"), "{e}");
        let e = Config::load_from(None, &env(&[("CAIRN_BOGUS", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn a_secret_rules_file_that_does_not_load_stops_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules.toml");
        std::fs::write(&rules, "[[rules]]\nid = \"acme\"\nregex = '''acme_[a-z0-9]{16}'''\n").unwrap();
        let ok = dir.path().join("ok.toml");
        std::fs::write(
            &ok,
            format!("[secrets]\nrules_file = {:?}\n", rules.display().to_string()),
        )
        .unwrap();
        let c = Config::load_from(Some(&ok), &[]).unwrap();
        assert_eq!(c.secrets.rules_file(), Some(rules.as_path()));
        std::fs::write(&rules, "[[rules]]\nid = \"bad\"\nregex = '''(?=x)'''\n").unwrap();
        let e = Config::load_from(Some(&ok), &[]).unwrap_err().to_string();
        assert!(e.contains("secrets.rules_file") && e.contains("bad"), "{e}");
    }

    #[test]
    fn setup_and_kubernetes_service_link_variables_are_ignored() {
        // what the README suggests exporting, and what Kubernetes injects for
        // Services named `cairn` and `cairn-qdrant`
        let stray = [
            ("CAIRN_SETUP_SKIP_LLM", "1"),
            ("CAIRN_SERVICE_HOST", "10.0.0.7"),
            ("CAIRN_SERVICE_PORT", "7700"),
            ("CAIRN_SERVICE_PORT_HTTP", "7700"),
            ("CAIRN_PORT", "tcp://10.0.0.7:7700"),
            ("CAIRN_PORT_7700_TCP", "tcp://10.0.0.7:7700"),
            ("CAIRN_PORT_7700_TCP_PROTO", "tcp"),
            ("CAIRN_PORT_7700_TCP_PORT", "7700"),
            ("CAIRN_PORT_7700_TCP_ADDR", "10.0.0.7"),
            ("CAIRN_QDRANT_SERVICE_HOST", "10.0.0.8"),
            ("CAIRN_QDRANT_SERVICE_PORT_GRPC", "6334"),
            ("CAIRN_QDRANT_PORT_6333_TCP", "tcp://10.0.0.8:6333"),
        ];
        let c = Config::load_from(None, &env(&stray)).unwrap();
        assert_eq!(c.ignored_env.len(), stray.len(), "{:?}", c.ignored_env);
        assert_eq!(
            Config {
                ignored_env: Vec::new(),
                ..c
            },
            Config::default()
        );
        // names that look like configuration stay errors
        for bad in [
            "CAIRN_SERVER__PORT",
            "CAIRN_SERVER__HTTP_PORT",
            "CAIRN_DATADIR",
            "CAIRN_SETUP",
        ] {
            let e = Config::load_from(None, &env(&[(bad, "1")])).unwrap_err().to_string();
            assert!(!e.is_empty(), "{bad}");
        }
        // and real keys still apply beside them
        let c = Config::load_from(
            None,
            &env(&[("CAIRN_PORT", "x"), ("CAIRN_SERVER__HTTP", "127.0.0.1:9")]),
        )
        .unwrap();
        assert_eq!(c.server.http, "127.0.0.1:9");
    }

    #[test]
    fn example_config_lists_the_defaults() {
        let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/cairn.example.toml");
        assert_eq!(Config::load_from(Some(&f), &[]).unwrap(), Config::default());
    }

    #[test]
    fn secret_redaction_is_on_by_default_and_can_be_turned_off() {
        assert!(Config::default().index.redact_secrets);
        let c = Config::load_from(None, &env(&[("CAIRN_INDEX__REDACT_SECRETS", "false")])).unwrap();
        assert!(!c.index.redact_secrets);
    }

    #[test]
    fn backends_are_validated_together() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            r#"
[[backends]]
name = "local"
base_url = "http://127.0.0.1:8080/v1"
model = "smollm2"
api_key_env = "LOCAL_KEY"
max_sensitivity = "confidential"
context_tokens = 2048

[[backends]]
name = "local"
base_url = "http://127.0.0.1:8080"
model = ""
api_key_env = "MISSING_KEY"
"#,
        )
        .unwrap();
        let e = Config::load_from(Some(&f), &env(&[("LOCAL_KEY", "k")])).unwrap_err();
        let text = e.to_string();
        assert_eq!(e.0.len(), 4, "{text}");
        for needle in ["MISSING_KEY", "defined twice", "ending in /v1", "model"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        std::fs::write(
            &f,
            "[[backends]]\nname = \"local\"\nbase_url = \"http://127.0.0.1:8080/v1\"\nmodel = \"m\"\napi_key_env = \"LOCAL_KEY\"\nmax_sensitivity = \"internal\"\n",
        )
        .unwrap();
        let c = Config::load_from(Some(&f), &env(&[("LOCAL_KEY", "k")])).unwrap();
        let b = &c.backends[0];
        assert_eq!(b.api_key.as_deref(), Some("k"));
        assert_eq!(b.max_sensitivity, Sensitivity::Internal);
        assert_eq!(b.context_tokens, 4096);
        assert_eq!(b.completions_url(), "http://127.0.0.1:8080/v1/chat/completions");
        assert!(!format!("{b:?}").contains("\"k\""), "the key never shows in logs");
        std::fs::write(
            &f,
            "[[backends]]\nname = \"x\"\nbase_url = \"http://h/v1\"\nmodel = \"m\"\napi_key_env = \"CAIRN_KEY\"\n",
        )
        .unwrap();
        let e = Config::load_from(Some(&f), &[]).unwrap_err().to_string();
        assert!(e.contains("CAIRN_* variables"), "{e}");
        std::fs::write(&f, "[[backends]]\nname = \"x\"\nbogus = 1\n").unwrap();
        let e = Config::load_from(Some(&f), &[]).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn repos_are_read_and_validated_together() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            r#"
prune = true
[indexer]
concurrency = 2
jitter = 0.2
[webhooks]
github_secret_env = "GH_SECRET"

[[repos]]
name = "acme/auth"
url = "https://git.internal/acme/auth.git"
branch = "main"
every = "10m"
include = ["src/**"]
exclude = ["**/vendor/**"]
sensitivity = "confidential"
groups = ["payments"]
maintainers = ["alice", "payments-leads"]
token_env = "GIT_TOKEN"
proxy = "http://proxy:3128"

[[repos]]
name = "docs"
url = "/srv/docs"
cron = "0 */2 * * *"
"#,
        )
        .unwrap();
        let c = Config::load_from(Some(&f), &env(&[("GH_SECRET", "s3cret")])).unwrap();
        assert!(c.prune);
        assert_eq!(c.indexer.concurrency, 2);
        assert_eq!(c.webhooks.secrets.github.as_deref(), Some("s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"), "secrets never show in logs");
        let r = &c.repos[0];
        assert_eq!(r.sensitivity, Some(Sensitivity::Confidential));
        assert_eq!(r.maintainers, ["alice", "payments-leads"]);
        assert_eq!(
            r.schedule(),
            crate::schedule::Schedule::Every(std::time::Duration::from_secs(600))
        );
        assert!(matches!(c.repos[1].schedule(), crate::schedule::Schedule::Cron(_)));
        assert!(c.repos[1].is_local() && !r.is_local());
        let spec = r.spec();
        assert_eq!(spec.credentials.token_env.as_deref(), Some("GIT_TOKEN"));
        assert_eq!(spec.branch.as_deref(), Some("main"));
        // a repo without every or cron runs every 15 minutes
        let d = Config {
            repos: vec![RepoConfig {
                name: "x".into(),
                url: "/x".into(),
                ..Default::default()
            }],
            ..Config::default()
        };
        assert_eq!(
            d.repos[0].schedule(),
            crate::schedule::Schedule::Every(std::time::Duration::from_secs(900))
        );

        std::fs::write(
            &f,
            r#"
[indexer]
concurrency = 0
jitter = 2.0
[webhooks]
gitlab_token_env = "NOPE_UNSET"
[[repos]]
name = "dup"
url = "/a"
every = "10 minutes"
[[repos]]
name = "dup"
url = "gopher://x"
every = "1m"
cron = "* * *"
[[repos]]
name = ".bad"
url = ""
cron = "61 * * * *"
groups = ["has space"]
ssh_key = "/no/such/key"
"#,
        )
        .unwrap();
        let e = Config::load_from(Some(&f), &[]).unwrap_err();
        let text = e.to_string();
        for needle in [
            "indexer.concurrency",
            "indexer.jitter",
            "NOPE_UNSET",
            "repos.dup.every",
            "defined twice",
            "gopher://x",
            "either every or cron",
            "repos..bad.name",
            "repos..bad.url",
            "minute",
            "has space",
            "ssh_key",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert_eq!(e.0.len(), 12, "{text}");
        std::fs::write(&f, "[[repos]]\nname = \"x\"\nurl = \"/x\"\nbogus = 1\n").unwrap();
        let e = Config::load_from(Some(&f), &[]).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        std::fs::write(&f, "[[repos]]\nname = \"x\"\nurl = \"/x\"\nsensitivity = \"secret\"\n").unwrap();
        let e = Config::load_from(Some(&f), &[]).unwrap_err().to_string();
        assert!(e.contains("secret"), "{e}");
    }

    #[test]
    fn all_problems_reported_at_once() {
        let e = Config::load_from(
            None,
            &env(&[
                ("CAIRN_SERVER__HTTP", "nope"),
                ("CAIRN_SERVER__GRPC", "also-nope"),
                ("CAIRN_EMBED__BATCH_TOKENS", "0"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.0.len(), 3, "{e}");
    }

    #[test]
    fn credentials_are_never_configured_over_plain_http() {
        for (url, loopback) in [
            ("http://127.0.0.1:8080/v1", true),
            ("http://localhost/v1", true),
            ("http://[::1]:6334", true),
            ("http://user:pw@127.0.0.2:80/x", true),
            ("http://llm.internal:8080/v1", false),
            ("http://127.0.0.1.evil.example/v1", false),
            ("http://10.0.0.5/v1", false),
            ("no scheme", false),
        ] {
            assert_eq!(is_loopback_url(url), loopback, "{url}");
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            r#"
[store]
kind = "qdrant"
url = "http://qdrant.internal:6334"
api_key_env = "QKEY"

[[backends]]
name = "remote"
base_url = "http://llm.internal:8080/v1"
model = "m"
api_key_env = "LKEY"

[[repos]]
name = "acme"
url = "http://git.example/acme.git"
token_env = "GIT_TOKEN"
"#,
        )
        .unwrap();
        let vars = env(&[("QKEY", "q"), ("LKEY", "l"), ("GIT_TOKEN", "g")]);
        let e = Config::load_from(Some(&f), &vars).unwrap_err().to_string();
        for needle in [
            "store.api_key_env: the API key would be sent over plain http",
            "backends.remote.api_key_env: the API key would be sent over plain http",
            "repos.acme.token_env: the token would be sent over plain http",
        ] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
        // https, or plain http to this machine, is fine
        let text = std::fs::read_to_string(&f)
            .unwrap()
            .replace("http://qdrant.internal", "https://qdrant.internal")
            .replace("http://llm.internal:8080", "http://127.0.0.1:8080")
            .replace("http://git.example", "https://git.example");
        std::fs::write(&f, text).unwrap();
        Config::load_from(Some(&f), &vars).unwrap();
    }
}
