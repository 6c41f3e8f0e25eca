//! The document as a Yjs update: export (a backup, a move to another Yjs server) and import.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, ETAG};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::extract::{require_content_type, Caller, DocId};
use super::text::ChangeResult;
use super::{doc_problem, etag, ApiState};
use crate::document::ApiRequest;
use crate::problem::{BodyTooLarge, NoSuchDocument, Problem, Unavailable};

const ORIGIN_UPDATE: &str = "rest:update";

/// The whole document as one Yjs update (v1 encoding): a backup, or a way to move it to
/// another Yjs server. Integrated state only: updates still waiting for their client's
/// earlier ones (rare: only out-of-order senders make them) stay in the op log.
#[utoipa::path(
    get, path = "/api/documents/{id}/update", tag = "documents",
    params(DocId),
    responses(
        (status = 200, description = "The document state", content(("application/octet-stream")),
            headers(("ETag" = String, description = "The version, quoted"))),
        NoSuchDocument,
        Unavailable,
    )
)]
pub(super) async fn get_update(State(s): State<ApiState>, id: DocId) -> Result<Response, Problem> {
    let id = id.valid()?;
    let (state, version) = s
        .documents
        .request(id, |reply| ApiRequest::EncodeState { reply })
        .await
        .map_err(|e| doc_problem(id, e))?;
    Ok((
        [
            (CONTENT_TYPE, "application/octet-stream".to_string()),
            (ETAG, etag(version)),
        ],
        state,
    )
        .into_response())
}

/// Apply a Yjs update (v1 encoding), as if a client had sent it: a restore from a backup, or
/// an import from another Yjs server.
#[utoipa::path(
    post, path = "/api/documents/{id}/update", tag = "documents",
    params(DocId),
    request_body(content(("application/octet-stream")), description = "A Yjs v1 update"),
    responses(
        (status = 200, description = "Applied (the version is unchanged if it held nothing new)", body = ChangeResult),
        (status = 400, description = "Not a valid update", body = Problem, content_type = "application/problem+json"),
        NoSuchDocument,
        BodyTooLarge,
        (status = 415, description = "Not application/octet-stream", body = Problem, content_type = "application/problem+json"),
        Unavailable,
    )
)]
pub(super) async fn post_update(
    State(s): State<ApiState>,
    id: DocId,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ChangeResult>, Problem> {
    let id = id.valid()?;
    if body.is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-update",
            "Invalid Yjs update",
            "the body is empty: send a Yjs v1 update",
        ));
    }
    require_content_type(
        &headers,
        "application/octet-stream",
        "application/octet-stream",
    )?;
    let update = body.to_vec();
    s.documents
        .request(id, |reply| ApiRequest::Update {
            update: update.clone(),
            source: caller.source(ORIGIN_UPDATE),
            reply,
        })
        .await
        .map(|a| Json(a.into()))
        .map_err(|e| doc_problem(id, e))
}
