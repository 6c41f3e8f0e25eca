//! Same origin by default: which web pages may change documents or open a WebSocket, and which
//! host names the server answers to.
//!
//! quire listens on 127.0.0.1 without auth by default, and any web page the user visits can
//! reach that address. Three checks keep such a page out:
//! - `Origin`: a WebSocket upgrade or a state-changing request (anything but GET, HEAD and
//!   OPTIONS) that carries an `Origin` must come from this server's own origin or one listed
//!   with `--cors-origin` (`*` allows any). Requests without `Origin` (curl, the terminal
//!   editor, other servers) are not browser pages and pass.
//! - `Host`: DNS rebinding points a page's own name at 127.0.0.1, making its requests
//!   same-origin; the `Host` it sends is still that name. A server listening on a loopback
//!   address answers only `localhost`, `127.0.0.1` and `[::1]`, plus names given with
//!   `--allowed-host`; one listening elsewhere answers any name unless `--allowed-host` is set.
//! - JSON bodies are taken only with a JSON content type (`api::documents`), so a page cannot
//!   send one as a "simple" `text/plain` request that skips the CORS preflight.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN, UPGRADE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::metrics::{self, ErrorKind};
use crate::problem::Problem;

/// Names a loopback listener answers to.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The checks, from the settings (see the module documentation).
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// Other origins allowed (`--cors-origin`), lowercased, without a trailing slash.
    origins: Vec<String>,
    any_origin: bool,
    /// Host names answered (without port); `None`: any.
    hosts: Option<Vec<String>>,
}

impl OriginPolicy {
    pub fn new(listen: SocketAddr, cors_origins: &[String], allowed_hosts: &[String]) -> Self {
        let origins: Vec<String> = cors_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        let any_origin = origins.iter().any(|o| o == "*");
        let mut hosts: Vec<String> = allowed_hosts
            .iter()
            .map(|h| host_name(h.trim()).to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let hosts = if listen.ip().is_loopback() {
            hosts.extend(LOOPBACK_NAMES.iter().map(|h| h.to_string()));
            Some(hosts)
        } else if hosts.is_empty() {
            None
        } else {
            Some(hosts)
        };
        OriginPolicy {
            origins,
            any_origin,
            hosts,
        }
    }

    /// Why a request with these headers and method is refused, if it is.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), Problem> {
        let host = headers.get(HOST).and_then(|h| h.to_str().ok());
        if let (Some(hosts), Some(host)) = (&self.hosts, host) {
            let name = host_name(host).to_ascii_lowercase();
            if !hosts.contains(&name) {
                return Err(Problem::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    "host-not-allowed",
                    "Host not served",
                    format!(
                        "this server does not answer to the name {name:?}; use one of {} or start it with --allowed-host {name}",
                        hosts.join(", ")
                    ),
                ));
            }
        }
        let upgrade = headers.contains_key(UPGRADE);
        let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !(upgrade || changes) || self.any_origin {
            return Ok(());
        }
        let Some(origin) = headers.get(ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("").trim().to_ascii_lowercase();
        let same = host.is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
        });
        if same || self.origins.contains(&origin) {
            return Ok(());
        }
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "origin-not-allowed",
            "Origin not allowed",
            format!(
                "a page from {origin} may not change documents or open them live here; serve the page from this server or start quire with --cors-origin {origin}"
            ),
        ))
    }
}

/// `host:port`, `[v6]:port` or `host` → the host part (brackets kept for IPv6).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The middleware: every route passes through [`OriginPolicy::check`].
pub async fn guard(State(policy): State<Arc<OriginPolicy>>, req: Request, next: Next) -> Response {
    match policy.check(req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(problem) => {
            metrics::get().error(ErrorKind::Forbidden);
            tracing::info!(
                method = %req.method(),
                host = ?req.headers().get(HOST),
                origin = ?req.headers().get(ORIGIN),
                "request refused: {}",
                problem.detail
            );
            problem.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: &str, origin: Option<&str>, upgrade: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        if upgrade {
            h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        }
        h
    }

    fn status(p: &OriginPolicy, method: Method, h: &HeaderMap) -> u16 {
        match p.check(&method, h) {
            Ok(()) => 200,
            Err(problem) => problem.status,
        }
    }

    #[test]
    fn a_loopback_server_answers_its_own_names_and_origin_only() {
        let p = OriginPolicy::new("127.0.0.1:8080".parse().unwrap(), &[], &[]);
        let own = "http://127.0.0.1:8080";
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
        ] {
            assert_eq!(
                status(&p, Method::GET, &headers(host, None, false)),
                200,
                "{host}"
            );
        }
        // DNS rebinding: a page's own name pointed at 127.0.0.1.
        assert_eq!(
            status(&p, Method::GET, &headers("evil.example:8080", None, false)),
            421
        );
        assert_eq!(
            status(
                &p,
                Method::GET,
                &headers("127.0.0.1.evil.example", None, false)
            ),
            421
        );
        // Another page's WebSocket or POST; a read of its own is harmless (no CORS headers).
        let evil = Some("https://evil.example");
        assert_eq!(
            status(&p, Method::GET, &headers("127.0.0.1:8080", evil, true)),
            403
        );
        assert_eq!(
            status(&p, Method::POST, &headers("127.0.0.1:8080", evil, false)),
            403
        );
        assert_eq!(
            status(
                &p,
                Method::DELETE,
                &headers("127.0.0.1:8080", Some("null"), false)
            ),
            403
        );
        assert_eq!(
            status(&p, Method::GET, &headers("127.0.0.1:8080", evil, false)),
            200
        );
        // The same origin, and tools that send no Origin.
        assert_eq!(
            status(&p, Method::GET, &headers("127.0.0.1:8080", Some(own), true)),
            200
        );
        assert_eq!(
            status(
                &p,
                Method::PUT,
                &headers("127.0.0.1:8080", Some(own), false)
            ),
            200
        );
        assert_eq!(
            status(&p, Method::POST, &headers("127.0.0.1:8080", None, false)),
            200
        );
        // Same host, another port: another origin.
        let other_port = Some("http://127.0.0.1:3000");
        assert_eq!(
            status(
                &p,
                Method::POST,
                &headers("127.0.0.1:8080", other_port, false)
            ),
            403
        );
    }

    #[test]
    fn listed_origins_and_hosts_are_let_in() {
        let p = OriginPolicy::new(
            "127.0.0.1:8080".parse().unwrap(),
            &["https://App.example/".into()],
            &["quire.internal:8080".into()],
        );
        let app = Some("https://app.example");
        assert_eq!(
            status(&p, Method::POST, &headers("127.0.0.1:8080", app, false)),
            200
        );
        assert_eq!(
            status(&p, Method::GET, &headers("quire.internal", app, true)),
            200
        );
        assert_eq!(
            status(&p, Method::GET, &headers("other.internal", None, false)),
            421
        );
        let any = OriginPolicy::new("127.0.0.1:8080".parse().unwrap(), &["*".into()], &[]);
        assert_eq!(
            status(
                &any,
                Method::POST,
                &headers("localhost", Some("https://x.example"), false)
            ),
            200
        );
    }

    #[test]
    fn a_public_listener_answers_any_name_unless_told() {
        let open = OriginPolicy::new("0.0.0.0:8080".parse().unwrap(), &[], &[]);
        assert_eq!(
            status(
                &open,
                Method::GET,
                &headers("quire.example.com", None, false)
            ),
            200
        );
        let own = Some("https://quire.example.com");
        assert_eq!(
            status(&open, Method::GET, &headers("quire.example.com", own, true)),
            200
        );
        let evil = Some("https://evil.example");
        assert_eq!(
            status(
                &open,
                Method::GET,
                &headers("quire.example.com", evil, true)
            ),
            403
        );
        let named = OriginPolicy::new(
            "0.0.0.0:8080".parse().unwrap(),
            &[],
            &["quire.example.com".into()],
        );
        assert_eq!(
            status(&named, Method::GET, &headers("10.0.0.5:8080", None, false)),
            421
        );
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("a.example:80"), "a.example");
        assert_eq!(host_name("a.example"), "a.example");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
    }
}
