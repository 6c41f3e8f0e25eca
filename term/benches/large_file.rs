//! The terminal editor on a big file: opening it, and a keystroke followed by a full redraw.
//!
//! ```text
//! cargo bench -p quire-term --bench large_file            # 100 MB
//! cargo bench -p quire-term --bench large_file -- 20      # another size, in MB
//! ```
//!
//! Generates a code-like file (several line shapes, tabs, some non-ASCII and CJK) in the temp
//! directory, then measures through the editor's own code paths:
//! - **open**: `App::open_file` — read, UTF-8 and NUL checks, line-ending scan, the gap buffer
//!   (the word index of a file this big is built in the background; its time is shown apart);
//! - **keystroke + redraw**: one key handled by `App::handle` and a whole frame drawn by
//!   `view::draw` into ratatui's `TestBackend` (120×40; everything but the terminal's own I/O):
//!   typing in the middle of the file, typing after a jump to a random place, Page Down, and a
//!   key typed into the search bar.
//!
//! Then the same through the real `quire` binary in a pseudo-terminal (portable-pty, its output
//! parsed by a vt100 emulator): from spawning the process to the first screen of the file, and
//! from writing a key to the pty to the screen showing its effect (the status bar's column).
//!
//! Budgets (issue 6): open ≤ 1 s, keystroke + redraw ≤ 16 ms.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use quire_term::app::{App, AppEvent, Settings};
use quire_term::live::User;
use quire_term::view;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn generate(bytes: usize) -> String {
    const LINES: &[&str] = &[
        "    let greeting = format!(\"hello, wörld 😀 {}\", name); // comment",
        "\tif count > limit { return Err(Error::TooMany(count)); }",
        "fn compute_total(items: &[Item]) -> u64 {",
        "    items.iter().map(|i| i.price * i.quantity).sum()",
        "}",
        "",
        "// 注释：这一行有中文字符，用来测试宽字符的显示",
        "    const THRESHOLD: usize = 4096; /* tuning knob */",
        "\t\tmatch state { State::Idle => start(), State::Busy(n) => wait(n) }",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut text = String::with_capacity(bytes + 100);
    let mut needle = false;
    while text.len() < bytes {
        text.push_str(LINES[rng.below(LINES.len())]);
        text.push('\n');
        if !needle && text.len() > bytes / 4 * 3 {
            // One rare line, for searches that must walk most of the file.
            text.push_str("// a needle in the haystack\n");
            needle = true;
        }
    }
    text
}

fn key(code: KeyCode) -> AppEvent {
    AppEvent::Term(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn ctrl(c: char) -> AppEvent {
    AppEvent::Term(Event::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::CONTROL,
    )))
}

struct Stats(Vec<Duration>);

impl Stats {
    fn show(&mut self, what: &str) {
        self.0.sort();
        let n = self.0.len();
        let sum: Duration = self.0.iter().sum();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{what:<34} n={n:<5} mean {:>7.3} ms  p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms",
            ms(sum / n as u32),
            ms(self.0[n / 2]),
            ms(self.0[(n * 99 / 100).min(n - 1)]),
            ms(self.0[n - 1]),
        );
    }
}

/// Handles `event` and draws a frame; returns the time both took.
fn keystroke(app: &mut App, term: &mut Terminal<TestBackend>, event: AppEvent) -> Duration {
    let t = Instant::now();
    app.handle(event);
    app.publish_cursor();
    term.draw(|f| view::draw(f, app)).unwrap();
    let d = t.elapsed();
    black_box(term.backend().buffer().area);
    d
}

fn main() {
    let mb: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("usage: large_file [megabytes]"))
        .unwrap_or(100);
    let path: PathBuf = std::env::temp_dir().join(format!(
        "quire-term-bench-{}-{mb}mb.txt",
        std::process::id()
    ));
    let text = generate(mb * 1_000_000);
    std::fs::write(&path, &text).unwrap();
    println!(
        "file: {} ({:.1} MB, {} lines)",
        path.display(),
        text.len() as f64 / 1e6,
        text.lines().count()
    );
    drop(text);
    let settings = Settings {
        tab_width: 4,
        user: User {
            name: "bench".into(),
            color: "#e5484d".into(),
        },
    };

    let mut opens = Stats(Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let app = App::open_file(&path, settings.clone()).unwrap();
        opens.0.push(t.elapsed());
        drop(app);
    }
    opens.show("open (App::open_file)");

    let mut app = App::open_file(&path, settings).unwrap();
    if let Some(job) = app.take_index_job() {
        let t = Instant::now();
        let built = App::build_index(job);
        println!(
            "word index (background thread)     {:.0} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        app.handle(AppEvent::Words(Box::new(built)));
    }
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let first = Instant::now();
    term.draw(|f| view::draw(f, &mut app)).unwrap();
    println!(
        "first frame                        {:.3} ms",
        first.elapsed().as_secs_f64() * 1e3
    );

    // Typing in the middle: letters, a space now and then, Backspace, Enter, arrows.
    app.set_cursor(app.buf_len() / 2);
    let mut rng = Rng(42);
    let mut typing = Stats(Vec::new());
    for i in 0..3_000 {
        let event = match rng.below(20) {
            0 => key(KeyCode::Backspace),
            1 => key(KeyCode::Enter),
            2 => key(KeyCode::Left),
            3 => key(KeyCode::Down),
            4 => key(KeyCode::Char(' ')),
            _ => key(KeyCode::Char((b'a' + (i % 26) as u8) as char)),
        };
        typing.0.push(keystroke(&mut app, &mut term, event));
    }
    typing.show("keystroke + redraw, mid-file");

    let mut jumps = Stats(Vec::new());
    for _ in 0..300 {
        app.set_cursor(rng.below(app.buf_len()));
        jumps
            .0
            .push(keystroke(&mut app, &mut term, key(KeyCode::Char('z'))));
    }
    jumps.show("jump + keystroke + redraw");

    let mut pages = Stats(Vec::new());
    for _ in 0..300 {
        pages
            .0
            .push(keystroke(&mut app, &mut term, key(KeyCode::PageDown)));
    }
    pages.show("Page Down + redraw");

    let mut ends = Stats(Vec::new());
    for i in 0..20 {
        let event = if i % 2 == 0 {
            AppEvent::Term(Event::Key(KeyEvent::new(
                KeyCode::End,
                KeyModifiers::CONTROL,
            )))
        } else {
            AppEvent::Term(Event::Key(KeyEvent::new(
                KeyCode::Home,
                KeyModifiers::CONTROL,
            )))
        };
        ends.0.push(keystroke(&mut app, &mut term, event));
    }
    ends.show("Ctrl-End / Ctrl-Home + redraw");

    // The search bar: each key searches again from where the search started, to the first
    // match (a query that extends one without a match is not searched); the "n of m" counter
    // of a text this big waits for a pause in typing, then walks the matches (up to 10,000).
    keystroke(&mut app, &mut term, ctrl('f'));
    let mut search = Stats(Vec::new());
    let mut per_key = Vec::new();
    for c in "THRESHOLDzebra"
        .chars()
        .chain(std::iter::repeat_n('\u{8}', 14))
        .chain("needle".chars())
    {
        let (event, label) = match c {
            '\u{8}' => (key(KeyCode::Backspace), "⌫".to_string()),
            c => (key(KeyCode::Char(c)), c.to_string()),
        };
        let d = keystroke(&mut app, &mut term, event);
        per_key.push(format!("{label} {:.1}", d.as_secs_f64() * 1e3));
        search.0.push(d);
    }
    search.show("search-bar keystroke + redraw");
    println!("  per key (ms): {}", per_key.join(", "));
    for _ in 0..5 {
        keystroke(&mut app, &mut term, key(KeyCode::Backspace));
    }
    let mut counts = Stats(Vec::new());
    for query in ["THRESHOLD", "wörld", "needle", "zebra"] {
        for _ in 0..20 {
            keystroke(&mut app, &mut term, key(KeyCode::Backspace));
        }
        for c in query.chars() {
            keystroke(&mut app, &mut term, key(KeyCode::Char(c)));
        }
        std::thread::sleep(quire_term::search::COUNT_DELAY);
        let t = Instant::now();
        term.draw(|f| view::draw(f, &mut app)).unwrap();
        counts.0.push(t.elapsed());
    }
    counts.show("match counter after a pause");

    drop(app);
    through_pty(&path);
    let _ = std::fs::remove_file(&path);
}

/// The real binary in a pseudo-terminal: time to the first screen, and key-to-screen latency.
fn through_pty(path: &std::path::Path) {
    use portable_pty::{native_pty_system, CommandBuilder, PtySize};
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    let size = PtySize {
        rows: 40,
        cols: 120,
        pixel_width: 0,
        pixel_height: 0,
    };
    let pair = native_pty_system().openpty(size).unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_quire"));
    cmd.args(["edit", path.to_str().unwrap()]);
    cmd.env("TERM", "xterm-256color");
    let nz = |n| std::num::NonZeroU16::new(n).unwrap();
    let parser = Arc::new(Mutex::new(vt100::Parser::new(nz(40), nz(120), 0)));
    let started = Instant::now();
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let mut writer = pair.master.take_writer().unwrap();
    let sink = parser.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().process(&buf[..n]);
        }
    });
    let wait = |text: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !parser.lock().unwrap().screen().contents().contains(text) {
            assert!(Instant::now() < deadline, "no {text:?} on screen");
            std::thread::sleep(Duration::from_micros(100));
        }
    };
    wait("Ln 1/");
    println!(
        "real binary in a pty: spawn to first screen {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    // Middle of the file, end of a line: each key moves the status bar's column.
    writer.write_all(b"\x1b[6~\x1b[6~\x1b[F").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let col = |screen: &str| -> usize {
        let at = screen.rfind("Col ").expect("a status bar");
        screen[at + 4..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut latency = Stats(Vec::new());
    for _ in 0..100 {
        let before = col(&parser.lock().unwrap().screen().contents());
        let t = Instant::now();
        writer.write_all(b"x").unwrap();
        writer.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while col(&parser.lock().unwrap().screen().contents()) != before + 1 {
            assert!(Instant::now() < deadline, "the key never showed");
            std::thread::sleep(Duration::from_micros(100));
        }
        latency.0.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    latency.show("real binary: key to screen");
    writer.write_all(b"\x11").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    writer.write_all(b"n").unwrap();
    let _ = child.wait();
}

trait Len {
    fn buf_len(&self) -> usize;
}

impl Len for App {
    fn buf_len(&self) -> usize {
        editor_core::TextBuffer::len_chars(self.buf())
    }
}
