//! TLS on client connections (`encrypt_connection=1`), with rustls and its ring provider.
//!
//! GoWorld's gate wraps each TCP and KCP client connection in `tls.Server` with the
//! certificate and key of `rsa_certificate` / `rsa_key` (paths relative to the config file);
//! for WebSocket the HTTP listener itself speaks TLS (`wss://`). Its bots dial with
//! `InsecureSkipVerify`; ours trust the configured certificate instead, so a bot run also
//! checks that the gate presents the certificate it was configured with.
//!
//! [`Tls`] is one [`StreamLayer`] for both ends: bytes from below are TLS records, bytes
//! above are the plaintext stream. Plaintext written before the handshake is over waits in
//! the layer (at most [`EARLY_PLAINTEXT_MAX`] bytes; a gate may have its first messages for
//! a client before the client's Finished arrives) and goes out once it is.
//!
//! Loading PEM files and building configurations is here too, from bytes: the caller reads
//! the files (start-up code may; this module touches no file, socket or clock).

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig};

use super::{LayerError, StreamLayer};

/// Plaintext a connection may queue before its handshake is over; more is an error (the
/// peer is not finishing its handshake while we have that much for it).
pub const EARLY_PLAINTEXT_MAX: usize = 4 << 20;

/// The provider: rustls with ring, which builds with a plain C compiler and links
/// statically with musl. (rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange, which aws-lc-rs has; that needs cmake and a much larger binary, and GoWorld's
/// clients do not offer it.)
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (one or more `CERTIFICATE` blocks).
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read a certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(certs)
}

/// A server configuration from a certificate chain and its private key (PKCS#1, PKCS#8 or
/// SEC1 PEM, as `openssl` writes them).
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, String> {
    let certs = certs_from_pem(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("cannot read the private key: {e}"))?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
    Ok(Arc::new(cfg))
}

/// A client configuration that trusts exactly the certificates of `trusted_pem` (a bot
/// trusts the gate's configured certificate).
pub fn client_config(trusted_pem: &[u8]) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(trusted_pem)? {
        roots
            .add(c)
            .map_err(|e| format!("cannot trust the certificate: {e}"))?;
    }
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// One end of a TLS session as a stream layer.
pub struct Tls {
    conn: Connection,
    /// Plaintext written before the handshake was over.
    early: Vec<u8>,
}

impl Tls {
    /// The server end of a new connection.
    pub fn server(cfg: Arc<ServerConfig>) -> Result<Tls, LayerError> {
        let conn = rustls::ServerConnection::new(cfg)
            .map_err(|e| LayerError::Protocol(format!("tls: {e}")))?;
        Ok(Tls::with(conn.into()))
    }

    /// The client end, checking that the server is `name` (a DNS name or an IP address).
    pub fn client(cfg: Arc<ClientConfig>, name: &str) -> Result<Tls, LayerError> {
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| LayerError::Protocol(format!("tls: server name {name:?}: {e}")))?;
        let conn = ClientConnection::new(cfg, name)
            .map_err(|e| LayerError::Protocol(format!("tls: {e}")))?;
        Ok(Tls::with(conn.into()))
    }

    fn with(mut conn: Connection) -> Tls {
        // The layer keeps early plaintext itself, with its own limit.
        conn.set_buffer_limit(None);
        Tls {
            conn,
            early: Vec::new(),
        }
    }

    /// True once the handshake is over.
    pub fn is_ready(&self) -> bool {
        !self.conn.is_handshaking()
    }

    /// Queues a close_notify alert (a clean end of the session).
    pub fn close(&mut self, down: &mut Vec<u8>) {
        self.conn.send_close_notify();
        self.drain_records(down);
    }

    /// Moves every TLS record rustls has to send into `down`.
    fn drain_records(&mut self, down: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(down).unwrap_or(0) == 0 {
                break;
            }
        }
    }

    /// Hands plaintext to rustls (which encrypts it at once: the handshake is over).
    fn send_plaintext(&mut self, data: &[u8], down: &mut Vec<u8>) -> Result<(), LayerError> {
        self.conn
            .writer()
            .write_all(data)
            .map_err(|e| LayerError::Protocol(format!("tls: {e}")))?;
        self.drain_records(down);
        Ok(())
    }
}

impl StreamLayer for Tls {
    fn read(
        &mut self,
        below: &[u8],
        up: &mut Vec<u8>,
        down: &mut Vec<u8>,
    ) -> Result<(), LayerError> {
        let mut input = below;
        let mut closed = false;
        while !input.is_empty() {
            // rustls takes what fits in its record buffer; the loop feeds the rest after
            // the records already in are processed.
            match self.conn.read_tls(&mut input) {
                Ok(_) => {}
                Err(e) => return Err(LayerError::Protocol(format!("tls: {e}"))),
            }
            let state = match self.conn.process_new_packets() {
                Ok(s) => s,
                Err(e) => {
                    // rustls has queued an alert telling the peer why.
                    self.drain_records(down);
                    return Err(LayerError::Protocol(format!("tls: {e}")));
                }
            };
            closed |= state.peer_has_closed();
            // The plaintext goes straight into `up` (no per-connection scratch buffer).
            let mut left = state.plaintext_bytes_to_read();
            while left > 0 {
                let start = up.len();
                up.resize(start + left, 0);
                let n = self.conn.reader().read(&mut up[start..]);
                up.truncate(start + *n.as_ref().unwrap_or(&0));
                let n = n.map_err(|e| LayerError::Protocol(format!("tls: {e}")))?;
                if n == 0 {
                    break;
                }
                left = left.saturating_sub(n);
            }
        }
        if self.is_ready() && !self.early.is_empty() {
            let early = std::mem::take(&mut self.early);
            self.send_plaintext(&early, down)?;
        }
        self.drain_records(down);
        if closed {
            return Err(LayerError::Closed);
        }
        Ok(())
    }

    fn is_ready(&self) -> bool {
        Tls::is_ready(self)
    }

    fn write(&mut self, above: &[u8], down: &mut Vec<u8>) -> Result<(), LayerError> {
        if !self.is_ready() {
            if self.early.len() + above.len() > EARLY_PLAINTEXT_MAX {
                return Err(LayerError::TooLarge {
                    what: "plaintext waiting for the TLS handshake",
                    len: self.early.len() + above.len(),
                    max: EARLY_PLAINTEXT_MAX,
                });
            }
            self.early.extend_from_slice(above);
            // The client's first flight goes out now.
            self.drain_records(down);
            return Ok(());
        }
        self.send_plaintext(above, down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &[u8] = include_bytes!("../../../conf/rsa.crt");
    const KEY: &[u8] = include_bytes!("../../../conf/rsa.key");

    /// A client and a server talking through two byte queues, fed in chunks of `step`.
    struct Pair {
        client: Tls,
        server: Tls,
        /// Bytes on the wire, client to server and back.
        c2s: Vec<u8>,
        s2c: Vec<u8>,
        /// Plaintext each end received.
        at_server: Vec<u8>,
        at_client: Vec<u8>,
    }

    impl Pair {
        fn new(name: &str) -> Pair {
            let server = Tls::server(server_config(CERT, KEY).unwrap()).unwrap();
            let client = Tls::client(client_config(CERT).unwrap(), name).unwrap();
            Pair {
                client,
                server,
                c2s: Vec::new(),
                s2c: Vec::new(),
                at_server: Vec::new(),
                at_client: Vec::new(),
            }
        }

        /// Moves bytes both ways until nothing moves, `step` bytes per call.
        fn pump(&mut self, step: usize) -> Result<(), (&'static str, LayerError)> {
            // Nudge the client's first flight out.
            self.client.write(&[], &mut self.c2s).unwrap();
            for _ in 0..10_000_000 {
                if self.c2s.is_empty() && self.s2c.is_empty() {
                    return Ok(());
                }
                let n = step.min(self.c2s.len());
                let chunk: Vec<u8> = self.c2s.drain(..n).collect();
                self.server
                    .read(&chunk, &mut self.at_server, &mut self.s2c)
                    .map_err(|e| ("server", e))?;
                let n = step.min(self.s2c.len());
                let chunk: Vec<u8> = self.s2c.drain(..n).collect();
                self.client
                    .read(&chunk, &mut self.at_client, &mut self.c2s)
                    .map_err(|e| ("client", e))?;
            }
            panic!("the pair never went quiet");
        }
    }

    #[test]
    fn a_handshake_then_data_both_ways_in_any_split() {
        for step in [1, 7, 1500, usize::MAX] {
            let mut p = Pair::new("localhost");
            // The server has something for the client before the handshake is over, as a
            // gate does when the boot entity's messages are ready early.
            p.server.write(b"early hello", &mut p.s2c).unwrap();
            p.pump(step).unwrap();
            assert!(p.client.is_ready() && p.server.is_ready(), "step {step}");
            let len = if step == 1 { 20_000 } else { 300_000u32 };
            let big: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            p.client.write(&big, &mut p.c2s).unwrap();
            p.server.write(b" and more", &mut p.s2c).unwrap();
            p.pump(step).unwrap();
            assert_eq!(p.at_server, big, "step {step}");
            assert_eq!(p.at_client, b"early hello and more", "step {step}");
            // A clean close reaches the other end as Closed.
            p.client.close(&mut p.c2s);
            let err = p.pump(step).unwrap_err();
            assert_eq!(err, ("server", LayerError::Closed));
        }
    }

    #[test]
    fn the_client_checks_the_name_in_the_certificate() {
        // The test certificate names localhost and 127.0.0.1.
        let mut p = Pair::new("127.0.0.1");
        p.pump(usize::MAX).unwrap();
        assert!(p.client.is_ready());
        let mut p = Pair::new("gate.example.com");
        let (side, err) = p.pump(usize::MAX).unwrap_err();
        assert_eq!(side, "client");
        assert!(
            matches!(&err, LayerError::Protocol(s) if s.contains("certificate")),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_or_plain_text_where_tls_is_expected_is_an_error() {
        let mut server = Tls::server(server_config(CERT, KEY).unwrap()).unwrap();
        let (mut up, mut down) = (Vec::new(), Vec::new());
        // A plain-TCP client's first frame (length 6, then a message) is not a TLS record.
        let err = server
            .read(
                &[6, 0, 0, 0, 1, 0, 0x81, 0xa1, 0x61, 0x01],
                &mut up,
                &mut down,
            )
            .unwrap_err();
        assert!(matches!(err, LayerError::Protocol(_)), "{err:?}");
        assert!(up.is_empty());
    }

    #[test]
    fn early_plaintext_is_bounded() {
        let mut server = Tls::server(server_config(CERT, KEY).unwrap()).unwrap();
        let mut down = Vec::new();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..4 {
            server.write(&chunk, &mut down).unwrap();
        }
        let err = server.write(&chunk, &mut down).unwrap_err();
        assert!(matches!(err, LayerError::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn pem_problems_are_named() {
        assert!(server_config(b"", KEY).unwrap_err().contains("CERTIFICATE"));
        assert!(server_config(CERT, b"nonsense")
            .unwrap_err()
            .contains("private key"));
        assert!(
            client_config(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }
}
