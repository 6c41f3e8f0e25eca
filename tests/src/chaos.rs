//! Helpers of the chaos tests (`tests/tests/chaos.rs`, `pg_outage.rs`, `malformed_storm.rs`):
//! editors that keep typing through crashes, containment checks, the stock JS chaos client, and
//! a private PostgreSQL cluster a test may stop and start.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quire_wire::TEXT_NAME;
use yrs::{Doc, ReadTxn, StateVector, Transact};

use crate::client::client_doc;
use crate::trace::merged_text;
use crate::{Client, Rng};

/// The text of a yrs document.
pub fn text_of(doc: &Doc) -> String {
    use yrs::GetString;
    let txn = doc.transact();
    txn.get_text(TEXT_NAME)
        .map(|t| t.get_string(&txn))
        .unwrap_or_default()
}

/// The whole state of a document as one v1 update.
pub fn state_of(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

/// `None` if the document whose state is `big` holds everything `small` holds (state vector
/// dominates; merging `small` in, deletions included, changes nothing), else what is missing.
pub fn missing(big: &[u8], small: &[u8]) -> Option<String> {
    use yrs::updates::decoder::Decode;
    let doc = client_doc();
    doc.transact_mut()
        .apply_update(yrs::Update::decode_v1(big).expect("state decodes"))
        .expect("state applies");
    let small_doc = client_doc();
    small_doc
        .transact_mut()
        .apply_update(yrs::Update::decode_v1(small).expect("state decodes"))
        .expect("state applies");
    let big_sv = doc.transact().state_vector();
    for (client, clock) in small_doc.transact().state_vector().iter() {
        if big_sv.get(client) < *clock {
            return Some(format!(
                "client {client}'s ops up to clock {clock}; only up to {}",
                big_sv.get(client)
            ));
        }
    }
    let merged = merged_text([big, small]).expect("merge");
    // `big` re-encoded alone (not its live text): see tests/tests/simulation.rs.
    let text = merged_text([big]).expect("decode");
    (merged != text).then(|| {
        format!(
            "deletions or content: merged text has {} chars, the state {}",
            merged.chars().count(),
            text.chars().count()
        )
    })
}

/// Connects with `doc`, retrying (a restarting server) until `deadline`.
pub async fn reconnect(url: &str, doc: Doc, deadline: Instant) -> Client {
    loop {
        match Client::try_connect_with_doc(url, doc.clone()).await {
            Ok(c) => return c,
            Err(err) if Instant::now() >= deadline => panic!("cannot reconnect to {url}: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A Rust editor typing random edits (ASCII, multi-byte, emoji; inserts, deletes, replaces)
/// until `stop`, reconnecting with its document whenever its socket ends and dropping its own
/// connection now and then. Returns the client, connected, with its edits flushed.
pub async fn random_editor(
    url: String,
    seed: u64,
    stop: Arc<AtomicBool>,
    edits_made: Arc<AtomicU64>,
) -> Client {
    const PIECES: &[&str] = &["r", "ust ", "ö", "€", "中", "🦀", "👍🏽", "\n", "e\u{301}"];
    let mut rng = Rng::new(seed);
    let deadline = || Instant::now() + Duration::from_secs(30);
    let mut client = reconnect(&url, client_doc(), deadline()).await;
    while !stop.load(Ordering::Relaxed) {
        if client.closed().is_some() || rng.below(150) == 0 {
            let doc = client.doc().clone();
            drop(client);
            client = reconnect(&url, doc, deadline()).await;
        }
        let (r1, r2, r3) = (rng.next_u64(), rng.next_u64(), rng.next_u64());
        let piece: String = (0..1 + r3 % 3)
            .map(|k| PIECES[((r3 >> (8 * k)) % PIECES.len() as u64) as usize])
            .collect();
        client.edit_with(|text| {
            let len = text.chars().count();
            if len > 0 && r1 % 3 == 0 {
                let pos = (r2 % len as u64) as usize;
                let del = 1 + (r3 as usize % 4).min(len - pos - 1);
                let ins = if r1 % 2 == 0 {
                    piece.clone()
                } else {
                    String::new()
                };
                Some((pos, del, ins))
            } else {
                Some(((r2 % (len as u64 + 1)) as usize, 0, piece.clone()))
            }
        });
        edits_made.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(3 + rng.below(10) as u64)).await;
    }
    if client.closed().is_some() {
        let doc = client.doc().clone();
        drop(client);
        client = reconnect(&url, doc, deadline()).await;
    }
    client.flush().await;
    client
}

/// `node tests/js/chaos.mjs`: the stock Yjs client making random edits with reconnects.
pub struct JsChaos {
    child: Child,
    stdin: Option<ChildStdin>,
}

/// What the JS chaos client reported when it finished.
#[derive(Debug)]
pub struct JsReport {
    pub text: String,
    pub state: Vec<u8>,
    pub edits: u64,
    pub reconnects: u64,
}

impl JsChaos {
    pub fn spawn(server_ws_base: &str, doc: &str, seed: u64, edits: u32) -> JsChaos {
        let dir = crate::js::js_dir();
        assert!(
            dir.join("node_modules/y-websocket").is_dir(),
            "{}/node_modules is missing: run `npm ci --prefix tests/js`",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("chaos.mjs"))
            .args(["--server", server_ws_base, "--doc", doc])
            .args(["--seed", &(seed % 4_000_000_000 + 1).to_string()])
            .args(["--edits", &edits.to_string()])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node: {e}"));
        let stdin = child.stdin.take();
        JsChaos { child, stdin }
    }

    /// Asks it to finish (wait for its edits, get synced) and returns what it reported.
    pub async fn finish(mut self, timeout: Duration) -> JsReport {
        let mut stdin = self.stdin.take().expect("finished once");
        writeln!(stdin, "finish").expect("write to node");
        stdin.flush().expect("flush to node");
        let stdout = self.child.stdout.take().expect("piped");
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = match tokio::time::timeout(timeout, read).await {
            Ok(Ok(Ok(line))) => line,
            other => panic!("chaos.mjs did not report within {timeout:?}: {other:?}"),
        };
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
            panic!(
                "chaos.mjs printed {} bytes that are not its report: {e}",
                line.len()
            )
        });
        let hex = v["state"].as_str().expect("state");
        let state = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        JsReport {
            text: v["text"].as_str().expect("text").to_string(),
            state,
            edits: v["edits"].as_u64().unwrap_or(0),
            reconnects: v["reconnects"].as_u64().unwrap_or(0),
        }
    }
}

impl Drop for JsChaos {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway PostgreSQL cluster of one test's own (data under `target/`, a free port), which
/// the test may stop and start: never the machine's shared server. Run as the `postgres` user
/// when we are root (initdb and postgres refuse root), as scripts/ensure-postgres.sh does.
pub struct PrivateCluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    running: bool,
}

impl PrivateCluster {
    pub fn init() -> PrivateCluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|entries| {
                let mut dirs: Vec<PathBuf> = entries
                    .flatten()
                    .map(|e| e.path().join("bin"))
                    .filter(|p| p.join("initdb").exists())
                    .collect();
                dirs.sort();
                dirs.pop()
            })
            .expect("PostgreSQL binaries (/usr/lib/postgresql/*/bin/initdb) are needed: apt-get install postgresql");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        // Not under the checkout: the `postgres` user that runs the cluster (when we are root)
        // may not be allowed into it (a clone made by `mktemp -d` is mode 0700).
        let root = std::env::temp_dir().join("quire-pg-private");
        std::fs::create_dir_all(&root).expect("create the private cluster's folder");
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755));
        }
        let data = root.join(format!("data-{}-{port}", std::process::id()));
        let log = root.join(format!("log-{}-{port}.txt", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).expect("data dir");
        std::fs::write(&log, "").expect("log file");
        if is_root() {
            for p in [&root, &data, &log] {
                let status = Command::new("chown").arg("postgres").arg(p).status();
                assert!(
                    status.is_ok_and(|s| s.success()),
                    "chown postgres {}",
                    p.display()
                );
            }
        }
        let cluster = PrivateCluster {
            bin,
            data,
            log,
            port,
            running: false,
        };
        let out = cluster
            .command("initdb")
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-D"])
            .arg(&cluster.data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        // initdb and pg_ctl chdir back to their working directory; make it one they may enter.
        if let Some(parent) = self.data.parent() {
            c.current_dir(parent);
        }
        c
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start(&mut self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k /tmp -c fsync=off",
                self.port
            ))
            .arg("start")
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        self.running = true;
    }

    /// `pg_ctl stop -m immediate`: the database goes away without a goodbye.
    pub fn stop(&mut self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .expect("run pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = false;
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.data);
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

#[allow(unsafe_code)] // libc call
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
