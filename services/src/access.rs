//! Who is asking ([`Principal`]) and what it may read ([`Access`]): the read
//! rule (a shared group, or [`ADMIN_GROUP`]) and the clearance cap. Every
//! authentication mode ([`crate::auth`] tokens, [`crate::oidc`] JWTs, mode
//! `none`) produces one.

use std::collections::{BTreeMap, BTreeSet};

use cairn_indexer::registry::{RepoRecord, Sensitivity};

/// Members read every repo (and, later, administer them).
pub const ADMIN_GROUP: &str = "admin";

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub groups: BTreeSet<String>,
    /// The most sensitive code this principal may read (`restricted`: no cap).
    pub clearance: Sensitivity,
}

impl Principal {
    /// The principal of `auth.mode = "none"`.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            groups: BTreeSet::new(),
            clearance: Sensitivity::Restricted,
        }
    }

    /// A principal with these groups and no clearance cap.
    pub fn new(name: impl Into<String>, groups: impl IntoIterator<Item = String>) -> Self {
        Self {
            name: name.into(),
            groups: groups.into_iter().collect(),
            clearance: Sensitivity::Restricted,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.groups.contains(ADMIN_GROUP)
    }
}

/// What a request may read: every repo (no authentication), or the repos
/// the principal's groups allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub principal: Principal,
    /// `false` in `auth.mode = "none"`.
    pub enforced: bool,
}

impl Access {
    /// Whether this caller may reindex or remove a repo whose configured
    /// maintainers are `maintainers` (principals or groups): no
    /// authentication, an admin, or one of them.
    pub fn can_maintain(&self, maintainers: &[String]) -> bool {
        !self.enforced
            || self.principal.is_admin()
            || maintainers
                .iter()
                .any(|m| *m == self.principal.name || self.principal.groups.contains(m))
    }

    /// No authentication: everything indexed is readable.
    pub fn open() -> Self {
        Self {
            principal: Principal::anonymous(),
            enforced: false,
        }
    }

    /// No authentication, capped at `clearance` (`[auth] none_max_sensitivity`).
    pub fn open_with_clearance(clearance: Sensitivity) -> Self {
        let mut access = Self::open();
        access.principal.clearance = clearance;
        access
    }

    /// Whether some repos may be hidden from this caller (the read rule is
    /// enforced, or its clearance is capped): then the readable set is named
    /// in every query instead of "all".
    pub fn filters(&self) -> bool {
        self.enforced || self.principal.clearance < Sensitivity::Restricted
    }

    /// The caller's clearance.
    pub fn clearance(&self) -> Sensitivity {
        self.principal.clearance
    }

    pub fn for_principal(principal: Principal) -> Self {
        Self {
            principal,
            enforced: true,
        }
    }

    /// Whether this access may read `repo`.
    pub fn can_read(&self, repo: &RepoRecord) -> bool {
        let member = !self.enforced
            || self.principal.is_admin()
            || repo.groups.iter().any(|g| self.principal.groups.contains(g));
        member && Sensitivity::of_repo(&repo.sensitivity) <= self.principal.clearance
    }

    /// The names of the readable repos among `repos`.
    pub fn readable(&self, repos: &BTreeMap<String, RepoRecord>) -> Vec<String> {
        repos
            .values()
            .filter(|r| self.can_read(r))
            .map(|r| r.name.clone())
            .collect()
    }
}
