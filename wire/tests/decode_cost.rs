//! What decoding a hostile frame costs: memory in proportion to the frame's bytes, never what
//! the frame claims. A counting allocator measures the peak of live heap bytes while each frame
//! decodes, on the decoding thread only.

// A global allocator is an unsafe trait; it only counts and forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use quire_wire::{decode_frame, decode_frame_read_only, DecodeError, MAX_ANY_DEPTH};

struct Counting;

// Counted on the measuring thread only: the test harness runs other tests alongside.
thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn measuring() -> bool {
    MEASURING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds GlobalAlloc's contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if measuring() {
            let size = layout.size() as isize;
            PEAK.fetch_max(LIVE.fetch_add(size, Relaxed) + size, Relaxed);
        }
        // SAFETY: the caller's layout, passed on as received.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if measuring() {
            LIVE.fetch_sub(layout.size() as isize, Relaxed);
        }
        // SAFETY: `ptr` came from `System.alloc` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak heap growth on this thread while `f` runs.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.store(0, Relaxed);
    PEAK.store(0, Relaxed);
    MEASURING.with(|m| m.set(true));
    let out = f();
    MEASURING.with(|m| m.set(false));
    (out, PEAK.load(Relaxed) as usize)
}

/// 2^28 as a varint: five bytes that claim 268,435,456 of something.
const HUGE: [u8; 5] = [0x80, 0x80, 0x80, 0x80, 0x01];

fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// `[0][2] payload`: an Update message.
fn update_message(update: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 2];
    varint(update.len(), &mut f);
    f.extend_from_slice(update);
    f
}

/// An update of one item in the root text "content" with content ref `info` and `content`
/// bytes after it, then an empty delete set.
fn one_item_update(info: u8, content: &[u8]) -> Vec<u8> {
    let mut u = vec![1, 1, 1, 0, info, 1, 7];
    u.extend_from_slice(b"content");
    u.extend_from_slice(content);
    u.push(0);
    u
}

fn hostile_frames() -> Vec<(&'static str, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut clients = vec![];
    clients.extend_from_slice(&HUGE);
    frames.push(("update claiming 2^28 clients", update_message(&clients)));

    let mut blocks = vec![1];
    blocks.extend_from_slice(&HUGE);
    blocks.extend_from_slice(&[1, 0]);
    frames.push(("client claiming 2^28 blocks", update_message(&blocks)));

    let mut sv = vec![0, 0, 5];
    sv.extend_from_slice(&HUGE);
    frames.push(("SyncStep1 claiming 2^28 clocks", sv));

    let mut awareness = vec![1, 5];
    awareness.extend_from_slice(&HUGE);
    frames.push(("awareness claiming 2^28 states", awareness));

    let mut json = vec![];
    json.extend_from_slice(&HUGE);
    frames.push((
        "JSON content claiming 2^28 values",
        update_message(&one_item_update(2, &json)),
    ));

    let mut any = vec![];
    any.extend_from_slice(&HUGE);
    frames.push((
        "Any content claiming 2^28 values",
        update_message(&one_item_update(8, &any)),
    ));

    // Maps inside maps, each claiming 2^28 entries and holding one: yrs reserved (and
    // cleared) a table for the claim at every level.
    let mut maps = vec![1];
    for _ in 0..40 {
        maps.push(118);
        maps.extend_from_slice(&HUGE);
        maps.extend_from_slice(&[1, b'k']);
    }
    maps.push(126);
    frames.push((
        "nested maps claiming 2^28 entries each",
        update_message(&one_item_update(8, &maps)),
    ));

    // 200,000 arrays deep: yrs recursed once per level, past the end of the stack.
    let mut deep = vec![1];
    for _ in 0..200_000 {
        deep.extend_from_slice(&[117, 1]);
    }
    deep.push(126);
    frames.push((
        "arrays nested 200,000 deep",
        update_message(&one_item_update(8, &deep)),
    ));
    frames
}

#[test]
fn hostile_frames_cost_what_their_bytes_are_worth() {
    // Warm up anything lazily allocated once (thread-locals, the panic machinery).
    let _ = decode_frame(&update_message(&[0, 0]));
    for (what, frame) in hostile_frames() {
        let (result, peak) = peak_during(|| decode_frame(&frame));
        let err = result.expect_err(what);
        assert!(
            matches!(
                err,
                DecodeError::InvalidUpdate(_) | DecodeError::Malformed(_)
            ),
            "{what}: {err}"
        );
        // A few dozen bytes of structure per byte of input, plus the frame's own copy.
        let bound = 64 * frame.len() + 64 * 1024;
        assert!(
            peak <= bound,
            "{what}: decoding {} bytes peaked at {peak} bytes of heap (bound {bound}): {err}",
            frame.len()
        );
        eprintln!(
            "{what}: {} bytes in, {peak} bytes peak, refused: {err}",
            frame.len()
        );
    }
}

#[test]
fn nesting_is_refused_past_the_depth_limit_and_accepted_below_it() {
    let nested = |depth: usize| {
        let mut any = vec![1];
        for _ in 0..depth {
            any.extend_from_slice(&[117, 1]);
        }
        any.push(126);
        update_message(&one_item_update(8, &any))
    };
    assert!(decode_frame(&nested(MAX_ANY_DEPTH)).is_ok());
    let err = decode_frame(&nested(MAX_ANY_DEPTH + 1)).unwrap_err();
    assert!(err.to_string().contains("levels deep"), "{err}");
}

#[test]
fn read_only_connections_refuse_updates_without_decoding_them() {
    for (what, frame) in hostile_frames() {
        if frame[0] != 0 || frame[1] != 2 {
            continue;
        }
        let (msgs, refused) = decode_frame_read_only(&frame).expect(what);
        assert!(msgs.is_empty(), "{what}");
        assert_eq!(refused, 1, "{what}");
    }
    // The empty update, a client's answer when it has nothing new, is not a refusal.
    let (msgs, refused) = decode_frame_read_only(&update_message(&[0, 0])).unwrap();
    assert!(msgs.is_empty());
    assert_eq!(refused, 0);
    // Framing is still checked: a cut message refuses the frame.
    assert!(decode_frame_read_only(&[0, 2, 5, 1]).is_err());
}
