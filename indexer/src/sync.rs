//! Where a repo's files come from, resolved for one run: a commit in a git
//! object database, or a plain directory.
//!
//! Remote URLs (`https://`, `ssh://`, `file://`, `git://`) are fetched with
//! git2 into a bare mirror, `<data dir>/mirrors/<escaped name>.git`: only
//! the followed branch (or the remote HEAD) into `refs/cairn/head`, no tags,
//! no checkout, so no hook or filter ever runs. A local path that is a git
//! repository is read in place from its own object database (its objects are
//! already on this machine). Anything else that exists is a plain directory.
//!
//! Transports: libgit2 is built with OpenSSL (the system's) for `https://`
//! and libssh2 for `ssh://`. HTTPS trusts the system's CAs plus each repo's
//! `ca_bundle`; libgit2 keeps one trust store per process, so a bundle
//! configured for one repo is trusted for every https remote this process
//! fetches (trust is only ever added, never replaced). SSH host keys are
//! checked against the repo's `known_hosts` when one is configured (else
//! libgit2 checks `~/.ssh/known_hosts`).

use std::path::{Path, PathBuf};

use crate::error::{IndexError, Result};
use crate::repo::{Credentials, RepoSpec};

/// What a run indexes.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// A commit in the git repository (or mirror) at `repo`.
    Git { repo: PathBuf, commit: String },
    /// A plain directory, indexed as it is on disk.
    Dir(PathBuf),
}

/// A URL that names a remote rather than a local path.
pub fn is_remote(url: &str) -> bool {
    url.contains("://")
}

/// The mirror directory of repo `name` under data dir `root`: the name with
/// every byte outside `[A-Za-z0-9._-]` written as `%XX`, so distinct names
/// never share a mirror.
pub fn mirror_path(root: &Path, name: &str) -> PathBuf {
    root.join("mirrors").join(format!("{}.git", escape(name)))
}

/// `name` with every byte outside `[A-Za-z0-9_-]` (and a leading `.`) as `%XX`.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Query parameters whose value [`display_url`] hides: their name contains
/// one of these (case-insensitive).
const SECRET_PARAMS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "key",
    "sig",
    "auth",
    "credential",
];

/// `url` as it may be shown (status, logs, errors): without its userinfo
/// (`https://user:token@host/x` → `https://***@host/x`; a token is often
/// the user name alone) and with the value of query parameters such as
/// `access_token=` or `private_token=` replaced by `***`. Anything without
/// `://` (a local path) is returned unchanged.
pub fn display_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rfind('@') {
        Some(at) => format!("***@{}", &authority[at + 1..]),
        None => authority.to_string(),
    };
    let (before_fragment, fragment) = match tail.find('#') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    let tail = match before_fragment.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) if SECRET_PARAMS.iter().any(|s| name.to_ascii_lowercase().contains(s)) => {
                        format!("{name}=***")
                    }
                    _ => param.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => before_fragment.to_string(),
    };
    format!("{scheme}://{host}{tail}{fragment}")
}

/// `text` with every URL in it (`scheme://` up to a space, a quote or a
/// bracket) passed through [`display_url`]: for messages that may quote a
/// remote's URL, such as git's errors.
pub fn scrub_urls(text: &str) -> String {
    let is_scheme = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    let ends_url =
        |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | '(' | ')' | '[' | ']' | '{' | '}');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = rest[..i]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| is_scheme(c))
            .last()
            .map_or(i, |(j, _)| j);
        let end = rest[i..].find(ends_url).map_or(rest.len(), |e| i + e);
        out.push_str(&rest[..start]);
        out.push_str(&display_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn sync_err(spec: &RepoSpec, what: impl std::fmt::Display) -> IndexError {
    IndexError::Source {
        path: PathBuf::from(display_url(&spec.url)),
        // git's messages may quote the URL, credentials included
        message: scrub_urls(&format!("repo {}: {what}", spec.name)),
    }
}

/// Resolves `spec` for a run, fetching remotes into their mirror first.
/// Blocking (git2): call it off the async runtime.
pub fn resolve(root: &Path, spec: &RepoSpec) -> Result<Resolved> {
    if is_remote(&spec.url) {
        let mirror = mirror_path(root, &spec.name);
        if let Some(bundle) = &spec.credentials.ca_bundle {
            trust(bundle).map_err(|e| sync_err(spec, e))?;
        }
        let commit = fetch(&mirror, spec)?;
        return Ok(Resolved::Git { repo: mirror, commit });
    }
    let path = PathBuf::from(&spec.url);
    if !path.exists() {
        return Err(IndexError::InvalidArgument(format!(
            "repo {}: {} does not exist",
            spec.name,
            path.display()
        )));
    }
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    match git2::Repository::open(&path) {
        Ok(repo) => {
            let commit = match &spec.branch {
                Some(b) => repo
                    .find_branch(b, git2::BranchType::Local)
                    .map_err(|e| sync_err(spec, format!("no branch {b}: {}", e.message())))?
                    .get()
                    .peel_to_commit(),
                None => repo
                    .head()
                    .map_err(|e| sync_err(spec, format!("no HEAD commit: {}", e.message())))?
                    .peel_to_commit(),
            }
            .map_err(|e| sync_err(spec, e.message()))?;
            Ok(Resolved::Git {
                repo: path,
                commit: commit.id().to_string(),
            })
        }
        Err(_) => Ok(Resolved::Dir(path)),
    }
}

/// Adds the CA certificates in `bundle` to libgit2's (process-wide) TLS
/// trust store, once per path.
#[allow(unsafe_code)] // one libgit2 global option, set under a lock (below)
fn trust(bundle: &Path) -> std::result::Result<(), String> {
    static TRUSTED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut trusted = TRUSTED.lock().unwrap_or_else(|p| p.into_inner());
    if trusted.iter().any(|b| b == bundle) {
        return Ok(());
    }
    let pem = std::fs::read_to_string(bundle).map_err(|e| format!("ca_bundle {}: {e}", bundle.display()))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("ca_bundle {} holds no PEM certificate", bundle.display()));
    }
    // SAFETY: libgit2 documents its global options as not thread-safe
    // against concurrent option changes; every change goes through this
    // lock. OpenSSL adds the file to the store that new connections use.
    unsafe { git2::opts::set_ssl_cert_file(bundle) }
        .map_err(|e| format!("ca_bundle {}: {}", bundle.display(), e.message()))?;
    trusted.push(bundle.to_path_buf());
    Ok(())
}

/// The ref a mirror keeps the followed branch under.
pub const MIRROR_HEAD: &str = "refs/cairn/head";

/// Fetches the followed branch (or the remote HEAD) of `spec` into the bare
/// mirror at `mirror`, creating it; returns the fetched commit.
fn fetch(mirror: &Path, spec: &RepoSpec) -> Result<String> {
    let repo = match git2::Repository::open_bare(mirror) {
        Ok(r) => r,
        Err(_) => {
            std::fs::create_dir_all(mirror)
                .map_err(|e| IndexError::io(format!("failed to create mirror {}", mirror.display()), e))?;
            git2::Repository::init_bare(mirror).map_err(|e| {
                sync_err(
                    spec,
                    format!("failed to create mirror {}: {}", mirror.display(), e.message()),
                )
            })?
        }
    };
    let mut remote = repo
        .remote_anonymous(&spec.url)
        .map_err(|e| sync_err(spec, format!("bad url: {}", e.message())))?;
    let refspec = match &spec.branch {
        Some(b) => format!("+refs/heads/{b}:{MIRROR_HEAD}"),
        None => format!("+HEAD:{MIRROR_HEAD}"),
    };
    let mut options = git2::FetchOptions::new();
    options.remote_callbacks(callbacks(&spec.credentials));
    options.download_tags(git2::AutotagOption::None);
    options.update_fetchhead(false);
    if let Some(proxy) = &spec.credentials.proxy {
        let mut p = git2::ProxyOptions::new();
        p.url(proxy);
        options.proxy_options(p);
    }
    remote
        .fetch(&[refspec.as_str()], Some(&mut options), None)
        .map_err(|e| {
            sync_err(
                spec,
                format!("failed to fetch {}: {}", display_url(&spec.url), e.message()),
            )
        })?;
    let id = repo.refname_to_id(MIRROR_HEAD).map_err(|e| {
        sync_err(
            spec,
            format!(
                "{} has no {}: {}",
                display_url(&spec.url),
                spec.branch
                    .as_deref()
                    .map_or("HEAD".to_string(), |b| format!("branch {b}")),
                e.message()
            ),
        )
    })?;
    Ok(id.to_string())
}

/// Credential and trust callbacks from a repo's settings: the HTTPS token
/// from `token_env` as the password, the `ssh_key` for ssh, and host keys
/// checked against `known_hosts`.
fn callbacks(creds: &Credentials) -> git2::RemoteCallbacks<'static> {
    let mut cb = git2::RemoteCallbacks::new();
    let token_env = creds.token_env.clone();
    let ssh_key = creds.ssh_key.clone();
    let mut attempts = 0;
    cb.credentials(move |url, username, allowed| {
        // libgit2 asks again after a rejection: fail instead of looping.
        attempts += 1;
        if attempts > 3 {
            return Err(git2::Error::from_str("credentials rejected"));
        }
        let user = username.unwrap_or("git");
        if allowed.contains(git2::CredentialType::SSH_KEY)
            && let Some(key) = &ssh_key
        {
            return git2::Cred::ssh_key(user, None, key, None);
        }
        if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT)
            && let Some(var) = &token_env
        {
            // never in clear, whatever the configuration or a redirect says
            if !url.starts_with("https://") {
                return Err(git2::Error::from_str(&format!(
                    "refusing to send the token of {var} to {}: only over https",
                    display_url(url)
                )));
            }
            let token = std::env::var(var)
                .map_err(|_| git2::Error::from_str(&format!("environment variable {var} is not set")))?;
            return git2::Cred::userpass_plaintext(username.unwrap_or("x-access-token"), &token);
        }
        Err(git2::Error::from_str(
            "the remote asks for credentials and none are configured",
        ))
    });
    if let Some(known_hosts) = creds.known_hosts.clone() {
        cb.certificate_check(move |cert, host| {
            let Some(hostkey) = cert.as_hostkey() else {
                // TLS certificates are checked by the transport.
                return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
            };
            let Some(key) = hostkey.hostkey() else {
                return Err(git2::Error::from_str("the ssh server sent no host key"));
            };
            match known_host(&known_hosts, host, key) {
                Ok(true) => Ok(git2::CertificateCheckStatus::CertificateOk),
                Ok(false) => Err(git2::Error::from_str(&format!(
                    "host key of {host} is not in {}",
                    known_hosts.display()
                ))),
                Err(e) => Err(git2::Error::from_str(&format!(
                    "failed to read {}: {e}",
                    known_hosts.display()
                ))),
            }
        });
    }
    cb
}

/// Whether `known_hosts` lists `key` (raw bytes) for `host`. Plain host
/// patterns only (`host`, `[host]:port`, comma-separated); hashed entries
/// never match.
fn known_host(known_hosts: &Path, host: &str, key: &[u8]) -> std::io::Result<bool> {
    let text = std::fs::read_to_string(known_hosts)?;
    let encoded = base64_encode(key);
    Ok(text.lines().any(|line| {
        let mut parts = line.split_whitespace();
        let (Some(hosts), Some(_kind), Some(k)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        k == encoded
            && hosts.split(',').any(|h| {
                h == host
                    || h.strip_prefix('[')
                        .and_then(|r| r.split_once("]:"))
                        .is_some_and(|(name, _)| name == host)
            })
    }))
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_displayed_without_credentials() {
        for (url, shown) in [
            (
                "https://user:s3cr3t-token@git.internal/acme/auth.git",
                "https://***@git.internal/acme/auth.git",
            ),
            ("https://ghp_abcdef123456@github.com/a/b", "https://***@github.com/a/b"),
            (
                "ssh://git@git.internal:2222/acme/auth.git",
                "ssh://***@git.internal:2222/acme/auth.git",
            ),
            (
                "https://git.internal/a.git?access_token=s3cr3t&ref=main#frag",
                "https://git.internal/a.git?access_token=***&ref=main#frag",
            ),
            (
                "https://u:p@h/x?private_token=abc&Token=def&password=ghi",
                "https://***@h/x?private_token=***&Token=***&password=***",
            ),
            (
                "https://git.internal/acme/auth.git",
                "https://git.internal/acme/auth.git",
            ),
            ("https://user:pw@host", "https://***@host"),
            ("/srv/repos/acme", "/srv/repos/acme"),
            ("file:///srv/repos/acme", "file:///srv/repos/acme"),
        ] {
            assert_eq!(display_url(url), shown, "{url}");
        }
    }

    #[test]
    fn urls_in_messages_are_scrubbed() {
        let message = "failed to fetch https://bob:tok123@git.internal/x.git: unexpected http status code 401 \
                       for 'https://bob:tok123@git.internal/x.git/info/refs?service=git-upload-pack' (also \
                       \"http://h/?token=tok123\")";
        let scrubbed = scrub_urls(message);
        assert!(!scrubbed.contains("tok123"), "{scrubbed}");
        assert!(!scrubbed.contains("bob"), "{scrubbed}");
        assert!(
            scrubbed.contains("failed to fetch https://***@git.internal/x.git: unexpected"),
            "{scrubbed}"
        );
        assert!(
            scrubbed.contains("'https://***@git.internal/x.git/info/refs?service=git-upload-pack'"),
            "{scrubbed}"
        );
        assert!(scrubbed.contains("\"http://h/?token=***\")"), "{scrubbed}");
        assert_eq!(scrub_urls("no url here: a://"), "no url here: a://");
        assert_eq!(scrub_urls("://x@y"), "://***@y");
    }

    #[test]
    fn fetch_errors_never_show_the_credentials_of_the_url() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let root = tempfile::tempdir().unwrap();
        let spec = RepoSpec {
            name: "acme/auth".into(),
            url: format!("https://deploy:ghp_t0k3n@127.0.0.1:{port}/acme/auth.git?access_token=qs_t0k3n"),
            ..RepoSpec::default()
        };
        let err = resolve(root.path(), &spec).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("failed to fetch"), "{shown}");
        for secret in ["ghp_t0k3n", "qs_t0k3n", "deploy"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn names_escape_to_distinct_mirrors() {
        assert_eq!(escape("acme-auth"), "acme-auth");
        assert_eq!(escape("acme/auth"), "acme%2Fauth");
        assert_eq!(escape(".x"), "%2Ex");
        assert_ne!(escape("a/b"), escape("a%2Fb"));
    }

    #[test]
    fn known_hosts_match_plain_and_bracketed_entries() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("known_hosts");
        std::fs::write(
            &f,
            "git.internal,10.0.0.1 ssh-ed25519 AQID\n[other]:2222 ssh-ed25519 AQID\n",
        )
        .unwrap();
        assert_eq!(base64_encode(&[1, 2, 3]), "AQID");
        assert!(known_host(&f, "git.internal", &[1, 2, 3]).unwrap());
        assert!(known_host(&f, "other", &[1, 2, 3]).unwrap());
        assert!(!known_host(&f, "git.internal", &[1, 2, 4]).unwrap());
        assert!(!known_host(&f, "evil", &[1, 2, 3]).unwrap());
    }

    #[test]
    fn ssh_and_https_transports_are_built_in() {
        // a port that refuses connections: the transport exists and fails
        // to connect, rather than the URL scheme being unsupported
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let root = tempfile::tempdir().unwrap();
        for url in [
            format!("ssh://git@127.0.0.1:{port}/acme/auth.git"),
            format!("https://127.0.0.1:{port}/acme/auth.git"),
        ] {
            let spec = RepoSpec {
                name: "acme/auth".into(),
                url: url.clone(),
                ..RepoSpec::default()
            };
            let err = resolve(root.path(), &spec).unwrap_err().to_string();
            assert!(err.contains("repo acme/auth: failed to fetch"), "{err}");
            assert!(!err.to_lowercase().contains("unsupported"), "{url}: {err}");
        }
    }
}
