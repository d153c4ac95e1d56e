//! The repo operations shared by HTTP and gRPC (status, reindex, remove,
//! with the read rule and the writer rule) and push webhooks, as facade
//! methods of [`AppState`]; the HTTP handlers are in `cairn-server`.
//!
//! Reading a repo's status needs read access to it; a repo that does not
//! exist and one that is not readable get the same 403 when authentication
//! is on. Reindexing and removing need an admin or one of the repo's
//! configured `maintainers`.
//!
//! Webhooks (`POST /v1/webhooks/github|gitlab|gitea`) need no bearer token:
//! they authenticate by the provider's signature (GitHub and Gitea: an
//! HMAC-SHA256 of the body; GitLab: a shared token), checked in constant
//! time, and trigger every configured repo whose clone URL or name and
//! branch match the push.

use std::time::Instant;

use http::HeaderMap;
use serde_json::{Value, json};

use crate::audit::AuditEvent;
use crate::auth::{Access, Principal};
use crate::daemon::{Daemon, RepoStatus};
use crate::error::ServiceError;
use crate::state::AppState;

fn internal(e: anyhow::Error) -> ServiceError {
    ServiceError::internal(format!("{e:#}"))
}

impl AppState {
    pub fn daemon(&self) -> Result<&Daemon, ServiceError> {
        self.daemon
            .as_ref()
            .ok_or_else(|| ServiceError::unavailable("the indexer daemon is not running in this process"))
    }

    /// `name`'s record in the registry this process serves from (on a
    /// retrieval replica, the copy it mirrors from the indexer).
    fn mirrored(&self, name: &str) -> Result<Option<cairn_indexer::registry::RepoRecord>, ServiceError> {
        Ok(self
            .search
            .registry()
            .load()
            .map_err(|e| internal(e.into()))?
            .remove(name))
    }

    /// Read access to `name`, or the 403 that does not tell a missing repo
    /// from an unreadable one (404 without authentication).
    fn check_read(&self, access: &Access, name: &str) -> Result<(), ServiceError> {
        let readable = match &self.daemon {
            Some(d) => d.access_record(name).map_err(internal)?.map(|r| access.can_read(&r)),
            // a retrieval replica: the registry it mirrors from the indexer
            None => self.mirrored(name)?.map(|r| access.can_read(&r)),
        };
        match readable {
            Some(true) => Ok(()),
            None if !access.filters() => Err(ServiceError::not_found(format!("unknown repo {name:?}"))),
            _ => Err(ServiceError::forbidden(format!(
                "repo {name:?} does not exist or is not readable with these credentials"
            ))),
        }
    }

    fn check_write(&self, access: &Access, name: &str) -> Result<(), ServiceError> {
        self.check_read(access, name)?;
        if access.can_maintain(self.daemon()?.maintainers(name)) {
            Ok(())
        } else {
            Err(ServiceError::forbidden(format!(
                "only admin or a maintainer of repo {name:?} may reindex or remove it"
            )))
        }
    }

    /// Whether `access` may read `name` now: a `Watch` stream checks each
    /// change it sends (the watch itself was recorded when it started).
    pub fn may_read_repo(&self, access: &Access, name: &str) -> bool {
        self.check_read(access, name).is_ok()
    }

    /// The readable repos' status.
    pub fn list_repos(&self, access: &Access) -> Result<Vec<RepoStatus>, ServiceError> {
        let Some(daemon) = &self.daemon else {
            let records = self.search.registry().load().map_err(|e| internal(e.into()))?;
            return Ok(records
                .values()
                .filter(|r| access.can_read(r))
                .map(|r| crate::daemon::record_status(&r.name, Some(r), false, None))
                .collect());
        };
        let all = daemon.list().map_err(internal)?;
        Ok(all
            .into_iter()
            .filter(|s| matches!(daemon.access_record(&s.name), Ok(Some(r)) if access.can_read(&r)))
            .collect())
    }

    /// One readable repo's status.
    pub fn get_repo(&self, access: &Access, name: &str) -> Result<RepoStatus, ServiceError> {
        self.check_read(access, name)?;
        let status = match &self.daemon {
            Some(d) => d.status(name).map_err(internal)?,
            None => self
                .mirrored(name)?
                .map(|r| crate::daemon::record_status(name, Some(&r), false, None)),
        };
        status.ok_or_else(|| ServiceError::not_found(format!("unknown repo {name:?}")))
    }

    /// Queues a run of `name` (a rebuild when `full`); returns its status.
    pub fn reindex_repo(&self, access: &Access, name: &str, full: bool) -> Result<RepoStatus, ServiceError> {
        self.check_write(access, name)?;
        let daemon = self.daemon()?;
        daemon.trigger(name, full)?;
        tracing::info!(repo = %name, full, principal = %access.principal.name, "reindex requested");
        self.get_repo(access, name)
    }

    /// Purges `name`.
    pub(crate) async fn remove_repo(&self, access: &Access, name: &str) -> Result<(), ServiceError> {
        self.check_write(access, name)?;
        self.daemon()?.remove(name).await.map_err(internal)?;
        tracing::info!(repo = %name, principal = %access.principal.name, "repo removed on request");
        Ok(())
    }

    /// The index's generations: the daemon's view (with a build in
    /// progress), or on a retrieval replica the generation it serves.
    pub fn index_status(&self, visible: &[String]) -> crate::daemon::IndexStatus {
        match &self.daemon {
            Some(d) => d.index_status(visible),
            None => crate::daemon::IndexStatus::serving(self.search.registry().dir()),
        }
    }

    /// Records one webhook request.
    pub fn audit_repos(
        &self,
        surface: &'static str,
        access: &Access,
        repos: Vec<String>,
        error: Option<&ServiceError>,
        started: Instant,
    ) -> Result<(), crate::audit::Unrecorded> {
        self.audit.record(AuditEvent::finished(
            surface,
            access,
            None,
            repos,
            Vec::new(),
            error,
            started,
        ))
    }
}

/// A Git hosting service that sends push webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    Gitea,
}

impl Provider {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "github" => Some(Self::GitHub),
            "gitlab" => Some(Self::GitLab),
            "gitea" => Some(Self::Gitea),
            _ => None,
        }
    }

    /// The name in the webhook's path (`/v1/webhooks/{name}`).
    pub fn name(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
        }
    }

    /// The audit surface of this provider's webhook.
    pub fn surface(self) -> &'static str {
        match self {
            Self::GitHub => "http.webhook.github",
            Self::GitLab => "http.webhook.gitlab",
            Self::Gitea => "http.webhook.gitea",
        }
    }
}

/// Checks a webhook's signature (GitHub, Gitea) or token (GitLab) against
/// `secret`, in constant time.
pub fn verify_webhook(provider: Provider, secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    use ring::hmac;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    match provider {
        Provider::GitHub | Provider::Gitea => {
            let (name, value) = if provider == Provider::GitHub {
                let v = header("x-hub-signature-256").ok_or("missing X-Hub-Signature-256")?;
                (
                    "X-Hub-Signature-256",
                    v.strip_prefix("sha256=")
                        .ok_or("X-Hub-Signature-256 must start with sha256=")?,
                )
            } else {
                (
                    "X-Gitea-Signature",
                    header("x-gitea-signature").ok_or("missing X-Gitea-Signature")?,
                )
            };
            let tag = hex::decode(value).map_err(|_| format!("{name} is not hex"))?;
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
            hmac::verify(&key, body, &tag).map_err(|_| format!("{name} does not match the body"))
        }
        Provider::GitLab => {
            let given = header("x-gitlab-token").ok_or("missing X-Gitlab-Token")?;
            // compare MACs of both under one key: constant time, whatever the lengths
            let key = hmac::Key::new(hmac::HMAC_SHA256, b"cairn gitlab token comparison");
            let want = hmac::sign(&key, secret.as_bytes());
            hmac::verify(&key, given.as_bytes(), want.as_ref()).map_err(|_| "X-Gitlab-Token is wrong".to_string())
        }
    }
}

/// What a push payload says about where it happened.
#[derive(Debug, Default, PartialEq)]
pub struct Push {
    /// Clone/web URLs of the pushed repository.
    pub urls: Vec<String>,
    /// `owner/name` style names.
    pub names: Vec<String>,
    /// The branch pushed (`None` for tags and other refs).
    pub branch: Option<String>,
    pub default_branch: Option<String>,
    /// The new head commit.
    pub after: Option<String>,
}

impl Push {
    /// Reads the fields GitHub, Gitea (`repository`) and GitLab (`project`) send.
    pub fn parse(payload: &Value) -> Self {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let mut push = Push {
            branch: s(payload, "ref").and_then(|r| r.strip_prefix("refs/heads/").map(str::to_string)),
            after: s(payload, "after").or_else(|| s(payload, "checkout_sha")),
            ..Push::default()
        };
        for section in ["repository", "project"] {
            let Some(r) = payload.get(section) else { continue };
            for k in [
                "clone_url",
                "ssh_url",
                "git_url",
                "html_url",
                "git_http_url",
                "git_ssh_url",
                "web_url",
                "url",
                "homepage",
            ] {
                push.urls.extend(s(r, k));
            }
            push.names.extend(s(r, "full_name"));
            push.names.extend(s(r, "path_with_namespace"));
            if push.default_branch.is_none() {
                push.default_branch = s(r, "default_branch");
            }
        }
        push
    }
}

/// A URL reduced to `host/path` (no scheme, user, `.git` or trailing `/`;
/// `git@host:path` read as `host/path`), lowercased, for comparison.
pub fn normalize_url(url: &str) -> String {
    let mut u = url.trim().to_lowercase();
    if let Some((_, rest)) = u.split_once("://") {
        u = rest.to_string();
    } else if let Some((userhost, path)) = u.split_once(':')
        && !userhost.contains('/')
    {
        u = format!("{userhost}/{path}");
    }
    if let Some((user, rest)) = u.split_once('@')
        && !user.contains('/')
    {
        u = rest.to_string();
    }
    let u = u.trim_end_matches('/');
    u.strip_suffix(".git").unwrap_or(u).trim_end_matches('/').to_string()
}

/// The configured repos a push concerns.
pub fn matching_repos<'a>(repos: impl IntoIterator<Item = &'a crate::config::RepoConfig>, push: &Push) -> Vec<String> {
    let urls: Vec<String> = push.urls.iter().map(|u| normalize_url(u)).collect();
    repos
        .into_iter()
        .filter(|r| {
            let same_repo = urls.contains(&normalize_url(&r.url)) || push.names.contains(&r.name);
            let followed = r.branch.as_ref().or(push.default_branch.as_ref());
            let same_branch = match (&push.branch, followed) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(b), Some(f)) => b == f,
            };
            same_repo && same_branch
        })
        .map(|r| r.name.clone())
        .collect()
}

impl AppState {
    /// A push webhook from `provider`: checks its signature against the
    /// configured secret, then triggers every configured repo the push
    /// matches. Recorded once, as the provider's surface, whatever the outcome.
    ///
    /// Calls from one `source` address are rate-limited before any
    /// signature is checked (429), and its refusals (over the rate, a bad
    /// signature) are recorded at most once per window, the record counting
    /// those left out.
    pub fn webhook_push(
        &self,
        provider: Provider,
        source: Option<std::net::IpAddr>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Value, ServiceError> {
        let started = Instant::now();
        let name = match source {
            Some(ip) => format!("webhook:{}@{ip}", provider.name()),
            None => format!("webhook:{}", provider.name()),
        };
        let access = Access::for_principal(Principal::new(name, []));
        if let Some(ip) = source
            && let Err(wait) = self.webhook_guard.admit(ip)
        {
            let error = ServiceError {
                kind: crate::error::ServiceErrorKind::TooManyRequests,
                message: format!(
                    "too many webhook calls from {ip}; retry after {} s",
                    wait.as_secs_f64().ceil().max(1.0)
                ),
            };
            self.audit_refusal(provider, &access, ip, &error, started)?;
            return Err(error);
        }
        let result = self.handle_webhook(provider, headers, body);
        if let (Some(ip), Err(error)) = (source, &result)
            && error.kind == crate::error::ServiceErrorKind::Unauthenticated
        {
            self.audit_refusal(provider, &access, ip, error, started)?;
            return result;
        }
        let triggered = match &result {
            Ok(v) => v["triggered"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        self.audit_repos(provider.surface(), &access, triggered, result.as_ref().err(), started)?;
        result
    }

    /// Records a refused webhook call of `source`, unless one was recorded
    /// within the window (then it only counts toward the next record).
    fn audit_refusal(
        &self,
        provider: Provider,
        access: &Access,
        source: std::net::IpAddr,
        error: &ServiceError,
        started: Instant,
    ) -> Result<(), ServiceError> {
        match self.webhook_guard.refusal(source) {
            crate::webhook_guard::RefusalRecord::Write { left_out } => {
                let event = AuditEvent {
                    left_out,
                    ..AuditEvent::finished(
                        provider.surface(),
                        access,
                        None,
                        Vec::new(),
                        Vec::new(),
                        Some(error),
                        started,
                    )
                };
                Ok(self.audit.record(event)?)
            }
            crate::webhook_guard::RefusalRecord::Skip => {
                // counted, not written: the request has its record (see crate::gate)
                crate::slot::note_recorded(provider.surface());
                Ok(())
            }
        }
    }

    fn handle_webhook(&self, provider: Provider, headers: &HeaderMap, body: &[u8]) -> Result<Value, ServiceError> {
        let state = self;
        let secrets = &state.webhook_secrets;
        let secret = match provider {
            Provider::GitHub => secrets.github.as_deref(),
            Provider::GitLab => secrets.gitlab.as_deref(),
            Provider::Gitea => secrets.gitea.as_deref(),
        };
        let Some(secret) = secret else {
            return Err(ServiceError::unauthenticated(
                "webhooks from this provider are not configured ([webhooks] *_env names no secret)",
            ));
        };
        if let Err(why) = verify_webhook(provider, secret, headers, body) {
            tracing::warn!(?provider, why = %why, "webhook refused");
            return Err(ServiceError::unauthenticated(format!(
                "webhook signature check failed: {why}"
            )));
        }
        let event = headers
            .get("x-github-event")
            .or_else(|| headers.get("x-gitea-event"))
            .or_else(|| headers.get("x-gitlab-event"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("push")
            .to_string();
        if !matches!(event.as_str(), "push" | "Push Hook") {
            return Ok(json!({ "event": event, "triggered": [] }));
        }
        let payload: Value = serde_json::from_slice(body)
            .map_err(|e| ServiceError::invalid(format!("webhook body is not JSON: {e}")))?;
        let push = Push::parse(&payload);
        let daemon = state.daemon()?;
        let names = matching_repos(daemon.configured_repos(), &push);
        for name in &names {
            daemon.trigger_at(name, false, push.after.clone())?;
            tracing::info!(repo = %name, ?provider, commit = ?push.after, "webhook triggered a run");
        }
        Ok(json!({ "event": event, "triggered": names }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RepoConfig;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    }

    #[test]
    fn signatures_are_checked() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = headers(&[("x-hub-signature-256", format!("sha256={}", sign("s", body)))]);
        assert!(verify_webhook(Provider::GitHub, "s", &good, body).is_ok());
        assert!(verify_webhook(Provider::GitHub, "other", &good, body).is_err());
        assert!(verify_webhook(Provider::GitHub, "s", &good, b"{}").is_err());
        assert!(verify_webhook(Provider::GitHub, "s", &HeaderMap::new(), body).is_err());
        let raw = headers(&[("x-hub-signature-256", sign("s", body))]);
        assert!(
            verify_webhook(Provider::GitHub, "s", &raw, body).is_err(),
            "the sha256= prefix is required"
        );
        let gitea = headers(&[("x-gitea-signature", sign("s", body))]);
        assert!(verify_webhook(Provider::Gitea, "s", &gitea, body).is_ok());
        assert!(verify_webhook(Provider::Gitea, "t", &gitea, body).is_err());
        let gl = headers(&[("x-gitlab-token", "tok".into())]);
        assert!(verify_webhook(Provider::GitLab, "tok", &gl, body).is_ok());
        assert!(verify_webhook(Provider::GitLab, "tok2", &gl, body).is_err());
        assert!(verify_webhook(Provider::GitLab, "to", &gl, body).is_err());
    }

    #[test]
    fn urls_normalize() {
        for u in [
            "https://git.internal/Acme/Auth.git",
            "ssh://git@git.internal/acme/auth.git",
            "git@git.internal:acme/auth.git",
            "https://git.internal/acme/auth/",
            "http://user@git.internal/acme/auth",
        ] {
            assert_eq!(normalize_url(u), "git.internal/acme/auth", "{u}");
        }
    }

    #[test]
    fn pushes_match_repos_by_url_name_and_branch() {
        let repo = |name: &str, url: &str, branch: Option<&str>| RepoConfig {
            name: name.into(),
            url: url.into(),
            branch: branch.map(str::to_string),
            ..RepoConfig::default()
        };
        let repos = [
            repo("auth", "https://git.internal/acme/auth.git", Some("main")),
            repo("auth-dev", "git@git.internal:acme/auth.git", Some("dev")),
            repo("acme/web", "/srv/web", None),
        ];
        let github = Push::parse(&json!({
            "ref": "refs/heads/main",
            "after": "abc",
            "repository": {"clone_url": "https://git.internal/acme/auth.git", "full_name": "acme/auth", "default_branch": "main"}
        }));
        assert_eq!(github.after.as_deref(), Some("abc"));
        assert_eq!(matching_repos(&repos, &github), ["auth"]);
        let dev = Push::parse(&json!({
            "ref": "refs/heads/dev",
            "repository": {"ssh_url": "git@git.internal:acme/auth.git"}
        }));
        assert_eq!(matching_repos(&repos, &dev), ["auth-dev"]);
        let gitlab = Push::parse(&json!({
            "ref": "refs/heads/trunk",
            "checkout_sha": "def",
            "project": {"path_with_namespace": "acme/web", "default_branch": "trunk", "git_http_url": "https://gl/acme/web.git"}
        }));
        assert_eq!(gitlab.after.as_deref(), Some("def"));
        assert_eq!(matching_repos(&repos, &gitlab), ["acme/web"]);
        let other_branch = Push::parse(&json!({
            "ref": "refs/heads/feature",
            "project": {"path_with_namespace": "acme/web", "default_branch": "trunk"}
        }));
        assert!(matching_repos(&repos, &other_branch).is_empty());
        let tag = Push::parse(&json!({"ref": "refs/tags/v1", "repository": {"full_name": "acme/web"}}));
        assert!(matching_repos(&repos, &tag).is_empty());
    }
}
