//! The performance report (`cargo bench -p cairn-benches --bench pipeline`):
//!
//! 1. indexing throughput of the full pipeline on the eval corpus
//!    (files/s, chunks/s, embedded tokens/s);
//! 2. a bare ONNX Runtime session on the same chunk texts, model and batch
//!    shape, in the same run — the pipeline's share of it;
//! 3. `cairn index` against `py_reference_index.py` on the same corpus, back
//!    to back (when python3 has onnxruntime, tokenizers and numpy);
//! 4. search latency over HTTP at concurrency 1 and 16 (p50/p99).
//!
//! It prints ratios and timings; nothing here asserts a time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cairn_benches::{Served, eval_dir, percentile, root};
use cairn_engine::engine::Engine;
use cairn_indexer::chunk::{Chunker, ChunkerConfig};
use cairn_indexer::pipeline::NoProgress;
use cairn_services::config::Config;
use cairn_services::state::AppState;

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("pipeline: bench");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let corpus = eval_dir().join("corpus");
    anyhow::ensure!(corpus.is_dir(), "no eval corpus at {}", corpus.display());
    let tmp = tempfile::tempdir()?;
    let mut config = Config::load(None)?;
    config.data_dir = tmp.path().join("data");
    let engine = Engine::open(&config, "cairn bench")?;

    // 1. Full pipeline.
    let started = Instant::now();
    let report = engine.index(&corpus, "corpus", &config, &NoProgress).await?;
    let pipeline_s = started.elapsed().as_secs_f64();
    println!(
        "## Indexing ({} files, {} chunks, {} tokens)",
        report.files, report.chunks, report.tokens
    );
    println!(
        "pipeline: {pipeline_s:.2}s  {:.1} files/s  {:.1} chunks/s  {:.0} tokens/s",
        report.files as f64 / pipeline_s,
        report.chunks as f64 / pipeline_s,
        report.tokens as f64 / pipeline_s
    );

    // 2. Bare ORT on the same texts, same order of work (sorted groups of 256, batches of 32).
    let bare_s = bare_ort(&config, &corpus, config.index.group_size, config.embed.batch_tokens)?;
    println!(
        "bare ORT session, same texts and batch shape: {bare_s:.2}s  {:.1} chunks/s",
        report.chunks as f64 / bare_s
    );
    println!(
        "pipeline keeps {:.1}% of bare ORT throughput",
        100.0 * bare_s / pipeline_s
    );

    // 3. Python reference vs `cairn index`, back to back.
    python_reference(&corpus)?;

    // 4. Search latency over HTTP.
    let server = Served::start(AppState::for_engine(&engine, &config)).await?;
    let addr = server.addr;
    let queries: Vec<String> = cairn_services::eval::load_queries(&eval_dir())?
        .into_iter()
        .map(|q| q.query)
        .collect();
    println!("## Search latency over HTTP (k=10, {} distinct queries)", queries.len());
    for concurrency in [1usize, 16] {
        let (p50, p99, qps) = latency(addr, &queries, concurrency, 320).await?;
        println!("concurrency {concurrency:>2}: p50 {p50:.1} ms  p99 {p99:.1} ms  {qps:.1} req/s");
    }
    server.stop().await?;
    Ok(())
}

/// One plain ONNX Runtime session (default threading) over the same texts,
/// grouped and batched exactly as the pipeline does; tokenization included,
/// pooling and storage not.
fn bare_ort(config: &Config, corpus: &Path, group: usize, batch_tokens: usize) -> anyhow::Result<f64> {
    use ort::session::Session;
    use tokenizers::{PaddingParams, Tokenizer, TruncationParams};
    let env = cairn_indexer::embed::init_runtime(&config.runtime_library())?;
    let model_dir = config.model_dir();
    let build = || -> ort::Result<Session> {
        Session::builder(env)?
            .with_optimization_level(ort::session::builder::GraphOptimizationLevel::Level3)?
            .commit_from_file(model_dir.join("model.onnx"))
    };
    let mut session = build()?;
    let mut tok = Tokenizer::from_file(model_dir.join("tokenizer.json")).map_err(|e| anyhow::anyhow!("{e}"))?;
    tok.with_truncation(Some(TruncationParams {
        max_length: 256,
        ..Default::default()
    }))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    tok.with_padding(Some(PaddingParams::default()));
    // The same texts the pipeline embeds.
    let chunker = Chunker::new(ChunkerConfig::default());
    let snap = cairn_indexer::source::read(corpus, &Default::default())?;
    let texts: Vec<String> = snap
        .files
        .iter()
        .flat_map(|f| chunker.chunk(&f.path, &f.text))
        .map(|c| c.embed_text)
        .collect();
    let started = Instant::now();
    for g in texts.chunks(group) {
        let g: Vec<&str> = g.iter().map(String::as_str).collect();
        for idx in cairn_indexer::embed::plan_batches(&g, batch_tokens, 256) {
            let b: Vec<&str> = idx.iter().map(|&i| g[i]).collect();
            let enc = tok.encode_batch(b, true).map_err(|e| anyhow::anyhow!("{e}"))?;
            let (n, len) = (enc.len(), enc[0].len());
            let ids: Vec<i64> = enc.iter().flat_map(|e| e.get_ids().iter().map(|&x| x as i64)).collect();
            let mask: Vec<i64> = enc
                .iter()
                .flat_map(|e| e.get_attention_mask().iter().map(|&x| x as i64))
                .collect();
            let shape = [n as i64, len as i64];
            let out = session.run(ort::inputs![
                "input_ids" => ort::value::Tensor::from_array((shape, ids))?,
                "attention_mask" => ort::value::Tensor::from_array((shape, mask))?,
                "token_type_ids" => ort::value::Tensor::from_array((shape, vec![0i64; n * len]))?
            ])?;
            std::hint::black_box(out[0].try_extract_tensor::<f32>()?.1.len());
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

fn python_reference(corpus: &Path) -> anyhow::Result<()> {
    let venv_py = root().join(".local/bench-venv/bin/python");
    let py = if venv_py.exists() {
        venv_py
    } else {
        PathBuf::from("python3")
    };
    let ok = std::process::Command::new(&py)
        .args(["-c", "import onnxruntime, tokenizers, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    println!("## cairn index vs py_reference_index.py (same corpus, back to back)");
    if !ok {
        println!(
            "skipped: {} lacks onnxruntime/tokenizers/numpy (run scripts/bench-venv.sh)",
            py.display()
        );
        return Ok(());
    }
    let cairn = root().join("target/release/cairn");
    anyhow::ensure!(
        cairn.exists(),
        "build the binary first: cargo build --release --bin cairn"
    );
    let model = root().join(".local/models/all-minilm-l6-v2-int8");
    let data = tempfile::tempdir()?;
    let t = Instant::now();
    let out = std::process::Command::new(&cairn)
        .args([
            "--data-dir",
            data.path().to_str().unwrap_or("."),
            "index",
            corpus.to_str().unwrap_or("."),
            "--repo",
            "corpus",
        ])
        .env("RUST_LOG", "warn")
        .output()?;
    let cairn_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "cairn index failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Instant::now();
    let out = std::process::Command::new(&py)
        .arg(eval_dir().join("../py_reference_index.py"))
        .arg(corpus)
        .arg(model.join("model.onnx"))
        .arg(model.join("tokenizer.json"))
        .output()?;
    let py_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "cairn index (whole process): {cairn_s:.2}s — {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    println!(
        "py_reference_index.py: {py_s:.2}s; cairn takes {:.0}% of its time",
        100.0 * cairn_s / py_s
    );
    Ok(())
}

async fn latency(
    addr: std::net::SocketAddr,
    queries: &[String],
    concurrency: usize,
    total: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/search");
    let queries = Arc::new(queries.to_vec());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, queries, next) = (client.clone(), url.clone(), queries.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(samples);
                }
                let body = serde_json::json!({"query": queries[i % queries.len()], "k": 10});
                let t = Instant::now();
                let resp = client.post(&url).json(&body).send().await?;
                anyhow::ensure!(resp.status().is_success(), "search failed: {}", resp.status());
                resp.bytes().await?;
                samples.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut all = Vec::new();
    for t in futures::future::join_all(tasks).await {
        all.extend(t??);
    }
    let qps = all.len() as f64 / started.elapsed().as_secs_f64();
    Ok((percentile(&mut all, 50.0), percentile(&mut all, 99.0), qps))
}
