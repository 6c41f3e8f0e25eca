//! History people can read (issue 15), through a real quire-server on SQLite and PostgreSQL:
//! authors from token subjects and awareness names, blame by author and version (now and at an
//! older version, after concurrent edits and after a restore), history grouped into changes
//! with what each inserted and deleted, and named versions (which outlive the op log).

use std::time::Duration;

use quire_tests::{both_stores, Client, StoreKind, TestServer};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);
const SECRET: &str = "history-test-secret";

both_stores!(authors_blame_and_changes, 90);
both_stores!(named_versions_outlive_the_op_log, 90);

async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> quire_tests::http::Response {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    server
        .request(method, path, &headers, body.as_bytes())
        .await
}

/// A read-write token for `doc`, held by `subject` (none: a token that names nobody).
async fn token(server: &TestServer, doc: &str, subject: Option<&str>) -> String {
    let mut body = json!({"document": doc, "role": "read-write"});
    if let Some(s) = subject {
        body["subject"] = json!(s);
    }
    let r = call(server, "POST", "/api/tokens", SECRET, Some(body)).await;
    assert_eq!(r.status, 201, "mint: {r:?}");
    assert_eq!(r.json()["subject"].as_str(), subject);
    r.json()["token"].as_str().unwrap().to_string()
}

async fn edit(server: &TestServer, doc: &str, token: &str, edits: Value) {
    let r = call(
        server,
        "POST",
        &format!("/api/documents/{doc}/edits"),
        token,
        Some(json!({ "edits": edits })),
    )
    .await;
    assert_eq!(r.status, 200, "edits: {r:?}");
}

async fn get(server: &TestServer, path: &str) -> Value {
    let r = call(server, "GET", path, SECRET, None).await;
    assert_eq!(r.status, 200, "GET {path}: {r:?}");
    r.json()
}

/// Blame as `(text, author, version)` runs.
fn runs(blame: &Value, text: &str) -> Vec<(String, String, i64)> {
    blame["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let (start, end) = (s["start"].as_u64().unwrap(), s["end"].as_u64().unwrap());
            let part: String = text
                .chars()
                .skip(start as usize)
                .take((end - start) as usize)
                .collect();
            (
                part,
                s["author"].as_str().unwrap_or("?").to_string(),
                s["version"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

fn run(text: &str, author: &str, version: i64) -> (String, String, i64) {
    (text.to_string(), author.to_string(), version)
}

/// Alice edits over REST with her token, Bob types in an editor whose token names him (his
/// awareness calls him "Robert": the token wins), Carol's token names nobody and her editor
/// publishes "Carol". Every char is theirs in blame, history groups their rows into changes.
async fn authors_blame_and_changes(kind: StoreKind) {
    let server = TestServer::start(kind, &["--auth-secret", SECRET]).await;
    let r = call(
        &server,
        "POST",
        "/api/documents",
        SECRET,
        Some(json!({"name": "notes"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_string();
    let alice = token(&server, &id, Some("alice")).await;
    let bob = token(&server, &id, Some("bob")).await;
    let carol = token(&server, &id, None).await;

    edit(
        &server,
        &id,
        &alice,
        json!([{"pos": 0, "insert": "Hello world"}]),
    )
    .await; // v1
    let b = Client::connect(&format!("{}?token={bob}", server.ws_url(&id))).await;
    b.set_presence(
        b.doc().client_id().get(),
        1,
        r##"{"user":{"name":"Robert","color":"#123456"}}"##,
    );
    b.insert(5, ", dear"); // v2
    b.flush().await;
    let c = Client::connect(&format!("{}?token={carol}", server.ws_url(&id))).await;
    c.wait_for_text("Hello, dear world", WAIT).await;
    c.set_presence(
        c.doc().client_id().get(),
        1,
        r##"{"user":{"name":"Carol","color":"#654321"}}"##,
    );
    c.push("!"); // v3
    c.flush().await;
    b.wait_for_text("Hello, dear world!", WAIT).await;
    edit(
        &server,
        &id,
        &alice,
        json!([{"pos": 0, "delete": 5, "insert": "Hi"}]),
    )
    .await; // v4
    let text = "Hi, dear world!";
    b.wait_for_text(text, WAIT).await;

    let base = format!("/api/documents/{id}");
    let blame = get(&server, &format!("{base}/blame")).await;
    assert_eq!(blame["version"], 4, "{blame}");
    assert_eq!(blame["length"], text.chars().count());
    assert_eq!(
        runs(&blame, text),
        vec![
            run("Hi", "alice", 4),
            run(", dear", "bob", 2),
            run(" world", "alice", 1),
            run("!", "Carol", 3),
        ],
        "{blame}"
    );
    let authors: Vec<(String, u64)> = blame["authors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert!(a["color"].as_str().unwrap().starts_with('#'));
            (
                a["name"].as_str().unwrap().to_string(),
                a["chars"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        authors,
        vec![("alice".into(), 8), ("bob".into(), 6), ("Carol".into(), 1)]
    );
    // At an older version.
    let old = get(&server, &format!("{base}/blame?version=2")).await;
    assert_eq!(
        runs(&old, "Hello, dear world"),
        vec![
            run("Hello", "alice", 1),
            run(", dear", "bob", 2),
            run(" world", "alice", 1)
        ]
    );
    assert_eq!(
        call(
            &server,
            "GET",
            &format!("{base}/blame?version=9"),
            SECRET,
            None
        )
        .await
        .status,
        409
    );
    assert_eq!(
        call(&server, "GET", "/api/documents/nope/blame", SECRET, None)
            .await
            .status,
        404
    );

    // Rows name their authors; changes group them.
    let rows = get(&server, &format!("{base}/history?group=none")).await;
    let by: Vec<&str> = rows["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["author"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(by, ["alice", "Carol", "bob", "alice"]);
    let history = get(&server, &format!("{base}/history")).await;
    let changes: Vec<(String, i64, i64, u64, u64, String, String)> = history["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["author"].as_str().unwrap().to_string(),
                c["first_version"].as_i64().unwrap(),
                c["last_version"].as_i64().unwrap(),
                c["inserted"].as_u64().unwrap(),
                c["deleted"].as_u64().unwrap(),
                c["preview"]["inserted"].as_str().unwrap().to_string(),
                c["preview"]["deleted"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let change = |a: &str, first, last, ins, del, pi: &str, pd: &str| {
        (
            a.to_string(),
            first,
            last,
            ins,
            del,
            pi.to_string(),
            pd.to_string(),
        )
    };
    assert_eq!(
        changes,
        vec![
            // The net effect: "Hello" became "Hi" by keeping the "H".
            change("alice", 4, 4, 1, 4, "i", "ello"),
            change("Carol", 3, 3, 1, 0, "!", ""),
            change("bob", 2, 2, 6, 0, ", dear", ""),
            change("alice", 1, 1, 11, 0, "Hello world", ""),
        ],
        "{history}"
    );
    // Pages of changes.
    let page = get(&server, &format!("{base}/history?limit=3")).await;
    assert_eq!(page["changes"].as_array().unwrap().len(), 3);
    assert_eq!(page["next_before"], 2, "{page}");
    let page = get(&server, &format!("{base}/history?limit=3&before=2")).await;
    assert_eq!(page["changes"][0]["first_version"], 1, "{page}");
    assert_eq!(page["next_before"], Value::Null);

    // Bob keeps typing: his rows join one change.
    b.push(" More.");
    b.flush().await;
    b.insert(0, ">");
    b.flush().await;
    let text = ">Hi, dear world! More.";
    c.wait_for_text(text, WAIT).await;
    let history = get(&server, &format!("{base}/history?limit=1")).await;
    let newest = &history["changes"][0];
    assert_eq!(
        (
            newest["author"].as_str(),
            newest["first_version"].as_i64(),
            newest["last_version"].as_i64(),
            newest["rows"].as_i64()
        ),
        (Some("bob"), Some(5), Some(6), Some(2)),
        "{history}"
    );
    assert_eq!(newest["preview"]["inserted"], ">… More.");

    // A restore is the restorer's: alice restores version 2.
    let r = call(
        &server,
        "POST",
        &format!("{base}/restore"),
        &alice,
        Some(json!({"version": 2})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let text = "Hello, dear world";
    c.wait_for_text(text, WAIT).await;
    let blame = get(&server, &format!("{base}/blame")).await;
    let got = runs(&blame, text);
    assert!(got.contains(&run(", dear", "bob", 2)), "{blame}");
    assert!(
        got.iter().all(|r| r.1 == "alice" || r.1 == "bob"),
        "after restore: {got:?}"
    );
    assert_eq!(got.iter().map(|r| r.0.as_str()).collect::<String>(), text);

    // Durable: the same after a restart.
    let before = (blame, get(&server, &format!("{base}/history")).await);
    drop((b, c));
    let mut server = server;
    server.restart().await;
    let after = (
        get(&server, &format!("{base}/blame")).await,
        get(&server, &format!("{base}/history")).await,
    );
    assert_eq!(after, before);
}

/// Named versions: name the current one, list, fetch, refuse a taken name, restore by name, and
/// still restore it after the op log that could rebuild it was compacted away.
async fn named_versions_outlive_the_op_log(kind: StoreKind) {
    let server = TestServer::start(
        kind,
        &[
            "--auth-secret",
            SECRET,
            "--snapshot-ops",
            "3",
            "--op-retention-secs",
            "1",
        ],
    )
    .await;
    let r = call(
        &server,
        "POST",
        "/api/documents",
        SECRET,
        Some(json!({"text": "draft one"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_string();
    let base = format!("/api/documents/{id}");
    let ada = token(&server, &id, Some("ada")).await;

    let r = call(
        &server,
        "POST",
        &format!("{base}/versions"),
        &ada,
        Some(json!({"name": "first draft"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let named = r.json();
    assert_eq!(
        (
            named["name"].as_str(),
            named["version"].as_i64(),
            named["author"].as_str()
        ),
        (Some("first draft"), Some(1), Some("ada"))
    );
    let r = call(
        &server,
        "POST",
        &format!("{base}/versions"),
        &ada,
        Some(json!({"name": "first draft"})),
    )
    .await;
    assert_eq!(r.status, 409, "{r:?}");
    for bad in [
        json!({"name": ""}),
        json!({"name": "a\u{0007}"}),
        json!({"name": "x", "version": 99}),
    ] {
        let r = call(
            &server,
            "POST",
            &format!("{base}/versions"),
            &ada,
            Some(bad.clone()),
        )
        .await;
        assert!(r.status == 400 || r.status == 409, "{bad}: {r:?}");
    }

    let mut length = "draft one".len();
    for word in [" grows", " more", " and", " more"] {
        edit(&server, &id, &ada, json!([{"pos": length, "insert": word}])).await;
        length += word.len();
    }
    let r = call(
        &server,
        "POST",
        &format!("{base}/versions"),
        &ada,
        Some(json!({"name": "v2", "version": 3})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let list = get(&server, &format!("{base}/versions")).await;
    let names: Vec<(&str, i64)> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["version"].as_i64().unwrap()))
        .collect();
    assert_eq!(names, [("v2", 3), ("first draft", 1)]);
    let one = get(&server, &format!("{base}/versions/v2")).await;
    assert_eq!(one["text"], "draft one grows more");

    // Wait until version 1 can no longer be rebuilt from the op log.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        edit(&server, &id, &ada, json!([{"pos": 0, "insert": "."}])).await;
        let r = call(
            &server,
            "GET",
            &format!("{base}/text?version=1"),
            SECRET,
            None,
        )
        .await;
        if r.status == 409 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "version 1 was never compacted: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = call(
        &server,
        "POST",
        &format!("{base}/restore"),
        &ada,
        Some(json!({"name": "first draft"})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = call(&server, "GET", &format!("{base}/text"), SECRET, None).await;
    assert_eq!(r.body, "draft one");
    let r = call(
        &server,
        "POST",
        &format!("{base}/restore"),
        &ada,
        Some(json!({"name": "nope"})),
    )
    .await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = call(
        &server,
        "POST",
        &format!("{base}/restore"),
        &ada,
        Some(json!({"name": "v2", "version": 1})),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");

    let r = call(
        &server,
        "DELETE",
        &format!("{base}/versions/v2"),
        &ada,
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    let r = call(&server, "GET", &format!("{base}/versions/v2"), SECRET, None).await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = call(
        &server,
        "DELETE",
        &format!("{base}/versions/v2"),
        &ada,
        None,
    )
    .await;
    assert_eq!(r.status, 404, "{r:?}");
}
