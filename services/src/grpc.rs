//! gRPC transport: `cairn.v1.Retrieval`, plus the standard health and
//! reflection services.

use cairn_proto::v1::retrieval_server::{Retrieval, RetrievalServer};
use cairn_proto::v1::{SearchRequest as PbSearchRequest, SearchResponse as PbSearchResponse, SearchResult};
use tonic::{Request, Response, Status};

use crate::search::{DEFAULT_K, SearchRequest};
use crate::server::AppState;

/// `cairn.v1.Retrieval` over the shared services.
pub struct RetrievalService {
    state: AppState,
}

impl RetrievalService {
    pub fn new(state: AppState) -> RetrievalServer<Self> {
        RetrievalServer::new(Self { state })
    }
}

#[tonic::async_trait]
impl Retrieval for RetrievalService {
    async fn search(&self, request: Request<PbSearchRequest>) -> Result<Response<PbSearchResponse>, Status> {
        let r = request.into_inner();
        let req = SearchRequest {
            query: r.query,
            k: if r.k == 0 { DEFAULT_K } else { i64::from(r.k) },
            repos: r.repos,
            languages: r.languages,
            path_prefix: (!r.path_prefix.is_empty()).then_some(r.path_prefix),
        };
        let started = std::time::Instant::now();
        let result = self.state.search.search(req.clone()).await;
        self.state.audit_search("grpc.search", &req, &result, started);
        let resp = result?;
        Ok(Response::new(PbSearchResponse {
            results: resp
                .results
                .into_iter()
                .map(|h| SearchResult {
                    repo: h.repo,
                    path: h.path,
                    start_line: h.start_line,
                    end_line: h.end_line,
                    language: h.language,
                    kind: h.kind,
                    symbol: h.symbol.unwrap_or_default(),
                    score: h.score,
                    content: h.content,
                    commit: h.commit,
                })
                .collect(),
            took_ms: resp.took_ms,
        }))
    }
}
