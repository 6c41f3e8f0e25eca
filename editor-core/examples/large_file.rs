//! Measures what the terminal editor needs on a large file, for GapBuffer (at several leaf sizes)
//! and RopeBuffer: opening it, a keystroke followed by a redraw (the conversions and `chunks_in`
//! of a 50-line screen), the same after jumping to a random place, and a clone.
//!
//! ```text
//! cargo run --release -p editor-core --example large_file -- [megabytes, default 100]
//! ```
//!
//! The text is generated (code-like lines with some non-ASCII), so no file is needed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use editor_core::{GapBuffer, RopeBuffer, TextBuffer};

/// What a redraw asks of the buffer around char `at`: its line and column, the starts of the 50
/// lines around it, and their text as chunks.
fn redraw<B: TextBuffer>(b: &B, at: usize) -> usize {
    let line = b.char_to_line(at).unwrap();
    let first = line.saturating_sub(25);
    let last = (line + 25).min(b.len_lines() - 1);
    let mut n = b.char_to_line_col(at).unwrap().1 + b.char_to_utf16(at).unwrap();
    for l in first..=last {
        n += b.line_to_char(l).unwrap();
    }
    let (start, end) = (
        b.line_to_char(first).unwrap(),
        b.line_to_char(last).unwrap(),
    );
    for chunk in b.chunks_in(start..end).unwrap() {
        n += chunk.len();
    }
    n
}

fn measure<B: TextBuffer>(name: &str, text: &str, open: impl Fn(&str) -> B) {
    let t = Instant::now();
    let mut b = open(text);
    let opened = t.elapsed();

    let at = b.len_chars() / 2 + 12_345;
    let keys = 2_000;
    let (mut total, mut worst) = (Duration::ZERO, Duration::ZERO);
    for i in 0..keys {
        let t = Instant::now();
        b.insert(at + i, "y").unwrap();
        black_box(redraw(&b, at + i + 1));
        let d = t.elapsed();
        total += d;
        worst = worst.max(d);
    }

    let jumps = 200;
    let (mut jump_total, mut jump_worst) = (Duration::ZERO, Duration::ZERO);
    let mut x = 12_345u64;
    for _ in 0..jumps {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let p = (x >> 33) as usize % b.len_chars();
        let t = Instant::now();
        b.insert(p, "z").unwrap();
        black_box(redraw(&b, p + 1));
        let d = t.elapsed();
        jump_total += d;
        jump_worst = jump_worst.max(d);
    }

    let t = Instant::now();
    let copy = b.clone();
    let cloned = t.elapsed();
    black_box(copy);

    println!(
        "{name:<10} open {:>7.1} ms | keystroke+redraw avg {:>6.1} µs, worst {:>6.1} µs | \
         jump+edit+redraw avg {:>6.1} µs, worst {:>6.1} µs | clone {:>7.3} ms",
        opened.as_secs_f64() * 1e3,
        (total / keys as u32).as_secs_f64() * 1e6,
        worst.as_secs_f64() * 1e6,
        (jump_total / jumps).as_secs_f64() * 1e6,
        jump_worst.as_secs_f64() * 1e6,
        cloned.as_secs_f64() * 1e3,
    );
}

fn main() {
    let mb: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 100,
        Some(Ok(mb)) if mb > 0 => mb,
        Some(_) => {
            eprintln!("usage: large_file [megabytes > 0]");
            std::process::exit(2);
        }
    };
    let line = "    let greeting = format!(\"hello, wörld 😀 {}\", name); // comment\n";
    let text = line.repeat(mb * 1_000_000 / line.len());
    println!(
        "{} MB, {} lines",
        text.len() / 1_000_000,
        text.lines().count()
    );
    for cap in [4 * 1024, 16 * 1024, 64 * 1024] {
        let name = format!("gap {}K", cap / 1024);
        measure(&name, &text, |t| {
            GapBuffer::from_text_with_leaf_capacity(t, cap)
        });
    }
    measure("rope", &text, RopeBuffer::from_text);
}
