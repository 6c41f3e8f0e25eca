//! Search and word completion, answered by the document actor from its buffer and word index.

use axum::extract::State;
use axum::Json;
use editor_core::search::Query;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{in_range, DocId};
use super::{doc_problem, ApiState};
use crate::document::ApiRequest;
use crate::problem::{ApiQuery, InvalidParameters, NoSuchDocument, Problem, Unavailable};

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchMatch {
    /// Char offset of the match.
    #[schema(minimum = 0)]
    offset: usize,
    /// Length in chars.
    #[schema(minimum = 0)]
    length: usize,
    /// Zero-based line of the match's start.
    #[schema(minimum = 0)]
    line: usize,
    /// Zero-based column (chars) of the match's start.
    #[schema(minimum = 0)]
    column: usize,
    /// The match with up to `context` chars of its line on each side.
    context: String,
    /// Where the match starts in `context` (chars).
    #[schema(minimum = 0)]
    context_offset: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    matches: Vec<SearchMatch>,
    /// Every match in the document (`matches` holds at most `limit`).
    #[schema(minimum = 0)]
    total: usize,
    /// The version searched.
    #[schema(minimum = 0)]
    version: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Completion {
    word: String,
    /// Occurrences in the document.
    #[schema(minimum = 0)]
    count: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Completions {
    /// Most frequent first, then alphabetical.
    completions: Vec<Completion>,
}

/// Case handling of a search.
#[derive(Debug, Default, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Case {
    #[default]
    Sensitive,
    /// Unicode simple case folding.
    Insensitive,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// The text to find (an empty one finds nothing).
    q: String,
    /// `sensitive` (default) or `insensitive`.
    #[param(inline)]
    case: Option<Case>,
    /// Whole words only (default false).
    word: Option<bool>,
    /// Matches to return (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Chars of context on each side of a match (0–200, default 40).
    #[param(minimum = 0, maximum = 200)]
    context: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CompleteParams {
    /// The start of the word (may be empty: the most frequent words).
    #[serde(default)]
    prefix: String,
    /// Completions to return (1–100, default 10).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// Find text (Knuth–Morris–Pratt over the document's buffer).
#[utoipa::path(
    get, path = "/api/documents/{id}/search", tag = "documents",
    params(DocId, SearchParams),
    responses(
        (status = 200, description = "Matches, left to right, not overlapping", body = SearchResults),
        InvalidParameters,
        NoSuchDocument,
        Unavailable,
    )
)]
pub(super) async fn search(
    State(s): State<ApiState>,
    id: DocId,
    ApiQuery(p): ApiQuery<SearchParams>,
) -> Result<Json<SearchResults>, Problem> {
    let id = id.valid()?;
    let limit = in_range("limit", p.limit, 1, 1000, 100)? as usize;
    let context = in_range("context", p.context, 0, 200, 40)? as usize;
    let searcher = Query::new(p.q)
        .case_insensitive(matches!(p.case.unwrap_or_default(), Case::Insensitive))
        .whole_word(p.word.unwrap_or(false))
        .compile();
    let searcher = Box::new(searcher);
    let found = s
        .documents
        .request(id, |reply| ApiRequest::Search {
            searcher: searcher.clone(),
            limit,
            context,
            reply,
        })
        .await
        .map_err(|e| doc_problem(id, e))?;
    Ok(Json(SearchResults {
        matches: found
            .hits
            .into_iter()
            .map(|h| SearchMatch {
                offset: h.offset,
                length: h.length,
                line: h.line,
                column: h.column,
                context: h.context,
                context_offset: h.context_offset,
            })
            .collect(),
        total: found.total,
        version: found.version,
    }))
}

/// Complete a word from the document's words (kept current as edits arrive).
#[utoipa::path(
    get, path = "/api/documents/{id}/complete", tag = "documents",
    params(DocId, CompleteParams),
    responses(
        (status = 200, description = "Completions", body = Completions),
        InvalidParameters,
        NoSuchDocument,
        Unavailable,
    )
)]
pub(super) async fn complete(
    State(s): State<ApiState>,
    id: DocId,
    ApiQuery(p): ApiQuery<CompleteParams>,
) -> Result<Json<Completions>, Problem> {
    let id = id.valid()?;
    let limit = in_range("limit", p.limit, 1, 100, 10)? as usize;
    let words = s
        .documents
        .request(id, |reply| ApiRequest::Complete {
            prefix: p.prefix.clone(),
            limit,
            reply,
        })
        .await
        .map_err(|e| doc_problem(id, e))?;
    Ok(Json(Completions {
        completions: words
            .into_iter()
            .map(|(word, count)| Completion { word, count })
            .collect(),
    }))
}
