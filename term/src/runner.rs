//! The terminal and the event loop: raw mode and the alternate screen (restored on exit and on
//! panic), one thread reading keys, the connection thread and the word-index builder feeding one
//! channel, a redraw after each batch of events, and a tick for timers.

use std::io;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use crossterm::execute;

use crate::app::{App, AppEvent};
use crate::view;

/// The longest wait between two ticks (timers, countdowns).
const TICK: Duration = Duration::from_millis(250);
/// Events handled before the next redraw, at most.
const BATCH: Duration = Duration::from_millis(8);

/// Runs the editor until the user quits.
pub fn run(mut app: App) -> io::Result<()> {
    let (tx, rx) = mpsc::channel::<AppEvent>();
    if let Some(text) = app.take_index_job() {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("quire-index".into())
            .spawn(move || {
                let _ = tx.send(AppEvent::Words(Box::new(App::build_index(text))));
            })?;
    }
    if let Some(session) = app.session() {
        let tx = tx.clone();
        session.connect(Box::new(move |ev| {
            let _ = tx.send(AppEvent::Net(ev));
        }))?;
    }
    let mut terminal = ratatui::try_init()?;
    let _ = execute!(io::stdout(), EnableBracketedPaste);
    std::thread::Builder::new()
        .name("quire-input".into())
        .spawn(move || {
            while let Ok(ev) = crossterm::event::read() {
                if tx.send(AppEvent::Term(ev)).is_err() {
                    break;
                }
            }
        })?;
    let result = event_loop(&mut terminal, &mut app, &rx);
    let _ = execute!(io::stdout(), DisableBracketedPaste);
    ratatui::restore();
    app.shutdown();
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    rx: &mpsc::Receiver<AppEvent>,
) -> io::Result<()> {
    loop {
        app.publish_cursor();
        terminal.draw(|frame| view::draw(frame, app))?;
        if app.quits() {
            return Ok(());
        }
        match rx.recv_timeout(TICK) {
            Ok(ev) => app.handle(ev),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        let until = Instant::now() + BATCH;
        while Instant::now() < until && !app.quits() {
            match rx.try_recv() {
                Ok(ev) => app.handle(ev),
                Err(_) => break,
            }
        }
        app.tick(Instant::now());
    }
}
