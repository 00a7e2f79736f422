//! The layers against an independent implementation: tungstenite's client with our
//! [`WsServer`], tungstenite's server with our [`WsClient`], over an in-memory pipe. Each
//! side's input arrives in random pieces (seeded), from single bytes to tens of KiB.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use super::*;
use crate::rng::Rng;

/// tungstenite's end of an in-memory connection: `inbox` is what our layer sent, `outbox`
/// what tungstenite wrote. Reads return random amounts, and `WouldBlock` when empty.
#[derive(Debug)]
struct Pipe {
    inbox: VecDeque<u8>,
    outbox: Vec<u8>,
    rng: Rng,
}

impl Pipe {
    fn new(seed: u64) -> Pipe {
        Pipe {
            inbox: VecDeque::new(),
            outbox: Vec::new(),
            rng: Rng::new(seed),
        }
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbox.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let max = 1 + self.rng.below(9000) as usize;
        let n = buf.len().min(self.inbox.len()).min(max);
        for (d, s) in buf[..n].iter_mut().zip(self.inbox.drain(..n)) {
            *d = s;
        }
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbox.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Message sizes around each length encoding's edges, and a large one.
const SIZES: [usize; 8] = [0, 1, 125, 126, 65535, 65536, 1 << 20, 3];

fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

/// A connection: one of our layers and tungstenite's other end.
struct Link<L: StreamLayer> {
    ours: L,
    theirs: WebSocket<Pipe>,
    rng: Rng,
}

impl<L: StreamLayer> Link<L> {
    /// Feeds everything tungstenite wrote to our layer in random pieces; what our layer sends
    /// back goes to tungstenite's inbox. Returns what went up, the bytes sent back and the
    /// first error.
    fn deliver(&mut self) -> (Vec<u8>, Vec<u8>, Result<(), LayerError>) {
        let bytes = std::mem::take(&mut self.theirs.get_mut().outbox);
        let (up, down, res) = pump(&mut self.ours, &bytes, &mut self.rng);
        self.theirs.get_mut().inbox.extend(&down);
        (up, down, res)
    }

    /// Our layer's writes, cut into random pieces, to tungstenite's inbox.
    fn write_ours(&mut self, data: &[u8]) {
        let mut rest = data;
        let mut down = Vec::new();
        while !rest.is_empty() {
            let n = SIZES[self.rng.below(SIZES.len() as u64) as usize]
                .max(1)
                .min(rest.len());
            self.ours.write(&rest[..n], &mut down).unwrap();
            rest = &rest[n..];
        }
        self.theirs.get_mut().inbox.extend(&down);
    }

    /// Every message tungstenite can read now (sending its automatic answers).
    fn their_messages(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            match self.theirs.read() {
                Ok(m) => out.push(m),
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return out
                }
                // A server's connection ends once the close handshake is over.
                Err(tungstenite::Error::ConnectionClosed) => return out,
                Err(e) => panic!("tungstenite: {e}"),
            }
        }
    }

    /// Binary messages both ways, of every size in [`SIZES`], in random order and pieces.
    fn exchange(&mut self) {
        let mut sizes = SIZES.to_vec();
        for i in (1..sizes.len()).rev() {
            sizes.swap(i, self.rng.below(i as u64 + 1) as usize);
        }
        let mut sent = Vec::new();
        for &n in &sizes {
            let m = random_bytes(&mut self.rng, n);
            sent.extend_from_slice(&m);
            self.theirs.send(Message::Binary(m.into())).unwrap();
        }
        let (up, down, res) = self.deliver();
        res.unwrap();
        assert!(
            up == sent && down.is_empty(),
            "{} of {}",
            up.len(),
            sent.len()
        );

        let stream = random_bytes(&mut self.rng, SIZES.iter().sum());
        self.write_ours(&stream);
        let mut got = Vec::new();
        for m in self.their_messages() {
            match m {
                Message::Binary(b) => got.extend_from_slice(&b),
                other => panic!("{other:?}"),
            }
        }
        assert!(got == stream, "{} of {}", got.len(), stream.len());
    }

    /// tungstenite pings, our layer pongs.
    fn ping(&mut self) {
        self.theirs
            .send(Message::Ping(b"are you there".to_vec().into()))
            .unwrap();
        let (up, down, res) = self.deliver();
        res.unwrap();
        assert!(up.is_empty() && !down.is_empty());
        assert_eq!(
            self.their_messages(),
            vec![Message::Pong(b"are you there".to_vec().into())]
        );
    }

    /// tungstenite closes; our layer answers with the same code and is closed.
    fn closed_by_them(&mut self) {
        let bye = CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        };
        self.theirs.close(Some(bye)).unwrap();
        let (_, down, res) = self.deliver();
        assert_eq!(res, Err(LayerError::Closed));
        assert!(!down.is_empty());
        assert_eq!(
            self.their_messages(),
            vec![Message::Close(Some(CloseFrame {
                code: CloseCode::Away,
                reason: "".into(),
            }))]
        );
    }
}

/// Feeds `bytes` to `layer` in random pieces.
fn pump(
    layer: &mut impl StreamLayer,
    bytes: &[u8],
    rng: &mut Rng,
) -> (Vec<u8>, Vec<u8>, Result<(), LayerError>) {
    let (mut up, mut down) = (Vec::new(), Vec::new());
    let mut rest = bytes;
    while !rest.is_empty() {
        let max = [1, 3, 200, 70_000][rng.below(4) as usize];
        let n = (1 + rng.below(max) as usize).min(rest.len());
        if let Err(e) = layer.read(&rest[..n], &mut up, &mut down) {
            return (up, down, Err(e));
        }
        rest = &rest[n..];
    }
    (up, down, Ok(()))
}

/// Our server, and tungstenite's client past the handshake.
fn with_tungstenite_client(seed: u64) -> Link<WsServer> {
    let mut rng = Rng::new(seed);
    let mut mid = match tungstenite::client("ws://gate.test:15012/ws", Pipe::new(seed + 1)) {
        Err(HandshakeError::Interrupted(mid)) => mid,
        Err(HandshakeError::Failure(e)) => panic!("{e}"),
        Ok(_) => panic!("no answer was sent yet"),
    };
    let request = std::mem::take(&mut mid.get_mut().get_mut().outbox);
    let mut server = WsServer::new();
    let (up, down, res) = pump(&mut server, &request, &mut rng);
    res.unwrap();
    assert!(server.is_open() && up.is_empty());
    assert_eq!(server.request().unwrap().host, "gate.test:15012");
    mid.get_mut().get_mut().inbox.extend(&down);
    let (theirs, response) = match mid.handshake() {
        Ok(r) => r,
        Err(HandshakeError::Failure(e)) => panic!("{e}"),
        Err(HandshakeError::Interrupted(_)) => panic!("the whole answer was there"),
    };
    assert_eq!(response.status(), 101);
    Link {
        ours: server,
        theirs,
        rng,
    }
}

/// Our client, and tungstenite's server past the handshake. The request tungstenite saw is
/// checked: path, origin.
fn with_tungstenite_server(seed: u64) -> Link<WsClient> {
    let rng = Rng::new(seed);
    let mut client = WsClient::new(
        "gate.test:15012",
        "/ws",
        Some("http://gate.test:15012/"),
        seed,
    );
    let mut pipe = Pipe::new(seed + 1);
    let mut request = Vec::new();
    client.start(&mut request);
    pipe.inbox.extend(&request);
    let mut seen = None;
    let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        seen = Some((
            req.uri().path().to_string(),
            req.headers()["origin"].to_str().unwrap().to_string(),
        ));
        Ok(resp)
    };
    let theirs = match tungstenite::accept_hdr(pipe, check) {
        Ok(ws) => ws,
        Err(HandshakeError::Failure(e)) => panic!("{e}"),
        Err(HandshakeError::Interrupted(_)) => panic!("the whole request was there"),
    };
    assert_eq!(
        seen,
        Some(("/ws".to_string(), "http://gate.test:15012/".to_string()))
    );
    let mut link = Link {
        ours: client,
        theirs,
        rng,
    };
    let (up, down, res) = link.deliver();
    res.unwrap();
    assert!(link.ours.is_open() && up.is_empty() && down.is_empty());
    link
}

#[test]
fn our_server_with_tungstenite_client() {
    for seed in [1, 2, 3] {
        let mut link = with_tungstenite_client(seed * 1000);
        link.exchange();
        link.ping();
        link.exchange();
        link.closed_by_them();
    }
}

#[test]
fn our_server_closes_a_tungstenite_client() {
    let mut link = with_tungstenite_client(77);
    link.exchange();
    let mut down = Vec::new();
    link.ours.close(CLOSE_GOING_AWAY, &mut down);
    link.theirs.get_mut().inbox.extend(&down);
    assert_eq!(
        link.their_messages(),
        vec![Message::Close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "".into(),
        }))]
    );
    link.theirs.flush().unwrap();
    let (up, down, res) = link.deliver();
    assert_eq!((up.len(), down.len(), res), (0, 0, Err(LayerError::Closed)));
}

#[test]
fn our_client_with_tungstenite_server() {
    for seed in [4, 5, 6] {
        let mut link = with_tungstenite_server(seed * 1000);
        link.exchange();
        link.ping();
        link.exchange();
        link.closed_by_them();
    }
}

#[test]
fn our_client_closes_to_a_tungstenite_server() {
    let mut link = with_tungstenite_server(88);
    link.exchange();
    let mut down = Vec::new();
    link.ours.close(CLOSE_NORMAL, &mut down);
    link.theirs.get_mut().inbox.extend(&down);
    assert_eq!(
        link.their_messages(),
        vec![Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))]
    );
    // tungstenite's server sent its answer and ended the connection.
    assert!(!link.theirs.can_write());
    let (up, down, res) = link.deliver();
    assert_eq!((up.len(), down.len(), res), (0, 0, Err(LayerError::Closed)));
}
