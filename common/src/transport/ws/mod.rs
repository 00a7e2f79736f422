//! WebSocket (RFC 6455) as a stream layer: [`WsServer`] for the gate's `/ws` on its
//! `http_addr`, [`WsClient`] for the bots' `-ws`. Both carry a byte stream (the client's
//! length-prefixed frames, or snappy over them) in binary messages whose boundaries mean
//! nothing, as GoWorld does with golang.org/x/net/websocket: every write is one binary frame,
//! and every data payload received goes up as stream bytes.
//!
//! * Handshake: [`parse_upgrade_request`] reads an upgrade from the bytes the gate's HTTP
//!   listener buffered (`Incomplete`, `Done { consumed, .. }`, or a [`Refusal`] whose
//!   [`Refusal::response`] is the 400, 405, 426 or 431 to send before closing);
//!   [`upgrade_response`] is the 101. A [`WsServer`] starts before the request
//!   ([`WsServer::new`], it reads and answers it) or after ([`WsServer::accepted`], once the
//!   caller sent the 101). The client sends [`upgrade_request`] and checks the 101 and its
//!   `Sec-WebSocket-Accept`.
//! * Frames are read incrementally, from any split of the input: a data payload goes up as
//!   its bytes arrive, unmasked in place, so a large frame is never held whole. A server
//!   wants masked frames, a client unmasked ones; reserved bits (no extension is
//!   negotiated), unknown opcodes, fragments out of order, control frames fragmented or over
//!   125 bytes, and 64-bit lengths with the top bit set are protocol errors, answered with a
//!   close frame (1002) and a [`LayerError::Protocol`]. Pings are answered with pongs of the
//!   same payload, pongs ignored, a close answered with a close echoing its status code, then
//!   [`LayerError::Closed`].
//! * Text frames are taken as stream bytes like binary ones, with no UTF-8 check: GoWorld's
//!   own test client dials with `websocket.Dial` and never sets `PayloadType`, so x/net sends
//!   its binary stream in text frames; a browser client may too.
//! * Memory: the handshake head (at most [`MAX_HANDSHAKE`] bytes), writes made before the
//!   handshake ends (at most [`MAX_PENDING`]), one frame header and one control payload. No
//!   clock, no OS randomness: the client's key and masks come from a seed.
//!
//! What golang.org/x/net/websocket does, and this matches: its client (`hybi.go`,
//! `hybiClientHandshake`) sends `GET`, `Host`, `Upgrade: websocket`, `Connection: Upgrade`,
//! `Sec-WebSocket-Key`, `Origin`, `Sec-WebSocket-Version: 13` and no extensions, then wants
//! a 101 whose `Upgrade` and `Connection` are exactly `websocket` and `Upgrade`, the right
//! accept, and no `Sec-WebSocket-Extensions`; it masks every frame and writes each `Write`
//! as one frame with FIN set. Its server (`server.go`, `websocket.Handler`) answers as
//! [`upgrade_response`] does, but refuses a request without `Origin` (403), which this one
//! accepts (its clients, and the bots here, send one anyway); it does not answer a close
//! frame, which this one does, as RFC 6455 asks.

mod digest;
mod frame;
mod handshake;

#[cfg(test)]
mod interop_tests;
#[cfg(test)]
mod tests;

pub use handshake::{
    accept_key, parse_upgrade_request, parse_upgrade_response, upgrade_request, upgrade_response,
    Refusal, Upgrade, UpgradeRequest, GUID, MAX_HANDSHAKE,
};

use frame::{Event, Frames, Role, OP_BINARY};

use super::{LayerError, StreamLayer};
use crate::rng::Rng;

/// The path GoWorld's gate serves WebSocket clients on.
pub const WS_PATH: &str = "/ws";

/// The most stream bytes written before the handshake is over that a layer keeps (to send
/// once it is); past it, [`LayerError::TooLarge`].
pub const MAX_PENDING: usize = 64 * 1024;

/// The close status code of a normal end (section 7.4.1).
pub const CLOSE_NORMAL: u16 = 1000;
/// The close status code of an endpoint going away (a gate shutting down).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// The close status code sent with a protocol error.
pub const CLOSE_PROTOCOL_ERROR: u16 = frame::CLOSE_PROTOCOL_ERROR;

/// Where a connection's WebSocket session is.
#[derive(Debug)]
enum State {
    /// The handshake head received so far (a server's request, a client's answer).
    Handshake(Vec<u8>),
    /// Frames both ways.
    Open,
    /// This end sent a close frame; the peer's answer ends the session.
    CloseSent,
    /// Over: every call returns this.
    Done(LayerError),
}

/// What both ends share once the handshake is over: frames, state, early writes.
#[derive(Debug)]
struct Session {
    frames: Frames,
    state: State,
    /// Stream bytes written before the handshake ended.
    pending: Vec<u8>,
}

impl Session {
    fn new(role: Role, masks: Rng) -> Session {
        Session {
            frames: Frames::new(role, masks),
            state: State::Handshake(Vec::new()),
            pending: Vec::new(),
        }
    }

    fn buffered(&self) -> usize {
        let head = match &self.state {
            State::Handshake(b) => b.len(),
            _ => 0,
        };
        head + self.pending.len() + self.frames.buffered()
    }

    /// Ends the session with `e`, returned now and by every later call.
    fn fail(&mut self, e: LayerError) -> Result<(), LayerError> {
        self.state = State::Done(e.clone());
        self.pending = Vec::new();
        Err(e)
    }

    /// The handshake is over: frames from now on, the early writes first.
    fn open(&mut self, down: &mut Vec<u8>) {
        self.state = State::Open;
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() {
            self.frames.write(down, OP_BINARY, &pending);
        }
    }

    /// Takes the new handshake bytes of `input` (within [`MAX_HANDSHAKE`]); returns the
    /// head so far, or `None` when the new bytes cannot have ended it, and how many bytes
    /// of `input` were taken.
    fn take_head(&mut self, input: &[u8]) -> (Option<&[u8]>, usize) {
        let State::Handshake(head) = &mut self.state else {
            unreachable!("only during the handshake")
        };
        let take = (MAX_HANDSHAKE - head.len()).min(input.len());
        head.extend_from_slice(&input[..take]);
        let ended = input[..take].contains(&b'\n') || head.len() >= MAX_HANDSHAKE;
        (ended.then_some(&head[..]), take)
    }

    /// The handshake head so far, once it ended: the bytes after `consumed`, which are
    /// frames.
    fn rest_of_head(&mut self, consumed: usize) -> Vec<u8> {
        match &mut self.state {
            State::Handshake(head) => head.split_off(consumed),
            _ => Vec::new(),
        }
    }

    /// Frames from below, once open.
    fn read_frames(
        &mut self,
        input: &[u8],
        up: &mut Vec<u8>,
        down: &mut Vec<u8>,
    ) -> Result<(), LayerError> {
        if let State::Done(e) = &self.state {
            return Err(e.clone());
        }
        let open = matches!(self.state, State::Open);
        match self.frames.read(input, up, down) {
            Ok(None) => Ok(()),
            Ok(Some(Event::Close(code))) => {
                if open {
                    self.frames.write_close(down, code);
                }
                self.fail(LayerError::Closed)
            }
            Err(fault) => {
                if open {
                    self.frames.write_close(down, Some(fault.code));
                }
                self.fail(fault.into())
            }
        }
    }

    fn write(&mut self, above: &[u8], down: &mut Vec<u8>) -> Result<(), LayerError> {
        match &self.state {
            State::Handshake(_) => {
                let len = self.pending.len() + above.len();
                if len > MAX_PENDING {
                    return self.fail(LayerError::TooLarge {
                        what: "WebSocket writes before the handshake",
                        len,
                        max: MAX_PENDING,
                    });
                }
                self.pending.extend_from_slice(above);
                Ok(())
            }
            State::Open if above.is_empty() => Ok(()),
            State::Open => {
                self.frames.write(down, OP_BINARY, above);
                Ok(())
            }
            // Nothing may follow a close frame; the connection is about to end.
            State::CloseSent => Ok(()),
            State::Done(e) => Err(e.clone()),
        }
    }

    fn close(&mut self, code: u16, down: &mut Vec<u8>) {
        match self.state {
            State::Open => {
                self.frames.write_close(down, Some(code));
                self.state = State::CloseSent;
            }
            State::Handshake(_) => {
                let _ = self.fail(LayerError::Closed);
            }
            State::CloseSent | State::Done(_) => {}
        }
    }
}

/// The server end: reads (or is handed) the upgrade request, answers it, then turns client
/// frames into stream bytes and stream bytes into server frames.
#[derive(Debug)]
pub struct WsServer {
    session: Session,
    request: Option<UpgradeRequest>,
}

impl Default for WsServer {
    fn default() -> WsServer {
        WsServer::new()
    }
}

impl WsServer {
    /// A server that reads the upgrade request from its first input and answers it: a 101
    /// for a valid request of [`WS_PATH`], else the refusal (404 for another path) and an
    /// error. Bytes after the request in the same input are already frames. A request the
    /// gate's HTTP listener has buffered can be passed in whole as the first input.
    pub fn new() -> WsServer {
        WsServer {
            session: Session::new(Role::Server, Rng::new(0)),
            request: None,
        }
    }

    /// A server whose handshake the caller already did: it parsed `request` with
    /// [`parse_upgrade_request`] and sent [`upgrade_response`]. Its input starts at the
    /// bytes after the request (`consumed` onwards).
    pub fn accepted(request: UpgradeRequest) -> WsServer {
        let mut s = WsServer::new();
        s.session.open(&mut Vec::new());
        s.request = Some(request);
        s
    }

    /// The upgrade request, once read.
    pub fn request(&self) -> Option<&UpgradeRequest> {
        self.request.as_ref()
    }

    /// Whether the handshake is over and the session not closed.
    pub fn is_open(&self) -> bool {
        matches!(self.session.state, State::Open)
    }

    /// Starts a clean shutdown: appends a close frame with status `code` to `down` (nothing
    /// before the handshake is over). Later writes are dropped; the client's answering close
    /// ends the session with [`LayerError::Closed`], or the caller closes the connection
    /// after a grace period.
    pub fn close(&mut self, code: u16, down: &mut Vec<u8>) {
        self.session.close(code, down);
    }

    /// Bytes the layer holds: a partial request, early writes, a partial frame header or
    /// control payload. Bounded by [`MAX_HANDSHAKE`] + [`MAX_PENDING`] + 139.
    pub fn buffered(&self) -> usize {
        self.session.buffered()
    }
}

impl StreamLayer for WsServer {
    fn is_ready(&self) -> bool {
        self.is_open()
    }

    fn read(
        &mut self,
        below: &[u8],
        up: &mut Vec<u8>,
        down: &mut Vec<u8>,
    ) -> Result<(), LayerError> {
        if !matches!(self.session.state, State::Handshake(_)) {
            return self.session.read_frames(below, up, down);
        }
        let (head, take) = self.session.take_head(below);
        let Some(head) = head else {
            return Ok(());
        };
        let refusal = match parse_upgrade_request(head) {
            Ok(Upgrade::Incomplete) => return Ok(()),
            Ok(Upgrade::Done { request, .. }) if request.path != WS_PATH => Refusal {
                status: 404,
                why: format!("no WebSocket at {}", request.path),
            },
            Ok(Upgrade::Done { consumed, request }) => {
                down.extend_from_slice(&upgrade_response(&request));
                self.request = Some(request);
                let rest = self.session.rest_of_head(consumed);
                self.session.open(down);
                self.session.read_frames(&rest, up, down)?;
                return self.session.read_frames(&below[take..], up, down);
            }
            Err(r) => r,
        };
        down.extend_from_slice(&refusal.response());
        self.session.fail(refusal.into())
    }

    fn write(&mut self, above: &[u8], down: &mut Vec<u8>) -> Result<(), LayerError> {
        self.session.write(above, down)
    }
}

/// The client end: sends the upgrade request, checks the answer, then turns stream bytes
/// into masked client frames and server frames into stream bytes.
#[derive(Debug)]
pub struct WsClient {
    session: Session,
    /// The request, until sent.
    request: Option<Vec<u8>>,
    key: String,
}

impl WsClient {
    /// A client of `ws://{host}{path}` (`host` with its port, as the `Host` header wants
    /// it). `origin` is sent as the `Origin` header: GoWorld's gate, through x/net's
    /// `websocket.Handler`, refuses a request without one, and its test client sends
    /// `http://{host}/` (`https://` over TLS). The key and the frame masks come from
    /// `seed` (SplitMix64): give each connection its own, e.g. from
    /// [`Rng::from_entropy`] in a binary.
    pub fn new(host: &str, path: &str, origin: Option<&str>, seed: u64) -> WsClient {
        let mut rng = Rng::new(seed);
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        nonce[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
        let key = digest::base64_encode(&nonce);
        WsClient {
            request: Some(upgrade_request(host, path, &key, origin)),
            session: Session::new(Role::Client, rng),
            key,
        }
    }

    /// Appends the upgrade request to `down`, once (a first [`StreamLayer::read`] or
    /// [`StreamLayer::write`] does it too). Call it when the connection is up.
    pub fn start(&mut self, down: &mut Vec<u8>) {
        if let Some(r) = self.request.take() {
            down.extend_from_slice(&r);
        }
    }

    /// Whether the server accepted the upgrade and the session is not closed.
    pub fn is_open(&self) -> bool {
        matches!(self.session.state, State::Open)
    }

    /// Starts a clean shutdown: appends a close frame with status `code` to `down` (nothing
    /// before the handshake is over, and an unsent request is dropped). Later writes are
    /// dropped; the server's answering close ends the session with [`LayerError::Closed`].
    pub fn close(&mut self, code: u16, down: &mut Vec<u8>) {
        if matches!(self.session.state, State::Handshake(_)) {
            self.request = None;
        }
        self.session.close(code, down);
    }

    /// Bytes the layer holds: a partial answer, early writes, a partial frame header or
    /// control payload (the unsent request is not counted).
    pub fn buffered(&self) -> usize {
        self.session.buffered()
    }
}

impl StreamLayer for WsClient {
    fn is_ready(&self) -> bool {
        self.is_open()
    }

    fn read(
        &mut self,
        below: &[u8],
        up: &mut Vec<u8>,
        down: &mut Vec<u8>,
    ) -> Result<(), LayerError> {
        self.start(down);
        if !matches!(self.session.state, State::Handshake(_)) {
            return self.session.read_frames(below, up, down);
        }
        let (head, take) = self.session.take_head(below);
        let Some(head) = head else {
            return Ok(());
        };
        match parse_upgrade_response(head, &self.key) {
            Ok(None) => Ok(()),
            Ok(Some(consumed)) => {
                let rest = self.session.rest_of_head(consumed);
                self.session.open(down);
                self.session.read_frames(&rest, up, down)?;
                self.session.read_frames(&below[take..], up, down)
            }
            Err(e) => self.session.fail(e),
        }
    }

    fn write(&mut self, above: &[u8], down: &mut Vec<u8>) -> Result<(), LayerError> {
        self.start(down);
        self.session.write(above, down)
    }
}
