//! The opening handshake (RFC 6455 section 4): the server's reading of an upgrade request and
//! its answers, the client's request and its checking of the answer. Plain HTTP/1.1 heads,
//! read from a byte buffer; nothing else of HTTP is needed.

use super::super::LayerError;
use super::digest::{base64_decode, base64_encode, sha1};

/// The largest handshake head accepted (request or response line and headers, through the
/// blank line), as the observability endpoint's [`crate::http::MAX_REQUEST`].
pub const MAX_HANDSHAKE: usize = 8192;

/// The GUID of section 1.3 that the accept key hashes after the client's key.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value answering the client key `key` (section 4.2.2):
/// base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut text = Vec::with_capacity(key.len() + GUID.len());
    text.extend_from_slice(key.as_bytes());
    text.extend_from_slice(GUID.as_bytes());
    base64_encode(&sha1(&text))
}

/// An upgrade request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The request target's path (the query string removed).
    pub path: String,
    /// The `Host` header.
    pub host: String,
    /// The `Sec-WebSocket-Key` header (base64 of 16 bytes).
    pub key: String,
    /// The `Origin` header, which browsers and golang.org/x/net/websocket's clients send.
    pub origin: Option<String>,
    /// The first subprotocol offered in `Sec-WebSocket-Protocol`, which the answer selects.
    pub protocol: Option<String>,
}

/// What a buffer holds so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// The head has not ended yet.
    Incomplete,
    /// A valid request, whose head took the first `consumed` bytes; any bytes after them
    /// are already WebSocket frames.
    Done {
        consumed: usize,
        request: UpgradeRequest,
    },
}

/// A request the handshake refuses: the HTTP status to answer with and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub why: String,
}

impl Refusal {
    fn new(status: u16, why: impl Into<String>) -> Refusal {
        Refusal {
            status,
            why: why.into(),
        }
    }

    /// The whole HTTP response to send before closing: status, `Connection: close`, the
    /// reason as a text body; a 426 also names the version served (section 4.4), a 405 the
    /// method.
    pub fn response(&self) -> Vec<u8> {
        let body = format!("{}\n", self.why);
        let mut extra = String::new();
        match self.status {
            426 => extra.push_str("Sec-WebSocket-Version: 13\r\n"),
            405 => extra.push_str("Allow: GET\r\n"),
            _ => {}
        }
        format!(
            "HTTP/1.1 {} {}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.status,
            reason(self.status),
            body.len()
        )
        .into_bytes()
    }
}

impl From<Refusal> for LayerError {
    fn from(r: Refusal) -> LayerError {
        if r.status == 431 {
            LayerError::TooLarge {
                what: "WebSocket handshake",
                len: MAX_HANDSHAKE + 1,
                max: MAX_HANDSHAKE,
            }
        } else {
            LayerError::Protocol(format!(
                "WebSocket handshake refused ({}): {}",
                r.status, r.why
            ))
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

/// The end of an HTTP head in `buf`: the index after its blank line. Lines end in CRLF or,
/// as Go's reader also takes, a bare LF.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            let line = &buf[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// A head cut at its blank line, as text: its first line and its header fields.
struct Head<'a> {
    first: &'a str,
    fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Head<'a> {
    /// Splits `head` (through the blank line); the error says what is malformed.
    fn parse(head: &'a [u8]) -> Result<Head<'a>, &'static str> {
        let text = std::str::from_utf8(head).map_err(|_| "head is not text")?;
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let first = lines.next().unwrap_or("");
        let mut fields = Vec::new();
        for line in lines.take_while(|l| !l.is_empty()) {
            if line.starts_with([' ', '\t']) {
                return Err("folded header line");
            }
            let (name, value) = line.split_once(':').ok_or("header line without a colon")?;
            if name.is_empty() || name.contains([' ', '\t']) {
                return Err("malformed header name");
            }
            fields.push((name, value.trim_matches([' ', '\t'])));
        }
        Ok(Head { first, fields })
    }

    /// The first value of header `name`.
    fn get(&self, name: &str) -> Option<&'a str> {
        self.all(name).next()
    }

    /// Every value of header `name`, in order.
    fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Whether some value of header `name`, read as a comma list, holds `token` (any case).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.all(name).any(|v| {
            v.split(',')
                .any(|t| t.trim_matches([' ', '\t']).eq_ignore_ascii_case(token))
        })
    }
}

/// Reads an upgrade request from the bytes received so far (section 4.2.1): a GET with
/// HTTP/1.1, `Host`, `Upgrade: websocket`, `Connection` listing `Upgrade`,
/// `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key` of 16 bytes in base64. Any path
/// is accepted; the caller routes. A missing `Origin` is accepted (golang.org/x/net's
/// `websocket.Handler` refuses it, for browsers' sake; the gate has no cookies to protect).
///
/// The refusal statuses: 405 for another method, 426 for another version, 431 for a head
/// longer than [`MAX_HANDSHAKE`] (decided as soon as that many bytes hold no blank line),
/// 400 for the rest.
pub fn parse_upgrade_request(buf: &[u8]) -> Result<Upgrade, Refusal> {
    let Some(end) = head_end(buf) else {
        return if buf.len() >= MAX_HANDSHAKE {
            Err(Refusal::new(431, "request head too large"))
        } else {
            Ok(Upgrade::Incomplete)
        };
    };
    if end > MAX_HANDSHAKE {
        return Err(Refusal::new(431, "request head too large"));
    }
    let head = Head::parse(&buf[..end]).map_err(|why| Refusal::new(400, why))?;
    let mut parts = head.first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::new(400, "malformed request line"));
    };
    if method != "GET" {
        return Err(Refusal::new(
            405,
            format!("a WebSocket upgrade is a GET, not {method}"),
        ));
    }
    if version != "HTTP/1.1" || !target.starts_with('/') {
        return Err(Refusal::new(400, "malformed request line"));
    }
    let Some(host) = head.get("Host").filter(|h| !h.is_empty()) else {
        return Err(Refusal::new(400, "no Host header"));
    };
    if !head.has_token("Upgrade", "websocket") {
        return Err(Refusal::new(
            400,
            "not a WebSocket upgrade (Upgrade header)",
        ));
    }
    if !head.has_token("Connection", "Upgrade") {
        return Err(Refusal::new(
            400,
            "not a WebSocket upgrade (Connection header)",
        ));
    }
    match head.get("Sec-WebSocket-Version") {
        None => return Err(Refusal::new(400, "no Sec-WebSocket-Version header")),
        Some("13") => {}
        Some(v) => {
            return Err(Refusal::new(
                426,
                format!("WebSocket version {v:?} is not served; 13 is"),
            ))
        }
    }
    let mut keys = head.all("Sec-WebSocket-Key");
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k,
        (None, _) => return Err(Refusal::new(400, "no Sec-WebSocket-Key header")),
        (Some(_), Some(_)) => return Err(Refusal::new(400, "two Sec-WebSocket-Key headers")),
    };
    if base64_decode(key).is_none_or(|k| k.len() != 16) {
        return Err(Refusal::new(
            400,
            "Sec-WebSocket-Key is not 16 bytes in base64",
        ));
    }
    let protocol = head
        .all("Sec-WebSocket-Protocol")
        .flat_map(|v| v.split(','))
        .map(|p| p.trim_matches([' ', '\t']))
        .find(|p| !p.is_empty());
    let path = target.split(['?', '#']).next().unwrap_or("/");
    Ok(Upgrade::Done {
        consumed: end,
        request: UpgradeRequest {
            path: path.to_string(),
            host: host.to_string(),
            key: key.to_string(),
            origin: head.get("Origin").map(str::to_string),
            protocol: protocol.map(str::to_string),
        },
    })
}

/// The 101 answer to `request`, as golang.org/x/net/websocket's server writes it: its
/// client wants `Upgrade: websocket` and `Connection: Upgrade` exactly (any case), and no
/// `Sec-WebSocket-Extensions`. The first subprotocol offered, if any, is selected (a
/// browser that offers some fails a connection whose answer selects none).
pub fn upgrade_response(request: &UpgradeRequest) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(&request.key)
    );
    if let Some(p) = &request.protocol {
        out.push_str("Sec-WebSocket-Protocol: ");
        out.push_str(p);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A client's upgrade request, in the order golang.org/x/net/websocket's client writes it.
pub fn upgrade_request(host: &str, path: &str, key: &str, origin: Option<&str>) -> Vec<u8> {
    let mut out = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
    );
    if let Some(o) = origin {
        out.push_str("Origin: ");
        out.push_str(o);
        out.push_str("\r\n");
    }
    out.push_str("Sec-WebSocket-Version: 13\r\n\r\n");
    out.into_bytes()
}

/// Reads the server's answer to a request with key `key` from the bytes received so far:
/// `Ok(None)` while its head has not ended, `Ok(Some(consumed))` for a valid 101 (the bytes
/// after it are frames). As golang.org/x/net/websocket's client: status 101, `Upgrade:
/// websocket`, `Connection: Upgrade`, the right `Sec-WebSocket-Accept`, no extension; and
/// no subprotocol, since none is offered.
pub fn parse_upgrade_response(buf: &[u8], key: &str) -> Result<Option<usize>, LayerError> {
    let too_large = LayerError::TooLarge {
        what: "WebSocket handshake answer",
        len: MAX_HANDSHAKE + 1,
        max: MAX_HANDSHAKE,
    };
    let Some(end) = head_end(buf) else {
        return if buf.len() >= MAX_HANDSHAKE {
            Err(too_large)
        } else {
            Ok(None)
        };
    };
    if end > MAX_HANDSHAKE {
        return Err(too_large);
    }
    let bad = |why: &str| LayerError::Protocol(format!("WebSocket handshake answer: {why}"));
    let head = Head::parse(&buf[..end]).map_err(bad)?;
    let mut parts = head.first.splitn(3, ' ');
    let (Some(version), Some(status)) = (parts.next(), parts.next()) else {
        return Err(bad("malformed status line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("malformed status line"));
    }
    if status != "101" {
        return Err(bad(&format!("refused: {}", head.first)));
    }
    if !head.has_token("Upgrade", "websocket") || !head.has_token("Connection", "Upgrade") {
        return Err(bad("no Upgrade: websocket or Connection: Upgrade"));
    }
    if head.get("Sec-WebSocket-Accept") != Some(accept_key(key).as_str()) {
        return Err(bad("wrong Sec-WebSocket-Accept"));
    }
    if head.get("Sec-WebSocket-Extensions").is_some() {
        return Err(bad("an extension that was not offered"));
    }
    if head.get("Sec-WebSocket-Protocol").is_some() {
        return Err(bad("a subprotocol that was not offered"));
    }
    Ok(Some(end))
}
