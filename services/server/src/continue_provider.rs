//! Continue's "http" context provider: `POST /v1/continue/context` with
//! `{query, fullInput, options, workspacePath}` answers
//! `[{name, description, content}]`, one item per search hit.
//!
//! Continue sends `query` (what follows the provider's mention, often empty)
//! and `fullInput` (the whole message); the search runs on `query`, or on
//! `fullInput` cut to [`MAX_QUERY_BYTES`] when `query` is blank. `options`
//! come from the provider's entry in Continue's config and take the search
//! filters (`repos`, `k`, `languages`, `path_prefix`); unknown options are
//! an error, like unknown keys anywhere in cairn.

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use crate::json_body::JsonBody;
use cairn_services::auth::Access;
use cairn_services::code::{fenced, label};
use cairn_services::error::ServiceError;
use cairn_services::facade::Caller;
use cairn_services::search::{DEFAULT_K, MAX_QUERY_BYTES, SearchRequest, SearchResponse};
use cairn_services::state::AppState;

/// `POST /v1/continue/context`.
pub async fn handler(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    JsonBody(req): JsonBody<ContinueRequest>,
) -> Result<Json<Vec<ContextItem>>, ServiceError> {
    let caller = Caller::new(access, "http.continue");
    let request = search_request(req).map_err(|e| state.refuse(&caller, e))?;
    Ok(Json(context_items(state.search(&caller, request).await?)))
}

/// The body Continue posts.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContinueRequest {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub full_input: Option<String>,
    #[serde(default)]
    pub options: Option<ContinueOptions>,
    /// Sent by Continue; not used for retrieval.
    #[serde(default)]
    pub workspace_path: Option<String>,
}

/// `options` from Continue's provider config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContinueOptions {
    #[serde(default)]
    pub repos: Vec<String>,
    #[serde(default)]
    pub k: Option<i64>,
    #[serde(default)]
    pub languages: Vec<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
}

/// One context item as Continue shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContextItem {
    pub name: String,
    pub description: String,
    pub content: String,
}

/// The search to run for a Continue request.
pub fn search_request(req: ContinueRequest) -> Result<SearchRequest, ServiceError> {
    let query = match req.query.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) => q.to_string(),
        None => {
            let full = req.full_input.as_deref().unwrap_or("").trim();
            truncate(full, MAX_QUERY_BYTES).to_string()
        }
    };
    if query.is_empty() {
        return Err(ServiceError::invalid("query and fullInput are both empty"));
    }
    let options = req.options.unwrap_or_default();
    Ok(SearchRequest {
        query,
        k: options.k.unwrap_or(DEFAULT_K),
        repos: options.repos,
        languages: options.languages,
        path_prefix: options.path_prefix,
        group_by: None,
    })
}

/// Search hits as Continue context items.
pub fn context_items(response: SearchResponse) -> Vec<ContextItem> {
    response
        .results
        .into_iter()
        .map(|h| {
            let name = label(&h.repo, &h.path, h.start_line as usize, h.end_line as usize);
            let description = match &h.symbol {
                Some(s) => format!("{s} ({} {})", h.language, h.kind),
                None => format!("{} {}", h.language, h.kind),
            };
            let content = fenced(&format!("{} {name}", h.language), &h.content);
            ContextItem {
                name,
                description,
                content,
            }
        })
        .collect()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_query_falls_back_to_full_input() {
        let r = search_request(ContinueRequest {
            query: Some("  ".into()),
            full_input: Some("@cairn how is a token verified".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.query, "@cairn how is a token verified");
        assert_eq!(r.k, DEFAULT_K);
        let long = "é".repeat(MAX_QUERY_BYTES);
        let r = search_request(ContinueRequest {
            full_input: Some(long),
            ..Default::default()
        })
        .unwrap();
        assert!(r.query.len() <= MAX_QUERY_BYTES);
        assert!(search_request(ContinueRequest::default()).is_err());
    }

    #[test]
    fn options_are_strict() {
        let body = r#"{"query": "x", "fullInput": "x", "options": {"repos": ["a"], "k": 3}, "workspacePath": "/w"}"#;
        let r: ContinueRequest = serde_json::from_str(body).unwrap();
        let s = search_request(r).unwrap();
        assert_eq!((s.repos, s.k), (vec!["a".to_string()], 3));
        let body = r#"{"query": "x", "options": {"topk": 3}}"#;
        assert!(serde_json::from_str::<ContinueRequest>(body).is_err());
        let body = r#"{"query": "x", "options": null, "workspacePath": null}"#;
        assert!(serde_json::from_str::<ContinueRequest>(body).is_ok());
    }
}
