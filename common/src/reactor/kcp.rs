//! The reactor's KCP side: a connection's socket is either a TCP stream or a KCP session
//! ([`Sock`]), and KCP sessions ride on UDP sockets the reactor owns.
//!
//! * A gate's KCP endpoint ([`Reactor::add_kcp_listener`]) is one UDP socket on its
//!   `listen_addr`; sessions are keyed by the peer's address, and a data packet from an
//!   unknown address with a valid conv opens one (kcp-go's listener does the same), reported
//!   to the handler as an accepted connection. At most [`KCP_MAX_SESSIONS`] are open at once
//!   (`ReactorConfig::kcp_max_sessions`).
//! * A bot's KCP dial ([`Reactor::add_kcp_dial`]) is a UDP socket of its own, connected to the
//!   gate, with a session of a random conv; it opens at once (UDP has no handshake).
//!
//! Bytes written to a KCP connection go into its session's send queue; the session's
//! datagrams leave when its timer says ([`KcpSession::next_update`], every 10 ms with
//! GoWorld's settings) from [`Reactor::service_kcp`], called once per loop iteration, and ACKs
//! leave at once as datagrams come in. An idle session ([`KcpSession::is_idle`]: nothing to
//! send, resend, acknowledge or probe) has its timer skipped until input or a send gives it
//! work; with every session idle the loop wakes once a second for the silence check below.
//! A session whose peer stopped acknowledging (kcp-go's
//! dead link) is closed; so is one silent for [`KCP_IDLE`] (KCP has no close: that is how a
//! gone peer ends).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};

use super::{CloseReason, ConnId, Handler, LinkOpts, Origin, Reactor};
use crate::transport::kcp::{conv_of, KcpConfig, KcpSession};
use crate::transport::stack::StackSpec;

/// The default number of KCP sessions a listener keeps at once; datagrams that would open
/// more are dropped (and counted).
pub const KCP_MAX_SESSIONS: usize = 16384;
/// A KCP session from which nothing arrived for this long is closed.
pub const KCP_IDLE: Duration = Duration::from_secs(120);
/// The largest datagram read (kcp-go's read buffer).
const DATAGRAM_MAX: usize = 1500;

/// A connection's socket.
pub(super) enum Sock {
    Tcp(TcpStream),
    Kcp(Box<KcpLink>),
}

/// One KCP session and where its datagrams go.
pub(super) struct KcpLink {
    pub(super) session: KcpSession,
    pub(super) peer: SocketAddr,
    /// A dial's own socket, connected to the peer; `None` on a listener (its socket).
    own: Option<UdpSocket>,
    /// The listener it came from (index into `Reactor::kcp_listeners`).
    listener: Option<usize>,
    /// Stream bytes the session gave and the connection has not read yet.
    inbox: Vec<u8>,
    inbox_pos: usize,
    last_heard: Instant,
}

impl Sock {
    pub(super) fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => r.register(s, t, i),
            Sock::Kcp(k) => match k.own.as_mut() {
                Some(s) => r.register(s, t, Interest::READABLE),
                None => Ok(()),
            },
        }
    }

    /// Changes a TCP stream's interest; a KCP session's socket stays READABLE (a datagram
    /// send does not block).
    pub(super) fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => r.reregister(s, t, i),
            Sock::Kcp(_) => Ok(()),
        }
    }

    pub(super) fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => r.deregister(s),
            Sock::Kcp(k) => match k.own.as_mut() {
                Some(s) => r.deregister(s),
                None => Ok(()),
            },
        }
    }

    pub(super) fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Sock::Tcp(s) => Some(s),
            Sock::Kcp(_) => None,
        }
    }

    pub(super) fn kcp_mut(&mut self) -> Option<&mut KcpLink> {
        match self {
            Sock::Tcp(_) => None,
            Sock::Kcp(k) => Some(k),
        }
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Kcp(k) => {
                if k.inbox_pos == k.inbox.len() {
                    k.inbox.clear();
                    k.inbox_pos = 0;
                    k.session.recv(&mut k.inbox);
                }
                let n = (k.inbox.len() - k.inbox_pos).min(buf.len());
                if n == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                buf[..n].copy_from_slice(&k.inbox[k.inbox_pos..k.inbox_pos + n]);
                k.inbox_pos += n;
                Ok(n)
            }
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Kcp(k) => {
                if !k.session.writable() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                // Queued in the session; its timer sends it.
                k.session
                    .send(buf)
                    .map(|()| buf.len())
                    .map_err(|_| io::Error::from(io::ErrorKind::WouldBlock))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A gate's KCP endpoint.
pub(super) struct KcpListener {
    sock: UdpSocket,
    tag: u32,
    opts: LinkOpts,
    spec: StackSpec,
    config: KcpConfig,
    sessions: HashMap<SocketAddr, ConnId>,
    /// Datagrams dropped: no session and not one that opens one, or over the session limit.
    pub(super) dropped: u64,
    /// Datagrams a session refused (malformed, wrong conv).
    pub(super) refused: u64,
}

/// A KCP dial's settings (kept by its [`super::Dial`]).
#[derive(Clone)]
pub(super) struct KcpDial {
    pub(super) config: KcpConfig,
}

impl Reactor {
    /// Serves KCP clients on the UDP socket `sock` (a gate's `listen_addr`, as GoWorld's),
    /// as connections of listener `tag` with `opts`, their stream passing through the layers
    /// of `spec` (TLS, snappy). Returns the socket's address.
    pub fn add_kcp_listener(
        &mut self,
        sock: std::net::UdpSocket,
        tag: u32,
        opts: LinkOpts,
        spec: StackSpec,
    ) -> io::Result<SocketAddr> {
        sock.set_nonblocking(true)?;
        let addr = sock.local_addr()?;
        let mut sock = UdpSocket::from_std(sock);
        let token = Token(super::KCP_BASE + self.kcp_listeners.len());
        self.poll
            .registry()
            .register(&mut sock, token, Interest::READABLE)?;
        self.kcp_listeners.push(KcpListener {
            sock,
            tag,
            opts,
            spec,
            config: KcpConfig::goworld(),
            sessions: HashMap::new(),
            dropped: 0,
            refused: 0,
        });
        Ok(addr)
    }

    /// Like [`Reactor::add_dial_with`], over KCP to a gate's `listen_addr`: each connection
    /// is a UDP socket of its own with a session of a random conv, opened at once (the
    /// handler should send first: GoWorld's gate opens a session on its first data).
    pub fn add_kcp_dial(&mut self, addr: SocketAddr, tag: u32, opts: LinkOpts, spec: StackSpec) {
        let now = Instant::now();
        self.dials.push(super::Dial {
            addr,
            tag,
            opts,
            spec,
            kcp: Some(KcpDial {
                config: KcpConfig::goworld(),
            }),
            state: super::DialState::Waiting(now),
            backoff: super::BACKOFF_START,
            failure_logged: false,
        });
        self.start_dial(self.dials.len() - 1, now);
    }

    /// Opens dial `idx`'s KCP session on a new UDP socket; the handler hears of it in
    /// [`Reactor::open_kcp_dials`].
    pub(super) fn start_kcp_dial(&mut self, idx: usize, now: Instant) -> io::Result<ConnId> {
        let d = &self.dials[idx];
        let (addr, tag, opts) = (d.addr, d.tag, d.opts);
        let config = (d.kcp.as_ref()).map_or_else(KcpConfig::goworld, |k| k.config.clone());
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("an address")
        } else {
            "[::]:0".parse().expect("an address")
        };
        let std_sock = std::net::UdpSocket::bind(bind)?;
        std_sock.connect(addr)?;
        std_sock.set_nonblocking(true)?;
        let seed = u64::from(self.next_gen) << 32 | u64::from(tag);
        let stack = d
            .spec
            .build(seed)
            .map_err(|e| io::Error::other(e.to_string()))?;
        // A conv that differs per connection (kcp-go's is random).
        let conv = (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32 | 1;
        let link = KcpLink {
            session: KcpSession::new(conv, config),
            peer: addr,
            own: Some(UdpSocket::from_std(std_sock)),
            listener: None,
            inbox: Vec::new(),
            inbox_pos: 0,
            last_heard: now,
        };
        let origin = Origin::Dialed { dial: tag };
        let id = self.insert_conn(
            Sock::Kcp(Box::new(link)),
            addr,
            opts,
            origin,
            Some(idx),
            stack,
        )?;
        self.kcp_conns.push(id);
        self.kcp_opening.push(id);
        Ok(id)
    }

    /// Tells the handler of the KCP dials opened since the last call.
    pub(super) fn open_kcp_dials(&mut self, handler: &mut dyn Handler, now: Instant) {
        for id in std::mem::take(&mut self.kcp_opening) {
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            c.connecting = false;
            c.last_recv = now;
            let (origin, peer) = (c.origin, c.peer);
            if let Some(stack) = c.stack.as_mut() {
                // The layers' first words (a TLS ClientHello).
                if let Err(e) = stack.write(&[], &mut c.wire) {
                    self.conns
                        .mark_close(id, CloseReason::Transport(e.to_string()));
                    continue;
                }
            }
            let flush = c.wire.len() > c.wire_pos && !c.queued_flush;
            if flush {
                c.queued_flush = true;
            }
            if let Some(idx) = c.dial {
                let d = &mut self.dials[idx];
                d.state = super::DialState::Open;
                d.backoff = super::BACKOFF_START;
            }
            if flush {
                self.conns.flush.push(id);
            }
            handler.on_open(&mut self.conns, now, id, origin, peer);
        }
    }

    /// Milliseconds on the KCP clock (since the reactor started; wraps after 49 days, which
    /// KCP's arithmetic allows).
    fn kcp_ms(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_millis() as u32
    }

    /// Datagrams on KCP listener `idx`: each goes to its session (one is opened for a new
    /// peer whose first packet carries data), then the sessions that got stream bytes are
    /// read.
    pub(super) fn kcp_listener_event(
        &mut self,
        idx: usize,
        handler: &mut dyn Handler,
        now: Instant,
    ) {
        let ms = self.kcp_ms(now);
        let mut buf = [0u8; DATAGRAM_MAX];
        let mut touched: Vec<ConnId> = Vec::new();
        loop {
            let Some(l) = self.kcp_listeners.get_mut(idx) else {
                return;
            };
            let (n, from) = match l.sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("kcp: recv_from: {}", super::kind_text(&e));
                    break;
                }
            };
            let datagram = &buf[..n];
            let id = match l.sessions.get(&from) {
                Some(&id) => id,
                None => {
                    let Some(conv) = conv_of(datagram) else {
                        l.dropped += 1;
                        continue;
                    };
                    if l.sessions.len() >= self.cfg.kcp_max_sessions {
                        l.dropped += 1;
                        continue;
                    }
                    match self.open_kcp_session(idx, from, conv, handler, now) {
                        Some(id) => id,
                        None => continue,
                    }
                }
            };
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            let Some(k) = c.stream.kcp_mut() else {
                continue;
            };
            let l = &mut self.kcp_listeners[idx];
            let sock = &l.sock;
            let res = k.session.input(datagram, ms, &mut |d| {
                let _ = sock.send_to(d, from);
            });
            k.last_heard = now;
            if res.is_err() {
                l.refused += 1;
            }
            c.last_recv = now;
            if !touched.contains(&id) {
                touched.push(id);
            }
        }
        for id in touched {
            self.read_conn(id, handler, now);
        }
    }

    /// A new session on listener `idx` for `peer`, reported to the handler.
    fn open_kcp_session(
        &mut self,
        idx: usize,
        peer: SocketAddr,
        conv: u32,
        handler: &mut dyn Handler,
        now: Instant,
    ) -> Option<ConnId> {
        let l = &self.kcp_listeners[idx];
        let (tag, opts, config) = (l.tag, l.opts, l.config.clone());
        let stack = match l.spec.build(u64::from(self.next_gen)) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("kcp: dropping {peer}: {e}");
                return None;
            }
        };
        let link = KcpLink {
            session: KcpSession::new(conv, config),
            peer,
            own: None,
            listener: Some(idx),
            inbox: Vec::new(),
            inbox_pos: 0,
            last_heard: now,
        };
        let origin = Origin::Accepted { listener: tag };
        let id = match self.insert_conn(Sock::Kcp(Box::new(link)), peer, opts, origin, None, stack)
        {
            Ok(id) => id,
            Err(e) => {
                log::warn!("kcp: dropping {peer}: {}", super::kind_text(&e));
                return None;
            }
        };
        self.kcp_listeners[idx].sessions.insert(peer, id);
        self.kcp_conns.push(id);
        self.conns.stats.accepted += 1;
        log::debug!("kcp: session {conv:#x} from {peer} as {id}");
        handler.on_open(&mut self.conns, now, id, origin, peer);
        Some(id)
    }

    /// Datagrams on a KCP dial's own socket.
    pub(super) fn kcp_dial_event(&mut self, id: ConnId, handler: &mut dyn Handler, now: Instant) {
        let ms = self.kcp_ms(now);
        let mut buf = [0u8; DATAGRAM_MAX];
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let Some(k) = c.stream.kcp_mut() else {
            return;
        };
        let KcpLink {
            session,
            own,
            last_heard,
            ..
        } = k;
        let Some(sock) = own.as_ref() else {
            return;
        };
        let mut heard = false;
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    heard = true;
                    let _ = session.input(&buf[..n], ms, &mut |d| {
                        let _ = sock.send(d);
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A refused datagram (nobody on the gate's port yet) is not fatal: KCP resends.
                Err(_) => break,
            }
        }
        if heard {
            *last_heard = now;
            c.last_recv = now;
            self.read_conn(id, handler, now);
        }
    }

    /// Runs every KCP session whose timer is due (sending its datagrams), flushes output
    /// that waited for room in a session, and closes dead or silent sessions.
    pub(super) fn service_kcp(&mut self, now: Instant) {
        if self.kcp_conns.is_empty() {
            return;
        }
        let ms = self.kcp_ms(now);
        let Reactor {
            conns,
            kcp_listeners,
            kcp_conns,
            ..
        } = self;
        kcp_conns.retain(|&id| {
            let Some(c) = conns.get_mut(id) else {
                return false;
            };
            if c.closing.is_some() {
                return true;
            }
            let Some(k) = c.stream.kcp_mut() else {
                return false;
            };
            let due = k.session.next_update(ms);
            if !k.session.is_idle() && (due.wrapping_sub(ms) as i32) <= 0 {
                let KcpLink {
                    session,
                    own,
                    listener,
                    peer,
                    ..
                } = k;
                let peer = *peer;
                match (own.as_ref(), listener.and_then(|l| kcp_listeners.get(l))) {
                    (Some(s), _) => session.update(ms, &mut |d| {
                        let _ = s.send(d);
                    }),
                    (None, Some(l)) => session.update(ms, &mut |d| {
                        let _ = l.sock.send_to(d, peer);
                    }),
                    (None, None) => {}
                }
            }
            let dead = k.session.is_dead();
            let silent = now.saturating_duration_since(k.last_heard) >= KCP_IDLE;
            let writable = k.session.writable();
            if dead || silent {
                let why = if dead {
                    "kcp: the peer stopped acknowledging (dead link)".to_string()
                } else {
                    format!("kcp: nothing received for {} s", KCP_IDLE.as_secs())
                };
                conns.mark_close(id, CloseReason::Transport(why));
            } else if writable && c.pending() > 0 && !c.queued_flush {
                c.queued_flush = true;
                conns.flush.push(id);
            }
            true
        });
    }

    /// The earliest KCP session timer, as an instant.
    pub(super) fn kcp_deadline(&self, now: Instant) -> Option<Instant> {
        let ms = self.kcp_ms(now);
        (self.kcp_conns.iter())
            .filter_map(|&id| self.conns.get(id))
            .filter_map(|c| match &c.stream {
                // An idle session's timer is skipped (KcpSession::is_idle): it waits for
                // input or a send, and the reactor's one-second cap below checks its silence.
                Sock::Kcp(k) if !k.session.is_idle() => Some(k.session.next_update(ms)),
                _ => None,
            })
            .map(|due| now + Duration::from_millis(u64::from(due.wrapping_sub(ms).min(1000))))
            .min()
            // All idle: a look once a second for silent sessions (KCP_IDLE).
            .or_else(|| (!self.kcp_conns.is_empty()).then(|| now + Duration::from_secs(1)))
    }

    /// A KCP connection is going: forget its session in its listener.
    pub(super) fn kcp_closed(&mut self, link: &KcpLink, id: ConnId) {
        if let Some(l) = link.listener.and_then(|l| self.kcp_listeners.get_mut(l)) {
            if l.sessions.get(&link.peer) == Some(&id) {
                l.sessions.remove(&link.peer);
            }
        }
    }

    /// Datagrams dropped and refused on every KCP listener, for `/metrics`.
    pub(super) fn kcp_counts(&self) -> (u64, u64, usize) {
        self.kcp_listeners.iter().fold((0, 0, 0), |(d, r, s), l| {
            (d + l.dropped, r + l.refused, s + l.sessions.len())
        })
    }
}

#[cfg(test)]
mod tests {
    //! KCP through the real reactor: one reactor serves a KCP endpoint and dials it, echoing
    //! what its accepted connections send; the dialed side checks the echoes. Then the same
    //! through a lossy, reordering UDP relay (a thread between the two sockets).
    use super::*;
    use crate::reactor::{Io, LinkKind, ReactorConfig};
    use crate::transport::tls;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    const CERT: &[u8] = include_bytes!("../../../conf/rsa.crt");
    const KEY: &[u8] = include_bytes!("../../../conf/rsa.key");
    const LISTENER: u32 = 7;

    #[derive(Default)]
    struct Seen {
        /// Bytes of echoed payloads received per dialed connection, in order.
        echoed: Vec<u8>,
        accepted: usize,
        closes: Vec<CloseReason>,
    }

    struct Echo {
        seen: Arc<Mutex<Seen>>,
        stop: Arc<AtomicBool>,
        /// What each dialed connection sends when it opens.
        payloads: Vec<Vec<u8>>,
    }

    impl Handler for Echo {
        fn on_open(&mut self, io: &mut dyn Io, _: Instant, conn: ConnId, o: Origin, _: SocketAddr) {
            match o {
                Origin::Accepted { .. } => self.seen.lock().unwrap().accepted += 1,
                Origin::Dialed { .. } => {
                    for p in &self.payloads {
                        io.send(conn, p);
                    }
                }
            }
        }
        fn on_frame(&mut self, io: &mut dyn Io, _: Instant, conn: ConnId, payload: &[u8]) {
            if payload.first() == Some(&b'E') {
                self.seen.lock().unwrap().echoed.extend_from_slice(payload);
            } else {
                let mut e = vec![b'E'];
                e.extend_from_slice(payload);
                io.send(conn, &e);
            }
        }
        fn on_close(&mut self, _: &mut dyn Io, _: Instant, _: ConnId, r: &CloseReason) {
            self.seen.lock().unwrap().closes.push(r.clone());
        }
        fn on_tick(&mut self, _: &mut dyn Io, _: Instant, _: SystemTime) {}
        fn next_deadline(&self) -> Option<Instant> {
            Some(Instant::now() + Duration::from_millis(50))
        }
        fn on_signal(&mut self, _: &mut dyn Io, _: Instant, _: i32) {}
        fn should_stop(&self) -> bool {
            self.stop.load(Ordering::SeqCst)
        }
    }

    fn opts() -> LinkOpts {
        LinkOpts {
            kind: LinkKind::Client {
                output_limit: 64 << 20,
            },
            max_frame: 8 << 20,
            group: 0,
            heartbeat: None,
        }
    }

    /// A UDP relay on a port of its own: forwards between the first client address it hears
    /// and `server`, dropping `loss` of the datagrams and holding back every seventh for the
    /// next one (reordering). Stops with `stop`.
    fn relay(server: SocketAddr, loss: u64, stop: Arc<AtomicBool>) -> SocketAddr {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut client: Option<SocketAddr> = None;
            let mut rng = crate::rng::Rng::new(11);
            let mut held: Option<(Vec<u8>, SocketAddr)> = None;
            let mut buf = [0u8; 2048];
            let mut n_seen = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let to = if from == server {
                    match client {
                        Some(c) => c,
                        None => continue,
                    }
                } else {
                    client.get_or_insert(from);
                    server
                };
                if rng.below(100) < loss {
                    continue;
                }
                n_seen += 1;
                if n_seen.is_multiple_of(7) && held.is_none() {
                    held = Some((buf[..n].to_vec(), to));
                    continue;
                }
                let _ = sock.send_to(&buf[..n], to);
                if let Some((d, t)) = held.take() {
                    let _ = sock.send_to(&d, t);
                }
            }
        });
        addr
    }

    fn run_echo(spec_server: StackSpec, spec_client: StackSpec, loss: Option<u64>) {
        let mut r = Reactor::new(ReactorConfig::default()).unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = r
            .add_kcp_listener(udp, LISTENER, opts(), spec_server)
            .unwrap();
        let relay_stop = Arc::new(AtomicBool::new(false));
        let target = match loss {
            Some(l) => relay(addr, l, relay_stop.clone()),
            None => addr,
        };
        let payloads: Vec<Vec<u8>> = (0..40u32)
            .map(|i| {
                (0..(i * 997 % 20_000 + 1))
                    .map(|j| (i + j) as u8 | 1)
                    .collect()
            })
            .collect();
        let want: Vec<u8> = payloads
            .iter()
            .flat_map(|p| std::iter::once(b'E').chain(p.iter().copied()))
            .collect();
        r.add_kcp_dial(target, 1, opts(), spec_client);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut h = Echo {
            seen: seen.clone(),
            stop: stop.clone(),
            payloads,
        };
        let t = std::thread::spawn(move || {
            r.run(&mut h).unwrap();
            r
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.lock().unwrap().echoed.len() < want.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
        relay_stop.store(true, Ordering::SeqCst);
        let r = t.join().unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.accepted, 1, "one session at the listener");
        assert!(seen.closes.is_empty(), "{:?}", seen.closes);
        assert_eq!(seen.echoed.len(), want.len(), "loss {loss:?}");
        assert!(seen.echoed == want, "echoes arrive whole and in order");
        let (dropped, refused, sessions) = r.kcp_counts();
        assert_eq!((dropped, refused, sessions), (0, 0, 1));
    }

    #[test]
    fn a_kcp_dial_and_listener_carry_frames_both_ways() {
        run_echo(StackSpec::default(), StackSpec::default(), None);
    }

    #[test]
    fn kcp_with_tls_and_snappy_through_a_lossy_reordering_relay() {
        let server = StackSpec {
            tls_server: Some(tls::server_config(CERT, KEY).unwrap()),
            snappy: true,
            ..StackSpec::default()
        };
        let client = StackSpec {
            tls_client: Some((tls::client_config(CERT).unwrap(), "127.0.0.1".into())),
            snappy: true,
            ..StackSpec::default()
        };
        run_echo(server, client, Some(10));
    }

    /// A first datagram that opens a session: an FEC data packet carrying one KCP PUSH
    /// segment of conv `conv` (kcp-go's layout: seqid, flag 0xf1, size, then the segment).
    fn opening_datagram(conv: u32) -> Vec<u8> {
        let mut seg = Vec::new();
        seg.extend_from_slice(&conv.to_le_bytes());
        seg.extend_from_slice(&[81, 0]); // PUSH, frg 0
        seg.extend_from_slice(&32u16.to_le_bytes()); // wnd
        seg.extend_from_slice(&0u32.to_le_bytes()); // ts
        seg.extend_from_slice(&0u32.to_le_bytes()); // sn
        seg.extend_from_slice(&0u32.to_le_bytes()); // una
        seg.extend_from_slice(&6u32.to_le_bytes()); // len
        seg.extend_from_slice(&[2, 0, 0, 0, 0xd1, 0x07]); // a 2001 heartbeat frame
        let mut d = Vec::new();
        d.extend_from_slice(&0u32.to_le_bytes()); // seqid
        d.extend_from_slice(&0xf1u16.to_le_bytes());
        d.extend_from_slice(&((seg.len() + 2) as u16).to_le_bytes());
        d.extend_from_slice(&seg);
        d
    }

    #[test]
    fn a_flood_from_many_addresses_opens_at_most_the_session_limit() {
        let mut r = Reactor::new(ReactorConfig {
            kcp_max_sessions: 20,
            ..ReactorConfig::default()
        })
        .unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = r
            .add_kcp_listener(udp, LISTENER, opts(), StackSpec::default())
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut h = Echo {
            seen: seen.clone(),
            stop: stop.clone(),
            payloads: Vec::new(),
        };
        let t = std::thread::spawn(move || {
            r.run(&mut h).unwrap();
            r
        });
        // 60 addresses, each sending a valid opening packet.
        let socks: Vec<std::net::UdpSocket> = (0..60)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for (i, s) in socks.iter().enumerate() {
            s.send_to(&opening_datagram(0x1000 + i as u32), addr)
                .unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        let r = t.join().unwrap();
        let (dropped, _, sessions) = r.kcp_counts();
        assert_eq!(sessions, 20, "the limit");
        assert_eq!(seen.lock().unwrap().accepted, 20);
        assert_eq!(dropped, 40, "the rest dropped and counted");
    }

    #[test]
    fn garbage_datagrams_open_no_session_and_cost_nothing() {
        let mut r = Reactor::new(ReactorConfig::default()).unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = r
            .add_kcp_listener(udp, LISTENER, opts(), StackSpec::default())
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut h = Echo {
            seen: seen.clone(),
            stop: stop.clone(),
            payloads: Vec::new(),
        };
        let t = std::thread::spawn(move || {
            r.run(&mut h).unwrap();
            r
        });
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut rng = crate::rng::Rng::new(5);
        for i in 0..500usize {
            let d: Vec<u8> = (0..(i % 60)).map(|_| rng.below(256) as u8).collect();
            s.send_to(&d, addr).unwrap();
            if i % 50 == 49 {
                // Paced, so the kernel's socket buffer does not drop them first.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        let r = t.join().unwrap();
        assert_eq!(seen.lock().unwrap().accepted, 0);
        let (dropped, _, sessions) = r.kcp_counts();
        assert_eq!(sessions, 0);
        assert!(dropped >= 450, "{dropped} of 500 dropped");
    }
}
