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
both_stores!(change_feed_long_polls_streams_and_resumes, 90);

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

    // Wait until version 1's row is compacted away.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        edit(&server, &id, &ada, json!([{"pos": 0, "insert": "."}])).await;
        let rows = call(
            &server,
            "GET",
            &format!("{base}/history?group=none&limit=1000"),
            SECRET,
            None,
        )
        .await
        .json();
        let entries = rows["entries"].as_array().unwrap();
        if entries.iter().all(|e| e["seq"] != 1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "version 1 was never compacted: {rows}"
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
    // Row 1 is compacted away, but the blame segment written with an earlier snapshot keeps
    // who typed its text and when.
    let blame = get(&server, &format!("{base}/blame")).await;
    // (The restore's minimal diff may keep chars of later rows after the first few.)
    assert_eq!(blame["spans"][0]["start"], 0, "{blame}");
    assert_eq!(blame["spans"][0]["version"], 1, "{blame}");
    assert!(blame["spans"][0]["end"].as_u64().unwrap() >= 5, "{blame}");
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

/// The change feed: rows after a version at once, a long poll woken by the next commit, pages
/// with nothing skipped, and a server-sent event stream that resumes from `Last-Event-ID` and
/// ends when the document is deleted.
async fn change_feed_long_polls_streams_and_resumes(kind: StoreKind) {
    let server = TestServer::start(kind, &[]).await;
    let id = server.create_document("a").await; // version 1
    let feed = format!("/api/documents/{id}/changes");
    let r = server.get(&format!("{feed}?since=0&wait=0")).await.json();
    assert_eq!(r["entries"][0]["seq"], 1, "{r}");
    assert_eq!(
        (r["next_since"].as_i64(), r["more"].as_bool()),
        (Some(1), Some(false))
    );

    // A long poll answers as soon as the next row commits.
    let poll = {
        let addr = server.addr();
        let path = format!("{feed}?since=1&wait=30");
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let r = quire_tests::http::get(addr, &path).await.unwrap();
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = server
        .send_json(
            "POST",
            &format!("/api/documents/{id}/edits"),
            &json!({"edits": [{"pos": 1, "insert": "b"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let (r, took) = poll.await.unwrap();
    let r = r.json();
    assert_eq!(
        (r["entries"][0]["seq"].as_i64(), r["next_since"].as_i64()),
        (Some(2), Some(2)),
        "{r}"
    );
    assert!(
        took < Duration::from_secs(20),
        "the poll waited {took:?} past the commit"
    );
    // Nothing new: the wait runs out and says so.
    let r = server.get(&format!("{feed}?since=2&wait=1")).await.json();
    assert_eq!(
        (
            r["entries"].as_array().unwrap().len(),
            r["next_since"].as_i64()
        ),
        (0, Some(2))
    );
    // Out of range.
    for (query, status) in [
        ("since=3", 409),
        ("since=-1", 400),
        ("wait=61", 400),
        ("limit=0", 400),
    ] {
        let r = server.get(&format!("{feed}?{query}&wait=0")).await;
        assert_eq!(r.status, status, "{query}: {r:?}");
    }
    assert_eq!(
        server
            .get("/api/documents/nope/changes?wait=0")
            .await
            .status,
        404
    );

    // Pages: every version once, in order.
    let ws = Client::connect(&server.ws_url(&id)).await;
    for c in ["c", "d", "e", "f", "g"] {
        ws.push(c);
        ws.flush().await;
    }
    ws.wait_for_text("abcdefg", WAIT).await;
    let mut since = 0;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while since < 7 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "feed stuck at {since}: {seen:?}"
        );
        let r = server
            .get(&format!("{feed}?since={since}&limit=2&wait=5"))
            .await
            .json();
        for e in r["entries"].as_array().unwrap() {
            seen.push(e["seq"].as_i64().unwrap());
        }
        since = r["next_since"].as_i64().unwrap();
    }
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());

    // The event stream, resumed after version 5.
    let mut stream = EventStream::open(&server, &feed, "5").await;
    assert_eq!(stream.next_event().await, ("change".to_string(), Some(6)));
    assert_eq!(stream.next_event().await, ("change".to_string(), Some(7)));
    ws.push("h");
    ws.flush().await;
    assert_eq!(stream.next_event().await, ("change".to_string(), Some(8)));
    let r = server
        .request("DELETE", &format!("/api/documents/{id}"), &[], b"")
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(stream.next_event().await.0, "deleted");
}

/// A raw server-sent event stream (the test client reads whole responses only).
struct EventStream {
    socket: tokio::net::TcpStream,
    buffer: String,
}

impl EventStream {
    async fn open(server: &TestServer, path: &str, last_event_id: &str) -> EventStream {
        use tokio::io::AsyncWriteExt;
        let mut socket = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nLast-Event-ID: {last_event_id}\r\n\r\n",
            server.addr()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        EventStream {
            socket,
            buffer: String::new(),
        }
    }

    /// The next event's name and id (skipping keep-alive comments).
    async fn next_event(&mut self) -> (String, Option<i64>) {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            // Events end with a blank line; chunk sizes of the transfer encoding sit between them.
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                };
                if let Some(event) = field("event:") {
                    return (event, field("id:").and_then(|v| v.parse().ok()));
                }
                continue;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.socket.read(&mut chunk))
                .await
                .expect("no event within the wait")
                .unwrap();
            assert!(n > 0, "the stream ended; had {:?}", self.buffer);
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk[..n]).replace("\r\n", "\n"));
        }
    }
}
