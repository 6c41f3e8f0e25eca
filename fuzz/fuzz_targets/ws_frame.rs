//! The WebSocket message path: one binary frame through `protocol::decode_frame` and applied
//! to a document as the document actor applies it (`quire_backend::fuzzing::ws_frame`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| quire_backend::fuzzing::ws_frame(data));
