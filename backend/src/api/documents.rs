//! Documents as a resource: create, list, read metadata, rename, delete.

use crate::webhooks::Notice;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{in_range, require_content_type, Caller, DocId};
use super::{doc_problem, new_id, not_found, rfc3339, store_problem, ApiState};
use crate::document::ApiRequest;
use crate::edit::Edit;
use crate::problem::{
    ApiJson, ApiQuery, BodyTooLarge, DatabaseUnavailable, InvalidParameters, JsonBodyRefused,
    NoSuchDocument, Problem,
};
use crate::store::DocMeta;

const MAX_NAME_CHARS: usize = 256;
const ORIGIN_CREATE: &str = "rest:create";

/// A document's metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentInfo {
    /// The document's id: also its WebSocket room (`/ws/{id}`).
    #[schema(example = "Xk3vQ9bTz0aLm2Pq7Rs4Uw")]
    id: String,
    name: Option<String>,
    /// Length of the text in chars.
    #[schema(minimum = 0)]
    length: i64,
    /// The document's version (sequence number of its last change).
    #[schema(minimum = 0)]
    version: i64,
    /// When it was created (RFC 3339, UTC).
    #[schema(format = DateTime)]
    created: String,
    /// When it last changed (RFC 3339, UTC).
    #[schema(format = DateTime)]
    updated: String,
}

impl From<DocMeta> for DocumentInfo {
    fn from(m: DocMeta) -> DocumentInfo {
        DocumentInfo {
            id: m.id,
            name: m.name,
            length: m.length,
            version: m.version,
            created: rfc3339(m.created_ms),
            updated: rfc3339(m.updated_ms),
        }
    }
}

/// One page of the document list.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentList {
    documents: Vec<DocumentInfo>,
    /// Pass as `cursor` to get the next page; null on the last page.
    next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDocument {
    /// A name for people (not unique).
    #[schema(max_length = 256)]
    #[serde(default)]
    name: Option<String>,
    /// The initial text.
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameDocument {
    /// The new name; null removes it.
    #[schema(max_length = 256)]
    name: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Documents per page (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 128)]
    cursor: Option<String>,
}

/// Create a document.
#[utoipa::path(
    post, path = "/api/documents", tag = "documents",
    request_body(content = Option<CreateDocument>, description = "All fields optional; no body is `{}`."),
    responses(
        (status = 201, description = "Created", body = DocumentInfo,
            headers(("Location" = String, description = "The document's URL"))),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body that is not application/json", body = Problem, content_type = "application/problem+json"),
        BodyTooLarge,
        DatabaseUnavailable,
    )
)]
pub(super) async fn create_document(
    State(s): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let invalid = |detail: String| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-json",
            "Invalid JSON body",
            detail,
        )
    };
    // No body (or `null`) is `{}`: `curl -X POST …/api/documents` makes an empty document. A
    // body of only whitespace is not JSON, and is refused like any other (schemathesis).
    let req: CreateDocument = if body.is_empty() {
        CreateDocument::default()
    } else {
        // A JSON body only as JSON: a page on another origin may send `text/plain` without
        // asking first (a CORS "simple" request).
        require_content_type(&headers, "application/json", "application/json")?;
        match serde_json::from_slice::<serde_json::Value>(&body)
            .map_err(|e| invalid(e.to_string()))?
        {
            serde_json::Value::Null => CreateDocument::default(),
            v @ serde_json::Value::Object(_) => {
                serde_json::from_value(v).map_err(|e| invalid(e.to_string()))?
            }
            _ => return Err(invalid("the body must be a JSON object".into())),
        }
    };
    check_name(req.name.as_deref())?;
    let id = loop {
        let id = new_id()?;
        if s.ctx
            .store
            .create(&id, req.name.as_deref())
            .await
            .map_err(store_problem)?
        {
            break id;
        }
    };
    if let Some(hooks) = &s.ctx.webhooks {
        hooks.notify(Notice::Created {
            doc: id.clone(),
            name: req.name.clone(),
        });
    }
    if let Some(text) = req.text.filter(|t| !t.is_empty()) {
        let edits = vec![Edit {
            pos: 0,
            delete: 0,
            insert: text,
        }];
        s.documents
            .request(&id, |reply| ApiRequest::Edits {
                version: None,
                edits: edits.clone(),
                source: caller.source(ORIGIN_CREATE),
                reply,
            })
            .await
            .map_err(|e| doc_problem(&id, e))?;
    }
    let meta = s
        .ctx
        .store
        .meta(&id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| not_found(&id))?;
    let location = HeaderValue::from_str(&format!("/api/documents/{id}")).ok();
    let mut response = (StatusCode::CREATED, Json(DocumentInfo::from(meta))).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// List documents, by id.
#[utoipa::path(
    get, path = "/api/documents", tag = "documents",
    params(ListParams),
    responses(
        (status = 200, description = "A page of documents", body = DocumentList),
        InvalidParameters,
        DatabaseUnavailable,
    )
)]
pub(super) async fn list_documents(
    State(s): State<ApiState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<DocumentList>, Problem> {
    let limit = in_range("limit", p.limit, 1, 1000, 100)?;
    if p.cursor.as_ref().is_some_and(|c| c.chars().count() > 128) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query parameters",
            "cursor is at most 128 chars: pass the next_cursor of the previous page",
        ));
    }
    let mut rows = s
        .ctx
        .store
        .list(p.cursor.as_deref(), limit + 1)
        .await
        .map_err(store_problem)?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|m| m.id.clone())
    } else {
        None
    };
    Ok(Json(DocumentList {
        documents: rows.into_iter().map(DocumentInfo::from).collect(),
        next_cursor,
    }))
}

/// A document's metadata.
#[utoipa::path(
    get, path = "/api/documents/{id}", tag = "documents",
    params(DocId),
    responses(
        (status = 200, description = "The document", body = DocumentInfo),
        NoSuchDocument,
        DatabaseUnavailable,
    )
)]
pub(super) async fn get_document(
    State(s): State<ApiState>,
    id: DocId,
) -> Result<Json<DocumentInfo>, Problem> {
    let id = id.valid()?;
    let mut meta = live_meta(&s, id).await?;
    if s.documents.is_open(id) {
        // The row's length of an open document may be a second behind; the actor knows.
        let now = s
            .documents
            .request(id, |reply| ApiRequest::Info { reply })
            .await
            .map_err(|e| doc_problem(id, e))?;
        meta.version = now.version;
        meta.length = now.length as i64;
    }
    Ok(Json(meta.into()))
}

/// Rename a document.
#[utoipa::path(
    patch, path = "/api/documents/{id}", tag = "documents",
    params(DocId),
    request_body = RenameDocument,
    responses(
        (status = 200, description = "Renamed", body = DocumentInfo),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        NoSuchDocument,
        JsonBodyRefused,
        DatabaseUnavailable,
    )
)]
pub(super) async fn rename_document(
    State(s): State<ApiState>,
    id: DocId,
    ApiJson(req): ApiJson<RenameDocument>,
) -> Result<Json<DocumentInfo>, Problem> {
    let id = id.valid()?;
    check_name(req.name.as_deref())?;
    let meta = s
        .ctx
        .store
        .rename(id, req.name.as_deref())
        .await
        .map_err(store_problem)?
        .ok_or_else(|| not_found(id))?;
    Ok(Json(meta.into()))
}

/// Delete a document: its live connections are closed (WebSocket close code 4404), later
/// requests for it get 404, and its id is never used again.
#[utoipa::path(
    delete, path = "/api/documents/{id}", tag = "documents",
    params(DocId),
    responses(
        (status = 204, description = "Deleted"),
        NoSuchDocument,
        DatabaseUnavailable,
    )
)]
pub(super) async fn delete_document(
    State(s): State<ApiState>,
    id: DocId,
) -> Result<StatusCode, Problem> {
    let id = id.valid()?;
    s.documents
        .request(id, |reply| ApiRequest::Delete { reply })
        .await
        .map_err(|e| doc_problem(id, e))?;
    s.blame.forget(id);
    if let Some(hooks) = &s.ctx.webhooks {
        hooks.notify(Notice::Deleted {
            doc: id.to_string(),
        });
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The stored metadata of a document that exists and is not deleted (`id` already valid).
pub(super) async fn live_meta(s: &ApiState, id: &str) -> Result<DocMeta, Problem> {
    s.ctx
        .store
        .meta(id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| not_found(id))
}

/// The same rules on both stores (PostgreSQL cannot store a NUL, SQLite can): at most
/// [`MAX_NAME_CHARS`] characters on one line, no control characters.
pub(super) fn check_name(name: Option<&str>) -> Result<(), Problem> {
    let Some(n) = name else {
        return Ok(());
    };
    if n.chars().count() > MAX_NAME_CHARS {
        return Err(Problem::bad_request(format!(
            "name is {} chars long: at most {MAX_NAME_CHARS} are allowed",
            n.chars().count()
        )));
    }
    if let Some(c) = n.chars().find(|c| c.is_control()) {
        return Err(Problem::bad_request(format!(
            "name contains the control character U+{:04X}: names are one line of text",
            c as u32
        )));
    }
    Ok(())
}
