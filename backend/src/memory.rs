//! The server's heap, counted: a global allocator that keeps the number of live heap bytes,
//! behind `--max-memory-bytes` (opening one more document waits for idle ones to unload, then
//! is refused with 503) and the `quire_heap_bytes` gauge.
//!
//! Documents are what grows without bound: an update's in-memory cost is not its encoded size
//! (item-heavy updates cost ~28× it), so the budget is held on what is really allocated rather
//! than on an estimate. The binary installs [`Counting`] (`main.rs`); a server embedded in a
//! test without it reads 0 and never refuses.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes.
pub struct Counting;

// SAFETY: every call is forwarded unchanged to `System`, which upholds GlobalAlloc's contract;
// the counter is only arithmetic.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, passed on as received.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the caller checked new_size.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(new_size, Relaxed);
            LIVE.fetch_sub(layout.size(), Relaxed);
        }
        new
    }
}

/// Live heap bytes (0 where [`Counting`] is not the global allocator).
pub fn heap_bytes() -> usize {
    LIVE.load(Relaxed)
}

/// Physical memory, for `--max-memory-bytes`' default (None where it cannot be read).
pub fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system configuration.
    #[allow(unsafe_code)]
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && page > 0).then(|| pages as u64 * page as u64)
}
