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
    type AnswerStream = BoxStream<'static, Result<PbAnswerEvent, Status>>;

    async fn answer(&self, request: Request<PbAnswerRequest>) -> Result<Response<Self::AnswerStream>, Status> {
        let r = request.into_inner();
        let req = AnswerRequest {
            query: r.query,
            repos: r.repos,
            backend: (!r.backend.is_empty()).then_some(r.backend),
        };
        let events = self.state.answers.answer(req).await?;
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
        let r = request.into_inner();
        let req = SearchRequest {
            query: r.query,
            k: if r.k == 0 { DEFAULT_K } else { i64::from(r.k) },
            repos: r.repos,
            languages: r.languages,
            path_prefix: (!r.path_prefix.is_empty()).then_some(r.path_prefix),
        };
        let resp = self.state.search.search(req).await?;
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
