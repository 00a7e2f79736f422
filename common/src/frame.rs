//! Length-prefixed framing (reference §2.1) and the incremental frame decoder.
//!
//! A frame is a u32 little-endian payload length (excluding itself) followed by the payload.
//! The decoder owns its input buffer: partial input is never an error, a length above the
//! limit is rejected from the 4-byte header alone, before any allocation, and no input can
//! make it panic. No sockets (it reads from any `io::Read`), no clock.
//!
//! The decoder keeps consumed bytes at the front of its buffer behind a start offset and moves
//! the unconsumed tail to the front only when the next read needs the room, so draining many
//! small frames costs no copying.

use std::io;

use byteorder::{ByteOrder, LittleEndian, WriteBytesExt};

/// Bytes of the length prefix in front of every payload.
pub const LEN_PREFIX: usize = 4;

/// Read granularity, and the capacity above which an idle buffer is released.
const CHUNK: usize = 64 * 1024;
/// First read size of a connection. A game client sends a few small frames at a time, and a
/// gate holds thousands of them: 4 KiB each instead of 64 KiB keeps an active client's input
/// buffer small. Reads that fill their room double it, up to [`CHUNK`], for busy links.
const SMALL_CHUNK: usize = 4 * 1024;

/// Appends one frame carrying `payload` to `out`.
///
/// # Panics
/// If `payload` is longer than `u32::MAX` bytes, which no caller can produce legitimately.
pub fn write_frame(out: &mut Vec<u8>, payload: &[u8]) {
    write_frame2(out, payload, &[]);
}

/// Appends one frame whose payload is `head` followed by `tail` (no intermediate copy).
///
/// # Panics
/// If the payload is longer than `u32::MAX` bytes.
pub fn write_frame2(out: &mut Vec<u8>, head: &[u8], tail: &[u8]) {
    let len = head.len() + tail.len();
    // A frame this large cannot be expressed on the wire; writing a truncated length would
    // desynchronise the stream for good, so this is a bug worth stopping for.
    let len32 = u32::try_from(len).expect("frame payload longer than u32::MAX");
    out.reserve(LEN_PREFIX + len);
    out.write_u32::<LittleEndian>(len32)
        .expect("writing into a Vec cannot fail");
    out.extend_from_slice(head);
    out.extend_from_slice(tail);
}

/// Why the input stream cannot be decoded any further. The connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A length header announced a payload above the decoder's limit.
    TooLarge { len: u32, max: u32 },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Incremental decoder for one input stream. Owns its buffer.
///
/// Feed it with [`FrameDecoder::read_from`] (sockets) or [`FrameDecoder::extend`] (tests),
/// then take payloads with [`FrameDecoder::next_frame`] until it returns `Ok(None)`.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Always initialised up to `buf.len()`, so reads go straight into `buf[end..]` without
    /// unsafe code; `buf.len()` is the allocated window.
    buf: Vec<u8>,
    /// First unconsumed byte.
    start: usize,
    /// End of received bytes.
    end: usize,
    max: u32,
    /// Current read size: grows while reads fill their room (a busy link keeps its size).
    chunk: usize,
}

impl FrameDecoder {
    /// A decoder accepting payloads of at most `max_payload` bytes. Allocates nothing yet.
    pub fn new(max_payload: u32) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            end: 0,
            max: max_payload,
            chunk: SMALL_CHUNK,
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let need = self.buffered().saturating_add(data.len());
        if self.start.saturating_add(need) > self.buf.len() {
            self.compact();
            if need > self.buf.len() {
                // Amortised growth here: `extend` callers feed arbitrary pieces.
                self.buf.resize(need, 0);
            }
        }
        self.buf[self.end..self.end + data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// Performs exactly one `read` call into the buffer's spare room and returns its result
    /// (`Ok(0)` is end of input). The buffer grows by 64 KiB chunks, or to exactly what the
    /// pending frame needs when its header is known, never past the frame limit. Fails with
    /// `InvalidData` (without reading) when the pending header is already over the limit.
    pub fn read_from<R: io::Read>(&mut self, r: &mut R) -> io::Result<usize> {
        self.prepare_read()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let room = self.buf.len() - self.end;
        let n = r.read(&mut self.buf[self.end..])?;
        // A misbehaving reader could claim more than it was given; never trust it into a panic.
        let n = n.min(room);
        if n == room {
            self.chunk = (self.chunk * 2).min(CHUNK);
        }
        self.end += n;
        Ok(n)
    }

    /// The payload of the next complete frame, `Ok(None)` if more input is needed, or an error
    /// once a length header above the limit is buffered (nothing is allocated for it).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let Some(len) = self.header() else {
            return Ok(None);
        };
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        let total = (len as usize).saturating_add(LEN_PREFIX);
        if self.buffered() < total {
            return Ok(None);
        }
        let from = self.start + LEN_PREFIX;
        self.start += total;
        if self.start == self.end {
            // Empty again: restart at the front so the next read needs no compaction.
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(&self.buf[from..from + len as usize]))
    }

    /// Bytes received and not yet returned as payloads.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Releases the buffer if it is empty and bigger than the first read size (after a burst,
    /// a busy spell or one large frame), so an idle connection holds little memory. Call after
    /// draining frames. A busy link re-allocates its chunk on the next read, which costs far
    /// less than the read itself.
    pub fn shrink_if_idle(&mut self) {
        if self.buffered() == 0 {
            self.start = 0;
            self.end = 0;
            if self.buf.capacity() > SMALL_CHUNK {
                self.buf = Vec::new();
            }
        }
    }

    /// Allocated bytes (for memory tests and the reactor's debug accessor).
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The pending frame's length header, if all four bytes are buffered.
    fn header(&self) -> Option<u32> {
        let h = self.buf.get(self.start..self.start + LEN_PREFIX)?;
        if self.buffered() < LEN_PREFIX {
            return None;
        }
        Some(LittleEndian::read_u32(h))
    }

    /// Makes sure `buf[end..]` is non-empty and sized for the pending frame.
    fn prepare_read(&mut self) -> Result<(), FrameError> {
        let buffered = self.buffered();
        // Room wanted from `start`: at least one chunk, or exactly the pending frame if larger.
        let want = match self.header() {
            Some(len) if len > self.max => return Err(FrameError::TooLarge { len, max: self.max }),
            Some(len) => {
                let total = (len as usize).saturating_add(LEN_PREFIX);
                if buffered < total {
                    total.max(self.chunk)
                } else {
                    // A complete frame the caller has not drained yet: keep reading anyway.
                    buffered.saturating_add(self.chunk)
                }
            }
            None => self.chunk,
        };
        if self.start.saturating_add(want) > self.buf.len() {
            self.compact();
            if want > self.buf.len() {
                // Exact growth, so a large frame costs its size and nothing more.
                self.buf.reserve_exact(want - self.buf.len());
                self.buf.resize(want, 0);
            }
        }
        Ok(())
    }

    /// Moves the unconsumed bytes to the front of the buffer.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            write_frame(&mut out, p);
        }
        out
    }

    fn drain(d: &mut FrameDecoder, got: &mut Vec<Vec<u8>>) {
        while let Some(p) = d.next_frame().unwrap() {
            got.push(p.to_vec());
        }
    }

    /// A reader handing out its bytes in pieces of at most `step`.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.data.len().min(self.step).min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn sample() -> Vec<Vec<u8>> {
        vec![
            b"hello".to_vec(),
            Vec::new(),
            vec![7u8; 300],
            b"x".to_vec(),
            (0..=255u8).collect(),
        ]
    }

    #[test]
    fn split_at_every_offset_gives_same_payloads() {
        let want = sample();
        let refs: Vec<&[u8]> = want.iter().map(|v| v.as_slice()).collect();
        let wire = frames(&refs);
        for cut in 0..=wire.len() {
            let mut d = FrameDecoder::new(1024);
            let mut got = Vec::new();
            d.extend(&wire[..cut]);
            drain(&mut d, &mut got);
            d.extend(&wire[cut..]);
            drain(&mut d, &mut got);
            assert_eq!(got, want, "cut at {cut}");
            assert_eq!(d.buffered(), 0);
        }
        // One byte at a time, through both entry points.
        let mut d = FrameDecoder::new(1024);
        let mut got = Vec::new();
        for b in &wire {
            d.extend(std::slice::from_ref(b));
            drain(&mut d, &mut got);
        }
        assert_eq!(got, want);
        let mut d = FrameDecoder::new(1024);
        let mut r = Trickle {
            data: &wire,
            step: 1,
        };
        let mut got = Vec::new();
        while d.read_from(&mut r).unwrap() > 0 {
            drain(&mut d, &mut got);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn zero_length_frame() {
        let mut d = FrameDecoder::new(0);
        d.extend(&[0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.next_frame().unwrap(), Some(&[][..]));
        assert_eq!(d.next_frame().unwrap(), Some(&[][..]));
        assert_eq!(d.next_frame().unwrap(), None);
    }

    #[test]
    fn truncated_frame_stays_pending() {
        let wire = frames(&[b"abcdef"]);
        let mut d = FrameDecoder::new(100);
        d.extend(&wire[..wire.len() - 1]);
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.buffered(), wire.len() - 1);
        d.extend(&wire[wire.len() - 1..]);
        assert_eq!(d.next_frame().unwrap(), Some(&b"abcdef"[..]));
    }

    #[test]
    fn oversized_header_rejected_without_allocation() {
        let mut d = FrameDecoder::new(1000);
        d.extend(&u32::MAX.to_le_bytes());
        let err = FrameError::TooLarge {
            len: u32::MAX,
            max: 1000,
        };
        assert_eq!(d.next_frame(), Err(err.clone()));
        assert_eq!(d.next_frame(), Err(err));
        assert!(d.capacity() <= 64, "capacity {}", d.capacity());

        // Through read_from: one chunk at most, and later reads refuse without growing.
        let mut wire = 2_000_000u32.to_le_bytes().to_vec();
        wire.extend(vec![1u8; 200_000]);
        let mut d = FrameDecoder::new(1000);
        let mut r = io::Cursor::new(wire);
        assert!(d.read_from(&mut r).unwrap() > 0);
        assert!(matches!(
            d.next_frame(),
            Err(FrameError::TooLarge {
                len: 2_000_000,
                max: 1000
            })
        ));
        let e = d.read_from(&mut r).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(d.capacity() <= CHUNK, "capacity {}", d.capacity());
    }

    #[test]
    fn large_frame_grows_exactly_then_shrinks() {
        let big = vec![9u8; 1_000_000];
        let mut wire = frames(&[&big, b"tail"]);
        wire.extend_from_slice(&frames(&[b"after"]));
        let mut d = FrameDecoder::new(2_000_000);
        let mut r = Trickle {
            data: &wire,
            step: usize::MAX,
        };
        let mut got = Vec::new();
        while d.read_from(&mut r).unwrap() > 0 {
            // Never more than the header said (plus the prefix).
            assert!(
                d.capacity() <= big.len() + LEN_PREFIX,
                "capacity {}",
                d.capacity()
            );
            drain(&mut d, &mut got);
            d.shrink_if_idle();
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], big);
        assert_eq!(got[2], b"after");
        assert!(d.capacity() <= CHUNK, "capacity {}", d.capacity());
    }

    #[test]
    fn burst_then_shrink_releases_memory() {
        let mut d = FrameDecoder::new(1 << 20);
        let payload = vec![3u8; 1000];
        let mut wire = Vec::new();
        for _ in 0..1000 {
            write_frame(&mut wire, &payload);
        }
        // Undrained burst: the buffer grows to hold it all.
        d.extend(&wire);
        assert!(d.capacity() >= wire.len());
        let mut n = 0;
        while let Some(p) = d.next_frame().unwrap() {
            assert_eq!(p, &payload[..]);
            n += 1;
        }
        assert_eq!(n, 1000);
        d.shrink_if_idle();
        assert_eq!(d.capacity(), 0);
        // A partial frame keeps the buffer.
        d.extend(&wire[..10]);
        d.shrink_if_idle();
        assert_eq!(d.buffered(), 10);
    }

    #[test]
    fn write_frame2_concatenates() {
        let mut a = Vec::new();
        write_frame2(&mut a, b"ab", b"cd");
        assert_eq!(a, [4, 0, 0, 0, b'a', b'b', b'c', b'd']);
        let mut b = Vec::new();
        write_frame(&mut b, b"abcd");
        assert_eq!(a, b);
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // A small deterministic generator: random lengths and contents, random splits.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200 {
            let len = (rnd() % 300) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| if rnd() % 3 == 0 { 0 } else { rnd() as u8 })
                .collect();
            let mut d = FrameDecoder::new((rnd() % 64) as u32);
            let mut r = Trickle {
                data: &data,
                step: 1 + (rnd() % 17) as usize,
            };
            loop {
                match d.read_from(&mut r) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                while let Ok(Some(_)) = d.next_frame() {}
                d.shrink_if_idle();
            }
        }
    }

    #[test]
    fn a_quiet_connection_reads_small_and_a_busy_one_grows() {
        let mut d = FrameDecoder::new(1 << 20);
        let mut small = Vec::new();
        write_frame(&mut small, &[7u8; 30]);
        d.read_from(&mut &small[..]).unwrap();
        assert_eq!(d.next_frame().unwrap(), Some(&[7u8; 30][..]));
        d.shrink_if_idle();
        assert!(d.capacity() <= SMALL_CHUNK, "capacity {}", d.capacity());
        // A stream that keeps filling the buffer doubles the read size up to CHUNK.
        let big = vec![0u8; 1 << 20];
        let mut r = &big[..];
        let mut last = 0;
        for _ in 0..8 {
            last = d.read_from(&mut r).unwrap();
            d.start = d.end; // consume without parsing: only the read sizes matter here
        }
        assert_eq!(last, CHUNK);
    }
}
