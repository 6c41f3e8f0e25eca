//! RFC 9457 problem details: the body of every 4xx and 5xx the REST API sends.
//!
//! Handlers return [`Problem`]s; the extractors here ([`ApiJson`], [`ApiQuery`]) turn axum's
//! rejections into problems with the right status (bad JSON is a 400, not axum's 422); and
//! [`problem_layer`] rewrites whatever error response still is not one (axum's 404 and 405,
//! tower-http's 413 for an over-long body) so no client ever sees a plain-text error.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

pub const CONTENT_TYPE_PROBLEM: &str = "application/problem+json";

/// Largest error body [`problem_layer`] reads to use as a problem's detail.
const MAX_DETAIL_BYTES: usize = 4096;

/// A problem details object (RFC 9457). `type` is a URN naming the kind of problem, one of
/// those listed in the OpenAPI document's description; `detail` says what to change.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "urn:quire:problem:invalid-position",
    "title": "Position out of range",
    "status": 400,
    "detail": "edits[0]: char position 9 is out of range: valid positions are 0..=5"
}))]
pub struct Problem {
    /// URI naming the kind of problem (`urn:quire:problem:…`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong this time, and what would have been accepted.
    pub detail: String,
    /// The document's current version, for version conflicts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:quire:problem:{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            current_version: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }

    pub fn with_current_version(mut self, version: i64) -> Problem {
        self.current_version = Some(version);
        self
    }

    /// A problem for a status with no more specific kind.
    fn generic(status: StatusCode, detail: String) -> Problem {
        let title = status.canonical_reason().unwrap_or("Error");
        let slug = match status {
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            s if s.is_server_error() => "internal",
            _ => "bad-request",
        };
        let detail = if detail.trim().is_empty() {
            title.to_string()
        } else {
            detail.trim().to_string()
        };
        Problem::new(status, slug, title, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_PROBLEM))],
            body,
        )
            .into_response()
    }
}

/// `axum::Json` of a JSON object whose rejections are problems: syntax and data errors are 400
/// (naming the field and place), a missing `Content-Type: application/json` is 415, an over-long
/// body 413.
///
/// The body must be an object: serde's derived structs also take an array of their fields in
/// order, so without this check `[null]` renamed a document and `[]` minted a token.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(json_problem)?;
        if !value.is_object() {
            return Err(not_an_object(&value));
        }
        // Decoded again from bytes so data errors name the field's path as axum's do.
        let bytes = serde_json::to_vec(&value)
            .map_err(|e| Problem::generic(StatusCode::BAD_REQUEST, e.to_string()))?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
}

/// The 400 for a JSON body that is valid JSON but not an object.
pub fn not_an_object(value: &serde_json::Value) -> Problem {
    let kind = match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    };
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-json",
        "Invalid JSON body",
        format!("the body must be a JSON object, not {kind}"),
    )
}

fn json_problem(rejection: JsonRejection) -> Problem {
    let status = rejection.status();
    let detail = rejection.body_text();
    match rejection {
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-json",
            "Invalid JSON body",
            detail,
        ),
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => body_too_large(),
        _ => Problem::generic(status, detail),
    }
}

/// `axum::extract::Query` whose rejections are 400 problems naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(query_problem(rejection)),
        }
    }
}

fn query_problem(rejection: QueryRejection) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-query",
        "Invalid query parameters",
        rejection.body_text(),
    )
}

/// Builds OpenAPI responses of `application/problem+json` bodies for `(status, description)`
/// pairs: what the `problem_responses!` sets below are made of.
fn problem_bodies(
    list: &[(u16, &str)],
) -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
    list.iter()
        .map(|&(status, description)| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            let response = ResponseBuilder::new()
                .description(description)
                .content(CONTENT_TYPE_PROBLEM, content)
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

/// Declares named sets of problem responses for `#[utoipa::path(responses(...))]`, so the
/// answers many endpoints share are written once.
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident = [$(($status:literal, $description:literal)),+ $(,)?];)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
                problem_bodies(&[$(($status, $description)),+])
            }
        }
    )*};
}

problem_responses! {
    /// 404: the document does not exist.
    NoSuchDocument = [(404, "No such document")];
    /// 503: the database does not answer.
    DatabaseUnavailable = [(503, "Database unavailable")];
    /// 503: the database, or the document's loading, is unavailable.
    Unavailable = [(503, "Unavailable")];
    /// 400: a query parameter is malformed or out of range.
    InvalidParameters = [(400, "Invalid parameters")];
    /// 409: `version` names a version that never was, or one compacted away.
    UnknownVersion = [(409, "Unknown or compacted version")];
    /// 413: the body is over `--max-body-bytes`.
    BodyTooLarge = [(413, "Body too large")];
    /// 413 and 415: what any endpoint taking a JSON body may answer besides its own 400.
    JsonBodyRefused = [(413, "Body too large"), (415, "Not JSON")];
    /// 403: the endpoint needs an admin token.
    NotAdmin = [(403, "Not an admin token")];
}

pub fn body_too_large() -> Problem {
    crate::metrics::get().limit_hit(crate::metrics::Limit::BodySize);
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "Request body too large",
        "the request body is over the server's limit (--max-body-bytes)",
    )
}

/// Middleware: turns any error response that is not a problem yet into one, keeping its status
/// and headers (a 405's `Allow`) and using its text as the detail.
pub async fn problem_layer(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(CONTENT_TYPE_PROBLEM.as_bytes()));
    if is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let detail = match axum::body::to_bytes(body, MAX_DETAIL_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let problem = if status == StatusCode::PAYLOAD_TOO_LARGE {
        body_too_large()
    } else {
        Problem::generic(status, detail)
    };
    let fresh = problem.into_response();
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_PROBLEM));
    Response::from_parts(parts, fresh.into_body())
}
