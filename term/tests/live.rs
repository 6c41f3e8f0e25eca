//! The real `quire` binary editing live documents on a real quire-server (the tests/ harness's
//! `TestServer`, SQLite): two terminal editors and a Yjs client converge; collaborators' cursors
//! show on screen; undo takes back only one's own edits; a server crash and restart mid-session
//! loses nothing (offline edits merge on reconnect); cursors interoperate with the stock Yjs
//! client as y-codemirror.next reads and writes them.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use quire_tests::{bounded, Client, StoreKind, TestServer};
use support::keys::*;
use support::{Proxy, Scratch, Term, WAIT};

const LIMIT: Duration = Duration::from_secs(60);

fn editor(label: &str, args: &[&str], scratch: &Scratch) -> Term {
    let mut all = vec!["edit"];
    all.extend_from_slice(args);
    Term::spawn(label, &all, scratch.dir(), 24, 100)
}

fn rgb(hex: u32) -> vt100::Color {
    vt100::Color::Rgb((hex >> 16) as u8, (hex >> 8) as u8, hex as u8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_editors_and_a_yjs_client_converge() {
    bounded(LIMIT, async {
        let server = TestServer::start(StoreKind::Sqlite, &[]).await;
        let s = Scratch::new("converge");
        let client = Client::connect(&server.ws_url("shared")).await;
        client.push("hello\n");
        client.flush().await;

        let doc_url = format!("{}/shared", server.url());
        let mut alice = editor(
            "alice",
            &[
                &doc_url,
                "--name",
                "alice",
                "--color",
                "#e5484d",
                "--save",
                "alice.txt",
            ],
            &s,
        );
        let ws = server.ws_base_url();
        let mut bob = editor(
            "bob",
            &[
                "--server", &ws, "shared", "--name", "bob", "--color", "#2f9e44", "--save",
                "bob.txt",
            ],
            &s,
        );
        for t in [&alice, &bob] {
            t.wait_for_async("● synced").await;
            t.wait_for_async("hello").await;
        }
        alice.wait_for_async("with bob").await;
        bob.wait_for_async("with alice").await;

        alice.send(CTRL_END);
        alice.send("from alice");
        bob.send(CTRL_HOME);
        bob.send("bob: ");
        client.edit_with(|text| {
            let at = text.find("hello")?;
            Some((text[..at].chars().count() + 5, 0, " wörld 😀".to_string()))
        });
        let expected = "bob: hello wörld 😀\nfrom alice";
        client.wait_for_text(expected, WAIT).await;
        alice.wait_for_async("bob: hello wörld").await;
        bob.wait_for_async("from alice").await;

        // Bob's cursor (after "bob: ", column 5) in his colour on Alice's screen, with his name;
        // Alice's own cursor stayed at the end of her text.
        alice
            .wait_until_async("bob's caret on alice's screen", |s| {
                s.cell(0, 4 + 5)
                    .is_some_and(|c| c.bgcolor() == rgb(0x2f9e44))
                    && s.contents().contains(" bob ")
            })
            .await;
        alice
            .wait_until_async("alice's cursor still after her text", |s| {
                s.cursor_position() == (1, 4 + 10)
            })
            .await;
        bob.wait_until_async("alice's caret on bob's screen", |s| {
            s.cell(1, 4 + 10)
                .is_some_and(|c| c.bgcolor() == rgb(0xe5484d))
                && s.contents().contains(" alice ")
        })
        .await;

        // Undo takes back Bob's own edit only; redo puts it back.
        bob.send(CTRL_Z);
        client
            .wait_for_text("hello wörld 😀\nfrom alice", WAIT)
            .await;
        bob.send(CTRL_Y);
        client.wait_for_text(expected, WAIT).await;

        for t in [&mut alice, &mut bob] {
            t.wait_for_async("bob: hello").await;
            t.send(CTRL_S);
            t.wait_for_async("wrote a local copy").await;
            t.send(CTRL_Q);
            assert!(t.wait_exit_async().await);
        }
        assert_eq!(
            std::fs::read_to_string(s.path("alice.txt")).unwrap(),
            expected
        );
        assert_eq!(
            std::fs::read_to_string(s.path("bob.txt")).unwrap(),
            expected
        );
        // They said goodbye: a new client sees the text and nobody's cursor lingers.
        let late = Client::connect(&server.ws_url("shared")).await;
        late.wait_for_text(expected, WAIT).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_mid_session_loses_nothing() {
    bounded(LIMIT, async {
        let mut server = TestServer::start(StoreKind::Sqlite, &[]).await;
        // A restarted TestServer listens on a new port; the proxy keeps the editor's address.
        let proxy = Proxy::start(server.addr()).await;
        let s = Scratch::new("restart");
        let url = format!("{}/doc", proxy.url());
        let mut t = editor(
            "carol",
            &[&url, "--name", "carol", "--save", "copy.txt"],
            &s,
        );
        t.wait_for_async("● synced").await;
        t.send("before the crash\r");
        let witness = Client::connect(&server.ws_url("doc")).await;
        // The server relays only what it has committed: once a client sees it, it is durable.
        witness.wait_for_text("before the crash\n", WAIT).await;
        witness.close().await;

        server.kill9();
        t.wait_for_async("offline").await;
        t.send("typed offline\r");
        t.wait_for_async("typed offline").await;

        server.restart().await;
        proxy.set_target(server.addr());
        t.wait_for_async("● synced").await;
        t.send("after");
        let late = Client::connect(&server.ws_url("doc")).await;
        let expected = "before the crash\ntyped offline\nafter";
        late.wait_for_text(expected, WAIT).await;
        late.push("\nfrom the server side");
        t.wait_for_async("from the server side").await;
        t.send(CTRL_Q);
        assert!(t.wait_exit_async().await);
        assert_eq!(
            std::fs::read_to_string(s.path("copy.txt")).unwrap(),
            format!("{expected}\nfrom the server side")
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens() {
    bounded(LIMIT, async {
        let secret = "terminal-editor-test-secret-0123456789";
        let server = TestServer::start(StoreKind::Sqlite, &["--auth-secret", secret]).await;
        let mint = |role: &'static str| {
            let server = &server;
            async move {
                let body =
                    serde_json::json!({"document": "locked", "role": role, "expires_in": 600});
                let bearer = format!("Bearer {secret}");
                let r = server
                    .request(
                        "POST",
                        "/api/tokens",
                        &[
                            ("Authorization", &bearer),
                            ("Content-Type", "application/json"),
                        ],
                        body.to_string().as_bytes(),
                    )
                    .await;
                assert_eq!(r.status, 201, "mint a {role} token: {r:?}");
                r.json()["token"].as_str().unwrap().to_string()
            }
        };
        let (writer_token, reader_token) = (mint("read-write").await, mint("read-only").await);
        let s = Scratch::new("tokens");
        let url = format!("{}/locked", server.url());

        // No token: refused before the upgrade, and not retried in a loop.
        let mut anon = editor("anon", &[&url], &s);
        anon.wait_for_async("refused: HTTP 401").await;
        anon.send("x");
        anon.wait_for_async("read-only: the server refused the document")
            .await;
        anon.send(CTRL_Q);
        assert!(anon.wait_exit_async().await);

        let mut writer = editor("writer", &["--token", &writer_token, &url], &s);
        writer.wait_for_async("● synced").await;
        writer.send("secret text");
        // A read-only token in the page's address form: it sees the text, its edits are refused.
        let reader_url = format!("{}/d/locked?token={reader_token}", server.url());
        let mut reader = editor("reader", &[&reader_url], &s);
        reader.wait_for_async("● synced").await;
        reader.wait_for_async("secret text").await;
        reader.send(CTRL_END);
        reader.send("!");
        reader.wait_for_async("the server refused an edit").await;
        reader.send("?");
        reader
            .wait_for_async("read-only: the server refuses edits")
            .await;
        writer.send(" stays");
        let check =
            Client::connect(&format!("{}?token={writer_token}", server.ws_url("locked"))).await;
        check.wait_for_text("secret text stays", WAIT).await;
        for t in [&mut writer, &mut reader] {
            t.send(CTRL_Q);
            assert!(t.wait_exit_async().await);
        }
    })
    .await
}

/// The stock Yjs client (`awareness.mjs`, run with node from tests/js).
struct JsPeer {
    child: std::process::Child,
    lines: mpsc::Receiver<serde_json::Value>,
    seen: std::sync::Mutex<Vec<serde_json::Value>>,
}

impl JsPeer {
    fn spawn(ws: &str, doc: &str, peer: &str, mark: &str) -> JsPeer {
        let dir = quire_tests::js::js_dir();
        assert!(
            dir.join("node_modules/yjs").is_dir(),
            "{}/node_modules is missing: run `npm ci --prefix tests/js` (./scripts/test.sh does)",
            dir.display()
        );
        let mut child = Command::new("node")
            .args(["--input-type=module", "-e", include_str!("awareness.mjs")])
            .current_dir(&dir)
            .env("QUIRE_WS", ws)
            .env("QUIRE_DOC", doc)
            .env("QUIRE_PEER", peer)
            .env("QUIRE_MARK", mark)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run node (Node.js 20+ is needed for the stock Yjs client)");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        JsPeer {
            child,
            lines,
            seen: Default::default(),
        }
    }

    /// Waits for a line (among all it printed so far) for which `pred` holds.
    async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let mut seen = self.seen.lock().unwrap();
                seen.extend(self.lines.try_iter());
                if let Some(v) = seen.iter().find(|v| pred(v)) {
                    return v.clone();
                }
                if Instant::now() >= deadline {
                    panic!("the Yjs client did not report {what} within {WAIT:?}; it reported {seen:?}");
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for JsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_interoperate_with_the_stock_yjs_client() {
    bounded(LIMIT, async {
        let server = TestServer::start(StoreKind::Sqlite, &[]).await;
        let s = Scratch::new("awareness");
        let js = JsPeer::spawn(&server.ws_base_url(), "cursors", "alice", "wörld");
        let url = format!("{}/d/cursors", server.url());
        let mut t = editor(
            "alice",
            &[&url, "--name", "alice", "--color", "#0b84e0"],
            &s,
        );
        t.wait_for_async("● synced").await;
        t.send("ab😀cd wörld");
        t.send(CTRL_HOME);
        t.send(RIGHT);
        t.send(RIGHT);
        t.send(RIGHT);
        // After the emoji: char 3, UTF-16 index 4.
        let seen = js
            .wait_for("the terminal's cursor after the emoji", |v| {
                v["head"] == 4 && v["anchor"] == 4 && v["text"] == "ab😀cd wörld"
            })
            .await;
        assert_eq!(seen["peer"]["color"], "#0b84e0");
        assert_eq!(seen["peer"]["colorLight"], "#0b84e033");
        t.send(SHIFT_RIGHT);
        js.wait_for("a selection of c", |v| v["anchor"] == 4 && v["head"] == 5)
            .await;

        // The Yjs client's cursor, before "wörld" (UTF-16 7 = char 6, display column 7).
        js.wait_for("its own cursor placed", |v| v["placed"] == 7)
            .await;
        t.wait_until_async("the Yjs client's caret and name", |s| {
            s.cell(0, 4 + 7)
                .is_some_and(|c| c.bgcolor() == rgb(0x8e4ec6))
                && s.contents().contains(" jsbrowser ")
                && s.contents().contains("with jsbrowser")
        })
        .await;
        // Remote edits before it move its caret with the text.
        t.send(CTRL_HOME);
        t.send("日本 ");
        t.wait_until_async("the caret moved by 5 columns", |s| {
            s.cell(0, 4 + 12)
                .is_some_and(|c| c.bgcolor() == rgb(0x8e4ec6))
        })
        .await;
        t.send(CTRL_Q);
        assert!(t.wait_exit_async().await);
    })
    .await
}

/// Ctrl-T colours the text by who typed it: a Yjs client named "carol" in awareness, and the
/// editor's own user, each in the colour the server's blame gives them; Ctrl-T again: plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_t_colours_the_text_by_who_typed_it() {
    bounded(LIMIT, async {
        let server = TestServer::start(StoreKind::Sqlite, &[]).await;
        let s = Scratch::new("authors");
        let carol = Client::connect(&server.ws_url("authors")).await;
        let id = carol.doc().client_id().get();
        carol.set_presence(id, 1, r##"{"user":{"name":"carol","color":"#123456"}}"##);
        carol.push("carol was here\n");
        carol.flush().await;
        let doc_url = format!("{}/authors", server.url());
        let mut alice = editor("alice", &[&doc_url, "--name", "alice"], &s);
        alice.wait_for_async("● synced").await;
        alice.wait_for_async("carol was here").await;
        alice.send(CTRL_END);
        alice.send("alice too");
        carol.wait_for_text("carol was here\nalice too", WAIT).await;
        let color = |name: &str| {
            let hex = quire_wire::author_color(name);
            rgb(u32::from_str_radix(&hex[1..], 16).unwrap())
        };
        alice.send(CTRL_T);
        alice
            .wait_until_async("carol's and alice's text in their colours", |s| {
                s.cell(0, 4).is_some_and(|c| c.fgcolor() == color("carol"))
                    && s.cell(0, 4 + 13)
                        .is_some_and(|c| c.fgcolor() == color("carol"))
                    && s.cell(1, 4).is_some_and(|c| c.fgcolor() == color("alice"))
            })
            .await;
        alice.wait_for_async("coloured by who typed it").await;
        alice.send(CTRL_T);
        alice
            .wait_until_async("plain again", |s| {
                s.cell(0, 4)
                    .is_some_and(|c| c.fgcolor() == vt100::Color::Default)
            })
            .await;
        alice.send(CTRL_Q);
        alice.wait_exit_async().await;
    })
    .await;
}
