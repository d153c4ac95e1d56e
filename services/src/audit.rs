//! The audit log: one JSON line per request on every surface, hash-chained,
//! with checkpoints signed by an ed25519 key.
//!
//! Each line holds `seq` (1, 2, … across files and restarts) and `prev`, the
//! SHA-256 of the previous line's bytes (64 zeros before the first record).
//! Every `checkpoint_every` records, at rotation and at shutdown a
//! `checkpoint` line is written whose `signature` signs
//! `cairn-audit-checkpoint/v2\n{seq}\n{prev}\n{time}`: the whole chain up
//! to it, and when. Each checkpoint is also appended to the anchor
//! (`[audit] anchor_path`, another volume), and a writer refuses to continue
//! a log that ends behind its anchor. [`verify`] checks a sequence of files
//! from their bytes alone (the signatures given the public key, the anchor
//! given its file) and names the first record that was modified, deleted,
//! inserted or reordered, a cut tail, or missing files.
//!
//! Writing happens on a dedicated thread fed by a bounded queue; when the
//! queue is full or a write failed, [`AuditLog::record`] refuses and the
//! request answers 503 instead of going unrecorded. With `fsync =
//! "every_record"` a response that returns code waits for its record to be
//! synced. [`AuditLog::close`] drains the queue, writes a final checkpoint
//! and syncs the file before shutdown completes.
//!
//! Admin commands run from the command line (`cairn token create`, `cairn
//! repo remove`, …) write `"type": "admin"` records into the same chain
//! through [`AdminLog`], naming the acting OS user, whether `cairn serve`
//! runs or not. One process appends at a time: every append holds an
//! exclusive lock on `FILE.lock` next to the live file and first checks
//! whether another process wrote or rotated since its own last append (the
//! live file's length and inode), reading the chain's head again if so.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, bail};
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Checkpoints of cairn before 0.2 signed `{seq}\n{prev}` under this
/// context; [`verify`] still accepts them.
const SIGNING_CONTEXT_V1: &str = "cairn-audit-checkpoint/v1";
/// A checkpoint signs its seq, the chain's hash up to it and its time.
const SIGNING_CONTEXT: &str = "cairn-audit-checkpoint/v2";

pub use cairn_config::audit::{AuditConfig, FsyncMode};

/// Whether a request was allowed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

/// One chunk returned to the caller.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditResult {
    pub id: String,
    pub repo: String,
    pub path: String,
    pub commit: String,
}

/// What a surface reports about one request.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub principal: String,
    /// `http.search`, `grpc.search`, …
    pub surface: &'static str,
    pub query: Option<String>,
    pub repos_allowed: Vec<String>,
    pub results: Vec<AuditResult>,
    pub backend: Option<String>,
    pub model: Option<String>,
    pub decision: Decision,
    /// `ok`, or the error kind (`invalid_argument`, `not_found`, …).
    pub outcome: String,
    pub latency_ms: f64,
    /// Like refusals of the same source that were not recorded since the
    /// last one that was (webhooks: one record per source and window).
    pub left_out: u64,
}

impl AuditEvent {
    /// The record of a request that returned nothing: no query, repos or
    /// results, only who, where and how it ended.
    pub fn bare(
        surface: &'static str,
        access: &crate::auth::Access,
        decision: Decision,
        outcome: &str,
        latency_ms: f64,
    ) -> Self {
        Self {
            principal: access.principal.name.clone(),
            surface,
            query: None,
            repos_allowed: Vec::new(),
            results: Vec::new(),
            backend: None,
            model: None,
            decision,
            outcome: outcome.to_string(),
            latency_ms,
            left_out: 0,
        }
    }

    /// The record of a finished request by `access` on `surface`: decision
    /// `deny` when it was refused for its credentials or the read rule,
    /// outcome `ok` or the error's kind, latency since `started`. Results
    /// are dropped when the request failed.
    pub fn finished(
        surface: &'static str,
        access: &crate::auth::Access,
        query: Option<String>,
        repos_allowed: Vec<String>,
        results: Vec<AuditResult>,
        error: Option<&crate::error::ServiceError>,
        started: std::time::Instant,
    ) -> Self {
        use crate::error::ServiceErrorKind;
        let denied =
            error.is_some_and(|e| matches!(e.kind, ServiceErrorKind::Forbidden | ServiceErrorKind::Unauthenticated));
        Self {
            principal: access.principal.name.clone(),
            surface,
            query,
            repos_allowed,
            results: if error.is_some() { Vec::new() } else { results },
            backend: None,
            model: None,
            decision: if denied { Decision::Deny } else { Decision::Allow },
            outcome: error.map_or("ok", |e| e.kind.as_str()).to_string(),
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            left_out: 0,
        }
    }
}

/// One admin action taken from the command line (`cairn token create`,
/// `cairn repo remove`, …), written as a `"type": "admin"` record.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminEvent {
    /// `token.create`, `token.revoke`, `repo.remove`, `repo.groups`, …
    pub action: String,
    /// What it acted on: a principal, a repo, a directory.
    pub target: String,
    /// A JSON object of what else tells the action apart (never a secret).
    pub details: serde_json::Value,
    /// Why it failed; `None`: it succeeded.
    pub error: Option<String>,
}

impl AdminEvent {
    pub fn new(action: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            target: target.into(),
            details: serde_json::Value::Object(Default::default()),
            error: None,
        }
    }

    /// Adds `key: value` to the details.
    pub fn detail(mut self, key: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(map) = &mut self.details {
            map.insert(key.to_string(), value);
        }
        self
    }

    /// The details of a token: its id, principal, groups and clearance;
    /// never the token, nor its hash.
    pub fn token(self, record: &crate::auth::TokenRecord) -> Self {
        let event = self
            .detail("id", &record.id)
            .detail("principal", &record.principal)
            .detail("groups", &record.groups);
        match &record.max_sensitivity {
            Some(s) => event.detail("max_sensitivity", s),
            None => event,
        }
    }
}

/// The operating-system user a command runs as.
#[derive(Debug, Clone, PartialEq)]
pub struct OsUser {
    /// The effective uid's name in /etc/passwd, else `$USER` / `$LOGNAME`,
    /// else `uid:N` (or `unknown`).
    pub name: String,
    /// The effective uid (from /proc/self/status), when known.
    pub uid: Option<u32>,
    /// `$SUDO_USER`: who ran `sudo`, as sudo reports it (environment, not
    /// verified).
    pub sudo_user: Option<String>,
}

impl OsUser {
    /// The user this process runs as.
    pub fn current() -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| effective_uid(&s));
        let name = uid
            .and_then(|uid| {
                std::fs::read_to_string("/etc/passwd")
                    .ok()
                    .and_then(|p| passwd_name(&p, uid))
            })
            .or_else(|| env("USER"))
            .or_else(|| env("LOGNAME"))
            .unwrap_or_else(|| uid.map_or_else(|| "unknown".to_string(), |u| format!("uid:{u}")));
        Self {
            name,
            uid,
            sudo_user: env("SUDO_USER"),
        }
    }
}

/// The effective uid in the text of /proc/self/status (`Uid: real effective
/// saved fs`).
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The name of `uid` in the text of /etc/passwd.
fn passwd_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let mut fields = l.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

#[derive(Serialize)]
struct RequestLine<'a> {
    seq: u64,
    time: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    instance: &'a str,
    principal: &'a str,
    surface: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_sha256: Option<String>,
    repos_allowed: &'a [String],
    results: &'a [AuditResult],
    backend: Option<&'a str>,
    model: Option<&'a str>,
    decision: Decision,
    outcome: &'a str,
    latency_ms: f64,
    #[serde(skip_serializing_if = "is_zero")]
    left_out: u64,
    prev: &'a str,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct CheckpointLine<'a> {
    seq: u64,
    time: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    instance: &'a str,
    public_key: &'a str,
    signature: String,
    prev: &'a str,
}

#[derive(Serialize)]
struct AdminLine<'a> {
    seq: u64,
    time: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    instance: &'a str,
    action: &'a str,
    os_user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sudo_user: Option<&'a str>,
    target: &'a str,
    details: &'a serde_json::Value,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    prev: &'a str,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

fn signed_message(seq: u64, prev: &str, time: &str, instance: &str) -> String {
    format!("{SIGNING_CONTEXT}\n{seq}\n{prev}\n{time}\n{instance}")
}

fn signed_message_v1(seq: u64, prev: &str) -> String {
    format!("{SIGNING_CONTEXT_V1}\n{seq}\n{prev}")
}

/// Loads the PKCS#8 ed25519 key at `path`, generating it (mode 0600, public
/// key in hex next to it as `.pub`) when the file does not exist.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<Ed25519KeyPair> {
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        }
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("failed to generate an ed25519 key"))?;
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(path)
            .with_context(|| format!("failed to create audit signing key {}", path.display()))?;
        f.write_all(pkcs8.as_ref())?;
        f.sync_all()?;
        let pair =
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| anyhow::anyhow!("generated key does not load"))?;
        std::fs::write(
            path.with_extension("pub"),
            format!("{}\n", hex::encode(pair.public_key().as_ref())),
        )?;
        tracing::info!(key = %path.display(), "generated the audit signing key");
        return Ok(pair);
    }
    let bytes = std::fs::read(path).with_context(|| format!("failed to read audit signing key {}", path.display()))?;
    Ed25519KeyPair::from_pkcs8(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a PKCS#8 ed25519 key: {e}", path.display()))
}

/// Where the chain stands: the last record's number and line hash, and
/// whether that line is a checkpoint.
#[derive(Debug, Clone, PartialEq)]
struct Head {
    seq: u64,
    hash: String,
    checkpoint: bool,
}

impl Head {
    fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_string(),
            checkpoint: false,
        }
    }
}

/// Reads the head of the chain from the live file (or, when it is empty,
/// the newest rotated one). A torn last line (a crash mid-write) is cut off.
fn read_head(live: &Path) -> anyhow::Result<Head> {
    let mut candidates = rotated_files(live)?;
    candidates.push(live.to_path_buf());
    for path in candidates.iter().rev() {
        let Ok(mut f) = OpenOptions::new().read(true).write(true).open(path) else {
            continue;
        };
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            tracing::warn!(file = %path.display(), bytes = bytes.len() - keep, "audit log ends with a torn record; cutting it off");
            f.set_len(keep as u64)?;
            f.seek(SeekFrom::End(0))?;
            bytes.truncate(keep);
        }
        let Some(line) = bytes.split(|&b| b == b'\n').rev().find(|l| !l.is_empty()) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(line)
            .with_context(|| format!("{}: the last audit record is not JSON", path.display()))?;
        let seq = v["seq"]
            .as_u64()
            .with_context(|| format!("{}: the last audit record has no seq", path.display()))?;
        return Ok(Head {
            seq,
            hash: sha256_hex(line),
            checkpoint: v["type"] == "checkpoint",
        });
    }
    Ok(Head::genesis())
}

/// Rotated files of `live`, oldest first.
fn rotated_files(live: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (live.parent(), live.file_name().and_then(|n| n.to_str())) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let mut out: Vec<(u64, PathBuf)> = Vec::new();
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    for entry in entries {
        let entry = entry?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if let Some(n) = file.strip_prefix(&prefix).and_then(|s| s.parse::<u64>().ok()) {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// Identity and length of the live file: what a writer left behind after
/// its last append, to tell at the next one whether another process wrote
/// (or rotated) in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileState {
    dev: u64,
    ino: u64,
    len: u64,
}

impl FileState {
    fn of(m: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Self {
                dev: m.dev(),
                ino: m.ino(),
                len: m.len(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {
                dev: 0,
                ino: 0,
                len: m.len(),
            }
        }
    }
}

/// The lock file next to the live log (`audit.jsonl.lock`): whoever appends
/// holds it, so one process writes at a time.
fn lock_path(live: &Path) -> PathBuf {
    let mut p = live.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

fn open_live(live: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(live)
        .with_context(|| format!("failed to open audit log {}", live.display()))
}

/// The live log and signing key of `config`, relative to `data_dir` when
/// left empty.
fn resolve(config: &AuditConfig, data_dir: &Path) -> (PathBuf, PathBuf) {
    let live = if config.path.as_os_str().is_empty() {
        data_dir.join("audit").join("audit.jsonl")
    } else {
        config.path.clone()
    };
    let key_path = if config.signing_key.as_os_str().is_empty() {
        data_dir.join("audit").join("signing-key.pk8")
    } else {
        config.signing_key.clone()
    };
    (live, key_path)
}

/// Appends to the chain. Every append (a drained batch of requests, an
/// admin record, a checkpoint, a rotation) happens under the lock file, and
/// starts by checking that the live file is still as this writer left it:
/// when another process (`cairn serve`, a CLI admin command) appended or
/// rotated since, the head is read again and the file reopened, so the chain
/// continues from the other writer's last line.
struct Writer {
    live: PathBuf,
    lock: File,
    file: File,
    /// Lines of the current locked section, written at its end (or before a
    /// checkpoint or rotation).
    buf: Vec<u8>,
    /// The live file as this writer left it; `None`: read the head again.
    left: Option<FileState>,
    size: u64,
    head: Head,
    since_checkpoint: u64,
    key: Ed25519KeyPair,
    public_key: String,
    config: AuditConfig,
    anchor: Option<Anchor>,
    /// Test hook: makes every write fail, as a full disk would.
    #[cfg(test)]
    fail_writes: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Writer {
    fn open(live: PathBuf, key: Ed25519KeyPair, config: AuditConfig) -> anyhow::Result<Self> {
        if let Some(dir) = live.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path(&live))
            .with_context(|| format!("failed to open {}", lock_path(&live).display()))?;
        let file = open_live(&live)?;
        let public_key = hex::encode(key.public_key().as_ref());
        let mut writer = Self {
            live,
            lock,
            file,
            buf: Vec::new(),
            left: None,
            size: 0,
            head: Head::genesis(),
            since_checkpoint: 0,
            anchor: (!config.anchor_path.as_os_str().is_empty()).then(|| Anchor {
                path: config.anchor_path.clone(),
            }),
            key,
            public_key,
            config,
            #[cfg(test)]
            fail_writes: Default::default(),
        };
        // reads the head (cutting a torn line) under the lock, and checks it
        // against the anchor: a log cut behind its last anchored checkpoint
        // is not continued
        writer.locked(|w| {
            if let Some(anchor) = &w.anchor {
                anchor.check_head(&w.live, &w.head, &w.config.instance_id)?;
            }
            Ok(())
        })?;
        Ok(writer)
    }

    /// Runs `f` holding the lock file, after catching up with other writers,
    /// and writes what it appended before letting go.
    fn locked<T>(&mut self, f: impl FnOnce(&mut Self) -> anyhow::Result<T>) -> anyhow::Result<T> {
        self.lock
            .lock()
            .with_context(|| format!("failed to lock {}", lock_path(&self.live).display()))?;
        let out = self.resync().and_then(|()| f(self));
        let flushed = self.flush();
        if flushed.is_ok() {
            self.left = self.file.metadata().ok().map(|m| FileState::of(&m));
            if let Some(state) = self.left {
                self.size = state.len;
            }
        }
        if let Err(e) = self.lock.unlock() {
            tracing::error!(error = %e, "failed to unlock the audit log");
        }
        let out = out?;
        flushed?;
        Ok(out)
    }

    /// Reads the head again and reopens the live file when it is not as
    /// this writer left it (another process appended, rotated or removed it).
    fn resync(&mut self) -> anyhow::Result<()> {
        let now = std::fs::metadata(&self.live).ok().map(|m| FileState::of(&m));
        if now.is_some() && now == self.left {
            return Ok(());
        }
        if self.left.is_some() {
            tracing::debug!(path = %self.live.display(), "another process wrote the audit log; continuing its chain");
        }
        self.buf.clear();
        self.left = None;
        self.head = read_head(&self.live)?;
        self.file = open_live(&self.live)?;
        let state = FileState::of(&self.file.metadata()?);
        self.size = state.len;
        self.left = Some(state);
        Ok(())
    }

    /// Writes the buffered lines. On failure they are dropped and the head
    /// is read again from what reached the file (a torn line is cut off), so
    /// the chain goes on from the disk.
    fn flush(&mut self) -> anyhow::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        #[cfg(test)]
        if self.fail_writes.load(std::sync::atomic::Ordering::SeqCst) {
            self.buf.clear();
            self.left = None;
            let _ = self.resync();
            bail!("injected write failure");
        }
        let written = self.file.write_all(&self.buf);
        self.buf.clear();
        if let Err(e) = written {
            self.left = None;
            if let Err(again) = self.resync() {
                tracing::error!(error = %format!("{again:#}"), "failed to read the audit log's head again");
            }
            return Err(e).with_context(|| format!("failed to write audit log {}", self.live.display()));
        }
        Ok(())
    }

    fn append(&mut self, seq: u64, line: &[u8], checkpoint: bool) {
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        self.size += line.len() as u64 + 1;
        self.head = Head {
            seq,
            hash: sha256_hex(line),
            checkpoint,
        };
    }

    fn request(&mut self, e: &AuditEvent) -> anyhow::Result<()> {
        let seq = self.head.seq + 1;
        let prev = self.head.hash.clone();
        let (query, query_sha256) = match (&e.query, self.config.store_queries) {
            (Some(q), true) => (Some(q.as_str()), None),
            (Some(q), false) => (None, Some(sha256_hex(q.as_bytes()))),
            (None, _) => (None, None),
        };
        let line = serde_json::to_vec(&RequestLine {
            seq,
            time: now(),
            kind: "request",
            instance: &self.config.instance_id,
            principal: &e.principal,
            surface: e.surface,
            query,
            query_sha256,
            repos_allowed: &e.repos_allowed,
            results: &e.results,
            backend: e.backend.as_deref(),
            model: e.model.as_deref(),
            decision: e.decision,
            outcome: &e.outcome,
            latency_ms: (e.latency_ms * 1000.0).round() / 1000.0,
            left_out: e.left_out,
            prev: &prev,
        })?;
        self.append(seq, &line, false);
        self.since_checkpoint += 1;
        if self.since_checkpoint >= self.config.checkpoint_every {
            self.checkpoint()?;
        }
        if self.size >= self.config.rotate_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// Appends an admin record and seals it at once with a signed
    /// checkpoint (admin commands are rare, and a CLI process may be the
    /// last writer for a long time).
    fn admin(&mut self, e: &AdminEvent, user: &OsUser) -> anyhow::Result<()> {
        let seq = self.head.seq + 1;
        let prev = self.head.hash.clone();
        let line = serde_json::to_vec(&AdminLine {
            seq,
            time: now(),
            kind: "admin",
            instance: &self.config.instance_id,
            action: &e.action,
            os_user: &user.name,
            uid: user.uid,
            sudo_user: user.sudo_user.as_deref(),
            target: &e.target,
            details: &e.details,
            outcome: if e.error.is_some() { "error" } else { "ok" },
            error: e.error.as_deref(),
            prev: &prev,
        })?;
        self.append(seq, &line, false);
        self.since_checkpoint += 1;
        self.checkpoint()?;
        if self.size >= self.config.rotate_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// Writes a signed checkpoint and syncs the file.
    /// Writes a signed checkpoint, syncs the file, and appends the
    /// checkpoint to the anchor (synced too) when there is one.
    fn checkpoint(&mut self) -> anyhow::Result<()> {
        let seq = self.head.seq + 1;
        let prev = self.head.hash.clone();
        let time = now();
        let signature = hex::encode(
            self.key
                .sign(signed_message(seq, &prev, &time, &self.config.instance_id).as_bytes())
                .as_ref(),
        );
        let line = serde_json::to_vec(&CheckpointLine {
            seq,
            time: time.clone(),
            kind: "checkpoint",
            instance: &self.config.instance_id,
            public_key: &self.public_key,
            signature,
            prev: &prev,
        })?;
        self.append(seq, &line, true);
        self.since_checkpoint = 0;
        self.flush()?;
        self.file.sync_data()?;
        if let Some(anchor) = &self.anchor {
            anchor.append(&AnchorEntry::Checkpoint {
                seq,
                hash: self.head.hash.clone(),
                time,
                log: self.live.display().to_string(),
                instance: self.config.instance_id.clone(),
            })?;
        }
        Ok(())
    }

    /// Closes the live file with a checkpoint (unless its last line is one),
    /// renames it to the next `FILE.NNNNNN`, starts a new one (the chain
    /// continues into it) and removes the oldest rotated files beyond
    /// `retain_files`.
    fn rotate(&mut self) -> anyhow::Result<()> {
        if self.head.checkpoint {
            self.flush()?;
            self.file.sync_data()?;
        } else {
            self.checkpoint()?;
        }
        let rotated = rotated_files(&self.live)?;
        let next = rotated
            .last()
            .and_then(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .and_then(|e| e.parse::<u64>().ok())
            })
            .unwrap_or(0)
            + 1;
        let mut target = self.live.clone().into_os_string();
        target.push(format!(".{next:06}"));
        std::fs::rename(&self.live, &target)?;
        self.file = open_live(&self.live)?;
        self.size = 0;
        if self.config.retain_files > 0 {
            let rotated = rotated_files(&self.live)?;
            let excess = rotated.len().saturating_sub(self.config.retain_files);
            for old in &rotated[..excess] {
                if let Some(anchor) = &self.anchor {
                    // noted before the file goes: verify then knows the
                    // checkpoints it held were retired, not deleted
                    let last = read_last_seq(old)?;
                    anchor.append(&AnchorEntry::Retired {
                        file: old
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        last_seq: last,
                        time: now(),
                        log: self.live.display().to_string(),
                        instance: self.config.instance_id.clone(),
                    })?;
                }
                std::fs::remove_file(old)?;
                tracing::info!(file = %old.display(), "removed an old audit log (audit.retain_files)");
            }
        }
        Ok(())
    }

    fn run(mut self, rx: Receiver<Queued>, healthy: Arc<AtomicBool>) {
        loop {
            let first = match rx.recv_timeout(RECOVERY_INTERVAL) {
                Ok(item) => item,
                Err(RecvTimeoutError::Timeout) => {
                    if !healthy.load(Ordering::SeqCst) {
                        self.recover(&healthy);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH
                && let Ok(more) = rx.try_recv()
            {
                batch.push(more);
            }
            let every_record = self.config.fsync == FsyncMode::EveryRecord;
            let written = self.locked(|w| {
                for item in &batch {
                    w.request(&item.event)?;
                }
                Ok(())
            });
            let written = written.and_then(|()| {
                if every_record {
                    self.file.sync_data().context("failed to sync the audit log")?;
                }
                Ok(())
            });
            let ok = match written {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(
                        error = %format!("{e:#}"),
                        records = batch.len(),
                        "failed to write audit records; requests answer 503 until the log can be written again"
                    );
                    healthy.store(false, Ordering::SeqCst);
                    false
                }
            };
            for item in batch {
                if let Some(ack) = item.ack {
                    let _ = ack.send(ok);
                }
            }
        }
        // the channel closed: shutdown. Seal the chain (unless another
        // writer's checkpoint already follows this one's last record).
        let sealed = self.locked(|w| {
            if w.since_checkpoint > 0 && !w.head.checkpoint {
                w.checkpoint()?;
            }
            Ok(())
        });
        if let Err(e) = sealed {
            tracing::error!(error = %format!("{e:#}"), "failed to write the final audit checkpoint");
        }
    }

    /// After a failed write: a checkpoint (which also seals whatever
    /// reached the file) tells whether the log can be written again.
    fn recover(&mut self, healthy: &AtomicBool) {
        match self.locked(|w| w.checkpoint()) {
            Ok(()) => {
                tracing::warn!("the audit log can be written again; serving requests");
                healthy.store(true, Ordering::SeqCst);
            }
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "the audit log still cannot be written"),
        }
    }
}

/// One line of the anchor file (`[audit] anchor_path`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnchorEntry {
    /// A checkpoint written to the log: its seq, the SHA-256 of its line
    /// (what the next record's `prev` holds) and its time.
    Checkpoint {
        seq: u64,
        hash: String,
        time: String,
        log: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        instance: String,
    },
    /// A rotated file removed by `retain_files`, with its last seq: the
    /// checkpoints up to it are gone on purpose.
    Retired {
        file: String,
        last_seq: u64,
        time: String,
        log: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        instance: String,
    },
}

impl AnchorEntry {
    /// The replica whose log this entry anchors ("" for a single instance).
    pub fn instance(&self) -> &str {
        match self {
            Self::Checkpoint { instance, .. } | Self::Retired { instance, .. } => instance,
        }
    }
}

/// The anchor: an append-only file, meant for another volume or a WORM
/// mount, that outlives whatever happens to the log.
#[derive(Debug, Clone)]
struct Anchor {
    path: PathBuf,
}

impl Anchor {
    /// Appends `entry` and syncs it.
    fn append(&self, entry: &AnchorEntry) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        }
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("failed to open the audit anchor {}", self.path.display()))?;
        // replicas may share the anchor (a ReadWriteMany volume): one whole
        // line at a time, under an exclusive lock (released on close)
        f.lock()
            .with_context(|| format!("failed to lock the audit anchor {}", self.path.display()))?;
        f.write_all(&line)
            .and_then(|()| f.sync_data())
            .with_context(|| format!("failed to write the audit anchor {}", self.path.display()))
    }

    /// Refuses to continue a log whose head is behind the anchor's last
    /// checkpoint, or whose line at that seq is not the anchored one.
    fn check_head(&self, live: &Path, head: &Head, instance: &str) -> anyhow::Result<()> {
        let mut entries = read_anchor(&self.path)?;
        // replicas share the anchor: this log's entries only
        entries.retain(|e| e.instance() == instance);
        let retired_up_to = retired_up_to(&entries);
        let Some((seq, hash, time)) = entries.iter().rev().find_map(|e| match e {
            AnchorEntry::Checkpoint { seq, hash, time, .. } => Some((*seq, hash, time)),
            AnchorEntry::Retired { .. } => None,
        }) else {
            return Ok(());
        };
        let advice = format!(
            "investigate, restore the log from a backup, or (keeping {} as evidence) point [audit] anchor_path at a new file",
            self.path.display()
        );
        if head.seq < seq {
            bail!(
                "the audit log {} ends at seq {} but its anchor {} holds checkpoint seq {seq} of {time}: the log was cut back or replaced; {advice}",
                live.display(),
                head.seq,
                self.path.display()
            );
        }
        if seq <= retired_up_to {
            return Ok(());
        }
        match line_hash_at(live, seq)? {
            Some(found) if &found == hash => Ok(()),
            Some(_) => bail!(
                "the audit log {} does not hold the checkpoint seq {seq} of {time} that its anchor {} records: the log was rewritten; {advice}",
                live.display(),
                self.path.display()
            ),
            None => bail!(
                "the audit log {} has no record seq {seq} (checkpoint of {time} in its anchor {}): files are missing; {advice}",
                live.display(),
                self.path.display()
            ),
        }
    }
}

/// The entries of an anchor file (none when it does not exist yet).
pub fn read_anchor(path: &Path) -> anyhow::Result<Vec<AnchorEntry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("failed to read the audit anchor {}", path.display())),
    };
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    if complete.len() < text.len() {
        // a torn last line (a crash while appending): the checkpoint it
        // would have anchored is not anchored
        tracing::warn!(anchor = %path.display(), "the audit anchor ends with a torn line; ignoring it");
    }
    let mut out = Vec::new();
    for (i, line) in complete.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not an audit anchor entry", path.display(), i + 1))?,
        );
    }
    Ok(out)
}

/// The highest last seq of a retired file (0 when none was retired).
fn retired_up_to(entries: &[AnchorEntry]) -> u64 {
    entries
        .iter()
        .filter_map(|e| match e {
            AnchorEntry::Retired { last_seq, .. } => Some(*last_seq),
            AnchorEntry::Checkpoint { .. } => None,
        })
        .max()
        .unwrap_or(0)
}

/// The seq of the last record in one log file (0 when it has none).
fn read_last_seq(path: &Path) -> anyhow::Result<u64> {
    let bytes = std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    let Some(line) = bytes.split(|&b| b == b'\n').rev().find(|l| !l.is_empty()) else {
        return Ok(0);
    };
    let v: serde_json::Value =
        serde_json::from_slice(line).with_context(|| format!("{}: the last record is not JSON", path.display()))?;
    Ok(v["seq"].as_u64().unwrap_or(0))
}

/// The SHA-256 of the line numbered `seq` in the log of `live` (its live
/// file and rotated ones, newest first), if any file holds it.
fn line_hash_at(live: &Path, seq: u64) -> anyhow::Result<Option<String>> {
    let mut files = rotated_files(live)?;
    files.push(live.to_path_buf());
    for path in files.iter().rev() {
        let Ok(f) = File::open(path) else { continue };
        let mut first = None;
        for line in BufReader::new(f).split(b'\n') {
            let line = line?;
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
                continue;
            };
            let Some(s) = v["seq"].as_u64() else { continue };
            first.get_or_insert(s);
            if s == seq {
                return Ok(Some(sha256_hex(&line)));
            }
            if s > seq {
                break;
            }
        }
        if first.is_some_and(|f| f <= seq) {
            // this file starts at or before seq and does not hold it
            return Ok(None);
        }
    }
    Ok(None)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Records per write at most (one lock, one write, one sync in
/// `every_record` mode).
const MAX_BATCH: usize = 1024;
/// How often a writer that failed tries again.
const RECOVERY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A record waiting for the writer, and who waits for it to be written.
struct Queued {
    event: AuditEvent,
    ack: Option<tokio::sync::oneshot::Sender<bool>>,
}

/// Why a record could not be taken: the request must not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrecorded {
    /// `[audit] queue_capacity` records wait already.
    QueueFull,
    /// The last write failed (a full disk, a lost volume); the writer
    /// retries every second.
    WriterFailed,
    /// The log was closed (shutdown).
    Stopped,
}

impl Unrecorded {
    pub fn message(self) -> &'static str {
        match self {
            Self::QueueFull => {
                "the audit log is behind (its queue is full): refusing rather than serving unrecorded; retry shortly"
            }
            Self::WriterFailed => {
                "the audit log cannot be written: refusing rather than serving unrecorded; the operator must check its volume"
            }
            Self::Stopped => "the audit log is closed (shutting down): refusing rather than serving unrecorded",
        }
    }
}

impl From<Unrecorded> for crate::error::ServiceError {
    fn from(u: Unrecorded) -> Self {
        crate::error::ServiceError::unavailable(u.message())
    }
}

/// The audit log's handle: cheap to share. Records go through a bounded
/// queue to a writer thread; when the queue is full or the writer failed,
/// [`AuditLog::record`] says so and the request is refused (503).
pub struct AuditLog {
    tx: Mutex<Option<SyncSender<Queued>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    healthy: Arc<AtomicBool>,
    enabled: bool,
    fsync: FsyncMode,
    #[cfg(test)]
    fail_writes: Arc<AtomicBool>,
}

impl AuditLog {
    /// A log that records nothing (`audit.enabled = false`, tests).
    pub fn disabled() -> Self {
        Self {
            tx: Mutex::new(None),
            thread: Mutex::new(None),
            healthy: Arc::new(AtomicBool::new(true)),
            enabled: false,
            fsync: FsyncMode::Checkpoint,
            #[cfg(test)]
            fail_writes: Default::default(),
        }
    }

    /// Opens (or continues) the log at `config.path`, with paths relative
    /// to `data_dir` when left empty. A log cut behind its anchor is refused;
    /// records a crashed writer left unsealed are sealed by a checkpoint.
    pub fn open(config: &AuditConfig, data_dir: &Path) -> anyhow::Result<Self> {
        if !config.enabled {
            tracing::warn!("the audit log is disabled (audit.enabled = false)");
            return Ok(Self::disabled());
        }
        let (live, key_path) = resolve(config, data_dir);
        warn_if_beside(&key_path, &live, data_dir, "the audit signing key (audit.signing_key)");
        if config.anchor_path.as_os_str().is_empty() {
            tracing::warn!(
                "the audit log has no anchor (audit.anchor_path): a log cut back to an earlier checkpoint cannot be told from a complete one"
            );
        } else {
            warn_if_beside(
                &config.anchor_path,
                &live,
                data_dir,
                "the audit anchor (audit.anchor_path)",
            );
        }
        let key = load_or_create_key(&key_path)?;
        let mut writer = Writer::open(live.clone(), key, config.clone())?;
        writer.locked(|w| {
            if w.head.seq > 0 && !w.head.checkpoint {
                tracing::warn!(
                    seq = w.head.seq,
                    "the audit log was not closed cleanly (no final checkpoint); sealing it now"
                );
                w.checkpoint()?;
            }
            Ok(())
        })?;
        tracing::info!(path = %live.display(), next_seq = writer.head.seq + 1, fsync = ?config.fsync, "audit log open");
        let healthy = Arc::new(AtomicBool::new(true));
        #[cfg(test)]
        let fail_writes = writer.fail_writes.clone();
        let (tx, rx) = sync_channel(config.queue_capacity.max(1));
        let thread = {
            let healthy = healthy.clone();
            std::thread::Builder::new()
                .name("cairn-audit".into())
                .spawn(move || writer.run(rx, healthy))?
        };
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            healthy,
            enabled: true,
            fsync: config.fsync,
            #[cfg(test)]
            fail_writes,
        })
    }

    /// Whether a request may start: the log takes records.
    pub fn available(&self) -> Result<(), Unrecorded> {
        if !self.enabled {
            return Ok(());
        }
        if !self.healthy.load(Ordering::SeqCst) {
            return Err(Unrecorded::WriterFailed);
        }
        Ok(())
    }

    /// Queues one record; an `Err` means it will not be written, and the
    /// request it describes must not be served.
    pub fn record(&self, event: AuditEvent) -> Result<(), Unrecorded> {
        self.enqueue(event, None)
    }

    /// Queues one record and, with `fsync = "every_record"`, waits until
    /// it is written and synced. For responses that return code.
    pub async fn record_synced(&self, event: AuditEvent) -> Result<(), Unrecorded> {
        if self.fsync != FsyncMode::EveryRecord || !self.enabled {
            return self.record(event);
        }
        let (ack, done) = tokio::sync::oneshot::channel();
        self.enqueue(event, Some(ack))?;
        match done.await {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => Err(Unrecorded::WriterFailed),
        }
    }

    fn enqueue(&self, event: AuditEvent, ack: Option<tokio::sync::oneshot::Sender<bool>>) -> Result<(), Unrecorded> {
        // the request's one record (see crate::gate), kept or not
        crate::slot::note_recorded(event.surface);
        if !self.enabled {
            return Ok(());
        }
        self.available()?;
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            tracing::error!("the audit log is closed; a request is refused");
            return Err(Unrecorded::Stopped);
        };
        match tx.try_send(Queued { event, ack }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                tracing::warn!("the audit queue is full; a request is refused (audit.queue_capacity)");
                Err(Unrecorded::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("the audit writer has stopped; a request is refused");
                Err(Unrecorded::Stopped)
            }
        }
    }

    /// Writes everything queued, a final signed checkpoint, and syncs.
    /// Later records are refused.
    pub fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
            && thread.join().is_err()
        {
            tracing::error!("the audit writer panicked");
        }
    }
}

/// Warns when `path` (the signing key, the anchor) sits in the data dir or
/// beside the log: whoever can edit the log could then rewrite it too.
fn warn_if_beside(path: &Path, live: &Path, data_dir: &Path, what: &str) {
    let inside = |dir: &Path| {
        let (Ok(p), Ok(d)) = (
            std::path::absolute(path),
            std::path::absolute(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }),
        ) else {
            return false;
        };
        p.starts_with(d)
    };
    if inside(data_dir) || live.parent().is_some_and(inside) {
        tracing::warn!(
            path = %path.display(),
            "{what} sits beside the audit log: anyone who can edit the log can also rewrite it; put it on another volume, owned by another user"
        );
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Admin records of a command-line process, written into the same chain as
/// `cairn serve`'s request records, whether it runs or not: each record is
/// appended under the log's lock file, continues from whatever the last
/// writer left, is sealed by a signed checkpoint and synced before
/// [`AdminLog::record`] returns.
pub struct AdminLog {
    writer: Option<Writer>,
    user: OsUser,
}

impl AdminLog {
    /// Opens the log of `config` (paths resolved as [`AuditLog::open`]
    /// does): loads (or creates) the signing key and reads the chain's head,
    /// so that a log that cannot be written is found before the action runs.
    /// With `audit.enabled = false` it records nothing.
    pub fn open(config: &AuditConfig, data_dir: &Path) -> anyhow::Result<Self> {
        let user = OsUser::current();
        if !config.enabled {
            return Ok(Self { writer: None, user });
        }
        let (live, key_path) = resolve(config, data_dir);
        let key = load_or_create_key(&key_path)?;
        let writer = Writer::open(live.clone(), key, config.clone())
            .with_context(|| format!("cannot write the audit log {}", live.display()))?;
        Ok(Self {
            writer: Some(writer),
            user,
        })
    }

    /// Appends `event` (by this process's OS user), a checkpoint after it,
    /// and syncs.
    pub fn record(&mut self, event: &AdminEvent) -> anyhow::Result<()> {
        let user = &self.user;
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        writer
            .locked(|w| w.admin(event, user))
            .with_context(|| format!("failed to write the audit record of {}", event.action))
    }

    /// Records `event` with the outcome of `result` (its error, if any) and
    /// returns `result`; when the record cannot be written the command fails
    /// with that error too, even if the action succeeded.
    pub fn finish<T>(&mut self, event: AdminEvent, result: anyhow::Result<T>) -> anyhow::Result<T> {
        let event = with_outcome(event, &result);
        let recorded = self.record(&event);
        combine(&event, recorded, result)
    }

    /// [`AdminLog::open`] and [`AdminLog::finish`], for an action that must
    /// run before the log is opened (`store.restore` brings the signing key).
    /// A failure where the log has no signing key yet is not recorded:
    /// creating the key would leave a file in the data dir that the retry
    /// of such an action (a restore into an empty data dir) refuses.
    pub fn open_and_finish<T>(
        config: &AuditConfig,
        data_dir: &Path,
        event: AdminEvent,
        result: anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        if config.enabled && result.is_err() && !resolve(config, data_dir).1.exists() {
            tracing::warn!(action = %event.action, "the data dir has no audit log yet: the failure is not recorded");
            return result;
        }
        let event = with_outcome(event, &result);
        let recorded = Self::open(config, data_dir).and_then(|mut log| log.record(&event));
        combine(&event, recorded, result)
    }
}

fn with_outcome<T>(mut event: AdminEvent, result: &anyhow::Result<T>) -> AdminEvent {
    if let Err(e) = result {
        event.error = Some(format!("{e:#}"));
    }
    event
}

fn combine<T>(event: &AdminEvent, recorded: anyhow::Result<()>, result: anyhow::Result<T>) -> anyhow::Result<T> {
    match (recorded, result) {
        (Ok(()), result) => result,
        (Err(audit), Ok(_)) => Err(audit.context(format!(
            "{} of {:?} was done, but its audit record could not be written",
            event.action, event.target
        ))),
        (Err(audit), Err(e)) => Err(anyhow::anyhow!(
            "{e:#} (and its audit record could not be written: {audit:#})"
        )),
    }
}

/// Appends one admin record to the log of `config` and syncs it (nothing
/// when `audit.enabled = false`); see [`AdminLog`].
pub fn append_admin(config: &AuditConfig, data_dir: &Path, event: AdminEvent) -> anyhow::Result<()> {
    AdminLog::open(config, data_dir)?.record(&event)
}

/// What [`verify`] found in a chain that holds together.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VerifyReport {
    /// Request and admin records (checkpoints not counted).
    pub records: u64,
    /// Of `records`, the `"type": "admin"` ones.
    pub admin_records: u64,
    pub checkpoints: u64,
    pub signatures_checked: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The first file did not start the chain (earlier files not given).
    pub starts_mid_chain: bool,
    /// Records after the last checkpoint (`--open-tail`: a running
    /// server's live file).
    pub open_tail: u64,
    /// Anchored checkpoints found in the log as anchored.
    pub anchored: u64,
    /// Anchored checkpoints in rotated files that `retain_files` removed.
    pub retired: u64,
    /// The replica whose log this is (`[audit] instance_id`; "" for a
    /// single instance).
    pub instance: String,
}

/// How [`verify`] reads the log.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The ed25519 public key: every checkpoint's signature is checked.
    pub public_key: Option<Vec<u8>>,
    /// The anchor file: every checkpoint it holds must be in the log.
    pub anchor: Option<PathBuf>,
    /// The last file is a running writer's live file, which may end
    /// with records after its last checkpoint.
    pub open_tail: bool,
}

/// The first broken link: where, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

/// Parses a public key given as 64 hex digits, or a file holding them.
pub fn parse_public_key(arg: &str) -> anyhow::Result<Vec<u8>> {
    let text = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg).with_context(|| format!("failed to read {arg}"))?
    } else {
        arg.to_string()
    };
    let key = hex::decode(text.trim()).context("the public key is not hex")?;
    if key.len() != 32 {
        bail!("an ed25519 public key is 32 bytes (64 hex digits), got {}", key.len());
    }
    Ok(key)
}

/// Checks the chain through `files` (oldest first): every link, that
/// each rotated file and (unless `open_tail`) the log end with a
/// checkpoint, given the public key every checkpoint's signature, and given
/// the anchor that every checkpoint it holds is in the log unchanged (a
/// log cut back at any point, or missing rotated files, fail).
pub fn verify(files: &[PathBuf], options: &VerifyOptions) -> anyhow::Result<Result<VerifyReport, VerifyError>> {
    let mut report = VerifyReport::default();
    let mut prev: Option<(u64, String)> = None;
    // seq -> line hash of every checkpoint
    let mut checkpoints: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    let mut last_is_checkpoint = false;
    for (index, file) in files.iter().enumerate() {
        let f = File::open(file).with_context(|| format!("failed to open {}", file.display()))?;
        let mut reader = BufReader::new(f);
        let mut buf = Vec::new();
        let mut line_no = 0usize;
        let mut file_has_records = false;
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            line_no += 1;
            let fail = |message: String| {
                Ok(Err(VerifyError {
                    file: file.clone(),
                    line: line_no,
                    message,
                }))
            };
            let Some(line) = buf.strip_suffix(b"\n") else {
                return fail("the last record is torn (no newline): modified or cut".into());
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
                return fail("not a JSON record: modified".into());
            };
            let (Some(seq), Some(claimed_prev)) = (v["seq"].as_u64(), v["prev"].as_str()) else {
                return fail("record without seq/prev: modified".into());
            };
            match &prev {
                None => {
                    report.first_seq = seq;
                    report.instance = v["instance"].as_str().unwrap_or_default().to_string();
                    if seq != 1 || claimed_prev != GENESIS {
                        report.starts_mid_chain = true;
                    }
                }
                Some((prev_seq, prev_hash)) => {
                    if seq != prev_seq + 1 {
                        return fail(format!(
                            "record seq {seq} follows seq {prev_seq}: a record was deleted, inserted or reordered"
                        ));
                    }
                    if claimed_prev != prev_hash {
                        return fail(format!(
                            "record seq {seq} does not chain to seq {prev_seq} (hash mismatch): the previous record was modified"
                        ));
                    }
                }
            }
            let hash = sha256_hex(line);
            if v["type"] == "checkpoint" {
                report.checkpoints += 1;
                if let Some(key) = options.public_key.as_deref() {
                    let (Some(sig), Some(pk)) = (v["signature"].as_str(), v["public_key"].as_str()) else {
                        return fail(format!("checkpoint seq {seq} has no signature"));
                    };
                    if hex::decode(pk).ok().as_deref() != Some(key) {
                        return fail(format!("checkpoint seq {seq} is signed by a different key ({pk})"));
                    }
                    let Ok(sig) = hex::decode(sig) else {
                        return fail(format!("checkpoint seq {seq}: signature is not hex"));
                    };
                    let key = UnparsedPublicKey::new(&ED25519, key);
                    let time = v["time"].as_str().unwrap_or_default();
                    let instance = v["instance"].as_str().unwrap_or_default();
                    let signed = key
                        .verify(signed_message(seq, claimed_prev, time, instance).as_bytes(), &sig)
                        .or_else(|_| key.verify(signed_message_v1(seq, claimed_prev).as_bytes(), &sig));
                    if signed.is_err() {
                        return fail(format!("checkpoint seq {seq}: bad signature"));
                    }
                    report.signatures_checked += 1;
                }
                checkpoints.insert(seq, hash.clone());
                last_is_checkpoint = true;
            } else {
                report.records += 1;
                if v["type"] == "admin" {
                    report.admin_records += 1;
                }
                last_is_checkpoint = false;
            }
            file_has_records = true;
            report.last_seq = seq;
            prev = Some((seq, hash));
        }
        let is_last = index + 1 == files.len();
        if file_has_records && !is_last && !last_is_checkpoint {
            return Ok(Err(VerifyError {
                file: file.clone(),
                line: line_no,
                message: "a rotated file ends without a checkpoint (rotation always writes one): its tail was cut"
                    .into(),
            }));
        }
    }
    let end = files.last().cloned().unwrap_or_default();
    if prev.is_some() && !last_is_checkpoint {
        let tail = report.last_seq - checkpoints.keys().max().copied().unwrap_or(report.first_seq - 1);
        if !options.open_tail {
            return Ok(Err(VerifyError {
                file: end,
                line: 0,
                message: format!(
                    "the log does not end with a checkpoint ({tail} records after the last one): it was cut, or its writer crashed or still runs (pass --open-tail for a running server's live file)"
                ),
            }));
        }
        report.open_tail = tail;
    }
    if let Some(anchor) = &options.anchor {
        let mut entries = read_anchor(anchor)?;
        // replicas share the anchor: this chain's entries only
        entries.retain(|e| e.instance() == report.instance);
        let retired = retired_up_to(&entries);
        let fail = |message: String| {
            Ok(Err(VerifyError {
                file: anchor.clone(),
                line: 0,
                message,
            }))
        };
        if prev.is_none() && !entries.is_empty() {
            return fail("the anchor records checkpoints but the log files given hold no record".into());
        }
        if report.starts_mid_chain && report.first_seq.saturating_sub(1) > retired {
            return fail(format!(
                "the log starts at seq {} but the anchor notes no removed file up to seq {}: rotated files are missing",
                report.first_seq,
                report.first_seq - 1
            ));
        }
        for entry in &entries {
            let AnchorEntry::Checkpoint { seq, hash, time, .. } = entry else {
                continue;
            };
            let seq = *seq;
            if seq > report.last_seq {
                return fail(format!(
                    "the anchor holds checkpoint seq {seq} of {time} but the log ends at seq {}: the log was cut back, or its newest files are missing",
                    report.last_seq
                ));
            }
            if seq < report.first_seq {
                if seq <= retired {
                    report.retired += 1;
                    continue;
                }
                return fail(format!(
                    "the anchor holds checkpoint seq {seq} of {time}, before the log's first record (seq {}), and notes no removed file holding it: rotated files are missing",
                    report.first_seq
                ));
            }
            match checkpoints.get(&seq) {
                Some(found) if found == hash => report.anchored += 1,
                _ => {
                    return fail(format!(
                        "the anchor holds checkpoint seq {seq} of {time}, which the log does not hold as anchored: the log was rewritten"
                    ));
                }
            }
        }
    }
    Ok(Ok(report))
}

/// The instance named by the first line of an audit log file ("" for a
/// single instance, or an empty file).
fn file_instance(path: &Path) -> anyhow::Result<Option<String>> {
    let f = File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut first = Vec::new();
    BufReader::new(f).read_until(b'\n', &mut first)?;
    if first.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_slice(first.trim_ascii_end()).unwrap_or(serde_json::Value::Null);
    Ok(Some(v["instance"].as_str().unwrap_or_default().to_string()))
}

/// Checks the logs of several replicas at once: `files` (each replica's
/// oldest first, replicas in any order) are grouped by the instance their
/// lines name, and each chain is verified as [`verify`] does. With the
/// anchor, a replica the anchor records but whose log was not given fails
/// too. An empty file goes with the group of the file given before it.
pub fn verify_set(
    files: &[PathBuf],
    options: &VerifyOptions,
) -> anyhow::Result<Vec<(String, Result<VerifyReport, VerifyError>)>> {
    let mut groups: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for file in files {
        let instance = match file_instance(file)? {
            Some(i) => i,
            None => groups.last().map(|(i, _)| i.clone()).unwrap_or_default(),
        };
        match groups.iter_mut().find(|(i, _)| *i == instance) {
            Some((_, g)) => g.push(file.clone()),
            None => groups.push((instance, vec![file.clone()])),
        }
    }
    let mut out = Vec::new();
    for (instance, group) in &groups {
        out.push((instance.clone(), verify(group, options)?));
    }
    if let Some(anchor) = &options.anchor {
        let mut missing: Vec<String> = read_anchor(anchor)?
            .iter()
            .map(|e| e.instance().to_string())
            .filter(|i| !groups.iter().any(|(g, _)| g == i))
            .collect();
        missing.sort();
        missing.dedup();
        for instance in missing {
            out.push((
                instance.clone(),
                Err(VerifyError {
                    file: anchor.clone(),
                    line: 0,
                    message: format!(
                        "the anchor records checkpoints of instance {instance:?}, whose log was not given: a replica's log is missing"
                    ),
                }),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> AuditEvent {
        AuditEvent {
            principal: "alice".into(),
            surface: "http.search",
            query: Some(format!("query {i}")),
            repos_allowed: vec!["acme-auth".into()],
            results: vec![AuditResult {
                id: format!("id-{i}"),
                repo: "acme-auth".into(),
                path: "src/login.py".into(),
                commit: "abc".into(),
            }],
            backend: None,
            model: None,
            decision: Decision::Allow,
            outcome: "ok".into(),
            latency_ms: 1.5,
            left_out: 0,
        }
    }

    fn write_log(dir: &Path, n: usize, config: AuditConfig) -> PathBuf {
        let log = AuditLog::open(&config, dir).unwrap();
        for i in 0..n {
            log.record(event(i)).unwrap();
        }
        log.close();
        dir.join("audit/audit.jsonl")
    }

    fn keyed(key: &[u8]) -> VerifyOptions {
        VerifyOptions {
            public_key: Some(key.to_vec()),
            ..Default::default()
        }
    }

    fn public_key(dir: &Path) -> Vec<u8> {
        parse_public_key(dir.join("audit/signing-key.pub").to_str().unwrap()).unwrap()
    }

    fn config(checkpoint_every: u64) -> AuditConfig {
        AuditConfig {
            checkpoint_every,
            ..AuditConfig::default()
        }
    }

    #[test]
    fn chain_and_signatures_verify_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 7, config(3));
        // a restart continues the chain
        write_log(dir.path(), 2, config(3));
        let key = public_key(dir.path());
        let report = verify(std::slice::from_ref(&path), &keyed(&key)).unwrap().unwrap();
        assert_eq!(report.records, 9);
        // 2 periodic + 1 at the first close, 1 at the second close
        assert_eq!(report.checkpoints, 4);
        assert_eq!(report.signatures_checked, 4);
        assert_eq!(report.first_seq, 1);
        assert!(!report.starts_mid_chain);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().last().unwrap().contains("\"type\":\"checkpoint\""));
    }

    #[test]
    fn every_kind_of_tampering_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 6, config(100));
        let key = public_key(dir.path());
        let lines: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(lines.len(), 7);
        let check = |lines: &[String]| {
            let copy = dir.path().join("copy.jsonl");
            std::fs::write(&copy, lines.join("\n") + "\n").unwrap();
            verify(&[copy], &keyed(&key)).unwrap()
        };
        assert!(check(&lines).is_ok());

        let mut modified = lines.clone();
        modified[2] = modified[2].replace("query 2", "query X");
        let e = check(&modified).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("modified"), "{e}");

        let mut deleted = lines.clone();
        deleted.remove(3);
        let e = check(&deleted).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("deleted"), "{e}");

        let mut inserted = lines.clone();
        inserted.insert(3, lines[1].clone());
        assert_eq!(check(&inserted).unwrap_err().line, 4);

        let mut reordered = lines.clone();
        reordered.swap(2, 3);
        assert_eq!(check(&reordered).unwrap_err().line, 3);

        // the last record changed: only the signed checkpoint after it tells
        let mut last = lines.clone();
        last[5] = last[5].replace("query 5", "query Y");
        assert_eq!(check(&last).unwrap_err().line, 7);

        // a forged checkpoint: right chain, wrong key
        let mut forged = lines.clone();
        let other =
            Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap().as_ref()).unwrap();
        let prev = sha256_hex(lines[5].as_bytes());
        let v: serde_json::Value = serde_json::from_str(&lines[6]).unwrap();
        let sig = hex::encode(
            other
                .sign(signed_message(7, &prev, v["time"].as_str().unwrap(), "").as_bytes())
                .as_ref(),
        );
        forged[6] = lines[6].replace(v["signature"].as_str().unwrap(), &sig);
        let e = check(&forged).unwrap_err();
        assert!(e.message.contains("bad signature"), "{e}");
    }

    #[test]
    fn queries_can_be_kept_as_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(
            dir.path(),
            1,
            AuditConfig {
                store_queries: false,
                ..AuditConfig::default()
            },
        );
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.contains("query 0"));
        assert!(text.contains(&sha256_hex(b"query 0")));
    }

    #[test]
    fn rotation_continues_the_chain_and_retention_removes_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            rotate_bytes: 4096,
            retain_files: 2,
            ..AuditConfig::default()
        };
        let path = write_log(dir.path(), 60, cfg);
        let mut files = rotated_files(&path).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        files.push(path.clone());
        let key = public_key(dir.path());
        let report = verify(&files, &keyed(&key)).unwrap().unwrap();
        assert!(report.starts_mid_chain, "the oldest files were removed");
        assert!(report.last_seq > 60);
        // out of order files are caught
        let e = verify(&[files[1].clone(), files[0].clone()], &keyed(&key))
            .unwrap()
            .unwrap_err();
        assert!(e.message.contains("deleted, inserted or reordered"), "{e}");
    }

    #[test]
    fn a_torn_last_line_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 2, config(100));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":4,\"ty").unwrap();
        drop(f);
        write_log(dir.path(), 1, config(100));
        let key = public_key(dir.path());
        let report = verify(&[path], &keyed(&key)).unwrap().unwrap();
        assert_eq!(report.records, 3);
    }

    fn admin_event(i: usize) -> AdminEvent {
        AdminEvent::new("token.create", format!("user{i}"))
            .detail("id", format!("tok_{i}"))
            .detail("groups", ["payments"])
    }

    fn lines_of(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn writers_in_two_processes_share_one_chain() {
        // two handles are two writers, each with its own lock description,
        // exactly as `cairn serve` and a CLI command in another process
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(5);
        let a = AuditLog::open(&cfg, dir.path()).unwrap();
        let b = AuditLog::open(&cfg, dir.path()).unwrap();
        for i in 0..20 {
            a.record(event(i)).unwrap();
            b.record(event(100 + i)).unwrap();
            if i % 5 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(20));
                append_admin(&cfg, dir.path(), admin_event(i)).unwrap();
            }
        }
        a.close();
        b.close();
        let path = dir.path().join("audit/audit.jsonl");
        let key = public_key(dir.path());
        let report = verify(std::slice::from_ref(&path), &keyed(&key)).unwrap().unwrap();
        assert_eq!(report.records, 44);
        assert_eq!(report.admin_records, 4);
        assert_eq!(report.first_seq, 1);
        let lines = lines_of(&path);
        let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=lines.len() as u64).collect::<Vec<_>>());
        assert_eq!(lines.last().unwrap()["type"], "checkpoint");
        // every admin record is sealed by the checkpoint right after it
        for (i, l) in lines.iter().enumerate() {
            if l["type"] == "admin" {
                assert_eq!(lines[i + 1]["type"], "checkpoint", "{l}");
            }
        }
    }

    #[test]
    fn a_rotation_by_another_writer_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            rotate_bytes: 4096,
            ..AuditConfig::default()
        };
        let log = AuditLog::open(&cfg, dir.path()).unwrap();
        for i in 0..60 {
            log.record(event(i)).unwrap();
            if i % 10 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(10));
                append_admin(&cfg, dir.path(), admin_event(i)).unwrap();
            }
        }
        log.close();
        let path = dir.path().join("audit/audit.jsonl");
        let mut files = rotated_files(&path).unwrap();
        assert!(files.len() >= 2, "{files:?}");
        files.push(path);
        let report = verify(&files, &keyed(&public_key(dir.path()))).unwrap().unwrap();
        assert_eq!(report.records, 66);
        assert_eq!(report.admin_records, 6);
        assert!(!report.starts_mid_chain);
    }

    #[test]
    fn admin_records_verify_and_tampering_with_them_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 2, config(100));
        let mut admin = AdminLog::open(&config(100), dir.path()).unwrap();
        admin.record(&admin_event(1)).unwrap();
        let failed: anyhow::Result<()> = Err(anyhow::anyhow!("no token with id or principal \"x\""));
        let e = admin
            .finish(AdminEvent::new("token.revoke", "x").detail("revoked", 0), failed)
            .unwrap_err();
        assert!(e.to_string().contains("no token"), "{e}");
        let key = public_key(dir.path());
        let report = verify(std::slice::from_ref(&path), &keyed(&key)).unwrap().unwrap();
        assert_eq!((report.records, report.admin_records, report.checkpoints), (4, 2, 3));

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        let created: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
        assert_eq!(created["type"], "admin");
        assert_eq!(created["seq"], 4);
        assert_eq!(created["action"], "token.create");
        assert_eq!(created["target"], "user1");
        assert_eq!(created["details"]["id"], "tok_1");
        assert_eq!(created["outcome"], "ok");
        assert!(created.get("error").is_none());
        assert_eq!(created["os_user"], OsUser::current().name.as_str());
        assert!(!created["os_user"].as_str().unwrap().is_empty());
        assert_eq!(created["prev"], sha256_hex(lines[2].as_bytes()));
        let revoked: serde_json::Value = serde_json::from_str(&lines[5]).unwrap();
        assert_eq!(revoked["action"], "token.revoke");
        assert_eq!(revoked["outcome"], "error");
        assert!(revoked["error"].as_str().unwrap().contains("no token"));

        let check = |lines: &[String]| {
            let copy = dir.path().join("copy.jsonl");
            std::fs::write(&copy, lines.join("\n") + "\n").unwrap();
            verify(&[copy], &keyed(&key)).unwrap()
        };
        let mut forged = lines.clone();
        forged[3] = forged[3].replace("\"token.create\"", "\"token.list\"");
        let e = check(&forged).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        let mut other_user = lines.clone();
        other_user[5] = other_user[5].replace(
            &format!("\"os_user\":{}", created["os_user"]),
            "\"os_user\":\"somebody\"",
        );
        assert_ne!(other_user[5], lines[5]);
        let e = check(&other_user).unwrap_err();
        assert_eq!(e.line, 7, "{e}");
        let mut dropped = lines.clone();
        dropped.remove(3);
        assert_eq!(check(&dropped).unwrap_err().line, 4);
    }

    #[test]
    fn an_action_done_but_not_recorded_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut admin = AdminLog::open(&config(100), dir.path()).unwrap();
        // the live file turns into a directory: appending fails
        let live = dir.path().join("audit/audit.jsonl");
        std::fs::remove_file(&live).unwrap();
        std::fs::create_dir(&live).unwrap();
        let e = admin.finish(admin_event(1), Ok(())).unwrap_err();
        assert!(
            format!("{e:#}").contains("was done, but its audit record could not be written"),
            "{e:#}"
        );
        let e = AdminLog::open_and_finish(
            &config(100),
            dir.path(),
            admin_event(2),
            Err::<(), _>(anyhow::anyhow!("restore failed")),
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").starts_with("restore failed (and its audit record"),
            "{e:#}"
        );
    }

    #[test]
    fn a_disabled_log_records_no_admin_action() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            enabled: false,
            ..AuditConfig::default()
        };
        append_admin(&cfg, dir.path(), admin_event(1)).unwrap();
        assert!(!dir.path().join("audit").exists());
    }

    #[test]
    fn the_os_user_comes_from_the_effective_uid() {
        let status = "Name:\tcairn\nUid:\t1000\t1001\t1001\t1001\nGid:\t100\t100\t100\t100\n";
        assert_eq!(effective_uid(status), Some(1001));
        assert_eq!(effective_uid("Name:\tx\n"), None);
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment\nalice:x:1001:1001::/home/alice:/bin/sh\n";
        assert_eq!(passwd_name(passwd, 1001).as_deref(), Some("alice"));
        assert_eq!(passwd_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(passwd_name(passwd, 7), None);
        let me = OsUser::current();
        assert!(!me.name.is_empty());
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(me.uid.is_some());
        }
    }

    #[test]
    fn token_details_never_hold_the_token() {
        let record: crate::auth::TokenRecord = serde_json::from_value(serde_json::json!({
            "id": "tok_1",
            "principal": "alice",
            "groups": ["payments"],
            "sha256": "ab".repeat(32),
            "created_at": "now",
        }))
        .unwrap();
        let e = AdminEvent::new("token.create", "alice").token(&record);
        assert_eq!(
            e.details,
            serde_json::json!({"id": "tok_1", "principal": "alice", "groups": ["payments"]})
        );
    }

    fn anchored(dir: &Path, checkpoint_every: u64) -> AuditConfig {
        AuditConfig {
            checkpoint_every,
            anchor_path: dir.join("worm/anchor.jsonl"),
            ..AuditConfig::default()
        }
    }

    fn with_anchor(key: &[u8], anchor: &Path) -> VerifyOptions {
        VerifyOptions {
            public_key: Some(key.to_vec()),
            anchor: Some(anchor.to_path_buf()),
            open_tail: false,
        }
    }

    #[test]
    fn checkpoints_carry_seq_hash_and_time_into_the_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = anchored(dir.path(), 3);
        let path = write_log(dir.path(), 7, cfg.clone());
        let lines = lines_of(&path);
        let entries = read_anchor(&cfg.anchor_path).unwrap();
        // after records 3 and 6, and at shutdown
        assert_eq!(entries.len(), 3, "{entries:?}");
        let text = std::fs::read_to_string(&path).unwrap();
        for entry in &entries {
            let AnchorEntry::Checkpoint { seq, hash, time, .. } = entry else {
                panic!("{entry:?}")
            };
            let line = text.lines().nth(*seq as usize - 1).unwrap();
            assert_eq!(&sha256_hex(line.as_bytes()), hash);
            assert_eq!(lines[*seq as usize - 1]["time"].as_str(), Some(time.as_str()));
        }
        let report = verify(&[path], &with_anchor(&public_key(dir.path()), &cfg.anchor_path))
            .unwrap()
            .unwrap();
        assert_eq!((report.records, report.checkpoints, report.anchored), (7, 3, 3));
    }

    #[test]
    fn a_log_cut_at_any_point_is_detected_with_its_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = anchored(dir.path(), 3);
        let path = write_log(dir.path(), 10, cfg.clone());
        let key = public_key(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        let ends: Vec<usize> = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        // every cut: at each line end (exactly at earlier checkpoints too)
        // and in the middle of each line
        let mut cuts: Vec<usize> = ends[..ends.len() - 1].to_vec();
        cuts.extend(ends.iter().map(|e| e - 5));
        cuts.push(0);
        let cut = dir.path().join("cut.jsonl");
        for at in cuts {
            std::fs::write(&cut, &bytes[..at]).unwrap();
            let e = verify(std::slice::from_ref(&cut), &with_anchor(&key, &cfg.anchor_path))
                .unwrap()
                .expect_err(&format!("a cut at byte {at} passed"));
            assert!(
                e.message.contains("cut") || e.message.contains("torn") || e.message.contains("no record"),
                "{at}: {e}"
            );
        }
        // a cut exactly at an earlier checkpoint passes without the anchor
        let at_checkpoint = ends[7];
        std::fs::write(&cut, &bytes[..at_checkpoint]).unwrap();
        assert!(verify(std::slice::from_ref(&cut), &keyed(&key)).unwrap().is_ok());
        let e = verify(std::slice::from_ref(&cut), &with_anchor(&key, &cfg.anchor_path))
            .unwrap()
            .unwrap_err();
        assert!(e.message.contains("the log ends at seq 8"), "{e}");
    }

    #[test]
    fn a_log_without_a_final_checkpoint_fails_unless_its_tail_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 4, config(100));
        let text = std::fs::read_to_string(&path).unwrap();
        // drop the final checkpoint: a cut tail, or a running writer's file
        let cut: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, cut).unwrap();
        let key = public_key(dir.path());
        let e = verify(std::slice::from_ref(&path), &keyed(&key)).unwrap().unwrap_err();
        assert!(e.message.contains("does not end with a checkpoint"), "{e}");
        let open = VerifyOptions {
            open_tail: true,
            ..keyed(&key)
        };
        let report = verify(std::slice::from_ref(&path), &open).unwrap().unwrap();
        assert_eq!((report.records, report.open_tail), (4, 4));
    }

    #[test]
    fn missing_rotated_files_are_detected_and_retired_ones_are_not_missing() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            rotate_bytes: 4096,
            ..anchored(dir.path(), 5)
        };
        let path = write_log(dir.path(), 62, cfg.clone());
        let mut files = rotated_files(&path).unwrap();
        assert!(files.len() >= 3, "{files:?}");
        files.push(path.clone());
        let key = public_key(dir.path());
        let options = with_anchor(&key, &cfg.anchor_path);
        assert!(verify(&files, &options).unwrap().is_ok());
        assert!(!lines_of(&path).is_empty(), "the live file holds records");
        let without = |i: usize| {
            let mut f = files.clone();
            f.remove(i);
            verify(&f, &options).unwrap().unwrap_err()
        };
        let oldest = without(0);
        assert!(oldest.message.contains("rotated files are missing"), "{oldest}");
        let newest_rotated = without(files.len() - 2);
        assert!(
            newest_rotated.message.contains("deleted") || newest_rotated.message.contains("newest files are missing"),
            "{newest_rotated}"
        );
        let live = without(files.len() - 1);
        assert!(live.message.contains("newest files are missing"), "{live}");
        // a rotated file cut at its last checkpoint's line
        let text = std::fs::read_to_string(&files[1]).unwrap();
        let kept: String = text
            .lines()
            .take(text.lines().count() - 1)
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&files[1], kept).unwrap();
        let e = verify(&files, &options).unwrap().unwrap_err();
        assert!(e.message.contains("rotated file ends without a checkpoint"), "{e}");

        // retain_files removes old files and notes them in the anchor
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            rotate_bytes: 4096,
            retain_files: 1,
            ..anchored(dir.path(), 5)
        };
        let path = write_log(dir.path(), 60, cfg.clone());
        let mut files = rotated_files(&path).unwrap();
        assert_eq!(files.len(), 1);
        files.push(path);
        let report = verify(&files, &with_anchor(&public_key(dir.path()), &cfg.anchor_path))
            .unwrap()
            .unwrap();
        assert!(report.retired > 0 && report.anchored > 0, "{report:?}");
    }

    #[test]
    fn a_writer_refuses_to_continue_a_log_cut_behind_its_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = anchored(dir.path(), 3);
        let path = write_log(dir.path(), 7, cfg.clone());
        let text = std::fs::read_to_string(&path).unwrap();
        // cut back exactly to the first checkpoint (seq 4)
        let cut: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, &cut).unwrap();
        let e = AuditLog::open(&cfg, dir.path()).err().expect("a cut log was continued");
        assert!(format!("{e:#}").contains("cut back"), "{e:#}");
        assert!(AdminLog::open(&cfg, dir.path()).is_err());
        // rewritten: the anchored last checkpoint replaced by another
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let last = lines.pop().unwrap().replace("\"time\":\"2", "\"time\":\"1");
        lines.push(last);
        std::fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        let e = AuditLog::open(&cfg, dir.path())
            .err()
            .expect("a rewritten log was continued");
        assert!(format!("{e:#}").contains("rewritten"), "{e:#}");
        // the intact log continues
        std::fs::write(&path, &text).unwrap();
        write_log(dir.path(), 2, cfg.clone());
        let report = verify(&[path], &with_anchor(&public_key(dir.path()), &cfg.anchor_path))
            .unwrap()
            .unwrap();
        assert_eq!(report.records, 9);
    }

    #[test]
    fn records_a_crashed_writer_left_unsealed_are_sealed_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 2, config(100));
        let text = std::fs::read_to_string(&path).unwrap();
        let cut: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, cut).unwrap();
        let log = AuditLog::open(&config(100), dir.path()).unwrap();
        drop(log);
        let lines = lines_of(&path);
        assert_eq!(lines[2]["type"], "checkpoint");
        assert!(verify(&[path], &keyed(&public_key(dir.path()))).unwrap().is_ok());
    }

    #[test]
    fn a_failed_writer_refuses_records_until_it_can_write_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&config(100), dir.path()).unwrap();
        log.record(event(0)).unwrap();
        log.fail_writes.store(true, Ordering::SeqCst);
        // the record taken before the failure shows, then every later one is refused
        let mut refused = None;
        for i in 1..2000 {
            if let Err(e) = log.record(event(i)) {
                refused = Some(e);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(refused, Some(Unrecorded::WriterFailed));
        assert_eq!(log.available(), Err(Unrecorded::WriterFailed));
        log.fail_writes.store(false, Ordering::SeqCst);
        // the writer tries a checkpoint every second
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while log.available().is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(log.available(), Ok(()));
        log.record(event(5000)).unwrap();
        log.close();
        let path = dir.path().join("audit/audit.jsonl");
        assert!(verify(&[path], &keyed(&public_key(dir.path()))).unwrap().is_ok());
    }

    #[test]
    fn a_full_queue_refuses_records() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            queue_capacity: 2,
            ..config(100)
        };
        let log = AuditLog::open(&cfg, dir.path()).unwrap();
        // another process holds the log's lock: the writer waits
        let path = dir.path().join("audit/audit.jsonl");
        let other = File::create(lock_path(&path)).unwrap();
        other.lock().unwrap();
        let mut taken = 0;
        let refused = loop {
            match log.record(event(taken)) {
                Ok(()) => taken += 1,
                Err(e) => break e,
            }
            assert!(taken < 100, "the queue never filled");
        };
        assert_eq!(refused, Unrecorded::QueueFull);
        other.unlock().unwrap();
        log.close();
        let lines = lines_of(&path);
        let records = lines.iter().filter(|l| l["type"] == "request").count();
        assert_eq!(records, taken, "every record taken was written");
    }

    #[tokio::test]
    async fn every_record_mode_returns_once_the_record_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            fsync: FsyncMode::EveryRecord,
            ..config(100)
        };
        let log = AuditLog::open(&cfg, dir.path()).unwrap();
        let path = dir.path().join("audit/audit.jsonl");
        for i in 0..3 {
            log.record_synced(event(i)).await.unwrap();
            let lines = lines_of(&path);
            assert_eq!(lines.last().unwrap()["query"], format!("query {i}"));
        }
        log.fail_writes.store(true, Ordering::SeqCst);
        assert_eq!(log.record_synced(event(9)).await, Err(Unrecorded::WriterFailed));
    }

    #[test]
    fn replicas_share_one_anchor_and_are_verified_as_a_set() {
        let shared = tempfile::tempdir().unwrap();
        let anchor = shared.path().join("anchor.jsonl");
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cfg = |instance: &str| AuditConfig {
            checkpoint_every: 2,
            anchor_path: anchor.clone(),
            instance_id: instance.into(),
            ..AuditConfig::default()
        };
        // interleaved writers: each continues across the other's anchor entries
        for round in 0..2 {
            write_log(a.path(), 3 + round, cfg("cairn-0"));
            write_log(b.path(), 2, cfg("cairn-1"));
        }
        let (log_a, log_b) = (a.path().join("audit/audit.jsonl"), b.path().join("audit/audit.jsonl"));
        assert!(lines_of(&log_a).iter().all(|l| l["instance"] == "cairn-0"));
        // the same key for both, as replicas mounting one Secret would have
        let options = VerifyOptions {
            anchor: Some(anchor.clone()),
            ..Default::default()
        };
        let results = verify_set(&[log_b.clone(), log_a.clone()], &options).unwrap();
        assert_eq!(results.len(), 2);
        for (instance, r) in &results {
            let r = r.as_ref().unwrap_or_else(|e| panic!("{instance}: {e}"));
            assert_eq!(&r.instance, instance);
            assert!(r.anchored > 0);
        }
        // a replica's log left out
        let results = verify_set(std::slice::from_ref(&log_a), &options).unwrap();
        let missing = results.iter().find(|(i, _)| i == "cairn-1").unwrap();
        assert!(
            missing
                .1
                .as_ref()
                .unwrap_err()
                .message
                .contains("a replica's log is missing")
        );
        // one replica's log cut back at a checkpoint
        let text = std::fs::read_to_string(&log_b).unwrap();
        let cut: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
        std::fs::write(&log_b, cut).unwrap();
        let results = verify_set(&[log_a.clone(), log_b.clone()], &options).unwrap();
        assert!(results.iter().find(|(i, _)| i == "cairn-0").unwrap().1.is_ok());
        let e = results
            .iter()
            .find(|(i, _)| i == "cairn-1")
            .unwrap()
            .1
            .as_ref()
            .unwrap_err();
        assert!(e.message.contains("cut back"), "{e}");
        assert!(
            AuditLog::open(&cfg("cairn-1"), b.path()).is_err(),
            "cairn-1 continued its cut log"
        );
        assert!(AuditLog::open(&cfg("cairn-0"), a.path()).is_ok());
    }
}
