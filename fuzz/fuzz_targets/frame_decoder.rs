//! Fuzz target: the incremental frame decoder on any byte stream, split in several ways; every
//! frame it yields re-frames to the input and its payload passes the message invariant.
//! See `../checks.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::check_frames(data);
});
