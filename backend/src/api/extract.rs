//! What the REST handlers share to take a request apart: the document id in the path
//! ([`DocId`]), content-type checks, and the range checks of query parameters (pagination
//! limits, versions). The JSON body and query extractors that turn axum's rejections into
//! problems are [`ApiJson`](crate::problem::ApiJson) and [`ApiQuery`](crate::problem::ApiQuery).

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Deserializer};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, Required, Type};
use utoipa::IntoParams;

use crate::edit;
use crate::problem::Problem;
use crate::protocol::validate_doc_id;

/// The `id` path parameter's pattern, as the OpenAPI document states it.
const ID_PATTERN: &str = "^[A-Za-z0-9._-]{1,128}$";

/// The `{id}` of a `/documents/{id}/…` route, and its OpenAPI parameter.
///
/// Extracting it never fails over the id's form: a handler calls [`DocId::valid`] where it
/// checked the id before, so a malformed query or body is still refused (400, 413, 415) before
/// an invalid id is (404), as it always was.
pub(super) struct DocId(String);

impl DocId {
    /// The id, or a 404 naming why no document can have it.
    pub(super) fn valid(&self) -> Result<&str, Problem> {
        check_id(&self.0).map(|()| self.0.as_str())
    }
}

/// A 404 unless `id` is a valid document id.
pub(super) fn check_id(id: &str) -> Result<(), Problem> {
    validate_doc_id(id).map_err(|why| Problem::not_found(format!("no document {id:?}: {why}")))
}

impl<S: Send + Sync> FromRequestParts<S> for DocId {
    type Rejection = PathRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<DocId, PathRejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(DocId(id))
    }
}

impl IntoParams for DocId {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .description(Some("Document id"))
            .required(Required::True)
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(ID_PATTERN)),
            ))
            .build()]
    }
}

/// A 415 unless the request's Content-Type starts with `prefix`.
pub(super) fn require_content_type(
    headers: &HeaderMap,
    prefix: &str,
    wanted: &str,
) -> Result<(), Problem> {
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

/// A query parameter in `min..=max` (a page size, a context width), `default` when absent.
pub(super) fn in_range(
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

pub(super) fn non_negative(name: &str, value: Option<i64>) -> Result<Option<i64>, Problem> {
    match value {
        Some(v) if v < 0 => Err(Problem::bad_request(format!(
            "{name} must be 0 or more (got {v})"
        ))),
        v => Ok(v),
    }
}

/// An optional JSON integer (`null` or absent: none); `3.0` counts as 3.
pub(super) fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Int(#[serde(deserialize_with = "edit::json_i64")] i64);
    Ok(Option::<Int>::deserialize(d)?.map(|Int(v)| v))
}

/// Who is calling: the token's subject, when access control is on and the token names one.
/// It names the op-log rows the request makes.
#[derive(Debug, Clone, Default)]
pub(super) struct Caller(pub(super) Option<std::sync::Arc<str>>);

impl Caller {
    /// Where a change this request makes comes from.
    pub(super) fn source(&self, origin: &'static str) -> crate::document::Source {
        crate::document::Source {
            origin,
            author: self.0.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, Self::Rejection> {
        let sub = parts
            .extensions
            .get::<crate::auth::Access>()
            .and_then(|a| a.sub.as_deref());
        Ok(Caller(sub.map(std::sync::Arc::from)))
    }
}
