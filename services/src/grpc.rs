//! gRPC transport: `cairn.v1.Retrieval`, plus the standard health and
//! reflection services.

use cairn_proto::v1::retrieval_server::{Retrieval, RetrievalServer};
use cairn_proto::v1::{
    AnswerDone as PbAnswerDone, AnswerEvent as PbAnswerEvent, AnswerRequest as PbAnswerRequest, Citation,
    SearchRequest as PbSearchRequest, SearchResponse as PbSearchResponse, SearchResult, answer_event,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use tonic::{Request, Response, Status};

use crate::answer::{AnswerEvent, AnswerRequest};
use crate::auth::Access;
use crate::limits::GrpcLimit;
use crate::search::{DEFAULT_K, SearchRequest};
use crate::server::AppState;

/// `cairn.v1.Retrieval` over the shared services.
pub struct RetrievalService {
    state: AppState,
}

impl RetrievalService {
    /// The service behind authentication (`authorization` metadata) and
    /// the per-principal limits; see [`GrpcLimit`].
    pub fn new(state: AppState) -> GrpcLimit<RetrievalServer<Self>> {
        GrpcLimit::new(RetrievalServer::new(Self { state: state.clone() }), state)
    }
}

fn access_of<T>(req: &Request<T>) -> Result<Access, Status> {
    req.extensions()
        .get::<Access>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no credentials were checked for this call"))
}

#[tonic::async_trait]
impl Retrieval for RetrievalService {
    type AnswerStream = BoxStream<'static, Result<PbAnswerEvent, Status>>;

    async fn answer(&self, request: Request<PbAnswerRequest>) -> Result<Response<Self::AnswerStream>, Status> {
        let access = access_of(&request)?;
        let r = request.into_inner();
        let req = AnswerRequest {
            query: r.query,
            repos: r.repos,
            backend: (!r.backend.is_empty()).then_some(r.backend),
        };
        let events = self.state.answers.answer(&access, req, "grpc.answer").await?;
        let out = events.map(|item| {
            let event = match item? {
                AnswerEvent::Token(t) => answer_event::Event::Token(t),
                AnswerEvent::Done(d) => answer_event::Event::Done(PbAnswerDone {
                    backend: d.backend,
                    citations: d
                        .citations
                        .into_iter()
                        .map(|c| Citation {
                            n: c.n as u32,
                            label: c.label,
                            repo: c.repo,
                            path: c.path,
                            start_line: c.start_line,
                            end_line: c.end_line,
                            commit: c.commit,
                        })
                        .collect(),
                    cited: d.cited,
                    finish_reason: d.finish_reason,
                    context_tokens: d.context_tokens as u32,
                    retrieval_ms: d.timings.retrieval_ms,
                    assembly_ms: d.timings.assembly_ms,
                    first_token_ms: d.timings.first_token_ms,
                    total_ms: d.timings.total_ms,
                }),
            };
            Ok(PbAnswerEvent { event: Some(event) })
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn search(&self, request: Request<PbSearchRequest>) -> Result<Response<PbSearchResponse>, Status> {
        let access = access_of(&request)?;
        let r = request.into_inner();
        let req = SearchRequest {
            query: r.query,
            k: if r.k == 0 { DEFAULT_K } else { i64::from(r.k) },
            repos: r.repos,
            languages: r.languages,
            path_prefix: (!r.path_prefix.is_empty()).then_some(r.path_prefix),
        };
        let started = std::time::Instant::now();
        let result = self.state.search.search(&access, req.clone()).await;
        self.state.audit_search("grpc.search", &access, &req, &result, started);
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
