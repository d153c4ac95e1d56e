//! `[auth]` and `[auth.oidc]`: how callers are authenticated, and the name
//! rules for principals and groups.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::bail;
use cairn_indexer::registry::Sensitivity;
use serde::{Deserialize, Serialize};

/// `[auth]` settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// `[auth.oidc]`: used with `mode = "oidc"`.
    pub oidc: OidcConfig,
    /// The clearance of every caller in `mode = "none"`: repos more
    /// sensitive than this are invisible on every surface. Unset: no cap.
    pub none_max_sensitivity: Option<Sensitivity>,
}

impl AuthConfig {
    /// Adds every problem to `errors`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.mode == AuthMode::Oidc {
            self.oidc.validate(errors);
        }
    }
}

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No credentials: allowed only on loopback listeners; everyone reads
    /// every indexed repo.
    #[default]
    None,
    /// Bearer API tokens from `cairn token create`.
    Tokens,
    /// Bearer JWTs from an OIDC provider (`[auth.oidc]`).
    Oidc,
}

/// Names: 1–128 characters of letters, digits, `.`, `_`, `-`, `@`.
pub fn check_name(what: &str, s: &str) -> anyhow::Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !ok {
        bail!("invalid {what} {s:?}: use 1-128 characters of letters, digits, '.', '_', '-' and '@'");
    }
    Ok(())
}

/// Parses a comma-separated group list (`a,b`), checking each name.
pub fn parse_groups(list: &str) -> anyhow::Result<Vec<String>> {
    let mut groups = BTreeSet::new();
    for g in list.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        check_name("group", g)?;
        groups.insert(g.to_string());
    }
    Ok(groups.into_iter().collect())
}

/// Algorithms accepted in `allowed_algorithms`.
pub const SUPPORTED_ALGORITHMS: [&str; 3] = ["RS256", "ES256", "EdDSA"];

/// CA bundle trusted for an https `jwks_url` when `jwks_ca` is not set.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `[auth.oidc]` settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// Expected `iss` (exactly).
    pub issuer: String,
    /// Expected `aud` (one of the token's audiences).
    pub audience: String,
    /// JWKS JSON file (`{"keys": [...]}`); re-read when it changes.
    pub jwks_file: PathBuf,
    /// JWKS URL (https, or http inside a trusted network), fetched at start
    /// and on an unknown `kid`.
    pub jwks_url: String,
    /// PEM bundle of the CAs trusted for an https `jwks_url`; empty: the
    /// system bundle (`/etc/ssl/certs/ca-certificates.crt`).
    pub jwks_ca: PathBuf,
    /// Accepted `alg` values among RS256, ES256 and EdDSA.
    pub allowed_algorithms: Vec<String>,
    /// The claim naming the principal.
    pub principal_claim: String,
    /// The claim listing the principal's groups: an array of strings, or a
    /// string of names separated by commas or spaces.
    pub groups_claim: String,
    /// The claim carrying the caller's clearance (`public`, `internal`,
    /// `confidential` or `restricted`). Empty: no cap. When set, a token
    /// without the claim is cleared for `default_max_sensitivity`, and one
    /// with an unknown value is refused.
    pub max_sensitivity_claim: String,
    /// The clearance of a token that lacks `max_sensitivity_claim`.
    pub default_max_sensitivity: Sensitivity,
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    pub leeway_secs: u64,
    /// Least time between two JWKS refreshes caused by unknown `kid`s.
    pub jwks_refresh_secs: u64,
    /// Keys fetched from `jwks_url` are fetched again once they are this
    /// old, so a key the provider removed stops being trusted (a failed
    /// fetch keeps the cached keys, with a warning). A `jwks_file` is read
    /// again whenever it changes.
    pub jwks_max_age_secs: u64,
    /// Groups of the identity provider whose members are cairn admins
    /// (they read every repo, clearance permitting). A group claim named
    /// `admin` means nothing by itself: only these map to admin.
    pub admin_groups: Vec<String>,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            jwks_file: PathBuf::new(),
            jwks_url: String::new(),
            jwks_ca: PathBuf::new(),
            allowed_algorithms: SUPPORTED_ALGORITHMS.iter().map(|a| a.to_string()).collect(),
            principal_claim: "sub".into(),
            groups_claim: "groups".into(),
            max_sensitivity_claim: String::new(),
            default_max_sensitivity: Sensitivity::Public,
            leeway_secs: 30,
            jwks_refresh_secs: 60,
            jwks_max_age_secs: 300,
            admin_groups: Vec::new(),
        }
    }
}

impl OidcConfig {
    /// Adds every problem to `errors` (checked when `auth.mode = "oidc"`).
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.issuer.is_empty() {
            errors.push("auth.oidc.issuer: required with auth.mode = \"oidc\"".into());
        }
        if self.audience.is_empty() {
            errors.push("auth.oidc.audience: required with auth.mode = \"oidc\"".into());
        }
        match (self.jwks_file.as_os_str().is_empty(), self.jwks_url.is_empty()) {
            (true, true) => errors.push("auth.oidc: set jwks_file or jwks_url".into()),
            (false, false) => errors.push("auth.oidc: set only one of jwks_file and jwks_url".into()),
            _ => {}
        }
        if !(self.jwks_url.is_empty() || self.jwks_url.starts_with("http://") || self.jwks_url.starts_with("https://"))
        {
            errors.push(format!(
                "auth.oidc.jwks_url: {:?} must be an https:// (or http://) URL",
                self.jwks_url
            ));
        }
        if self.allowed_algorithms.is_empty() {
            errors.push("auth.oidc.allowed_algorithms: name at least one of RS256, ES256, EdDSA".into());
        }
        for a in &self.allowed_algorithms {
            if !SUPPORTED_ALGORITHMS.contains(&a.as_str()) {
                errors.push(format!(
                    "auth.oidc.allowed_algorithms: {a:?} is not supported (use RS256, ES256 or EdDSA)"
                ));
            }
        }
        if self.admin_groups.iter().any(|g| g.trim().is_empty()) {
            errors.push("auth.oidc.admin_groups: group names must not be empty".into());
        }
        if self.jwks_max_age_secs == 0 {
            errors.push("auth.oidc.jwks_max_age_secs: must be at least 1".into());
        }
        if self.principal_claim.is_empty() || self.groups_claim.is_empty() {
            errors.push("auth.oidc.principal_claim and groups_claim must not be empty".into());
        }
    }
}
