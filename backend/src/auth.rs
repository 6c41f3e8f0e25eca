//! Access tokens: HMAC-SHA256-signed JWTs (RFC 7519, `alg: HS256`) naming a document (or all,
//! `"*"`), a role and an expiry.
//!
//! With `--auth-secret` set, every WebSocket (`?token=`, which is how y-websocket's `params`
//! travel) and every REST request (`Authorization: Bearer`, or `?token=`) needs one; the
//! secret itself, as a bearer, is the admin credential that mints tokens (`POST /api/tokens`).
//! Without a secret quire is open and says so at start-up.
//!
//! Roles: `read-only` (REST: GET only; WebSocket: receives everything, its updates are refused
//! with the protocol's permission-denied message, its awareness — cursors — is relayed),
//! `read-write`, and `admin` (read-write on every document, and may mint tokens).
//!
//! The JWT is made here with the `hmac`/`sha2` crates (already in the build through sqlx) rather
//! than `jsonwebtoken`, whose current version needs a whole crypto provider for one MAC.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::metrics::ErrorKind;
use crate::problem::Problem;

/// Longest lifetime `POST /api/tokens` grants: one year.
pub const MAX_TOKEN_SECS: u64 = 365 * 86_400;
/// Lifetime when none is asked for: one day.
pub const DEFAULT_TOKEN_SECS: u64 = 86_400;

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Read the document and see its updates and presence; change nothing.
    ReadOnly,
    /// Read and change the document.
    ReadWrite,
    /// Read and change every document, and mint tokens.
    Admin,
}

impl Role {
    pub fn can_write(self) -> bool {
        !matches!(self, Role::ReadOnly)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::ReadWrite => "read-write",
            Role::Admin => "admin",
        }
    }
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The document id, or `"*"` for every document.
    pub doc: String,
    pub role: Role,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: u64,
    /// The token's id, by which it can be revoked (`POST /api/tokens/revoke`). Tokens minted
    /// before revocation existed have none: they stay valid until they expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Who holds it: names the op-log rows its holder makes (history, blame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

/// What a request may do once its token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub doc: String,
    pub role: Role,
    /// Unix seconds; `None` when quire runs open.
    pub exp: Option<u64>,
    /// The token's id (`jti`), when it has one: a live connection watches it for revocation.
    pub jti: Option<String>,
    /// Who holds it (`sub`), when the token says.
    pub sub: Option<String>,
}

impl Access {
    /// Everything, for ever: quire without `--auth-secret`.
    pub fn open() -> Access {
        Access {
            doc: "*".into(),
            role: Role::Admin,
            exp: None,
            jti: None,
            sub: None,
        }
    }

    pub fn covers(&self, doc: &str) -> bool {
        self.doc == "*" || self.doc == doc
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this server requires an access token: send `Authorization: Bearer TOKEN` (REST) or `?token=TOKEN` (WebSocket)")]
    Missing,
    #[error("invalid access token: {0}")]
    Invalid(String),
    #[error("the access token expired; ask for a new one")]
    Expired,
    #[error("the access token was revoked; ask for a new one")]
    Revoked,
    #[error("the access token is for document {0:?}, not this one")]
    WrongDocument(String),
    #[error("the access token is read-only: only GET requests are allowed")]
    ReadOnly,
    #[error("minting tokens needs the admin secret or an admin token")]
    NotAdmin,
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing
            | AuthError::Invalid(_)
            | AuthError::Expired
            | AuthError::Revoked => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        }
    }

    pub fn metric(&self) -> ErrorKind {
        if self.status() == StatusCode::UNAUTHORIZED {
            ErrorKind::Unauthenticated
        } else {
            ErrorKind::Forbidden
        }
    }

    pub fn problem(&self) -> Response {
        let (slug, title) = if self.status() == StatusCode::UNAUTHORIZED {
            ("unauthorized", "Unauthorized")
        } else {
            ("forbidden", "Forbidden")
        };
        let mut resp = Problem::new(self.status(), slug, title, self.to_string()).into_response();
        if self.status() == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The signing key, if quire runs with access control.
pub struct Auth {
    secret: Option<Vec<u8>>,
    /// SHA-256 of the secret, to recognise it as an admin bearer without keeping a second copy
    /// in a comparable form.
    secret_hash: Option<[u8; 32]>,
    /// Revoked token ids and their tokens' expiry (Unix seconds): loaded from the store at
    /// start, added to by `POST /api/tokens/revoke` (after the store has them).
    revoked: RwLock<HashMap<String, u64>>,
    /// Bumped on every revocation, so live connections re-check their token at once.
    revocations: tokio::sync::watch::Sender<u64>,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Auth {
    pub fn new(secret: Option<String>) -> Auth {
        let secret = secret.filter(|s| !s.is_empty()).map(String::into_bytes);
        let secret_hash = secret.as_ref().map(|s| Sha256::digest(s).into());
        Auth {
            secret,
            secret_hash,
            revoked: RwLock::new(HashMap::new()),
            revocations: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Marks token ids revoked (their tokens' expiry, Unix seconds, lets the list be pruned),
    /// and tells live connections to re-check their tokens.
    pub fn revoke(&self, ids: impl IntoIterator<Item = (String, u64)>) {
        let now = now_secs();
        let added = {
            let mut revoked = self.revoked.write().unwrap_or_else(|e| e.into_inner());
            revoked.retain(|_, exp| *exp > now);
            let mut added = false;
            for (jti, exp) in ids.into_iter().filter(|(_, exp)| *exp > now) {
                added |= revoked.insert(jti, exp).is_none();
            }
            added
        };
        // Re-reading the list from the store (another server's revocations) wakes connections
        // only when it brought something new.
        if added {
            self.revocations.send_modify(|g| *g += 1);
        }
    }

    /// True when the token id `jti` was revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(jti)
    }

    /// How many revoked tokens (not yet expired) are held.
    pub fn revoked_count(&self) -> usize {
        self.revoked.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// A receiver that changes whenever a token is revoked.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    pub fn enabled(&self) -> bool {
        self.secret.is_some()
    }

    fn mac(&self) -> Option<Hmac<Sha256>> {
        let secret = self.secret.as_ref()?;
        Some(Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length"))
    }

    /// A signed token for `claims`; `None` when quire runs open (nothing to sign with).
    pub fn sign(&self, claims: &Claims) -> Option<String> {
        let mut mac = self.mac()?;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).ok()?);
        let signing_input = format!("{header}.{payload}");
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Some(format!("{signing_input}.{sig}"))
    }

    /// Checks a token (or the admin secret itself) and says what it allows.
    pub fn verify(&self, token: &str) -> Result<Access, AuthError> {
        if !self.enabled() {
            return Ok(Access::open());
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if self
            .secret_hash
            .is_some_and(|h| h[..] == Sha256::digest(token.as_bytes())[..])
        {
            return Ok(Access::open());
        }
        let claims = self.signed_claims(token)?;
        if claims.exp <= now_secs() {
            return Err(AuthError::Expired);
        }
        if claims.jti.as_deref().is_some_and(|j| self.is_revoked(j)) {
            return Err(AuthError::Revoked);
        }
        Ok(Access {
            doc: claims.doc,
            role: claims.role,
            exp: Some(claims.exp),
            jti: claims.jti,
            sub: claims.sub,
        })
    }

    /// A JWT's claims once its signature checks out, whether or not it has expired or was
    /// revoked.
    pub fn signed_claims(&self, token: &str) -> Result<Claims, AuthError> {
        let Some(mut mac) = self.mac() else {
            return Err(AuthError::Invalid("access control is off".into()));
        };
        let invalid = |why: &str| AuthError::Invalid(why.to_string());
        let mut parts = token.trim().split('.');
        let (Some(header), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a JWT (three dot-separated parts)"));
        };
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| invalid("signature is not base64url"))?;
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| invalid("bad signature"))?;
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| invalid("header is not base64url JSON"))?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(invalid("only alg HS256 is accepted"));
        }
        URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or_else(|| invalid("claims are not base64url JSON with doc, role and exp"))
    }

    /// Access for a request to `doc` (or to the collection, `None`) with `token`.
    pub fn check(
        &self,
        token: Option<&str>,
        doc: Option<&str>,
        write: bool,
    ) -> Result<Access, AuthError> {
        if !self.enabled() {
            return Ok(Access::open());
        }
        let access = self.verify(token.ok_or(AuthError::Missing)?)?;
        match doc {
            Some(doc) if !access.covers(doc) => {
                return Err(AuthError::WrongDocument(access.doc));
            }
            // The list and create routes cover every document.
            None if access.doc != "*" => return Err(AuthError::WrongDocument(access.doc)),
            _ => {}
        }
        if write && !access.role.can_write() {
            return Err(AuthError::ReadOnly);
        }
        Ok(access)
    }
}

/// The `token` query parameter, percent-decoded.
pub fn query_token(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let value = pair.strip_prefix("token=")?;
        Some(percent_decode(value))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Authorization: Bearer TOKEN`.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// The URI as logs may show it: a `token` query parameter's value replaced by `REDACTED`.
pub fn redacted_uri(uri: &Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.to_string();
    };
    let query: Vec<&str> = query
        .split('&')
        .map(|p| {
            if p.starts_with("token=") {
                "token=REDACTED"
            } else {
                p
            }
        })
        .collect();
    format!("{}?{}", uri.path(), query.join("&"))
}

/// The URI without its `token` query parameter (so handlers' strict query parsing never sees
/// it, and it is not logged further down).
fn without_token(uri: &Uri) -> Option<Uri> {
    let query = uri.query()?;
    if !query.split('&').any(|p| p.starts_with("token=")) {
        return None;
    }
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| !p.starts_with("token=") && !p.is_empty())
        .collect();
    let path_and_query = if rest.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), rest.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    Uri::from_parts(parts).ok()
}

/// The REST API's gate (a layer on `/api`): every route but the OpenAPI document needs a
/// token covering its document; read-only tokens may only GET; `/api/tokens` needs admin.
pub async fn rest_layer(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    // The `token` parameter is ours, not the handlers'.
    let query_token = query_token(req.uri().query());
    if let Some(uri) = without_token(req.uri()) {
        *req.uri_mut() = uri;
    }
    if !auth.enabled() {
        return next.run(req).await;
    }
    let path = req.uri().path();
    let path = path.strip_prefix("/api").unwrap_or(path);
    if path == "/openapi.json" || req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let token = bearer(req.headers()).or(query_token);
    let result = if path == "/tokens" || path.starts_with("/tokens/") {
        auth.check(token.as_deref(), None, false).and_then(|a| {
            if a.role == Role::Admin {
                Ok(a)
            } else {
                Err(AuthError::NotAdmin)
            }
        })
    } else {
        let doc = path
            .strip_prefix("/documents/")
            .map(|rest| rest.split('/').next().unwrap_or(rest));
        let write = !matches!(*req.method(), Method::GET | Method::HEAD);
        auth.check(token.as_deref(), doc, write)
    };
    match result {
        Ok(access) => {
            req.extensions_mut().insert(access);
            next.run(req).await
        }
        Err(err) => {
            crate::metrics::get().error(err.metric());
            tracing::debug!(%err, method = %req.method(), path = %req.uri().path(), "REST request refused");
            err.problem()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(doc: &str, role: Role, exp: u64) -> Claims {
        Claims {
            doc: doc.into(),
            role,
            exp,
            iat: 0,
            jti: None,
            sub: None,
        }
    }

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let auth = Auth::new(Some("s3cret".into()));
        let t = auth
            .sign(&claims("doc1", Role::ReadOnly, now_secs() + 60))
            .unwrap();
        let a = auth.verify(&t).unwrap();
        assert_eq!((a.doc.as_str(), a.role), ("doc1", Role::ReadOnly));
        let other = Auth::new(Some("other".into()));
        assert!(matches!(other.verify(&t), Err(AuthError::Invalid(_))));
        let mut bad = t.clone();
        bad.pop();
        assert!(auth.verify(&bad).is_err());
        let expired = auth.sign(&claims("doc1", Role::ReadWrite, 1)).unwrap();
        assert_eq!(auth.verify(&expired), Err(AuthError::Expired));
        assert_eq!(auth.verify("s3cret").unwrap().role, Role::Admin);
    }

    #[test]
    fn revoked_tokens_are_refused_and_others_are_not() {
        let auth = Auth::new(Some("k".into()));
        let exp = now_secs() + 60;
        let with_id = |jti: &str| Claims {
            jti: Some(jti.into()),
            ..claims("a", Role::ReadWrite, exp)
        };
        let one = auth.sign(&with_id("one")).unwrap();
        let two = auth.sign(&with_id("two")).unwrap();
        let old = auth.sign(&claims("a", Role::ReadWrite, exp)).unwrap();
        let mut changes = auth.revocations();
        auth.revoke([("one".to_string(), exp), ("gone".to_string(), 1)]);
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert_eq!(auth.verify(&one), Err(AuthError::Revoked));
        assert_eq!(auth.verify(&two).unwrap().jti.as_deref(), Some("two"));
        assert!(auth.verify(&old).is_ok(), "tokens without a jti stay valid");
        assert_eq!(auth.revoked_count(), 1, "already-expired ids are not kept");
        assert_eq!(AuthError::Revoked.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn check_enforces_document_and_role() {
        let auth = Auth::new(Some("k".into()));
        let ro = auth
            .sign(&claims("a", Role::ReadOnly, now_secs() + 60))
            .unwrap();
        assert!(auth.check(Some(&ro), Some("a"), false).is_ok());
        assert_eq!(
            auth.check(Some(&ro), Some("a"), true),
            Err(AuthError::ReadOnly)
        );
        assert!(matches!(
            auth.check(Some(&ro), Some("b"), false),
            Err(AuthError::WrongDocument(_))
        ));
        assert!(matches!(
            auth.check(Some(&ro), None, false),
            Err(AuthError::WrongDocument(_))
        ));
        assert_eq!(auth.check(None, Some("a"), false), Err(AuthError::Missing));
        assert!(Auth::new(None).check(None, Some("a"), true).is_ok());
    }

    #[test]
    fn token_query_parameter() {
        assert_eq!(query_token(Some("a=1&token=x%2Ey")), Some("x.y".into()));
        assert_eq!(query_token(Some("a=1")), None);
        let uri: Uri = "/api/documents?token=abc&limit=3".parse().unwrap();
        assert_eq!(
            without_token(&uri).unwrap().to_string(),
            "/api/documents?limit=3"
        );
    }
}
