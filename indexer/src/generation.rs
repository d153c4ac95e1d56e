//! Generations of the index: which store serves, and the switch to a new one
//! when the embedding model changes.
//!
//! Vectors of two models never share a store. `<data dir>/store/generation.json`
//! names the generation that serves: its store (the embedded shard
//! `store/<name>`, or a Qdrant collection), the fingerprint of the model
//! that built every vector in it, and the `[embed]` settings of that model
//! (so its queries can still be embedded while a successor is built).
//!
//! When the configured model's fingerprint (or the chunking: chunker
//! version and settings, see [`crate::repo::chunking_signature`]) differs,
//! a new generation is
//! built beside the serving one: its own store, its own checkpoints
//! (`store/<name>.build/repos.json`) and manifests (`store/<name>.build/state/`).
//! Search keeps answering from the serving generation meanwhile. Once every
//! repo has a checkpoint in the new one, [`switch`] makes it the serving
//! generation: the readers (`groups`, `sensitivity`) are carried over, then
//! `generation.json` is replaced in one rename (the commit point), then the
//! new checkpoints and manifests are moved into place. A crash after the
//! commit point is finished by [`finish`] at the next start; a crash before
//! it leaves the old generation serving and the new one resumable.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};
use crate::registry::Registry;

/// The name of the store of data dirs that predate generations: the shard
/// at `store/edge`, or the configured Qdrant collection itself.
pub const LEGACY: &str = "edge";

/// One generation of the index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Generation {
    /// Store name: the shard `store/<name>`, or the collection
    /// `<collection>` ([`LEGACY`]) / `<collection>-<name>`.
    pub name: String,
    /// Fingerprint of the model that made every vector in it.
    pub fingerprint: String,
    /// Dimension of its vectors.
    pub dim: usize,
    /// How its chunks were cut ([`crate::repo::chunking_signature`]).
    #[serde(default)]
    pub chunking: String,
    /// The `[embed]` settings of that model, as the services wrote them.
    #[serde(default)]
    pub embed: serde_json::Value,
}

impl Generation {
    /// The generation a model with `fingerprint` and a chunker with
    /// signature `chunking` build (a name derived from both, so a restart
    /// resumes the same build).
    pub fn for_model(fingerprint: &str, chunking: &str, dim: usize, embed: serde_json::Value) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(fingerprint.as_bytes());
        h.update(&[0]);
        h.update(chunking.as_bytes());
        let hash = h.finalize().to_hex();
        Self {
            name: format!("gen-{}", &hash[..12]),
            fingerprint: fingerprint.to_string(),
            dim,
            chunking: chunking.to_string(),
            embed,
        }
    }

    /// Whether `other` holds the same vectors and chunks (name and recorded
    /// settings aside).
    pub fn same_index(&self, other: &Generation) -> bool {
        self.fingerprint == other.fingerprint && self.dim == other.dim && self.chunking == other.chunking
    }
}

/// `<root>/store/generation.json`.
pub fn path(root: &Path) -> PathBuf {
    root.join("store").join("generation.json")
}

/// Where the checkpoints and manifests of generation `name` live while it
/// is built.
pub fn build_dir(root: &Path, name: &str) -> PathBuf {
    root.join("store").join(format!("{name}.build"))
}

/// The registry of generation `name` while it is built.
pub fn build_registry(root: &Path, name: &str) -> Registry {
    Registry::new(build_dir(root, name).join("repos.json"))
}

/// The serving generation, if one was recorded.
pub fn load(root: &Path) -> Result<Option<Generation>> {
    let p = path(root);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| IndexError::Store(format!("corrupt {}: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(IndexError::io(format!("failed to read {}", p.display()), e)),
    }
}

/// Records `generation` as the serving one (temp file, fsync, rename).
pub fn save(root: &Path, generation: &Generation) -> Result<()> {
    let p = path(root);
    let io = |e| IndexError::io(format!("failed to write {}", p.display()), e);
    std::fs::create_dir_all(p.parent().unwrap_or(root)).map_err(io)?;
    let tmp = p.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(generation).map_err(|e| IndexError::Internal(e.to_string()))?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &p)?;
        if let Some(dir) = p.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(io)
}

/// Makes `to` the serving generation. Every record of the main registry
/// whose repo was built into `to` keeps its readers; repos that were not
/// built (their source is gone) are dropped, with their names returned.
/// Call only when no run is writing to either generation.
pub fn switch(root: &Path, main: &Registry, to: &Generation) -> Result<Vec<String>> {
    let built = build_registry(root, &to.name);
    let old = main.load()?;
    let mut dropped = Vec::new();
    for (name, record) in &old {
        let carried = built.update(name, |new| {
            let mut new = new?;
            new.groups = record.groups.clone();
            new.sensitivity = record.sensitivity.clone();
            Some(new)
        })?;
        if carried.is_none() {
            dropped.push(name.clone());
        }
    }
    // the build registry exists even when there was nothing to build
    let registry = build_dir(root, &to.name).join("repos.json");
    if !registry.exists() {
        std::fs::create_dir_all(build_dir(root, &to.name))
            .and_then(|()| std::fs::write(&registry, b"{}"))
            .map_err(|e| IndexError::io(format!("failed to write {}", registry.display()), e))?;
    }
    save(root, to)?;
    finish(root)?;
    Ok(dropped)
}

/// Completes a switch whose commit point passed: moves the serving
/// generation's checkpoints and manifests from its build directory into
/// place. Idempotent; a no-op when nothing is pending.
pub fn finish(root: &Path) -> Result<()> {
    let Some(generation) = load(root)? else {
        return Ok(());
    };
    let build = build_dir(root, &generation.name);
    let registry = build.join("repos.json");
    let io = |what: &str, e| IndexError::io(format!("failed to {what} while switching generations"), e);
    if registry.exists() {
        let state = root.join("state");
        let old_state = root.join("state.old");
        if build.join("state").exists() {
            if old_state.exists() {
                std::fs::remove_dir_all(&old_state).map_err(|e| io("remove state.old", e))?;
            }
            if state.exists() {
                std::fs::rename(&state, &old_state).map_err(|e| io("move the old manifests", e))?;
            }
            std::fs::rename(build.join("state"), &state).map_err(|e| io("move the new manifests", e))?;
        }
        // the registry last: once it moved, the switch is complete
        std::fs::rename(&registry, root.join("repos.json")).map_err(|e| io("move the new registry", e))?;
    }
    for leftover in [root.join("state.old"), build] {
        if leftover.exists() {
            std::fs::remove_dir_all(&leftover).map_err(|e| io("clean up", e))?;
        }
    }
    Ok(())
}

/// Removes the embedded shards (and build checkpoints) of generations other
/// than `serving` and `building`: left behind by a switch, or by a build
/// abandoned when the model changed again.
pub fn remove_stale_shards(root: &Path, serving: &str, building: Option<&str>) -> Result<Vec<String>> {
    let store = root.join("store");
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(&store) else {
        return Ok(removed);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        // a shard, or the checkpoints of a build that was abandoned
        let generation = name.strip_suffix(".build").unwrap_or(&name);
        let ours = generation == LEGACY || generation.starts_with("gen-");
        let keep = generation == serving || Some(generation) == building;
        if ours && !keep && entry.path().is_dir() {
            std::fs::remove_dir_all(entry.path())
                .map_err(|e| IndexError::io(format!("failed to remove {}", entry.path().display()), e))?;
            removed.push(name);
        }
    }
    Ok(removed)
}

/// The generation a Qdrant collection holds, when `name` is one of the
/// chunk collections of the configured collection `base`: `base` itself
/// ([`LEGACY`]) or `<base>-gen-<12 hex digits>`. The metadata collection
/// and every other name are not generations.
pub fn collection_generation<'a>(base: &str, name: &'a str) -> Option<&'a str> {
    if name == base {
        return Some(LEGACY);
    }
    let generation = name.strip_prefix(base)?.strip_prefix('-')?;
    let hash = generation.strip_prefix("gen-")?;
    (hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(generation)
}

/// Of the collections `existing`, those of generations of `base` other than
/// `serving` and `building`: replaced by a switch, or abandoned builds.
pub fn replaced_collections(base: &str, existing: &[String], serving: &str, building: Option<&str>) -> Vec<String> {
    existing
        .iter()
        .filter(|name| collection_generation(base, name).is_some_and(|g| g != serving && Some(g) != building))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RepoRecord;

    fn record(name: &str, embedder: &str, groups: &[&str]) -> RepoRecord {
        RepoRecord {
            name: name.into(),
            embedder: embedder.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..RepoRecord::default()
        }
    }

    #[test]
    fn names_follow_the_model() {
        let a = Generation::for_model("m1", "c1", 4, serde_json::Value::Null);
        assert_eq!(a, Generation::for_model("m1", "c1", 4, serde_json::Value::Null));
        assert_ne!(
            a.name,
            Generation::for_model("m2", "c1", 4, serde_json::Value::Null).name
        );
        let rechunked = Generation::for_model("m1", "c2", 4, serde_json::Value::Null);
        assert_ne!(a.name, rechunked.name);
        assert!(!a.same_index(&rechunked) && a.same_index(&a.clone()));
        assert!(a.name.starts_with("gen-") && a.name.len() == 16);
    }

    #[test]
    fn switch_carries_readers_drops_unbuilt_repos_and_survives_a_crash_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let main = Registry::new(root.join("repos.json"));
        main.put(record("a", "old", &["dev"])).unwrap();
        main.put(record("gone", "old", &["ops"])).unwrap();
        std::fs::create_dir_all(root.join("state")).unwrap();
        std::fs::write(root.join("state/a.json"), "old manifest").unwrap();
        let old = Generation::for_model("old", "c1", 4, serde_json::Value::Null);
        save(root, &old).unwrap();

        let new = Generation::for_model("new", "c1", 8, serde_json::json!({"kind": "hash"}));
        let built = build_registry(root, &new.name);
        built.put(record("a", "new", &[])).unwrap();
        std::fs::create_dir_all(build_dir(root, &new.name).join("state")).unwrap();
        std::fs::write(build_dir(root, &new.name).join("state/a.json"), "new manifest").unwrap();

        // a crash right after the commit point: finish() completes it
        save(root, &new).unwrap();
        assert_eq!(load(root).unwrap().unwrap(), new);
        finish(root).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("state/a.json")).unwrap(),
            "new manifest"
        );
        assert!(!build_dir(root, &new.name).exists());
        finish(root).unwrap(); // idempotent

        // a full switch: readers carried, the unbuilt repo dropped
        let newer = Generation::for_model("newer", "c1", 8, serde_json::Value::Null);
        let built = build_registry(root, &newer.name);
        built.put(record("a", "newer", &[])).unwrap();
        main.update("a", |r| {
            let mut r = r?;
            r.groups = vec!["dev".into(), "qa".into()];
            Some(r)
        })
        .unwrap();
        let dropped = switch(root, &main, &newer).unwrap();
        assert_eq!(
            dropped,
            Vec::<String>::new(),
            "gone was dropped by the first switch already"
        );
        let all = main.load().unwrap();
        assert_eq!(all["a"].embedder, "newer");
        assert_eq!(all["a"].groups, ["dev", "qa"]);
        assert_eq!(load(root).unwrap().unwrap(), newer);
    }

    #[test]
    fn switch_reports_repos_it_could_not_build() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let main = Registry::new(root.join("repos.json"));
        main.put(record("kept", "old", &["dev"])).unwrap();
        main.put(record("gone", "old", &["ops"])).unwrap();
        let new = Generation::for_model("new", "c1", 8, serde_json::Value::Null);
        build_registry(root, &new.name).put(record("kept", "new", &[])).unwrap();
        assert_eq!(switch(root, &main, &new).unwrap(), ["gone"]);
        let all = main.load().unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["kept"]);
        assert_eq!(all["kept"].groups, ["dev"]);

        // nothing built at all (an empty data dir): still a clean switch
        let newest = Generation::for_model("newest", "c1", 8, serde_json::Value::Null);
        main.remove("kept").unwrap();
        assert!(switch(root, &main, &newest).unwrap().is_empty());
        assert!(main.load().unwrap().is_empty());
    }

    #[test]
    fn stale_shards_are_removed_but_not_the_serving_or_building_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        for d in [
            "edge",
            "gen-aaaaaaaaaaaa",
            "gen-bbbbbbbbbbbb",
            "gen-bbbbbbbbbbbb.build",
            "other",
        ] {
            std::fs::create_dir_all(store.join(d)).unwrap();
        }
        let mut removed = remove_stale_shards(dir.path(), "gen-aaaaaaaaaaaa", Some("gen-bbbbbbbbbbbb")).unwrap();
        removed.sort();
        assert_eq!(removed, ["edge"]);
        assert!(store.join("other").exists() && store.join("gen-bbbbbbbbbbbb.build").exists());
    }

    #[test]
    fn replaced_collections_are_only_other_generations_of_this_deployment() {
        let existing: Vec<String> = [
            "cairn",
            "cairn-meta",
            "cairn-gen-aaaaaaaaaaaa",
            "cairn-gen-bbbbbbbbbbbb",
            "cairn-gen-cccccccccccc",
            "cairn-gen-short",
            "cairn-staging",
            "cairn-staging-gen-dddddddddddd",
            "other-gen-eeeeeeeeeeee",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            replaced_collections("cairn", &existing, "gen-bbbbbbbbbbbb", Some("gen-cccccccccccc")),
            ["cairn", "cairn-gen-aaaaaaaaaaaa"]
        );
        assert_eq!(
            replaced_collections("cairn", &existing, LEGACY, None),
            [
                "cairn-gen-aaaaaaaaaaaa",
                "cairn-gen-bbbbbbbbbbbb",
                "cairn-gen-cccccccccccc"
            ]
        );
        // another deployment's collections sharing the prefix are not ours
        assert_eq!(
            replaced_collections("cairn-staging", &existing, LEGACY, None),
            ["cairn-staging-gen-dddddddddddd"]
        );
        assert_eq!(collection_generation("cairn", "cairn-meta"), None);
    }
}
