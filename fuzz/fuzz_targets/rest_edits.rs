//! The REST edit path: document text, NUL, then a `POST /api/documents/{id}/edits` body, parsed
//! with the API's request type and applied as the actor does
//! (`quire_backend::fuzzing::rest_edits`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| quire_backend::fuzzing::rest_edits(data));
