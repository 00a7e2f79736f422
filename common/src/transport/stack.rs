//! A connection's layers stacked: the socket's bytes go up through them to the frames, the
//! frames' bytes go down through them to the socket.
//!
//! A layer may answer while reading (a TLS handshake record, a WebSocket pong): what it
//! answers goes down through the layers *below* it only, so a pong of a WebSocket over TLS
//! is encrypted. [`StackSpec`] says which layers a listener's or a dial's connections get;
//! the reactor builds one [`Stack`] per connection from it.

use std::sync::Arc;

use super::snappy::SnappyLayer;
use super::tls::Tls;
use super::ws::{WsClient, WsServer};
use super::{LayerError, StreamLayer};

/// The layers of the connections of one listener or dial, bottom (socket) first. Cloned per
/// connection.
#[derive(Clone, Default)]
pub struct StackSpec {
    /// TLS, server end (a gate with `encrypt_connection=1`).
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
    /// TLS, client end (a bot), checking the server's name.
    pub tls_client: Option<(Arc<rustls::ClientConfig>, String)>,
    /// WebSocket, client end (a bot with `-ws`): the `Host` header and the `Origin`.
    pub ws_client: Option<(String, Option<String>)>,
    /// WebSocket, server end, for a connection whose upgrade request was already answered.
    pub ws_accepted: Option<super::ws::UpgradeRequest>,
    /// The snappy framing format (`compress_connection=1`), above the others.
    pub snappy: bool,
}

impl StackSpec {
    /// True when the connections get no layer (plain TCP).
    pub fn is_plain(&self) -> bool {
        self.tls_server.is_none()
            && self.tls_client.is_none()
            && self.ws_client.is_none()
            && self.ws_accepted.is_none()
            && !self.snappy
    }

    /// The layers for one new connection; `seed` feeds what a layer randomises (a WebSocket
    /// client's key and masks). `None` for plain TCP.
    pub fn build(&self, seed: u64) -> Result<Option<Stack>, LayerError> {
        if self.is_plain() {
            return Ok(None);
        }
        let mut layers: Vec<Box<dyn StreamLayer>> = Vec::new();
        if let Some(cfg) = &self.tls_server {
            layers.push(Box::new(Tls::server(cfg.clone())?));
        }
        if let Some((cfg, name)) = &self.tls_client {
            layers.push(Box::new(Tls::client(cfg.clone(), name)?));
        }
        if let Some(req) = &self.ws_accepted {
            layers.push(Box::new(WsServer::accepted(req.clone())));
        }
        if let Some((host, origin)) = &self.ws_client {
            layers.push(Box::new(WsClient::new(
                host,
                super::ws::WS_PATH,
                origin.as_deref(),
                seed,
            )));
        }
        if self.snappy {
            layers.push(Box::new(SnappyLayer::new()));
        }
        Ok(Some(Stack::new(layers)))
    }

    /// The layers' names, bottom first ("tls+ws+snappy"), for logs; "tcp" when plain.
    pub fn describe(&self) -> String {
        let mut names = Vec::new();
        if self.tls_server.is_some() || self.tls_client.is_some() {
            names.push("tls");
        }
        if self.ws_client.is_some() || self.ws_accepted.is_some() {
            names.push("ws");
        }
        if self.snappy {
            names.push("snappy");
        }
        if names.is_empty() {
            "tcp".into()
        } else {
            names.join("+")
        }
    }
}

/// The layers of one connection, bottom first.
pub struct Stack {
    layers: Vec<Box<dyn StreamLayer>>,
    /// Scratch buffers, kept for their allocations.
    a: Vec<u8>,
    b: Vec<u8>,
    answer: Vec<u8>,
}

/// Scratch buffers that grew past this are freed after use.
const SCRATCH_KEEP: usize = 64 << 10;

impl Stack {
    /// A stack of `layers`, bottom (socket) first.
    pub fn new(layers: Vec<Box<dyn StreamLayer>>) -> Stack {
        Stack {
            layers,
            a: Vec::new(),
            b: Vec::new(),
            answer: Vec::new(),
        }
    }

    /// Bytes from the socket: appends the stream they carry to `plain`, and what the layers
    /// answer, ready for the socket, to `wire` (also when a layer fails: a refusal or an
    /// alert is worth sending before the connection ends).
    pub fn read(
        &mut self,
        from_socket: &[u8],
        plain: &mut Vec<u8>,
        wire: &mut Vec<u8>,
    ) -> Result<(), LayerError> {
        self.read_from(0, from_socket, plain, wire)
    }

    /// [`Stack::read`] of bytes that the layers below `layer` have already passed up (the
    /// rest of a request read before the stack was built).
    pub fn read_from(
        &mut self,
        layer: usize,
        bytes: &[u8],
        plain: &mut Vec<u8>,
        wire: &mut Vec<u8>,
    ) -> Result<(), LayerError> {
        let from_socket = bytes;
        let mut input = std::mem::take(&mut self.a);
        let mut up = std::mem::take(&mut self.b);
        let mut answer = std::mem::take(&mut self.answer);
        input.clear();
        input.extend_from_slice(from_socket);
        let mut result = Ok(());
        for i in layer..self.layers.len() {
            up.clear();
            answer.clear();
            let res = self.layers[i].read(&input, &mut up, &mut answer);
            if !answer.is_empty() {
                if let Err(e) = send_down(&mut self.layers[..i], &answer, wire) {
                    result = Err(e);
                    break;
                }
            }
            if let Err(e) = res {
                result = Err(e);
                break;
            }
            std::mem::swap(&mut input, &mut up);
            if input.is_empty() {
                break;
            }
        }
        if result.is_ok() {
            plain.extend_from_slice(&input);
        }
        self.a = input;
        self.b = up;
        self.answer = answer;
        self.trim();
        result
    }

    /// Stream bytes to send: appends what carries them, ready for the socket, to `wire`.
    pub fn write(&mut self, plain: &[u8], wire: &mut Vec<u8>) -> Result<(), LayerError> {
        let res = send_down(&mut self.layers, plain, wire);
        self.trim();
        res
    }

    /// True once every layer's handshake is over.
    pub fn is_ready(&self) -> bool {
        self.layers.iter().all(|l| l.is_ready())
    }

    /// Sends `data` through the layers below `layer` only (an answer `layer` would have
    /// made itself, such as the upgrade response of a WebSocket built after its request).
    pub fn write_below(
        &mut self,
        layer: usize,
        data: &[u8],
        wire: &mut Vec<u8>,
    ) -> Result<(), LayerError> {
        let below = layer.min(self.layers.len());
        send_down(&mut self.layers[..below], data, wire)
    }

    fn trim(&mut self) {
        for buf in [&mut self.a, &mut self.b, &mut self.answer] {
            buf.clear();
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
        }
    }
}

/// Sends `data` down through `layers` (the ones below the sender, bottom first), appending
/// the result to `wire`.
fn send_down(
    layers: &mut [Box<dyn StreamLayer>],
    data: &[u8],
    wire: &mut Vec<u8>,
) -> Result<(), LayerError> {
    let Some((last, below)) = layers.split_last_mut() else {
        wire.extend_from_slice(data);
        return Ok(());
    };
    if below.is_empty() {
        return last.write(data, wire);
    }
    let mut next = Vec::new();
    last.write(data, &mut next)?;
    send_down(below, &next, wire)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    const CERT: &[u8] = include_bytes!("../../../conf/rsa.crt");
    const KEY: &[u8] = include_bytes!("../../../conf/rsa.key");

    /// Client and server stacks joined by two byte queues, moved in random splits.
    struct Pair {
        client: Stack,
        server: Stack,
        c2s: Vec<u8>,
        s2c: Vec<u8>,
        at_server: Vec<u8>,
        at_client: Vec<u8>,
        rng: Rng,
    }

    impl Pair {
        fn new(client: &StackSpec, server: &StackSpec, seed: u64) -> Pair {
            Pair {
                client: client.build(seed).unwrap().unwrap(),
                server: server.build(seed + 1).unwrap().unwrap(),
                c2s: Vec::new(),
                s2c: Vec::new(),
                at_server: Vec::new(),
                at_client: Vec::new(),
                rng: Rng::new(seed),
            }
        }

        fn take(rng: &mut Rng, q: &mut Vec<u8>) -> Vec<u8> {
            let n = (rng.below(3000) as usize + 1).min(q.len());
            q.drain(..n).collect()
        }

        fn pump(&mut self) {
            for _ in 0..1_000_000 {
                if self.c2s.is_empty() && self.s2c.is_empty() {
                    return;
                }
                let chunk = Self::take(&mut self.rng, &mut self.c2s);
                self.server
                    .read(&chunk, &mut self.at_server, &mut self.s2c)
                    .unwrap();
                let chunk = Self::take(&mut self.rng, &mut self.s2c);
                self.client
                    .read(&chunk, &mut self.at_client, &mut self.c2s)
                    .unwrap();
            }
            panic!("never quiet");
        }
    }

    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut r = Rng::new(seed);
        // Half compressible, half not.
        (0..len)
            .map(|i| {
                if (i / 4096) % 2 == 0 {
                    (i % 17) as u8
                } else {
                    r.below(256) as u8
                }
            })
            .collect()
    }

    fn tls_specs() -> (StackSpec, StackSpec) {
        let server = StackSpec {
            tls_server: Some(crate::transport::tls::server_config(CERT, KEY).unwrap()),
            ..StackSpec::default()
        };
        let client = StackSpec {
            tls_client: Some((
                crate::transport::tls::client_config(CERT).unwrap(),
                "127.0.0.1".into(),
            )),
            ..StackSpec::default()
        };
        (client, server)
    }

    #[test]
    fn tls_and_snappy_carry_the_stream_both_ways() {
        let (mut client, mut server) = tls_specs();
        client.snappy = true;
        server.snappy = true;
        assert_eq!(server.describe(), "tls+snappy");
        let mut p = Pair::new(&client, &server, 7);
        let up = data(500_000, 1);
        let down = data(300_000, 2);
        // The server speaks first, before the handshake is over (a gate's first messages).
        p.server.write(&down[..1000], &mut p.s2c).unwrap();
        p.client.write(&up[..10], &mut p.c2s).unwrap();
        p.pump();
        p.client.write(&up[10..], &mut p.c2s).unwrap();
        p.server.write(&down[1000..], &mut p.s2c).unwrap();
        p.pump();
        assert_eq!(p.at_server, up);
        assert_eq!(p.at_client, down);
    }

    #[test]
    fn a_websocket_client_over_tls_reaches_a_server_that_answered_its_upgrade() {
        // The server side's upgrade is parsed by the gate's HTTP listener, which then builds
        // the stack with the request; here the client's request is parsed the same way.
        let (mut client, server_tls) = tls_specs();
        client.ws_client = Some(("127.0.0.1:1".into(), Some("http://127.0.0.1:1/".into())));
        client.snappy = true;
        let mut c = client.build(3).unwrap().unwrap();
        let mut s_tls = server_tls.build(4).unwrap().unwrap();
        let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
        let mut request = Vec::new();
        // Handshake TLS and collect the upgrade request in clear at the server.
        c.write(b"hello", &mut c2s).unwrap();
        for _ in 0..20 {
            let x = std::mem::take(&mut c2s);
            s_tls.read(&x, &mut request, &mut s2c).unwrap();
            let y = std::mem::take(&mut s2c);
            c.read(&y, &mut Vec::new(), &mut c2s).unwrap();
        }
        let super::super::ws::Upgrade::Done {
            consumed,
            request: req,
        } = super::super::ws::parse_upgrade_request(&request).unwrap()
        else {
            panic!("no whole request: {:?}", String::from_utf8_lossy(&request))
        };
        assert_eq!(req.path, "/ws");
        // The "gate" answers 101 through TLS, then stacks WebSocket and snappy on top.
        s_tls
            .write(&super::super::ws::upgrade_response(&req), &mut s2c)
            .unwrap();
        let mut ws_snappy = StackSpec {
            ws_accepted: Some(req),
            snappy: true,
            ..StackSpec::default()
        }
        .build(5)
        .unwrap()
        .unwrap();
        let mut at_server = Vec::new();
        let mut dummy = Vec::new();
        ws_snappy
            .read(&request[consumed..], &mut at_server, &mut dummy)
            .unwrap();
        let mut at_client = Vec::new();
        for _ in 0..20 {
            let y = std::mem::take(&mut s2c);
            c.read(&y, &mut at_client, &mut c2s).unwrap();
            let x = std::mem::take(&mut c2s);
            let mut clear = Vec::new();
            s_tls.read(&x, &mut clear, &mut s2c).unwrap();
            let mut answer = Vec::new();
            ws_snappy.read(&clear, &mut at_server, &mut answer).unwrap();
            s_tls.write(&answer, &mut s2c).unwrap();
        }
        assert_eq!(at_server, b"hello");
        let mut framed = Vec::new();
        ws_snappy.write(b"welcome", &mut framed).unwrap();
        s_tls.write(&framed, &mut s2c).unwrap();
        let y = std::mem::take(&mut s2c);
        c.read(&y, &mut at_client, &mut c2s).unwrap();
        assert_eq!(at_client, b"welcome");
    }

    #[test]
    fn a_layer_error_names_the_layer_problem_and_its_answer_goes_out() {
        let (_, server) = tls_specs();
        let mut s = server.build(1).unwrap().unwrap();
        let (mut plain, mut wire) = (Vec::new(), Vec::new());
        let err = s
            .read(b"GET / HTTP/1.1\r\n\r\n", &mut plain, &mut wire)
            .unwrap_err();
        assert!(
            matches!(err, LayerError::Protocol(ref m) if m.starts_with("tls")),
            "{err:?}"
        );
        assert!(!wire.is_empty(), "a TLS alert goes back");
        assert!(plain.is_empty());
        let snappy = StackSpec {
            snappy: true,
            ..StackSpec::default()
        };
        let mut s = snappy.build(1).unwrap().unwrap();
        assert!(s
            .read(b"\x00\x05\x00\x00hello", &mut plain, &mut wire)
            .is_err());
    }

    #[test]
    fn plain_specs_build_no_stack() {
        assert!(StackSpec::default().build(1).unwrap().is_none());
        assert_eq!(StackSpec::default().describe(), "tcp");
    }
}
