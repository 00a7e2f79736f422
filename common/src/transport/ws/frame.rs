//! WebSocket frames (RFC 6455 section 5): the incremental reader and the writer, for either
//! end. The reader keeps at most one frame header (14 bytes) and one control payload (125
//! bytes); data payloads go up as they arrive, unmasked in place in the caller's buffer.

use super::super::LayerError;
use crate::rng::Rng;

/// Opcodes (section 5.2).
pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The largest control frame payload (section 5.5).
pub const MAX_CONTROL: usize = 125;
/// The longest frame header: 2 bytes, a 64-bit length, a masking key.
const MAX_HEADER: usize = 14;

/// Close status codes this module sends (section 7.4.1).
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// A close frame's reason was not UTF-8.
pub const CLOSE_BAD_DATA: u16 = 1007;

/// Which end of the connection this is: a server reads masked frames and writes unmasked
/// ones, a client the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// XORs `buf` with `key`, starting at byte `phase` of the key (0..4). Eight bytes at a time:
/// the unmasking of every data byte a gate receives goes through here.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) {
    let k = [
        key[phase & 3],
        key[(phase + 1) & 3],
        key[(phase + 2) & 3],
        key[(phase + 3) & 3],
    ];
    let k8 = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ k8;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

/// Appends one frame, FIN set, to `out`: masked with `mask` when given.
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.reserve(MAX_HEADER + payload.len());
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.len()
        }
        None => out.len(),
    };
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

/// The header length that the first bytes `h` (at least 2) announce.
fn header_len(h: &[u8]) -> usize {
    let ext = match h[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if h[1] & 0x80 != 0 { 4 } else { 0 }
}

/// The frame whose payload is being read.
#[derive(Debug)]
struct Current {
    opcode: u8,
    fin: bool,
    remaining: u64,
    key: Option<[u8; 4]>,
    /// Payload bytes read so far, mod 4: where in the key the next byte is.
    phase: usize,
}

/// What a frame that has ended asks of the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer sent a close frame with this status code (none for an empty close).
    Close(Option<u16>),
}

/// A failure of the peer's framing: what to say, and the close code to send it off with.
#[derive(Debug)]
pub struct Fault {
    pub code: u16,
    pub why: String,
}

impl Fault {
    fn protocol(why: impl Into<String>) -> Fault {
        Fault {
            code: CLOSE_PROTOCOL_ERROR,
            why: why.into(),
        }
    }
}

impl From<Fault> for LayerError {
    fn from(f: Fault) -> LayerError {
        LayerError::Protocol(format!("WebSocket: {}", f.why))
    }
}

/// The incremental frame reader of one connection, and the masks of the frames it writes.
#[derive(Debug)]
pub struct Frames {
    role: Role,
    header: [u8; MAX_HEADER],
    header_have: usize,
    current: Option<Current>,
    /// A text or binary message has started and its final fragment has not come yet.
    in_message: bool,
    control: [u8; MAX_CONTROL],
    control_have: usize,
    /// Masks for the client's frames.
    masks: Rng,
}

impl Frames {
    /// A reader for `role`; `masks` gives the masks of the frames it writes (a client's).
    pub fn new(role: Role, masks: Rng) -> Frames {
        Frames {
            role,
            header: [0; MAX_HEADER],
            header_have: 0,
            current: None,
            in_message: false,
            control: [0; MAX_CONTROL],
            control_have: 0,
            masks,
        }
    }

    /// Bytes held: a partial header and a partial control payload.
    pub fn buffered(&self) -> usize {
        self.header_have + self.control_have
    }

    /// Appends a frame of this end's direction (masked for a client).
    pub fn write(&mut self, out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
        let mask = match self.role {
            Role::Server => None,
            Role::Client => Some((self.masks.next_u64() as u32).to_ne_bytes()),
        };
        write_frame(out, opcode, payload, mask);
    }

    /// Appends a close frame with `code` (an empty one for none).
    pub fn write_close(&mut self, out: &mut Vec<u8>, code: Option<u16>) {
        let payload = code.map(u16::to_be_bytes);
        self.write(out, OP_CLOSE, payload.as_ref().map_or(&[][..], |p| &p[..]));
    }

    /// Reads frames from `input`: data payloads to `up`, pongs to `down`. Stops at the first
    /// close frame (the bytes after it are dropped) or fault.
    pub fn read(
        &mut self,
        mut input: &[u8],
        up: &mut Vec<u8>,
        down: &mut Vec<u8>,
    ) -> Result<Option<Event>, Fault> {
        loop {
            if self.current.is_none() {
                if !self.read_header(&mut input)? {
                    return Ok(None);
                }
            } else if input.is_empty() {
                return Ok(None);
            } else {
                self.read_payload(&mut input, up);
            }
            if self.current.as_ref().is_some_and(|c| c.remaining == 0) {
                if let Some(ev) = self.end_frame(down)? {
                    return Ok(Some(ev));
                }
            }
        }
    }

    /// Takes header bytes from `input`; true once a whole header is read and checked.
    fn read_header(&mut self, input: &mut &[u8]) -> Result<bool, Fault> {
        loop {
            let need = if self.header_have < 2 {
                2
            } else {
                header_len(&self.header)
            };
            if self.header_have == need {
                break;
            }
            if input.is_empty() {
                return Ok(false);
            }
            let take = (need - self.header_have).min(input.len());
            self.header[self.header_have..self.header_have + take].copy_from_slice(&input[..take]);
            self.header_have += take;
            *input = &input[take..];
            if self.header_have == 2 {
                // Everything the first two bytes can say is checked before reading on.
                self.check_start()?;
            }
        }
        let h = &self.header;
        let len = match h[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            127 => {
                let n = u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]);
                if n >> 63 != 0 {
                    return Err(Fault::protocol(
                        "frame length with the most significant bit set",
                    ));
                }
                n
            }
            n => u64::from(n),
        };
        let key = (h[1] & 0x80 != 0).then(|| {
            let k = self.header_have - 4;
            [h[k], h[k + 1], h[k + 2], h[k + 3]]
        });
        self.current = Some(Current {
            opcode: h[0] & 0x0f,
            fin: h[0] & 0x80 != 0,
            remaining: len,
            key,
            phase: 0,
        });
        self.header_have = 0;
        Ok(true)
    }

    /// Checks a frame's first two bytes: reserved bits, opcode, fragment order, control
    /// frame rules, masking direction.
    fn check_start(&mut self) -> Result<(), Fault> {
        let (b0, b1) = (self.header[0], self.header[1]);
        if b0 & 0x70 != 0 {
            return Err(Fault::protocol(format!(
                "reserved bits {:#x} set with no extension negotiated",
                b0 & 0x70
            )));
        }
        let opcode = b0 & 0x0f;
        let fin = b0 & 0x80 != 0;
        match opcode {
            OP_CONTINUATION if !self.in_message => {
                return Err(Fault::protocol("continuation frame outside a message"))
            }
            OP_TEXT | OP_BINARY if self.in_message => {
                return Err(Fault::protocol(
                    "new message before the last one's final fragment",
                ))
            }
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    return Err(Fault::protocol("fragmented control frame"));
                }
                if usize::from(b1 & 0x7f) > MAX_CONTROL {
                    return Err(Fault::protocol(
                        "control frame payload longer than 125 bytes",
                    ));
                }
            }
            op => return Err(Fault::protocol(format!("unknown opcode {op:#x}"))),
        }
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => Err(Fault::protocol("unmasked frame from a client")),
            (Role::Client, true) => Err(Fault::protocol("masked frame from a server")),
            _ => Ok(()),
        }
    }

    /// Takes payload bytes of the current frame from `input`.
    fn read_payload(&mut self, input: &mut &[u8], up: &mut Vec<u8>) {
        let cur = self.current.as_mut().expect("a frame is being read");
        let n = usize::try_from(cur.remaining)
            .unwrap_or(usize::MAX)
            .min(input.len());
        let (bytes, rest) = input.split_at(n);
        *input = rest;
        let dst = if cur.opcode & 0x8 == 0 {
            // Data (text, binary, continuation): straight up, unmasked where it lands.
            let start = up.len();
            up.extend_from_slice(bytes);
            &mut up[start..]
        } else {
            let start = self.control_have;
            self.control[start..start + n].copy_from_slice(bytes);
            self.control_have += n;
            &mut self.control[start..start + n]
        };
        if let Some(key) = cur.key {
            apply_mask(dst, key, cur.phase);
        }
        cur.phase = (cur.phase + n) & 3;
        cur.remaining -= n as u64;
    }

    /// A frame's payload is complete: answers pings, reports closes.
    fn end_frame(&mut self, down: &mut Vec<u8>) -> Result<Option<Event>, Fault> {
        let cur = self.current.take().expect("a frame is being read");
        let payload_len = self.control_have;
        self.control_have = 0;
        match cur.opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {
                self.in_message = !cur.fin;
                Ok(None)
            }
            OP_PING => {
                let payload = self.control;
                self.write(down, OP_PONG, &payload[..payload_len]);
                Ok(None)
            }
            OP_PONG => Ok(None),
            _ => close_code(&self.control[..payload_len]).map(|c| Some(Event::Close(c))),
        }
    }
}

/// The status code of a close frame's payload (section 5.5.1), checked: two bytes of code
/// then a UTF-8 reason, or nothing at all.
fn close_code(payload: &[u8]) -> Result<Option<u16>, Fault> {
    match payload {
        [] => Ok(None),
        [_] => Err(Fault::protocol("close frame with a one-byte payload")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            // Codes a peer may send (section 7.4): defined ones in use, registered and private.
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(Fault::protocol(format!("close status code {code}")));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(Fault {
                    code: CLOSE_BAD_DATA,
                    why: "close reason is not UTF-8".into(),
                });
            }
            Ok(Some(code))
        }
    }
}
