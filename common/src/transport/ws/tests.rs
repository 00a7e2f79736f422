//! Tests of the WebSocket layer on its own: SHA-1 and base64 against their RFCs' vectors,
//! RFC 6455's examples, the requests golang.org/x/net/websocket sends, every split of the
//! input, and every kind of bad input (with the layer's buffers checked to stay small).

use super::digest::{base64_decode, base64_encode, sha1};
use super::frame::{write_frame, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use super::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A client frame (masked) with FIN as given.
fn cframe(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, opcode, payload, Some([0x37, 0xfa, 0x21, 0x3d]));
    if !fin {
        out[0] &= 0x7f;
    }
    out
}

/// A server frame (unmasked) with FIN as given.
fn sframe(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, opcode, payload, None);
    if !fin {
        out[0] &= 0x7f;
    }
    out
}

/// An unmasked close frame with `code`.
fn close_frame(code: u16) -> Vec<u8> {
    sframe(true, OP_CLOSE, &code.to_be_bytes())
}

/// Reads one frame of `bytes` (masked or not): FIN, opcode, unmasked payload, length used.
fn parse_frame(bytes: &[u8]) -> (bool, u8, Vec<u8>, usize) {
    let (mut at, len) = match bytes[1] & 0x7f {
        126 => (4, u64::from(u16::from_be_bytes([bytes[2], bytes[3]]))),
        127 => (10, u64::from_be_bytes(bytes[2..10].try_into().unwrap())),
        n => (2, u64::from(n)),
    };
    let key = (bytes[1] & 0x80 != 0).then(|| {
        at += 4;
        [bytes[at - 4], bytes[at - 3], bytes[at - 2], bytes[at - 1]]
    });
    let end = at + len as usize;
    let mut payload = bytes[at..end].to_vec();
    if let Some(k) = key {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= k[i % 4];
        }
    }
    (bytes[0] & 0x80 != 0, bytes[0] & 0x0f, payload, end)
}

/// A request as golang.org/x/net/websocket's client writes it (`hybiClientHandshake`), for
/// GoWorld's test client dialling `ws://127.0.0.1:15012/ws` from origin
/// `http://127.0.0.1:15012/`.
const XNET_REQUEST: &str = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:15012\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://127.0.0.1:15012/\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The accept key of RFC 6455 sections 1.3 and 4.2.2 for the sample key above.
const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A server past its handshake (the x/net request), and its 101.
fn open_server() -> WsServer {
    let mut s = WsServer::new();
    let (mut up, mut down) = (Vec::new(), Vec::new());
    s.read(XNET_REQUEST.as_bytes(), &mut up, &mut down).unwrap();
    assert!(s.is_open() && up.is_empty());
    s
}

/// A client past its handshake.
fn open_client() -> WsClient {
    let mut c = WsClient::new("127.0.0.1:15012", "/ws", None, 1);
    let (mut up, mut down) = (Vec::new(), Vec::new());
    c.start(&mut down);
    let req = match parse_upgrade_request(&down).unwrap() {
        Upgrade::Done { request, .. } => request,
        other => panic!("{other:?}"),
    };
    c.read(&upgrade_response(&req), &mut up, &mut down).unwrap();
    assert!(c.is_open());
    c
}

/// Feeds `input` to `layer` in pieces starting at each of `cuts`; returns what went up and
/// down and the first error.
fn feed(
    layer: &mut dyn StreamLayer,
    input: &[u8],
    cuts: &[usize],
) -> (Vec<u8>, Vec<u8>, Result<(), LayerError>) {
    let (mut up, mut down) = (Vec::new(), Vec::new());
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < input.len()).collect();
    bounds.push(0);
    bounds.push(input.len());
    bounds.sort_unstable();
    bounds.dedup();
    for w in bounds.windows(2) {
        if let Err(e) = layer.read(&input[w[0]..w[1]], &mut up, &mut down) {
            return (up, down, Err(e));
        }
    }
    (up, down, Ok(()))
}

/// Every byte its own read.
fn bytewise(len: usize) -> Vec<usize> {
    (0..len).collect()
}

// ---- SHA-1 and base64 ----

#[test]
fn sha1_matches_rfc3174_vectors() {
    assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(
        hex(&sha1(b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    assert_eq!(
        hex(&sha1(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    );
    assert_eq!(
        hex(&sha1(&vec![b'a'; 1_000_000])),
        "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
    );
    let ten = b"0123456701234567012345670123456701234567012345670123456701234567".repeat(10);
    assert_eq!(hex(&sha1(&ten)), "dea356a2cddd90c7a7ecedc5ebb563934f460452");
    // Lengths around the padding boundary (one block or two), from sha1sum.
    for (n, digest) in [
        (55, "cef734ba81a024479e09eb5a75b6ddae62e6abf1"),
        (56, "901305367c259952f4e7af8323f480d59f81335b"),
        (63, "0ddc4e0cccd9a12850deb5abb0853a4425559fec"),
        (64, "bb2fa3ee7afb9f54c6dfb5d021f14b1ffe40c163"),
        (119, "4300320394f7ee239bcdce7d3b8bcee173a0cd5c"),
        (120, "ceb2821639c4b6dcb10bce0e522ca2e608ce056d"),
    ] {
        assert_eq!(hex(&sha1(&vec![b'x'; n])), digest, "{n}");
    }
}

#[test]
fn base64_matches_rfc4648_vectors() {
    let vectors: [(&[u8], &str); 7] = [
        (b"", ""),
        (b"f", "Zg=="),
        (b"fo", "Zm8="),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg=="),
        (b"fooba", "Zm9vYmE="),
        (b"foobar", "Zm9vYmFy"),
    ];
    for (plain, text) in vectors {
        assert_eq!(base64_encode(plain), text);
        assert_eq!(base64_decode(text).as_deref(), Some(plain), "{text}");
    }
    assert_eq!(base64_encode(&[0xfb, 0xff]), "+/8=");
    for bad in [
        "Zg=", "Zg", "Zg==Zg==", "Z===", "Zh==", "Zm9=", "Zm9v!A==", "=Zm9",
    ] {
        assert_eq!(base64_decode(bad), None, "{bad}");
    }
}

// ---- the handshake ----

#[test]
fn accept_key_of_rfc6455() {
    assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), SAMPLE_ACCEPT);
    // And as tungstenite computes it, for keys of every byte pattern.
    let mut rng = crate::rng::Rng::new(5);
    for _ in 0..200 {
        let key = base64_encode(&rng.next_u64().to_le_bytes().repeat(2));
        assert_eq!(
            accept_key(&key),
            tungstenite::handshake::derive_accept_key(key.as_bytes())
        );
    }
}

#[test]
fn xnet_client_request_is_accepted_with_xnet_answer() {
    let req = XNET_REQUEST.as_bytes();
    for end in 0..req.len() {
        assert_eq!(parse_upgrade_request(&req[..end]), Ok(Upgrade::Incomplete));
    }
    let mut with_frame = req.to_vec();
    with_frame.extend_from_slice(&cframe(true, OP_BINARY, b"x"));
    let Ok(Upgrade::Done { consumed, request }) = parse_upgrade_request(&with_frame) else {
        panic!()
    };
    assert_eq!(consumed, req.len());
    assert_eq!(
        request,
        UpgradeRequest {
            path: "/ws".into(),
            host: "127.0.0.1:15012".into(),
            key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
            origin: Some("http://127.0.0.1:15012/".into()),
            protocol: None,
        }
    );
    // x/net's client wants exactly these: lowercased Upgrade "websocket" and Connection
    // "upgrade", the accept, no extensions.
    assert_eq!(
        String::from_utf8(upgrade_response(&request)).unwrap(),
        format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n\r\n")
    );
}

#[test]
fn browser_style_requests_are_accepted() {
    let req = "GET /ws?token=1 HTTP/1.1\nhost: example.com\nUPGRADE: WebSocket\nconnection: keep-alive, Upgrade\nsec-websocket-version: 13\nsec-websocket-key: AQIDBAUGBwgJCgsMDQ4PEA==\nSec-WebSocket-Protocol: chat, superchat\nSec-WebSocket-Extensions: permessage-deflate\n\n";
    let Ok(Upgrade::Done { consumed, request }) = parse_upgrade_request(req.as_bytes()) else {
        panic!()
    };
    assert_eq!(consumed, req.len());
    assert_eq!(request.path, "/ws");
    assert_eq!(request.origin, None);
    assert_eq!(request.protocol.as_deref(), Some("chat"));
    let answer = String::from_utf8(upgrade_response(&request)).unwrap();
    assert!(answer.contains("\r\nSec-WebSocket-Protocol: chat\r\n"));
    assert!(!answer.contains("Extensions"));
}

/// The status a request gets, after checking its response is whole and closes.
fn refused(req: &str) -> u16 {
    let r = match parse_upgrade_request(req.as_bytes()) {
        Err(r) => r,
        other => panic!("{req:?}: {other:?}"),
    };
    let text = String::from_utf8(r.response()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with(&format!("HTTP/1.1 {} ", r.status)),
        "{head}"
    );
    assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
    assert!(head.contains("\r\nConnection: close"));
    assert_eq!(body, format!("{}\n", r.why));
    if r.status == 426 {
        assert!(head.contains("\r\nSec-WebSocket-Version: 13"));
    }
    if r.status == 405 {
        assert!(head.contains("\r\nAllow: GET"));
    }
    r.status
}

#[test]
fn bad_requests_are_refused_with_their_status() {
    let good = XNET_REQUEST;
    let without = |h: &str| {
        good.split("\r\n")
            .filter(|l| !l.starts_with(h))
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    let with = |from: &str, to: &str| good.replacen(from, to, 1);
    assert_eq!(refused(&with("GET", "POST")), 405);
    assert_eq!(refused(&with("Version: 13", "Version: 8")), 426);
    assert_eq!(refused(&without("Sec-WebSocket-Version")), 400);
    assert_eq!(refused(&without("Sec-WebSocket-Key")), 400);
    // 15 bytes, not 16; not base64; two keys.
    assert_eq!(
        refused(&with("dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAA")),
        400
    );
    assert_eq!(
        refused(&with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ")),
        400
    );
    assert_eq!(
        refused(&with(
            "Origin",
            "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nOrigin"
        )),
        400
    );
    assert_eq!(refused(&without("Upgrade:")), 400);
    assert_eq!(refused(&with("Upgrade: websocket", "Upgrade: h2c")), 400);
    assert_eq!(
        refused(&with("Connection: Upgrade", "Connection: keep-alive")),
        400
    );
    assert_eq!(refused(&with("HTTP/1.1", "HTTP/1.0")), 400);
    assert_eq!(refused(&with("GET /ws", "GET ws")), 400);
    assert_eq!(refused(&without("Host")), 400);
    assert_eq!(refused(&with("Origin", " Origin")), 400);
    assert_eq!(refused(&with("Origin: ", "Origin ")), 400);
    assert_eq!(refused("\r\n\r\n"), 400);
    let not_text = XNET_REQUEST
        .replace("Origin: ", "Origin: \u{1}")
        .into_bytes();
    let not_text: Vec<u8> = not_text
        .iter()
        .map(|&b| if b == 1 { 0xff } else { b })
        .collect();
    assert_eq!(parse_upgrade_request(&not_text).unwrap_err().status, 400);
}

#[test]
fn a_head_that_never_ends_is_refused_at_the_limit() {
    let mut endless = b"GET /ws HTTP/1.1\r\nX: ".to_vec();
    endless.resize(MAX_HANDSHAKE - 1, b'a');
    assert_eq!(parse_upgrade_request(&endless), Ok(Upgrade::Incomplete));
    endless.push(b'a');
    assert_eq!(parse_upgrade_request(&endless).unwrap_err().status, 431);
    // A head that ends just past the limit is too large too.
    let mut long = endless.clone();
    long.extend_from_slice(b"\r\n\r\n");
    assert_eq!(parse_upgrade_request(&long).unwrap_err().status, 431);

    // The layer, fed a little at a time (newlines included), then all at once: it holds at
    // most the limit, and answers 431.
    for chunk in [100, 1 << 20] {
        let mut s = WsServer::new();
        let (mut up, mut down) = (Vec::new(), Vec::new());
        let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(40_000);
        let mut res = Ok(());
        for piece in [&b"GET /ws HTTP/1.1\r\n"[..], &line].concat().chunks(chunk) {
            res = s.read(piece, &mut up, &mut down);
            assert!(s.buffered() <= MAX_HANDSHAKE);
            if res.is_err() {
                break;
            }
        }
        assert!(
            matches!(
                res,
                Err(LayerError::TooLarge {
                    max: MAX_HANDSHAKE,
                    ..
                })
            ),
            "{res:?}"
        );
        assert!(down.starts_with(b"HTTP/1.1 431 "));
        assert_eq!(s.buffered(), 0);
    }
}

#[test]
fn server_handshake_and_pipelined_frame_in_any_split() {
    let mut input = XNET_REQUEST.as_bytes().to_vec();
    input.extend_from_slice(&cframe(true, OP_BINARY, b"Hello"));
    let answer = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n\r\n");
    let mut splits: Vec<Vec<usize>> = (0..input.len()).map(|i| vec![i]).collect();
    splits.push(bytewise(input.len()));
    for cuts in splits {
        let mut s = WsServer::new();
        let (up, down, res) = feed(&mut s, &input, &cuts);
        res.unwrap();
        assert_eq!(up, b"Hello", "{cuts:?}");
        assert_eq!(down, answer.as_bytes(), "{cuts:?}");
        assert_eq!(
            s.request().unwrap().origin.as_deref(),
            Some("http://127.0.0.1:15012/")
        );
        assert_eq!(s.buffered(), 0);
    }
}

#[test]
fn server_refuses_other_paths_and_stays_refused() {
    let mut s = WsServer::new();
    let (mut up, mut down) = (Vec::new(), Vec::new());
    let err = s
        .read(
            XNET_REQUEST.replace("/ws", "/metrics").as_bytes(),
            &mut up,
            &mut down,
        )
        .unwrap_err();
    assert!(
        matches!(&err, LayerError::Protocol(m) if m.contains("404")),
        "{err}"
    );
    assert!(down.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
    down.clear();
    assert_eq!(s.read(b"more", &mut up, &mut down), Err(err.clone()));
    assert_eq!(s.write(b"data", &mut down), Err(err));
    assert!(down.is_empty() && up.is_empty());

    let mut s = WsServer::new();
    let err = s
        .read(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", &mut up, &mut down)
        .unwrap_err();
    assert!(matches!(err, LayerError::Protocol(_)));
    assert!(down.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
}

#[test]
fn accepted_server_reads_frames_at_once() {
    let Ok(Upgrade::Done { request, .. }) = parse_upgrade_request(XNET_REQUEST.as_bytes()) else {
        panic!()
    };
    let mut s = WsServer::accepted(request);
    assert!(s.is_open());
    assert_eq!(s.request().unwrap().host, "127.0.0.1:15012");
    let (up, down, res) = feed(&mut s, &cframe(true, OP_BINARY, b"abc"), &[]);
    res.unwrap();
    assert_eq!((up.as_slice(), down.as_slice()), (&b"abc"[..], &b""[..]));
}

#[test]
fn server_writes_before_the_handshake_wait_for_it() {
    let mut s = WsServer::new();
    let (mut up, mut down) = (Vec::new(), Vec::new());
    s.write(b"early", &mut down).unwrap();
    s.write(b" bird", &mut down).unwrap();
    assert!(down.is_empty());
    assert_eq!(s.buffered(), 10);
    s.read(XNET_REQUEST.as_bytes(), &mut up, &mut down).unwrap();
    let head_end = down.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&down[head_end..], sframe(true, OP_BINARY, b"early bird"));
    assert_eq!(s.buffered(), 0);

    let mut s = WsServer::new();
    s.write(&[0; MAX_PENDING], &mut down).unwrap();
    assert!(matches!(
        s.write(b"x", &mut down),
        Err(LayerError::TooLarge {
            max: MAX_PENDING,
            ..
        })
    ));
    assert_eq!(s.buffered(), 0);
}

#[test]
fn client_request_is_what_x_net_sends_and_its_key_comes_from_the_seed() {
    let mut c = WsClient::new("127.0.0.1:15012", "/ws", Some("http://127.0.0.1:15012/"), 7);
    let mut down = Vec::new();
    c.start(&mut down);
    let request = down.clone();
    c.start(&mut down);
    assert_eq!(down, request, "sent once");
    let Ok(Upgrade::Done {
        consumed,
        request: req,
    }) = parse_upgrade_request(&request)
    else {
        panic!()
    };
    assert_eq!(consumed, request.len());
    assert_eq!(req.origin.as_deref(), Some("http://127.0.0.1:15012/"));
    assert_eq!(base64_decode(&req.key).unwrap().len(), 16);
    // Same order and headers as x/net's client, with this key.
    assert_eq!(
        String::from_utf8(request.clone()).unwrap(),
        XNET_REQUEST.replace("dGhlIHNhbXBsZSBub25jZQ==", &req.key)
    );
    let key_of = |seed| {
        let mut d = Vec::new();
        WsClient::new("h", "/ws", None, seed).start(&mut d);
        d
    };
    assert_eq!(key_of(7), key_of(7));
    assert_ne!(key_of(7), key_of(8));
}

#[test]
fn client_opens_on_a_good_answer_in_any_split() {
    let mut probe = WsClient::new("h:1", "/ws", None, 3);
    let mut req = Vec::new();
    probe.start(&mut req);
    let Ok(Upgrade::Done { request, .. }) = parse_upgrade_request(&req) else {
        panic!()
    };
    let mut input = upgrade_response(&request);
    input.extend_from_slice(&sframe(true, OP_BINARY, b"Hello"));
    let mut splits: Vec<Vec<usize>> = (0..input.len()).map(|i| vec![i]).collect();
    splits.push(bytewise(input.len()));
    for cuts in splits {
        let mut c = WsClient::new("h:1", "/ws", None, 3);
        c.write(b"login", &mut Vec::new()).unwrap();
        let (up, down, res) = feed(&mut c, &input, &cuts);
        res.unwrap();
        assert!(c.is_open());
        assert_eq!(up, b"Hello");
        // The early write, as one masked binary frame.
        let (fin, op, payload, used) = parse_frame(&down);
        assert_eq!(
            (fin, op, payload.as_slice(), used),
            (true, OP_BINARY, &b"login"[..], down.len())
        );
        assert_ne!(down[1] & 0x80, 0);
    }
}

#[test]
fn client_rejects_bad_answers() {
    let mut probe = WsClient::new("h:1", "/ws", None, 3);
    let mut req = Vec::new();
    probe.start(&mut req);
    let Ok(Upgrade::Done { request, .. }) = parse_upgrade_request(&req) else {
        panic!()
    };
    let good = String::from_utf8(upgrade_response(&request)).unwrap();
    let accept = accept_key(&request.key);
    let bad = [
        good.replace(&accept, SAMPLE_ACCEPT),
        good.replace("101 Switching Protocols", "403 Forbidden"),
        good.replace("Upgrade: websocket\r\n", ""),
        good.replace("Connection: Upgrade", "Connection: close"),
        good.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        ),
        good.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: chat\r\n\r\n"),
        "SSH-2.0-OpenSSH\r\n\r\n".to_string(),
    ];
    for answer in bad {
        let mut c = WsClient::new("h:1", "/ws", None, 3);
        let (_, _, res) = feed(&mut c, answer.as_bytes(), &[]);
        assert!(
            matches!(res, Err(LayerError::Protocol(_))),
            "{answer:?}: {res:?}"
        );
        assert!(!c.is_open());
        assert_eq!(c.read(b"x", &mut Vec::new(), &mut Vec::new()), res);
    }
    let mut c = WsClient::new("h:1", "/ws", None, 3);
    let endless = [&b"HTTP/1.1 101 OK\r\nX: "[..], &[b'a'; 20_000]].concat();
    let (_, _, res) = feed(&mut c, &endless, &[1000, 5000, 9000]);
    assert!(matches!(res, Err(LayerError::TooLarge { .. })), "{res:?}");
    assert_eq!(c.buffered(), 0);
}

// ---- frames: RFC 6455 section 5.7 ----

#[test]
fn rfc6455_section_5_7_examples() {
    let hello_unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let hello_masked = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(sframe(true, OP_TEXT, b"Hello"), hello_unmasked);
    assert_eq!(cframe(true, OP_TEXT, b"Hello"), hello_masked);

    // A single-frame unmasked text message, to a client; a masked one, to a server.
    let (up, down, res) = feed(&mut open_client(), &hello_unmasked, &[]);
    res.unwrap();
    assert_eq!((up.as_slice(), down.len()), (&b"Hello"[..], 0));
    let (up, down, res) = feed(&mut open_server(), &hello_masked, &[]);
    res.unwrap();
    assert_eq!((up.as_slice(), down.len()), (&b"Hello"[..], 0));

    // A fragmented unmasked text message.
    let fragmented = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    let (up, _, res) = feed(&mut open_client(), &fragmented, &[]);
    res.unwrap();
    assert_eq!(up, b"Hello");

    // An unmasked ping, answered by the client with a masked pong of the same body.
    let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let (up, down, res) = feed(&mut open_client(), &ping, &[]);
    res.unwrap();
    assert!(up.is_empty());
    assert_eq!(&down[..2], &[0x8a, 0x85]);
    assert_eq!(
        parse_frame(&down),
        (true, OP_PONG, b"Hello".to_vec(), down.len())
    );

    // A masked pong (the answer to it), ignored by the server.
    let pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let (up, down, res) = feed(&mut open_server(), &pong, &[]);
    res.unwrap();
    assert!(up.is_empty() && down.is_empty());

    // 256 bytes and 64 KiB in a single unmasked binary frame: the server writes exactly
    // these headers, and the client reads them.
    for (len, header) in [
        (256, vec![0x82, 0x7e, 0x01, 0x00]),
        (65536, vec![0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut down = Vec::new();
        open_server().write(&data, &mut down).unwrap();
        assert_eq!(&down[..header.len()], header.as_slice());
        assert_eq!(&down[header.len()..], data.as_slice());
        let (up, _, res) = feed(&mut open_client(), &down, &[3, 1000]);
        res.unwrap();
        assert_eq!(up, data);
    }
}

#[test]
fn fragments_with_control_frames_between_in_every_split() {
    let mut input = cframe(false, OP_TEXT, b"Hel");
    input.extend(cframe(true, OP_PING, b"ping"));
    input.extend(cframe(false, OP_CONTINUATION, b"l"));
    input.extend(cframe(true, OP_PONG, b""));
    input.extend(cframe(true, OP_CONTINUATION, b"o"));
    input.extend(cframe(true, OP_BINARY, b""));
    input.extend(cframe(true, OP_BINARY, b"!"));
    input.extend(cframe(true, OP_PING, b""));
    let mut expect_down = sframe(true, OP_PONG, b"ping");
    expect_down.extend(sframe(true, OP_PONG, b""));
    let mut splits: Vec<Vec<usize>> = Vec::new();
    for i in 0..input.len() {
        for j in i..input.len() {
            splits.push(vec![i, j]);
        }
    }
    splits.push(bytewise(input.len()));
    for cuts in splits {
        let mut s = open_server();
        let (up, down, res) = feed(&mut s, &input, &cuts);
        res.unwrap();
        assert_eq!(up, b"Hello!", "{cuts:?}");
        assert_eq!(down, expect_down, "{cuts:?}");
        assert_eq!(s.buffered(), 0);
    }
}

#[test]
fn large_frames_stream_up_as_they_arrive() {
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i ^ (i >> 9)) as u8).collect();
    let frame = cframe(true, OP_BINARY, &data);
    let header = frame.len() - data.len();
    let mut s = open_server();
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for (n, chunk) in frame.chunks(4093).enumerate() {
        s.read(chunk, &mut up, &mut down).unwrap();
        let seen = ((n + 1) * 4093).min(frame.len());
        assert_eq!(
            up.len(),
            seen.saturating_sub(header),
            "payload streamed at once"
        );
        assert!(s.buffered() < 14);
    }
    assert_eq!(up, data);
    assert!(down.is_empty());
}

#[test]
fn a_close_is_answered_with_its_code_then_the_layer_is_closed() {
    // From a client, with a reason; then nothing more goes through.
    let mut s = open_server();
    let mut input = cframe(
        true,
        OP_CLOSE,
        &[&1001u16.to_be_bytes()[..], b"bye"].concat(),
    );
    input.extend(cframe(true, OP_BINARY, b"after"));
    let (up, down, res) = feed(&mut s, &input, &[]);
    assert_eq!(res, Err(LayerError::Closed));
    assert_eq!((up.len(), down), (0, close_frame(1001)));
    let mut down = Vec::new();
    assert_eq!(
        s.read(b"x", &mut Vec::new(), &mut down),
        Err(LayerError::Closed)
    );
    assert_eq!(s.write(b"x", &mut down), Err(LayerError::Closed));
    assert!(down.is_empty() && !s.is_open());

    // An empty close gets an empty close.
    let (_, down, res) = feed(&mut open_server(), &cframe(true, OP_CLOSE, b""), &[]);
    assert_eq!((res, down), (Err(LayerError::Closed), vec![0x88, 0x00]));

    // From a server, to a client: the answer is masked.
    let (_, down, res) = feed(&mut open_client(), &close_frame(1000), &[1]);
    assert_eq!(res, Err(LayerError::Closed));
    assert_eq!(
        parse_frame(&down),
        (true, OP_CLOSE, vec![0x03, 0xe8], down.len())
    );
    assert_ne!(down[1] & 0x80, 0);
}

#[test]
fn a_close_started_here_ends_at_the_peer_answer() {
    let mut s = open_server();
    let mut down = Vec::new();
    s.close(CLOSE_GOING_AWAY, &mut down);
    assert_eq!(down, close_frame(1001));
    down.clear();
    s.write(b"dropped", &mut down).unwrap();
    s.close(CLOSE_NORMAL, &mut down);
    assert!(down.is_empty(), "nothing after a close frame");
    // Data still in flight from the client goes up; its close ends the session, unanswered.
    let mut input = cframe(true, OP_BINARY, b"late");
    input.extend(cframe(true, OP_CLOSE, &1001u16.to_be_bytes()));
    let (up, down, res) = feed(&mut s, &input, &[]);
    assert_eq!(
        (up.as_slice(), down.len(), res),
        (&b"late"[..], 0, Err(LayerError::Closed))
    );

    let mut c = open_client();
    let mut down = Vec::new();
    c.close(CLOSE_NORMAL, &mut down);
    assert_eq!(
        parse_frame(&down),
        (true, OP_CLOSE, vec![0x03, 0xe8], down.len())
    );

    // Before the handshake there is nothing to close, and nothing is sent after.
    let mut down = Vec::new();
    let mut s = WsServer::new();
    s.close(CLOSE_NORMAL, &mut down);
    assert_eq!(
        s.read(XNET_REQUEST.as_bytes(), &mut Vec::new(), &mut down),
        Err(LayerError::Closed)
    );
    let mut c = WsClient::new("h:1", "/ws", None, 1);
    c.close(CLOSE_NORMAL, &mut down);
    assert_eq!(c.write(b"x", &mut down), Err(LayerError::Closed));
    assert!(down.is_empty());
}

// ---- frames: bad input ----

#[test]
fn bad_frames_are_protocol_errors_in_any_split() {
    let key = [1, 2, 3, 4];
    let mut long_len = vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
    long_len.extend_from_slice(&key);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", sframe(true, OP_BINARY, b"x"), 1002),
        (
            "rsv1",
            {
                let mut f = cframe(true, OP_BINARY, b"x");
                f[0] |= 0x40;
                f
            },
            1002,
        ),
        (
            "rsv2",
            {
                let mut f = cframe(true, OP_BINARY, b"x");
                f[0] |= 0x20;
                f
            },
            1002,
        ),
        (
            "rsv3",
            {
                let mut f = cframe(true, OP_BINARY, b"x");
                f[0] |= 0x10;
                f
            },
            1002,
        ),
        ("opcode 3", cframe(true, 0x3, b"x"), 1002),
        ("opcode 0xb", cframe(true, 0xb, b""), 1002),
        ("ping of 126", cframe(true, OP_PING, &[0; 126]), 1002),
        ("close of 200", cframe(true, OP_CLOSE, &[0; 200]), 1002),
        ("fragmented ping", cframe(false, OP_PING, b"x"), 1002),
        ("top length bit", long_len, 1002),
        (
            "lone continuation",
            cframe(true, OP_CONTINUATION, b"x"),
            1002,
        ),
        (
            "message inside a message",
            [cframe(false, OP_BINARY, b"a"), cframe(true, OP_TEXT, b"b")].concat(),
            1002,
        ),
        ("close of one byte", cframe(true, OP_CLOSE, &[3]), 1002),
        (
            "close 999",
            cframe(true, OP_CLOSE, &999u16.to_be_bytes()),
            1002,
        ),
        (
            "close 1005",
            cframe(true, OP_CLOSE, &1005u16.to_be_bytes()),
            1002,
        ),
        (
            "close 1006",
            cframe(true, OP_CLOSE, &1006u16.to_be_bytes()),
            1002,
        ),
        (
            "close 2000",
            cframe(true, OP_CLOSE, &2000u16.to_be_bytes()),
            1002,
        ),
        (
            "close reason not UTF-8",
            cframe(true, OP_CLOSE, &[0x03, 0xe8, 0xff]),
            1007,
        ),
    ];
    for (what, input, code) in cases {
        for cuts in [vec![], bytewise(input.len())] {
            let mut s = open_server();
            let (_, down, res) = feed(&mut s, &input, &cuts);
            assert!(
                matches!(&res, Err(LayerError::Protocol(_))),
                "{what}: {res:?}"
            );
            assert_eq!(down, close_frame(code), "{what}");
            assert!(s.buffered() <= 139, "{what}");
            assert_eq!(
                s.read(&[0x82], &mut Vec::new(), &mut Vec::new()),
                res,
                "{what}"
            );
            assert!(!s.is_open());
        }
    }
    // A client refuses masked frames, and its close says so, masked.
    let (_, down, res) = feed(&mut open_client(), &cframe(true, OP_BINARY, b"x"), &[]);
    assert!(matches!(res, Err(LayerError::Protocol(m)) if m.contains("masked")));
    assert_eq!(
        parse_frame(&down),
        (true, OP_CLOSE, vec![0x03, 0xea], down.len())
    );
}

#[test]
fn errors_are_caught_from_the_header_before_any_payload() {
    // An oversized control frame is refused on its second byte, before its 8-byte length
    // or payload arrive.
    let mut s = open_server();
    let (mut up, mut down) = (Vec::new(), Vec::new());
    s.read(&[0x89], &mut up, &mut down).unwrap();
    assert!(s.read(&[0xff], &mut up, &mut down).is_err());
    assert_eq!(down, close_frame(1002));
}

#[test]
fn random_input_never_panics_and_stays_bounded() {
    let mut rng = crate::rng::Rng::new(9);
    for round in 0..3000 {
        let len = rng.below(400) as usize;
        let mut input: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        // Half the rounds start from frame-like bytes, so headers get past their first checks.
        if round % 2 == 0 && len > 2 {
            input[0] = [0x82, 0x02, 0x80, 0x89, 0x8a, 0x88][rng.below(6) as usize];
            input[1] |= 0x80;
        }
        let cuts: Vec<usize> = (0..rng.below(8))
            .map(|_| rng.below(len as u64 + 1) as usize)
            .collect();
        let mut s = open_server();
        let _ = feed(&mut s, &input, &cuts);
        assert!(s.buffered() <= 139);
        let mut c = open_client();
        let _ = feed(&mut c, &input, &cuts);
        assert!(c.buffered() <= 139);
        let mut fresh = WsServer::new();
        let _ = feed(&mut fresh, &input, &cuts);
        assert!(fresh.buffered() <= MAX_HANDSHAKE);
    }
}
