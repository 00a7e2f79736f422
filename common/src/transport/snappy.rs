//! The snappy framing format (`compress_connection`): a client's whole byte stream, over TLS
//! when that is on, cut into checksummed chunks of at most 64 KiB, each snappy-compressed or
//! stored as it is (google/snappy `framing_format.txt`).
//!
//! A chunk is a type byte, a 3-byte little-endian length, then the body. The stream starts
//! with the stream identifier (0xff, `sNaPpY`). A data chunk's body is the masked CRC-32C of
//! its *uncompressed* bytes, then either a raw snappy block (0x00) or the bytes themselves
//! (0x01). Padding (0xfe) and the reserved skippable types (0x80..=0xfd) are skipped; the
//! reserved unskippable types (0x02..=0x7f) end the stream.
//!
//! Byte-compatible with what GoWorld runs: the gate and its clients wrap the connection with
//! `netconnutil.NewSnappyConn` (xiaonanln/netconnutil `SnappyConn.go`; called from
//! xiaonanln/goworld `components/gate/ClientProxy.go` and `examples/test_client/ClientBot.go`
//! under a 16 KiB write buffer, `engine/consts/consts.go`), which is `snappy.NewWriter` and
//! `snappy.NewReader` of golang/snappy, pinned at v0.0.1 by GoWorld's `go.mod`. What that
//! version does, and what this module does the same:
//!
//! * Writer (`encode.go`, `Writer.write`): `NewWriter` does not buffer, so every `Write` is
//!   framed at once, as [`StreamLayer::write`] is here, and `Flush` does nothing. A write is
//!   cut into pieces of at most 65 536 bytes, one data chunk each. The stream identifier goes
//!   out with the first chunk of the first non-empty write; an empty write sends nothing at
//!   all. A piece goes as a compressed chunk only if its raw block is shorter than
//!   `len - len/8` (at least 12.5% saved); otherwise as an uncompressed chunk.
//! * Raw blocks (`encode_other.go`, `encodeBlock`; `encode_amd64.s` is the same algorithm):
//!   the `snap` crate's encoder is the same algorithm (the hash, the table sizes from 2^8 to
//!   2^14, the skipping heuristic, the 64/60 copy split), and gives the same bytes as
//!   golang/snappy's golden file `testdata/Mark.Twain-Tom.Sawyer.txt.rawsnappy`, which its
//!   `snappy_test.go` (`TestEncodeGoldenInput`) holds both of its encoders to (checked by
//!   hand; the file is not copied here). So for the same writes this layer sends the same
//!   bytes as the Go gate.
//! * Reader (`decode.go`, `Reader.Read`): the first chunk must be the stream identifier;
//!   later identifiers are allowed and checked. Any chunk longer than 76 494 bytes (4 plus
//!   `MaxEncodedLen(65536)`, its buffer) is refused from its header, whatever its type,
//!   skippable ones included; a data chunk shorter than its 4-byte checksum, an
//!   uncompressed chunk carrying more than 65 536 bytes, a block decoding to more than
//!   65 536, a block that does not decode, a checksum that does not match, an identifier
//!   whose length is not 6 or whose body is not `sNaPpY`: each ends the stream.
//!   The constants are in `snappy.go`.
//!
//! Differences on purpose: golang/snappy's reader allocates its 64 KiB and 75 KiB buffers
//! up front and reads skippable chunks into the second; here a chunk that arrives whole is
//! decoded straight from the input, only a chunk split across reads is buffered (one at a
//! time, in a buffer kept for the next), and skippable chunks are dropped as they stream in.
//! The layer never sees the end of the stream: where Go calls a stream cut inside a chunk
//! corrupt, the caller can ask [`SnappyLayer::is_mid_chunk`]. After an error the read half
//! returns that error again.
//!
//! Memory: the read half holds at most one chunk ([`MAX_CHUNK_LEN`] bytes), the write half
//! a compression buffer for its largest piece (at most 76 490 bytes) and the encoder's hash
//! table (32 KiB once a piece over 1 KiB is written). Each is allocated when first needed
//! and reused, so the steady state allocates nothing per chunk. What a read appends for
//! above is at most 65 536 bytes per chunk of input.

use super::{LayerError, StreamLayer};

/// The stream identifier chunk that starts every stream: type 0xff, length 6, `sNaPpY`.
pub const STREAM_IDENTIFIER: [u8; 10] = *b"\xff\x06\x00\x00sNaPpY";

/// Uncompressed bytes one data chunk carries at most (the spec's limit, and the size of the
/// pieces golang/snappy's writer cuts a write into).
pub const MAX_DATA_PER_CHUNK: usize = 65_536;

/// The longest chunk body golang/snappy's reader accepts, of any type: the checksum plus
/// the longest raw block of [`MAX_DATA_PER_CHUNK`] bytes (`32 + n + n/6` = 76 490).
pub const MAX_CHUNK_LEN: usize = CHECKSUM + 76_490;

/// The longest uncompressed chunk body: the checksum and [`MAX_DATA_PER_CHUNK`] bytes.
const MAX_UNCOMPRESSED_CHUNK_LEN: usize = CHECKSUM + MAX_DATA_PER_CHUNK;

/// The capacity of a split chunk's body buffer kept between chunks.
const BODY_KEEP: usize = 4 << 10;

/// Chunk header: type byte and 3-byte little-endian body length.
const HEADER: usize = 4;
/// The masked CRC-32C at the start of a data chunk's body.
const CHECKSUM: usize = 4;

const COMPRESSED: u8 = 0x00;
const UNCOMPRESSED: u8 = 0x01;
const IDENTIFIER: u8 = 0xff;
const IDENTIFIER_BODY: &[u8] = b"sNaPpY";

/// A chunk whose body is kept until it is whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Identifier,
    Compressed,
    Uncompressed,
}

/// Where the read half is in the chunk stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    /// `have` bytes of a chunk header are in `SnappyLayer::header`.
    Header { have: usize },
    /// A body of `len` bytes to take whole; any part received so far is in `body`.
    Body { kind: Body, len: usize },
    /// `left` bytes of a padding or reserved skippable chunk still to drop.
    Skip { left: usize },
}

/// The snappy framing layer of one connection: [`StreamLayer::read`] takes the framed stream
/// from below and gives the bytes it carries; [`StreamLayer::write`] frames bytes from above
/// as golang/snappy's unbuffered writer does. The two halves share nothing.
pub struct SnappyLayer {
    // Read half.
    state: ReadState,
    header: [u8; HEADER],
    /// The stream identifier has been seen (golang/snappy: `readHeader`).
    started: bool,
    /// The body of a chunk that arrived in parts; empty between chunks, capacity kept up to
    /// [`BODY_KEEP`].
    body: Vec<u8>,
    decoder: snap::raw::Decoder,
    /// The error that ended the read half, returned again by later reads.
    failed: Option<LayerError>,
    // Write half.
    wrote_identifier: bool,
}

/// What compressing needs and no connection keeps between writes: snap's hash table (up to
/// 32 KiB) and room for one piece's raw block (up to 76 KiB). One per thread, shared by every
/// connection of its reactor, instead of one per connection.
struct WriteScratch {
    encoder: snap::raw::Encoder,
    /// `max_compress_len` of the largest piece so far.
    compressed: Vec<u8>,
}

thread_local! {
    static WRITE_SCRATCH: std::cell::RefCell<WriteScratch> = std::cell::RefCell::new(WriteScratch {
        encoder: snap::raw::Encoder::new(),
        compressed: Vec::new(),
    });
}

impl SnappyLayer {
    /// A layer for a new connection: nothing read, nothing written.
    pub fn new() -> SnappyLayer {
        SnappyLayer {
            state: ReadState::Header { have: 0 },
            header: [0; HEADER],
            started: false,
            body: Vec::new(),
            decoder: snap::raw::Decoder::new(),
            failed: None,
            wrote_identifier: false,
        }
    }

    /// True if the input read so far ends inside a chunk, so a peer closing now has cut a
    /// chunk short (golang/snappy's reader calls that a corrupt stream).
    pub fn is_mid_chunk(&self) -> bool {
        self.state != ReadState::Header { have: 0 }
    }

    fn read_chunks(&mut self, mut input: &[u8], up: &mut Vec<u8>) -> Result<(), LayerError> {
        while !input.is_empty() {
            match self.state {
                ReadState::Header { have } => {
                    let n = (HEADER - have).min(input.len());
                    self.header[have..have + n].copy_from_slice(&input[..n]);
                    input = &input[n..];
                    self.state = if have + n < HEADER {
                        ReadState::Header { have: have + n }
                    } else {
                        self.begin_chunk()?
                    };
                }
                ReadState::Skip { left } => {
                    let n = left.min(input.len());
                    input = &input[n..];
                    self.state = if n == left {
                        ReadState::Header { have: 0 }
                    } else {
                        ReadState::Skip { left: left - n }
                    };
                }
                ReadState::Body { kind, len } if self.body.is_empty() && input.len() >= len => {
                    // The whole body is here: decode it where it lies.
                    let (chunk, rest) = input.split_at(len);
                    input = rest;
                    self.state = ReadState::Header { have: 0 };
                    self.finish_chunk(kind, chunk, up)?;
                }
                ReadState::Body { kind, len } => {
                    // `len` is within the limits begin_chunk checked; this allocates only
                    // for a chunk longer than any split one before it.
                    self.body.reserve_exact(len - self.body.len());
                    let n = (len - self.body.len()).min(input.len());
                    self.body.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if self.body.len() == len {
                        let body = std::mem::take(&mut self.body);
                        let done = self.finish_chunk(kind, &body, up);
                        // A small buffer is kept for the next split chunk; a large one (up
                        // to 64 KiB) is given back rather than held for the connection's life.
                        if body.capacity() <= BODY_KEEP {
                            self.body = body;
                            self.body.clear();
                        }
                        self.state = ReadState::Header { have: 0 };
                        done?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A chunk header is complete: checks it against golang/snappy's limits, in its order,
    /// and says what to do with the body.
    fn begin_chunk(&mut self) -> Result<ReadState, LayerError> {
        let [kind, l0, l1, l2] = self.header;
        let len = usize::from(l0) | (usize::from(l1) << 8) | (usize::from(l2) << 16);
        if !self.started {
            if kind != IDENTIFIER {
                return Err(LayerError::Protocol(format!(
                    "snappy stream starts with a chunk of type {kind:#04x}, not the stream identifier"
                )));
            }
            self.started = true;
        }
        if len > MAX_CHUNK_LEN {
            return Err(LayerError::TooLarge {
                what: "snappy chunk",
                len,
                max: MAX_CHUNK_LEN,
            });
        }
        let body = match kind {
            COMPRESSED | UNCOMPRESSED if len < CHECKSUM => {
                return Err(LayerError::Protocol(format!(
                    "snappy data chunk of {len} bytes, shorter than its checksum"
                )));
            }
            UNCOMPRESSED if len > MAX_UNCOMPRESSED_CHUNK_LEN => {
                return Err(LayerError::TooLarge {
                    what: "snappy uncompressed chunk",
                    len,
                    max: MAX_UNCOMPRESSED_CHUNK_LEN,
                });
            }
            COMPRESSED => Body::Compressed,
            UNCOMPRESSED => Body::Uncompressed,
            IDENTIFIER if len != IDENTIFIER_BODY.len() => {
                return Err(LayerError::Protocol(format!(
                    "snappy stream identifier of {len} bytes (not 6)"
                )));
            }
            IDENTIFIER => Body::Identifier,
            0x02..=0x7f => {
                return Err(LayerError::Protocol(format!(
                    "snappy chunk of reserved unskippable type {kind:#04x}"
                )));
            }
            // Padding (0xfe) and reserved skippable chunks (0x80..=0xfd).
            _ if len == 0 => return Ok(ReadState::Header { have: 0 }),
            _ => return Ok(ReadState::Skip { left: len }),
        };
        Ok(ReadState::Body { kind: body, len })
    }

    /// A chunk body is whole: checks it and appends the data it carries to `up`. On error
    /// `up` is as it was before this chunk.
    fn finish_chunk(
        &mut self,
        kind: Body,
        chunk: &[u8],
        up: &mut Vec<u8>,
    ) -> Result<(), LayerError> {
        match kind {
            Body::Identifier => {
                if chunk != IDENTIFIER_BODY {
                    return Err(LayerError::Protocol(format!(
                        "snappy stream identifier {:?}, not \"sNaPpY\"",
                        String::from_utf8_lossy(chunk)
                    )));
                }
            }
            Body::Uncompressed => {
                let (sum, data) = split_checksum(chunk);
                check_sum("uncompressed", sum, data)?;
                up.extend_from_slice(data);
            }
            Body::Compressed => {
                let (sum, block) = split_checksum(chunk);
                let n = snap::raw::decompress_len(block).map_err(|e| {
                    LayerError::Protocol(format!("snappy compressed chunk: bad block: {e}"))
                })?;
                if n > MAX_DATA_PER_CHUNK {
                    return Err(LayerError::Protocol(format!(
                        "snappy compressed chunk decoding to {n} bytes (at most {MAX_DATA_PER_CHUNK})"
                    )));
                }
                let start = up.len();
                up.resize(start + n, 0);
                let done = match self.decoder.decompress(block, &mut up[start..]) {
                    Ok(_) => check_sum("compressed", sum, &up[start..]),
                    Err(e) => Err(LayerError::Protocol(format!(
                        "snappy compressed chunk: bad block: {e}"
                    ))),
                };
                if done.is_err() {
                    up.truncate(start);
                }
                done?;
            }
        }
        Ok(())
    }
}

impl Default for SnappyLayer {
    fn default() -> SnappyLayer {
        SnappyLayer::new()
    }
}

impl std::fmt::Debug for SnappyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnappyLayer")
            .field("state", &self.state)
            .field("started", &self.started)
            .field("buffered", &self.body.len())
            .field("failed", &self.failed)
            .field("wrote_identifier", &self.wrote_identifier)
            .finish_non_exhaustive()
    }
}

impl StreamLayer for SnappyLayer {
    /// Takes the framed stream in any split (one byte at a time works) and appends the data
    /// of every complete chunk to `up`. Never sends anything back.
    fn read(
        &mut self,
        below: &[u8],
        up: &mut Vec<u8>,
        _down: &mut Vec<u8>,
    ) -> Result<(), LayerError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let done = self.read_chunks(below, up);
        if let Err(e) = &done {
            self.failed = Some(e.clone());
            self.body = Vec::new();
        }
        done
    }

    /// Frames `above` at once, as golang/snappy's `Writer.Write` from `NewWriter` does:
    /// the stream identifier first if this is the first non-empty write, then one chunk per
    /// 65 536 bytes, compressed if that saves at least 12.5%. Never fails.
    fn write(&mut self, above: &[u8], down: &mut Vec<u8>) -> Result<(), LayerError> {
        WRITE_SCRATCH.with_borrow_mut(
            |WriteScratch {
                 encoder,
                 compressed,
             }| {
                for piece in above.chunks(MAX_DATA_PER_CHUNK) {
                    if !self.wrote_identifier {
                        self.wrote_identifier = true;
                        down.extend_from_slice(&STREAM_IDENTIFIER);
                    }
                    let sum = masked_crc32c(piece);
                    let room = snap::raw::max_compress_len(piece.len());
                    if compressed.len() < room {
                        compressed.resize(room, 0);
                    }
                    let n = encoder.compress(piece, &mut compressed[..room]).expect(
                        "a piece of at most 64 KiB into max_compress_len bytes always compresses",
                    );
                    let (kind, data) = if n >= piece.len() - piece.len() / 8 {
                        (UNCOMPRESSED, piece)
                    } else {
                        (COMPRESSED, &compressed[..n])
                    };
                    let len = CHECKSUM + data.len();
                    down.reserve(HEADER + len);
                    down.extend_from_slice(&[kind, len as u8, (len >> 8) as u8, (len >> 16) as u8]);
                    down.extend_from_slice(&sum.to_le_bytes());
                    down.extend_from_slice(data);
                }
            },
        );
        Ok(())
    }
}

/// A data chunk body's checksum and the rest; `chunk` is at least [`CHECKSUM`] long.
fn split_checksum(chunk: &[u8]) -> (u32, &[u8]) {
    let (sum, rest) = chunk.split_at(CHECKSUM);
    (u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]), rest)
}

fn check_sum(what: &str, sum: u32, data: &[u8]) -> Result<(), LayerError> {
    let got = masked_crc32c(data);
    if got == sum {
        Ok(())
    } else {
        Err(LayerError::Protocol(format!(
            "snappy {what} chunk: checksum {sum:#010x}, but its {} bytes give {got:#010x}",
            data.len()
        )))
    }
}

/// CRC-32C (Castagnoli), reflected polynomial.
const CASTAGNOLI: u32 = 0x82f6_3b78;

/// Slicing-by-8 tables: `CRC_TABLES[0]` is the byte-at-a-time table, `CRC_TABLES[k][b]` the
/// CRC of byte `b` followed by `k` zero bytes.
static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ CASTAGNOLI
            } else {
                c >> 1
            };
            bit += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// The CRC-32C of `data`, eight bytes per step.
fn crc32c(data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut crc = !0u32;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let lo = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) ^ crc;
        let hi = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in words.remainder() {
        crc = t[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The checksum a data chunk carries: the CRC-32C rotated right by 15 bits plus a constant
/// (framing_format.txt section 3).
fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use std::io::{Read, Write};

    /// A chunk of type `kind` with `body` as it is.
    fn chunk(kind: u8, body: &[u8]) -> Vec<u8> {
        let len = body.len();
        let mut out = vec![kind, len as u8, (len >> 8) as u8, (len >> 16) as u8];
        out.extend_from_slice(body);
        out
    }

    /// A data chunk of type `kind` whose checksum is that of `data`, carrying `payload`.
    fn data_chunk(kind: u8, data: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut body = masked_crc32c(data).to_le_bytes().to_vec();
        body.extend_from_slice(payload);
        chunk(kind, &body)
    }

    /// Just a chunk header announcing `len` bytes.
    fn header(kind: u8, len: usize) -> Vec<u8> {
        vec![kind, len as u8, (len >> 8) as u8, (len >> 16) as u8]
    }

    fn read_all(layer: &mut SnappyLayer, input: &[u8]) -> Result<Vec<u8>, LayerError> {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        layer.read(input, &mut up, &mut down)?;
        assert!(down.is_empty(), "the snappy layer never answers");
        Ok(up)
    }

    /// Feeds `input` in pieces of 1..=`max` bytes.
    fn read_split(input: &[u8], rng: &mut Rng, max: usize) -> Result<Vec<u8>, LayerError> {
        let mut layer = SnappyLayer::new();
        let (mut up, mut down) = (Vec::new(), Vec::new());
        let mut rest = input;
        while !rest.is_empty() {
            let n = (1 + rng.below(max as u64) as usize).min(rest.len());
            layer.read(&rest[..n], &mut up, &mut down)?;
            rest = &rest[n..];
        }
        assert!(!layer.is_mid_chunk());
        assert!(layer.body.capacity() <= MAX_CHUNK_LEN);
        Ok(up)
    }

    /// Frames `data` with our layer in writes of 1..=`max` bytes.
    fn write_split(data: &[u8], rng: &mut Rng, max: usize) -> Vec<u8> {
        let mut layer = SnappyLayer::new();
        let mut down = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let n = (1 + rng.below(max as u64) as usize).min(rest.len());
            layer.write(&rest[..n], &mut down).unwrap();
            rest = &rest[n..];
        }
        down
    }

    fn snap_encode(writes: &[&[u8]]) -> Vec<u8> {
        let mut enc = snap::write::FrameEncoder::new(Vec::new());
        for w in writes {
            enc.write_all(w).unwrap();
        }
        enc.into_inner().unwrap()
    }

    fn snap_decode(framed: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        snap::read::FrameDecoder::new(framed).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Runs of random bytes, repeated bytes, a repeated short pattern and words, so both
    /// chunk types turn up.
    fn mixed(rng: &mut Rng, len: usize) -> Vec<u8> {
        const WORDS: [&str; 6] = ["entity ", "space ", "avatar ", "position ", "sync ", "rpc "];
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let run = 1 + rng.below(20_000) as usize;
            match rng.below(4) {
                0 => out.extend((0..run).map(|_| rng.next_u64() as u8)),
                1 => out.extend(std::iter::repeat_n(rng.next_u64() as u8, run)),
                2 => {
                    let pat: Vec<u8> = (0..1 + rng.below(12))
                        .map(|_| rng.next_u64() as u8)
                        .collect();
                    out.extend(pat.iter().cycle().take(run));
                }
                _ => {
                    for _ in 0..run / 6 {
                        out.extend_from_slice(WORDS[rng.below(6) as usize].as_bytes());
                    }
                }
            }
        }
        out.truncate(len);
        out
    }

    fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
        (0..len).map(|_| rng.next_u64() as u8).collect()
    }

    /// The chunks of a framed stream: (type, uncompressed length), identifiers included.
    fn chunks_of(mut framed: &[u8]) -> Vec<(u8, usize)> {
        let mut out = Vec::new();
        while !framed.is_empty() {
            let len = usize::from(framed[1])
                | (usize::from(framed[2]) << 8)
                | (usize::from(framed[3]) << 16);
            let body = &framed[HEADER..HEADER + len];
            let data_len = match framed[0] {
                COMPRESSED => snap::raw::decompress_len(&body[CHECKSUM..]).unwrap(),
                UNCOMPRESSED => len - CHECKSUM,
                _ => len,
            };
            out.push((framed[0], data_len));
            framed = &framed[HEADER + len..];
        }
        out
    }

    const SIZES: [usize; 8] = [0, 1, 9, 1000, 65_535, 65_536, 65_537, 3_000_000];

    /// Bit-at-a-time CRC-32C, to hold the tables to.
    fn crc32c_bitwise(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ CASTAGNOLI
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn crc32c_matches_published_vectors() {
        // The check value of the CRC-32C catalogue entry, and RFC 3720 B.4's vectors.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46dd_794e);
        assert_eq!(crc32c(b""), 0);
        // The mask: rotate right by 15, add 0xa282ead8 (worked by hand from 0xe3069283).
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn crc32c_tables_match_bitwise_crc_at_every_alignment() {
        let mut rng = Rng::new(7);
        let data = random_bytes(&mut rng, 300);
        for start in 0..9 {
            for len in 0..data.len() - start {
                let d = &data[start..start + len];
                assert_eq!(crc32c(d), crc32c_bitwise(d), "start {start} len {len}");
            }
        }
    }

    /// The identifier, then "123456789" as an uncompressed chunk (CRC from the published
    /// vector, masked by hand), then 32 'a's as a hand-made raw block: varint 32, a 1-byte
    /// literal "a", a 2-byte-offset copy of 31 bytes at offset 1.
    fn golden_stream() -> (Vec<u8>, Vec<u8>) {
        let mut s = vec![0xff, 0x06, 0x00, 0x00, b's', b'N', b'a', b'P', b'p', b'Y'];
        s.extend_from_slice(&[0x01, 0x0d, 0x00, 0x00, 0xe5, 0xb0, 0x8a, 0xc7]);
        s.extend_from_slice(b"123456789");
        let a32 = [b'a'; 32];
        s.extend_from_slice(&[0x00, 0x0a, 0x00, 0x00]);
        s.extend_from_slice(&masked_crc32c(&a32).to_le_bytes());
        s.extend_from_slice(&[0x20, 0x00, b'a', (30 << 2) | 2, 0x01, 0x00]);
        let mut data = b"123456789".to_vec();
        data.extend_from_slice(&a32);
        (s, data)
    }

    #[test]
    fn reads_hand_made_golden_stream_in_any_split() {
        let (stream, data) = golden_stream();
        assert_eq!(read_all(&mut SnappyLayer::new(), &stream).unwrap(), data);
        let mut layer = SnappyLayer::new();
        let mut up = Vec::new();
        for (i, b) in stream.iter().enumerate() {
            layer.read(&[*b], &mut up, &mut Vec::new()).unwrap();
            // Data comes up only when its chunk is whole.
            let expect = if i + 1 == stream.len() {
                data.len()
            } else if i + 1 >= 10 + 4 + 13 {
                9
            } else {
                0
            };
            assert_eq!(up.len(), expect, "after byte {i}");
        }
        assert_eq!(up, data);
        // A whole stream read at once goes straight from the input: nothing buffered.
        let mut layer = SnappyLayer::new();
        read_all(&mut layer, &stream).unwrap();
        assert_eq!(layer.body.capacity(), 0);
    }

    #[test]
    fn writes_the_hand_made_golden_stream() {
        let (stream, _) = golden_stream();
        let mut layer = SnappyLayer::new();
        let mut down = Vec::new();
        layer.write(b"123456789", &mut down).unwrap();
        layer.write(&[b'a'; 32], &mut down).unwrap();
        assert_eq!(down, stream);
    }

    #[test]
    fn writer_gives_snap_frame_encoders_bytes_for_one_write() {
        // snap's FrameEncoder cuts one write into the same 64 KiB pieces and applies the same
        // 12.5% rule, and its raw encoder is golang/snappy's algorithm: one write must come
        // out byte for byte the same (several writes differ, as it buffers).
        let mut rng = Rng::new(11);
        for len in [1, 16, 17, 100, 4096, 65_536, 65_537, 200_000, 1_000_000] {
            let data = mixed(&mut rng, len);
            let mut down = Vec::new();
            SnappyLayer::new().write(&data, &mut down).unwrap();
            assert_eq!(down, snap_encode(&[&data]), "len {len}");
        }
    }

    #[test]
    fn ours_to_snap_frame_decoder() {
        let mut rng = Rng::new(1);
        for len in SIZES {
            let data = mixed(&mut rng, len);
            for max in [1, 300, 70_000, usize::MAX / 2] {
                if max == 1 && len > 70_000 {
                    continue;
                }
                let framed = write_split(&data, &mut rng, max);
                assert_eq!(
                    snap_decode(&framed).unwrap(),
                    data,
                    "len {len} writes of 1..={max}"
                );
            }
        }
    }

    #[test]
    fn snap_frame_encoder_to_ours() {
        let mut rng = Rng::new(2);
        for len in SIZES {
            let data = mixed(&mut rng, len);
            // snap's writer, fed in random writes.
            let mut writes = Vec::new();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = (1 + rng.below(100_000) as usize).min(rest.len());
                writes.push(&rest[..n]);
                rest = &rest[n..];
            }
            let framed = snap_encode(&writes);
            for max in [1, 7, 5000, 100_000, usize::MAX / 2] {
                assert_eq!(
                    read_split(&framed, &mut rng, max).unwrap(),
                    data,
                    "len {len} reads of 1..={max}"
                );
            }
        }
    }

    #[test]
    fn ours_to_ours_in_random_splits() {
        let mut rng = Rng::new(3);
        let data = mixed(&mut rng, 500_000);
        let framed = write_split(&data, &mut rng, 20_000);
        assert_eq!(read_split(&framed, &mut rng, 3000).unwrap(), data);
    }

    #[test]
    fn first_chunk_must_be_the_stream_identifier() {
        let uncompressed = data_chunk(UNCOMPRESSED, b"hi", b"hi");
        for first in [uncompressed, chunk(0xfe, b""), chunk(0x80, b"x")] {
            let err = read_all(&mut SnappyLayer::new(), &first).unwrap_err();
            assert!(
                matches!(&err, LayerError::Protocol(s) if s.contains("not the stream identifier")),
                "{err}"
            );
        }
        // Refused once its header is whole, whatever its length.
        assert!(read_all(&mut SnappyLayer::new(), &[0x01]).is_ok());
        assert!(read_all(&mut SnappyLayer::new(), &[0x01, 0, 0, 0]).is_err());
        // Empty input is no stream yet, not an error.
        assert_eq!(read_all(&mut SnappyLayer::new(), b"").unwrap(), b"");
    }

    #[test]
    fn bad_stream_identifiers_are_refused_and_repeats_accepted() {
        let mut s = STREAM_IDENTIFIER.to_vec();
        s.extend_from_slice(&STREAM_IDENTIFIER);
        s.extend_from_slice(&data_chunk(UNCOMPRESSED, b"ok", b"ok"));
        s.extend_from_slice(&STREAM_IDENTIFIER);
        assert_eq!(read_all(&mut SnappyLayer::new(), &s).unwrap(), b"ok");

        let err = read_all(&mut SnappyLayer::new(), &chunk(0xff, b"sNaPpZ")).unwrap_err();
        assert!(
            matches!(&err, LayerError::Protocol(s) if s.contains("sNaPpZ")),
            "{err}"
        );
        let err = read_all(&mut SnappyLayer::new(), &chunk(0xff, b"sNaPpYY")).unwrap_err();
        assert!(
            matches!(&err, LayerError::Protocol(s) if s.contains("7 bytes")),
            "{err}"
        );
        let mut later = STREAM_IDENTIFIER.to_vec();
        later.extend_from_slice(&chunk(0xff, b"SNAPPY"));
        assert!(read_all(&mut SnappyLayer::new(), &later).is_err());
    }

    #[test]
    fn bad_checksums_are_refused_and_the_error_sticks() {
        let mut rng = Rng::new(4);
        let text = b"position position position position position position".repeat(4);
        let mut block = vec![0; snap::raw::max_compress_len(text.len())];
        let n = snap::raw::Encoder::new()
            .compress(&text, &mut block)
            .unwrap();
        block.truncate(n);
        let noise = random_bytes(&mut rng, 100);
        for (kind, data, payload) in [(COMPRESSED, &text, &block), (UNCOMPRESSED, &noise, &noise)] {
            let mut good = STREAM_IDENTIFIER.to_vec();
            good.extend_from_slice(&data_chunk(kind, data, payload));
            assert_eq!(&read_all(&mut SnappyLayer::new(), &good).unwrap(), data);
            let mut bad = good.clone();
            bad[STREAM_IDENTIFIER.len() + HEADER] ^= 1;
            let mut layer = SnappyLayer::new();
            let (mut up, mut down) = (b"before".to_vec(), Vec::new());
            let err = layer.read(&bad, &mut up, &mut down).unwrap_err();
            assert!(
                matches!(&err, LayerError::Protocol(s) if s.contains("checksum")),
                "{err}"
            );
            assert_eq!(up, b"before", "nothing of a bad chunk comes up");
            // Later input is not looked at.
            assert_eq!(read_all(&mut layer, &good).unwrap_err(), err);
        }
    }

    #[test]
    fn reserved_unskippable_chunks_are_refused() {
        for kind in [0x02, 0x40, 0x7f] {
            let mut s = STREAM_IDENTIFIER.to_vec();
            s.extend_from_slice(&header(kind, 10));
            let err = read_all(&mut SnappyLayer::new(), &s).unwrap_err();
            assert!(
                matches!(&err, LayerError::Protocol(s) if s.contains("unskippable")),
                "{kind:#x}: {err}"
            );
        }
    }

    #[test]
    fn oversized_chunks_are_refused_from_their_header() {
        let cases: [(u8, usize, usize); 6] = [
            (COMPRESSED, MAX_CHUNK_LEN + 1, MAX_CHUNK_LEN),
            (
                UNCOMPRESSED,
                MAX_UNCOMPRESSED_CHUNK_LEN + 1,
                MAX_UNCOMPRESSED_CHUNK_LEN,
            ),
            (UNCOMPRESSED, MAX_CHUNK_LEN + 1, MAX_CHUNK_LEN),
            (0xfe, MAX_CHUNK_LEN + 1, MAX_CHUNK_LEN),
            (0x80, 0xff_ffff, MAX_CHUNK_LEN),
            (IDENTIFIER, 0xff_ffff, MAX_CHUNK_LEN),
        ];
        for (kind, len, max) in cases {
            let mut layer = SnappyLayer::new();
            read_all(&mut layer, &STREAM_IDENTIFIER).unwrap();
            let err = read_all(&mut layer, &header(kind, len)).unwrap_err();
            match err {
                LayerError::TooLarge { len: l, max: m, .. } => {
                    assert_eq!((l, m), (len, max), "{kind:#x}")
                }
                other => panic!("{kind:#x}: {other}"),
            }
            assert_eq!(layer.body.capacity(), 0, "{kind:#x}: nothing buffered");
        }
        // The limits themselves are accepted: golang/snappy v0.0.1 takes a compressed chunk
        // of 76 494 bytes and an uncompressed one carrying 65 536.
        for (kind, len) in [
            (COMPRESSED, MAX_CHUNK_LEN),
            (UNCOMPRESSED, MAX_UNCOMPRESSED_CHUNK_LEN),
        ] {
            let mut layer = SnappyLayer::new();
            let mut s = STREAM_IDENTIFIER.to_vec();
            s.extend_from_slice(&header(kind, len));
            s.push(0);
            read_all(&mut layer, &s).unwrap();
            assert!(layer.is_mid_chunk());
            assert!(layer.body.capacity() <= len);
        }
        // Data chunks shorter than their checksum.
        for kind in [COMPRESSED, UNCOMPRESSED] {
            let mut s = STREAM_IDENTIFIER.to_vec();
            s.extend_from_slice(&chunk(kind, b"abc"));
            let err = read_all(&mut SnappyLayer::new(), &s).unwrap_err();
            assert!(
                matches!(&err, LayerError::Protocol(s) if s.contains("shorter than its checksum")),
                "{err}"
            );
        }
    }

    #[test]
    fn largest_uncompressed_chunk_read_in_pieces() {
        let mut rng = Rng::new(5);
        let data = random_bytes(&mut rng, MAX_DATA_PER_CHUNK);
        let mut s = STREAM_IDENTIFIER.to_vec();
        s.extend_from_slice(&data_chunk(UNCOMPRESSED, &data, &data));
        assert_eq!(read_split(&s, &mut rng, 4000).unwrap(), data);
    }

    #[test]
    fn corrupt_raw_blocks_are_refused() {
        let mut rng = Rng::new(6);
        let data = mixed(&mut rng, 50_000);
        let block = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let good = data_chunk(COMPRESSED, &data, &block);
        let mut s = STREAM_IDENTIFIER.to_vec();
        s.extend_from_slice(&good);
        assert_eq!(read_all(&mut SnappyLayer::new(), &s).unwrap(), data);

        let bad_block = |payload: &[u8], what: &str| {
            let mut s = STREAM_IDENTIFIER.to_vec();
            s.extend_from_slice(&data_chunk(COMPRESSED, &data, payload));
            for max in [1, 1000, usize::MAX / 2] {
                let err = read_split(&s, &mut Rng::new(0), max).unwrap_err();
                assert!(
                    matches!(&err, LayerError::Protocol(s) if s.contains(what)),
                    "{err}"
                );
            }
        };
        // Truncated block: its header promises more than its ops give.
        bad_block(&block[..block.len() - 10], "bad block");
        bad_block(&block[..3], "bad block");
        // An empty block, and one whose length varint never ends.
        bad_block(b"", "bad block");
        bad_block(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff], "bad block");
        // A copy before any data.
        bad_block(&[0x08, 0x11, 0x01, 0x00], "bad block");
        // A block decoding to more than a chunk may carry, refused from its header.
        let big = vec![7u8; MAX_DATA_PER_CHUNK + 1];
        let big_block = snap::raw::Encoder::new().compress_vec(&big).unwrap();
        let mut s = STREAM_IDENTIFIER.to_vec();
        s.extend_from_slice(&data_chunk(COMPRESSED, &big, &big_block));
        let err = read_all(&mut SnappyLayer::new(), &s).unwrap_err();
        assert!(
            matches!(&err, LayerError::Protocol(s) if s.contains("65537")),
            "{err}"
        );
    }

    #[test]
    fn skippable_chunks_are_dropped_as_they_stream_in() {
        let mut rng = Rng::new(8);
        let mut s = STREAM_IDENTIFIER.to_vec();
        let mut data = Vec::new();
        for kind in [0xfe, 0x80, 0xfd] {
            let d = mixed(&mut rng, 3000);
            s.extend_from_slice(&data_chunk(UNCOMPRESSED, &d, &d));
            data.extend_from_slice(&d);
            s.extend_from_slice(&chunk(kind, &vec![kind; MAX_CHUNK_LEN]));
            s.extend_from_slice(&chunk(kind, b""));
        }
        let mut layer = SnappyLayer::new();
        let mut up = Vec::new();
        for piece in s.chunks(1000) {
            layer.read(piece, &mut up, &mut Vec::new()).unwrap();
            // The data chunks arrive split, so they pass through the buffer; the skippable
            // ones, 25 times as long, never do.
            assert!(
                layer.body.capacity() <= 4 + 3000,
                "{}",
                layer.body.capacity()
            );
        }
        assert_eq!(up, data);
        assert!(!layer.is_mid_chunk());
    }

    #[test]
    fn writer_chunks_as_golang_snappy_does() {
        let mut rng = Rng::new(9);
        let mut layer = SnappyLayer::new();
        let mut down = Vec::new();
        // An empty write sends nothing, not even the stream identifier.
        layer.write(b"", &mut down).unwrap();
        assert!(down.is_empty());
        // The identifier comes with the first data, and only then.
        let noise = random_bytes(&mut rng, 200_000);
        layer.write(&noise[..65_537], &mut down).unwrap();
        assert_eq!(down[..10], STREAM_IDENTIFIER);
        assert_eq!(
            chunks_of(&down),
            [(IDENTIFIER, 6), (UNCOMPRESSED, 65_536), (UNCOMPRESSED, 1)]
        );
        down.clear();
        layer.write(&noise, &mut down).unwrap();
        assert_eq!(
            chunks_of(&down),
            [
                (UNCOMPRESSED, 65_536),
                (UNCOMPRESSED, 65_536),
                (UNCOMPRESSED, 65_536),
                (UNCOMPRESSED, 3392)
            ]
        );
        // Compressible data, cut the same way.
        down.clear();
        layer.write(&vec![b'x'; 140_000], &mut down).unwrap();
        assert_eq!(
            chunks_of(&down),
            [
                (COMPRESSED, 65_536),
                (COMPRESSED, 65_536),
                (COMPRESSED, 8928)
            ]
        );
        // Short writes never compress: the block is the bytes plus at least 2.
        down.clear();
        layer.write(b"aaaaaaaaaaaaaaa", &mut down).unwrap();
        assert_eq!(chunks_of(&down), [(UNCOMPRESSED, 15)]);
        // The compression buffer is the thread's, sized by the largest piece and kept.
        assert_eq!(
            WRITE_SCRATCH.with_borrow(|s| s.compressed.len()),
            snap::raw::max_compress_len(MAX_DATA_PER_CHUNK)
        );
    }

    #[test]
    fn writer_compresses_only_when_it_saves_an_eighth() {
        // Random bytes then zeros: vary the lengths until the raw block is exactly
        // len - len/8 long (golang/snappy sends that uncompressed) and one byte shorter
        // (compressed).
        let mut rng = Rng::new(10);
        let noise = random_bytes(&mut rng, 600);
        let (mut at, mut below) = (0, 0);
        for m in 100..600 {
            for z in 1..80 {
                let mut data = noise[..m].to_vec();
                data.resize(m + z, 0);
                let n = data.len();
                let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap().len();
                let mut down = Vec::new();
                SnappyLayer::new().write(&data, &mut down).unwrap();
                let kind = chunks_of(&down)[1].0;
                if raw == n - n / 8 {
                    assert_eq!(kind, UNCOMPRESSED, "m {m} z {z}");
                    at += 1;
                } else if raw == n - n / 8 - 1 {
                    assert_eq!(kind, COMPRESSED, "m {m} z {z}");
                    below += 1;
                }
                assert_eq!(kind == COMPRESSED, raw < n - n / 8);
            }
        }
        assert!(
            at > 0 && below > 0,
            "boundary cases found: {at} at, {below} below"
        );
    }

    #[test]
    fn partial_input_is_kept_not_an_error() {
        let (stream, data) = golden_stream();
        let mut layer = SnappyLayer::new();
        let cut = stream.len() - 3;
        let up = read_all(&mut layer, &stream[..cut]).unwrap();
        assert_eq!(up, b"123456789");
        assert!(layer.is_mid_chunk());
        assert_eq!(layer.body.len(), 4 + 6 - 3);
        let up = read_all(&mut layer, &stream[cut..]).unwrap();
        assert_eq!(up, &data[9..]);
        assert!(!layer.is_mid_chunk());
        assert_eq!(layer.body.len(), 0);
    }
}
