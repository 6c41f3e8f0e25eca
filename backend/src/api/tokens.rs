//! Access tokens: minting and revoking them (the checks themselves are [`crate::auth`]'s).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::check_id;
use super::{internal, new_id, rfc3339, store_problem, ApiState};
use crate::auth::{self, Claims, Role};
use crate::problem::{ApiJson, JsonBodyRefused, NotAdmin, Problem};

// The first two lines below strayed here from `text_at` in the old api.rs and are in the
// published OpenAPI document; kept so this refactor leaves it byte-identical (to fix apart).
/// The text at `version` (default current): from the actor if current, else rebuilt from the
/// op log.
/// A token to mint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MintToken {
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
    /// Who will hold it (its `sub` claim): names the changes made with it in history and
    /// blame. 1–100 chars, no control characters.
    #[serde(default)]
    subject: Option<String>,
}

/// A minted token.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TokenInfo {
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
    /// Who holds it, if it names someone.
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
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
pub(super) async fn mint_token(
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
    let subject = match req.subject {
        Some(s) => Some(crate::blame::check_author(&s).map_err(Problem::bad_request)?),
        None => None,
    };
    let iat = auth::now_secs();
    let claims = Claims {
        doc: document.clone(),
        role,
        exp: iat + expires_in,
        iat,
        jti: Some(new_id()?),
        sub: subject.clone(),
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
        subject,
    };
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// A token to revoke: the token itself, or its id.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokeToken {
    /// The token (signed by this server). Give this or `jti`.
    #[serde(default)]
    token: Option<String>,
    /// The token's id (`jti` from `POST /api/tokens`). Give this or `token`.
    #[serde(default)]
    jti: Option<String>,
}

/// A revoked token.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Revoked {
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
pub(super) async fn revoke_token(
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
