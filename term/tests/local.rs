//! The real `quire` binary editing local files in a pseudo-terminal: open, edit, save, quit;
//! cursor moves over grapheme clusters; search and replace; completion; undo and redo; files
//! that are not UTF-8; tabs; resizing.

mod support;

use std::fs;

use support::keys::*;
use support::{Scratch, Term};

fn open(scratch: &Scratch, label: &str, file: &str, extra: &[&str]) -> Term {
    let mut args = vec!["edit", file];
    args.extend_from_slice(extra);
    let t = Term::spawn(label, &args, scratch.dir(), 24, 80);
    // Keys typed before the editor switched the terminal to raw mode would be cooked.
    t.wait_for("Ln 1/");
    t
}

fn save_and_quit(t: &mut Term) {
    t.send(CTRL_S);
    t.wait_for("saved ");
    t.send(CTRL_Q);
    assert!(t.wait_exit(), "quire exited with an error");
}

#[test]
fn open_edit_save_quit_round_trip() {
    let s = Scratch::new("roundtrip");
    let path = s.path("notes.txt");
    fs::write(&path, "hello\nworld\n").unwrap();
    let mut t = open(&s, "roundtrip", "notes.txt", &[]);
    t.wait_for("hello");
    t.wait_for("notes.txt");
    t.wait_for("Ln 1/3, Col 1");
    t.send(END);
    t.send(" there 漢字 e\u{301}");
    t.send(DOWN);
    t.send(HOME);
    t.send(">> ");
    t.wait_for(">> world");
    t.wait_for("[+]");
    // Line 2, after ">> " (3 columns): the cursor is on screen there (gutter of 4).
    t.wait_until("the cursor after \">> \"", |s| {
        s.cursor_position() == (1, 7)
    });
    save_and_quit(&mut t);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "hello there 漢字 e\u{301}\n>> world\n"
    );

    // A file that does not exist is created by the first save; quitting with unsaved changes
    // asks first.
    let mut t = open(&s, "new", "new.txt", &[]);
    t.wait_for("new file");
    t.send("draft");
    t.wait_for("draft");
    t.send(CTRL_Q);
    t.wait_for("Save changes to new.txt before quitting?");
    t.send("n");
    assert!(t.wait_exit());
    assert!(!s.path("new.txt").exists(), "answering n must not save");
    let mut t = open(&s, "new2", "new.txt", &[]);
    t.send("kept");
    t.send(CTRL_Q);
    t.wait_for("before quitting?");
    t.send("y");
    assert!(t.wait_exit());
    assert_eq!(fs::read_to_string(s.path("new.txt")).unwrap(), "kept");
}

#[test]
fn cursor_moves_by_grapheme_cluster_and_display_width() {
    let s = Scratch::new("graphemes");
    let path = s.path("u.txt");
    // a, thumbs up + skin tone (2 chars, 1 cluster), b, a CJK char (2 columns), c + combining
    // acute (2 chars, 1 cluster), d; then a flag (2 regional indicators).
    fs::write(&path, "a👍🏽b漢c\u{301}d\n🇫🇷x\n").unwrap();
    let mut t = open(&s, "graphemes", "u.txt", &[]);
    t.wait_for("Ln 1/3");
    t.send(RIGHT);
    t.send(RIGHT);
    t.send("X");
    t.send(RIGHT);
    t.send(RIGHT);
    t.send("Y");
    // a👍🏽Xb漢Y: 1 + 2 + 1 + 1 + 2 + 1 = 8 columns after the 4-column gutter.
    t.wait_until("the cursor after Y at column 12", |s| {
        s.cursor_position() == (0, 12)
    });
    t.wait_for("Col 7");
    t.send(END);
    t.send(LEFT);
    t.send(LEFT);
    t.send("Z");
    t.send(DOWN);
    t.send(HOME);
    t.send(RIGHT);
    t.send("!");
    t.send(BACKSPACE);
    t.send(BACKSPACE);
    t.wait_until("the flag deleted as one cluster", |s| {
        s.contents().contains("  2 x")
    });
    save_and_quit(&mut t);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "a👍🏽Xb漢YZc\u{301}d\nx\n"
    );
}

#[test]
fn selection_clipboard_and_page_moves() {
    let s = Scratch::new("clipboard");
    let path = s.path("c.txt");
    let mut text = String::from("one two three\n");
    for i in 2..=60 {
        text.push_str(&format!("line {i}\n"));
    }
    fs::write(&path, &text).unwrap();
    let mut t = open(&s, "clipboard", "c.txt", &[]);
    t.send(PAGE_DOWN);
    t.wait_for("Ln 22/61");
    t.send(PAGE_DOWN);
    t.wait_for("Ln 43/61");
    t.wait_for(" 43 line 43");
    t.send(PAGE_UP);
    t.send(PAGE_UP);
    t.wait_for("Ln 1/61");
    t.send(CTRL_RIGHT);
    t.send(CTRL_SHIFT_RIGHT);
    t.send(CTRL_X);
    t.wait_for("cut 4 chars");
    t.wait_for("one three");
    t.send(END);
    t.send(CTRL_V);
    t.wait_for("one three two");
    // Copy without a selection takes the line; pasting it puts it above the cursor's line.
    t.send(CTRL_C);
    t.wait_for("copied 14 chars");
    t.send(CTRL_V);
    t.wait_until("the line pasted above", |s| {
        s.contents()
            .starts_with("  1 one three two\n  2 one three two\n")
    });
    save_and_quit(&mut t);
    let expected = text.replacen("one two three\n", "one three two\none three two\n", 1);
    assert_eq!(fs::read_to_string(&path).unwrap(), expected);
}

#[test]
fn search_and_replace() {
    let s = Scratch::new("search");
    let path = s.path("s.txt");
    fs::write(&path, "foo bar Foo baz foo\nfood\n").unwrap();
    let mut t = open(&s, "search", "s.txt", &[]);
    t.wait_for("foo bar");
    t.send(CTRL_F);
    t.wait_for("Find:");
    t.send("foo");
    // Case-insensitive by default: foo, Foo, foo, foo(d).
    t.wait_for("1 of 4");
    // Every match on screen is highlighted (yellow), the current one selected.
    t.wait_until("the match at Foo highlighted", |s| {
        s.cell(0, 4 + 8)
            .is_some_and(|c| c.bgcolor() == vt100::Color::Idx(3))
    });
    t.send(DOWN);
    t.wait_for("2 of 4");
    t.send(UP);
    t.wait_for("1 of 4");
    t.send(ALT_C);
    t.wait_for("1 of 3");
    t.wait_for("[Aa] case-sensitive");
    t.send(CTRL_R);
    t.wait_for("Repl:");
    t.send("qux");
    t.send(ENTER);
    t.wait_for("qux bar Foo");
    t.wait_for("1 of 2");
    t.send(ALT_A);
    t.wait_for("replaced 2 matches");
    t.wait_for("quxd");
    t.esc();
    t.wait_gone("Find:");
    save_and_quit(&mut t);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "qux bar Foo baz qux\nquxd\n"
    );
}

#[test]
fn completion_popup_and_tab() {
    let s = Scratch::new("complete");
    let path = s.path("c.txt");
    fs::write(&path, "alpha alphabet alpine alpha\n").unwrap();
    let mut t = open(&s, "complete", "c.txt", &[]);
    t.wait_for("alphabet");
    t.send(CTRL_END);
    t.send("alp");
    t.send(CTRL_SPACE);
    // Most frequent first (alpha: 2), then alphabetical.
    t.wait_until("the popup with three words", |s| {
        let c = s.contents();
        let (a, b, p) = (
            c.find("alpha  2"),
            c.find("alphabet  1"),
            c.find("alpine  1"),
        );
        matches!((a, b, p), (Some(a), Some(b), Some(p)) if a < b && b < p)
    });
    t.send(DOWN);
    t.send(ENTER);
    t.wait_for("  2 alphabet");
    t.send(" alpi");
    t.send(TAB);
    t.wait_for("alphabet alpine");
    // Tab after something that completes nothing is a tab.
    t.send(" zzz");
    t.send(TAB);
    t.send("|");
    save_and_quit(&mut t);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "alpha alphabet alpine alpha\nalphabet alpine zzz\t|"
    );
}

#[test]
fn undo_and_redo_by_typing_runs() {
    let s = Scratch::new("undo");
    let path = s.path("u.txt");
    let mut t = open(&s, "undo", "u.txt", &[]);
    t.wait_for("new file");
    t.send("one two three");
    t.wait_for("one two three");
    t.send(CTRL_Z);
    t.wait_until("three undone", |s| {
        let c = s.contents();
        c.contains("one two") && !c.contains("three")
    });
    t.send(CTRL_Z);
    t.wait_until("two undone", |s| {
        let c = s.contents();
        c.contains("  1 one") && !c.contains("two")
    });
    t.send(CTRL_Y);
    t.wait_for("one two");
    t.send("!");
    t.wait_for("one two!");
    // A new edit clears the redo stack.
    t.send(CTRL_Y);
    t.wait_for("nothing to redo");
    save_and_quit(&mut t);
    assert_eq!(fs::read_to_string(&path).unwrap(), "one two!");
}

#[test]
fn invalid_utf8_and_binary_files_are_never_corrupted() {
    let s = Scratch::new("binary");
    let latin1 = s.path("latin1.txt");
    let bytes = b"caf\xe9 au lait\n".to_vec();
    fs::write(&latin1, &bytes).unwrap();
    let mut t = open(&s, "latin1", "latin1.txt", &[]);
    t.wait_for("not valid UTF-8");
    t.wait_for("[read-only]");
    // The bad byte is drawn as U+FFFD, which the vt100 emulator drops: check around it.
    t.wait_for("caf");
    t.wait_for("au lait");
    t.send("x");
    t.wait_for("read-only: not valid UTF-8");
    t.send(CTRL_S);
    t.wait_for("not saved");
    t.send(CTRL_Q);
    assert!(t.wait_exit());
    assert_eq!(fs::read(&latin1).unwrap(), bytes);

    let bin = s.path("data.bin");
    let bytes = b"\x7fELF\x02\x01\x00\x00binary".to_vec();
    fs::write(&bin, &bytes).unwrap();
    let mut t = open(&s, "bin", "data.bin", &[]);
    t.wait_for("binary file");
    t.wait_for("^@");
    t.send(CTRL_X);
    t.send(CTRL_S);
    t.wait_for("not saved");
    t.send(CTRL_Q);
    assert!(t.wait_exit());
    assert_eq!(fs::read(&bin).unwrap(), bytes);
}

#[test]
fn tabs_and_resize() {
    let s = Scratch::new("tabs");
    fs::write(s.path("t.txt"), "\tx\nab\tc\n").unwrap();
    let mut t = open(&s, "tabs", "t.txt", &["--tab-width", "8"]);
    t.wait_until("x after an 8-column tab", |s| {
        s.contents().contains("  1         x") && s.contents().contains("  2 ab      c")
    });
    t.send(RIGHT);
    t.wait_until("the cursor after the tab", |s| {
        s.cursor_position() == (0, 12)
    });
    t.resize(10, 40);
    t.wait_until("the status bar on the new last-but-one row", |s| {
        s.contents_between(8, 0, 8, 40).contains("t.txt")
    });
    t.send(CTRL_Q);
    assert!(t.wait_exit());
}
