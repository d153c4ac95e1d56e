//! gRPC transport: `cairn.v1.Retrieval` and `cairn.v1.Indexer`, plus the standard health and
//! reflection services.

use cairn_proto::v1::indexer_server::{Indexer, IndexerServer};
use cairn_proto::v1::retrieval_server::{Retrieval, RetrievalServer};
use cairn_proto::v1::{
    AnswerDone as PbAnswerDone, AnswerEvent as PbAnswerEvent, AnswerRequest as PbAnswerRequest, Citation, FileResult,
    SearchRequest as PbSearchRequest, SearchResponse as PbSearchResponse, SearchResult, answer_event,
};
use cairn_proto::v1::{
    GetRepoRequest, ListReposRequest, ListReposResponse, ReindexRequest, ReindexResponse, RepoStatus as PbRepoStatus,
    WatchRequest,
};
use futures::StreamExt;

/// How often a `Watch` stream checks its credentials again (and at every
/// change it sends): a revoked token's stream ends within this.
const WATCH_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);
use futures::stream::BoxStream;
use tonic::{Request, Response, Status};

use crate::gate::GrpcLimit;
use cairn_services::answer::{AnswerEvent, AnswerRequest};
use cairn_services::auth::Access;
use cairn_services::daemon::RepoStatus;
use cairn_services::facade::Caller;
use cairn_services::search::{DEFAULT_K, GroupBy, SearchHit, SearchRequest};
use cairn_services::state::AppState;

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
        let events = self.state.answer(&Caller::new(access, "grpc.answer"), req).await?;
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
        let group_by = GroupBy::parse(&r.group_by)?;
        let req = SearchRequest {
            query: r.query,
            k: if r.k == 0 { DEFAULT_K } else { i64::from(r.k) },
            repos: r.repos,
            languages: r.languages,
            path_prefix: (!r.path_prefix.is_empty()).then_some(r.path_prefix),
            group_by,
        };
        let resp = self.state.search(&Caller::new(access, "grpc.search"), req).await?;
        Ok(Response::new(PbSearchResponse {
            results: resp.results.into_iter().map(search_result).collect(),
            took_ms: resp.took_ms,
            files: resp
                .files
                .unwrap_or_default()
                .into_iter()
                .map(|f| FileResult {
                    repo: f.repo,
                    path: f.path,
                    score: f.score,
                    hits: f.hits.into_iter().map(search_result).collect(),
                })
                .collect(),
        }))
    }
}

/// One hit on the wire.
fn search_result(h: SearchHit) -> SearchResult {
    SearchResult {
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
    }
}

/// `cairn.v1.Indexer` over the daemon.
pub struct IndexerService {
    state: AppState,
}

impl IndexerService {
    /// The service behind authentication and the per-principal limits;
    /// see [`GrpcLimit`].
    pub fn new(state: AppState) -> GrpcLimit<IndexerServer<Self>> {
        GrpcLimit::new(IndexerServer::new(Self { state: state.clone() }), state)
    }
}

fn pb_status(s: RepoStatus) -> PbRepoStatus {
    let p = s.progress.unwrap_or_default();
    PbRepoStatus {
        name: s.name,
        state: s.state.as_str().to_string(),
        head_commit: s.head_commit.unwrap_or_default(),
        indexed_commit: s.indexed_commit.unwrap_or_default(),
        files: s.files as u64,
        chunks: s.chunks as u64,
        skipped: s.skipped.into_iter().map(|(k, v)| (k, v as u64)).collect(),
        last_indexed_at: s.last_indexed_at.unwrap_or_default(),
        last_error: s.last_error.unwrap_or_default(),
        configured: s.configured,
        files_total: p.files_total as u64,
        files_done: p.files_done as u64,
        chunks_done: p.chunks_done as u64,
    }
}

#[tonic::async_trait]
impl Indexer for IndexerService {
    type WatchStream = BoxStream<'static, Result<PbRepoStatus, Status>>;

    async fn list_repos(&self, request: Request<ListReposRequest>) -> Result<Response<ListReposResponse>, Status> {
        let access = access_of(&request)?;
        let (repos, index) = self.state.repos(&Caller::new(access, "grpc.repos.list"))?;
        let repos = repos.into_iter().map(pb_status).collect();
        let index = Some(pb_index(index));
        Ok(Response::new(ListReposResponse { repos, index }))
    }

    async fn get_repo(&self, request: Request<GetRepoRequest>) -> Result<Response<PbRepoStatus>, Status> {
        let access = access_of(&request)?;
        let name = request.into_inner().name;
        let status = self.state.repo(&Caller::new(access, "grpc.repos.get"), &name)?;
        Ok(Response::new(pb_status(status)))
    }

    async fn reindex(&self, request: Request<ReindexRequest>) -> Result<Response<ReindexResponse>, Status> {
        let access = access_of(&request)?;
        let r = request.into_inner();
        let status = self
            .state
            .reindex(&Caller::new(access, "grpc.repos.reindex"), &r.name, r.full)?;
        Ok(Response::new(ReindexResponse {
            repo: Some(pb_status(status)),
        }))
    }

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let access = access_of(&request)?;
        // the credentials, checked again while the stream lives
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let wanted = request.into_inner().repos;
        let caller = Caller::new(access, "grpc.repos.watch");
        let daemon = self.state.daemon.clone().ok_or_else(|| {
            self.state.refuse(
                &caller,
                cairn_services::error::ServiceError::unavailable("the indexer daemon is not running in this process"),
            )
        })?;
        // subscribe first, so no change between the snapshot and the stream is lost
        let events = daemon.subscribe();
        let current = self.state.watch(&caller, &wanted)?;
        let wanted_here = move |s: &RepoStatus| wanted.is_empty() || wanted.contains(&s.name);
        let first: Vec<PbRepoStatus> = current.into_iter().filter(&wanted_here).map(pb_status).collect();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<PbRepoStatus, Status>>(64);
        let state = self.state.clone();
        let mut access = caller.access;
        let mut events = events;
        tokio::spawn(async move {
            for status in first {
                if tx.send(Ok(status)).await.is_err() {
                    return;
                }
            }
            let mut recheck = tokio::time::interval(WATCH_RECHECK);
            recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let event = tokio::select! {
                    () = tx.closed() => return,
                    _ = recheck.tick() => None,
                    event = events.recv() => match event {
                        Ok(status) => Some(status),
                        // a slow reader skips the changes it missed; the next one carries the whole status
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                };
                // a revoked or expired credential ends the stream
                match state.authenticate_async(authorization.as_deref()).await {
                    Ok(now) => access = now,
                    Err(e) => {
                        tracing::info!(principal = %access.principal.name, "a watch ends: its credentials no longer authenticate");
                        let _ = tx
                            .send(Err(Status::unauthenticated(format!("{}: the watch ends", e.message))))
                            .await;
                        return;
                    }
                }
                if let Some(status) = event
                    && wanted_here(&status)
                    && state.may_read_repo(&access, &status.name)
                    && tx.send(Ok(pb_status(status))).await.is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

fn pb_generation(g: cairn_services::daemon::GenerationInfo) -> cairn_proto::v1::IndexGeneration {
    cairn_proto::v1::IndexGeneration {
        generation: g.generation,
        model: g.model,
        dim: u32::try_from(g.dim).unwrap_or(u32::MAX),
        chunking: g.chunking,
    }
}

fn pb_index(status: cairn_services::daemon::IndexStatus) -> cairn_proto::v1::IndexStatus {
    cairn_proto::v1::IndexStatus {
        serving: status.serving.map(pb_generation),
        building: status.building.map(|b| cairn_proto::v1::IndexBuild {
            generation: Some(pb_generation(b.generation)),
            rebuilt: b.rebuilt,
            pending: b.pending,
        }),
    }
}
