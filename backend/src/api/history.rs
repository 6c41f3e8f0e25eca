//! A document's history: the op log page by page, and restoring the text of an older version.

use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::documents::live_meta;
use super::extract::{in_range, non_negative, DocId};
use super::text::{replace_text, text_at, ChangeResult};
use super::{rfc3339, store_problem, ApiState};
use crate::edit;
use crate::problem::{
    ApiJson, ApiQuery, DatabaseUnavailable, InvalidParameters, JsonBodyRefused, NoSuchDocument,
    Problem, UnknownVersion,
};
use crate::versions;

const ORIGIN_RESTORE: &str = "rest:restore";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DiffParams {
    /// The version to compare from.
    #[param(minimum = 0)]
    from: i64,
    /// The version to compare to (default: the current one).
    #[param(minimum = 0)]
    to: Option<i64>,
}

/// The change between two versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDiff {
    from: i64,
    to: i64,
    /// Edits that turn the text at `from` into the text at `to`, applied in order: the form
    /// `POST …/edits` takes (char positions).
    edits: Vec<edit::Edit>,
}

/// The change between two versions, as edits (JSON), or as a unified diff of lines with
/// `Accept: text/x-diff`.
#[utoipa::path(
    get, path = "/api/documents/{id}/diff", tag = "documents",
    params(DocId, DiffParams),
    responses(
        (status = 200, description = "The change", content(
            (VersionDiff = "application/json"),
            (String = "text/x-diff"),
        )),
        InvalidParameters,
        NoSuchDocument,
        UnknownVersion,
        DatabaseUnavailable,
    )
)]
pub(super) async fn get_diff(
    State(s): State<ApiState>,
    id: DocId,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<DiffParams>,
) -> Result<Response, Problem> {
    let id = id.valid()?;
    let from = non_negative("from", Some(p.from))?;
    let to = non_negative("to", p.to)?;
    let to = text_at(&s, id, to).await?;
    let from = text_at(&s, id, from).await?;
    let unified = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/x-diff"));
    if unified {
        let text = similar::TextDiff::from_lines(&from.text, &to.text)
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("{id}@{}", from.version),
                &format!("{id}@{}", to.version),
            )
            .to_string();
        return Ok(([(CONTENT_TYPE, "text/x-diff; charset=utf-8")], text).into_response());
    }
    Ok(Json(VersionDiff {
        from: from.version,
        to: to.version,
        edits: edit::diff(&from.text, &to.text),
    })
    .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The version whose text to restore.
    #[serde(deserialize_with = "edit::json_i64")]
    #[schema(minimum = 0)]
    version: i64,
}

/// One op-log entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// Its sequence number: the document's version after it.
    #[schema(minimum = 1)]
    seq: i64,
    /// When the server received it (RFC 3339, UTC).
    #[schema(format = DateTime)]
    time: String,
    /// Who sent it: `conn-N` (a WebSocket connection) or `rest:…` (this API).
    origin: Option<String>,
    /// Chars it inserted; null if it can no longer be computed.
    #[schema(minimum = 0)]
    inserted: Option<i64>,
    /// Chars it deleted; null if it can no longer be computed.
    #[schema(minimum = 0)]
    deleted: Option<i64>,
}

/// A page of history, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    entries: Vec<HistoryEntry>,
    /// Pass as `before` to get the next (older) page; null on the last page.
    next_before: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Entries per page (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Only entries with a sequence number below this (`next_before` of the previous page).
    #[param(minimum = 1)]
    before: Option<i64>,
}

/// The op log, newest first.
#[utoipa::path(
    get, path = "/api/documents/{id}/history", tag = "documents",
    params(DocId, HistoryParams),
    responses(
        (status = 200, description = "A page of history", body = History),
        InvalidParameters,
        NoSuchDocument,
        DatabaseUnavailable,
    )
)]
pub(super) async fn get_history(
    State(s): State<ApiState>,
    id: DocId,
    ApiQuery(p): ApiQuery<HistoryParams>,
) -> Result<Json<History>, Problem> {
    let limit = in_range("limit", p.limit, 1, 1000, 100)?;
    let before = match p.before {
        Some(b) if b < 1 => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-query",
                "Invalid query parameters",
                format!("before must be at least 1 (got {b})"),
            ))
        }
        Some(b) => b,
        None => i64::MAX,
    };
    let id = id.valid()?;
    live_meta(&s, id).await?;
    let rows = s
        .ctx
        .store
        .history(id, before, limit)
        .await
        .map_err(store_problem)?;
    let missing: Vec<i64> = rows
        .iter()
        .filter(|r| r.chars.is_none())
        .map(|r| r.seq)
        .collect();
    let computed = if missing.is_empty() {
        Vec::new()
    } else {
        versions::replay_counts(&s.ctx.store, id, &missing).await
    };
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.seq))
        .flatten()
        .filter(|&seq| seq > 1);
    let entries = rows
        .into_iter()
        .map(|r| {
            let chars = r.chars.or_else(|| {
                computed
                    .iter()
                    .find(|(seq, _)| *seq == r.seq)
                    .map(|(_, c)| *c)
            });
            HistoryEntry {
                seq: r.seq,
                time: rfc3339(r.received_ms),
                origin: r.origin,
                inserted: chars.map(|c| c.0),
                deleted: chars.map(|c| c.1),
            }
        })
        .collect();
    Ok(Json(History {
        entries,
        next_before,
    }))
}

/// Make the text what it was at a version, as new edits (history is kept).
#[utoipa::path(
    post, path = "/api/documents/{id}/restore", tag = "documents",
    params(DocId),
    request_body = RestoreRequest,
    responses(
        (status = 200, description = "Restored", body = ChangeResult),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        NoSuchDocument,
        UnknownVersion,
        JsonBodyRefused,
        DatabaseUnavailable,
    )
)]
pub(super) async fn post_restore(
    State(s): State<ApiState>,
    id: DocId,
    ApiJson(req): ApiJson<RestoreRequest>,
) -> Result<Json<ChangeResult>, Problem> {
    let id = id.valid()?;
    let version = non_negative("version", Some(req.version))?;
    let old = text_at(&s, id, version).await?;
    replace_text(&s, id, old.text, ORIGIN_RESTORE)
        .await
        .map(Json)
}
