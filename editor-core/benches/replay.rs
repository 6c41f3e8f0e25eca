//! Replays every sequential editing trace in `shared/traces/sequential` into quire's buffers and,
//! side by side in the same run, into the ropes they are measured against:
//!
//! - `gap`, `rope`: [`GapBuffer`] and [`RopeBuffer`] through the [`TextBuffer`] interface;
//! - `ropey`: `ropey::Rope` used directly (what `rope` wraps);
//! - `jumprope`, `jumprope_buf`: `jumprope::JumpRope`, and `JumpRopeBuf`, which coalesces runs of
//!   adjacent edits before applying them (the faster of the two on these traces);
//! - `crop`: `crop::Rope`, which only takes byte offsets: its patches are converted to bytes
//!   before timing, so it does no char→byte work inside the timed loop (a small head start).
//!
//! The traces are decoded, and each implementation's result checked against `endContent`,
//! outside the timed loop. After criterion's measurements, an interleaved summary replays every
//! implementation once per round (`REPLAY_ROUNDS`, default 15; 0 skips it) and prints the medians
//! and minima as tables, so the ratios hold even if the shared machine gets busy during the run.
//!
//! Run with `cargo bench -p editor-core --bench replay`. The traces are looked up in
//! `../../shared/traces/sequential` from this crate; without them the bench says so and skips.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{black_box, Criterion, Throughput};
use editor_core::{GapBuffer, RopeBuffer, TextBuffer};

mod trace;

use trace::Trace;

/// `(pos, del, ins)`, with `pos` and `del` in chars (or in bytes, for crop).
type Patch<'a> = (usize, usize, &'a str);

fn flat_patches(trace: &Trace) -> Vec<Patch<'_>> {
    trace
        .patches()
        .map(|trace::Patch(pos, del, ins)| (*pos, *del, ins.as_str()))
        .collect()
}

/// The same patches with byte offsets, computed by replaying into a ropey rope.
fn byte_patches<'a>(trace: &'a Trace, patches: &[Patch<'a>]) -> Vec<Patch<'a>> {
    let mut rope = ropey::Rope::from_str(&trace.start_content);
    let mut out = Vec::with_capacity(patches.len());
    for &(pos, del, ins) in patches {
        let start = rope.char_to_byte(pos);
        let end = rope.char_to_byte(pos + del);
        out.push((start, end - start, ins));
        rope.remove(pos..pos + del);
        rope.insert(pos, ins);
    }
    out
}

/// Applies every patch to `text` with the implementation's own remove and insert, skipping
/// empty halves (one loop for every comparator, monomorphised per implementation).
fn apply<R>(
    mut text: R,
    patches: &[Patch],
    mut remove: impl FnMut(&mut R, std::ops::Range<usize>),
    mut insert: impl FnMut(&mut R, usize, &str),
) -> R {
    for &(pos, del, ins) in patches {
        if del > 0 {
            remove(&mut text, pos..pos + del);
        }
        if !ins.is_empty() {
            insert(&mut text, pos, ins);
        }
    }
    text
}

fn replay_buffer<B: TextBuffer>(start: &str, patches: &[Patch]) -> B {
    apply(
        B::from_text(start),
        patches,
        |b, r| b.remove(r).unwrap(),
        |b, pos, ins| b.insert(pos, ins).unwrap(),
    )
}

fn replay_ropey(start: &str, patches: &[Patch]) -> ropey::Rope {
    apply(
        ropey::Rope::from_str(start),
        patches,
        |r, range| r.remove(range),
        |r, pos, ins| r.insert(pos, ins),
    )
}

fn replay_jumprope(start: &str, patches: &[Patch]) -> jumprope::JumpRope {
    apply(
        jumprope::JumpRope::from(start),
        patches,
        |r, range| r.remove(range),
        |r, pos, ins| r.insert(pos, ins),
    )
}

fn replay_jumprope_buf(start: &str, patches: &[Patch]) -> jumprope::JumpRopeBuf {
    apply(
        jumprope::JumpRopeBuf::from(start),
        patches,
        |r, range| r.remove(range),
        |r, pos, ins| r.insert(pos, ins),
    )
}

/// crop has no char index: it gets byte patches, converted before timing.
fn replay_crop(start: &str, byte_patches: &[Patch]) -> crop::Rope {
    apply(
        crop::Rope::from(start),
        byte_patches,
        |r, range| r.delete(range),
        |r, pos, ins| r.insert(pos, ins),
    )
}

/// The implementations compared, in the order of the report.
const IMPLS: [&str; 6] = ["gap", "rope", "ropey", "jumprope_buf", "jumprope", "crop"];

/// A trace ready to replay: decoded, flattened, and converted to bytes for crop.
struct Prepared<'a> {
    name: String,
    trace: &'a Trace,
    patches: Vec<Patch<'a>>,
    bytes: Vec<Patch<'a>>,
}

/// The result of one replay, kept whole so that dropping it is part of the measured work for
/// every implementation alike.
enum Replayed {
    Gap(GapBuffer),
    Rope(RopeBuffer),
    Ropey(ropey::Rope),
    JumpRope(jumprope::JumpRope),
    JumpRopeBuf(jumprope::JumpRopeBuf),
    Crop(crop::Rope),
}

impl Replayed {
    fn text(&self) -> String {
        match self {
            Replayed::Gap(b) => b.to_text(),
            Replayed::Rope(b) => b.to_text(),
            Replayed::Ropey(r) => r.to_string(),
            Replayed::JumpRope(r) => r.to_string(),
            Replayed::JumpRopeBuf(r) => r.to_string(),
            Replayed::Crop(r) => r.to_string(),
        }
    }
}

fn replay(implementation: &str, p: &Prepared) -> Replayed {
    let start = p.trace.start_content.as_str();
    let patches = black_box(&p.patches);
    match implementation {
        "gap" => Replayed::Gap(replay_buffer(start, patches)),
        "rope" => Replayed::Rope(replay_buffer(start, patches)),
        "ropey" => Replayed::Ropey(replay_ropey(start, patches)),
        "jumprope" => Replayed::JumpRope(replay_jumprope(start, patches)),
        "jumprope_buf" => Replayed::JumpRopeBuf(replay_jumprope_buf(start, patches)),
        "crop" => Replayed::Crop(replay_crop(start, black_box(&p.bytes))),
        other => unreachable!("unknown implementation {other}"),
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn format_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.0} µs", ms * 1e3)
    }
}

/// Criterion measures one implementation after the other, so on a shared machine a burst of
/// load can hit one of them only. This summary replays every implementation once per round, in
/// rotating order, and reports per implementation the median and the minimum over the rounds
/// (the minimum being the least disturbed run): the ratios then hold even when the machine is
/// busy.
fn interleaved_summary(prepared: &[Prepared], rounds: usize) {
    let mut medians = Vec::new();
    let mut minima = Vec::new();
    for p in prepared {
        let mut times = vec![Vec::with_capacity(rounds); IMPLS.len()];
        for round in 0..rounds {
            for k in 0..IMPLS.len() {
                let i = (k + round) % IMPLS.len();
                let t = Instant::now();
                black_box(replay(IMPLS[i], p));
                times[i].push(t.elapsed());
            }
        }
        minima.push(
            times
                .iter()
                .map(|t| *t.iter().min().unwrap())
                .collect::<Vec<_>>(),
        );
        medians.push(times.into_iter().map(median).collect::<Vec<_>>());
    }
    for (what, table) in [("median", &medians), ("minimum", &minima)] {
        println!();
        println!(
            "Interleaved summary, {what} of {rounds} rounds each replaying every implementation \
             once (ratio to the faster of jumprope_buf and jumprope):"
        );
        println!(
            "| trace (edits) | {} |",
            IMPLS.map(|i| format!("`{i}`")).join(" | ")
        );
        println!("|---|{}", "---:|".repeat(IMPLS.len()));
        for (p, row) in prepared.iter().zip(table.iter()) {
            let jumprope = row[3].min(row[4]).as_secs_f64();
            let cells: Vec<String> = row
                .iter()
                .map(|&t| format!("{} ({:.2}×)", format_ms(t), t.as_secs_f64() / jumprope))
                .collect();
            println!(
                "| {} ({}) | {} |",
                p.name,
                p.patches.len(),
                cells.join(" | ")
            );
        }
    }
}

fn traces_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces/sequential")
}

fn main() {
    let dir = traces_dir();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".json.gz")))
            .collect(),
        Err(e) => {
            eprintln!(
                "skipping the replay benchmark: no traces at {} ({e})",
                dir.display()
            );
            return;
        }
    };
    if paths.is_empty() {
        eprintln!(
            "skipping the replay benchmark: no *.json.gz traces in {}",
            dir.display()
        );
        return;
    }
    paths.sort();

    let traces: Vec<(String, Trace)> = paths
        .iter()
        .map(|path| {
            let trace = Trace::load(path).unwrap_or_else(|e| panic!("{e}"));
            let name = path.file_name().unwrap().to_string_lossy();
            (name.trim_end_matches(".json.gz").to_owned(), trace)
        })
        .collect();
    let prepared: Vec<Prepared> = traces
        .iter()
        .map(|(name, trace)| {
            let patches = flat_patches(trace);
            let bytes = byte_patches(trace, &patches);
            Prepared {
                name: name.clone(),
                trace,
                patches,
                bytes,
            }
        })
        .collect();
    // Correctness first: every implementation must reproduce endContent.
    for p in &prepared {
        for implementation in IMPLS {
            let text = replay(implementation, p).text();
            if let Some(diff) = trace::first_difference(&text, &p.trace.end_content) {
                panic!(
                    "{}: replaying into {implementation} gives the wrong text: {diff}",
                    p.name
                );
            }
        }
    }

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    for p in &prepared {
        let mut group = c.benchmark_group(format!("replay/{}", p.name));
        group.throughput(Throughput::Elements(p.patches.len() as u64));
        for implementation in IMPLS {
            group.bench_function(implementation, |b| b.iter(|| replay(implementation, p)));
        }
        group.finish();
    }
    c.final_summary();

    let rounds = std::env::var("REPLAY_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    if rounds > 0 {
        interleaved_summary(&prepared, rounds);
    }
}
