//! Client transports: what a client connection's byte stream passes through between the
//! socket and the frame decoder, as GoWorld's gate stacks them (reference §2.2):
//!
//! * TCP: socket, then TLS (`encrypt_connection`), then snappy framing
//!   (`compress_connection`), then the length-prefixed frames.
//! * WebSocket on the gate's `http_addr` at `/ws`: socket, then TLS (`wss://`), then the
//!   WebSocket framing (binary messages carrying the stream, not aligned to frames), then
//!   snappy, then the frames.
//! * KCP on `listen_addr` over UDP: datagrams, then FEC (10 data and 3 parity shards), then
//!   the KCP ARQ giving a byte stream, then TLS, then snappy, then the frames.
//!
//! Every layer here is sans-IO: it turns bytes into bytes (and, for KCP, datagrams and a
//! millisecond clock passed in), never touches a socket or the clock, and keeps its buffers
//! within fixed limits, so a peer sending garbage costs its own connection and nothing else.
//! The reactor owns the sockets and pumps bytes through the layers.

pub mod snappy;
pub mod stack;
pub mod tls;
pub mod ws;

/// Why a layer gave up on its connection. The connection is closed, with this in its one
/// log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerError {
    /// The peer sent something the layer cannot accept; the text says what.
    Protocol(String),
    /// The peer ended the layer's session (a WebSocket close, a TLS close_notify).
    Closed,
    /// The peer's input would grow a buffer past its limit.
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
}

impl std::fmt::Display for LayerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerError::Protocol(s) => f.write_str(s),
            LayerError::Closed => f.write_str("closed by the peer"),
            LayerError::TooLarge { what, len, max } => {
                write!(f, "{what} of {len} bytes (at most {max})")
            }
        }
    }
}

impl std::error::Error for LayerError {}

/// One layer of a byte stream, between "below" (nearer the socket) and "above" (nearer the
/// frames).
pub trait StreamLayer: Send {
    /// Bytes arrived from below. Appends the bytes they carry to `up`, and whatever must be
    /// sent back at once (a handshake answer, a pong) to `down`. Partial input is kept for
    /// the next call; it is never an error.
    fn read(
        &mut self,
        below: &[u8],
        up: &mut Vec<u8>,
        down: &mut Vec<u8>,
    ) -> Result<(), LayerError>;

    /// Bytes from above, to send: appends what carries them to `down`. A layer whose
    /// handshake is not over keeps them (within its limit) and sends them once it is.
    fn write(&mut self, above: &[u8], down: &mut Vec<u8>) -> Result<(), LayerError>;

    /// True once the layer's handshake (if it has one) is over and stream bytes flow. A
    /// connection whose layers are not all ready within the reactor's handshake timeout is
    /// closed.
    fn is_ready(&self) -> bool {
        true
    }
}

pub mod fec;
pub mod kcp;
pub mod rs;
