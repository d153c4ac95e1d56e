//! The real default model through ONNX Runtime (installed by `make setup`).

use cairn_indexer::embed::{Embed, Provider};
use cairn_services::config::Config;

fn config() -> Config {
    Config::load_from(None, &[]).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn default_model_embeds_normalised_384d_vectors() {
    let e = cairn_engine::engine::load_embedder(&config()).expect("run `make setup` first");
    assert_eq!(e.dim(), 384);
    let v = e.embed_query("verify a session token").unwrap();
    let norm: f32 = v.iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    let related = e.embed_query("check that an auth token is valid").unwrap();
    let unrelated = e.embed_query("render a bar chart of monthly sales").unwrap();
    assert!(cosine(&v, &related) > cosine(&v, &unrelated) + 0.1);
}

#[test]
fn batching_and_padding_do_not_change_vectors() {
    let e = cairn_engine::engine::load_embedder(&config()).unwrap();
    let texts = [
        "short",
        "a considerably longer text that pads the short one in the same batch of inputs",
        "fn main() {}",
    ];
    let batch = e.embed_documents(&texts).unwrap();
    assert_eq!(batch.vectors.len(), 3);
    assert!(batch.tokens > 10);
    for (t, v) in texts.iter().zip(&batch.vectors) {
        let single = &e.embed_documents(&[t]).unwrap().vectors[0];
        assert!(cosine(single, v) > 0.9999, "{t}");
    }
}

#[test]
fn queries_batched_across_searches_get_the_vectors_they_get_alone() {
    let e = cairn_engine::engine::load_embedder(&config()).unwrap();
    let texts = [
        "where are sessions revoked",
        "a much longer question about how the token bucket refills when a client sends too many requests",
        "hash",
    ];
    let batch = e.embed_queries(&texts).unwrap();
    assert_eq!(batch.len(), 3);
    for (t, v) in texts.iter().zip(&batch) {
        assert!(cosine(&e.embed_query(t).unwrap(), v) > 0.9999, "{t}");
    }
    // through the shared query embedder, from many threads at once
    let shared = std::sync::Arc::new(cairn_indexer::query_embed::QueryEmbedder::new(
        std::sync::Arc::new(e),
        2,
    ));
    let threads: Vec<_> = (0..12)
        .map(|i| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let t = format!("{} {i}", texts[i % 3]);
                (t.clone(), shared.embed_query(&t).unwrap())
            })
        })
        .collect();
    let alone = cairn_engine::engine::load_embedder(&config()).unwrap();
    for t in threads {
        let (text, v) = t.join().unwrap();
        assert!(cosine(&alone.embed_query(&text).unwrap(), &v) > 0.9999, "{text}");
    }
}

#[test]
fn unavailable_gpu_provider_falls_back_to_cpu() {
    let mut c = config();
    c.embed.provider = Provider::Cuda;
    let e = cairn_engine::engine::load_embedder(&c).unwrap();
    // This machine has no CUDA: the embedder logs it and runs on the CPU.
    if std::path::Path::new("/dev/nvidia0").exists() {
        return;
    }
    assert_eq!(e.provider(), Provider::Cpu);
    assert_eq!(e.embed_query("x").unwrap().len(), 384);
}

#[test]
fn missing_model_is_a_clear_error() {
    let mut c = config();
    c.embed.model_dir = "/nonexistent/model".into();
    let err = cairn_engine::engine::load_embedder(&c).err().unwrap().to_string();
    assert!(
        err.contains("/nonexistent/model") && err.contains("make setup"),
        "{err}"
    );
}
