//! The REST API under `/api`: documents, text, edits (also against older versions), history and
//! time travel, search, autocomplete, Yjs update export/import, and the OpenAPI document that
//! describes all of it (generated from these handlers and types by utoipa).
//!
//! Everything that changes a document goes through its actor ([`ApiRequest`]), which commits it
//! to the op log before it answers and before it relays the change to WebSocket clients, so a
//! REST edit shows up live in editors and survives a crash once acknowledged. Work that needs the
//! op log (the text at an older version, edits against one) is done off the actor: the actor
//! answers `Stale`, [`crate::versions`] rebuilds that version from the store, and a change made
//! there comes back to the actor as a Yjs update, merged like a concurrent editor's.
//!
//! One module per resource: [`documents`], [`text`] (text and edits), [`history`] (history,
//! blame, named versions and restore), [`changes`] (the change feed), [`search`] (search and completion), [`yjs`] (update export/import), [`tokens`];
//! [`extract`] holds what their handlers share to read a request.
//!
//! [`ApiRequest`]: crate::document::ApiRequest

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi;

use crate::auth;
use crate::context::Context;
use crate::document::DocError;
use crate::documents::Documents;
use crate::edit::Edit;
use crate::problem::{problem_layer, Problem};
use crate::store::{AtError, StoreError};
use crate::versions::VersionError;

pub mod changes;
pub mod documents;
pub mod extract;
pub mod history;
pub mod search;
pub mod text;
pub mod tokens;
pub mod yjs;

pub use documents::{CreateDocument, DocumentInfo, DocumentList, ListParams, RenameDocument};
pub use history::{History, HistoryEntry, HistoryParams, RestoreRequest};
pub use search::{
    Case, CompleteParams, Completion, Completions, SearchMatch, SearchParams, SearchResults,
};
pub use text::{ChangeResult, EditRequest, TextParams};

/// Length of the ids `POST /api/documents` makes: 22 base62 chars hold 130 random bits.
const NEW_ID_LEN: usize = 22;

#[derive(Clone)]
struct ApiState {
    ctx: Arc<Context>,
    documents: Arc<Documents>,
    /// Blame indexes of recently blamed documents.
    blame: Arc<crate::blame::IndexCache>,
}

/// The `/api` routes, to be nested under `/api`, with their body limit and problem responses.
pub fn router<S: Clone + Send + Sync + 'static>(
    ctx: Arc<Context>,
    documents: Arc<Documents>,
) -> Router<S> {
    let limit = ctx.config.max_body_bytes;
    let cors = cors_layer(&ctx.config.cors_origins);
    let gate = middleware::from_fn_with_state(ctx.auth.clone(), auth::rest_layer);
    let router = Router::new()
        .route(
            "/documents",
            get(documents::list_documents).post(documents::create_document),
        )
        .route(
            "/documents/{id}",
            get(documents::get_document)
                .patch(documents::rename_document)
                .delete(documents::delete_document),
        )
        .route(
            "/documents/{id}/text",
            get(text::get_text).put(text::put_text),
        )
        .route("/documents/{id}/edits", post(text::post_edits))
        .route("/documents/{id}/history", get(history::get_history))
        .route("/documents/{id}/restore", post(history::post_restore))
        .route("/documents/{id}/diff", get(history::get_diff))
        .route("/documents/{id}/blame", get(history::get_blame))
        .route("/documents/{id}/changes", get(changes::get_changes))
        .route(
            "/documents/{id}/versions",
            post(history::post_version).get(history::list_versions),
        )
        .route(
            "/documents/{id}/versions/{name}",
            get(history::get_version).delete(history::delete_version),
        )
        .route("/documents/{id}/search", get(search::search))
        .route("/documents/{id}/complete", get(search::complete))
        .route(
            "/documents/{id}/update",
            get(yjs::get_update).post(yjs::post_update),
        )
        .route("/tokens", post(tokens::mint_token))
        .route("/tokens/revoke", post(tokens::revoke_token))
        .route("/openapi.json", get(openapi_json))
        .fallback(|| async { Problem::not_found("no such API endpoint: see /api/openapi.json") })
        .with_state(ApiState {
            ctx,
            documents,
            blame: Arc::default(),
        })
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
    use tower_http::cors::AllowOrigin;
    if origins.iter().any(|o| o.trim() == "*") {
        return Some(cors_with(AllowOrigin::any()));
    }
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
    Some(cors_with(AllowOrigin::list(origins)))
}

fn cors_with(origins: tower_http::cors::AllowOrigin) -> tower_http::cors::CorsLayer {
    use axum::http::{header, Method};
    tower_http::cors::CorsLayer::new()
        .allow_origin(origins)
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
        .max_age(std::time::Duration::from_secs(600))
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
        documents::create_document,
        documents::list_documents,
        documents::get_document,
        documents::rename_document,
        documents::delete_document,
        text::get_text,
        text::put_text,
        text::post_edits,
        history::get_history,
        history::post_restore,
        history::get_diff,
        history::get_blame,
        changes::get_changes,
        history::post_version,
        history::list_versions,
        history::get_version,
        history::delete_version,
        search::search,
        search::complete,
        yjs::get_update,
        yjs::post_update,
        tokens::mint_token,
        tokens::revoke_token,
    ),
    components(schemas(Problem, Edit, history::Grouping)),
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
// Errors and formats every resource shares

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

/// A failed rebuild of an older version; `what` names the work if the rebuild itself failed.
fn version_problem(id: &str, err: VersionError, what: &str) -> Problem {
    match err {
        VersionError::At(e @ AtError::Compacted { .. }) => Problem::new(
            StatusCode::CONFLICT,
            "version-compacted",
            "Version no longer available",
            e.to_string(),
        ),
        VersionError::At(AtError::Store(e)) => store_problem(e),
        VersionError::Edit(e) => doc_problem(id, DocError::Edit(e)),
        VersionError::Rebuild => internal(what),
    }
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

/// A new document (or token) id: [`NEW_ID_LEN`] base62 chars from the OS CSPRNG.
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
    use crate::protocol::validate_doc_id;

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
