//! Drawing the editor with ratatui: line numbers, the visible rows of text (horizontally
//! scrolled), the selection, search matches, collaborators' cursors and selections with their
//! names, the status bar (file, modified flag, connection state, who is here, line:column), the
//! message or question line, the search bar and the completion popup.
//!
//! Only the rows on screen are looked at: a frame costs the same in a 100 MB file as in a small
//! one (see BENCHMARKS.md, "Terminal editor").

use std::ops::Range;
use std::time::Instant;

use editor_core::TextBuffer;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph};
use ratatui::Frame;
use unicode_width::UnicodeWidthStr;

use crate::app::{App, Doc, Level, Mode, Question};
use crate::layout::{self, Symbol};
use crate::live::{parse_hex, Conn, Peer};
use crate::search::{Field, COUNT_LIMIT};

const SELECTION: Style = Style::new().fg(Color::White).bg(Color::Rgb(50, 90, 170));
const MATCH: Style = Style::new().fg(Color::Black).bg(Color::Yellow);
const GUTTER: Style = Style::new().fg(Color::DarkGray);
const GUTTER_CURRENT: Style = Style::new().fg(Color::Yellow);
const ESCAPED: Style = Style::new().fg(Color::DarkGray);
const STATUS: Style = Style::new().fg(Color::Black).bg(Color::Gray);

/// A collaborator's colour as a terminal colour.
pub fn peer_color(peer: &Peer) -> Color {
    parse_hex(&peer.color).map_or(Color::Cyan, |(r, g, b)| Color::Rgb(r, g, b))
}

/// What colours the text: ranges of chars and their styles, applied in order.
struct Highlights {
    layers: Vec<(Vec<Range<usize>>, Style)>,
    /// Collaborators' cursors: char position and colour.
    carets: Vec<(usize, Color)>,
}

impl Highlights {
    fn style_at(&self, pos: usize) -> Style {
        let mut style = Style::default();
        for (ranges, s) in &self.layers {
            let i = ranges.partition_point(|r| r.end <= pos);
            if ranges.get(i).is_some_and(|r| r.start <= pos) {
                style = style.patch(*s);
            }
        }
        for (at, color) in &self.carets {
            if *at == pos {
                style = style.fg(Color::Black).bg(*color);
            }
        }
        style
    }
}

/// Draws the whole editor.
pub fn draw(frame: &mut Frame, app: &mut App) {
    let area = frame.area();
    if area.height < 3 || area.width < 10 {
        frame.render_widget(Paragraph::new("quire: the window is too small"), area);
        return;
    }
    let bar_rows = match app.mode() {
        Mode::Search(bar) if bar.replacement.is_some() => 2,
        Mode::Search(_) => 1,
        _ => 0,
    };
    let text_rows = area.height - 2 - bar_rows;
    let digits = app.buf().len_lines().to_string().len().max(3) as u16;
    let gutter = digits + 1;
    let text_area = Rect::new(area.x + gutter, area.y, area.width - gutter, text_rows);
    app.scroll_to_cursor(text_area.height as usize, text_area.width as usize);

    let peers = app.peers();
    let visible = visible_chars(app, text_rows as usize);
    let authors = app.authors_in(visible.clone());
    let highlights = highlights(app, &peers, &authors, visible);
    let cursor = draw_text(frame.buffer_mut(), app, area, gutter, &highlights, &peers);

    let mut y = area.y + text_rows;
    if let Mode::Search(_) = app.mode() {
        let pos = draw_search_bar(frame, app, Rect::new(area.x, y, area.width, bar_rows));
        frame.set_cursor_position(pos);
        y += bar_rows;
    } else if let Some(pos) = cursor {
        frame.set_cursor_position(pos);
    }
    draw_status(
        frame.buffer_mut(),
        app,
        &peers,
        Rect::new(area.x, y, area.width, 1),
    );
    if let Some(pos) = draw_message(
        frame.buffer_mut(),
        app,
        Rect::new(area.x, y + 1, area.width, 1),
    ) {
        frame.set_cursor_position(pos);
    }
    if let (Some(popup), Some(at)) = (app.popup(), cursor) {
        draw_popup(frame, popup, at, text_area);
    }
}

/// The chars of the rows on screen.
fn visible_chars(app: &App, rows: usize) -> Range<usize> {
    let buf = app.buf();
    let start = buf.line_to_char(app.viewport().top()).unwrap_or(0);
    let last = (app.viewport().top() + rows).min(buf.len_lines());
    let end = buf.line_to_char(last).unwrap_or(buf.len_chars());
    start..end
}

fn highlights(
    app: &App,
    peers: &[Peer],
    authors: &[(Range<usize>, Option<String>)],
    visible: Range<usize>,
) -> Highlights {
    let mut layers = Vec::new();
    // Who typed what first: everything else is drawn over it.
    let mut by_author: Vec<(&Option<String>, Vec<Range<usize>>)> = Vec::new();
    for (range, who) in authors {
        match by_author.iter_mut().find(|(w, _)| *w == who) {
            Some((_, ranges)) => ranges.push(range.clone()),
            None => by_author.push((who, vec![range.clone()])),
        }
    }
    for (who, ranges) in by_author {
        let color = who
            .as_deref()
            .and_then(|name| parse_hex(&quire_wire::author_color(name)))
            .map_or(Color::DarkGray, |(r, g, b)| Color::Rgb(r, g, b));
        layers.push((ranges, Style::new().fg(color)));
    }
    for peer in peers {
        if let Some((a, h)) = peer.cursor {
            let style = Style::new()
                .fg(peer_color(peer))
                .add_modifier(Modifier::UNDERLINED);
            let range = a.min(h)..a.max(h);
            layers.push((vec![range], style));
        }
    }
    if let Mode::Search(bar) = app.mode() {
        layers.push((bar.matches_in(app.buf(), visible), MATCH));
    }
    if let Some(sel) = app.selection() {
        layers.push((vec![sel], SELECTION));
    }
    let carets = peers
        .iter()
        .filter_map(|p| Some((p.cursor?.1, peer_color(p))))
        .collect();
    Highlights { layers, carets }
}

/// Draws line numbers and text; returns where the cursor is on screen, if it is.
fn draw_text(
    out: &mut Buffer,
    app: &App,
    area: Rect,
    gutter: u16,
    hl: &Highlights,
    peers: &[Peer],
) -> Option<Position> {
    let buf = app.buf();
    let tab = app.settings().tab_width;
    let rows = app.viewport().rows();
    let cols = app.viewport().cols();
    let left = app.viewport().left();
    let cursor_line = buf
        .char_to_line(app.cursor().min(buf.len_chars()))
        .unwrap_or(0);
    let mut cursor_pos = None;
    for row in 0..rows {
        let line = app.viewport().top() + row;
        let y = area.y + row as u16;
        if line >= buf.len_lines() {
            out.set_string(
                area.x,
                y,
                format!("{:>w$}", "~", w = gutter as usize - 1),
                GUTTER,
            );
            continue;
        }
        let number = format!("{:>w$} ", line + 1, w = gutter as usize - 1);
        let style = if line == cursor_line {
            GUTTER_CURRENT
        } else {
            GUTTER
        };
        out.set_string(area.x, y, number, style);

        let range = layout::line_range(buf, line);
        let cap = range.end.min(range.start + (left + cols) * 8 + 64);
        let text = buf.slice(range.start..cap).unwrap_or_default();
        let x0 = area.x + gutter;
        let mut end_col = 0;
        let mut labels_at = 0;
        for cell in layout::cells(&text, range.start, 0, tab) {
            end_col = cell.col + cell.width;
            if end_col <= left {
                continue;
            }
            if cell.col >= left + cols {
                break;
            }
            let style = hl.style_at(cell.chars.start);
            let visible_from = cell.col.max(left);
            let x = x0 + (visible_from - left) as u16;
            let room = left + cols - visible_from;
            if line == cursor_line && cell.chars.contains(&app.cursor()) {
                cursor_pos = Some(Position::new(x, y));
            }
            match &cell.symbol {
                Symbol::Text(g) if cell.col >= left && cell.width <= room => {
                    out.set_stringn(x, y, g, room, style);
                }
                Symbol::Escaped(s) if cell.col >= left && cell.width <= room => {
                    out.set_stringn(x, y, s, room, ESCAPED.patch(style));
                }
                _ => {
                    // A tab, or a wide cluster cut by an edge: blanks in its style.
                    let w = (end_col.min(left + cols) - visible_from).max(1);
                    out.set_stringn(x, y, " ".repeat(w), room, style);
                }
            }
            labels_at = end_col;
        }
        // The end of the line: the cursor, a selected line break, a collaborator's caret.
        if cap == range.end && end_col >= left && end_col < left + cols {
            let x = x0 + (end_col - left) as u16;
            if line == cursor_line && app.cursor() == range.end {
                cursor_pos = Some(Position::new(x, y));
            }
            let style = hl.style_at(range.end);
            if style != Style::default() && range.end < buf.len_chars()
                || hl.carets.iter().any(|c| c.0 == range.end)
            {
                out.set_stringn(x, y, " ", 1, style);
            }
            labels_at = end_col + 1;
        }
        // Names of the collaborators whose cursor is on this line, after its text.
        let mut x = labels_at.saturating_sub(left) + 1;
        for peer in peers {
            let Some((_, head)) = peer.cursor else {
                continue;
            };
            if head < range.start || head > range.end {
                continue;
            }
            let label = format!(" {} ", peer.name);
            let w = label.width();
            if w > cols {
                continue;
            }
            let at = x.min(cols - w);
            out.set_stringn(
                x0 + at as u16,
                y,
                &label,
                w,
                Style::new().fg(Color::Black).bg(peer_color(peer)),
            );
            x = at + w + 1;
        }
    }
    cursor_pos
}

/// The search bar; returns where the terminal cursor goes (the focused field's end).
fn draw_search_bar(frame: &mut Frame, app: &mut App, area: Rect) -> Position {
    let count = match app.mode() {
        Mode::Search(bar) if !bar.query.is_empty() => app.search_count(),
        _ => None,
    };
    let Mode::Search(bar) = app.mode() else {
        return Position::new(area.x, area.y);
    };
    let count = match count {
        _ if bar.query.is_empty() => String::new(),
        None => "counting…".to_string(),
        Some((_, 0)) => "no matches".to_string(),
        Some((_, t)) if t > COUNT_LIMIT => format!("{COUNT_LIMIT}+ matches"),
        Some((Some(i), t)) => format!("{i} of {t}"),
        Some((None, t)) => format!("{t} matches"),
    };
    let case = if bar.case_sensitive {
        "[Aa] case-sensitive"
    } else {
        "[aa] ignore case"
    };
    let label = Style::new().fg(Color::Black).bg(Color::Cyan);
    let find = Line::from(vec![
        Span::styled(" Find: ", label),
        Span::raw(" "),
        Span::raw(bar.query.clone()),
        Span::raw("  "),
        Span::styled(count, Style::new().fg(Color::Yellow)),
        Span::raw("  "),
        Span::styled(case, Style::new().fg(Color::DarkGray)),
        Span::styled(
            "  Enter/↓ next · ↑ prev · Alt-C case · Ctrl-R replace · Esc",
            Style::new().fg(Color::DarkGray),
        ),
    ]);
    frame.render_widget(
        Paragraph::new(find),
        Rect::new(area.x, area.y, area.width, 1),
    );
    let field_x = |text: &str| area.x + (8 + text.width()).min(area.width as usize - 1) as u16;
    let mut pos = Position::new(field_x(&bar.query), area.y);
    if let Some(replacement) = &bar.replacement {
        let repl = Line::from(vec![
            Span::styled(" Repl: ", label),
            Span::raw(" "),
            Span::raw(replacement.clone()),
            Span::styled(
                "  Enter replace · Alt-A replace all · Tab switch field",
                Style::new().fg(Color::DarkGray),
            ),
        ]);
        frame.render_widget(
            Paragraph::new(repl),
            Rect::new(area.x, area.y + 1, area.width, 1),
        );
        if bar.focus == Field::Replace {
            pos = Position::new(field_x(replacement), area.y + 1);
        }
    }
    pos
}

/// The connection state as shown in the status bar, and its colour.
pub fn conn_label(conn: &Conn, now: Instant) -> (String, Color) {
    match conn {
        Conn::Connecting { attempt: 1 } => ("◌ connecting…".into(), Color::Yellow),
        Conn::Connecting { attempt } => (format!("◌ connecting… (try {attempt})"), Color::Yellow),
        Conn::Syncing => ("◌ syncing…".into(), Color::Yellow),
        Conn::Synced => ("● synced".into(), Color::Green),
        Conn::Offline { retry_at, .. } => {
            let secs = retry_at.saturating_duration_since(now).as_secs_f32().ceil() as u64;
            (
                format!("○ offline, editing locally — retry in {secs}s"),
                Color::Red,
            )
        }
        Conn::Refused { reason } => (format!("✕ refused: {reason}"), Color::Red),
    }
}

fn draw_status(out: &mut Buffer, app: &mut App, peers: &[Peer], area: Rect) {
    out.set_style(area, STATUS);
    let (name, extra) = match app.doc() {
        Doc::File(f) => {
            let mut extra = String::new();
            if app.is_modified() {
                extra.push_str(" [+]");
            }
            if f.read_only.is_some() {
                extra.push_str(" [read-only]");
            } else if f.new_file {
                extra.push_str(" [new]");
            }
            (f.path.display().to_string(), extra)
        }
        Doc::Live(l) => (format!("{} (live)", l.session.doc_name), String::new()),
    };
    let mut spans = vec![
        Span::styled(format!(" {name}"), STATUS.add_modifier(Modifier::BOLD)),
        Span::styled(extra, STATUS),
    ];
    if let Doc::Live(l) = app.doc() {
        let (label, color) = conn_label(&l.session.conn, Instant::now());
        spans.push(Span::styled("  ", STATUS));
        spans.push(Span::styled(label, STATUS.fg(color).bg(Color::Black)));
        if !peers.is_empty() {
            spans.push(Span::styled("  with ", STATUS));
            for (i, p) in peers.iter().enumerate() {
                if i > 0 {
                    spans.push(Span::styled(", ", STATUS));
                }
                spans.push(Span::styled(p.name.clone(), STATUS.fg(peer_color(p))));
            }
        }
    }
    let (line, _) = app
        .buf()
        .char_to_line_col(app.cursor().min(app.buf().len_chars()))
        .unwrap_or((0, 0));
    let range = layout::line_range(app.buf(), line);
    let col = app
        .buf()
        .slice(
            range.start
                ..app
                    .cursor()
                    .max(range.start)
                    .min(range.start + layout::WINDOW),
        )
        .map(|s| unicode_segmentation::UnicodeSegmentation::graphemes(s.as_str(), true).count())
        .unwrap_or(0);
    let pos = format!(
        "Ln {}/{}, Col {} ",
        line + 1,
        app.buf().len_lines(),
        col + 1
    );
    let line_w = Line::from(spans);
    let left_w = line_w.width() as u16;
    out.set_line(area.x, area.y, &line_w, area.width);
    let pos_w = pos.width() as u16;
    if left_w + pos_w < area.width {
        out.set_string(area.x + area.width - pos_w, area.y, pos, STATUS);
    }
}

/// The message line; returns the cursor position when it holds an input field.
fn draw_message(out: &mut Buffer, app: &App, area: Rect) -> Option<Position> {
    let (text, style, input) = match app.mode() {
        Mode::Ask(q) => {
            let path = match app.doc() {
                Doc::File(f) => f.path.display().to_string(),
                Doc::Live(l) => l.session.doc_name.clone(),
            };
            let text = match q {
                Question::QuitUnsaved => format!("Save changes to {path} before quitting? (y)es (n)o, Esc cancels"),
                Question::QuitUnsynced => match app.doc() {
                    Doc::Live(l) if l.copy.is_some() => format!(
                        "Offline: your latest edits have not reached the server (they stay in {}). Quit anyway? (y/n)",
                        l.copy.as_ref().map_or(String::new(), |p| p.display().to_string())
                    ),
                    _ => "Offline: your latest edits have not reached the server and would be lost. Quit anyway? (y/n)".to_string(),
                },
                Question::Overwrite => format!("{path} changed on disk since it was opened. Overwrite it? (y/n)"),
                Question::SaveCopyAs(name) => format!("Save a local copy as: {name}"),
            };
            let input = matches!(q, Question::SaveCopyAs(_));
            (text, Style::new().fg(Color::Black).bg(Color::Yellow), input)
        }
        _ => match app.message() {
            Some((m, Level::Warn, _)) => (m.clone(), Style::new().fg(Color::LightRed), false),
            Some((m, Level::Info, _)) => (m.clone(), Style::default(), false),
            None => (String::new(), Style::default(), false),
        },
    };
    out.set_stringn(area.x, area.y, &text, area.width as usize, style);
    input.then(|| Position::new(area.x + (text.width() as u16).min(area.width - 1), area.y))
}

fn draw_popup(frame: &mut Frame, popup: &crate::complete::Popup, cursor: Position, text: Rect) {
    let items: Vec<ListItem> = popup
        .items
        .iter()
        .map(|(w, n)| ListItem::new(format!("{w}  {n}")))
        .collect();
    let width = popup
        .items
        .iter()
        .map(|(w, n)| w.width() + 2 + n.to_string().len())
        .max()
        .unwrap_or(4) as u16
        + 2;
    let height = popup.items.len() as u16 + 2;
    let width = width.min(text.width);
    let prefix = popup.prefix.width() as u16;
    let x = cursor
        .x
        .saturating_sub(prefix + 1)
        .max(text.x)
        .min(text.x + text.width - width);
    let y = if cursor.y + 1 + height <= text.y + text.height {
        cursor.y + 1
    } else {
        cursor.y.saturating_sub(height).max(text.y)
    };
    let area = Rect::new(x, y, width, height.min(text.height));
    let mut state = ListState::default().with_selected(Some(popup.selected));
    let list = List::new(items)
        .block(Block::default().borders(Borders::ALL).border_style(GUTTER))
        .highlight_style(Style::new().fg(Color::Black).bg(Color::Cyan));
    frame.render_widget(Clear, area);
    frame.render_stateful_widget(list, area, &mut state);
}
