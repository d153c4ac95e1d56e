//! Text embedding through ONNX Runtime.
//!
//! A model is a directory holding `model.onnx` and `tokenizer.json`, plus an
//! optional `cairn-model.toml` with its pooling, prefixes and maximum length
//! (see [`ModelSettings`]). [`OnnxEmbedder`] runs it batched; [`Embed`] is the
//! trait the pipeline and the services use, so tests can swap in the small
//! deterministic [`HashEmbedder`].

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::{IndexError, Result};

/// Produces dense vectors for documents (chunks) and queries.
pub trait Embed: Send + Sync {
    /// Vector dimension.
    fn dim(&self) -> usize;
    /// A stable identifier of the model and its settings; it is part of every
    /// point id, so vectors of different models are never mixed.
    fn fingerprint(&self) -> &str;
    /// Embeds documents; returns one L2-normalised vector per text, in order.
    fn embed_documents(&self, texts: &[&str]) -> Result<Embedded>;
    /// Embeds one query.
    fn embed_query(&self, text: &str) -> Result<Vec<f32>>;
    /// Embeds several queries at once (one model call where the model
    /// allows); each vector is the one [`Embed::embed_query`] gives.
    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        texts.iter().map(|t| self.embed_query(t)).collect()
    }
}

/// Vectors of one [`Embed::embed_documents`] call and how many real (not
/// padding) tokens went through the model.
#[derive(Debug, Default)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: usize,
}

/// How token vectors become one text vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over non-padding tokens (sentence-transformers default).
    #[default]
    Mean,
    /// The first (`[CLS]`) token.
    Cls,
}

/// Per-model settings, read from `cairn-model.toml` in the model directory
/// when present; every field has a default that fits all-MiniLM-L6-v2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSettings {
    pub pooling: Pooling,
    /// Prepended to every query (e.g. `"query: "` for e5 models).
    pub query_prefix: String,
    /// Prepended to every document.
    pub document_prefix: String,
    /// Tokens per text; longer texts are truncated.
    pub max_length: usize,
    /// Name of the output holding token vectors; the first output when empty.
    pub output: String,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            pooling: Pooling::Mean,
            query_prefix: String::new(),
            document_prefix: String::new(),
            max_length: 256,
            output: String::new(),
        }
    }
}

/// Which ONNX Runtime execution provider runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[default]
    Cpu,
    Cuda,
    Tensorrt,
}

/// Everything needed to load an [`OnnxEmbedder`].
#[derive(Debug, Clone)]
pub struct EmbedderConfig {
    /// `libonnxruntime.so` to load.
    pub runtime_library: PathBuf,
    /// Directory with `model.onnx` and `tokenizer.json`.
    pub model_dir: PathBuf,
    /// Overrides for the model's own settings file.
    pub settings: Option<ModelSettings>,
    /// Intra-op threads per session; 0 lets ONNX Runtime decide (one per core).
    pub threads: usize,
    /// Sessions run side by side on different batches when embedding
    /// documents; 0 = one per core on the CPU (each single-threaded, which
    /// beats one session's intra-op threads on small batches), one on a GPU.
    pub sessions: usize,
    pub provider: Provider,
    /// Padded tokens per model call when embedding documents (estimated
    /// from characters): short texts share a call, a long one runs alone.
    /// Small calls are fastest for int8 models on CPUs (measured: docs/performance.md);
    /// raise it on GPUs.
    pub batch_tokens: usize,
}

static RUNTIME: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads the ONNX Runtime shared library once per process and returns the
/// process-wide environment.
pub fn init_runtime(library: &Path) -> Result<&'static ort::environment::Environment> {
    let loaded = RUNTIME.get_or_init(|| {
        if !library.is_file() {
            return Err(format!(
                "{} does not exist (run `make setup`, or set [embed] runtime_library)",
                library.display()
            ));
        }
        ort::init_from(library)
            .map_err(|e| e.to_string())?
            .with_name("cairn")
            .build()
            .map_err(|e| e.to_string())
    });
    match loaded {
        Ok(env) => Ok(env),
        Err(message) => Err(IndexError::Runtime {
            path: library.to_path_buf(),
            message: message.clone(),
        }),
    }
}

/// all-MiniLM-style encoder run by ONNX Runtime.
pub struct OnnxEmbedder {
    /// One or more sessions of the same model; documents are spread over
    /// them, a query takes whichever is free.
    sessions: Vec<Mutex<ort::session::Session>>,
    tokenizer: Tokenizer,
    settings: ModelSettings,
    has_token_type_ids: bool,
    output_index: usize,
    dim: usize,
    batch_tokens: usize,
    fingerprint: String,
    provider: Provider,
}

impl OnnxEmbedder {
    /// Loads the runtime (once), the model and its tokenizer.
    pub fn load(config: &EmbedderConfig) -> Result<Self> {
        let env = init_runtime(&config.runtime_library)?;
        let dir = &config.model_dir;
        let model_err = |message: String| IndexError::Model {
            dir: dir.clone(),
            message,
        };
        let model_path = dir.join("model.onnx");
        let tokenizer_path = dir.join("tokenizer.json");
        for p in [&model_path, &tokenizer_path] {
            if !p.is_file() {
                return Err(model_err(format!("{} is missing (run `make setup`)", p.display())));
            }
        }
        let settings = match &config.settings {
            Some(s) => s.clone(),
            None => read_settings(dir)?,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (n_sessions, threads) = match (config.sessions, config.provider) {
            (0, Provider::Cpu) if config.threads == 0 => (cores.min(8), 1),
            (0, _) => (1, config.threads),
            (n, _) => (n, config.threads),
        };
        let (session, provider) =
            build_session(env, &model_path, threads, config.provider).map_err(|e| model_err(e.to_string()))?;
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| model_err(e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: settings.max_length,
                ..Default::default()
            }))
            .map_err(|e| model_err(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));

        let has_token_type_ids = session.inputs().iter().any(|i| i.name() == "token_type_ids");
        let output_index = if settings.output.is_empty() {
            0
        } else {
            session
                .outputs()
                .iter()
                .position(|o| o.name() == settings.output)
                .ok_or_else(|| model_err(format!("model has no output named {}", settings.output)))?
        };
        let model_bytes = std::fs::metadata(&model_path).map(|m| m.len()).unwrap_or(0);
        let mut sessions = vec![Mutex::new(session)];
        for _ in 1..n_sessions {
            let (s, _) = build_session(env, &model_path, threads, provider).map_err(|e| model_err(e.to_string()))?;
            sessions.push(Mutex::new(s));
        }
        let mut embedder = Self {
            sessions,
            tokenizer,
            settings,
            has_token_type_ids,
            output_index,
            dim: 0,
            batch_tokens: config.batch_tokens.max(1),
            fingerprint: String::new(),
            provider,
        };
        // One real call tells the dimension and proves the model runs.
        let probe = embedder.run(&["cairn"])?;
        embedder.dim = probe.vectors[0].len();
        let mut hasher = blake3::Hasher::new();
        hasher.update(&std::fs::read(&model_path).map_err(|e| IndexError::io("failed to read model.onnx", e))?);
        hasher.update(&std::fs::read(&tokenizer_path).map_err(|e| IndexError::io("failed to read tokenizer.json", e))?);
        hasher.update(format!("{:?}", embedder.settings).as_bytes());
        embedder.fingerprint = format!("{}-{}", &hasher.finalize().to_hex()[..16], model_bytes);
        tracing::info!(
            model = %dir.display(),
            dim = embedder.dim,
            provider = ?embedder.provider,
            fingerprint = %embedder.fingerprint,
            "embedding model loaded"
        );
        Ok(embedder)
    }

    /// The execution provider actually in use (after any fallback).
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The model settings in force.
    pub fn settings(&self) -> &ModelSettings {
        &self.settings
    }

    /// Counts the tokens `text` has for this model (capped at max_length).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer.encode(text, true).map(|e| e.len()).unwrap_or(0)
    }

    /// A free session, or the first one when all are busy.
    fn free_session(&self) -> parking_lot::MutexGuard<'_, ort::session::Session> {
        self.sessions
            .iter()
            .find_map(|s| s.try_lock())
            .unwrap_or_else(|| self.sessions[0].lock())
    }

    /// Tokenizes and runs one batch; texts already carry their prefix.
    fn run(&self, texts: &[&str]) -> Result<Embedded> {
        let err = |e: &dyn std::fmt::Display| IndexError::Embed(e.to_string());
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| err(&e))?;
        let batch = encodings.len();
        let len = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(batch * len);
        let mut mask = Vec::with_capacity(batch * len);
        let mut tokens = 0usize;
        for e in &encodings {
            ids.extend(e.get_ids().iter().map(|&v| v as i64));
            mask.extend(e.get_attention_mask().iter().map(|&v| v as i64));
            tokens += e.get_attention_mask().iter().filter(|&&m| m == 1).count();
            // encode_batch pads to the longest; guard against a tokenizer without padding
            for _ in e.len()..len {
                ids.push(0);
                mask.push(0);
            }
        }
        let shape = [batch as i64, len as i64];
        let ids_t = ort::value::Tensor::from_array((shape, ids)).map_err(|e| err(&e))?;
        let mask_t = ort::value::Tensor::from_array((shape, mask.clone())).map_err(|e| err(&e))?;
        let mut session = self.free_session();
        let outputs = if self.has_token_type_ids {
            let types_t = ort::value::Tensor::from_array((shape, vec![0i64; batch * len])).map_err(|e| err(&e))?;
            session.run(ort::inputs!["input_ids" => ids_t, "attention_mask" => mask_t, "token_type_ids" => types_t])
        } else {
            session.run(ort::inputs!["input_ids" => ids_t, "attention_mask" => mask_t])
        }
        .map_err(|e| err(&e))?;
        let (out_shape, data) = outputs[self.output_index]
            .try_extract_tensor::<f32>()
            .map_err(|e| err(&e))?;
        let vectors = pool(out_shape, data, &mask, batch, len, self.settings.pooling).map_err(|e| err(&e))?;
        Ok(Embedded { vectors, tokens })
    }
}

impl Embed for OnnxEmbedder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn embed_documents(&self, texts: &[&str]) -> Result<Embedded> {
        let mut out = Embedded {
            vectors: Vec::with_capacity(texts.len()),
            tokens: 0,
        };
        let prefixed: Vec<String>;
        let texts: Vec<&str> = if self.settings.document_prefix.is_empty() {
            texts.to_vec()
        } else {
            prefixed = texts
                .iter()
                .map(|t| format!("{}{t}", self.settings.document_prefix))
                .collect();
            prefixed.iter().map(String::as_str).collect()
        };
        let batch_idx = plan_batches(&texts, self.batch_tokens, self.settings.max_length);
        let owned: Vec<Vec<&str>> = batch_idx
            .iter()
            .map(|b| b.iter().map(|&i| texts[i]).collect())
            .collect();
        let batches: Vec<&[&str]> = owned.iter().map(Vec::as_slice).collect();
        let embedded = self.run_batches(&batches)?;
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for (idx, e) in batch_idx.iter().zip(embedded) {
            out.tokens += e.tokens;
            for (&i, v) in idx.iter().zip(e.vectors) {
                vectors[i] = v;
            }
        }
        out.vectors = vectors;
        Ok(out)
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        let q = format!("{}{text}", self.settings.query_prefix);
        let mut e = self.run(&[q.as_str()])?;
        Ok(e.vectors.pop().unwrap_or_default())
    }

    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if let [one] = texts {
            return Ok(vec![self.embed_query(one)?]);
        }
        let prefixed: Vec<String> = texts
            .iter()
            .map(|t| format!("{}{t}", self.settings.query_prefix))
            .collect();
        let refs: Vec<&str> = prefixed.iter().map(String::as_str).collect();
        Ok(self.run(&refs)?.vectors)
    }
}

impl OnnxEmbedder {
    /// Runs batches over the sessions; results in batch order.
    fn run_batches(&self, batches: &[&[&str]]) -> Result<Vec<Embedded>> {
        let workers = self.sessions.len().min(batches.len());
        if workers <= 1 {
            return batches.iter().map(|b| self.run(b)).collect();
        }
        // Several sessions: workers take batches in turn; results keep their order.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut results: Vec<Option<Result<Embedded>>> = Vec::new();
        results.resize_with(batches.len(), || None);
        let results = Mutex::new(results);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(batch) = batches.get(i) else { break };
                        let r = self.run(batch);
                        results.lock()[i] = Some(r);
                    }
                });
            }
        });
        results
            .into_inner()
            .into_iter()
            .map(|r| r.ok_or_else(|| IndexError::Embed("an embedding worker stopped early".into()))?)
            .collect()
    }
}

/// Token-budget batching: orders texts by length and groups them so that
/// each group's padded size (count × longest, in tokens estimated as
/// characters / 4, capped at `max_length`) stays within `budget_tokens`.
/// Returns the indices of each group; every text is in exactly one.
pub fn plan_batches(texts: &[&str], budget_tokens: usize, max_length: usize) -> Vec<Vec<usize>> {
    let est = |t: &str| t.len().div_ceil(4).clamp(1, max_length.max(1));
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| est(texts[i]));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // ascending order: the newest text is the longest of its group
        if !current.is_empty() && (current.len() + 1) * est(texts[i]) > budget_tokens {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

fn read_settings(dir: &Path) -> Result<ModelSettings> {
    let path = dir.join("cairn-model.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => toml_settings(&text).map_err(|message| IndexError::Model {
            dir: dir.to_path_buf(),
            message,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ModelSettings::default()),
        Err(e) => Err(IndexError::io(format!("failed to read {}", path.display()), e)),
    }
}

/// Parses a `cairn-model.toml`; unknown keys are an error.
fn toml_settings(text: &str) -> std::result::Result<ModelSettings, String> {
    toml::from_str(text).map_err(|e| format!("cairn-model.toml: {e}"))
}

fn build_session(
    env: &ort::environment::Environment,
    model: &Path,
    threads: usize,
    provider: Provider,
) -> ort::Result<(ort::session::Session, Provider)> {
    use ort::session::builder::GraphOptimizationLevel;
    let builder = || -> ort::Result<ort::session::builder::SessionBuilder> {
        let mut b = ort::session::Session::builder(env)?.with_optimization_level(GraphOptimizationLevel::All)?;
        if threads > 0 {
            b = b.with_intra_threads(threads)?;
        }
        Ok(b)
    };
    if provider != Provider::Cpu {
        let ep = match provider {
            Provider::Cuda => ort::ep::CUDA::default().build().error_on_failure(),
            _ => ort::ep::TensorRT::default().build().error_on_failure(),
        };
        match builder()?.with_execution_providers([ep]) {
            Ok(mut b) => match b.commit_from_file(model) {
                Ok(session) => return Ok((session, provider)),
                Err(e) => {
                    tracing::warn!(provider = ?provider, error = %e, "execution provider failed to start the model; falling back to cpu")
                }
            },
            Err(e) => {
                tracing::warn!(provider = ?provider, error = %e, "execution provider unavailable; falling back to cpu")
            }
        }
    }
    let session = builder()?.commit_from_file(model)?;
    Ok((session, Provider::Cpu))
}

/// Pools `[batch, len, dim]` token vectors (or passes `[batch, dim]` through)
/// and L2-normalises each row.
fn pool(
    shape: &[i64],
    data: &[f32],
    mask: &[i64],
    batch: usize,
    len: usize,
    pooling: Pooling,
) -> std::result::Result<Vec<Vec<f32>>, String> {
    let mut out = Vec::with_capacity(batch);
    match shape {
        [b, l, d] if *b as usize == batch && *l as usize == len => {
            let d = *d as usize;
            for i in 0..batch {
                let mut v = vec![0f32; d];
                match pooling {
                    Pooling::Cls => v.copy_from_slice(&data[i * len * d..i * len * d + d]),
                    Pooling::Mean => {
                        let mut n = 0f32;
                        for t in 0..len {
                            if mask[i * len + t] == 0 {
                                continue;
                            }
                            n += 1.0;
                            let row = &data[(i * len + t) * d..(i * len + t + 1) * d];
                            for (acc, x) in v.iter_mut().zip(row) {
                                *acc += x;
                            }
                        }
                        let n = n.max(1.0);
                        v.iter_mut().for_each(|x| *x /= n);
                    }
                }
                out.push(normalize(v));
            }
        }
        [b, d] if *b as usize == batch => {
            let d = *d as usize;
            for i in 0..batch {
                out.push(normalize(data[i * d..(i + 1) * d].to_vec()));
            }
        }
        other => return Err(format!("unexpected model output shape {other:?}")),
    }
    Ok(out)
}

fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// A small deterministic embedder for tests: hashed bag of code tokens,
/// L2-normalised. Similar texts get similar vectors; no model files needed.
pub struct HashEmbedder {
    dim: usize,
    fingerprint: String,
}

impl HashEmbedder {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            fingerprint: format!("hash-{dim}"),
        }
    }

    fn vector(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dim];
        for term in crate::sparse::terms(text) {
            let h = blake3::hash(term.as_bytes());
            let b = h.as_bytes();
            let idx = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize % self.dim;
            let sign = if b[4] & 1 == 0 { 1.0 } else { -1.0 };
            v[idx] += sign;
        }
        normalize(v)
    }
}

impl Embed for HashEmbedder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn embed_documents(&self, texts: &[&str]) -> Result<Embedded> {
        Ok(Embedded {
            vectors: texts.iter().map(|t| self.vector(t)).collect(),
            tokens: texts.iter().map(|t| t.split_whitespace().count()).sum(),
        })
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        Ok(self.vector(text))
    }
}

/// Stands in for a model that cannot be loaded: every call fails with
/// [`IndexError::Unavailable`] and `reason`. Serves the queries of a store
/// whose model is gone while its successor is built, so vectors of two
/// models are never compared.
pub struct UnavailableEmbedder {
    pub dim: usize,
    pub fingerprint: String,
    pub reason: String,
}

impl Embed for UnavailableEmbedder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn embed_documents(&self, _texts: &[&str]) -> Result<Embedded> {
        Err(IndexError::Unavailable(self.reason.clone()))
    }

    fn embed_query(&self, _text: &str) -> Result<Vec<f32>> {
        Err(IndexError::Unavailable(self.reason.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pooling_ignores_padding() {
        // batch 1, len 2, dim 2; second token is padding
        let v = pool(&[1, 2, 2], &[3.0, 4.0, 100.0, 100.0], &[1, 0], 1, 2, Pooling::Mean).unwrap();
        assert!((v[0][0] - 0.6).abs() < 1e-6 && (v[0][1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn cls_pooling_takes_first_token() {
        let v = pool(&[1, 2, 2], &[0.0, 2.0, 5.0, 5.0], &[1, 1], 1, 2, Pooling::Cls).unwrap();
        assert_eq!(v[0], vec![0.0, 1.0]);
    }

    #[test]
    fn batches_respect_the_token_budget_and_cover_every_text() {
        let long = "x".repeat(2000);
        let texts = ["a", long.as_str(), "bb", "ccc", "dddd"];
        let plan = plan_batches(&texts, 256, 256);
        let mut seen: Vec<usize> = plan.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        // the long text (capped at 256 tokens) fills a call alone
        assert!(plan.iter().any(|b| b == &vec![1]));
        assert_eq!(plan.len(), 2, "{plan:?}");
        assert!(plan_batches(&[], 256, 256).is_empty());
    }

    #[test]
    fn bad_output_shape_is_an_error() {
        assert!(pool(&[3], &[0.0; 3], &[1], 1, 1, Pooling::Mean).is_err());
    }

    #[test]
    fn model_settings_file_parses_and_rejects_unknown_keys() {
        let s = toml_settings("pooling = \"cls\"\nquery_prefix = \"query: \" # e5\nmax_length = 512\n").unwrap();
        assert_eq!(s.pooling, Pooling::Cls);
        assert_eq!(s.query_prefix, "query: ");
        assert_eq!(s.max_length, 512);
        assert!(toml_settings("poolin = \"cls\"").is_err());
        assert!(toml_settings("max_length").is_err());
    }

    #[test]
    fn hash_embedder_is_deterministic_and_normalised() {
        let e = HashEmbedder::new(64);
        let a = e.embed_query("parse the config file").unwrap();
        assert_eq!(a, e.embed_query("parse the config file").unwrap());
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
    }

    #[test]
    fn missing_runtime_library_is_a_clear_error() {
        let err = init_runtime(Path::new("/nonexistent/libonnxruntime.so")).err();
        // The runtime may already be loaded by another test in this process.
        if let Some(e) = err {
            assert!(e.to_string().contains("make setup"), "{e}");
        }
    }
}
