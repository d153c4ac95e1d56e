//! The MCP server: tools `search_code`, `read_code` and `list_repos` over
//! the streamable HTTP transport at `/mcp`, on the official Rust SDK
//! (`rmcp`). Like the other transports, each tool parses its arguments,
//! calls one service function ([`SearchService`], [`CodeService`]) and
//! shapes the answer.
//!
//! Failures of a tool (unknown repo, bad path, out-of-range lines, malformed
//! arguments) are tool results with `isError: true` and a message the model
//! can act on; JSON-RPC errors are left to the SDK for protocol problems
//! (unknown method or tool, bad session).

use std::sync::Arc;

use rmcp::handler::server::common::Extension;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, JsonObject, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use cairn_services::auth::Access;
use cairn_services::code::{ReadRequest, fenced, label};
use cairn_services::error::ServiceError;
use cairn_services::facade::Caller;
use cairn_services::search::{DEFAULT_K, GroupBy, SearchHit, SearchRequest};
use cairn_services::state::AppState;

/// Arguments of `search_code`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchCodeArgs {
    /// What to look for: a question, a description of behaviour, or identifiers.
    pub query: String,
    /// Only search these repositories (names as `list_repos` reports them); all when absent.
    #[serde(default)]
    pub repos: Option<Vec<String>>,
    /// How many results to return, 1-100 (default 10).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    pub k: Option<i64>,
    /// "file": rank files instead of chunks (`k` counts files, each shown
    /// with its best chunks); useful for a pasted bug report or stack trace.
    #[serde(default)]
    pub group_by: Option<String>,
}

/// Arguments of `read_code`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadCodeArgs {
    /// Repository name, as `list_repos` or `search_code` report it.
    pub repo: String,
    /// File path relative to the repository root, `/`-separated (e.g. `src/lib.rs`).
    pub path: String,
    /// First line to return, 1-based (default 1).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub start_line: Option<i64>,
    /// Last line to return, inclusive (default: the last line of the file).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub end_line: Option<i64>,
}

/// Arguments of `list_repos`: none.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListReposArgs {}

/// The tools one MCP session talks to.
#[derive(Clone)]
pub struct CodeTools {
    state: AppState,
    tool_router: ToolRouter<Self>,
}

/// The caller's access, put into the HTTP request by cairn's authentication
/// layer in front of `/mcp`.
fn access_of(parts: &http::request::Parts) -> Result<Access, ServiceError> {
    parts
        .extensions
        .get::<Access>()
        .cloned()
        .ok_or_else(|| ServiceError::unauthenticated("no credentials were checked for this call"))
}

fn schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    rmcp::handler::server::common::schema_for_input::<T>().unwrap_or_else(|e| panic!("tool input schema: {e}"))
}

/// The caller's access and the tool's arguments, or why the call is refused
/// (no credentials checked, or malformed arguments).
fn begin<T: DeserializeOwned>(parts: &http::request::Parts, args: JsonObject) -> Result<(Access, T), ServiceError> {
    Ok((access_of(parts)?, parse(args)?))
}

/// Tool arguments, or the error that says why they are wrong.
fn parse<T: DeserializeOwned>(args: JsonObject) -> Result<T, ServiceError> {
    serde_json::from_value(serde_json::Value::Object(args))
        .map_err(|e| ServiceError::invalid(format!("invalid arguments: {e}")))
}

fn tool_error(e: ServiceError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(e.message)])
}

/// A result with a text block for the model and the same data as structured content.
fn success(text: String, structured: impl Serialize) -> Result<CallToolResult, ErrorData> {
    let value = serde_json::to_value(structured).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(value);
    Ok(result)
}

#[tool_router]
impl CodeTools {
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            tool_router: Self::tool_router(),
        }
    }

    /// Every tool this server offers (what `tools/list` answers).
    pub fn tools() -> Vec<rmcp::model::Tool> {
        Self::tool_router().list_all()
    }

    /// A call refused before it started (malformed arguments): recorded,
    /// then answered as a tool error.
    fn refuse(&self, surface: &'static str, parts: &http::request::Parts, e: ServiceError) -> CallToolResult {
        let access = access_of(parts).unwrap_or_else(|_| Access::open());
        tool_error(self.state.refuse(&Caller::new(access, surface), e))
    }

    #[tool(
        description = "Search the indexed code (hybrid semantic + keyword). Returns the best matching functions, types and blocks, each labelled repo/path#Lstart-Lend with its symbol and code. Accepts a whole bug report or stack trace as the query; with group_by \"file\" it ranks files (each with its best chunks) instead.",
        input_schema = schema::<SearchCodeArgs>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn search_code(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        Parameters(args): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        let (access, args): (Access, SearchCodeArgs) = match begin(&parts, args) {
            Ok(begun) => begun,
            Err(e) => return Ok(self.refuse("mcp.search_code", &parts, e)),
        };
        let group_by = match GroupBy::parse(args.group_by.as_deref().unwrap_or("")) {
            Ok(g) => g,
            Err(e) => return Ok(self.refuse("mcp.search_code", &parts, e)),
        };
        let request = SearchRequest {
            query: args.query,
            k: args.k.unwrap_or(DEFAULT_K),
            repos: args.repos.unwrap_or_default(),
            group_by,
            ..Default::default()
        };
        let result = self
            .state
            .search(&Caller::new(access, "mcp.search_code"), request)
            .await;
        let response = match result {
            Ok(r) => r,
            Err(e) => return Ok(tool_error(e)),
        };
        let mut text = String::new();
        if response.hits().next().is_none() {
            text.push_str("no results");
        }
        let hit_text = |h: &SearchHit| {
            let name = label(&h.repo, &h.path, h.start_line as usize, h.end_line as usize);
            let symbol = h.symbol.as_deref().map(|s| format!(" {s}")).unwrap_or_default();
            format!(
                "{name}{symbol} ({}, score {:.3})\n{}\n\n",
                h.kind,
                h.score,
                fenced(&h.language, &h.content)
            )
        };
        for (i, h) in response.results.iter().enumerate() {
            text.push_str(&format!("{}. {}", i + 1, hit_text(h)));
        }
        for (i, f) in response.files.iter().flatten().enumerate() {
            text.push_str(&format!("{}. {}/{} (score {:.3})\n\n", i + 1, f.repo, f.path, f.score));
            for h in &f.hits {
                text.push_str(&format!("   - {}", hit_text(h)));
            }
        }
        success(text.trim_end().to_string(), &response)
    }

    #[tool(
        description = "Read lines of a file exactly as it was indexed (the indexed commit for git repositories). Lines are 1-based and inclusive; without start_line/end_line the whole file is returned.",
        input_schema = schema::<ReadCodeArgs>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn read_code(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        Parameters(args): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        let (access, args): (Access, ReadCodeArgs) = match begin(&parts, args) {
            Ok(begun) => begun,
            Err(e) => return Ok(self.refuse("mcp.read_code", &parts, e)),
        };
        let request = ReadRequest {
            repo: args.repo,
            path: args.path,
            start_line: args.start_line,
            end_line: args.end_line,
        };
        let slice = match self
            .state
            .read_code(&Caller::new(access, "mcp.read_code"), request)
            .await
        {
            Ok(s) => s,
            Err(e) => return Ok(tool_error(e)),
        };
        let at = if slice.commit.is_empty() {
            String::new()
        } else {
            format!("@{}", &slice.commit[..slice.commit.len().min(12)])
        };
        let text = format!(
            "{}{at} ({} lines in file)\n{}",
            label(&slice.repo, &slice.path, slice.start_line, slice.end_line),
            slice.total_lines,
            fenced(&slice.language, &slice.content)
        );
        success(text, &slice)
    }

    #[tool(
        description = "List the indexed repositories with the commit each index reflects.",
        input_schema = schema::<ListReposArgs>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_repos(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        Parameters(args): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        let (access, ListReposArgs {}) = match begin(&parts, args) {
            Ok(begun) => begun,
            Err(e) => return Ok(self.refuse("mcp.list_repos", &parts, e)),
        };
        // only the repos this caller may read
        let repos = match self.state.code_repos(&Caller::new(access, "mcp.list_repos")) {
            Ok(r) => r,
            Err(e) => return Ok(tool_error(e)),
        };
        let mut text = String::new();
        if repos.is_empty() {
            text.push_str("no repositories are indexed");
        }
        for r in &repos {
            let commit = if r.commit.is_empty() { "(directory)" } else { &r.commit };
            text.push_str(&format!(
                "{} {commit} files={} chunks={} indexed_at={}\n",
                r.name, r.files, r.chunks, r.last_indexed_at
            ));
        }
        success(text.trim_end().to_string(), serde_json::json!({ "repos": repos }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CodeTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("cairn", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "cairn searches the organisation's indexed repositories. Use search_code to find code, \
                 read_code to read more lines around a hit, list_repos to see what is indexed.",
            )
    }
}

/// The `/mcp` endpoint, stateless: no server-side session, each POST is
/// answered on its own (as JSON where the tool emits nothing before its
/// result), so any replica behind a load balancer answers any request.
/// `shutdown` ends open response streams so the HTTP server can stop
/// gracefully.
///
/// `Host` and `Origin` are checked before routing by [`crate::gate`] against
/// `[server] allowed_hosts`, for `/mcp` as for every route (DNS-rebinding
/// protection, as the MCP specification requires), so the SDK's own host
/// list is off: one list, one place.
pub fn service(
    state: &AppState,
    max_body_bytes: usize,
    shutdown: CancellationToken,
) -> StreamableHttpService<CodeTools, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown)
        .with_max_request_body_bytes(max_body_bytes)
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .disable_allowed_hosts();
    let state = state.clone();
    StreamableHttpService::new(
        move || Ok(CodeTools::new(state.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_have_input_schemas() {
        let tools = CodeTools::tool_router().list_all();
        let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        for name in ["search_code", "read_code", "list_repos"] {
            assert!(names.contains(&name.to_string()), "{names:?}");
        }
        let search = tools.iter().find(|t| t.name == "search_code").unwrap();
        let schema = serde_json::Value::Object(search.input_schema.as_ref().clone());
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], serde_json::json!(["query"]), "{schema}");
        assert_eq!(schema["additionalProperties"], false, "{schema}");
        let read = tools.iter().find(|t| t.name == "read_code").unwrap();
        let schema = serde_json::Value::Object(read.input_schema.as_ref().clone());
        assert_eq!(schema["required"], serde_json::json!(["repo", "path"]), "{schema}");
    }

    #[test]
    fn malformed_arguments_are_tool_errors() {
        let args = serde_json::json!({"query": 5}).as_object().unwrap().clone();
        let e = parse::<SearchCodeArgs>(args).unwrap_err();
        assert!(e.message.starts_with("invalid arguments"), "{e}");
        assert_eq!(tool_error(e).is_error, Some(true));
        let args = serde_json::json!({"repo": "a", "path": "b", "extra": 1})
            .as_object()
            .unwrap()
            .clone();
        assert!(parse::<ReadCodeArgs>(args).is_err());
        assert!(parse::<ListReposArgs>(JsonObject::new()).is_ok());
    }
}
