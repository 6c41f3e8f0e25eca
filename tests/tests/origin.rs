//! The open default is open to the user, not to every web page the user visits: another
//! page's WebSocket upgrades and changes are refused by `Origin`, DNS rebinding by `Host`, and
//! a JSON body is taken only as JSON. Tools that send no `Origin` keep working.

use std::time::Duration;

use quire_tests::http::{metric, request, Response};
use quire_tests::{poll_until, Client, StoreKind, TestServer};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self};

const WAIT: Duration = Duration::from_secs(10);
const EVIL: &str = "https://evil.example";

/// The status of a WebSocket upgrade to `doc` sent with `Origin: origin` (101 if accepted).
async fn upgrade_status(server: &TestServer, doc: &str, origin: &str) -> u16 {
    let mut req = server.ws_url(doc).into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", HeaderValue::from_str(origin).unwrap());
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await {
        Ok(Ok((_ws, response))) => response.status().as_u16(),
        Ok(Err(tungstenite::Error::Http(response))) => response.status().as_u16(),
        Ok(Err(other)) => panic!("upgrade with Origin {origin}: {other}"),
        Err(_) => panic!("upgrade with Origin {origin}: no answer in {WAIT:?}"),
    }
}

async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    request(server.addr(), method, path, headers, body.as_bytes())
        .await
        .unwrap()
}

fn assert_problem(r: &Response, status: u16, kind: &str, says: &str) {
    assert_eq!(r.status, status, "{r:?}");
    let body = r.json();
    assert_eq!(body["type"], format!("urn:quire:problem:{kind}"), "{r:?}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(says), "{detail:?} should say {says:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_pages_cannot_use_the_open_default() {
    let server = TestServer::start(StoreKind::Sqlite, &[]).await;
    let own = server.url();
    let writer = Client::connect(&server.ws_url("shared")).await;
    writer.push("private notes");
    poll_until("the server has the writer's text", WAIT, || async {
        let text = server.get("/api/documents/shared/text").await;
        (text.body == "private notes").then_some(())
    })
    .await;

    // WebSocket: another page's upgrade is refused; the server's own page and tools are not.
    assert_eq!(upgrade_status(&server, "shared", EVIL).await, 403);
    assert_eq!(upgrade_status(&server, "shared", "null").await, 403);
    assert_eq!(upgrade_status(&server, "shared", &own).await, 101);

    // REST changes from another page: refused before anything happens.
    let json = [("Content-Type", "application/json"), ("Origin", EVIL)];
    let create = call(&server, "POST", "/api/documents", &json, r#"{"name":"x"}"#).await;
    assert_problem(
        &create,
        403,
        "origin-not-allowed",
        "--cors-origin https://evil.example",
    );
    let put = call(
        &server,
        "PUT",
        "/api/documents/shared/text",
        &[("Content-Type", "text/plain"), ("Origin", EVIL)],
        "overwritten",
    )
    .await;
    assert_eq!(put.status, 403, "{put:?}");
    let delete = call(
        &server,
        "DELETE",
        "/api/documents/shared",
        &[("Origin", EVIL)],
        "",
    )
    .await;
    assert_eq!(delete.status, 403, "{delete:?}");
    let text = server.get("/api/documents/shared/text").await;
    assert_eq!(
        (writer.text().as_str(), text.body.as_str()),
        ("private notes", "private notes")
    );

    // A CORS "simple" request: a text/plain body is not taken as JSON, whatever its origin.
    let simple = call(
        &server,
        "POST",
        "/api/documents",
        &[("Content-Type", "text/plain")],
        r#"{"name":"planted"}"#,
    )
    .await;
    assert_problem(&simple, 415, "unsupported-media-type", "application/json");
    let list = server.get("/api/documents").await;
    assert!(!list.body.contains("planted"), "{}", list.body);

    // DNS rebinding: the page's own name, resolved to 127.0.0.1, is not one this server has.
    let port = server.addr().port().to_string();
    let rebound = format!("evil.example:{port}");
    for path in ["/api/documents/shared/text", "/", "/ws/shared"] {
        let r = call(&server, "GET", path, &[("Host", &rebound)], "").await;
        assert_problem(&r, 421, "host-not-allowed", "--allowed-host evil.example");
    }
    let localhost = format!("localhost:{port}");
    let r = call(
        &server,
        "GET",
        "/api/documents/shared/text",
        &[("Host", &localhost)],
        "",
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "private notes"));

    // The same origin, and tools without an Origin, change documents as before.
    let mine = call(
        &server,
        "POST",
        "/api/documents",
        &[("Content-Type", "application/json"), ("Origin", &own)],
        r#"{"name":"mine"}"#,
    )
    .await;
    assert_eq!(mine.status, 201, "{mine:?}");
    let curl = call(&server, "POST", "/api/documents", &[], "").await;
    assert_eq!(curl.status, 201, "{curl:?}");

    // Each refusal is counted: two upgrades, three changes, three rebound requests.
    let metrics = server.get("/metrics").await.body;
    assert!(
        metric(&metrics, "quire_errors_total{kind=\"forbidden\"}") == 8.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_origins_and_hosts_are_served() {
    let server = TestServer::start(
        StoreKind::Sqlite,
        &[
            "--cors-origin",
            "https://app.example",
            "--allowed-host",
            "quire.internal",
        ],
    )
    .await;
    assert_eq!(
        upgrade_status(&server, "doc", "https://app.example").await,
        101
    );
    assert_eq!(upgrade_status(&server, "doc", EVIL).await, 403);
    let port = server.addr().port().to_string();
    let host = format!("quire.internal:{port}");
    let r = call(
        &server,
        "POST",
        "/api/documents",
        &[
            ("Host", &host),
            ("Origin", "https://app.example"),
            ("Content-Type", "application/json"),
        ],
        "{}",
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
}
