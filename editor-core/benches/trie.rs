//! Autocomplete: top-10 queries on a 1M-word vocabulary, and the incremental word-index update
//! per keystroke in a 10 MB document.
//!
//! The vocabulary is 1,000,000 distinct words made of syllables drawn by a seeded xorshift, with
//! Zipf counts (the word of rank r occurs 1,000,000 / r times, at least once). The document is
//! ~10 MB of words sampled from it with Zipf weights. Typing is scripted: at a random position,
//! type six letters one keystroke at a time, then backspace them, so the document keeps its size.
//! Besides criterion's report, the end prints p50/p99 of individually timed operations.
//!
//! Run: `cargo bench -p editor-core --bench trie`

use std::collections::HashSet;
use std::hint::black_box;
use std::ops::Range;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use editor_core::trie::{Trie, WordIndex};
use editor_core::{GapBuffer, RopeBuffer, TextBuffer};

const VOCAB: usize = 1_000_000;
const DOC_BYTES: usize = 10 * 1024 * 1024;

const SYLLABLES: &[&str] = &[
    "a", "ka", "to", "ri", "men", "sa", "lo", "ver", "ti", "na", "pe", "qu", "zu", "bel", "dor",
    "fi", "gan", "hu", "jo", "kel", "mi", "nor", "o", "pra", "ros", "sen", "tal", "u", "vin",
    "wes", "xa", "yo", "ze", "ch", "st", "ion", "er", "in", "ex", "re", "de", "con", "pro", "ly",
    "ing", "ed", "th", "sh", "bra", "cle",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A rank in 1..=n with probability proportional to 1/rank.
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).ln() * u).exp().floor().clamp(1.0, n as f64) as usize
    }
}

/// Distinct words, in rank order (index 0 is the most frequent).
fn vocabulary(rng: &mut Rng) -> Vec<String> {
    let mut seen = HashSet::with_capacity(VOCAB * 2);
    let mut words = Vec::with_capacity(VOCAB);
    while words.len() < VOCAB {
        let n = 2 + rng.below(4);
        let w: String = (0..n)
            .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
            .collect();
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

/// The distinct `n`-letter prefixes of `words`, sorted.
fn prefixes(words: &[String], n: usize) -> Vec<String> {
    let set: HashSet<&str> = words
        .iter()
        .filter(|w| w.len() >= n)
        .map(|w| &w[..n])
        .collect();
    let mut v: Vec<String> = set.into_iter().map(str::to_string).collect();
    v.sort();
    v
}

fn zipf_count(rank: usize) -> u32 {
    (1_000_000 / (rank + 1)).max(1) as u32
}

fn document(words: &[String], rng: &mut Rng) -> String {
    let mut out = String::with_capacity(DOC_BYTES + 64);
    let mut on_line = 0;
    while out.len() < DOC_BYTES {
        out.push_str(&words[rng.zipf(words.len()) - 1]);
        on_line += 1;
        match rng.below(10) {
            0 => out.push_str(", "),
            1 if on_line > 8 => {
                out.push_str(".\n");
                on_line = 0;
            }
            _ => out.push(' '),
        }
    }
    out
}

/// A cyclic keystroke script: `(range, text)` edits that type six letters at a random position
/// and then backspace them.
fn keystrokes(len_chars: usize, rng: &mut Rng, words: usize) -> Vec<(Range<usize>, &'static str)> {
    const LETTERS: [&str; 6] = ["q", "u", "i", "r", "k", "s"];
    let mut script = Vec::new();
    for _ in 0..words {
        let p = rng.below(len_chars);
        for (i, l) in LETTERS.iter().enumerate() {
            script.push((p + i..p + i, *l));
        }
        for i in (0..LETTERS.len()).rev() {
            script.push((p + i..p + i + 1, ""));
        }
    }
    script
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

fn main() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let t = Instant::now();
    let words = vocabulary(&mut rng);
    let mut trie = Trie::new();
    let t_build = Instant::now();
    for (rank, w) in words.iter().enumerate() {
        trie.add(w, zipf_count(rank));
    }
    eprintln!(
        "vocabulary: {} words generated in {:.1?}, trie built in {:.1?}, {} MB",
        trie.len(),
        t.elapsed() - t_build.elapsed(),
        t_build.elapsed(),
        trie.memory_bytes() >> 20
    );

    // Query streams: prefixes of 1-4 letters drawn at random from the vocabulary's prefixes, the
    // same for criterion and the p99 loop.
    let prefix_sets: Vec<Vec<String>> = (1..=4).map(|n| prefixes(&words, n)).collect();
    let streams: Vec<Vec<&str>> = prefix_sets
        .iter()
        .map(|set| {
            (0..10_000)
                .map(|_| set[rng.below(set.len())].as_str())
                .collect()
        })
        .collect();
    let (q1, q2, q3, q4) = (&streams[0], &streams[1], &streams[2], &streams[3]);
    assert_eq!(trie.top_k(q1[0], 10).len(), 10);

    let text = document(&words, &mut rng);
    let t = Instant::now();
    let mut gap = GapBuffer::from_text(&text);
    let mut rope = RopeBuffer::from_text(&text);
    let mut gap_index = WordIndex::build(&gap);
    let mut rope_index = gap_index.clone();
    eprintln!(
        "document: {} MB, {} distinct words; buffers and index built in {:.1?}",
        text.len() >> 20,
        gap_index.trie().len(),
        t.elapsed()
    );
    let script = keystrokes(gap.len_chars(), &mut rng, 2_000);

    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("top10_1M_words");
        for (name, queries) in [
            ("1-letter", q1),
            ("2-letter", q2),
            ("3-letter", q3),
            ("4-letter", q4),
        ] {
            let mut i = 0;
            g.bench_function(BenchmarkId::new("prefix", name), |b| {
                b.iter(|| {
                    i = (i + 1) % queries.len();
                    trie.top_k(black_box(queries[i]), 10)
                })
            });
        }
        g.finish();
    }
    {
        let mut g = c.benchmark_group("keystroke_10MB");
        let mut i = 0;
        g.bench_function("gap_edit_only", |b| {
            b.iter(|| {
                let (r, t) = &script[i % script.len()];
                i += 1;
                gap.replace(r.clone(), t).unwrap()
            })
        });
        // Finish the cycle so the buffer is back to the text the index describes.
        while i % script.len() != 0 {
            let (r, t) = &script[i % script.len()];
            gap.replace(r.clone(), t).unwrap();
            i += 1;
        }
        let mut i = 0;
        g.bench_function("gap_edit_plus_index", |b| {
            b.iter(|| {
                let (r, t) = &script[i % script.len()];
                i += 1;
                gap_index.apply_edit(&mut gap, r.clone(), t).unwrap()
            })
        });
        while i % script.len() != 0 {
            let (r, t) = &script[i % script.len()];
            gap_index.apply_edit(&mut gap, r.clone(), t).unwrap();
            i += 1;
        }
        let mut i = 0;
        g.bench_function("rope_edit_plus_index", |b| {
            b.iter(|| {
                let (r, t) = &script[i % script.len()];
                i += 1;
                rope_index.apply_edit(&mut rope, r.clone(), t).unwrap()
            })
        });
        while i % script.len() != 0 {
            let (r, t) = &script[i % script.len()];
            rope_index.apply_edit(&mut rope, r.clone(), t).unwrap();
            i += 1;
        }
        g.finish();
    }

    // `cargo test --benches` / `cargo bench -- --test`: criterion ran each benchmark once; skip the
    // timing loops.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    println!("\nindividually timed operations (Instant around each; ~20 ns of it is the clock):");
    for (name, queries) in [
        ("top-10, 1-letter prefix", q1),
        ("top-10, 2-letter prefix", q2),
        ("top-10, 3-letter prefix", q3),
        ("top-10, 4-letter prefix", q4),
    ] {
        for q in queries.iter().take(1000) {
            black_box(trie.top_k(q, 10)); // warm-up
        }
        let times: Vec<Duration> = queries
            .iter()
            .map(|q| {
                let t = Instant::now();
                black_box(trie.top_k(q, 10));
                t.elapsed()
            })
            .collect();
        let (p50, p99) = percentiles(times);
        println!("  {name:<40} p50 {p50:>9.2?}  p99 {p99:>9.2?}  (10,000 queries)");
    }
    let (mut before, mut edit, mut after, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Index updates for keystrokes that continue where the previous one was (11 of each 12 in
    // the script); the first keystroke at a new position also pays the buffer's seek there.
    let mut local = Vec::new();
    for (i, (r, t)) in script.iter().cycle().take(script.len() * 2).enumerate() {
        let t0 = Instant::now();
        gap_index.before_edit(&gap, r.clone()).unwrap();
        let t1 = Instant::now();
        gap.replace(r.clone(), t).unwrap();
        let t2 = Instant::now();
        gap_index
            .after_edit(&gap, r.start..r.start + t.chars().count())
            .unwrap();
        let t3 = Instant::now();
        before.push(t1 - t0);
        edit.push(t2 - t1);
        after.push(t3 - t2);
        total.push((t1 - t0) + (t3 - t2));
        if i % 12 != 0 {
            local.push((t1 - t0) + (t3 - t2));
        }
    }
    let n = total.len();
    let (p50, p99) = percentiles(local);
    println!(
        "  {:<40} p50 {p50:>9.2?}  p99 {p99:>9.2?}",
        "keystroke at the cursor: index update"
    );
    for (name, v) in [
        ("keystroke: index update (before+after)", total),
        ("keystroke: before_edit", before),
        ("keystroke: after_edit", after),
        ("keystroke: GapBuffer edit itself", edit),
    ] {
        let (p50, p99) = percentiles(v);
        println!("  {name:<40} p50 {p50:>9.2?}  p99 {p99:>9.2?}  ({n} keystrokes)");
    }
    // The index still matches the document after all that typing.
    let fresh = WordIndex::build(&gap);
    assert_eq!(fresh.trie().len(), gap_index.trie().len());
    assert_eq!(fresh.top_k("ka", 10), gap_index.top_k("ka", 10));
    c.final_summary();
}
