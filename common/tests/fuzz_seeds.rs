//! Runs the fuzz seeds (`fuzz/seeds/<target>/*`) and the golden frames through the fuzz targets'
//! invariant checks (`fuzz/checks.rs`), so they hold on every `cargo test`, without cargo-fuzz.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::fs;
use std::path::PathBuf;

use goworld_common::proto::golden::{self, GOLDEN};

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut out: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn message_decode_seeds_hold_the_invariant() {
    let s = seeds("message_decode");
    assert!(s.len() >= 5, "only {} seeds", s.len());
    for (name, data) in s {
        println!("{name}");
        checks::check_message(&data);
    }
}

#[test]
fn frame_decoder_seeds_hold_the_invariant() {
    let s = seeds("frame_decoder");
    assert!(s.len() >= 3, "only {} seeds", s.len());
    for (name, data) in s {
        println!("{name}");
        checks::check_frames(&data);
    }
}

#[test]
fn golden_frames_hold_the_invariants() {
    let mut stream = Vec::new();
    for (name, _) in GOLDEN {
        let frame = golden::frame(name).unwrap();
        checks::check_message(&frame[4..]);
        checks::check_frames(&frame);
        stream.extend_from_slice(&frame);
    }
    checks::check_frames(&stream);
}

#[test]
fn hostile_inputs_hold_the_invariants() {
    for data in [
        &[][..],
        &[0, 0, 0, 0],
        &[2, 0, 0, 0, 0x0c, 0],
        &[0xff, 0xff, 0xff, 0xff, 6, 0],
        &[6, 0, 0xff, 0xff],
    ] {
        checks::check_message(data);
        checks::check_frames(data);
    }
}
