//! Incremental runs of [`RepoIndexer`]: after every run the store must hold
//! exactly what a clean build of the same tree holds (same point ids, same
//! payloads), whatever happened to the repository in between.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use cairn_indexer::chunk::{Chunker, ChunkerConfig};
use cairn_indexer::embed::{Embed, HashEmbedder};
use cairn_indexer::pipeline::{IndexOptions, NoProgress};
use cairn_indexer::registry::Registry;
use cairn_indexer::repo::{RepoIndexer, RepoSpec, RunReport};
use cairn_indexer::source::SkipReason;
use cairn_indexer::store::edge::EdgeStore;
use cairn_indexer::store::{ChunkPayload, VectorStore};

/// A data directory with its store and indexer (hash embedder).
struct Env {
    // the indexer (and its store, which flushes on drop) goes first
    indexer: RepoIndexer,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env::with_embedder(Arc::new(HashEmbedder::new(16)))
    }

    fn with_embedder(embedder: Arc<dyn Embed>) -> Env {
        let options = IndexOptions::new("");
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn VectorStore> = Arc::new(EdgeStore::open(&dir.path().join("store"), 16).unwrap());
        let indexer = RepoIndexer {
            root: dir.path().to_path_buf(),
            registry: Registry::new(dir.path().join("repos.json")),
            chunker: Arc::new(Chunker::new(ChunkerConfig::default())),
            embedder,
            store,
            options,
        };
        Env { indexer, dir }
    }

    async fn run(&self, spec: &RepoSpec, full: bool) -> RunReport {
        self.indexer.run(spec, full, &NoProgress).await.unwrap()
    }

    async fn points(&self, repo: &str) -> Vec<(String, ChunkPayload)> {
        self.indexer.store.scroll_repo(repo).await.unwrap()
    }
}

fn spec(name: &str, url: &str) -> RepoSpec {
    RepoSpec {
        name: name.into(),
        url: url.into(),
        ..Default::default()
    }
}

/// A tree: path → (content, git file mode).
type Tree = BTreeMap<String, (Vec<u8>, i32)>;

fn write_tree(repo: &git2::Repository, files: &[(&str, &(Vec<u8>, i32))]) -> git2::Oid {
    let mut builder = repo.treebuilder(None).unwrap();
    #[allow(clippy::type_complexity)]
    let mut subdirs: BTreeMap<&str, Vec<(&str, &(Vec<u8>, i32))>> = BTreeMap::new();
    for (path, entry) in files {
        match path.split_once('/') {
            Some((dir, rest)) => subdirs.entry(dir).or_default().push((rest, entry)),
            None => {
                let blob = repo.blob(&entry.0).unwrap();
                builder.insert(path, blob, entry.1).unwrap();
            }
        }
    }
    for (dir, files) in subdirs {
        let sub = write_tree(repo, &files);
        builder.insert(dir, sub, 0o040000).unwrap();
    }
    builder.write().unwrap()
}

/// Commits `tree` on `main` (parent: the current tip unless `orphan`, which
/// rewrites history as a force-push does) and returns the commit id.
fn commit(repo: &git2::Repository, tree: &Tree, orphan: bool) -> git2::Oid {
    let files: Vec<(&str, &(Vec<u8>, i32))> = tree.iter().map(|(p, e)| (p.as_str(), e)).collect();
    let tree_id = write_tree(repo, &files);
    let tree = repo.find_tree(tree_id).unwrap();
    let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(1_700_000_000, 0)).unwrap();
    let parent = match orphan {
        true => None,
        false => repo
            .refname_to_id("refs/heads/main")
            .ok()
            .map(|id| repo.find_commit(id).unwrap()),
    };
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let id = repo.commit(None, &sig, &sig, "c", &tree, &parents).unwrap();
    repo.reference("refs/heads/main", id, true, "test").unwrap();
    repo.set_head("refs/heads/main").unwrap();
    id
}

fn init_repo(dir: &Path) -> git2::Repository {
    git2::Repository::init_bare(dir).unwrap()
}

/// A tiny deterministic RNG (xorshift64*), so failures replay by seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const NAMES: &[&str] = &[
    "src/lib.rs",
    "src/auth/token.rs",
    "src/auth/session.py",
    "web/app.ts",
    "cmd/main.go",
    "README.md",
    "docs/guide.md",
    "src/util.rs",
    "src/deep/er/mod.rs",
];

/// Source text; a small vocabulary so files often share identical chunks.
fn content(rng: &mut Rng, path: &str) -> Vec<u8> {
    let funcs = 1 + rng.below(4);
    let mut out = String::new();
    for _ in 0..funcs {
        let n = rng.below(12);
        out += &match path.rsplit('.').next() {
            Some("py") => format!("def handler_{n}(request):\n    return verify_{n}(request.token)\n\n"),
            Some("go") => format!("func Handler{n}(w Writer) error {{\n\treturn verify{n}(w)\n}}\n\n"),
            Some("ts") => format!("export function handler{n}(req: Request) {{\n  return verify{n}(req);\n}}\n\n"),
            Some("md") => format!("## Section {n}\n\nHow to configure the service, step {n}.\n\n"),
            _ => format!(
                "/// Verifies token {n}.\npub fn verify_{n}(token: &str) -> bool {{\n    token.len() > {n}\n}}\n\n"
            ),
        };
    }
    match rng.below(10) {
        0 => b"\x00\x01binary".to_vec(),
        1 => vec![0xff, 0xfe, b'a', b'\n'],
        _ => out.into_bytes(),
    }
}

fn random_tree(rng: &mut Rng) -> Tree {
    let mut tree = Tree::new();
    for _ in 0..1 + rng.below(6) {
        let path = NAMES[rng.below(NAMES.len())].to_string();
        let text = content(rng, &path);
        tree.insert(path, (text, 0o100644));
    }
    tree
}

/// One random change; returns whether it rewrote history.
fn mutate(rng: &mut Rng, tree: &mut Tree) -> bool {
    let paths: Vec<String> = tree.keys().cloned().collect();
    let pick = |rng: &mut Rng| paths.get(rng.below(paths.len().max(1))).cloned();
    match rng.below(8) {
        0 | 1 => {
            let path = NAMES[rng.below(NAMES.len())].to_string();
            let text = content(rng, &path);
            tree.insert(path, (text, 0o100644));
        }
        2 => {
            if let Some(p) = pick(rng) {
                let text = content(rng, &p);
                tree.get_mut(&p).unwrap().0 = text;
            }
        }
        3 => {
            if let Some(p) = pick(rng) {
                tree.remove(&p);
            }
        }
        4 => {
            if let Some(p) = pick(rng) {
                let to = NAMES[rng.below(NAMES.len())].to_string();
                let e = tree.remove(&p).unwrap();
                tree.insert(to, e);
            }
        }
        5 => {
            if let Some(p) = pick(rng) {
                let e = tree.get_mut(&p).unwrap();
                e.1 = match e.1 {
                    0o100644 => 0o100755,
                    0o100755 => 0o120000, // becomes a symlink (its content is the target)
                    _ => 0o100644,
                };
            }
        }
        6 => {
            *tree = random_tree(rng);
            return true;
        }
        _ => {
            // several changes in one commit
            mutate(rng, tree);
            mutate(rng, tree);
        }
    }
    false
}

/// After every random commit (add, modify, delete, rename, mode change,
/// symlink, force-push to an unrelated history) the incrementally updated
/// index equals a clean index of that commit's tree.
#[tokio::test(flavor = "multi_thread")]
async fn random_commit_sequences_converge_to_a_clean_build() {
    for seed in 1..=4u64 {
        let mut rng = Rng::new(seed);
        let git_dir = tempfile::tempdir().unwrap();
        let repo = init_repo(git_dir.path());
        let path = git_dir.path().display().to_string();
        // odd seeds go through a file:// mirror, even ones read in place
        let url = match seed % 2 {
            1 => format!("file://{path}"),
            _ => path.clone(),
        };
        let incremental = Env::new();
        let mut tree = random_tree(&mut rng);
        for step in 0..6 {
            let orphan = step > 0 && mutate(&mut rng, &mut tree);
            let head = commit(&repo, &tree, orphan);
            let report = incremental.run(&spec("prop", &url), false).await;
            assert_eq!(report.index.commit, head.to_string());
            let clean = Env::new();
            let clean_report = clean.run(&spec("prop", &path), true).await;
            let (got, want) = (incremental.points("prop").await, clean.points("prop").await);
            assert!(
                got == want,
                "seed {seed} step {step}: incremental index differs from a clean build\n\
                 tree: {:?}\ngot:  {got:#?}\nwant: {want:#?}",
                tree.keys().collect::<Vec<_>>()
            );
            assert_eq!(report.index.files, clean_report.index.files, "seed {seed} step {step}");
            assert_eq!(
                report.index.chunks, clean_report.index.chunks,
                "seed {seed} step {step}"
            );
            assert_eq!(
                report.index.skipped, clean_report.index.skipped,
                "seed {seed} step {step}"
            );
        }
    }
}

fn numbered_tree(n: usize) -> Tree {
    (0..n)
        .map(|i| {
            let text = format!("/// Item {i}.\npub fn item_{i}(x: u32) -> u32 {{\n    x * {i} + 7\n}}\n");
            (format!("src/m{i}.rs"), (text.into_bytes(), 0o100644))
        })
        .collect()
}

/// A one-file commit re-embeds only that file's chunks, and the same
/// content under another repo name is not embedded again.
#[tokio::test(flavor = "multi_thread")]
async fn a_one_file_change_embeds_only_that_files_chunks() {
    let git_dir = tempfile::tempdir().unwrap();
    let repo = init_repo(git_dir.path());
    let mut tree = numbered_tree(20);
    commit(&repo, &tree, false);
    let env = Env::new();
    let url = git_dir.path().display().to_string();
    let first = env.run(&spec("one", &url), false).await;
    assert!(first.full);
    assert_eq!(first.chunks_embedded, 20);
    assert_eq!(first.index.files, 20);

    // unchanged: nothing to do
    let again = env.run(&spec("one", &url), false).await;
    assert_eq!((again.chunks_embedded, again.files_changed, again.full), (0, 0, false));

    let changed = "/// Changed.\npub fn changed_item() {}\n\n/// Another.\npub fn another_item() {}\n";
    tree.insert("src/m3.rs".into(), (changed.as_bytes().to_vec(), 0o100644));
    commit(&repo, &tree, false);
    let second = env.run(&spec("one", &url), false).await;
    let file_chunks = env
        .points("one")
        .await
        .into_iter()
        .filter(|(_, p)| p.path == "src/m3.rs")
        .count();
    assert!(file_chunks >= 1);
    assert!(!second.full);
    assert_eq!(second.files_changed, 1);
    assert_eq!(second.chunks_embedded, file_chunks);
    assert_eq!(second.chunks_reused, 0);
    assert_eq!(second.index.chunks, 19 + file_chunks);

    // the same content as another repo: every vector comes from the cache
    let other = env.run(&spec("one-copy", &url), false).await;
    assert_eq!(other.chunks_embedded, 0);
    assert_eq!(other.chunks_reused, other.index.chunks);
}

/// Huge blobs, binaries and invalid UTF-8 are counted skips; a symlink and a
/// submodule are never followed; include/exclude globs apply.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_files_are_counted_skips_and_globs_apply() {
    let git_dir = tempfile::tempdir().unwrap();
    let repo = init_repo(git_dir.path());
    let mut tree = numbered_tree(3);
    tree.insert("big.rs".into(), (vec![b'a'; 2 << 20], 0o100644));
    tree.insert("bin.dat".into(), (b"\x7fELF\x00\x00".to_vec(), 0o100644));
    tree.insert("latin1.txt".into(), (vec![b'a', 0xe9, b'\n'], 0o100644));
    tree.insert("link.rs".into(), (b"/etc/passwd".to_vec(), 0o120000));
    tree.insert("vendor/x.rs".into(), (b"pub fn vendored() {}\n".to_vec(), 0o100644));
    let head = commit(&repo, &tree, false);
    // a submodule entry: a commit id in the tree
    let t = repo.find_commit(head).unwrap().tree().unwrap();
    let mut b = repo.treebuilder(Some(&t)).unwrap();
    b.insert("sub", head, 0o160000).unwrap();
    let with_sub = repo.find_tree(b.write().unwrap()).unwrap();
    let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(1_700_000_000, 0)).unwrap();
    let parent = repo.find_commit(head).unwrap();
    let id = repo.commit(None, &sig, &sig, "sub", &with_sub, &[&parent]).unwrap();
    repo.reference("refs/heads/main", id, true, "test").unwrap();

    let env = Env::new();
    let mut s = spec("hostile", &git_dir.path().display().to_string());
    s.exclude = vec!["vendor/**".into()];
    let r = env.run(&s, false).await;
    assert_eq!(r.index.files, 3);
    let skipped = |reason| r.index.skipped.get(&reason).copied().unwrap_or(0);
    assert_eq!(skipped(SkipReason::Oversized), 1);
    assert_eq!(skipped(SkipReason::Binary), 1);
    assert_eq!(skipped(SkipReason::InvalidUtf8), 1);
    assert_eq!(skipped(SkipReason::Symlink), 1);
    assert_eq!(skipped(SkipReason::Submodule), 1);
    assert!(
        env.points("hostile")
            .await
            .iter()
            .all(|(_, p)| p.path.starts_with("src/"))
    );

    s.include = vec!["src/m1.rs".into()];
    let r = env.run(&s, false).await;
    assert!(r.full, "changed globs rebuild");
    assert_eq!(r.index.files, 1);
    s.include = vec!["[".into()];
    let e = env.indexer.run(&s, false, &NoProgress).await.unwrap_err();
    assert!(e.to_string().contains("invalid globs"), "{e}");
}

/// An unreachable remote is a clear per-repo error, and what was indexed
/// from it before stays searchable.
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_remote_is_an_error_and_loses_nothing() {
    let git_dir = tempfile::tempdir().unwrap();
    let repo = init_repo(git_dir.path());
    commit(&repo, &numbered_tree(4), false);
    let env = Env::new();
    let url = format!("file://{}", git_dir.path().display());
    let first = env.run(&spec("remote", &url), false).await;
    let before = env.points("remote").await;
    assert_eq!(before.len(), first.index.chunks);

    drop(repo);
    let gone = git_dir.path().to_path_buf();
    drop(git_dir);
    assert!(!gone.exists());
    let e = env
        .indexer
        .run(&spec("remote", &url), false, &NoProgress)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("repo remote") && msg.contains("failed to fetch"), "{msg}");
    assert_eq!(env.points("remote").await, before);
    let e = env
        .indexer
        .run(&spec("nohost", "https://127.0.0.1:9/x.git"), false, &NoProgress)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("repo nohost"), "{e}");

    // remove purges points, mirror and state
    env.indexer.remove("remote").await.unwrap();
    assert!(env.points("remote").await.is_empty());
    assert!(!env.dir.path().join("mirrors/remote.git").exists());
    assert!(!env.dir.path().join("state/remote.json").exists());
}

/// Plain directories are incremental through their manifest.
#[tokio::test(flavor = "multi_thread")]
async fn plain_directories_are_incremental() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        std::fs::write(
            dir.path().join(format!("f{i}.py")),
            format!("def f{i}():\n    return {i}\n"),
        )
        .unwrap();
    }
    let env = Env::new();
    let s = spec("plain", &dir.path().display().to_string());
    let first = env.run(&s, false).await;
    assert_eq!((first.index.files, first.full), (5, true));
    std::fs::write(dir.path().join("f2.py"), "def changed():\n    return 42\n").unwrap();
    std::fs::remove_file(dir.path().join("f4.py")).unwrap();
    let second = env.run(&s, false).await;
    assert_eq!(
        (second.files_changed, second.chunks_embedded, second.full),
        (2, 1, false)
    );
    assert_eq!(second.index.files, 4);
    let clean = Env::new();
    clean.run(&s, true).await;
    assert_eq!(env.points("plain").await, clean.points("plain").await);
}

/// A spec that names its readers writes them with the first checkpoint (a
/// new repo is never readable by admins only, between its first run and a
/// later update); one that does not keeps whatever the record holds.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_checkpoint_carries_the_readers_of_the_spec() {
    use cairn_indexer::repo::RepoAccess;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.py"), "def a():\n    return 1\n").unwrap();
    let env = Env::new();
    let mut s = spec("team/app", &dir.path().display().to_string());
    s.access = Some(RepoAccess {
        groups: vec!["dev".into()],
        sensitivity: Some("confidential".into()),
    });
    env.run(&s, false).await;
    let record = &env.indexer.registry.load().unwrap()["team/app"];
    assert_eq!(
        (record.groups.clone(), record.sensitivity.as_str()),
        (vec!["dev".to_string()], "confidential")
    );

    // someone changes the groups between runs; a run without access keeps them
    env.indexer
        .registry
        .update("team/app", |r| {
            let mut r = r?;
            r.groups = vec!["ops".into()];
            Some(r)
        })
        .unwrap();
    std::fs::write(dir.path().join("a.py"), "def a():\n    return 2\n").unwrap();
    s.access = None;
    env.run(&s, false).await;
    let record = &env.indexer.registry.load().unwrap()["team/app"];
    assert_eq!(
        (record.groups.clone(), record.sensitivity.as_str()),
        (vec!["ops".to_string()], "confidential")
    );
}

/// A plain directory: a file over the limit is skipped without being read
/// (a 64 GiB sparse file, which no run could hold), symlinks to a file or a
/// directory outside the root are counted and not followed.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn plain_directory_runs_skip_oversized_and_outside_files() {
    let dir = tempfile::tempdir().unwrap();
    let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(root.join("a.py"), "def a():\n    return 1\n").unwrap();
    std::fs::write(outside.join("leak.py"), "def outside_secret():\n    return 2\n").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("linked")).unwrap();
    std::os::unix::fs::symlink(outside.join("leak.py"), root.join("leak.py")).unwrap();
    let huge = std::fs::File::create(root.join("huge.py")).unwrap();
    huge.set_len(64 << 30).unwrap();
    drop(huge);

    let env = Env::new();
    let s = spec("plain", &root.display().to_string());
    let r = env.run(&s, false).await;
    let skipped = |r: &RunReport, reason| r.index.skipped.get(&reason).copied().unwrap_or(0);
    assert_eq!(r.index.files, 1);
    assert_eq!(skipped(&r, SkipReason::Oversized), 1);
    assert_eq!(skipped(&r, SkipReason::Symlink), 2);
    let points = env.points("plain").await;
    assert!(points.iter().all(|(_, p)| p.path == "a.py"), "{points:?}");

    // unchanged: nothing to do, the huge file is not read to find that out
    let again = env.run(&s, false).await;
    assert_eq!((again.files_changed, again.index.files), (0, 1));
    // once under the limit it is indexed
    std::fs::write(root.join("huge.py"), "def now_small():\n    return 3\n").unwrap();
    let r = env.run(&s, false).await;
    assert_eq!((r.files_changed, r.index.files), (1, 2));
    assert_eq!(skipped(&r, SkipReason::Oversized), 0);
}

/// Embeds like [`HashEmbedder`], or panics while `panic` is set.
struct Panicky {
    inner: HashEmbedder,
    panic: std::sync::atomic::AtomicBool,
}

impl Embed for Panicky {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn fingerprint(&self) -> &str {
        self.inner.fingerprint()
    }
    fn embed_documents(&self, texts: &[&str]) -> cairn_indexer::Result<cairn_indexer::embed::Embedded> {
        if self.panic.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("injected embedder panic");
        }
        self.inner.embed_documents(texts)
    }
    fn embed_query(&self, text: &str) -> cairn_indexer::Result<Vec<f32>> {
        self.inner.embed_query(text)
    }
}

/// A panic in the pipeline fails the run: the checkpoint (registry record
/// and manifest) stays at the last good commit, and the next run catches up
/// to what a clean build holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_panic_fails_the_run_and_the_checkpoint_stays() {
    use std::sync::atomic::Ordering;
    let git_dir = tempfile::tempdir().unwrap();
    let repo = init_repo(git_dir.path());
    let mut tree = numbered_tree(6);
    let first = commit(&repo, &tree, false);
    let embedder = Arc::new(Panicky {
        inner: HashEmbedder::new(16),
        panic: Default::default(),
    });
    let env = Env::with_embedder(embedder.clone());
    let s = spec("p", &git_dir.path().display().to_string());
    env.run(&s, false).await;
    let record = || env.indexer.registry.load().unwrap().remove("p").unwrap();
    let before = record();
    assert_eq!(before.indexed_commit, first.to_string());

    tree.insert(
        "src/new.rs".into(),
        (b"pub fn brand_new() -> u8 { 9 }\n".to_vec(), 0o100644),
    );
    let second = commit(&repo, &tree, false);
    embedder.panic.store(true, Ordering::SeqCst);
    let e = env.indexer.run(&s, false, &NoProgress).await.unwrap_err();
    assert_eq!(e.kind(), cairn_indexer::ErrorKind::Internal, "{e}");
    assert!(e.to_string().contains("panicked"), "{e}");
    assert_eq!(record(), before, "the checkpoint did not move");
    assert!(env.points("p").await.iter().all(|(_, p)| p.path != "src/new.rs"));

    embedder.panic.store(false, Ordering::SeqCst);
    let r = env.run(&s, false).await;
    assert_eq!(r.index.commit, second.to_string());
    assert_eq!(record().indexed_commit, second.to_string());
    let clean = Env::new();
    clean.run(&s, true).await;
    assert_eq!(env.points("p").await, clean.points("p").await);
}
