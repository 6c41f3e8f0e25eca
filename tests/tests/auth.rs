//! Access control: with `--auth-secret`, every WebSocket and REST request needs a token naming
//! its document and a role; read-only tokens change nothing by any route; wrong-document,
//! expired and missing tokens are refused before the upgrade; a live connection whose token
//! expires or is revoked is closed with the reason; revocation is durable.

use std::time::Duration;

use quire_backend::protocol::close;
use quire_tests::client::{client_doc, update_frame, TEXT_NAME};
use quire_tests::http::metric;
use quire_tests::{both_stores, poll_until, Client, RawConn, StoreKind, TestServer};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite;
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, StateVector, Text, Transact};

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "test-secret-0123456789";

both_stores!(read_only_tokens_change_nothing, 90);
both_stores!(missing_wrong_and_expired_tokens_are_refused, 60);
both_stores!(revoked_tokens_are_refused_live_and_after_a_restart, 90);

async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> quire_tests::http::Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    server
        .request(method, path, &headers, body.as_bytes())
        .await
}

async fn mint(server: &TestServer, doc: &str, role: &str, expires_in: u64) -> String {
    mint_with_id(server, doc, role, expires_in).await.0
}

/// A minted token and its id (`jti`).
async fn mint_with_id(
    server: &TestServer,
    doc: &str,
    role: &str,
    expires_in: u64,
) -> (String, String) {
    let r = call(
        server,
        "POST",
        "/api/tokens",
        Some(SECRET),
        Some(&json!({"document": doc, "role": role, "expires_in": expires_in})),
    )
    .await;
    assert_eq!(r.status, 201, "mint: {r:?}");
    let v = r.json();
    assert_eq!(v["role"], role);
    (
        v["token"].as_str().unwrap().to_string(),
        v["jti"].as_str().unwrap().to_string(),
    )
}

fn ws_url(server: &TestServer, doc: &str, token: &str) -> String {
    format!("{}?token={token}", server.ws_url(doc))
}

/// The HTTP status a refused WebSocket handshake got.
async fn ws_refusal(url: &str) -> u16 {
    match RawConn::connect(url).await {
        Ok(_) => panic!("{url}: the upgrade was accepted"),
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(other) => panic!("{url}: {other}"),
    }
}

async fn text_of(server: &TestServer, id: &str) -> String {
    let r = call(
        server,
        "GET",
        &format!("/api/documents/{id}/text"),
        Some(SECRET),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

fn foreign_update(text: &str) -> Vec<u8> {
    let doc = client_doc();
    let t = doc.get_or_insert_text(TEXT_NAME);
    t.push(&mut doc.transact_mut(), text);
    let update = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    update
}

async fn read_only_tokens_change_nothing(kind: StoreKind) {
    let server = TestServer::start(kind, &["--auth-secret", SECRET]).await;
    let r = call(
        &server,
        "POST",
        "/api/documents",
        Some(SECRET),
        Some(&json!({"text": "hello 🦀"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_string();
    let ro = mint(&server, &id, "read-only", 600).await;
    let rw = mint(&server, &id, "read-write", 600).await;

    // WebSocket: the read-only client syncs and sees others' updates...
    let writer = Client::connect(&ws_url(&server, &id, &rw)).await;
    let viewer = Client::connect(&ws_url(&server, &id, &ro)).await;
    viewer.wait_for_text("hello 🦀", WAIT).await;
    writer.push(" world");
    viewer.wait_for_text("hello 🦀 world", WAIT).await;
    // ...but its Update is refused with permission-denied, stored nowhere, relayed to no one.
    viewer.push(" VIEWER");
    poll_until("the viewer is told permission denied", WAIT, || async {
        (!viewer.permission_denied().is_empty()).then_some(())
    })
    .await;
    assert!(viewer.permission_denied()[0].contains("read-only"));
    writer.push("!");
    // (The viewer's own copy keeps its refused edit: a read-only client should not edit.)
    viewer
        .wait_until("the writer's next edit arrives", WAIT, |t| t.contains('!'))
        .await;
    assert_eq!(writer.text(), "hello 🦀 world!");
    assert_eq!(text_of(&server, &id).await, "hello 🦀 world!");
    assert!(viewer.closed().is_none(), "a refused update does not close");

    // A SyncStep2 with content and an Update in one frame from a raw read-only socket.
    let raw = RawConn::connect(&ws_url(&server, &id, &ro)).await.unwrap();
    let step2 = yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep2(foreign_update("EVIL")))
        .encode_v1();
    let mut frame = step2.clone();
    frame.extend(update_frame(&foreign_update("EVIL2")));
    raw.send_binary(step2);
    raw.send_binary(frame);
    raw.sync_barrier(WAIT).await;
    poll_until("raw read-only socket denied", WAIT, || async {
        (raw.permission_denied().len() >= 3).then_some(())
    })
    .await;
    // An update claiming 2^28 clients: refused as any update is, without being decoded.
    raw.send_binary(vec![0, 2, 5, 0x80, 0x80, 0x80, 0x80, 0x01]);
    raw.sync_barrier(WAIT).await;
    poll_until("the bomb is denied, not decoded", WAIT, || async {
        (raw.permission_denied().len() >= 4).then_some(())
    })
    .await;
    assert!(raw.closed().is_none(), "a refused update does not close");
    assert_eq!(text_of(&server, &id).await, "hello 🦀 world!");

    // REST: GETs work, every change is 403.
    let get = call(
        &server,
        "GET",
        &format!("/api/documents/{id}/text"),
        Some(&ro),
        None,
    )
    .await;
    assert_eq!((get.status, get.body.as_str()), (200, "hello 🦀 world!"));
    let query = server
        .get(&format!("/api/documents/{id}/text?token={ro}"))
        .await;
    assert_eq!(query.status, 200, "token as a query parameter: {query:?}");
    let update = format!("/api/documents/{id}/update");
    let changes: Vec<(&str, String, Option<Value>)> = vec![
        (
            "PUT",
            format!("/api/documents/{id}/text"),
            Some(json!("replaced")),
        ),
        (
            "POST",
            format!("/api/documents/{id}/edits"),
            Some(json!({"edits": [{"pos": 0, "insert": "X"}]})),
        ),
        (
            "POST",
            format!("/api/documents/{id}/restore"),
            Some(json!({"version": 1})),
        ),
        (
            "PATCH",
            format!("/api/documents/{id}"),
            Some(json!({"name": "renamed"})),
        ),
        ("DELETE", format!("/api/documents/{id}"), None),
        ("POST", "/api/documents".to_string(), Some(json!({}))),
        (
            "POST",
            "/api/tokens".to_string(),
            Some(json!({"document": id})),
        ),
    ];
    for (method, path, body) in &changes {
        let r = call(&server, method, path, Some(&ro), body.as_ref()).await;
        assert_eq!(
            r.status, 403,
            "{method} {path} with a read-only token: {r:?}"
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{r:?}"
        );
    }
    let r = server
        .request(
            "POST",
            &update,
            &[
                ("Authorization", &format!("Bearer {ro}")),
                ("Content-Type", "application/octet-stream"),
            ],
            &foreign_update("EVIL3"),
        )
        .await;
    assert_eq!(r.status, 403, "update import with a read-only token: {r:?}");
    assert_eq!(text_of(&server, &id).await, "hello 🦀 world!");

    // The read-write token may change it, by REST too.
    let r = call(
        &server,
        "POST",
        &format!("/api/documents/{id}/edits"),
        Some(&rw),
        Some(&json!({"edits": [{"pos": 0, "insert": ">"}]})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    viewer
        .wait_until("the REST edit arrives", WAIT, |t| t.starts_with(">hello"))
        .await;

    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let forbidden = metric(&metrics.body, "quire_errors_total{kind=\"forbidden\"}");
    assert!(forbidden >= 11.0, "forbidden count {forbidden}");
    writer.close().await;
    viewer.close().await;
}

async fn missing_wrong_and_expired_tokens_are_refused(kind: StoreKind) {
    let server = TestServer::start(kind, &["--auth-secret", SECRET]).await;
    let a = mint(&server, "doc-a", "read-write", 600).await;
    let b = mint(&server, "doc-b", "read-write", 600).await;
    let all_ro = mint(&server, "*", "read-only", 600).await;
    let short = mint(&server, "doc-a", "read-write", 2).await;

    // Documents open only with a token for them.
    let client = Client::connect(&ws_url(&server, "doc-a", &a)).await;
    client.push("a text");
    assert_eq!(ws_refusal(&server.ws_url("doc-a")).await, 401);
    assert_eq!(ws_refusal(&ws_url(&server, "doc-a", &b)).await, 403);
    assert_eq!(
        ws_refusal(&ws_url(&server, "doc-a", "garbage.x.y")).await,
        401
    );
    let forged = format!("{}x", &a[..a.len() - 1]);
    assert_eq!(ws_refusal(&ws_url(&server, "doc-a", &forged)).await, 401);
    let r = server.get("/api/documents/doc-a/text").await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = call(&server, "GET", "/api/documents/doc-a/text", Some(&b), None).await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = call(&server, "GET", "/api/documents", Some(&a), None).await;
    assert_eq!(r.status, 403, "a one-document token cannot list: {r:?}");
    let r = call(&server, "GET", "/api/documents", Some(&all_ro), None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = call(&server, "POST", "/api/tokens", Some(&a), Some(&json!({}))).await;
    assert_eq!(r.status, 403, "only admins mint: {r:?}");
    assert_eq!(server.get("/api/openapi.json").await.status, 200);

    // A live connection is closed when its token expires, and the expired token is refused.
    let short_lived = Client::connect(&ws_url(&server, "doc-a", &short)).await;
    let closed = short_lived.wait_closed(WAIT).await;
    assert_eq!(closed.code, Some(close::TOKEN_EXPIRED), "{closed:?}");
    assert!(closed.reason.contains("expired"), "{closed:?}");
    assert_eq!(ws_refusal(&ws_url(&server, "doc-a", &short)).await, 401);
    let r = call(
        &server,
        "GET",
        "/api/documents/doc-a/text",
        Some(&short),
        None,
    )
    .await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.contains("expired"), "{r:?}");
    // The others were not disturbed.
    client.push("!");
    let r = call(&server, "GET", "/api/documents/doc-a/text", Some(&a), None).await;
    poll_until("the edit is stored", WAIT, || async {
        let r = call(&server, "GET", "/api/documents/doc-a/text", Some(&a), None).await;
        (r.body == "a text!").then_some(())
    })
    .await;
    assert_eq!(r.status, 200);
    let metrics = server.get("/metrics").await.body;
    assert!(metric(&metrics, "quire_errors_total{kind=\"unauthenticated\"}") >= 6.0);
    client.close().await;
}

async fn revoked_tokens_are_refused_live_and_after_a_restart(kind: StoreKind) {
    let mut server = TestServer::start(kind, &["--auth-secret", SECRET]).await;
    let id = {
        let r = call(
            &server,
            "POST",
            "/api/documents",
            Some(SECRET),
            Some(&json!({"text": "start"})),
        )
        .await;
        assert_eq!(r.status, 201, "{r:?}");
        r.json()["id"].as_str().unwrap().to_string()
    };
    let (doomed, doomed_jti) = mint_with_id(&server, &id, "read-write", 600).await;
    let (viewer, viewer_jti) = mint_with_id(&server, &id, "read-only", 600).await;
    let kept = mint(&server, &id, "read-write", 600).await;
    let admin = mint(&server, "*", "admin", 600).await;
    assert_ne!(doomed_jti, viewer_jti, "every token gets an id of its own");
    let text_path = format!("/api/documents/{id}/text");

    let live = Client::connect(&ws_url(&server, &id, &doomed)).await;
    let live_viewer = Client::connect(&ws_url(&server, &id, &viewer)).await;
    let other = Client::connect(&ws_url(&server, &id, &kept)).await;
    live.wait_for_text("start", WAIT).await;
    other.wait_for_text("start", WAIT).await;
    assert_eq!(
        call(&server, "GET", &text_path, Some(&doomed), None)
            .await
            .status,
        200
    );

    // Only admins revoke; the body names exactly one of token and jti.
    let revoke = |body: Value, bearer: String| {
        let server = &server;
        async move {
            call(
                server,
                "POST",
                "/api/tokens/revoke",
                Some(&bearer),
                Some(&body),
            )
            .await
        }
    };
    let r = revoke(json!({"token": doomed}), kept.clone()).await;
    assert_eq!(r.status, 403, "a read-write token cannot revoke: {r:?}");
    let r = revoke(json!({}), SECRET.into()).await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = revoke(json!({"token": "x.y.z"}), SECRET.into()).await;
    assert_eq!(r.status, 400, "not one of ours: {r:?}");
    assert_eq!(
        call(&server, "GET", &text_path, Some(&doomed), None)
            .await
            .status,
        200,
        "refused revocations revoke nothing"
    );

    // Revoke one by the token itself (with the secret), another by its id (with an admin token).
    let before = std::time::Instant::now();
    let r = revoke(json!({"token": doomed}), SECRET.into()).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["jti"], doomed_jti.as_str());
    let r = revoke(json!({"jti": viewer_jti}), admin.clone()).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = revoke(json!({"jti": viewer_jti}), admin.clone()).await;
    assert_eq!(r.status, 200, "revoking twice is harmless: {r:?}");

    // The live sockets using them are closed promptly with 4401 and the reason.
    for client in [&live, &live_viewer] {
        let closed = client.wait_closed(WAIT).await;
        assert_eq!(closed.code, Some(close::TOKEN_EXPIRED), "{closed:?}");
        assert!(closed.reason.contains("revoked"), "{closed:?}");
    }
    assert!(
        before.elapsed() < Duration::from_secs(2),
        "closed {:?} after the revocation",
        before.elapsed()
    );

    // Refused on REST (401 problem+json saying why) and on the WebSocket upgrade.
    assert_refused(&server, &id, &[&doomed, &viewer]).await;

    // Other tokens are unaffected: the other editor stays connected and keeps editing.
    other.push(" and more");
    poll_until("the other editor's edit is stored", WAIT, || async {
        (text_of(&server, &id).await == "start and more").then_some(())
    })
    .await;
    assert!(other.closed().is_none(), "{:?}", other.closed());
    let r = call(&server, "GET", &text_path, Some(&kept), None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "start and more"));
    let r = call(&server, "GET", &text_path, Some(&admin), None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let metrics = server.get("/metrics").await.body;
    assert!(metric(&metrics, "quire_errors_total{kind=\"unauthenticated\"}") >= 8.0);
    other.close().await;

    // Revocation is durable: after a restart the tokens are still refused, the others work.
    server.restart().await;
    assert_refused(&server, &id, &[&doomed, &viewer]).await;
    let r = call(&server, "GET", &text_path, Some(&kept), None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "start and more"));
    let again = Client::connect(&ws_url(&server, &id, &kept)).await;
    again.wait_for_text("start and more", WAIT).await;
    again.close().await;
}

/// Each of `tokens` is refused as revoked: on REST (401 problem+json saying why, by header and
/// by query parameter) and on the WebSocket upgrade (401).
async fn assert_refused(server: &TestServer, id: &str, tokens: &[&str]) {
    let text_path = format!("/api/documents/{id}/text");
    for token in tokens {
        let r = call(server, "GET", &text_path, Some(token), None).await;
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert!(r.body.contains("revoked"), "{r:?}");
        let q = server.get(&format!("{text_path}?token={token}")).await;
        assert_eq!(q.status, 401, "{q:?}");
        assert_eq!(ws_refusal(&ws_url(server, id, token)).await, 401);
    }
}

#[tokio::test]
async fn without_a_secret_quire_is_open_and_says_so() {
    let server = TestServer::start(StoreKind::Sqlite, &[]).await;
    let r = server
        .send_json("POST", "/api/tokens", &json!({"document": "*"}))
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert!(server.log().contains("quire is OPEN"), "{}", server.log());
}

/// Tokens passed as `?token=` used to appear whole in debug logs (the request span's URI). At
/// debug level, REST and WebSocket requests carrying one log it as `REDACTED`, and no log line
/// holds the token or the secret.
#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let mut server = TestServer::start(StoreKind::Sqlite, &["--auth-secret", SECRET]).await;
    server.restart_logging("debug").await;
    let token = mint(&server, "*", "read-write", 3600).await;
    let r = server
        .get(&format!("/api/documents?token={token}&limit=5"))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let client = Client::connect(&ws_url(&server, "logged-doc", &token)).await;
    client.push("x");
    client.flush().await;
    drop(client);
    let refused = server.get("/api/documents?token=not-a-real-token").await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let log = poll_until(
        "the WebSocket request is logged",
        Duration::from_secs(10),
        || {
            let log = server.log();
            async move { log.contains("/ws/logged-doc?token=REDACTED").then_some(log) }
        },
    )
    .await;
    assert!(log.contains("token=REDACTED&limit=5"), "{log}");
    assert!(!log.contains(&token), "the token is in the log:\n{log}");
    assert!(!log.contains("not-a-real-token"), "{log}");
    assert!(!log.contains(SECRET), "{log}");
}
