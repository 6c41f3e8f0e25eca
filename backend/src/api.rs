//! The REST API under `/api`: documents, text, edits (also against older versions), history and
//! time travel, search, autocomplete, Yjs update export/import, and the OpenAPI document that
//! describes all of it (generated from these handlers and types by utoipa).
//!
//! Everything that changes a document goes through its actor ([`ApiRequest`]), which commits it
//! to the op log before it answers and before it relays the change to WebSocket clients, so a
//! REST edit shows up live in editors and survives a crash once acknowledged. Work that needs the
//! op log (the text at an older version, edits against one) is done here, off the actor: the
//! actor answers `Stale`, this module rebuilds that version from the store, and a change made
//! there comes back to the actor as a Yjs update, merged like a concurrent editor's.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::{CONTENT_TYPE, ETAG, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use editor_core::search::Query;
use serde::{Deserialize, Deserializer, Serialize};
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{self, Claims, Role};
use crate::document::{build_doc, ApiRequest, Applied, DocError, TextAt};
use crate::documents::Documents;
use crate::edit::{self, Edit};
use crate::mirror::{doc_text, Mirror};
use crate::problem::{
    problem_layer, ApiJson, ApiQuery, BodyTooLarge, DatabaseUnavailable, InvalidParameters,
    JsonBodyRefused, NoSuchDocument, NotAdmin, Problem, Unavailable, UnknownVersion,
};
use crate::protocol::validate_doc_id;
use crate::server::Context;
use crate::store::{AtError, DocMeta, StoreError, StoredDoc};

/// Length of the ids `POST /api/documents` makes: 22 base62 chars hold 130 random bits.
const NEW_ID_LEN: usize = 22;
const MAX_NAME_CHARS: usize = 256;
const ORIGIN_CREATE: &str = "rest:create";
const ORIGIN_EDITS: &str = "rest:edits";
const ORIGIN_TEXT: &str = "rest:text";
const ORIGIN_RESTORE: &str = "rest:restore";
const ORIGIN_UPDATE: &str = "rest:update";

#[derive(Clone)]
struct ApiState {
    ctx: Arc<Context>,
    documents: Arc<Documents>,
}

/// The `/api` routes, to be nested under `/api`, with their body limit and problem responses.
pub fn router<S: Clone + Send + Sync + 'static>(
    ctx: Arc<Context>,
    documents: Arc<Documents>,
) -> Router<S> {
    let limit = ctx.config.max_body_bytes;
    let cors = cors_layer(&ctx.config.cors_origins);
    let gate = middleware::from_fn_with_state(ctx.clone(), auth::rest_layer);
    let router = Router::new()
        .route("/documents", get(list_documents).post(create_document))
        .route(
            "/documents/{id}",
            get(get_document)
                .patch(rename_document)
                .delete(delete_document),
        )
        .route("/documents/{id}/text", get(get_text).put(put_text))
        .route("/documents/{id}/edits", axum::routing::post(post_edits))
        .route("/documents/{id}/history", get(get_history))
        .route("/documents/{id}/restore", axum::routing::post(post_restore))
        .route("/documents/{id}/search", get(search))
        .route("/documents/{id}/complete", get(complete))
        .route("/documents/{id}/update", get(get_update).post(post_update))
        .route("/tokens", axum::routing::post(mint_token))
        .route("/tokens/revoke", axum::routing::post(revoke_token))
        .route("/openapi.json", get(openapi_json))
        .fallback(|| async { Problem::not_found("no such API endpoint: see /api/openapi.json") })
        .with_state(ApiState { ctx, documents })
        // Extractors get the same limit as the layer (axum's own default is 2 MB).
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit))
        // Access control sees every request before a handler (or the body limit) does.
        .layer(gate)
        .layer(middleware::from_fn(problem_layer));
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// CORS for the listed origins (`--cors-origin`); none: no CORS headers, same-origin only.
fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| match HeaderValue::from_str(o.trim().trim_end_matches('/')) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(origin = %o, "ignoring a --cors-origin that is not a valid origin");
                None
            }
        })
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
            ])
            .expose_headers([header::ETAG, header::LOCATION])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The OpenAPI 3.1 document as JSON.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "quire REST API",
        description = "Read and change quire documents without speaking the Yjs sync protocol. \
Every change is committed to the document's op log before the response and relayed live to \
connected editors.\n\n\
Positions, lengths and counts are Unicode chars (code points), zero-based. A document's \
*version* is the sequence number of its last op-log entry; every change adds one.\n\n\
Errors are RFC 9457 problem details (`application/problem+json`). Their `type`s: \
`urn:quire:problem:not-found` (404), `invalid-json` and `invalid-query` and `bad-request` (400), \
`invalid-position` (400, names the valid range), `invalid-update` (400), `unknown-version` (409, \
with `current_version`), `version-compacted` (409), `body-too-large` (413), \
`unsupported-media-type` (415), `method-not-allowed` (405), `unavailable` (503), \
`document-too-large` (413: the change would pass the document size limit).\n\n\
**Access control.** A server started with `--auth-secret` needs a token on every request but \
this document: `Authorization: Bearer TOKEN` (or a `token` query parameter). Tokens name a \
document (or `*`), a role (`read-only`: GET only; `read-write`; `admin`) and an expiry; \
`POST /api/tokens` mints them, with the server's secret (or an admin token) as bearer, and \
`POST /api/tokens/revoke` revokes one (durably; a live WebSocket using it is closed with 4401). \
Refusals: `unauthorized` (401: no, invalid, expired or revoked token) and `forbidden` (403: \
another document, or a change with a read-only token). A server without a secret is open and \
needs none.",
    ),
    paths(
        create_document,
        list_documents,
        get_document,
        rename_document,
        delete_document,
        get_text,
        put_text,
        post_edits,
        get_history,
        post_restore,
        search,
        complete,
        get_update,
        post_update,
        mint_token,
        revoke_token,
    ),
    components(schemas(Problem, Edit)),
    modifiers(&BearerAuth),
    tags((name = "documents", description = "quire documents"))
)]
struct ApiDoc;

/// Declares the bearer token scheme, required by every operation when the server has a secret
/// (and satisfied by no token at all when it has none).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An access token from POST /api/tokens (or the server's secret, as admin). Needed only when the server runs with --auth-secret."))
                    .build(),
            ),
        );
        openapi.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::default(),
        ]);
    }
}

async fn openapi_json() -> Response {
    match openapi().to_json() {
        Ok(json) => ([(CONTENT_TYPE, "application/json")], json).into_response(),
        Err(err) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            format!("cannot render the OpenAPI document: {err}"),
        )
        .into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Types

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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TextParams {
    /// The version to read (default: the current one).
    #[param(minimum = 0)]
    version: Option<i64>,
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

/// An optional JSON integer (`null` or absent: none); `3.0` counts as 3.
fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Int(#[serde(deserialize_with = "edit::json_i64")] i64);
    Ok(Option::<Int>::deserialize(d)?.map(|Int(v)| v))
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// Create a document.
#[utoipa::path(
    post, path = "/api/documents", tag = "documents",
    request_body(content = Option<CreateDocument>, description = "All fields optional; no body is `{}`."),
    responses(
        (status = 201, description = "Created", body = DocumentInfo,
            headers(("Location" = String, description = "The document's URL"))),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        BodyTooLarge,
        DatabaseUnavailable,
    )
)]
async fn create_document(State(s): State<ApiState>, body: Bytes) -> Result<Response, Problem> {
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
                origin: ORIGIN_CREATE,
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
async fn list_documents(
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
    params(("id" = String, Path, description = "Document id", pattern = "^[A-Za-z0-9._-]{1,128}$")),
    responses(
        (status = 200, description = "The document", body = DocumentInfo),
        NoSuchDocument,
        DatabaseUnavailable,
    )
)]
async fn get_document(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<DocumentInfo>, Problem> {
    let mut meta = live_meta(&s, &id).await?;
    if s.documents.is_open(&id) {
        // The row's length of an open document may be a second behind; the actor knows.
        let now = s
            .documents
            .request(&id, |reply| ApiRequest::Info { reply })
            .await
            .map_err(|e| doc_problem(&id, e))?;
        meta.version = now.version;
        meta.length = now.length as i64;
    }
    Ok(Json(meta.into()))
}

/// Rename a document.
#[utoipa::path(
    patch, path = "/api/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id", pattern = "^[A-Za-z0-9._-]{1,128}$")),
    request_body = RenameDocument,
    responses(
        (status = 200, description = "Renamed", body = DocumentInfo),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        NoSuchDocument,
        JsonBodyRefused,
        DatabaseUnavailable,
    )
)]
async fn rename_document(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RenameDocument>,
) -> Result<Json<DocumentInfo>, Problem> {
    check_id(&id)?;
    check_name(req.name.as_deref())?;
    let meta = s
        .ctx
        .store
        .rename(&id, req.name.as_deref())
        .await
        .map_err(store_problem)?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(meta.into()))
}

/// Delete a document: its live connections are closed (WebSocket close code 4404), later
/// requests for it get 404, and its id is never used again.
#[utoipa::path(
    delete, path = "/api/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id", pattern = "^[A-Za-z0-9._-]{1,128}$")),
    responses(
        (status = 204, description = "Deleted"),
        NoSuchDocument,
        DatabaseUnavailable,
    )
)]
async fn delete_document(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    check_id(&id)?;
    s.documents
        .request(&id, |reply| ApiRequest::Delete { reply })
        .await
        .map_err(|e| doc_problem(&id, e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The text, now or at an older version.
#[utoipa::path(
    get, path = "/api/documents/{id}/text", tag = "documents",
    params(("id" = String, Path, description = "Document id", pattern = "^[A-Za-z0-9._-]{1,128}$"), TextParams),
    responses(
        (status = 200, description = "The text", body = String, content_type = "text/plain",
            headers(("ETag" = String, description = "The version, quoted"))),
        InvalidParameters,
        NoSuchDocument,
        UnknownVersion,
        DatabaseUnavailable,
    )
)]
async fn get_text(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<TextParams>,
) -> Result<Response, Problem> {
    check_id(&id)?;
    let version = non_negative("version", p.version)?;
    let at = text_at(&s, &id, version).await?;
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
    params(("id" = String, Path, description = "Document id", pattern = "^[A-Za-z0-9._-]{1,128}$")),
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
async fn put_text(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ChangeResult>, Problem> {
    check_id(&id)?;
    require_content_type(&headers, "text/", "text/plain")?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|e| Problem::bad_request(format!("the body is not UTF-8 text: {e}")))?;
    replace_text(&s, &id, text, ORIGIN_TEXT).await.map(Json)
}

/// Apply edits, on the current version or an older one.
#[utoipa::path(
    post, path = "/api/documents/{id}/edits", tag = "documents",
    params(("id" = String, Path, description = "Document id", pattern = "^[A-Za-z0-9._-]{1,128}$")),
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
async fn post_edits(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<EditRequest>,
) -> Result<Json<ChangeResult>, Problem> {
    check_id(&id)?;
    let version = non_negative("version", req.version)?;
    let edits = req.edits;
    let first = s
        .documents
        .request(&id, |reply| ApiRequest::Edits {
            version,
            edits: edits.clone(),
            origin: ORIGIN_EDITS,
            reply,
        })
        .await;
    let applied = match (first, version) {
        (Err(DocError::Stale { .. }), Some(version)) => {
            // Make the edits where their author saw the text, as a new client, and merge the
            // result into the live document like a concurrent editor's update.
            let stored = load_at(&s, &id, version).await?;
            let doc_id = id.clone();
            let update = tokio::task::spawn_blocking(move || {
                edit::apply_at_version(&doc_id, &stored, &edits)
            })
            .await
            .map_err(|_| internal("applying the edits failed"))?
            .map_err(|e| doc_problem(&id, DocError::Edit(e)))?;
            s.documents
                .request(&id, |reply| ApiRequest::Update {
                    update: update.clone(),
                    origin: ORIGIN_EDITS,
                    reply,
                })
                .await
        }
        (other, _) => other,
    };
    applied
        .map(|a| Json(a.into()))
        .map_err(|e| doc_problem(&id, e))
}

/// The op log, newest first.
#[utoipa::path(
    get, path = "/api/documents/{id}/history", tag = "documents",
    params(("id" = String, Path, description = "Document id", pattern = "^[A-Za-z0-9._-]{1,128}$"), HistoryParams),
    responses(
        (status = 200, description = "A page of history", body = History),
        InvalidParameters,
        NoSuchDocument,
        DatabaseUnavailable,
    )
)]
async fn get_history(
    State(s): State<ApiState>,
    Path(id): Path<String>,
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
    live_meta(&s, &id).await?;
    let rows = s
        .ctx
        .store
        .history(&id, before, limit)
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
        replay_counts(&s, &id, &missing).await
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
    params(("id" = String, Path, description = "Document id", pattern = "^[A-Za-z0-9._-]{1,128}$")),
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
async fn post_restore(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RestoreRequest>,
) -> Result<Json<ChangeResult>, Problem> {
    check_id(&id)?;
    let version = non_negative("version", Some(req.version))?;
    let old = text_at(&s, &id, version).await?;
    replace_text(&s, &id, old.text, ORIGIN_RESTORE)
        .await
        .map(Json)
}

/// Find text (Knuth–Morris–Pratt over the document's buffer).
#[utoipa::path(
    get, path = "/api/documents/{id}/search", tag = "documents",
    params(("id" = String, Path, description = "Document id", pattern = "^[A-Za-z0-9._-]{1,128}$"), SearchParams),
    responses(
        (status = 200, description = "Matches, left to right, not overlapping", body = SearchResults),
        InvalidParameters,
        NoSuchDocument,
        Unavailable,
    )
)]
async fn search(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<SearchParams>,
) -> Result<Json<SearchResults>, Problem> {
    check_id(&id)?;
    let limit = in_range("limit", p.limit, 1, 1000, 100)? as usize;
    let context = in_range("context", p.context, 0, 200, 40)? as usize;
    let searcher = Query::new(p.q)
        .case_insensitive(matches!(p.case.unwrap_or_default(), Case::Insensitive))
        .whole_word(p.word.unwrap_or(false))
        .compile();
    let searcher = Box::new(searcher);
    let found = s
        .documents
        .request(&id, |reply| ApiRequest::Search {
            searcher: searcher.clone(),
            limit,
            context,
            reply,
        })
        .await
        .map_err(|e| doc_problem(&id, e))?;
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
    params(("id" = String, Path, description = "Document id", pattern = "^[A-Za-z0-9._-]{1,128}$"), CompleteParams),
    responses(
        (status = 200, description = "Completions", body = Completions),
        InvalidParameters,
        NoSuchDocument,
        Unavailable,
    )
)]
async fn complete(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<CompleteParams>,
) -> Result<Json<Completions>, Problem> {
    check_id(&id)?;
    let limit = in_range("limit", p.limit, 1, 100, 10)? as usize;
    let words = s
        .documents
        .request(&id, |reply| ApiRequest::Complete {
            prefix: p.prefix.clone(),
            limit,
            reply,
        })
        .await
        .map_err(|e| doc_problem(&id, e))?;
    Ok(Json(Completions {
        completions: words
            .into_iter()
            .map(|(word, count)| Completion { word, count })
            .collect(),
    }))
}

/// The whole document as one Yjs update (v1 encoding): a backup, or a way to move it to
/// another Yjs server. Integrated state only: updates still waiting for their client's
/// earlier ones (rare: only out-of-order senders make them) stay in the op log.
#[utoipa::path(
    get, path = "/api/documents/{id}/update", tag = "documents",
    params(("id" = String, Path, description = "Document id", pattern = "^[A-Za-z0-9._-]{1,128}$")),
    responses(
        (status = 200, description = "The document state", content(("application/octet-stream")),
            headers(("ETag" = String, description = "The version, quoted"))),
        NoSuchDocument,
        Unavailable,
    )
)]
async fn get_update(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    check_id(&id)?;
    let (state, version) = s
        .documents
        .request(&id, |reply| ApiRequest::EncodeState { reply })
        .await
        .map_err(|e| doc_problem(&id, e))?;
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
    params(("id" = String, Path, description = "Document id", pattern = "^[A-Za-z0-9._-]{1,128}$")),
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
async fn post_update(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ChangeResult>, Problem> {
    check_id(&id)?;
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
        .request(&id, |reply| ApiRequest::Update {
            update: update.clone(),
            origin: ORIGIN_UPDATE,
            reply,
        })
        .await
        .map(|a| Json(a.into()))
        .map_err(|e| doc_problem(&id, e))
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The text at `version` (default current): from the actor if current, else rebuilt from the
/// op log.
/// A token to mint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MintToken {
    /// The document the token opens, or `*` for every document. Default `*`.
    #[serde(default)]
    document: Option<String>,
    /// Default `read-write`.
    #[serde(default)]
    role: Option<Role>,
    /// Lifetime in seconds, 1 to 31536000 (a year). Default 86400 (a day).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 31536000)]
    expires_in: Option<u64>,
}

/// A minted token.
#[derive(Debug, Serialize, ToSchema)]
struct TokenInfo {
    /// The token: send it as `Authorization: Bearer TOKEN` or `?token=TOKEN`.
    token: String,
    /// The token's id (its `jti` claim): what `POST /api/tokens/revoke` takes.
    jti: String,
    /// The document it opens, or `*`.
    document: String,
    role: Role,
    /// When it expires (RFC 3339, UTC).
    expires_at: String,
    /// Its lifetime in seconds.
    expires_in: u64,
}

/// Mint an access token (needs the server's secret, or an admin token, as bearer).
#[utoipa::path(
    post, path = "/api/tokens", tag = "tokens",
    request_body(content = MintToken, content_type = "application/json"),
    responses(
        (status = 201, description = "Minted", body = TokenInfo),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No, invalid or expired token", body = Problem, content_type = "application/problem+json"),
        NotAdmin,
        (status = 404, description = "Access control is off (no --auth-secret): there is nothing to mint", body = Problem, content_type = "application/problem+json"),
        JsonBodyRefused,
    )
)]
async fn mint_token(
    State(s): State<ApiState>,
    ApiJson(req): ApiJson<MintToken>,
) -> Result<Response, Problem> {
    if !s.ctx.auth.enabled() {
        return Err(Problem::not_found(
            "access control is off (no --auth-secret): quire is open and needs no tokens",
        ));
    }
    let document = req.document.unwrap_or_else(|| "*".to_string());
    if document != "*" {
        check_id(&document)?;
    }
    let expires_in = req.expires_in.unwrap_or(auth::DEFAULT_TOKEN_SECS);
    if !(1..=auth::MAX_TOKEN_SECS).contains(&expires_in) {
        return Err(Problem::bad_request(format!(
            "expires_in must be 1 to {} seconds (got {expires_in})",
            auth::MAX_TOKEN_SECS
        )));
    }
    let role = req.role.unwrap_or(Role::ReadWrite);
    let iat = auth::now_secs();
    let claims = Claims {
        doc: document.clone(),
        role,
        exp: iat + expires_in,
        iat,
        jti: Some(new_id()?),
    };
    let token = s
        .ctx
        .auth
        .sign(&claims)
        .ok_or_else(|| internal("signing the token"))?;
    tracing::info!(document = %document, role = role.as_str(), expires_in, "token minted");
    let info = TokenInfo {
        token,
        jti: claims.jti.clone().unwrap_or_default(),
        document,
        role,
        expires_at: rfc3339((claims.exp as i64).saturating_mul(1000)),
        expires_in,
    };
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// A token to revoke: the token itself, or its id.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeToken {
    /// The token (signed by this server). Give this or `jti`.
    #[serde(default)]
    token: Option<String>,
    /// The token's id (`jti` from `POST /api/tokens`). Give this or `token`.
    #[serde(default)]
    jti: Option<String>,
}

/// A revoked token.
#[derive(Debug, Serialize, ToSchema)]
struct Revoked {
    /// The revoked token's id.
    jti: String,
    /// Until when the revocation is kept (the token's expiry when known, else a year from
    /// now), RFC 3339, UTC.
    expires_at: String,
}

/// Revoke an access token (needs the server's secret, or an admin token, as bearer).
///
/// From then on the token is refused (401) on every REST request and WebSocket upgrade, also
/// after a restart, and a live WebSocket using it is closed with 4401. Tokens minted before
/// revocation existed carry no id and cannot be revoked one by one (rotate the secret).
/// Revoking a token twice is not an error.
#[utoipa::path(
    post, path = "/api/tokens/revoke", tag = "tokens",
    request_body(content = RevokeToken, content_type = "application/json"),
    responses(
        (status = 200, description = "Revoked", body = Revoked),
        (status = 400, description = "Invalid body, neither `token` nor `jti`, a token not signed by this server, or one without an id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No, invalid, expired or revoked token", body = Problem, content_type = "application/problem+json"),
        NotAdmin,
        (status = 404, description = "Access control is off (no --auth-secret): there is nothing to revoke", body = Problem, content_type = "application/problem+json"),
        JsonBodyRefused,
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn revoke_token(
    State(s): State<ApiState>,
    ApiJson(req): ApiJson<RevokeToken>,
) -> Result<Json<Revoked>, Problem> {
    if !s.ctx.auth.enabled() {
        return Err(Problem::not_found(
            "access control is off (no --auth-secret): quire is open and has no tokens to revoke",
        ));
    }
    let (jti, exp) = match (req.token, req.jti) {
        (Some(token), None) => {
            let claims = s
                .ctx
                .auth
                .signed_claims(&token)
                .map_err(|e| Problem::bad_request(format!("cannot revoke that token: {e}")))?;
            let jti = claims.jti.ok_or_else(|| {
                Problem::bad_request(
                    "that token has no id (jti): it was minted before revocation existed and \
                     stays valid until it expires; rotate the secret to revoke it",
                )
            })?;
            (jti, claims.exp)
        }
        (None, Some(jti)) => {
            let jti = jti.trim().to_string();
            if jti.is_empty() || jti.len() > 128 {
                return Err(Problem::bad_request("jti must be 1 to 128 characters"));
            }
            (jti, auth::now_secs() + auth::MAX_TOKEN_SECS)
        }
        _ => {
            return Err(Problem::bad_request(
                "give exactly one of `token` (the token) and `jti` (its id)",
            ))
        }
    };
    let exp_i64 = i64::try_from(exp).unwrap_or(i64::MAX / 1000);
    s.ctx
        .store
        .revoke_token(&jti, exp_i64)
        .await
        .map_err(store_problem)?;
    s.ctx.auth.revoke([(jti.clone(), exp)]);
    tracing::info!(jti = %jti, "token revoked");
    Ok(Json(Revoked {
        jti,
        expires_at: rfc3339(exp_i64.saturating_mul(1000)),
    }))
}

async fn text_at(s: &ApiState, id: &str, version: Option<i64>) -> Result<TextAt, Problem> {
    match s
        .documents
        .request(id, |reply| ApiRequest::Text { version, reply })
        .await
    {
        Ok(at) => Ok(at),
        Err(DocError::Stale { .. }) => {
            let version = version.unwrap_or_default();
            let stored = load_at(s, id, version).await?;
            let doc_id = id.to_string();
            let text = tokio::task::spawn_blocking(move || doc_text(&build_doc(&doc_id, &stored)))
                .await
                .map_err(|_| internal("rebuilding the version failed"))?;
            Ok(TextAt { text, version })
        }
        Err(e) => Err(doc_problem(id, e)),
    }
}

async fn replace_text(
    s: &ApiState,
    id: &str,
    text: String,
    origin: &'static str,
) -> Result<ChangeResult, Problem> {
    let text = Arc::new(text);
    s.documents
        .request(id, |reply| ApiRequest::ReplaceText {
            text: (*text).clone(),
            origin,
            reply,
        })
        .await
        .map(ChangeResult::from)
        .map_err(|e| doc_problem(id, e))
}

async fn load_at(s: &ApiState, id: &str, version: i64) -> Result<StoredDoc, Problem> {
    s.ctx.store.load_at(id, version).await.map_err(|e| match e {
        AtError::Compacted { .. } => Problem::new(
            StatusCode::CONFLICT,
            "version-compacted",
            "Version no longer available",
            e.to_string(),
        ),
        AtError::Store(e) => store_problem(e),
    })
}

/// Char counts of op-log rows stored without them (updates from WebSocket clients and Yjs
/// imports: the actor does not walk the text per update), by replaying them on a copy that
/// observes each one's delta; stored back so each row is replayed once. Rows that cannot be
/// replayed (compacted) are left out.
async fn replay_counts(s: &ApiState, id: &str, seqs: &[i64]) -> Vec<(i64, (i64, i64))> {
    let (Some(&first), Some(&last)) = (seqs.iter().min(), seqs.iter().max()) else {
        return Vec::new();
    };
    let Ok(base) = s.ctx.store.load_at(id, first - 1).await else {
        return Vec::new();
    };
    let Ok(ops) = s.ctx.store.ops_between(id, first - 1, last).await else {
        return Vec::new();
    };
    let doc_id = id.to_string();
    let counts = tokio::task::spawn_blocking(move || {
        use yrs::updates::decoder::Decode;
        use yrs::Transact;
        let doc = build_doc(&doc_id, &base);
        let mirror = Mirror::attach(&doc);
        mirror.lock().take_counts();
        let mut out = Vec::new();
        for op in ops {
            if let Ok(update) = yrs::Update::decode_v1(&op.update_v1) {
                let _ = doc.transact_mut().apply_update(update);
            }
            let (ins, del) = mirror.lock().take_counts();
            out.push((op.seq, (ins as i64, del as i64)));
        }
        out
    })
    .await
    .unwrap_or_default();
    let rows: Vec<(i64, i64, i64)> = counts
        .iter()
        .filter(|(seq, _)| seqs.contains(seq))
        .map(|&(seq, (ins, del))| (seq, ins, del))
        .collect();
    if let Err(err) = s.ctx.store.set_counts(id, &rows).await {
        tracing::debug!(doc = id, %err, "could not store history counts");
    }
    counts
}

async fn live_meta(s: &ApiState, id: &str) -> Result<DocMeta, Problem> {
    check_id(id)?;
    s.ctx
        .store
        .meta(id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| not_found(id))
}

fn check_id(id: &str) -> Result<(), Problem> {
    validate_doc_id(id).map_err(|why| Problem::not_found(format!("no document {id:?}: {why}")))
}

/// A 415 unless the request's Content-Type starts with `prefix`.
fn require_content_type(headers: &HeaderMap, prefix: &str, wanted: &str) -> Result<(), Problem> {
    let ok = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with(prefix));
    if ok {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("send the body with `Content-Type: {wanted}`"),
        ))
    }
}

fn check_name(name: Option<&str>) -> Result<(), Problem> {
    match name {
        Some(n) if n.chars().count() > MAX_NAME_CHARS => Err(Problem::bad_request(format!(
            "name is {} chars long: at most {MAX_NAME_CHARS} are allowed",
            n.chars().count()
        ))),
        _ => Ok(()),
    }
}

fn in_range(
    name: &str,
    value: Option<i64>,
    min: i64,
    max: i64,
    default: i64,
) -> Result<i64, Problem> {
    match value {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(v) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query parameters",
            format!("{name} must be in {min}..={max} (got {v})"),
        )),
    }
}

fn non_negative(name: &str, value: Option<i64>) -> Result<Option<i64>, Problem> {
    match value {
        Some(v) if v < 0 => Err(Problem::bad_request(format!(
            "{name} must be 0 or more (got {v})"
        ))),
        v => Ok(v),
    }
}

fn not_found(id: &str) -> Problem {
    Problem::not_found(format!("no document {id:?}"))
}

fn internal(what: &str) -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal error",
        what,
    )
}

fn store_problem(err: StoreError) -> Problem {
    Problem::unavailable(format!("the database is unavailable: {err}"))
}

fn doc_problem(id: &str, err: DocError) -> Problem {
    match err {
        DocError::NotFound => not_found(id),
        DocError::Stale { current } => Problem::new(
            StatusCode::CONFLICT,
            "unknown-version",
            "Version conflict",
            format!("the document moved on to version {current}"),
        )
        .with_current_version(current),
        DocError::UnknownVersion { current, .. } => Problem::new(
            StatusCode::CONFLICT,
            "unknown-version",
            "Unknown version",
            err.to_string(),
        )
        .with_current_version(current),
        DocError::Edit(e) => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-position",
            "Position out of range",
            e.to_string(),
        ),
        DocError::InvalidUpdate(_) => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-update",
            "Invalid Yjs update",
            err.to_string(),
        ),
        DocError::Unavailable(why) => Problem::unavailable(why),
        DocError::TooLarge(why) => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "document-too-large",
            "Document too large",
            why,
        ),
    }
}

fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// A new document id: [`NEW_ID_LEN`] base62 chars from the OS CSPRNG.
fn new_id() -> Result<String, Problem> {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut id = String::with_capacity(NEW_ID_LEN);
    while id.len() < NEW_ID_LEN {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| internal(&format!("no randomness: {e}")))?;
        // 248 = 4 × 62: taking bytes below it keeps every char equally likely.
        for b in bytes.into_iter().filter(|&b| b < 248) {
            if id.len() < NEW_ID_LEN {
                id.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(id)
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds (`2026-11-22T10:00:00.123Z`).
pub(crate) fn rfc3339(ms: i64) -> String {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
    }

    #[test]
    fn ids_are_long_base62_and_valid_ws_ids() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert_eq!(a.len(), NEW_ID_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert!(validate_doc_id(&a).is_ok());
        assert_ne!(a, b);
    }

    #[test]
    fn openapi_document_is_3_1_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&openapi().to_json().unwrap()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/api/documents",
            "/api/documents/{id}",
            "/api/documents/{id}/text",
            "/api/documents/{id}/edits",
            "/api/documents/{id}/history",
            "/api/documents/{id}/restore",
            "/api/documents/{id}/search",
            "/api/documents/{id}/complete",
            "/api/documents/{id}/update",
            "/api/tokens",
            "/api/tokens/revoke",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
    }
}
