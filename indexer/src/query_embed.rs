//! Query embedding shared by concurrent searches: queries that arrive while
//! the model is busy wait and go through it together in one batch, and
//! recent queries' vectors are kept in a small LRU cache.
//!
//! Batching adds no wait: a query runs at once when fewer than
//! `max_running` batches are in flight, and otherwise waits for the next
//! batch, which takes every query queued by then (up to `max_batch`). A
//! lone query is embedded exactly as before; a batched one gets the same
//! vector up to float rounding (the padding is masked out).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use crate::embed::{Embed, Embedded};
use crate::error::{IndexError, Result};

/// Queries embedded in one model call at most.
pub const MAX_BATCH: usize = 16;
/// Query vectors kept (by exact text).
pub const CACHE_ENTRIES: usize = 1024;

/// An [`Embed`] whose queries are batched across callers and cached.
pub struct QueryEmbedder {
    inner: Arc<dyn Embed>,
    max_running: usize,
    max_batch: usize,
    state: Mutex<State>,
    done: Condvar,
    cache: Mutex<Lru>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    queue: VecDeque<(u64, String)>,
    results: HashMap<u64, std::result::Result<Vec<f32>, String>>,
    running: usize,
}

impl QueryEmbedder {
    /// Batches queries for `inner`, with at most `max_running` model calls
    /// at once (the model's session count suits).
    pub fn new(inner: Arc<dyn Embed>, max_running: usize) -> Self {
        Self::with_limits(inner, max_running, MAX_BATCH, CACHE_ENTRIES)
    }

    pub fn with_limits(inner: Arc<dyn Embed>, max_running: usize, max_batch: usize, cache_entries: usize) -> Self {
        Self {
            inner,
            max_running: max_running.max(1),
            max_batch: max_batch.max(1),
            state: Mutex::new(State::default()),
            done: Condvar::new(),
            cache: Mutex::new(Lru::new(cache_entries)),
        }
    }

    fn batched(&self, text: &str) -> Result<Vec<f32>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let id = state.next_id;
        state.next_id += 1;
        state.queue.push_back((id, text.to_string()));
        loop {
            if let Some(result) = state.results.remove(&id) {
                return result.map_err(IndexError::Embed);
            }
            if state.running < self.max_running && !state.queue.is_empty() {
                let take = state.queue.len().min(self.max_batch);
                let batch: Vec<(u64, String)> = state.queue.drain(..take).collect();
                state.running += 1;
                drop(state);
                let texts: Vec<&str> = batch.iter().map(|(_, t)| t.as_str()).collect();
                // a panic in the model must not leave the others waiting
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.inner.embed_queries(&texts)))
                    .unwrap_or_else(|_| Err(IndexError::Embed("the query embedder panicked".into())));
                state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                state.running -= 1;
                match out {
                    Ok(vectors) if vectors.len() == batch.len() => {
                        for ((id, _), v) in batch.into_iter().zip(vectors) {
                            state.results.insert(id, Ok(v));
                        }
                    }
                    Ok(vectors) => {
                        let e = format!("{} vectors for {} queries", vectors.len(), batch.len());
                        for (id, _) in batch {
                            state.results.insert(id, Err(e.clone()));
                        }
                    }
                    Err(e) => {
                        for (id, _) in batch {
                            state.results.insert(id, Err(e.to_string()));
                        }
                    }
                }
                self.done.notify_all();
                continue;
            }
            state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Embed for QueryEmbedder {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn fingerprint(&self) -> &str {
        self.inner.fingerprint()
    }

    fn embed_documents(&self, texts: &[&str]) -> Result<Embedded> {
        self.inner.embed_documents(texts)
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        if let Some(v) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(text) {
            return Ok(v);
        }
        let v = self.batched(text)?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(text.to_string(), v.clone());
        Ok(v)
    }

    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        texts.iter().map(|t| self.embed_query(t)).collect()
    }
}

/// A least-recently-used map of query text to vector.
struct Lru {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (Vec<f32>, u64)>,
}

impl Lru {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tick: 0,
            entries: HashMap::new(),
        }
    }

    fn get(&mut self, key: &str) -> Option<Vec<f32>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(v, used)| {
            *used = tick;
            v.clone()
        })
    }

    fn put(&mut self, key: String, value: Vec<f32>) {
        if self.capacity == 0 {
            return;
        }
        self.tick += 1;
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            // evicting scans the map: fine for a thousand entries, next to a model call
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (value, self.tick));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::HashEmbedder;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A slow model that counts its calls and the largest batch.
    struct Slow {
        inner: HashEmbedder,
        calls: AtomicUsize,
        largest: AtomicUsize,
    }

    impl Embed for Slow {
        fn dim(&self) -> usize {
            self.inner.dim()
        }
        fn fingerprint(&self) -> &str {
            self.inner.fingerprint()
        }
        fn embed_documents(&self, texts: &[&str]) -> Result<Embedded> {
            self.inner.embed_documents(texts)
        }
        fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
            self.inner.embed_query(text)
        }
        fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.largest.fetch_max(texts.len(), Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(30));
            if texts.contains(&"boom") {
                panic!("model failure");
            }
            texts.iter().map(|t| self.inner.embed_query(t)).collect()
        }
    }

    fn slow() -> Arc<Slow> {
        Arc::new(Slow {
            inner: HashEmbedder::new(32),
            calls: AtomicUsize::new(0),
            largest: AtomicUsize::new(0),
        })
    }

    #[test]
    fn concurrent_queries_share_model_calls_and_get_their_own_vectors() {
        let model = slow();
        let q = Arc::new(QueryEmbedder::with_limits(model.clone(), 1, 16, 0));
        let reference = HashEmbedder::new(32);
        let threads: Vec<_> = (0..24)
            .map(|i| {
                let q = q.clone();
                std::thread::spawn(move || (i, q.embed_query(&format!("query number {i}")).unwrap()))
            })
            .collect();
        for t in threads {
            let (i, v) = t.join().unwrap();
            assert_eq!(v, reference.embed_query(&format!("query number {i}")).unwrap());
        }
        let calls = model.calls.load(Ordering::SeqCst);
        assert!(calls < 24, "no query was batched ({calls} calls)");
        assert!(model.largest.load(Ordering::SeqCst) <= 16);
    }

    #[test]
    fn a_lone_query_runs_at_once_and_repeats_come_from_the_cache() {
        let model = slow();
        let q = QueryEmbedder::with_limits(model.clone(), 2, 16, 2);
        let a = q.embed_query("alpha").unwrap();
        assert_eq!(model.calls.load(Ordering::SeqCst), 1);
        assert_eq!(q.embed_query("alpha").unwrap(), a);
        assert_eq!(model.calls.load(Ordering::SeqCst), 1, "cached");
        q.embed_query("beta").unwrap();
        q.embed_query("gamma").unwrap();
        // alpha was the least recently used of three with room for two
        q.embed_query("alpha").unwrap();
        assert_eq!(model.calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_failing_batch_fails_its_queries_and_the_next_ones_run() {
        let model = slow();
        let q = Arc::new(QueryEmbedder::with_limits(model.clone(), 1, 16, 0));
        let boom = {
            let q = q.clone();
            std::thread::spawn(move || q.embed_query("boom"))
        };
        assert!(boom.join().unwrap().is_err());
        assert!(q.embed_query("after").is_ok());
    }
}
