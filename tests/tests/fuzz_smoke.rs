//! Bounded smoke runs of the fuzz targets' bodies (`quire_backend::fuzzing`, the same functions
//! `fuzz/fuzz_targets/*.rs` run under cargo-fuzz) with seeded structured and random inputs, so
//! the default `cargo test` exercises them too. By default each target runs a fixed number of
//! inputs from a fixed seed, so every run checks the same inputs; `QUIRE_FUZZ_INPUTS=N` changes
//! the number, `QUIRE_FUZZ_SECS=S` runs each target for S seconds instead, and
//! `QUIRE_TEST_SEED=N|random` picks the seed (printed) — exploration, not the gate.

use std::time::{Duration, Instant};

use quire_backend::edit::{self, Edit};
use quire_backend::fuzzing;
use quire_backend::mirror::Mirror;
use quire_tests::Rng;
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, Text, Transact};

const PIECES: &[&str] = &[
    "a", "bc", " ", "\n", "é", "中文", "🦀", "👍🏽", "e\u{301}", "\u{0}", "\"", "\\", "xyz\n",
];

/// How many inputs a target runs: a fixed count (the gate), or until a time (exploration).
enum Budget {
    Inputs(u64),
    Until(Instant),
}

impl Budget {
    fn new(default_inputs: u64) -> Budget {
        let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<f64>().ok());
        match (env("QUIRE_FUZZ_SECS"), env("QUIRE_FUZZ_INPUTS")) {
            (Some(secs), _) => Budget::Until(Instant::now() + Duration::from_secs_f64(secs)),
            (None, Some(n)) => Budget::Inputs(n as u64),
            (None, None) => Budget::Inputs(default_inputs),
        }
    }

    fn more(&self, runs: u64) -> bool {
        match self {
            Budget::Inputs(n) => runs < *n,
            Budget::Until(t) => Instant::now() < *t,
        }
    }
}

// Inputs per target in the default run: about what 3 s of the debug build used to run.
const WS_FRAME_INPUTS: u64 = 30_000;
const REST_EDITS_INPUTS: u64 = 20_000;
const DIFF_INPUTS: u64 = 20_000;

fn random_text(rng: &mut Rng, max_pieces: usize) -> String {
    (0..rng.below(max_pieces + 1))
        .map(|_| *rng.pick(PIECES))
        .collect()
}

/// Mutates `bytes`: flips, truncations, insertions of random or boundary bytes.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let n = rng.below(bytes.len());
                bytes.truncate(n);
            }
            2 => {
                let i = rng.below(bytes.len() + 1);
                bytes.insert(i, *rng.pick(&[0u8, 1, 2, 0x7f, 0x80, 0xff]));
            }
            3 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next_u64() as u8;
            }
            4 => {
                // A huge varint length somewhere.
                let i = rng.below(bytes.len() + 1);
                for (k, b) in [0xff, 0xff, 0xff, 0xff, 0x0f].into_iter().enumerate() {
                    bytes.insert(i + k, b);
                }
            }
            _ => {}
        }
    }
}

/// A valid frame: an update typed on a small document, a state vector, or awareness.
fn valid_frame(rng: &mut Rng) -> Vec<u8> {
    use yrs::sync::{Message, SyncMessage};
    let doc = quire_backend::document::server_doc();
    let text = doc.get_or_insert_text("content");
    let mut txn = doc.transact_mut();
    for _ in 0..1 + rng.below(4) {
        let len = text.len(&txn);
        let piece = random_text(rng, 3);
        text.insert(&mut txn, if rng.below(2) == 0 { 0 } else { len }, &piece);
        if len > 2 && rng.below(2) == 0 {
            text.remove_range(&mut txn, 0, 1);
        }
    }
    let update = txn.encode_update_v1();
    let sv = txn.state_vector();
    drop(txn);
    let msg = match rng.below(4) {
        0 => Message::Sync(SyncMessage::SyncStep1(sv)),
        1 => Message::Sync(SyncMessage::SyncStep2(update)),
        _ => Message::Sync(SyncMessage::Update(update)),
    };
    msg.encode_v1()
}

#[test]
fn ws_frame_target() {
    let mut rng = Rng::from_env("fuzz_smoke ws_frame");
    let budget = Budget::new(WS_FRAME_INPUTS);
    let mut runs = 0u64;
    while budget.more(runs) {
        let mut frame = if rng.below(4) == 0 {
            (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect()
        } else {
            let mut f = valid_frame(&mut rng);
            if rng.below(3) == 0 {
                f.extend(valid_frame(&mut rng));
            }
            f
        };
        if rng.below(5) != 0 {
            mutate(&mut rng, &mut frame);
        }
        fuzzing::ws_frame(&frame);
        runs += 1;
    }
    eprintln!("ws_frame: {runs} inputs");
}

#[test]
fn rest_edits_target() {
    let mut rng = Rng::from_env("fuzz_smoke rest_edits");
    let budget = Budget::new(REST_EDITS_INPUTS);
    let mut runs = 0u64;
    while budget.more(runs) {
        let text = random_text(&mut rng, 8);
        let len = text.chars().count() as u64;
        let edits: Vec<serde_json::Value> = (0..rng.below(4))
            .map(|_| {
                serde_json::json!({
                    "pos": rng.below(len as usize + 3),
                    "delete": rng.below(4),
                    "insert": random_text(&mut rng, 3),
                })
            })
            .collect();
        let mut body = serde_json::json!({ "edits": edits })
            .to_string()
            .into_bytes();
        if rng.below(4) == 0 {
            mutate(&mut rng, &mut body);
        }
        let mut input = text.into_bytes();
        input.retain(|&b| b != 0);
        input.push(0);
        input.extend(body);
        fuzzing::rest_edits(&input);
        runs += 1;
    }
    eprintln!("rest_edits: {runs} inputs");
}

/// `edit::diff` (what PUT text, restore and the text mirror's sync use) turns `old` into `new`.
#[test]
fn diff_turns_old_into_new() {
    let mut rng = Rng::from_env("fuzz_smoke diff");
    let budget = Budget::new(DIFF_INPUTS);
    let mut runs = 0u64;
    while budget.more(runs) {
        let old = random_text(&mut rng, 12);
        let mut new: Vec<char> = old.chars().collect();
        for _ in 0..rng.below(5) {
            let at = rng.below(new.len() + 1);
            let del = rng.below(new.len() - at + 1).min(3);
            let ins: Vec<char> = random_text(&mut rng, 2).chars().collect();
            new.splice(at..at + del, ins);
        }
        let new: String = new.into_iter().collect();
        let edits: Vec<Edit> = edit::diff(&old, &new);
        let mut model: Vec<char> = old.chars().collect();
        for e in &edits {
            let (p, d) = (e.pos as usize, e.delete as usize);
            assert!(
                p + d <= model.len(),
                "diff({old:?}, {new:?}) = {edits:?}: out of range"
            );
            model.splice(p..p + d, e.insert.chars());
        }
        let got: String = model.into_iter().collect();
        assert_eq!(got, new, "diff({old:?}, {new:?}) = {edits:?}");
        let mut mirror = Mirror::from_text(&old);
        mirror.sync(&new);
        assert_eq!(mirror.text(), new, "Mirror::sync from {old:?}");
        runs += 1;
    }
    eprintln!("diff: {runs} pairs");
}
