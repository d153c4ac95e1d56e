//! Remotes over `https://`: a real smart-HTTP git server (`git http-backend`
//! behind rustls, certificates from a test CA, Basic auth) serves a repo;
//! the mirror sync trusts the repo's `ca_bundle`, sends the token from
//! `token_env`, fails clearly without either, and a run indexes the fetched
//! commit and follows a new push.
//!
//! libgit2's TLS trust store is process-wide and only grows, so the checks
//! that need the CA *not* to be trusted run first, in this one test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use cairn_indexer::datadir::DataDir;
use cairn_indexer::embed::HashEmbedder;
use cairn_indexer::pipeline::NoProgress;
use cairn_indexer::repo::{Credentials, RepoSpec};
use cairn_indexer::sync::{Resolved, resolve};
use tokio::io::AsyncWriteExt;

use crate::tls::{TlsConfig, TlsConfigExt as _, TlsListener};
use crate::tls_tests::certificates;
use cairn_engine::engine::Engine;
use cairn_services::config::Config;

/// The token the server accepts: cargo sets `CARGO_PKG_NAME` for every test
/// process, so the test needs no `set_var` (unsound with other threads).
const TOKEN_ENV: &str = "CARGO_PKG_NAME";

struct GitServer {
    root: PathBuf,
    authorization: String,
}

/// One CGI request to `git http-backend`, after checking Basic auth.
async fn git_cgi(
    State(s): State<Arc<GitServer>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(s.authorization.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")],
            "",
        )
            .into_response();
    }
    let header_env = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &s.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", uri.path())
        .env("REQUEST_METHOD", method.as_str())
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header_env(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header_env(header::CONTENT_ENCODING))
        .env("REMOTE_USER", "x-access-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("git http-backend");
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = child.wait_with_output().await.unwrap();
    writer.await.unwrap();
    let raw = out.stdout;
    let (head, rest) = match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => {
            let i = raw.windows(2).position(|w| w == b"\n\n").expect("CGI headers");
            (&raw[..i], &raw[i + 2..])
        }
    };
    let mut response = Response::builder();
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code: u16 = value.split_whitespace().next().unwrap().parse().unwrap();
            response = response.status(code);
        } else {
            response = response.header(name.trim(), value);
        }
    }
    response.body(axum::body::Body::from(rest.to_vec())).unwrap()
}

/// Serves the repos under `root` over https with the certificates in `certs`.
async fn serve_git(root: &Path, certs: &Path, token: &str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    let state = Arc::new(GitServer {
        root: root.to_path_buf(),
        authorization: format!("Basic {basic}"),
    });
    let app = axum::Router::new().fallback(git_cgi).with_state(state);
    let tls = TlsConfig {
        cert: certs.join("server.pem"),
        key: certs.join("server.key"),
        client_ca: PathBuf::new(),
    }
    .server_config(&[b"http/1.1"])
    .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = TlsListener::new(tcp, tls).unwrap();
    let addr = axum::serve::Listener::local_addr(&listener).unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn sync(root: &Path, spec: &RepoSpec) -> Result<String, String> {
    let (root, spec) = (root.to_path_buf(), spec.clone());
    tokio::task::spawn_blocking(move || resolve(&root, &spec))
        .await
        .unwrap()
        .map(|r| match r {
            Resolved::Git { commit, .. } => commit,
            other => panic!("a remote resolves to a mirror, not {other:?}"),
        })
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn https_remote_with_token_and_private_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    certificates(&certs);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(
        work.join("auth.py"),
        "def verify_session_token(token):\n    return token.startswith('s-')\n",
    )
    .unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "init"]);
    let served = tmp.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    git(tmp.path(), &["clone", "-q", "--bare", "work", "served/acme.git"]);

    let token = std::env::var(TOKEN_ENV).expect("cargo sets CARGO_PKG_NAME for tests");
    let (addr, server) = serve_git(&served, &certs, &token).await;
    let data = tmp.path().join("data");
    let spec = RepoSpec {
        name: "acme/auth".into(),
        url: format!("https://{addr}/acme.git"),
        credentials: Credentials {
            token_env: Some(TOKEN_ENV.into()),
            ..Credentials::default()
        },
        ..RepoSpec::default()
    };

    // the test CA is not trusted yet: the certificate is refused
    let err = sync(&data, &spec).await.unwrap_err();
    assert!(err.contains("acme/auth") && err.contains("certificate"), "{err}");

    let trusted = |mut s: RepoSpec| {
        s.credentials.ca_bundle = Some(certs.join("ca.pem"));
        s
    };
    // a bundle that cannot be read is a clear error, before any connection
    let mut bad = spec.clone();
    bad.credentials.ca_bundle = Some(certs.join("server.key.missing"));
    let err = sync(&data, &bad).await.unwrap_err();
    assert!(err.contains("ca_bundle") && err.contains("server.key.missing"), "{err}");

    // trusted, but the token is wrong or missing: the server's 401 stands
    let mut wrong = trusted(spec.clone());
    wrong.credentials.token_env = Some("CARGO_PKG_VERSION".into());
    let err = sync(&data, &wrong).await.unwrap_err();
    assert!(err.contains("failed to fetch"), "{err}");
    let mut unset = trusted(spec.clone());
    unset.credentials.token_env = Some("CAIRN_TEST_VARIABLE_THAT_IS_NEVER_SET".into());
    let err = sync(&data, &unset).await.unwrap_err();
    assert!(
        err.contains("CAIRN_TEST_VARIABLE_THAT_IS_NEVER_SET is not set"),
        "{err}"
    );
    let mut none = trusted(spec.clone());
    none.credentials.token_env = None;
    let err = sync(&data, &none).await.unwrap_err();
    assert!(err.contains("none are configured"), "{err}");

    // with both, the mirror fetches the branch; a run indexes that commit
    let spec = trusted(spec);
    let first = git(&work, &["rev-parse", "HEAD"]);
    assert_eq!(sync(&data, &spec).await.unwrap(), first);
    let config = Config {
        data_dir: data.clone(),
        ..Config::default()
    };
    let engine = Engine::with_embedder(
        &config,
        DataDir::open(&data, "test").unwrap(),
        Arc::new(HashEmbedder::new(64)),
    )
    .unwrap();
    let report = engine
        .repo_indexer(&config)
        .run(&spec, false, &NoProgress)
        .await
        .unwrap();
    assert_eq!((report.index.commit.as_str(), report.index.files), (first.as_str(), 1));

    // a new push is fetched into the same mirror and indexed incrementally
    std::fs::write(work.join("billing.py"), "def charge(card, cents):\n    return cents\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "billing"]);
    git(&work, &["push", "-q", "../served/acme.git", "main"]);
    let second = git(&work, &["rev-parse", "HEAD"]);
    let report = engine
        .repo_indexer(&config)
        .run(&spec, false, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        (
            report.index.commit.as_str(),
            report.index.files,
            report.full,
            report.files_changed
        ),
        (second.as_str(), 2, false, 1)
    );
    assert!(data.join("mirrors/acme%2Fauth.git").is_dir());
    server.abort();
}
