//! [`HostPolicy`]: the host names HTTP requests may address (`Host`, and
//! `Origin` when a browser sends one), `[server] allowed_hosts`. The gate
//! ([`crate::gate`]) applies it before routing.

use std::collections::BTreeSet;
use std::net::SocketAddr;

/// The host names a request may address (`[server] allowed_hosts`).
#[derive(Debug, Clone, PartialEq)]
pub struct HostPolicy {
    /// Every host (`"*"` configured, or a wildcard listen address without a list).
    any: bool,
    names: BTreeSet<String>,
}

/// The loopback names every policy admits.
const LOOPBACK_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

impl HostPolicy {
    /// The configured names, or by default the loopback names plus the
    /// listen address's host. A wildcard listen address (`0.0.0.0`, `::`)
    /// without a configured list admits every host: cairn is then
    /// deliberately on the network under names it cannot know, and
    /// authentication is on (mode `none` is refused off loopback).
    pub fn new(configured: &[String], listen: SocketAddr) -> Self {
        let mut names: BTreeSet<String> = LOOPBACK_NAMES.iter().map(|s| s.to_string()).collect();
        let any = if configured.is_empty() {
            listen.ip().is_unspecified()
        } else {
            configured.iter().any(|h| h.trim() == "*")
        };
        names.insert(normalize(&listen.ip().to_string()));
        names.extend(configured.iter().map(|h| normalize(h.trim())).filter(|h| !h.is_empty()));
        Self { any, names }
    }

    /// Admits every host (tests that bind port 0 and call by IP use this too).
    pub fn any() -> Self {
        Self {
            any: true,
            names: BTreeSet::new(),
        }
    }

    /// Whether `authority` (`host`, `host:port`, `[v6]:port`) is allowed.
    pub fn allows_authority(&self, authority: &str) -> bool {
        self.any || self.names.contains(&normalize(host_of(authority)))
    }

    /// Whether an `Origin` header's value is allowed: `scheme://authority`
    /// with an allowed host. `null` and anything unparsable are refused.
    pub fn allows_origin(&self, origin: &str) -> bool {
        if self.any {
            return true;
        }
        match origin.trim().split_once("://") {
            Some((scheme, authority)) if matches!(scheme, "http" | "https") && !authority.contains('/') => {
                self.allows_authority(authority)
            }
            _ => false,
        }
    }
}

/// The host part of an authority: `[::1]:7700` → `::1`, `a:1` → `a`.
fn host_of(authority: &str) -> &str {
    let a = authority.trim();
    let a = a.rsplit_once('@').map_or(a, |(_, h)| h);
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match a.rsplit_once(':') {
        // one colon: host:port; more: a bare IPv6 address
        Some((h, port)) if !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => a,
    }
}

/// Lowercase, brackets and a trailing dot removed.
fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_default_to_loopback_and_the_listen_address() {
        let p = HostPolicy::new(&[], "127.0.0.1:7700".parse().unwrap());
        for ok in [
            "localhost",
            "localhost:7700",
            "127.0.0.1:7700",
            "[::1]:7700",
            "LOCALHOST.",
            "::1",
        ] {
            assert!(p.allows_authority(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7700",
            "127.0.0.1.nip.io:7700",
            "localhost.evil.example",
            "",
        ] {
            assert!(!p.allows_authority(bad), "{bad}");
        }
        let p = HostPolicy::new(&[], "10.1.2.3:7700".parse().unwrap());
        assert!(p.allows_authority("10.1.2.3:7700"));
        assert!(!p.allows_authority("cairn.internal"));
        // wildcard listen: any host, unless a list is configured
        assert!(HostPolicy::new(&[], "0.0.0.0:7700".parse().unwrap()).allows_authority("cairn.internal"));
        let listed = HostPolicy::new(&["cairn.internal".into()], "0.0.0.0:7700".parse().unwrap());
        assert!(listed.allows_authority("cairn.internal:443"));
        assert!(listed.allows_authority("localhost"));
        assert!(!listed.allows_authority("other.internal"));
        assert!(HostPolicy::new(&["*".into()], "127.0.0.1:1".parse().unwrap()).allows_authority("x"));
    }

    #[test]
    fn origins_must_name_an_allowed_host() {
        let p = HostPolicy::new(&["cairn.corp".into()], "127.0.0.1:7700".parse().unwrap());
        assert!(p.allows_origin("http://localhost:7700"));
        assert!(p.allows_origin("https://cairn.corp"));
        assert!(!p.allows_origin("https://evil.example"));
        assert!(!p.allows_origin("null"));
        assert!(!p.allows_origin("file://"));
        assert!(!p.allows_origin("http://localhost:7700/path"));
        assert!(!p.allows_origin("chrome-extension://abc"));
    }
}
