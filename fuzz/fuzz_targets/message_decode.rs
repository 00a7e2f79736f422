//! Fuzz target: any payload either fails to decode or re-encodes to the same bytes
//! (`Msg::decode` and `ClientBound::decode`). See `../checks.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::check_message(data);
});
