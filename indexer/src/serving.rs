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
    pub fn new(embedder: Arc<dyn Embed>, store: Arc<dyn VectorStore>) -> Self {
        Self(Arc::new(std::sync::RwLock::new((embedder, store))))
    }

    /// The current pair; a request uses one pair from start to end.
    pub fn get(&self) -> ServingPair {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes later requests use `embedder` and `store`.
    pub fn replace(&self, embedder: Arc<dyn Embed>, store: Arc<dyn VectorStore>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = (embedder, store);
    }
}
