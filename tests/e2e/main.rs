//! Black-box end-to-end tests: they run the real `cairn` binary with the real
//! default model (installed by `make setup`) against the fixture repository
//! in `fixtures/repos/acme-auth` (and `planted-secrets` for redaction),
//! turned into a git repository per test.

mod admin_audit;
mod answer;
mod audit;
mod auth;
mod cli;
mod crash;
mod daemon;
mod embed;
mod gate;
mod mcp;
mod qdrant;
mod roles;
mod secrets;
mod serve;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The binary under test.
pub fn cairn() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CAIRN_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// Runs `cairn` and returns (success, stdout, stderr).
pub fn run(args: &[&str]) -> (bool, String, String) {
    let out = cairn().args(args).output().expect("cairn runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

pub fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=cairn",
            "-c",
            "user.email=cairn@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} failed");
}

/// A temporary git repository holding the acme-auth fixture, committed.
/// Creates an API token with `cairn token create` in `data`; returns it.
pub fn token(data: &str, principal: &str, groups: &str) -> String {
    let (ok, out, err) = run(&[
        "token",
        "create",
        "--principal",
        principal,
        "--groups",
        groups,
        "--data-dir",
        data,
    ]);
    assert!(ok, "{err}");
    out.lines().last().unwrap().to_string()
}

pub fn fixture_repo() -> tempfile::TempDir {
    fixture_repo_named("acme-auth")
}

/// A temporary git repository holding `fixtures/repos/<name>`, committed.
pub fn fixture_repo_named(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/repos")
        .join(name);
    copy_dir(&src, dir.path());
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "init"]);
    dir
}

/// The acme-auth fixture indexed with `cairn index` into a new data dir;
/// returns (repo, data dir).
pub fn indexed_data_dir() -> (tempfile::TempDir, tempfile::TempDir) {
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(&[
        "index",
        repo.path().to_str().unwrap(),
        "--repo",
        "acme-auth",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    (repo, data)
}

/// A running `cairn serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub http: String,
    pub grpc: String,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    /// [`Server::start`] with a configuration file.
    pub fn start_with_config(data_dir: &Path, config: Option<&Path>) -> Server {
        match config {
            Some(c) => Self::start_with(data_dir, &["--config", c.to_str().unwrap()]),
            None => Self::start_with(data_dir, &[]),
        }
    }

    /// Starts `cairn serve` with extra global arguments (`--config FILE`).
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// [`Server::start_with`] with extra environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::wait_ready(Self::spawn(data_dir, extra, env, &["serve"]))
    }

    /// Spawns `cairn <extra> --data-dir DIR <command> --http 127.0.0.1:0
    /// --grpc 127.0.0.1:0` (`command`: `["serve"]`, `["serve",
    /// "--no-indexer"]`, `["indexer"]`) without waiting for it to listen.
    pub fn spawn(data_dir: &Path, extra: &[&str], env: &[(&str, &str)], command: &[&str]) -> Child {
        cairn()
            .envs(env.iter().copied())
            .args(extra)
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .args(command)
            .args(["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cairn starts")
    }

    /// Waits for a [`Server::spawn`]ed process to print its addresses.
    pub fn wait_ready(mut child: Child) -> Server {
        use std::io::BufRead;
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let line = lines.next().expect("serve prints its addresses").unwrap();
        // "cairn is serving HTTP on http://127.0.0.1:PORT and gRPC on 127.0.0.1:PORT"
        let http = line
            .split("http://")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        let grpc = line.rsplit(' ').next().unwrap().to_string();
        std::thread::spawn(move || for _ in lines {});
        Server { child, http, grpc }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Stops the server as an operator does (SIGTERM) and waits for a clean exit.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "cairn serve exited with {exit}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
