//! The model and store pair that searches read, swapped as one when a new
//! generation of the index takes over.

use std::sync::Arc;

use crate::embed::Embed;
use crate::store::VectorStore;

/// The embedder and the store that searches use: always a matching pair,
/// replaced together when a new generation of the index takes over (see
/// [`crate::generation`]). Clones share it.
#[derive(Clone)]
pub struct Serving(Arc<std::sync::RwLock<ServingPair>>);

/// A model and the store its vectors are in.
pub type ServingPair = (Arc<dyn Embed>, Arc<dyn VectorStore>);

impl Serving {
    /// Searches embed their queries through `embedder` batched across
    /// concurrent requests and cached ([`crate::query_embed`]).
    pub fn new(embedder: Arc<dyn Embed>, store: Arc<dyn VectorStore>) -> Self {
        Self(Arc::new(std::sync::RwLock::new((shared_queries(embedder), store))))
    }

    /// Queries go straight to `embedder`, one model call each, uncached
    /// (what searches did before [`crate::query_embed`]; benches compare).
    pub fn unshared(embedder: Arc<dyn Embed>, store: Arc<dyn VectorStore>) -> Self {
        Self(Arc::new(std::sync::RwLock::new((embedder, store))))
    }

    /// The current pair; a request uses one pair from start to end.
    pub fn get(&self) -> ServingPair {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes later requests use `embedder` and `store`.
    pub fn replace(&self, embedder: Arc<dyn Embed>, store: Arc<dyn VectorStore>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = (shared_queries(embedder), store);
    }
}

/// `embedder` behind a [`crate::query_embed::QueryEmbedder`]: as many batches
/// at once as this machine has cores (the sessions a model keeps).
fn shared_queries(embedder: Arc<dyn Embed>) -> Arc<dyn Embed> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Arc::new(crate::query_embed::QueryEmbedder::new(embedder, cores))
}
