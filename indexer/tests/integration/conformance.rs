//! Store conformance: the same checks on every backend.
//!
//! The embedded backend always runs. The Qdrant server backend runs when
//! `QDRANT_URL` names a server's gRPC endpoint (e.g. `http://127.0.0.1:6334`,
//! Qdrant 1.17+); each test uses its own collection and drops it. Without
//! `QDRANT_URL` those tests print why they skipped and pass.

use std::sync::Arc;

use cairn_indexer::pipeline::point_id;
use cairn_indexer::sparse::SparseVec;
use cairn_indexer::store::edge::EdgeStore;
use cairn_indexer::store::qdrant::{QdrantSettings, QdrantStore};
use cairn_indexer::store::{ChunkPayload, ChunkPoint, SearchFilter, VectorStore};

const DIM: usize = 8;

fn point(repo: &str, path: &str, language: &str, run: &str, axis: usize, term: u32) -> ChunkPoint {
    let mut dense = vec![0.05; DIM];
    dense[axis % DIM] = 1.0;
    ChunkPoint {
        id: point_id(repo, path, "blob", 1, 3, "test"),
        run: run.into(),
        payload: ChunkPayload {
            repo: repo.into(),
            path: path.into(),
            language: language.into(),
            kind: "function".into(),
            symbol: Some(format!("sym_{axis}")),
            start_line: 1,
            end_line: 3,
            commit: "c0ffee".into(),
            blob: "blob".into(),
            content: format!("fn sym_{axis}() {{}}"),
        },
        dense,
        sparse: SparseVec {
            indices: vec![term, 1000],
            values: vec![1.0, 0.5],
        },
    }
}

fn points(run: &str) -> Vec<ChunkPoint> {
    vec![
        point("alpha", "src/a.rs", "rust", run, 0, 1),
        point("alpha", "src/net/b.rs", "rust", run, 1, 2),
        point("alpha", "py/c.py", "python", run, 2, 3),
        point("beta", "src/a.rs", "rust", run, 3, 4),
        point("beta", "README.md", "markdown", run, 4, 5),
    ]
}

fn paths(hits: &[cairn_indexer::store::ScoredChunk]) -> Vec<String> {
    hits.iter()
        .map(|h| format!("{}/{}", h.payload.repo, h.payload.path))
        .collect()
}

/// Every check, in order, against one store.
async fn conformance(store: Arc<dyn VectorStore>) {
    assert_eq!(store.dim(), DIM);
    store.check().await.unwrap();
    store.upsert(points("r1")).await.unwrap();
    store.flush().await.unwrap();
    let all = SearchFilter::default();
    assert_eq!(store.count(&all).await.unwrap(), 5);

    // nearest neighbour, and the filters applied inside the query
    let mut q = vec![0.0; DIM];
    q[1] = 1.0;
    let hits = store.search_dense(q.clone(), &all, 3).await.unwrap();
    assert_eq!(paths(&hits)[0], "alpha/src/net/b.rs");
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    let only_beta = SearchFilter {
        repos: vec!["beta".into()],
        ..Default::default()
    };
    let hits = store.search_dense(q.clone(), &only_beta, 10).await.unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.payload.repo == "beta"));
    let python = SearchFilter {
        languages: vec!["python".into()],
        ..Default::default()
    };
    assert_eq!(
        paths(&store.search_dense(q.clone(), &python, 10).await.unwrap()),
        ["alpha/py/c.py"]
    );
    let under_src = SearchFilter {
        path_prefix: Some("src/".into()),
        ..Default::default()
    };
    assert_eq!(store.count(&under_src).await.unwrap(), 3);
    let partial = SearchFilter {
        repos: vec!["alpha".into()],
        path_prefix: Some("src/ne".into()),
        ..Default::default()
    };
    assert_eq!(
        paths(&store.search_dense(q.clone(), &partial, 10).await.unwrap()),
        ["alpha/src/net/b.rs"]
    );
    let nobody = SearchFilter {
        repos: vec!["gamma".into()],
        ..Default::default()
    };
    assert!(store.search_dense(q.clone(), &nobody, 10).await.unwrap().is_empty());
    // exact paths: one file, not the files it is a prefix of
    let one_file = SearchFilter {
        repos: vec!["alpha".into()],
        paths: vec!["src/net/b.rs".into()],
        ..Default::default()
    };
    assert_eq!(
        paths(&store.search_dense(q.clone(), &one_file, 10).await.unwrap()),
        ["alpha/src/net/b.rs"]
    );
    assert_eq!(store.count(&one_file).await.unwrap(), 1);
    let not_a_file = SearchFilter {
        paths: vec!["src/net/b".into()],
        ..Default::default()
    };
    assert_eq!(store.count(&not_a_file).await.unwrap(), 0);

    // sparse search (IDF applied by the store) finds the one point with the term
    let hits = store
        .search_sparse(
            SparseVec {
                indices: vec![3],
                values: vec![1.0],
            },
            &all,
            10,
        )
        .await
        .unwrap();
    assert_eq!(paths(&hits), ["alpha/py/c.py"]);
    assert!(
        store
            .search_sparse(SparseVec::default(), &all, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // payloads round-trip
    let hit = &store.search_dense(q.clone(), &all, 1).await.unwrap()[0];
    assert_eq!(hit.payload, points("r1")[1].payload);
    assert_eq!(hit.id, points("r1")[1].id);

    // export pages through everything, vectors and run ids included
    let mut exported = Vec::new();
    let mut offset = None;
    loop {
        let (page, next) = store.export(offset, 2).await.unwrap();
        assert!(page.len() <= 2);
        exported.extend(page);
        match next {
            Some(n) => offset = Some(n),
            None => break,
        }
    }
    exported.sort_by(|a, b| a.id.cmp(&b.id));
    let mut expected = points("r1");
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(exported.len(), expected.len());
    for (got, want) in exported.iter().zip(&expected) {
        assert_eq!((&got.id, &got.run, &got.payload), (&want.id, &want.run, &want.payload));
        assert_eq!(got.sparse, want.sparse);
        // cosine stores may normalise; the direction is what must survive
        let dot: f32 = got.dense.iter().zip(&want.dense).map(|(a, b)| a * b).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((dot / (norm(&got.dense) * norm(&want.dense)) - 1.0).abs() < 1e-4);
    }

    // points by id: the stored ones with their vectors, unknown ids left out
    let wanted = [
        expected[0].id.clone(),
        point_id("alpha", "nowhere.rs", "blob", 1, 3, "test"),
        expected[3].id.clone(),
    ];
    let mut got = store.get(&wanted).await.unwrap();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got.len(), 2);
    for (got, want) in got.iter().zip([&expected[0], &expected[3]]) {
        assert_eq!((&got.id, &got.run, &got.payload), (&want.id, &want.run, &want.payload));
        assert_eq!(got.dense.len(), DIM);
    }
    assert!(store.get(&[]).await.unwrap().is_empty());

    // a new run of alpha rewrites one point; stale ones of alpha go, beta stays
    store
        .upsert(vec![point("alpha", "src/a.rs", "rust", "r2", 0, 1)])
        .await
        .unwrap();
    store.delete_stale("alpha", "r2").await.unwrap();
    let alpha = SearchFilter {
        repos: vec!["alpha".into()],
        ..Default::default()
    };
    assert_eq!(store.count(&alpha).await.unwrap(), 1);
    assert_eq!(store.count(&only_beta).await.unwrap(), 2);

    // upserting the same id replaces, never duplicates
    store
        .upsert(vec![point("alpha", "src/a.rs", "rust", "r2", 0, 1)])
        .await
        .unwrap();
    assert_eq!(store.count(&alpha).await.unwrap(), 1);

    // wrong dimensions are refused
    let mut bad = point("alpha", "x.rs", "rust", "r2", 0, 1);
    bad.dense.push(0.0);
    assert!(store.upsert(vec![bad]).await.is_err());
    assert!(store.search_dense(vec![1.0; DIM + 1], &all, 1).await.is_err());

    // incremental-run operations: commit moves, per-path deletes, scrolls
    store.set_commit("beta", "d00d").await.unwrap();
    let beta = store.scroll_repo("beta").await.unwrap();
    assert_eq!(beta.len(), 2);
    assert!(beta.windows(2).all(|w| w[0].0 < w[1].0), "sorted by id");
    assert!(beta.iter().all(|(_, p)| p.commit == "d00d"));
    assert!(
        store
            .scroll_repo("alpha")
            .await
            .unwrap()
            .iter()
            .all(|(_, p)| p.commit == "c0ffee")
    );
    store
        .upsert(vec![point("beta", "src/new.rs", "rust", "r3", 5, 6)])
        .await
        .unwrap();
    store
        .delete_paths("beta", &["src/a.rs".into(), "src/new.rs".into()], "r3")
        .await
        .unwrap();
    let beta: Vec<String> = store
        .scroll_repo("beta")
        .await
        .unwrap()
        .into_iter()
        .map(|(_, p)| p.path)
        .collect();
    let mut beta = beta;
    beta.sort();
    // src/a.rs (older run) is gone; src/new.rs (the kept run) and README.md stay
    assert_eq!(beta, ["README.md", "src/new.rs"]);

    store.delete_repo("beta").await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.count(&all).await.unwrap(), 1);
    assert!(store.scroll_repo("beta").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Arc::new(EdgeStore::open(dir.path(), DIM).unwrap())).await;
}

/// Qdrant settings for a fresh collection, or `None` (with a message) when
/// `QDRANT_URL` is unset.
fn qdrant(test: &str) -> Option<QdrantSettings> {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        eprintln!(
            "skipping {test}: set QDRANT_URL (a Qdrant 1.17+ gRPC endpoint, e.g. http://127.0.0.1:6334) to run it"
        );
        return None;
    };
    Some(QdrantSettings {
        url,
        api_key: std::env::var("QDRANT_API_KEY").ok(),
        collection: format!("cairn_test_{}", uuid::Uuid::new_v4().simple()),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn qdrant_store_conforms() {
    let Some(settings) = qdrant("qdrant_store_conforms") else {
        return;
    };
    let store = Arc::new(QdrantStore::connect(settings, DIM).await.unwrap());
    // drop the collection even when an assertion fails
    let outcome = tokio::spawn(conformance(store.clone())).await;
    store.drop_collection().await.unwrap();
    outcome.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn qdrant_refuses_a_collection_of_another_dimension() {
    let Some(settings) = qdrant("qdrant_refuses_a_collection_of_another_dimension") else {
        return;
    };
    let store = QdrantStore::connect(settings.clone(), DIM).await.unwrap();
    let err = QdrantStore::connect(settings, DIM * 2)
        .await
        .err()
        .expect("mismatch refused");
    store.drop_collection().await.unwrap();
    assert!(err.to_string().contains("dimensional"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn qdrant_outage_is_an_unavailable_error_not_a_crash() {
    // A port nothing listens on stands in for a server that went away: every
    // call must fail with a store error (503 / UNAVAILABLE upstream) after
    // its retries, not hang or panic. Runs without a server.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let store = QdrantStore::new(
        QdrantSettings {
            url: format!("http://127.0.0.1:{port}"),
            attempts: 2,
            backoff: std::time::Duration::from_millis(10),
            timeout: std::time::Duration::from_secs(2),
            ..Default::default()
        },
        DIM,
    )
    .unwrap();
    let err = store
        .search_dense(vec![1.0; DIM], &SearchFilter::default(), 5)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), cairn_indexer::ErrorKind::Unavailable, "{err}");
    let err = store.upsert(points("r1")).await.unwrap_err();
    assert_eq!(err.kind(), cairn_indexer::ErrorKind::Unavailable, "{err}");
}
