//! Test support: the real `quire` binary in a pseudo-terminal (portable-pty) whose output is
//! parsed by a vt100 emulator, so tests read the screen a user would see; and a TCP proxy that
//! lets a test move a server (a restarted `TestServer` listens on a new port) under a running
//! editor.
//!
//! Every wait has a time limit and panics with the screen it last saw.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};

/// How long a wait lasts before failing.
pub const WAIT: Duration = Duration::from_secs(15);

/// Key sequences as a terminal sends them.
pub mod keys {
    pub const CTRL_A: &str = "\x01";
    pub const CTRL_C: &str = "\x03";
    pub const CTRL_F: &str = "\x06";
    pub const CTRL_Q: &str = "\x11";
    pub const CTRL_R: &str = "\x12";
    pub const CTRL_S: &str = "\x13";
    pub const CTRL_T: &str = "\x14";
    pub const CTRL_V: &str = "\x16";
    pub const CTRL_X: &str = "\x18";
    pub const CTRL_Y: &str = "\x19";
    pub const CTRL_Z: &str = "\x1a";
    pub const CTRL_SPACE: &str = "\x00";
    pub const ENTER: &str = "\r";
    pub const TAB: &str = "\t";
    pub const BACKSPACE: &str = "\x7f";
    pub const UP: &str = "\x1b[A";
    pub const DOWN: &str = "\x1b[B";
    pub const RIGHT: &str = "\x1b[C";
    pub const LEFT: &str = "\x1b[D";
    pub const HOME: &str = "\x1b[H";
    pub const END: &str = "\x1b[F";
    pub const SHIFT_RIGHT: &str = "\x1b[1;2C";
    pub const CTRL_RIGHT: &str = "\x1b[1;5C";
    pub const CTRL_SHIFT_RIGHT: &str = "\x1b[1;6C";
    pub const PAGE_DOWN: &str = "\x1b[6~";
    pub const PAGE_UP: &str = "\x1b[5~";
    pub const CTRL_HOME: &str = "\x1b[1;5H";
    pub const CTRL_END: &str = "\x1b[1;5F";
    pub const ALT_C: &str = "\x1bc";
    pub const ALT_A: &str = "\x1ba";
}

fn nz(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).expect("a terminal size is not zero")
}

/// The `quire` binary under test.
pub fn quire_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quire"))
}

/// A fresh scratch directory, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(label: &str) -> Scratch {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("quire-term-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The editor running in a pseudo-terminal.
pub struct Term {
    child: Box<dyn Child + Send + Sync>,
    master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    parser: Arc<Mutex<vt100::Parser>>,
    label: String,
}

impl Term {
    /// Starts `quire ARGS` in a `rows` × `cols` terminal, in `cwd`.
    pub fn spawn(label: &str, args: &[&str], cwd: &Path, rows: u16, cols: u16) -> Term {
        let pty = native_pty_system();
        let pair = pty
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pseudo-terminal");
        let mut cmd = CommandBuilder::new(quire_bin());
        cmd.args(args);
        cmd.cwd(cwd);
        cmd.env("TERM", "xterm-256color");
        cmd.env_remove("QUIRE_NAME");
        cmd.env_remove("QUIRE_COLOR");
        cmd.env_remove("QUIRE_TAB_WIDTH");
        let child = pair.slave.spawn_command(cmd).expect("spawn quire");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let writer = pair.master.take_writer().expect("pty writer");
        let parser = Arc::new(Mutex::new(vt100::Parser::new(nz(rows), nz(cols), 0)));
        let sink = parser.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().process(&buf[..n]);
            }
        });
        Term {
            child,
            master: pair.master,
            writer,
            parser,
            label: label.to_string(),
        }
    }

    /// Types `s` (text or key sequences).
    pub fn send(&mut self, s: &str) {
        self.writer.write_all(s.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Esc, alone: the next keys go in a later read so they are not taken for Alt+key.
    pub fn esc(&mut self) {
        std::thread::sleep(Duration::from_millis(60));
        self.send("\x1b");
        std::thread::sleep(Duration::from_millis(120));
    }

    /// Resizes the terminal (the editor gets SIGWINCH).
    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.parser.lock().unwrap().set_size(nz(rows), nz(cols));
        self.master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
    }

    /// The screen's text, row by row.
    pub fn screen(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    /// Row `row` of the screen.
    pub fn row(&self, row: u16) -> String {
        let p = self.parser.lock().unwrap();
        let (_, cols) = p.screen().size();
        p.screen().contents_between(row, 0, row, cols.get())
    }

    /// `(row, col)` of the terminal cursor.
    pub fn cursor(&self) -> (u16, u16) {
        self.parser.lock().unwrap().screen().cursor_position()
    }

    /// The background colour of a cell.
    pub fn bg(&self, row: u16, col: u16) -> vt100::Color {
        self.parser
            .lock()
            .unwrap()
            .screen()
            .cell(row, col)
            .map_or(vt100::Color::Default, |c| c.bgcolor())
    }

    /// Runs `pred` on the screen until it holds, for at most `limit`.
    pub fn try_wait(&self, limit: Duration, pred: impl Fn(&vt100::Screen) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if pred(self.parser.lock().unwrap().screen()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(15));
        }
    }

    /// Waits until `pred` holds; panics with the screen after [`WAIT`].
    pub fn wait_until(&self, what: &str, pred: impl Fn(&vt100::Screen) -> bool) {
        if !self.try_wait(WAIT, pred) {
            panic!(
                "[{}] timed out after {WAIT:?} waiting for {what}; the screen:\n{}",
                self.label,
                self.screen()
            );
        }
    }

    /// Waits until the screen shows `text`.
    pub fn wait_for(&self, text: &str) {
        self.wait_until(&format!("{text:?} on screen"), |s| {
            s.contents().contains(text)
        });
    }

    /// Waits until the screen no longer shows `text`.
    pub fn wait_gone(&self, text: &str) {
        self.wait_until(&format!("{text:?} to leave the screen"), |s| {
            !s.contents().contains(text)
        });
    }

    /// `wait_for`, without blocking the async runtime's worker.
    pub async fn wait_for_async(&self, text: &str) {
        self.wait_until_async(&format!("{text:?} on screen"), |s| {
            s.contents().contains(text)
        })
        .await
    }

    pub async fn wait_until_async(&self, what: &str, pred: impl Fn(&vt100::Screen) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            if pred(self.parser.lock().unwrap().screen()) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "[{}] timed out after {WAIT:?} waiting for {what}; the screen:\n{}",
                    self.label,
                    self.screen()
                );
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }

    /// Waits for the editor to exit; returns whether it exited successfully.
    pub fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() >= deadline {
                panic!(
                    "[{}] the editor did not exit within {WAIT:?}; the screen:\n{}",
                    self.label,
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(15));
        }
    }

    pub async fn wait_exit_async(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() >= deadline {
                panic!(
                    "[{}] the editor did not exit within {WAIT:?}; the screen:\n{}",
                    self.label,
                    self.screen()
                );
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("[{}] last screen:\n{}", self.label, self.screen());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on a fixed local port that forwards each connection to whatever address it is
/// told; [`Proxy::set_target`] points it at a restarted server.
pub struct Proxy {
    pub addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let current = target.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let to = *current.lock().unwrap();
                tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
        });
        Proxy { addr, target, task }
    }

    pub fn set_target(&self, addr: SocketAddr) {
        *self.target.lock().unwrap() = addr;
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
