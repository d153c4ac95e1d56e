//! Split roles: `cairn serve --no-indexer` (searches only) and
//! `cairn indexer` (the daemon, one active at a time through a lease in
//! Qdrant). The Qdrant test runs when `QDRANT_URL` is set.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Server, fixture_repo, indexed_data_dir};

async fn search(c: &reqwest::Client, server: &Server, query: &str) -> (u16, Value) {
    let resp = c
        .post(server.url("/v1/search"))
        .json(&json!({"query": query, "k": 3}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_without_the_indexer_answers_searches_from_a_built_index() {
    let (_repo, data) = indexed_data_dir();
    let server = Server::wait_ready(Server::spawn(data.path(), &[], &[], &["serve", "--no-indexer"]));
    let c = reqwest::Client::new();
    let (status, v) = search(&c, &server, "refill the token bucket").await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["results"]
            .as_array()
            .is_some_and(|r| !r.is_empty() && r[0]["repo"] == "acme-auth"),
        "{v}"
    );
    // repo status comes from the registry (mirrored, on a Qdrant replica)
    let v: Value = c
        .get(server.url("/v1/repos"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["repos"][0]["name"], "acme-auth", "{v}");
    assert_eq!(v["repos"][0]["state"], "idle", "{v}");
    assert_eq!(v["index"]["serving"]["generation"], "edge", "{v}");
    let resp = c.get(server.url("/v1/repos/acme-auth")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // no daemon here: triggers belong to the indexer
    let resp = c
        .post(server.url("/v1/repos/acme-auth/reindex"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("indexer"), "{body}");
}

/// The split deployment against a real Qdrant: an indexer indexes a
/// configured repo, a replica with its own (empty) data dir finds it through
/// the published registry, a second indexer stands by until the first one
/// stops and then takes the lease.
#[tokio::test(flavor = "multi_thread")]
async fn indexer_and_replicas_share_the_registry_and_the_lease_through_qdrant() {
    let Some(qdrant) =
        crate::qdrant::TestQdrant::from_env("indexer_and_replicas_share_the_registry_and_the_lease_through_qdrant")
    else {
        return;
    };
    let repo = fixture_repo();
    let tmp = tempfile::tempdir().unwrap();
    let config = crate::qdrant::config_with_repo(
        tmp.path(),
        &qdrant.store_toml(),
        "\n[indexer]\nlease_ttl = \"5s\"\n",
        repo.path(),
    );
    let config = config.to_str().unwrap().to_string();
    let dirs: Vec<_> = ["indexer-1", "indexer-2", "replica"]
        .iter()
        .map(|n| tmp.path().join(n))
        .collect();

    // the collection of a generation replaced before the indexer (re)starts
    let replaced = format!("{}-gen-000000000000", qdrant.collection);
    let store = cairn_indexer::store::qdrant::QdrantStore::new(qdrant.settings(&replaced), 384).unwrap();
    cairn_indexer::store::VectorStore::check(&store).await.unwrap();
    assert!(qdrant.collections().await.contains(&replaced));

    // spawned, so that a failed assertion still drops the collections below
    let test_qdrant = crate::qdrant::TestQdrant {
        url: qdrant.url.clone(),
        collection: qdrant.collection.clone(),
    };
    let outcome = tokio::spawn(async move {
        let qdrant = test_qdrant;
        let cfg = ["--config", config.as_str()];
        let mut first = Server::wait_ready(Server::spawn(&dirs[0], &cfg, &[], &["indexer"]));
        let replica = Server::wait_ready(Server::spawn(&dirs[2], &cfg, &[], &["serve", "--no-indexer"]));
        let c = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let (status, v) = search(&c, &replica, "refill the token bucket").await;
            if status == 200 && v["results"].as_array().is_some_and(|r| !r.is_empty()) {
                assert_eq!(v["results"][0]["repo"], "acme-auth", "{v}");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "the replica never found the repo: {v}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // the replica's repo status is the mirrored registry, which follows
        // the published one within a mirror round or two (searches read the
        // store directly and may see the repo first)
        let mirrored = Instant::now();
        loop {
            let status = c
                .get(replica.url("/v1/repos/acme-auth"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if status == 200 {
                break;
            }
            assert!(
                mirrored.elapsed() < cairn_engine::roles::MIRROR_EVERY * 4 + Duration::from_secs(10),
                "the replica never mirrored acme-auth's status ({status})"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // the indexer dropped the replaced generation, and only it
        assert_eq!(
            qdrant.collections().await,
            [qdrant.collection.clone(), format!("{}-meta", qdrant.collection)]
        );
        // a second indexer stands by (prints nothing) until the first stops
        let second = Server::spawn(&dirs[1], &cfg, &[], &["indexer"]);
        let waiting = tokio::task::spawn_blocking(move || Server::wait_ready(second));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!waiting.is_finished(), "the standby started while the lease was held");
        first.terminate();
        let second = tokio::time::timeout(Duration::from_secs(60), waiting)
            .await
            .expect("the standby takes the lease after the holder stops")
            .unwrap();
        let resp = c.get(second.url("/v1/repos/acme-auth")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    });
    let result = tokio::time::timeout(Duration::from_secs(600), outcome).await;
    qdrant.drop_collections().await;
    result.expect("the split-role scenario finished in time").unwrap();
}

/// Replicas share API tokens through Qdrant's metadata collection: a token
/// made with `cairn token create` against one data dir works on a replica
/// with another, and a revocation reaches every replica within
/// `auth::SHARED_REFRESH`.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_tokens_and_revocations_through_qdrant() {
    let Some(qdrant) = crate::qdrant::TestQdrant::from_env("replicas_share_tokens_and_revocations_through_qdrant")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("cairn.toml");
    std::fs::write(&config, format!("{}\n[auth]\nmode = \"tokens\"\n", qdrant.store_toml())).unwrap();
    let config = config.to_str().unwrap().to_string();
    let test_qdrant = crate::qdrant::TestQdrant {
        url: qdrant.url.clone(),
        collection: qdrant.collection.clone(),
    };
    let dir = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let (admin, one, two) = (dir("admin"), dir("replica-1"), dir("replica-2"));
    let outcome = tokio::spawn(async move {
        let _qdrant = test_qdrant;
        let cli = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--config", config.as_str(), "--data-dir", admin.as_str()]);
            let (ok, out, err) = crate::run(&all);
            assert!(ok, "{all:?}: {err}");
            out
        };
        let token = cli(&["token", "create", "--principal", "alice", "--groups", "dev"])
            .lines()
            .last()
            .unwrap()
            .to_string();
        let cfg = ["--config", config.as_str()];
        let replicas = [one.as_str(), two.as_str()].map(|d| {
            Server::wait_ready(Server::spawn(
                std::path::Path::new(d),
                &cfg,
                &[],
                &["serve", "--no-indexer"],
            ))
        });
        let c = reqwest::Client::new();
        let status = |server: &Server, token: &str| {
            let req = c.get(server.url("/v1/repos")).bearer_auth(token).send();
            async move { req.await.unwrap().status().as_u16() }
        };
        for r in &replicas {
            assert_eq!(status(r, &token).await, 200, "a replica honours a token made elsewhere");
            assert_eq!(status(r, "cairn_0000").await, 401);
        }
        assert!(cli(&["token", "list"]).contains("alice"));
        assert!(!std::path::Path::new(&admin).join("tokens.json").exists());
        cli(&["token", "revoke", "alice"]);
        let revoked = Instant::now();
        for r in &replicas {
            while status(r, &token).await != 401 {
                assert!(
                    revoked.elapsed() < cairn_services::auth::SHARED_REFRESH + Duration::from_secs(3),
                    "a replica still honours a token revoked {:?} ago",
                    revoked.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        eprintln!("revocation reached both replicas in {:?}", revoked.elapsed());
    });
    let result = tokio::time::timeout(Duration::from_secs(300), outcome).await;
    qdrant.drop_collections().await;
    result.expect("the shared-token scenario finished in time").unwrap();
}

/// Both roles against a Qdrant that does not answer (a closed port; runs
/// everywhere): the replica still starts and answers searches with 503, the
/// indexer stands by retrying the lease, and both stop cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn split_roles_survive_an_unreachable_qdrant() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nkind = \"qdrant\"\nurl = \"http://127.0.0.1:{port}\"\ncollection = \"gone\"\n\
             retries = 1\ntimeout_ms = 1000\n"
        ),
    )
    .unwrap();
    let cfg = ["--config", config.to_str().unwrap()];

    let mut replica = Server::wait_ready(Server::spawn(
        &tmp.path().join("replica"),
        &cfg,
        &[],
        &["serve", "--no-indexer"],
    ));
    let c = reqwest::Client::new();
    let (status, v) = search(&c, &replica, "anything").await;
    assert_eq!(status, 503, "{v}");
    replica.terminate();

    let mut indexer = Server::spawn(&tmp.path().join("indexer"), &cfg, &[], &["indexer"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        indexer.try_wait().unwrap().is_none(),
        "the indexer keeps retrying the lease"
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &indexer.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = indexer.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the standby did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit}");
}
