//! The browser editor: `web/dist` (built by `npm run build --prefix web` and committed) is
//! embedded in the binary, so `cargo run` serves a working page without Node.js.
//!
//! - `/` (document list) and `/d/{id}` (editor): `index.html`, `no-cache`, so a new build is
//!   picked up at once.
//! - `/assets/{file}`: the bundle. `index.html` names every asset with `?v=<crc32 of the file>`;
//!   a request whose `v` matches the embedded file is cacheable for a year (`immutable`), any
//!   other request must revalidate.
//! - Every response carries a weak ETag and answers a matching `If-None-Match` with 304.
//! - The bundle is gzipped at build time (`app.js.gz`, level 9) and sent as is to clients that
//!   accept gzip: no compression work per request, even in a debug build. The small rest goes
//!   through tower-http's `CompressionLayer`.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::compression::CompressionLayer;

use crate::protocol::validate_doc_id;

/// The page's policy: its own scripts only; inline styles because CodeMirror injects its
/// theme as `<style>` elements; WebSocket and fetch to this origin only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// One embedded file of `web/dist`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// `body` gzipped at build time (`<name>.gz`), for the large files.
    gzip: Option<&'static [u8]>,
    /// CRC-32 of `body` as 8 hex digits: the `v` that `index.html` puts in asset URLs.
    version: String,
    etag: HeaderValue,
}

macro_rules! dist {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/dist/", $name)) as &[u8]
    };
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    [
        (
            "index.html",
            "text/html; charset=utf-8",
            dist!("index.html"),
            None,
        ),
        (
            "app.js",
            "text/javascript; charset=utf-8",
            dist!("app.js"),
            Some(dist!("app.js.gz")),
        ),
        (
            "app.css",
            "text/css; charset=utf-8",
            dist!("app.css"),
            Some(dist!("app.css.gz")),
        ),
        (
            "boot.js",
            "text/javascript; charset=utf-8",
            dist!("boot.js"),
            None,
        ),
        ("favicon.svg", "image/svg+xml", dist!("favicon.svg"), None),
    ]
    .into_iter()
    .map(|(name, content_type, body, gzip)| {
        let version = format!("{:08x}", crc32fast::hash(body));
        let etag = HeaderValue::from_str(&format!("W/\"{version}-{}\"", body.len()))
            .expect("an ETag of hex digits is a valid header value");
        Asset {
            name,
            content_type,
            body,
            gzip,
            version,
            etag,
        }
    })
    .collect()
});

fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The routes of the page, to merge into the server's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/d/{doc}", get(editor))
        .route("/assets/{file}", get(static_file))
        .layer(CompressionLayer::new())
}

async fn index(headers: HeaderMap) -> Response {
    serve_page(&headers)
}

async fn editor(Path(doc): Path<String>, headers: HeaderMap) -> Response {
    if let Err(msg) = validate_doc_id(&doc) {
        return (StatusCode::NOT_FOUND, format!("{msg}\n")).into_response();
    }
    serve_page(&headers)
}

fn serve_page(headers: &HeaderMap) -> Response {
    let page = asset("index.html").expect("index.html is embedded");
    let mut response = serve(page, headers, "no-cache");
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn static_file(
    Path(file): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(found) = asset(&file).filter(|a| a.name != "index.html") else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    let cache = if query.get("v") == Some(&found.version) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    serve(found, &headers, cache)
}

fn serve(asset: &'static Asset, request: &HeaderMap, cache_control: &'static str) -> Response {
    let etag = asset.etag.to_str().unwrap_or_default();
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // Weak comparison (RFC 9110 8.8.3.2): `W/` does not count.
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag.trim_start_matches("W/"));
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, asset.etag.clone());
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.gzip.is_some() {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    let body = match asset.gzip {
        Some(gzipped) if accepts_gzip(request) => {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gzipped
        }
        _ => asset.body,
    };
    (StatusCode::OK, headers, body).into_response()
}

/// True if `Accept-Encoding` names `gzip` (or `*`) without `q=0`.
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_index_html_names_is_embedded_with_its_version() {
        let page = std::str::from_utf8(asset("index.html").unwrap().body).unwrap();
        for name in ["app.js", "app.css", "boot.js", "favicon.svg"] {
            let a = asset(name).unwrap_or_else(|| panic!("{name} is not embedded"));
            let url = format!("/assets/{name}?v={}", a.version);
            assert!(
                page.contains(&url),
                "index.html does not reference {url}: web/dist is inconsistent, run `npm run build --prefix web`"
            );
        }
    }

    #[test]
    fn gzip_is_chosen_from_accept_encoding() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&h)
        };
        assert!(with("gzip"));
        assert!(with("br, gzip;q=0.8, deflate"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("br, deflate"));
        assert!(!with("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn gzipped_copies_are_the_files_they_stand_for() {
        use std::io::Read;
        for a in ASSETS.iter() {
            let Some(gz) = a.gzip else { continue };
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(gz)
                .read_to_end(&mut out)
                .unwrap_or_else(|e| panic!("{}.gz does not unzip: {e}", a.name));
            assert!(
                out == a.body,
                "{0}.gz is not {0}: web/dist is inconsistent, run `npm run build --prefix web`",
                a.name
            );
        }
    }
}
