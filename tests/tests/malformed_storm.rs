//! A storm of malformed frames (truncated varints, wrong tags, garbage updates, huge lengths,
//! cut-off messages, text frames) from several connections while honest clients edit: the
//! honest clients are never disconnected and converge, the server stays up, and the op log
//! holds nothing from the bad connections (every row's client ids belong to honest clients).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quire_backend::protocol::decode_frame;
use quire_tests::client::update_frame;
use quire_tests::{Client, RawConn, Rng, StoreKind, TestServer};
use sqlx::Connection;
use yrs::updates::decoder::Decode;

const ATTACKERS: usize = 4;
const FRAMES: u64 = 4000;

/// A frame the server's decoder refuses.
fn malformed(rng: &mut Rng, honest_update: &[u8]) -> Vec<u8> {
    loop {
        let mut f: Vec<u8> = match rng.below(9) {
            0 => vec![0, 0, 0xff],                           // truncated varint
            1 => vec![0x80],                                 // truncated tag
            2 => vec![0, 3 + rng.below(250) as u8, 1, 2, 3], // wrong sync sub-tag
            3 => vec![
                0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ], // huge length
            4 => {
                // garbage update payload
                let n = 1 + rng.below(40);
                let mut f = vec![0, 2, n as u8];
                f.extend((0..n).map(|_| rng.next_u64() as u8));
                f
            }
            5 => {
                // an honest-looking update cut short
                let mut f = update_frame(honest_update);
                let cut = 1 + rng.below(f.len().saturating_sub(1).max(1));
                f.truncate(cut);
                f
            }
            6 => {
                // valid message, then a truncated one
                let mut f = vec![3];
                f.extend([0, 2, 5, 1]);
                f
            }
            7 => vec![1, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2], // awareness with a huge length
            _ => (0..1 + rng.below(30))
                .map(|_| rng.next_u64() as u8)
                .collect(),
        };
        if rng.below(5) == 0 && !f.is_empty() {
            let i = rng.below(f.len());
            f[i] ^= 1 << rng.below(8);
        }
        if decode_frame(&f).is_err() {
            return f;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_storm_leaves_honest_clients_alone() {
    quire_tests::bounded(Duration::from_secs(90), storm()).await
}

async fn storm() {
    let started = Instant::now();
    let mut rng = Rng::from_env("malformed_storm");
    let mut server = TestServer::start(StoreKind::Postgres, &[]).await;
    let doc = "storm";
    let url = server.ws_url(doc);
    let honest: Vec<Arc<Client>> = vec![
        Arc::new(Client::connect(&url).await),
        Arc::new(Client::connect(&url).await),
    ];
    let honest_ids: Vec<u64> = honest.iter().map(|c| c.doc().client_id().get()).collect();
    honest[0].push("honest 🦀 ");
    let sample = honest[0].encode_state();

    let stop = Arc::new(AtomicBool::new(false));
    let editors: Vec<_> = honest
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let (c, stop) = (c.clone(), stop.clone());
            let mut rng = Rng::new(rng.next_u64());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (r1, r2) = (rng.next_u64(), rng.next_u64());
                    c.edit_with(|t| {
                        let len = t.chars().count();
                        if len > 5 && r1 % 4 == 0 {
                            Some(((r2 % (len as u64 - 2)) as usize, 1, String::new()))
                        } else {
                            Some(((r2 % (len as u64 + 1)) as usize, 0, format!("{k}é🙂")))
                        }
                    });
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(2 + r1 % 5)).await;
                }
                n
            })
        })
        .collect();

    let sent = Arc::new(AtomicU64::new(0));
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            let (url, sent, sample) = (url.clone(), sent.clone(), sample.clone());
            let mut rng = Rng::new(rng.next_u64());
            tokio::spawn(async move {
                let mut conns = 0u64;
                while sent.load(Ordering::Relaxed) < FRAMES {
                    let Ok(conn) = RawConn::connect(&url).await else {
                        continue;
                    };
                    conns += 1;
                    for _ in 0..1 + rng.below(8) {
                        if rng.below(20) == 0 {
                            conn.send_text("not binary");
                        } else {
                            conn.send_binary(malformed(&mut rng, &sample));
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    conn.flush().await;
                    let _ = conn.try_wait_closed(Duration::from_secs(2)).await;
                }
                conns
            })
        })
        .collect();
    let mut conns = 0;
    for a in attackers {
        conns += a.await.expect("attacker panicked");
    }
    stop.store(true, Ordering::Relaxed);
    let mut honest_edits = 0;
    for e in editors {
        honest_edits += e.await.expect("editor panicked");
    }
    assert!(
        server.is_running(),
        "the server died:\n{}",
        server.log_tail()
    );
    server.assert_healthy().await;
    for (k, c) in honest.iter().enumerate() {
        assert!(
            c.closed().is_none(),
            "honest client {k} was disconnected: {:?}",
            c.closed()
        );
        c.flush().await;
    }
    let check = Client::connect(&url).await;
    let final_text = check.text();
    let _ = final_text;
    for c in &honest {
        // Each honest client's edits arrive everywhere.
        let mut expected = None;
        for _ in 0..100 {
            let v = Client::connect(&url).await;
            if quire_tests::chaos::missing(&v.encode_state(), &c.encode_state()).is_none() {
                expected = Some(v.text());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            expected.is_some(),
            "an honest client's edits did not all arrive"
        );
    }
    let text = Client::connect(&url).await.text();
    for c in &honest {
        c.wait_for_text(&text, Duration::from_secs(20)).await;
    }

    // The op log holds only honest clients' operations.
    let mut db = sqlx::PgConnection::connect(server.database_url())
        .await
        .expect("connect to the test database");
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT update_v1 FROM ops WHERE doc_id = $1")
        .bind(doc)
        .fetch_all(&mut db)
        .await
        .expect("read the op log");
    let _ = db.close().await;
    for (bytes,) in &rows {
        let u = yrs::Update::decode_v1(bytes).expect("a stored row decodes");
        for (client, _) in u.state_vector_lower().iter() {
            assert!(
                honest_ids.contains(&client.get()),
                "the op log holds an operation of client {client}, not an honest client"
            );
        }
    }
    server.kill9();
    server.restart().await;
    assert_eq!(Client::connect(&server.ws_url(doc)).await.text(), text);
    eprintln!(
        "malformed_storm: {} malformed frames over {conns} connections from {ATTACKERS} attackers; {honest_edits} honest edits; {} op-log rows, all honest; 0 losses; {:.1} s",
        sent.load(Ordering::Relaxed),
        rows.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Honest updates of every content kind a Yjs client makes: text with formatting and an
/// embed, deletions, a map and an array of JSON-like values, a nested map.
fn honest_updates() -> Vec<Vec<u8>> {
    use yrs::{Any, Array, Map, MapPrelim, ReadTxn, Text, Transact};
    // A fixed client id: the same updates, and so the same mutants, on every run.
    let doc = quire_wire::new_doc_with_client_id(yrs::ClientID::new(424_242));
    let text = doc.get_or_insert_text(quire_tests::client::TEXT_NAME);
    let map = doc.get_or_insert_map("meta");
    let array = doc.get_or_insert_array("list");
    let mut updates = Vec::new();
    let mut step = |f: &dyn Fn(&mut yrs::TransactionMut)| {
        let before = doc.transact().state_vector();
        f(&mut doc.transact_mut());
        updates.push(doc.transact().encode_diff_v1(&before));
    };
    step(&|txn| text.insert(txn, 0, "hello wörld 🦀"));
    step(&|txn| text.remove_range(txn, 2, 3));
    step(&|txn| {
        let bold = Any::from_json(r#"{"bold":true}"#).unwrap();
        let yrs::Any::Map(attrs) = bold else {
            unreachable!()
        };
        text.insert_with_attributes(
            txn,
            1,
            "B",
            attrs
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.clone()))
                .collect(),
        );
    });
    step(&|txn| {
        text.insert_embed(txn, 0, Any::from_json(r#"{"image":"x.png"}"#).unwrap());
    });
    step(&|txn| {
        map.insert(txn, "title", "notes");
        map.insert(
            txn,
            "n",
            Any::from_json(r#"[1,2.5,null,true,{"k":"v"}]"#).unwrap(),
        );
        map.insert(txn, "nested", MapPrelim::default());
    });
    step(&|txn| {
        array.insert(txn, 0, Any::from_json(r#"{"a":[1,2,3]}"#).unwrap());
        array.insert(txn, 1, "two");
    });
    updates.push(doc.transact().encode_diff_v1(&yrs::StateVector::default()));
    updates
}

/// Every update quire's decoder accepts, the stock Yjs client decodes too: otherwise it would
/// be stored and relayed to every browser, which would fail on it at every sync. Single-byte
/// mutations of honest updates (fixed seed) are decoded by quire; each one it accepts goes to
/// yjs 13.6 under node (`tests/js/decode.mjs`). Exploration: `QUIRE_MUTANTS=300000
/// QUIRE_MUTANT_SEED=77` (any seed); each class of mismatch it finds becomes a check in
/// `wire/src/bounded.rs` and stays covered by the fixed seed's mutants or `decode_cost.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_quire_accepts_decode_in_stock_yjs() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let honest = honest_updates();
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mutants = env("QUIRE_MUTANTS", 20_000);
    let mut rng = Rng::new(env("QUIRE_MUTANT_SEED", 20261206));
    let mut accepted: Vec<Vec<u8>> = honest.clone();
    let mut mutations: Vec<String> = vec!["honest".into(); honest.len()];
    for _ in 0..mutants {
        let which = rng.below(honest.len());
        let mut update = honest[which].clone();
        let at = rng.below(update.len());
        let was = update[at];
        match rng.below(3) {
            0 => update[at] ^= 1 << rng.below(8),
            1 => update[at] = rng.next_u64() as u8,
            // Set bit 4 of a byte: an item's info byte then names content type 16..31.
            _ => update[at] |= 0x10,
        }
        if decode_frame(&update_frame(&update)).is_ok() {
            mutations.push(format!(
                "update {which}, byte {at}: {was:02x} -> {:02x}",
                update[at]
            ));
            accepted.push(update);
        }
    }
    let dir = quire_tests::js::js_dir();
    assert!(
        dir.join("node_modules/yjs").is_dir(),
        "{}/node_modules is missing: run `npm ci --prefix tests/js`",
        dir.display()
    );
    let mut node = Command::new("node")
        .arg(dir.join("decode.mjs"))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (Node.js 20+)");
    let mut input = String::new();
    for update in &accepted {
        input.extend(update.iter().map(|b| format!("{b:02x}")));
        input.push('\n');
    }
    let mut stdin = node.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = node.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verdicts: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(verdicts.len(), accepted.len());
    let refused: Vec<String> = verdicts
        .iter()
        .zip(accepted.iter().zip(&mutations))
        .filter(|(v, _)| *v != "ok")
        .map(|(v, (u, m))| {
            let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
            format!("{v} ({m}): {hex}")
        })
        .collect();
    eprintln!(
        "{} honest updates and {} accepted mutants of {mutants} decoded by yjs; {} refused",
        honest.len(),
        accepted.len() - honest.len(),
        refused.len()
    );
    assert!(
        refused.is_empty(),
        "quire accepted {} updates stock Yjs cannot decode, e.g.\n{}",
        refused.len(),
        refused
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
