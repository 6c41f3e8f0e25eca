//! Replays a sequential editing trace into one of quire's buffers and checks the result.
//!
//! ```text
//! cargo run --release -p editor-core --example replay -- <trace.json.gz> [--buffer rope|gap]
//! ```
//!
//! Trace format: see `shared/traces/README.md`. Exits non-zero unless the replayed text equals the
//! trace's `endContent`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use editor_core::{GapBuffer, RopeBuffer, TextBuffer};

#[path = "../benches/trace/mod.rs"]
mod trace;

use trace::Trace;

const USAGE: &str = "usage: replay <trace.json.gz> [--buffer rope|gap]";

#[derive(Clone, Copy)]
enum Kind {
    Gap,
    Rope,
}

fn parse_args() -> Result<(PathBuf, Kind), String> {
    let mut path = None;
    let mut kind = Kind::Gap;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = if arg == "--buffer" {
            Some(args.next().ok_or("--buffer needs a value: rope or gap")?)
        } else {
            arg.strip_prefix("--buffer=").map(str::to_owned)
        };
        if let Some(value) = value {
            kind = match value.as_str() {
                "gap" => Kind::Gap,
                "rope" => Kind::Rope,
                other => return Err(format!("unknown buffer {other:?}: use rope or gap")),
            };
        } else if arg == "-h" || arg == "--help" {
            return Err(String::new());
        } else if arg.starts_with('-') {
            return Err(format!("unknown option {arg:?}"));
        } else if path.replace(PathBuf::from(&arg)).is_some() {
            return Err("give exactly one trace file".into());
        }
    }
    Ok((path.ok_or("missing the trace file")?, kind))
}

fn run<B: TextBuffer>(trace: &Trace) -> Result<(Duration, usize), String> {
    let start = Instant::now();
    let buf: B = trace
        .replay()
        .map_err(|e| format!("replay into {} failed: {e}", B::NAME))?;
    let elapsed = start.elapsed();
    let text = buf.to_text();
    if let Some(diff) = trace::first_difference(&text, &trace.end_content) {
        return Err(format!("replay into {} is WRONG: {diff}", B::NAME));
    }
    Ok((elapsed, buf.len_chars()))
}

fn main() -> ExitCode {
    let (path, kind) = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let trace = match Trace::load(&path) {
        Ok(trace) => trace,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (name, result) = match kind {
        Kind::Gap => (GapBuffer::NAME, run::<GapBuffer>(&trace)),
        Kind::Rope => (RopeBuffer::NAME, run::<RopeBuffer>(&trace)),
    };
    match result {
        Ok((elapsed, chars)) => {
            let edits = trace.patch_count();
            let secs = elapsed.as_secs_f64();
            println!(
                "{}: {edits} edits ({} txns) into {name} in {:.2} ms ({:.1} M edits/s); \
                 result matches endContent ({chars} chars)",
                path.display(),
                trace.txns.len(),
                secs * 1e3,
                edits as f64 / secs / 1e6,
            );
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("error: {}: {msg}", path.display());
            ExitCode::FAILURE
        }
    }
}
