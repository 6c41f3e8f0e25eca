//! A document's text and edits: read it (now or at an older version), replace it, and apply
//! edits on the current version or an older one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, ETAG};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{non_negative, opt_i64, require_content_type, Caller, DocId};
use super::{doc_problem, etag, version_problem, ApiState};
use crate::document::Source;
use crate::document::{ApiRequest, Applied, DocError, TextAt};
use crate::edit::Edit;
use crate::problem::{
    ApiJson, ApiQuery, BodyTooLarge, DatabaseUnavailable, InvalidParameters, JsonBodyRefused,
    NoSuchDocument, Problem, UnknownVersion,
};
use crate::versions;

const ORIGIN_EDITS: &str = "rest:edits";
const ORIGIN_TEXT: &str = "rest:text";

/// Edits to apply in one change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    /// The version the positions refer to (default: the current one). Edits on an older
    /// version are merged with everything that happened since, as a concurrent editor's would
    /// be: text "abc", someone inserts "z" at 0, then an edit on the "abc" version deleting
    /// position 2 gives "zab".
    #[serde(default, deserialize_with = "opt_i64")]
    #[schema(minimum = 0, value_type = Option<i64>)]
    version: Option<i64>,
    /// Applied in order; each position counts in the text as the previous edit left it.
    edits: Vec<Edit>,
}

/// The document after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeResult {
    /// The version after the change (unchanged if nothing changed).
    #[schema(minimum = 0)]
    version: i64,
    /// Length of the text in chars.
    #[schema(minimum = 0)]
    length: u64,
}

impl From<Applied> for ChangeResult {
    fn from(a: Applied) -> ChangeResult {
        ChangeResult {
            version: a.version,
            length: a.length,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TextParams {
    /// The version to read (default: the current one).
    #[param(minimum = 0)]
    version: Option<i64>,
}

/// The text, now or at an older version.
#[utoipa::path(
    get, path = "/api/documents/{id}/text", tag = "documents",
    params(DocId, TextParams),
    responses(
        (status = 200, description = "The text", body = String, content_type = "text/plain",
            headers(("ETag" = String, description = "The version, quoted"))),
        InvalidParameters,
        NoSuchDocument,
        UnknownVersion,
        DatabaseUnavailable,
    )
)]
pub(super) async fn get_text(
    State(s): State<ApiState>,
    id: DocId,
    ApiQuery(p): ApiQuery<TextParams>,
) -> Result<Response, Problem> {
    let id = id.valid()?;
    let version = non_negative("version", p.version)?;
    let at = text_at(&s, id, version).await?;
    Ok((
        [
            (CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
            (ETAG, etag(at.version)),
        ],
        at.text,
    )
        .into_response())
}

/// Replace the whole text. The server applies the smallest edits it finds that turn the
/// current text into the new one, so live editors' cursors in unchanged text stay put.
#[utoipa::path(
    put, path = "/api/documents/{id}/text", tag = "documents",
    params(DocId),
    request_body(content = String, content_type = "text/plain", description = "The new text (UTF-8)"),
    responses(
        (status = 200, description = "Replaced", body = ChangeResult),
        (status = 400, description = "Not UTF-8", body = Problem, content_type = "application/problem+json"),
        NoSuchDocument,
        BodyTooLarge,
        (status = 415, description = "Not text/plain", body = Problem, content_type = "application/problem+json"),
        DatabaseUnavailable,
    )
)]
pub(super) async fn put_text(
    State(s): State<ApiState>,
    id: DocId,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ChangeResult>, Problem> {
    let id = id.valid()?;
    require_content_type(&headers, "text/", "text/plain")?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|e| Problem::bad_request(format!("the body is not UTF-8 text: {e}")))?;
    replace_text(&s, id, text, caller.source(ORIGIN_TEXT))
        .await
        .map(Json)
}

/// Apply edits, on the current version or an older one.
#[utoipa::path(
    post, path = "/api/documents/{id}/edits", tag = "documents",
    params(DocId),
    request_body = EditRequest,
    responses(
        (status = 200, description = "Applied", body = ChangeResult),
        (status = 400, description = "Invalid body or a position out of range", body = Problem, content_type = "application/problem+json"),
        NoSuchDocument,
        UnknownVersion,
        JsonBodyRefused,
        DatabaseUnavailable,
    )
)]
pub(super) async fn post_edits(
    State(s): State<ApiState>,
    id: DocId,
    caller: Caller,
    ApiJson(req): ApiJson<EditRequest>,
) -> Result<Json<ChangeResult>, Problem> {
    let id = id.valid()?;
    let version = non_negative("version", req.version)?;
    let edits = req.edits;
    let first = s
        .documents
        .request(id, |reply| ApiRequest::Edits {
            version,
            edits: edits.clone(),
            source: caller.source(ORIGIN_EDITS),
            reply,
        })
        .await;
    let applied = match (first, version) {
        (Err(DocError::Stale { .. }), Some(version)) => {
            // Make the edits where their author saw the text, as a new client, and merge the
            // result into the live document like a concurrent editor's update.
            let update = versions::edits_at(&s.ctx.store, id, version, edits)
                .await
                .map_err(|e| version_problem(id, e, "applying the edits failed"))?;
            s.documents
                .request(id, |reply| ApiRequest::Update {
                    update: update.clone(),
                    source: caller.source(ORIGIN_EDITS),
                    reply,
                })
                .await
        }
        (other, _) => other,
    };
    applied
        .map(|a| Json(a.into()))
        .map_err(|e| doc_problem(id, e))
}

/// The text at `version` (default current): from the actor if current, else rebuilt from the
/// op log.
pub(super) async fn text_at(
    s: &ApiState,
    id: &str,
    version: Option<i64>,
) -> Result<TextAt, Problem> {
    match s
        .documents
        .request(id, |reply| ApiRequest::Text { version, reply })
        .await
    {
        Ok(at) => Ok(at),
        Err(DocError::Stale { .. }) => {
            let version = version.unwrap_or_default();
            let text = versions::text_at(&s.ctx.store, &s.ctx.versions, id, version)
                .await
                .map_err(|e| version_problem(id, e, "rebuilding the version failed"))?;
            Ok(TextAt { text, version })
        }
        Err(e) => Err(doc_problem(id, e)),
    }
}

/// Replaces the whole text with `text` by the smallest edits (the actor finds them).
pub(super) async fn replace_text(
    s: &ApiState,
    id: &str,
    text: String,
    source: Source,
) -> Result<ChangeResult, Problem> {
    let text = Arc::new(text);
    s.documents
        .request(id, |reply| ApiRequest::ReplaceText {
            text: (*text).clone(),
            source: source.clone(),
            reply,
        })
        .await
        .map(ChangeResult::from)
        .map_err(|e| doc_problem(id, e))
}
