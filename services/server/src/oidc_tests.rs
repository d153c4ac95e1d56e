//! OIDC through the real server: tokens signed in the test (ES256 and EdDSA
//! keys from ring) against a JWKS file; valid tokens read the repos their
//! groups claim allows, on HTTP and gRPC; expired, wrong-audience,
//! wrong-issuer, unknown-kid and badly signed tokens get 401; a key added to
//! the JWKS later is picked up on its first unknown `kid`; a repo's groups
//! changed while serving apply to the next request.

use std::sync::Arc;

use base64::Engine as _;
use cairn_indexer::datadir::DataDir;
use cairn_indexer::embed::HashEmbedder;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use cairn_engine::engine::Engine;
use cairn_services::config::Config;
use cairn_services::oidc::{OidcConfig, OidcVerifier};
use cairn_services::state::AppState;

const ISS: &str = "https://idp.example";
const AUD: &str = "cairn";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key and its JWK.
struct Key {
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn es256(kid: &str) -> Key {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    Key {
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                    "kid": kid, "alg": "ES256", "use": "sig"}),
    }
}

fn eddsa(kid: &str) -> Key {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    Key {
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()), "kid": kid, "alg": "EdDSA"}),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(key: &Key, kid: &str, claims: Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

fn claims(sub: &str, groups: Value) -> Value {
    json!({"sub": sub, "iss": ISS, "aud": AUD, "exp": now() + 600, "nbf": now() - 5, "groups": groups})
}

fn write_jwks(path: &std::path::Path, keys: &[&Key]) {
    let set = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    std::fs::write(path, set.to_string()).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_tokens_map_groups_to_readable_repos() {
    use cairn_proto::v1::SearchRequest as PbSearch;
    use cairn_proto::v1::retrieval_client::RetrievalClient;

    let config = Config::default();
    let data = tempfile::tempdir().unwrap();
    let dir = DataDir::open(data.path(), "test").unwrap();
    let engine = Engine::with_embedder(&config, dir, Arc::new(HashEmbedder::new(64))).unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/repos");
    for (repo, group) in [("acme-auth", "payments"), ("acme-billing", "billing")] {
        engine
            .index(
                &fixtures.join(repo),
                repo,
                &config,
                &cairn_indexer::pipeline::NoProgress,
            )
            .await
            .unwrap();
        engine.set_groups(repo, vec![group.into()]).unwrap();
    }
    let ec = es256("ec1");
    let ed = eddsa("ed1");
    let jwks = data.path().join("jwks.json");
    write_jwks(&jwks, &[&ec, &ed]);
    let verifier = OidcVerifier::new(OidcConfig {
        issuer: ISS.into(),
        audience: AUD.into(),
        jwks_file: jwks.clone(),
        jwks_refresh_secs: 0,
        admin_groups: vec!["cairn-admins".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let state = AppState::for_engine(&engine, &config).with_oidc(Arc::new(verifier));
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, grpc_addr) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _engine = engine;
        crate::server::run(state, http, grpc, 1 << 20, async move {
            let _ = rx.await;
        })
        .await
    });
    let client = reqwest::Client::new();
    let search = |token: Option<String>| {
        let mut req = client
            .post(format!("http://{http_addr}/v1/search"))
            .json(&json!({"query": "invoice total verify token", "k": 30}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            let mut repos: Vec<String> = body["results"]
                .as_array()
                .map(|r| r.iter().map(|h| h["repo"].as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            repos.sort();
            repos.dedup();
            (status, repos, body)
        }
    };

    // groups as an array (ES256) and as a string (EdDSA)
    let alice = sign(&ec, "ec1", claims("alice", json!(["payments", "other"])));
    let (status, repos, body) = search(Some(alice.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(repos, ["acme-auth"]);
    let bob = sign(&ed, "ed1", claims("bob", json!("billing")));
    let (status, repos, _) = search(Some(bob.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(repos, ["acme-billing"]);
    // admin only through admin_groups; a claimed group named "admin" is dropped
    let root = sign(&ec, "ec1", claims("root", json!(["cairn-admins"])));
    assert_eq!(search(Some(root)).await.1, ["acme-auth", "acme-billing"]);
    let mallory = sign(&ec, "ec1", claims("mallory", json!(["admin"])));
    let (status, repos, _) = search(Some(mallory)).await;
    assert_eq!((status, repos), (200, Vec::<String>::new()));
    let nobody = sign(
        &ec,
        "ec1",
        json!({"sub": "n", "iss": ISS, "aud": AUD, "exp": now() + 600}),
    );
    let (status, repos, _) = search(Some(nobody)).await;
    assert_eq!(
        (status, repos),
        (200, Vec::<String>::new()),
        "no groups claim: nothing readable"
    );

    // every bad token is 401
    let mut expired = claims("alice", json!(["payments"]));
    expired["exp"] = json!(now() - 3600);
    let mut not_yet = claims("alice", json!(["payments"]));
    not_yet["nbf"] = json!(now() + 3600);
    let mut wrong_aud = claims("alice", json!(["payments"]));
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("alice", json!(["payments"]));
    wrong_iss["iss"] = json!("https://evil.example");
    let other = es256("ec1");
    let tampered = {
        let mut parts: Vec<String> = alice.split('.').map(str::to_string).collect();
        let mut c = claims("alice", json!(["admin"]));
        c["sub"] = json!("alice");
        parts[1] = b64(c.to_string().as_bytes());
        parts.join(".")
    };
    for (what, token) in [
        ("expired", sign(&ec, "ec1", expired)),
        ("not yet valid", sign(&ec, "ec1", not_yet)),
        ("wrong audience", sign(&ec, "ec1", wrong_aud)),
        ("wrong issuer", sign(&ec, "ec1", wrong_iss)),
        ("unknown kid", sign(&ec, "nope", claims("alice", json!(["payments"])))),
        (
            "bad signature",
            sign(&other, "ec1", claims("alice", json!(["payments"]))),
        ),
        ("tampered claims", tampered),
        ("not a JWT", "garbage".to_string()),
    ] {
        let (status, _, body) = search(Some(token)).await;
        assert_eq!(status, 401, "{what}: {body}");
    }
    assert_eq!(search(None).await.0, 401);

    // gRPC: the same verification from the `authorization` metadata
    let mut grpc = RetrievalClient::connect(format!("http://{grpc_addr}")).await.unwrap();
    let mut req = tonic::Request::new(PbSearch {
        query: "invoice total verify token".into(),
        k: 30,
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {alice}").parse().unwrap());
    let resp = grpc.search(req).await.unwrap().into_inner();
    assert!(!resp.results.is_empty() && resp.results.iter().all(|r| r.repo == "acme-auth"));
    let err = grpc
        .search(PbSearch {
            query: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // a repo's groups changed while serving (as `cairn index --groups` or
    // the repos API write the registry): the next request follows
    let registry = cairn_indexer::registry::Registry::new(data.path().join("repos.json"));
    let mut record = registry.load().unwrap().remove("acme-auth").unwrap();
    record.groups = vec!["billing".into()];
    registry.put(record).unwrap();
    let (status, repos, _) = search(Some(alice.clone())).await;
    assert_eq!((status, repos), (200, Vec::<String>::new()), "payments lost acme-auth");
    let dave = sign(&ed, "ed1", claims("dave", json!("billing")));
    assert_eq!(search(Some(dave)).await.1, ["acme-auth", "acme-billing"]);

    // a rotated-in key: its first token triggers a JWKS refresh
    let new = eddsa("ed2");
    let carol = sign(&new, "ed2", claims("carol", json!(["billing"])));
    write_jwks(&jwks, &[&ec, &ed, &new]);
    let (status, repos, body) = search(Some(carol)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        repos,
        ["acme-auth", "acme-billing"],
        "billing reads both since the change above"
    );

    // a key removed from the JWKS file stops being trusted at the next request
    write_jwks(&jwks, &[&ec, &new]);
    let (status, _, body) = search(Some(bob)).await;
    assert_eq!(status, 401, "a removed key's token was accepted: {body}");
    let (status, _, _) = search(Some(alice)).await;
    assert_eq!(status, 200);
}

#[test]
fn oidc_settings_are_validated_together() {
    let mut errors = Vec::new();
    OidcConfig {
        jwks_url: "ftp://idp/jwks".into(),
        jwks_file: "x.json".into(),
        allowed_algorithms: vec!["HS256".into()],
        ..Default::default()
    }
    .validate(&mut errors);
    let text = errors.join("\n");
    assert_eq!(errors.len(), 5, "{text}");
    for needle in ["issuer", "audience", "only one", "http://", "HS256"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}
