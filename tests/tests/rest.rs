//! The REST API through a real quire-server, beside live WebSocket clients, on SQLite and on
//! PostgreSQL: edits on stale versions merge like concurrent edits, REST and WebSocket edits see
//! each other, history and time travel, restore, search and autocomplete after live editing,
//! delete, Yjs update export/import, and problem+json for every error class.

use std::collections::HashMap;
use std::time::Duration;

use quire_backend::protocol::close;
use quire_tests::client::{client_doc, TEXT_NAME};
use quire_tests::trace::merged_text;
use quire_tests::{both_stores, Client, RawConn, Rng, StoreKind, TestServer};
use serde_json::{json, Value};
use yrs::updates::decoder::Decode;
use yrs::{Assoc, GetString, IndexedSequence, ReadTxn, Text, Transact, Update};

const WAIT: Duration = Duration::from_secs(15);

both_stores!(stale_version_edits_merge, 60);
both_stores!(rest_and_websocket_see_each_other, 60);
both_stores!(history_text_at_version_and_restore, 60);
both_stores!(put_text_is_minimal_and_keeps_cursors, 60);
both_stores!(search_and_complete_after_live_edits, 90);
both_stores!(delete_closes_sockets_and_404s_after, 60);
both_stores!(update_export_and_import, 60);
both_stores!(errors_are_problem_details, 60);
both_stores!(bodies_that_are_not_objects_are_refused, 60);
both_stores!(names_are_checked_alike_on_both_stores, 60);

async fn edits(server: &TestServer, id: &str, body: Value) -> Value {
    let r = server
        .send_json("POST", &format!("/api/documents/{id}/edits"), &body)
        .await;
    assert_eq!(r.status, 200, "edits {body}: {r:?}");
    r.json()
}

/// Waits until the REST text of `id` is `expected`.
async fn wait_rest_text(server: &TestServer, id: &str, expected: &str) {
    let mut last = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        last = server.text(id).await;
        if last == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("REST text of {id} stayed {last:?}, expected {expected:?}");
}

/// Edits on an older version merge with what happened since, as a concurrent editor's would.
async fn stale_version_edits_merge(kind: StoreKind) {
    let server = TestServer::start(kind, &[]).await;

    // The classic case: "abc"; A inserts "z" at 0; B, still on "abc", deletes position 2.
    let id = server.create_document("abc").await;
    let a = Client::connect(&server.ws_url(&id)).await;
    assert_eq!(a.text(), "abc");
    a.insert(0, "z");
    a.flush().await;
    wait_rest_text(&server, &id, "zabc").await;
    let r = edits(
        &server,
        &id,
        json!({"version": 1, "edits": [{"pos": 2, "delete": 1}]}),
    )
    .await;
    assert_eq!(r, json!({"version": 3, "length": 3}));
    assert_eq!(server.text(&id).await, "zab");
    a.wait_for_text("zab", WAIT).await;

    // A delete on an old version that covers text someone inserted since keeps the insert.
    let id = server.create_document("hello world").await;
    edits(&server, &id, json!({"edits": [{"pos": 8, "insert": "XX"}]})).await;
    assert_eq!(server.text(&id).await, "hello woXXrld");
    edits(
        &server,
        &id,
        json!({"version": 1, "edits": [{"pos": 6, "delete": 5}]}),
    )
    .await;
    assert_eq!(server.text(&id).await, "hello XX");

    // Non-BMP text: positions are chars on every side (yrs counts UTF-16 units).
    let id = server.create_document("a😀b🦀c").await;
    let c = Client::connect(&server.ws_url(&id)).await;
    c.insert(0, "𝄞");
    c.flush().await;
    wait_rest_text(&server, &id, "𝄞a😀b🦀c").await;
    // On version 1 ("a😀b🦀c"): delete 🦀, then insert é after 😀 (in the text the first
    // edit left).
    edits(
        &server,
        &id,
        json!({"version": 1, "edits": [{"pos": 3, "delete": 1}, {"pos": 2, "insert": "é"}]}),
    )
    .await;
    assert_eq!(server.text(&id).await, "𝄞a😀ébc");
    c.wait_for_text("𝄞a😀ébc", WAIT).await;
    // And on the current version, around the emoji.
    let r = edits(
        &server,
        &id,
        json!({"edits": [{"pos": 2, "delete": 1, "insert": "🌍🌍"}, {"pos": 7, "insert": "!"}]}),
    )
    .await;
    assert_eq!(r["length"], 8);
    assert_eq!(server.text(&id).await, "𝄞a🌍🌍ébc!");
    c.wait_for_text("𝄞a🌍🌍ébc!", WAIT).await;
    // A stale edit out of range of its own version is refused, naming that version's range.
    let r = server
        .send_json(
            "POST",
            &format!("/api/documents/{id}/edits"),
            &json!({"version": 1, "edits": [{"pos": 6}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.json()["detail"].as_str().unwrap().contains("0..=5"),
        "{r:?}"
    );
}

/// A REST edit reaches live editors, an editor's edit reaches REST reads, and both survive a
/// restart.
async fn rest_and_websocket_see_each_other(kind: StoreKind) {
    let mut server = TestServer::start(kind, &[]).await;
    let id = server.create_document("shared: ").await;
    let ws = Client::connect(&server.ws_url(&id)).await;
    assert_eq!(ws.text(), "shared: ");

    edits(
        &server,
        &id,
        json!({"edits": [{"pos": 8, "insert": "rest✓"}]}),
    )
    .await;
    ws.wait_for_text("shared: rest✓", WAIT).await;

    ws.push(" ws🦀");
    ws.flush().await;
    wait_rest_text(&server, &id, "shared: rest✓ ws🦀").await;
    let meta = server.get(&format!("/api/documents/{id}")).await.json();
    assert_eq!(meta["length"], 17);
    assert_eq!(meta["version"], 3);

    // A document made over the WebSocket is visible to REST too.
    let other = Client::connect(&server.ws_url("made-by-ws")).await;
    other.push("hi");
    other.flush().await;
    wait_rest_text(&server, "made-by-ws", "hi").await;
    let list = server.get("/api/documents?limit=1000").await.json();
    let ids: Vec<&str> = list["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&id.as_str()) && ids.contains(&"made-by-ws"),
        "{list}"
    );

    server.restart().await;
    assert_eq!(server.text(&id).await, "shared: rest✓ ws🦀");
    let again = Client::connect(&server.ws_url(&id)).await;
    assert_eq!(again.text(), "shared: rest✓ ws🦀");
}

/// History lists every change with its origin and char counts; the text at each version is
/// what it was; restore brings an old text back as a new change.
async fn history_text_at_version_and_restore(kind: StoreKind) {
    let mut server = TestServer::start(kind, &[]).await;
    let id = server.create_document("one").await;
    let base = format!("/api/documents/{id}");
    edits(
        &server,
        &id,
        json!({"edits": [{"pos": 3, "insert": " two"}]}),
    )
    .await;
    edits(
        &server,
        &id,
        json!({"edits": [{"pos": 4, "delete": 3, "insert": "2"}]}),
    )
    .await;
    let ws = Client::connect(&server.ws_url(&id)).await;
    ws.push("!");
    ws.flush().await;
    wait_rest_text(&server, &id, "one 2!").await;
    let texts = ["", "one", "one two", "one 2", "one 2!"];

    // Diffs between any two versions: the edits turn one text into the other.
    for from in 0..texts.len() {
        for to in 0..texts.len() {
            let diff = server
                .get(&format!("{base}/diff?from={from}&to={to}"))
                .await
                .json();
            assert_eq!(
                (diff["from"].as_i64(), diff["to"].as_i64()),
                (Some(from as i64), Some(to as i64))
            );
            let mut text: Vec<char> = texts[from].chars().collect();
            for e in diff["edits"].as_array().unwrap() {
                let pos = e["pos"].as_u64().unwrap() as usize;
                let delete = e["delete"].as_u64().unwrap() as usize;
                text.splice(pos..pos + delete, e["insert"].as_str().unwrap().chars());
            }
            assert_eq!(
                text.iter().collect::<String>(),
                texts[to],
                "diff {from} -> {to}: {diff}"
            );
        }
    }
    let current = server.get(&format!("{base}/diff?from=1")).await.json();
    assert_eq!(current["to"], 4, "{current}");
    assert_eq!(
        server
            .get(&format!("{base}/diff?from=0&to=99"))
            .await
            .status,
        409
    );
    assert_eq!(server.get(&format!("{base}/diff?to=1")).await.status, 400);
    let unified = server
        .request(
            "GET",
            &format!("{base}/diff?from=1&to=4"),
            &[("Accept", "text/x-diff")],
            b"",
        )
        .await;
    assert_eq!(
        unified.header("content-type"),
        Some("text/x-diff; charset=utf-8")
    );
    assert!(
        unified.body.contains(&format!("--- {id}@1\n+++ {id}@4\n"))
            && unified.body.contains("\n-one\n")
            && unified.body.contains("\n+one 2!\n"),
        "{}",
        unified.body
    );

    let history = server
        .get(&format!("{base}/history?group=none"))
        .await
        .json();
    let entries = history["entries"].as_array().unwrap();
    let summary: Vec<(i64, String, i64, i64)> = entries
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["origin"]
                    .as_str()
                    .unwrap()
                    .split('-')
                    .next()
                    .unwrap()
                    .to_string(),
                e["inserted"].as_i64().unwrap(),
                e["deleted"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (4, "conn".into(), 1, 0),
            (3, "rest:edits".into(), 1, 3),
            (2, "rest:edits".into(), 4, 0),
            (1, "rest:create".into(), 3, 0),
        ]
    );
    assert!(entries[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(history["next_before"], Value::Null);

    // Pages.
    let page = server
        .get(&format!("{base}/history?group=none&limit=3"))
        .await
        .json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 3);
    assert_eq!(page["next_before"], 2);
    let page = server
        .get(&format!("{base}/history?group=none&limit=3&before=2"))
        .await
        .json();
    assert_eq!(page["entries"][0]["seq"], 1);
    assert_eq!(page["next_before"], Value::Null);

    // Time travel.
    for (version, text) in texts.iter().enumerate() {
        let r = server.get(&format!("{base}/text?version={version}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(&r.body, text, "text at version {version}");
        assert_eq!(r.header("etag"), Some(format!("\"{version}\"").as_str()));
    }
    let r = server.get(&format!("{base}/text?version=5")).await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["current_version"], 4);

    // Restore version 2 as a new change; history keeps everything.
    let r = server
        .send_json("POST", &format!("{base}/restore"), &json!({"version": 2}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), json!({"version": 5, "length": 7}));
    ws.wait_for_text("one two", WAIT).await;
    assert_eq!(server.text(&id).await, "one two");
    let history = server
        .get(&format!("{base}/history?group=none"))
        .await
        .json();
    assert_eq!(history["entries"][0]["origin"], "rest:restore");
    assert_eq!(history["entries"].as_array().unwrap().len(), 5);
    let r = server.get(&format!("{base}/text?version=4")).await;
    assert_eq!(r.body, "one 2!");
    // Restoring the current version changes nothing.
    let r = server
        .send_json("POST", &format!("{base}/restore"), &json!({"version": 5}))
        .await;
    assert_eq!(r.json(), json!({"version": 5, "length": 7}));
    let r = server
        .send_json("POST", &format!("{base}/restore"), &json!({"version": 6}))
        .await;
    assert_eq!(r.status, 409, "{r:?}");

    // All of it is durable.
    server.restart().await;
    let r = server.get(&format!("{base}/text?version=3")).await;
    assert_eq!(r.body, "one 2");
    let after = server
        .get(&format!("{base}/history?group=none"))
        .await
        .json();
    assert_eq!(after["entries"], history["entries"]);
}

/// PUT text changes only what differs, so a live editor's cursor in unchanged text stays on
/// the same char.
async fn put_text_is_minimal_and_keeps_cursors(kind: StoreKind) {
    let server = TestServer::start(kind, &[]).await;
    let id = server.create_document("The quick brown fox 🦊 jumps").await;
    let ws = Client::connect(&server.ws_url(&id)).await;
    // A cursor just before "fox" (UTF-16 offset 16).
    let cursor = {
        let text = ws.doc().get_or_insert_text(TEXT_NAME);
        let txn = ws.doc().transact();
        text.sticky_index(&txn, 16, Assoc::After).unwrap()
    };
    let new_text = "The quick red fox 🦊 jumps high";
    let r = server
        .request(
            "PUT",
            &format!("/api/documents/{id}/text"),
            &[("Content-Type", "text/plain")],
            new_text.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["length"], new_text.chars().count());
    ws.wait_for_text(new_text, WAIT).await;
    let offset = cursor.get_offset(&ws.doc().transact()).unwrap().index;
    assert_eq!(offset, 14, "the cursor before \"fox\" moved off it");
    let history = server
        .get(&format!("/api/documents/{id}/history?group=none&limit=1"))
        .await
        .json();
    let e = &history["entries"][0];
    assert_eq!(e["origin"], "rest:text");
    let touched = e["inserted"].as_i64().unwrap() + e["deleted"].as_i64().unwrap();
    assert!(touched <= 13, "PUT rewrote more than it had to: {e}");
    // The same text again is no change at all.
    let r = server
        .request(
            "PUT",
            &format!("/api/documents/{id}/text"),
            &[("Content-Type", "text/plain")],
            new_text.as_bytes(),
        )
        .await;
    assert_eq!(r.json()["version"], 2);
}

const WORDS: &[&str] = &[
    "alpha", "alphabet", "alpine", "beta", "Beta", "gamma", "日本", "Grüße", "fox_1", "alps",
];

/// After two editors typed and deleted words for a while, search and autocomplete answer for
/// the text they converged on.
async fn search_and_complete_after_live_edits(kind: StoreKind) {
    let server = TestServer::start(kind, &[]).await;
    let id = server.create_document("").await;
    let clients = [
        Client::connect(&server.ws_url(&id)).await,
        Client::connect(&server.ws_url(&id)).await,
    ];
    let mut rng = Rng::from_env("search_and_complete_after_live_edits");
    for step in 0..600 {
        let client = &clients[step % 2];
        let word = *rng.pick(WORDS);
        let sep = *rng.pick(&[" ", " ", "\n", ", ", "🦀 "]);
        let (r1, r2) = (rng.next_u64(), rng.next_u64());
        client.edit_with(|text| {
            let len = text.chars().count();
            if len > 40 && r1 % 5 == 0 {
                let pos = (r2 % (len as u64 - 8)) as usize;
                Some((pos, 1 + (r1 % 6) as usize, String::new()))
            } else {
                // Insert at a word boundary-ish place: the start, the end or a random spot.
                let pos = match r1 % 3 {
                    0 => 0,
                    1 => len,
                    _ => (r2 % (len as u64 + 1)) as usize,
                };
                Some((pos, 0, format!("{word}{sep}")))
            }
        });
        if step % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for c in &clients {
        c.flush().await;
    }
    // Every edit is in its author's own state: merging those is what everyone must reach.
    let states: Vec<Vec<u8>> = clients.iter().map(|c| c.encode_state()).collect();
    let text = merged_text(states.iter().map(Vec::as_slice)).unwrap();
    for c in &clients {
        c.wait_for_text(&text, WAIT).await;
    }
    wait_rest_text(&server, &id, &text).await;

    // Search: case-sensitive substring, compared with str::match_indices.
    let chars: Vec<char> = text.chars().collect();
    let char_at_byte = |b: usize| text[..b].chars().count();
    for needle in ["alp", "Beta", "日本", "x_1"] {
        let want: Vec<usize> = text
            .match_indices(needle)
            .map(|(b, _)| char_at_byte(b))
            .collect();
        let r = server
            .get(&format!(
                "/api/documents/{id}/search?q={}&limit=1000",
                urlencode(needle)
            ))
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let found = r.json();
        let got: Vec<usize> = found["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["offset"].as_u64().unwrap() as usize)
            .collect();
        assert_eq!(got, want, "matches of {needle:?}");
        assert_eq!(found["total"].as_u64().unwrap() as usize, want.len());
        for m in found["matches"].as_array().unwrap() {
            let offset = m["offset"].as_u64().unwrap() as usize;
            let line = chars[..offset].iter().filter(|&&c| c == '\n').count();
            let line_start = chars[..offset]
                .iter()
                .rposition(|&c| c == '\n')
                .map_or(0, |p| p + 1);
            assert_eq!(m["line"], line);
            assert_eq!(m["column"], offset - line_start);
            let ctx = m["context"].as_str().unwrap();
            let at = m["context_offset"].as_u64().unwrap() as usize;
            let in_ctx: String = ctx.chars().skip(at).take(needle.chars().count()).collect();
            assert_eq!(in_ctx, needle);
        }
    }
    // Case-insensitive whole words: "beta" finds both spellings, never inside "alphabet".
    let r = server
        .get(&format!(
            "/api/documents/{id}/search?q=beta&case=insensitive&word=true&limit=1000"
        ))
        .await
        .json();
    let words = word_counts(&text);
    assert_eq!(
        r["total"].as_u64().unwrap(),
        u64::from(
            words.get("beta").copied().unwrap_or(0) + words.get("Beta").copied().unwrap_or(0)
        )
    );

    // Autocomplete: counts of the words with a prefix, most frequent first, then by code point.
    for prefix in ["al", "B", "日", "", "zzz"] {
        let mut want: Vec<(String, u32)> = words
            .iter()
            .filter(|(w, _)| w.starts_with(prefix))
            .map(|(w, c)| (w.clone(), *c))
            .collect();
        want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        want.truncate(10);
        let r = server
            .get(&format!(
                "/api/documents/{id}/complete?prefix={}",
                urlencode(prefix)
            ))
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let got: Vec<(String, u32)> = r.json()["completions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["word"].as_str().unwrap().to_string(),
                    c["count"].as_u64().unwrap() as u32,
                )
            })
            .collect();
        assert_eq!(got, want, "completions of {prefix:?}");
    }
}

/// Words as editor-core counts them: maximal runs of alphanumerics and `_`.
fn word_counts(text: &str) -> HashMap<String, u32> {
    let mut counts = HashMap::new();
    for w in text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        if !w.is_empty() {
            *counts.entry(w.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Deleting a document closes its sockets with 4404; afterwards every request for it, the
/// WebSocket upgrade included, is a 404, and it is gone from the list.
async fn delete_closes_sockets_and_404s_after(kind: StoreKind) {
    let server = TestServer::start(kind, &[]).await;
    let id = server.create_document("doomed").await;
    let keep = server.create_document("kept").await;
    let ws = Client::connect(&server.ws_url(&id)).await;
    let ws2 = Client::connect(&server.ws_url(&id)).await;

    let r = server
        .request("DELETE", &format!("/api/documents/{id}"), &[], b"")
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    for c in [&ws, &ws2] {
        let closed = c.wait_closed(WAIT).await;
        assert_eq!(closed.code, Some(close::DOCUMENT_DELETED), "{closed:?}");
        assert_eq!(closed.reason, "document deleted");
    }

    for path in [
        "",
        "/text",
        "/history",
        "/blame",
        "/versions",
        "/update",
        "/search?q=a",
        "/complete",
    ] {
        let r = server.get(&format!("/api/documents/{id}{path}")).await;
        assert_eq!(r.status, 404, "GET {path} after delete: {r:?}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let r = server
        .send_json(
            "POST",
            &format!("/api/documents/{id}/edits"),
            &json!({"edits": [{"pos": 0, "insert": "x"}]}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = server
        .request("DELETE", &format!("/api/documents/{id}"), &[], b"")
        .await;
    assert_eq!(r.status, 404);
    match RawConn::connect(&server.ws_url(&id)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 404)
        }
        Err(other) => panic!("WebSocket upgrade failed the wrong way: {other}"),
        Ok(_) => panic!("WebSocket upgrade to a deleted document was accepted"),
    }
    let list = server.get("/api/documents").await.json();
    let ids: Vec<&str> = list["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![keep.as_str()]);
    // The REST API never creates a document by reading it.
    let r = server.get("/api/documents/never-made/text").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        server.get("/api/documents").await.json()["documents"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// The whole document as a Yjs update, and an update from another Yjs client applied.
async fn update_export_and_import(kind: StoreKind) {
    let server = TestServer::start(kind, &[]).await;
    let id = server.create_document("hello 🌍").await;
    let r = server.get(&format!("/api/documents/{id}/update")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let doc = client_doc();
    let text = doc.get_or_insert_text(TEXT_NAME);
    doc.transact_mut()
        .apply_update(Update::decode_v1(&r.bytes).unwrap())
        .unwrap();
    assert_eq!(text.get_string(&doc.transact()), "hello 🌍");

    // Another Yjs client's edit, sent as an update.
    let before = doc.transact().state_vector();
    text.insert(&mut doc.transact_mut(), 8, " and 🌕");
    let update = doc.transact().encode_state_as_update_v1(&before);
    let r = server
        .request(
            "POST",
            &format!("/api/documents/{id}/update"),
            &[("Content-Type", "application/octet-stream")],
            &update,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), json!({"version": 2, "length": 13}));
    assert_eq!(server.text(&id).await, "hello 🌍 and 🌕");
    // The same update again adds nothing.
    let r = server
        .request(
            "POST",
            &format!("/api/documents/{id}/update"),
            &[("Content-Type", "application/octet-stream")],
            &update,
        )
        .await;
    assert_eq!(r.json()["version"], 2);
    let r = server
        .request(
            "POST",
            &format!("/api/documents/{id}/update"),
            &[("Content-Type", "application/octet-stream")],
            &[0xff, 0xff, 0xff, 0x01, 0x02],
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["type"], "urn:quire:problem:invalid-update");
}

/// Every error is RFC 9457 problem+json with a status matching the response's.
async fn errors_are_problem_details(kind: StoreKind) {
    let server = TestServer::start(kind, &["--max-body-bytes", "1024"]).await;
    let id = server.create_document("abc").await;
    let edits_path = format!("/api/documents/{id}/edits");
    let json_ct = [("Content-Type", "application/json")];
    // No body at all is `{}` (`curl -X POST …/api/documents`), unlike whitespace (below).
    let r = server
        .request("POST", "/api/documents", &json_ct, b"")
        .await;
    assert_eq!(r.status, 201, "{r:?}");

    let cases: Vec<(&str, quire_tests::http::Response, u16, &str, &str)> = vec![
        (
            "position out of range",
            server
                .send_json(
                    "POST",
                    &edits_path,
                    &json!({"edits": [{"pos": 9, "insert": "x"}]}),
                )
                .await,
            400,
            "invalid-position",
            "valid positions are 0..=3",
        ),
        (
            "delete past the end",
            server
                .send_json(
                    "POST",
                    &edits_path,
                    &json!({"edits": [{"pos": 1, "delete": 5}]}),
                )
                .await,
            400,
            "invalid-position",
            "at most 2",
        ),
        (
            "unknown document",
            server.get("/api/documents/nope").await,
            404,
            "not-found",
            "nope",
        ),
        (
            "unknown route",
            server.get("/api/nothing-here").await,
            404,
            "not-found",
            "",
        ),
        (
            "unknown version",
            server
                .send_json("POST", &edits_path, &json!({"version": 7, "edits": []}))
                .await,
            409,
            "unknown-version",
            "current version is 1",
        ),
        (
            "body over the limit",
            server
                .send_json(
                    "POST",
                    &edits_path,
                    &json!({"edits": [{"pos": 0, "insert": "x".repeat(2000)}]}),
                )
                .await,
            413,
            "body-too-large",
            "",
        ),
        (
            "JSON syntax",
            server
                .request("POST", &edits_path, &json_ct, b"{\"edits\": [")
                .await,
            400,
            "invalid-json",
            "",
        ),
        (
            "a body of only whitespace is not JSON, and not \"no body\"",
            server
                .request("POST", "/api/documents", &json_ct, b" \n")
                .await,
            400,
            "invalid-json",
            "",
        ),
        (
            "missing field",
            server.request("POST", &edits_path, &json_ct, b"{}").await,
            400,
            "invalid-json",
            "edits",
        ),
        (
            "wrong type",
            server
                .request(
                    "POST",
                    &edits_path,
                    &json_ct,
                    b"{\"edits\": [{\"pos\": -1}]}",
                )
                .await,
            400,
            "invalid-json",
            "",
        ),
        (
            "not JSON",
            server
                .request("POST", &edits_path, &[], b"{\"edits\": []}")
                .await,
            415,
            "unsupported-media-type",
            "",
        ),
        (
            "bad query",
            server
                .get(&format!("/api/documents/{id}/history?limit=many"))
                .await,
            400,
            "invalid-query",
            "limit",
        ),
        (
            "query out of range",
            server.get("/api/documents?limit=0").await,
            400,
            "invalid-query",
            "1..=1000",
        ),
        (
            "negative version",
            server
                .get(&format!("/api/documents/{id}/text?version=-1"))
                .await,
            400,
            "bad-request",
            "",
        ),
        (
            "method not allowed",
            server.request("DELETE", "/api/documents", &[], b"").await,
            405,
            "method-not-allowed",
            "",
        ),
        (
            "text not UTF-8",
            server
                .request(
                    "PUT",
                    &format!("/api/documents/{id}/text"),
                    &[("Content-Type", "text/plain")],
                    &[0x61, 0xff],
                )
                .await,
            400,
            "bad-request",
            "UTF-8",
        ),
        (
            "text without a text content type",
            server
                .request("PUT", &format!("/api/documents/{id}/text"), &[], b"x")
                .await,
            415,
            "unsupported-media-type",
            "text/plain",
        ),
        (
            "name too long",
            server
                .send_json(
                    "PATCH",
                    &format!("/api/documents/{id}"),
                    &json!({"name": "n".repeat(300)}),
                )
                .await,
            400,
            "bad-request",
            "at most 256",
        ),
    ];
    for (what, r, status, kind, detail) in cases {
        assert_eq!(r.status, status, "{what}: {r:?}");
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{what}: {r:?}"
        );
        let p = r.json();
        assert_eq!(p["status"], status, "{what}: {p}");
        assert_eq!(
            p["type"],
            format!("urn:quire:problem:{kind}"),
            "{what}: {p}"
        );
        assert!(
            p["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{what}: {p}"
        );
        let d = p["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no detail in {p}"));
        assert!(
            d.contains(detail),
            "{what}: detail {d:?} should mention {detail:?}"
        );
        if status == 405 {
            assert!(
                r.header("allow").is_some(),
                "{what}: no Allow header: {r:?}"
            );
        }
    }
    // Nothing above changed the document.
    assert_eq!(server.text(&id).await, "abc");
    let openapi = server.get("/api/openapi.json").await;
    assert_eq!(openapi.status, 200);
    assert!(openapi.json()["openapi"]
        .as_str()
        .unwrap()
        .starts_with("3.1"));
}

/// Every JSON endpoint wants an object: an array, number, string, boolean (or, except for
/// `POST /api/documents`, where `null` means "no body", a `null`) is a 400 problem and changes
/// nothing. serde's derived structs also accept a JSON array of their fields in order, so
/// `[null]` once renamed a document (schemathesis ST201 on `PATCH /api/documents/{id}`) and `[]`
/// minted a token.
async fn bodies_that_are_not_objects_are_refused(kind: StoreKind) {
    const SECRET: &str = "test-secret-0123456789";
    let server = TestServer::start(kind, &["--auth-secret", SECRET]).await;
    let bearer = format!("Bearer {SECRET}");
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", bearer.as_str()),
    ];
    let r = server
        .request("POST", "/api/documents", &headers, br#"{"name": "kept"}"#)
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = server
        .request(
            "POST",
            &format!("/api/documents/{id}/edits"),
            &headers,
            br#"{"edits": [{"pos": 0, "insert": "abc"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let documents_before = server
        .request("GET", "/api/documents", &headers[1..], b"")
        .await
        .json()["documents"]
        .as_array()
        .unwrap()
        .len();

    let doc = format!("/api/documents/{id}");
    let endpoints: [(&str, String); 6] = [
        ("POST", "/api/documents".into()),
        ("PATCH", doc.clone()),
        ("POST", format!("{doc}/edits")),
        ("POST", format!("{doc}/restore")),
        ("POST", "/api/tokens".into()),
        ("POST", "/api/tokens/revoke".into()),
    ];
    for (method, path) in &endpoints {
        let mut bodies: Vec<&[u8]> = vec![
            b"[null]",
            b"[]",
            br#"["x"]"#,
            b"[0]",
            b"1",
            b"-2.5",
            br#""x""#,
            b"true",
        ];
        if path != "/api/documents" {
            bodies.push(b"null");
        }
        for body in bodies {
            let r = server.request(method, path, &headers, body).await;
            let what = format!("{method} {path} {}", String::from_utf8_lossy(body));
            assert_eq!(r.status, 400, "{what}: {r:?}");
            assert_eq!(
                r.header("content-type"),
                Some("application/problem+json"),
                "{what}"
            );
            assert_eq!(
                r.json()["type"],
                "urn:quire:problem:invalid-json",
                "{what}: {r:?}"
            );
        }
    }
    // Nothing changed: the name, the text, the version, the number of documents.
    let meta = server.request("GET", &doc, &headers[1..], b"").await.json();
    assert_eq!(meta["name"], "kept", "{meta}");
    assert_eq!(meta["version"], 1, "{meta}");
    let text = server
        .request("GET", &format!("{doc}/text"), &headers[1..], b"")
        .await;
    assert_eq!(text.body, "abc");
    let documents_after = server
        .request("GET", "/api/documents", &headers[1..], b"")
        .await
        .json()["documents"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(documents_after, documents_before);
}

/// A NUL in a name was stored by SQLite and answered 503 "database unavailable" by PostgreSQL;
/// now both refuse control characters and over-long names with 400, and nothing changes.
async fn names_are_checked_alike_on_both_stores(kind: StoreKind) {
    let server = TestServer::start(kind, &[]).await;
    let created = server
        .send_json("POST", "/api/documents", &json!({"name": "kept"}))
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_str().unwrap().to_string();
    let before = document_count(&server).await;
    let long = "n".repeat(257);
    for bad in [
        "a\u{0}b",
        "two\nlines",
        "tab\there",
        "bell\u{7}",
        long.as_str(),
    ] {
        let r = server
            .send_json("POST", "/api/documents", &json!({ "name": bad }))
            .await;
        assert_eq!(r.status, 400, "create {bad:?}: {r:?}");
        let detail = r.json()["detail"].as_str().unwrap_or_default().to_string();
        assert!(
            detail.contains("control character") || detail.contains("at most 256"),
            "{detail}"
        );
        let r = server
            .send_json(
                "PATCH",
                &format!("/api/documents/{id}"),
                &json!({ "name": bad }),
            )
            .await;
        assert_eq!(r.status, 400, "rename to {bad:?}: {r:?}");
    }
    assert_eq!(document_count(&server).await, before, "nothing was created");
    let meta = server.get(&format!("/api/documents/{id}")).await.json();
    assert_eq!(meta["name"], "kept", "the name is unchanged");
    // Names people use still work: accents, emoji, 256 characters.
    let fine = format!("Café ☕ notes {}", "é".repeat(243));
    assert_eq!(fine.chars().count(), 256);
    let r = server
        .send_json(
            "PATCH",
            &format!("/api/documents/{id}"),
            &json!({ "name": fine }),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        server.get(&format!("/api/documents/{id}")).await.json()["name"],
        fine
    );
}

async fn document_count(server: &TestServer) -> usize {
    server.get("/api/documents").await.json()["documents"]
        .as_array()
        .unwrap()
        .len()
}
