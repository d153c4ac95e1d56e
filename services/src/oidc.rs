//! OIDC / JWT bearer verification (`[auth] mode = "oidc"`, settings in
//! `[auth.oidc]`): signatures against a JWKS read from a file or fetched from
//! a URL (cached; re-read when a token names an unknown `kid`, at most once
//! per `jwks_refresh_secs`), `exp`/`nbf` with a small leeway, `iss` and `aud`.
//! One claim names the principal, another its groups (a string or an array),
//! which the read rule then uses like a token's groups. Keys fetched from a
//! URL are fetched again once `jwks_max_age_secs` old, and a `jwks_file` is
//! read again when it changes, so a removed key stops being trusted. A
//! group maps to cairn's admin only through `admin_groups`: a claimed group
//! named `admin` is dropped.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::access::Principal;

pub use cairn_config::auth::{OidcConfig, SUPPORTED_ALGORITHMS, SYSTEM_CA_BUNDLE};

fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token names a key the cached JWKS does not hold.
    #[error("the token's signing key (kid {0:?}) is not in the JWKS")]
    UnknownKid(String),
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Verifies bearer JWTs against the configured issuer, audience and keys.
pub struct OidcVerifier {
    config: OidcConfig,
    algorithms: Vec<Algorithm>,
    keys: RwLock<JwkSet>,
    last_refresh: Mutex<Option<Instant>>,
    /// When the cached keys were loaded, and the `jwks_file` they came from
    /// as it was then.
    loaded: Mutex<(Instant, Option<FileStamp>)>,
    http: reqwest::Client,
}

/// A file's identity, length and modification time: changed means re-read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    ino: u64,
}

impl FileStamp {
    fn of(path: &std::path::Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let ino = 0;
        Some(Self {
            len: m.len(),
            modified: m.modified().ok(),
            ino,
        })
    }
}

impl OidcVerifier {
    /// Loads the JWKS (from the file or the URL); errors say which and why.
    pub async fn new(config: OidcConfig) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .use_rustls_tls()
            .tls_built_in_root_certs(false);
        if config.jwks_url.starts_with("https://") {
            let bundle = if config.jwks_ca.as_os_str().is_empty() {
                PathBuf::from(SYSTEM_CA_BUNDLE)
            } else {
                config.jwks_ca.clone()
            };
            let pem = std::fs::read(&bundle)
                .with_context(|| format!("auth.oidc.jwks_ca: cannot read the CA bundle {}", bundle.display()))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!(
                    "auth.oidc.jwks_ca: {} is not a PEM certificate bundle",
                    bundle.display()
                )
            })?;
            anyhow::ensure!(
                !roots.is_empty(),
                "auth.oidc.jwks_ca: {} holds no certificates",
                bundle.display()
            );
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        let http = builder.build().context("HTTP client for the JWKS")?;
        let algorithms = config.allowed_algorithms.iter().filter_map(|a| algorithm(a)).collect();
        let verifier = Self {
            keys: RwLock::new(JwkSet { keys: Vec::new() }),
            last_refresh: Mutex::new(None),
            loaded: Mutex::new((Instant::now(), None)),
            algorithms,
            config,
            http,
        };
        let stamp = verifier.file_stamp();
        let keys = verifier.load().await?;
        *verifier.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        *verifier.loaded.lock().unwrap_or_else(|p| p.into_inner()) = (Instant::now(), stamp);
        Ok(verifier)
    }

    fn file_stamp(&self) -> Option<FileStamp> {
        if self.config.jwks_url.is_empty() {
            FileStamp::of(&self.config.jwks_file)
        } else {
            None
        }
    }

    /// Whether the cached keys must be loaded again: the `jwks_file`
    /// changed, or keys from `jwks_url` are `jwks_max_age_secs` old.
    fn stale(&self) -> bool {
        let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if self.config.jwks_url.is_empty() {
            self.file_stamp() != loaded.1
        } else {
            loaded.0.elapsed() >= Duration::from_secs(self.config.jwks_max_age_secs)
        }
    }

    /// Loads the keys again now; on failure the cached keys stay.
    async fn reload(&self) -> bool {
        let stamp = self.file_stamp();
        match self.load().await {
            Ok(keys) => {
                tracing::info!(keys = keys.keys.len(), "JWKS refreshed");
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
                *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = (Instant::now(), stamp);
                true
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "JWKS refresh failed; keeping the cached keys");
                false
            }
        }
    }

    async fn load(&self) -> anyhow::Result<JwkSet> {
        let bytes = if self.config.jwks_url.is_empty() {
            let path = &self.config.jwks_file;
            tokio::fs::read(path)
                .await
                .with_context(|| format!("auth.oidc.jwks_file: cannot read {}", path.display()))?
        } else {
            let url = &self.config.jwks_url;
            let resp = self
                .http
                .get(url)
                .send()
                .await
                .with_context(|| format!("auth.oidc.jwks_url: cannot fetch {url}"))?;
            anyhow::ensure!(
                resp.status().is_success(),
                "auth.oidc.jwks_url: {url} answered {}",
                resp.status()
            );
            resp.bytes()
                .await
                .with_context(|| format!("auth.oidc.jwks_url: reading {url}"))?
                .to_vec()
        };
        serde_json::from_slice(&bytes).context("auth.oidc: the JWKS is not a valid JSON Web Key Set")
    }

    /// Re-reads the JWKS unless that happened less than `jwks_refresh_secs`
    /// ago; returns whether it did.
    pub async fn refresh(&self) -> bool {
        {
            let mut last = self.last_refresh.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(self.config.jwks_refresh_secs)) {
                return false;
            }
            *last = Some(now);
        }
        self.reload().await
    }

    /// The principal a token stands for (keys as cached).
    pub fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
        let invalid = |e: &dyn std::fmt::Display| VerifyError::Invalid(e.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&e))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(VerifyError::Invalid(format!(
                "algorithm {:?} is not allowed",
                header.alg
            )));
        }
        let key = {
            let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
            let jwk = match &header.kid {
                Some(kid) => keys.find(kid).ok_or_else(|| VerifyError::UnknownKid(kid.clone()))?,
                None if keys.keys.len() == 1 => &keys.keys[0],
                None => return Err(VerifyError::Invalid("the token has no kid".into())),
            };
            DecodingKey::from_jwk(jwk).map_err(|e| invalid(&e))?
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.config.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).map_err(|e| invalid(&e))?;
        let claims = data.claims;
        let name = claims
            .get(&self.config.principal_claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                VerifyError::Invalid(format!(
                    "the token has no string claim {:?}",
                    self.config.principal_claim
                ))
            })?;
        let groups: BTreeSet<String> = match claims.get(&self.config.groups_claim) {
            Some(serde_json::Value::String(s)) => s
                .split([',', ' '])
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str())
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect(),
            _ => BTreeSet::new(),
        };
        // admin only through [auth.oidc] admin_groups
        let mut groups = groups;
        groups.remove(crate::access::ADMIN_GROUP);
        if self.config.admin_groups.iter().any(|g| groups.contains(g)) {
            groups.insert(crate::access::ADMIN_GROUP.to_string());
        }
        let clearance = if self.config.max_sensitivity_claim.is_empty() {
            cairn_indexer::registry::Sensitivity::Restricted
        } else {
            match claims.get(&self.config.max_sensitivity_claim) {
                None | Some(serde_json::Value::Null) => self.config.default_max_sensitivity,
                Some(v) => v
                    .as_str()
                    .and_then(cairn_indexer::registry::Sensitivity::parse)
                    .ok_or_else(|| {
                        VerifyError::Invalid(format!(
                            "claim {:?} must be public, internal, confidential or restricted, got {v}",
                            self.config.max_sensitivity_claim
                        ))
                    })?,
            }
        };
        Ok(Principal {
            name: name.to_string(),
            groups,
            clearance,
        })
    }

    /// [`Self::verify`], refreshing the keys once (rate-limited) when the
    /// token names an unknown `kid`.
    pub async fn verify_refreshing(&self, token: &str) -> Result<Principal, VerifyError> {
        if self.stale() {
            // a changed file at once; a URL at most once per jwks_refresh_secs
            if self.config.jwks_url.is_empty() {
                self.reload().await;
            } else {
                self.refresh().await;
            }
        }
        match self.verify(token) {
            Err(VerifyError::UnknownKid(_)) if self.refresh().await => self.verify(token),
            other => other,
        }
    }
}
