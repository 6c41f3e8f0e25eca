//! KMP search over a 100 MB buffer against `memchr::memmem` on the same bytes, in the same run.
//!
//! The text is words drawn from a fixed list by a seeded xorshift (so every run sees the same
//! 100 MB), with a needle that is not in the list planted 16 times. Besides criterion's report,
//! a short summary at the end prints medians of interleaved runs and the ratio to memmem.
//!
//! Run: `cargo bench -p editor-core --bench search`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use editor_core::search::Query;
use editor_core::{GapBuffer, RopeBuffer, TextBuffer};

const SIZE: usize = 100 * 1024 * 1024;

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "she",
    "other",
    "its",
    "may",
    "these",
    "what",
    "them",
    "than",
    "some",
    "him",
    "time",
    "into",
    "only",
    "do",
    "could",
    "new",
    "about",
    "two",
    "then",
    "first",
    "also",
    "after",
    "any",
    "like",
    "should",
    "people",
    "very",
    "between",
    "over",
    "world",
    "years",
    "state",
    "quite",
    "quick",
    "jumped",
    "lazy",
    "brown",
    "fox",
    "zero",
    "fn",
    "let",
    "mut",
    "self",
    "impl",
    "struct",
    "return",
    "match",
    "Some",
    "None",
    "Ok",
    "Err",
    "String",
    "Vec",
    "usize",
    "buffer",
    "editor",
    "cursor",
    "line",
    "char",
    "byte",
    "(",
    ")",
    "{",
    "}",
    ";",
    "=",
    "->",
    "::",
    ".",
    ",",
    "café",
    "naïve",
    "Straße",
    "日本語",
    "🎉",
];

/// Rare needles: one with a rare letter, one made only of common letters (harder for the skip).
const NEEDLE: &str = "quokka";
const COMMON_NEEDLE: &str = "hornet";

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

fn make_text() -> String {
    let mut out = String::with_capacity(SIZE + 64);
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut on_line = 0;
    while out.len() < SIZE {
        let r = xorshift(&mut rng);
        out.push_str(WORDS[(r % WORDS.len() as u64) as usize]);
        on_line += 1;
        if on_line == 12 {
            out.push('\n');
            on_line = 0;
        } else {
            out.push(' ');
        }
    }
    // Plant each needle 16 times, evenly spread, on char boundaries.
    for (k, needle) in [NEEDLE, COMMON_NEEDLE].iter().enumerate() {
        for i in 0..16 {
            let mut at = (i * 2 + k + 1) * (out.len() / 34);
            while !out.is_char_boundary(at) {
                at += 1;
            }
            out.insert_str(at, needle);
        }
    }
    out
}

fn kmp_count<B: TextBuffer>(buf: &B, query: &Query) -> usize {
    query.clone().compile().find_iter(buf).count()
}

fn memmem_count(text: &str, needle: &str) -> usize {
    memchr::memmem::find_iter(text.as_bytes(), needle.as_bytes()).count()
}

fn chunkwise_memmem<B: TextBuffer>(buf: &B, needle: &str) -> usize {
    let finder = memchr::memmem::Finder::new(needle);
    buf.chunks()
        .map(|c| finder.find_iter(c.as_bytes()).count())
        .sum()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn gbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn main() {
    let t = Instant::now();
    let text = make_text();
    let gap = GapBuffer::from_text(&text);
    let rope = RopeBuffer::from_text(&text);
    eprintln!(
        "built {} MB of text and buffers in {:.1?}",
        text.len() >> 20,
        t.elapsed()
    );
    let bytes = text.len();

    let exact = Query::new(NEEDLE);
    let common = Query::new(COMMON_NEEDLE);
    let folded = Query::new("QuOkKa").case_insensitive(true);
    let word = Query::new(NEEDLE).whole_word(true);
    assert_eq!(kmp_count(&gap, &exact), 16);
    assert_eq!(kmp_count(&rope, &exact), 16);
    assert_eq!(kmp_count(&gap, &common), 16);
    assert_eq!(memmem_count(&text, NEEDLE), 16);
    assert_eq!(kmp_count(&gap, &folded), 16);

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("search_100MB");
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function(BenchmarkId::new("memmem", NEEDLE), |b| {
            b.iter(|| memmem_count(black_box(&text), NEEDLE))
        });
        g.bench_function(BenchmarkId::new("kmp_gap", NEEDLE), |b| {
            b.iter(|| kmp_count(black_box(&gap), &exact))
        });
        g.bench_function(BenchmarkId::new("kmp_rope", NEEDLE), |b| {
            b.iter(|| kmp_count(black_box(&rope), &exact))
        });
        g.bench_function(BenchmarkId::new("memmem", COMMON_NEEDLE), |b| {
            b.iter(|| memmem_count(black_box(&text), COMMON_NEEDLE))
        });
        g.bench_function(BenchmarkId::new("kmp_gap", COMMON_NEEDLE), |b| {
            b.iter(|| kmp_count(black_box(&gap), &common))
        });
        g.bench_function(
            BenchmarkId::new("kmp_gap_case_insensitive", "QuOkKa"),
            |b| b.iter(|| kmp_count(black_box(&gap), &folded)),
        );
        g.bench_function(BenchmarkId::new("kmp_gap_whole_word", NEEDLE), |b| {
            b.iter(|| kmp_count(black_box(&gap), &word))
        });
        g.finish();
    }

    // `cargo test --benches` / `cargo bench -- --test`: criterion ran each benchmark once; skip the
    // timing loops.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    // Interleaved runs, so both sides see the same machine state; medians of 15.
    type Case<'a> = (&'static str, Box<dyn Fn() -> usize + 'a>);
    let cases: Vec<Case> = vec![
        (
            "memmem quokka (contiguous)",
            Box::new(|| memmem_count(&text, NEEDLE)),
        ),
        (
            "kmp quokka, gap buffer",
            Box::new(|| kmp_count(&gap, &exact)),
        ),
        (
            "kmp quokka, rope buffer",
            Box::new(|| kmp_count(&rope, &exact)),
        ),
        // Floors: memmem run chunk by chunk (misses matches spanning chunks; not a real search).
        (
            "memmem per chunk, gap (floor)",
            Box::new(|| chunkwise_memmem(&gap, NEEDLE)),
        ),
        (
            "memmem per chunk, rope (floor)",
            Box::new(|| chunkwise_memmem(&rope, NEEDLE)),
        ),
        (
            "memmem hornet (contiguous)",
            Box::new(|| memmem_count(&text, COMMON_NEEDLE)),
        ),
        (
            "kmp hornet, gap buffer",
            Box::new(|| kmp_count(&gap, &common)),
        ),
        (
            "kmp QuOkKa case-insensitive, gap",
            Box::new(|| kmp_count(&gap, &folded)),
        ),
        (
            "kmp quokka whole-word, gap",
            Box::new(|| kmp_count(&gap, &word)),
        ),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for _ in 0..15 {
        for (i, (_, f)) in cases.iter().enumerate() {
            let t = Instant::now();
            black_box(f());
            times[i].push(t.elapsed());
        }
    }
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    println!("\nsummary (median of 15 interleaved runs over {bytes} bytes):");
    for (i, (name, _)) in cases.iter().enumerate() {
        let ratio_to = if name.contains("hornet") {
            medians[5]
        } else {
            medians[0]
        };
        println!(
            "  {name:<36} {:>9.2?}  {:>6.2} GB/s  {:>5.2}x memmem",
            medians[i],
            gbps(bytes, medians[i]),
            medians[i].as_secs_f64() / ratio_to.as_secs_f64()
        );
    }
    c.final_summary();
}
