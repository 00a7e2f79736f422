//! The invariants the fuzz targets check, shared with `common/tests/fuzz_seeds.rs` (which runs the
//! seed files through the same code as an ordinary test). Pure functions over byte slices; they
//! panic when an invariant is broken, which is how libFuzzer and the test harness notice.
//!
//! Owned by the protocol helper. Depends only on `goworld_common`'s public API.

// Each fuzz target uses one of the two checks.
#![allow(dead_code)]

use goworld_common::frame::{write_frame, FrameDecoder};
use goworld_common::proto::{ClientBound, Msg};

/// Payload limit the frame target decodes with: a client link's `max_client_frame`.
pub const MAX_PAYLOAD: u32 = 65536;

/// `output` is `input` except that a bool byte other than 0/1 (read as true) is written back as 1.
fn assert_reencoded(input: &[u8], output: &[u8], what: &str) {
    assert_eq!(
        input.len(),
        output.len(),
        "{what}: re-encoded length differs"
    );
    for (i, (a, b)) in input.iter().zip(output).enumerate() {
        assert!(
            a == b || (*a > 1 && *b == 1),
            "{what}: byte {i} was {a:#04x}, re-encoded as {b:#04x}"
        );
    }
}

/// What decodes re-encodes to the same bytes, on server links and as a client receives it.
/// Never panics on any input besides a broken invariant.
pub fn check_message(payload: &[u8]) {
    if let Ok(m) = Msg::decode(payload) {
        let out = m.to_payload();
        assert_reencoded(payload, &out, "Msg");
        assert_eq!(m.msg_type().to_le_bytes(), out[..2], "Msg type");
        // The canonical form is a fixed point.
        let again = Msg::decode(&out)
            .expect("re-encoded Msg decodes")
            .to_payload();
        assert_eq!(again, out, "Msg re-encode is stable");
    }
    if let Ok(c) = ClientBound::decode(payload) {
        let mut out = Vec::new();
        c.encode(&mut out);
        assert_reencoded(payload, &out, "ClientBound");
        let mut again = Vec::new();
        ClientBound::decode(&out)
            .expect("re-encoded ClientBound decodes")
            .encode(&mut again);
        assert_eq!(again, out, "ClientBound re-encode is stable");
    }
}

/// Feeds `data` to a [`FrameDecoder`] in pieces of `piece` bytes; returns the payloads and
/// whether the decoder reported an error (decoding stops at the first error).
fn frames_of(data: &[u8], piece: usize) -> (Vec<Vec<u8>>, bool) {
    let mut dec = FrameDecoder::new(MAX_PAYLOAD);
    let mut frames = Vec::new();
    for chunk in data.chunks(piece.max(1)) {
        dec.extend(chunk);
        loop {
            match dec.next_frame() {
                Ok(Some(p)) => frames.push(p.to_vec()),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

/// The frame decoder finds the same frames however the input is split, the frames re-frame to
/// exactly the bytes they came from, what is left over is an incomplete frame (or the header
/// that was refused), and every payload satisfies [`check_message`].
pub fn check_frames(data: &[u8]) {
    let (frames, failed) = frames_of(data, data.len());
    let piece = 1 + usize::from(data.first().copied().unwrap_or(0) % 7);
    assert_eq!(
        frames_of(data, piece),
        (frames.clone(), failed),
        "split in pieces of {piece}"
    );
    assert_eq!(
        frames_of(data, 1),
        (frames.clone(), failed),
        "fed one byte at a time"
    );

    let mut reframed = Vec::with_capacity(data.len());
    for p in &frames {
        write_frame(&mut reframed, p);
    }
    assert!(data.starts_with(&reframed), "frames re-frame to the input");
    let rest = &data[reframed.len()..];
    if rest.len() >= 4 {
        let declared = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if failed {
            // Refused from the header alone: over the limit (or a length the decoder rejects).
            assert!(
                declared > MAX_PAYLOAD || declared == 0,
                "refused length {declared}"
            );
        } else {
            assert!(
                declared <= MAX_PAYLOAD,
                "accepted length {declared} over the limit"
            );
            assert!(
                4 + declared as usize > rest.len(),
                "a whole frame was left undecoded"
            );
        }
    } else {
        assert!(!failed, "error without a whole header");
    }

    for p in &frames {
        check_message(p);
    }
}
