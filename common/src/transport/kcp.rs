//! KCP over UDP, wire-compatible with xtaci/kcp-go v5.4.19 as GoWorld uses it: the KCP ARQ of
//! kcp-go's `kcp.go` under the FEC packet layer of its `sess.go` and `fec.go` ([`super::fec`]),
//! without block encryption. Sans-IO: datagrams and a u32 millisecond clock go in, datagrams
//! come out through a callback, and the reactor owns the socket and the clock.
//!
//! GoWorld's gate listens with `ListenWithOptions(addr, nil, 10, 3)` and its clients dial with
//! `DialWithOptions(addr, nil, 10, 3)`; both sides then set `SetNoDelay(1, 10, 2, 1)`,
//! `SetStreamMode(true)`, `SetWriteDelay(true)` and `SetACKNoDelay(true)` and leave the
//! windows at 32 segments. [`KcpConfig::goworld`] is that.
//!
//! # The segment
//! Every KCP segment is a 24-byte header, little-endian, then `len` bytes of data:
//! `[conv u32][cmd u8][frg u8][wnd u16][ts u32][sn u32][una u32][len u32]`. `cmd` is PUSH (81,
//! data), ACK (82), WASK (83, asking the peer's window) or WINS (84, telling ours); `wnd` is
//! the sender's free receive window in segments, `una` the first sequence number it has not
//! received, `ts` a send time the ACK echoes. Segments are packed into one output buffer up to
//! the MTU (1400 bytes, the FEC header included, so a segment carries at most 1368 bytes of
//! stream with FEC on).
//!
//! # The packet layer
//! With FEC on (GoWorld), every output buffer becomes one FEC data packet and every ten are
//! followed by three parity packets ([`super::fec`]); no CRC or nonce is written, since those
//! belong to block encryption. Input must be at least 32 bytes (the 8-byte FEC header room
//! and one segment header, kcp-go's read-loop check) and at most 1500 (kcp-go's read buffer).
//! A data packet goes to the decoder's queue and straight to KCP; data shards the decoder
//! rebuilds go to KCP too, as not "regular": they neither update the peer's window nor give an
//! RTT sample. kcp-go's listener creates a session for an unknown address only from a data
//! packet, with the conv of its first segment ([`conv_of`]).
//!
//! # kcp-go's KCP against skywind3000's ikcp
//! kcp-go's `kcp.go` is ikcp with changes; these matter here (none breaks interop with ikcp,
//! which the tests check against an ikcp port; against kcp-go itself they check the
//! datagrams byte for byte):
//! * the session runs `flush` on a timer whose next delay is what `flush` returns (the
//!   interval, or sooner when a segment's resend time comes first); `Update`/`Check` and
//!   `ts_flush` are unused. [`KcpSession::update`] and [`KcpSession::next_update`] are that.
//! * an ACK marks its segment acked (skipped by later flushes) and it leaves the send buffer
//!   only once `una` passes it;
//! * fast retransmit as in ikcp, plus an "early retransmit": a segment with any fast-ack
//!   count is resent by a flush that put no new segment in flight;
//! * in nodelay mode a timeout adds half the current RTO (`rx_rto / 2`) to the segment's RTO;
//!   new segments wait exactly one RTO before their first resend;
//! * the RTT sample is the last ACK's echoed `ts` of a datagram, only for regular packets;
//!   the peer's window is only taken from regular packets;
//! * when acknowledging, ACKs for sequence numbers below `rcv_nxt` are left out except the
//!   last one of the list (`una` covers them);
//! * with ACK-nodelay, every input that queued ACKs flushes them at once;
//! * default windows of 32 segments both ways (ikcp receives 128), no fast-resend limit.
//!
//! GoWorld turns congestion control off (`nc = 1`), so no congestion window is kept: the
//! send window is `min(snd_wnd, rmt_wnd)`. Only stream mode is implemented: small sends are
//! merged into the last queued segment and every segment has `frg = 0`; received segments are
//! one byte stream.
//!
//! # Limits
//! Received segments are only kept inside the receive window (`rcv_wnd` segments in the
//! reorder buffer, `rcv_wnd` in the ready queue, which the peer stops filling while
//! [`KcpSession::recv`] is not called), each at most one datagram long; the FEC queue keeps
//! at most three groups. Segment lengths are checked against the datagram before anything is
//! copied. Queued output is capped by [`KcpConfig::send_limit`]. A bad datagram is dropped
//! and counted, never a panic, and never costs the session (UDP sources can be forged).

use std::collections::VecDeque;

use super::fec::{
    self, FecDecoder, FecEncoder, FEC_HEADER, FEC_HEADER_PLUS2, MTU_LIMIT, TYPE_DATA, TYPE_PARITY,
};
use super::LayerError;

/// Bytes of a KCP segment header.
pub const KCP_OVERHEAD: usize = 24;

const CMD_PUSH: u8 = 81;
const CMD_ACK: u8 = 82;
const CMD_WASK: u8 = 83;
const CMD_WINS: u8 = 84;
const ASK_SEND: u32 = 1;
const ASK_TELL: u32 = 2;
const RTO_NDL: u32 = 30;
const RTO_MIN: u32 = 100;
const RTO_DEF: u32 = 200;
const RTO_MAX: u32 = 60_000;
const PROBE_INIT: u32 = 7_000;
const PROBE_LIMIT: u32 = 120_000;
/// ACKs queued past this many (only possible without ACK-nodelay) are flushed at once rather
/// than held for the timer, so a flood of duplicate segments cannot grow the list.
const ACKLIST_LIMIT: usize = 1024;

/// `later - earlier` on the wrapping u32 clock or sequence space.
fn diff(later: u32, earlier: u32) -> i32 {
    later.wrapping_sub(earlier) as i32
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The fields of a segment header, in wire order (`frg` is always 0 in stream mode).
#[derive(Debug, Clone, Copy)]
struct Header {
    conv: u32,
    cmd: u8,
    wnd: u16,
    ts: u32,
    sn: u32,
    una: u32,
    len: u32,
}

impl Header {
    /// Writes the 24 header bytes into `dst[..24]`.
    fn write(&self, dst: &mut [u8]) {
        dst[0..4].copy_from_slice(&self.conv.to_le_bytes());
        dst[4] = self.cmd;
        dst[5] = 0; // frg
        dst[6..8].copy_from_slice(&self.wnd.to_le_bytes());
        dst[8..12].copy_from_slice(&self.ts.to_le_bytes());
        dst[12..16].copy_from_slice(&self.sn.to_le_bytes());
        dst[16..20].copy_from_slice(&self.una.to_le_bytes());
        dst[20..24].copy_from_slice(&self.len.to_le_bytes());
    }
}

/// How a KCP session is set up. [`KcpConfig::goworld`] is GoWorld's; the fields are kcp-go's
/// settings of the same names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KcpConfig {
    /// Nodelay mode: minimum RTO 30 ms instead of 100, gentler back-off.
    pub nodelay: bool,
    /// Flush timer interval in ms (clamped to 10..=5000 as kcp-go does).
    pub interval: u32,
    /// Resend a segment once this many later segments were acknowledged; 0 turns it off.
    pub fast_resend: u32,
    /// Send window, in segments.
    pub snd_wnd: u16,
    /// Receive window, in segments.
    pub rcv_wnd: u16,
    /// Largest datagram, in bytes (FEC header included), 50..=1500.
    pub mtu: usize,
    /// A segment sent this many times marks the link dead ([`KcpSession::is_dead`]).
    pub dead_link: u32,
    /// Flush ACKs as soon as an input queued any (kcp-go's `SetACKNoDelay`).
    pub ack_nodelay: bool,
    /// Leave sent data for the next timer flush unless the window is full (kcp-go's
    /// `SetWriteDelay`); off, every send asks for a flush at once.
    pub write_delay: bool,
    /// FEC data and parity shards per group, or `None` for bare KCP datagrams.
    pub fec: Option<(usize, usize)>,
    /// Most bytes of stream queued for sending and not yet acknowledged; a send past it fails.
    /// kcp-go blocks the writer instead; a sans-IO layer reports and lets the caller decide.
    pub send_limit: usize,
}

impl KcpConfig {
    /// GoWorld's gate and client settings: FEC 10 + 3, `SetNoDelay(1, 10, 2, 1)`, stream
    /// mode, write delay, ACK nodelay, kcp-go's default windows (32), MTU (1400) and dead
    /// link (20), and a send limit of 4 MiB (the gate's default client output limit).
    pub fn goworld() -> KcpConfig {
        KcpConfig {
            nodelay: true,
            interval: 10,
            fast_resend: 2,
            snd_wnd: 32,
            rcv_wnd: 32,
            mtu: 1400,
            dead_link: 20,
            ack_nodelay: true,
            write_delay: true,
            fec: Some((10, 3)),
            send_limit: 4 << 20,
        }
    }

    /// Bytes in front of every KCP output buffer: the FEC header and size field, if FEC is on.
    pub fn reserved(&self) -> usize {
        if self.fec.is_some() {
            FEC_HEADER_PLUS2
        } else {
            0
        }
    }

    /// The conv of a datagram that may open a session under this configuration, as kcp-go's
    /// listener decides for an unknown address: at least a full header long, and with FEC on
    /// a data packet (parity packets never open a session); the conv is that of its first
    /// segment. `None`: drop the datagram.
    pub fn conv_of(&self, datagram: &[u8]) -> Option<u32> {
        let r = self.reserved();
        if datagram.len() < r + KCP_OVERHEAD || datagram.len() > MTU_LIMIT {
            return None;
        }
        if self.fec.is_some() && fec::flag(datagram) != Some(TYPE_DATA) {
            return None;
        }
        Some(get_u32(datagram, r))
    }
}

/// [`KcpConfig::conv_of`] for GoWorld's configuration (FEC on): the conv to open a session
/// with for a datagram from an unknown address, or `None` to drop it.
pub fn conv_of(datagram: &[u8]) -> Option<u32> {
    let r = FEC_HEADER_PLUS2;
    if datagram.len() < r + KCP_OVERHEAD
        || datagram.len() > MTU_LIMIT
        || fec::flag(datagram) != Some(TYPE_DATA)
    {
        return None;
    }
    Some(get_u32(datagram, r))
}

/// Counters of one session, for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KcpStats {
    /// Datagrams dropped before KCP: too short or long, not an FEC packet, bad size field.
    pub in_errors: u64,
    /// Datagrams or rebuilt shards KCP rejected (wrong conv, bad length, unknown command).
    pub kcp_in_errors: u64,
    /// Parity packets received.
    pub fec_parity_shards: u64,
    /// Data shards rebuilt from parity and taken by KCP.
    pub fec_recovered: u64,
    /// Rebuilt shards whose size field made no sense.
    pub fec_errs: u64,
    /// Data packets pushed out of the full FEC queue before their group completed.
    pub fec_short_shards: u64,
    /// Segments resent after their RTO ran out.
    pub lost_segs: u64,
    /// Segments resent by fast retransmit.
    pub fast_retrans_segs: u64,
    /// Segments resent by early retransmit.
    pub early_retrans_segs: u64,
}

/// Why KCP refused input (kcp-go's negative returns of `Input`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputError {
    Short(usize),
    Conv(u32),
    Length { len: u32, left: usize },
    Cmd(u8),
}

impl InputError {
    fn to_layer(self, conv: u32) -> LayerError {
        LayerError::Protocol(match self {
            InputError::Short(n) => format!("KCP input of {n} bytes, shorter than a header"),
            InputError::Conv(c) => format!("KCP segment for conv {c}, not {conv}"),
            InputError::Length { len, left } => {
                format!("KCP segment of {len} bytes with {left} left in the datagram")
            }
            InputError::Cmd(c) => format!("KCP segment with unknown command {c}"),
        })
    }
}

#[derive(Debug)]
struct Segment {
    sn: u32,
    ts: u32,
    resendts: u32,
    rto: u32,
    xmit: u32,
    fastack: u32,
    acked: bool,
    data: Vec<u8>,
}

impl Segment {
    fn new(data: Vec<u8>) -> Segment {
        Segment {
            sn: 0,
            ts: 0,
            resendts: 0,
            rto: 0,
            xmit: 0,
            fastack: 0,
            acked: false,
            data,
        }
    }
}

/// The output buffer of one flush: segments are packed from `reserved` up to the MTU, and a
/// full buffer goes to `out` with its reserved room (the FEC layer's) in front.
struct Packer<'a> {
    buf: &'a mut [u8],
    off: usize,
    reserved: usize,
    out: &'a mut dyn FnMut(&mut [u8]),
}

impl Packer<'_> {
    /// Sends the buffer first if `space` more bytes would not fit (kcp-go's `makeSpace`).
    fn make_space(&mut self, space: usize) {
        if self.off + space > self.buf.len() {
            self.flush();
        }
    }

    /// Sends what the buffer holds, if anything.
    fn flush(&mut self) {
        if self.off > self.reserved {
            (self.out)(&mut self.buf[..self.off]);
        }
        self.off = self.reserved;
    }

    fn header(&mut self, h: Header) {
        h.write(&mut self.buf[self.off..]);
        self.off += KCP_OVERHEAD;
    }
}

/// The KCP ARQ state of one conversation (kcp-go's `KCP`, congestion control off).
#[derive(Debug)]
struct Kcp {
    conv: u32,
    mtu: usize,
    mss: usize,
    reserved: usize,
    snd_una: u32,
    snd_nxt: u32,
    rcv_nxt: u32,
    rx_rttvar: i32,
    rx_srtt: i32,
    rx_rto: u32,
    rx_minrto: u32,
    snd_wnd: u32,
    rcv_wnd: u32,
    rmt_wnd: u32,
    probe: u32,
    ts_probe: u32,
    probe_wait: u32,
    interval: u32,
    nodelay: bool,
    fastresend: u32,
    dead_link: u32,
    dead: bool,
    snd_queue: VecDeque<Segment>,
    snd_buf: VecDeque<Segment>,
    rcv_queue: VecDeque<Segment>,
    rcv_buf: VecDeque<Segment>,
    acklist: Vec<(u32, u32)>,
    /// Stream bytes in `snd_queue` and in unacknowledged segments of `snd_buf`.
    snd_bytes: usize,
    buffer: Vec<u8>,
    lost_segs: u64,
    fast_retrans_segs: u64,
    early_retrans_segs: u64,
}

impl Kcp {
    fn new(conv: u32, cfg: &KcpConfig) -> Kcp {
        let reserved = cfg.reserved();
        Kcp {
            conv,
            mtu: cfg.mtu,
            mss: cfg.mtu - KCP_OVERHEAD - reserved,
            reserved,
            snd_una: 0,
            snd_nxt: 0,
            rcv_nxt: 0,
            rx_rttvar: 0,
            rx_srtt: 0,
            rx_rto: RTO_DEF,
            rx_minrto: if cfg.nodelay { RTO_NDL } else { RTO_MIN },
            snd_wnd: u32::from(cfg.snd_wnd),
            rcv_wnd: u32::from(cfg.rcv_wnd),
            rmt_wnd: u32::from(cfg.rcv_wnd),
            probe: 0,
            ts_probe: 0,
            probe_wait: 0,
            interval: cfg.interval.clamp(10, 5000),
            nodelay: cfg.nodelay,
            fastresend: cfg.fast_resend,
            dead_link: cfg.dead_link,
            dead: false,
            snd_queue: VecDeque::new(),
            snd_buf: VecDeque::new(),
            rcv_queue: VecDeque::new(),
            rcv_buf: VecDeque::new(),
            acklist: Vec::new(),
            snd_bytes: 0,
            buffer: Vec::new(),
            lost_segs: 0,
            fast_retrans_segs: 0,
            early_retrans_segs: 0,
        }
    }

    /// Queues stream bytes: the last queued segment is filled up to the MSS first.
    fn send(&mut self, mut data: &[u8]) {
        self.snd_bytes += data.len();
        if let Some(last) = self.snd_queue.back_mut() {
            if last.data.len() < self.mss {
                let n = (self.mss - last.data.len()).min(data.len());
                last.data.extend_from_slice(&data[..n]);
                data = &data[n..];
            }
        }
        while !data.is_empty() {
            let n = self.mss.min(data.len());
            let mut buf = Vec::with_capacity(self.mss);
            buf.extend_from_slice(&data[..n]);
            self.snd_queue.push_back(Segment::new(buf));
            data = &data[n..];
        }
    }

    /// Moves in-order segments from the reorder buffer to the ready queue, within the window.
    fn move_buf(&mut self) {
        while let Some(seg) = self.rcv_buf.front() {
            if seg.sn == self.rcv_nxt && self.rcv_queue.len() < self.rcv_wnd as usize {
                self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                let seg = self.rcv_buf.pop_front().expect("front exists");
                self.rcv_queue.push_back(seg);
            } else {
                break;
            }
        }
    }

    /// Appends the whole ready queue to `out` (kcp-go's `Recv`, one segment per call, until
    /// nothing is ready). Returns the bytes appended.
    fn recv(&mut self, out: &mut Vec<u8>) -> usize {
        let mut n = 0;
        while let Some(seg) = self.rcv_queue.pop_front() {
            let fast_recover = self.rcv_queue.len() + 1 >= self.rcv_wnd as usize;
            out.extend_from_slice(&seg.data);
            n += seg.data.len();
            self.move_buf();
            if self.rcv_queue.len() < self.rcv_wnd as usize && fast_recover {
                // The window reopened: tell the peer at the next flush.
                self.probe |= ASK_TELL;
            }
        }
        n
    }

    /// RFC 6298 smoothing, kcp-go's variant (a sample below the range weighs an eighth).
    fn update_ack(&mut self, rtt: i32) {
        if self.rx_srtt == 0 {
            self.rx_srtt = rtt;
            self.rx_rttvar = rtt >> 1;
        } else {
            let mut delta = rtt.wrapping_sub(self.rx_srtt);
            self.rx_srtt = self.rx_srtt.wrapping_add(delta >> 3);
            if delta < 0 {
                delta = delta.wrapping_neg();
            }
            if rtt < self.rx_srtt.wrapping_sub(self.rx_rttvar) {
                self.rx_rttvar = self
                    .rx_rttvar
                    .wrapping_add(delta.wrapping_sub(self.rx_rttvar) >> 5);
            } else {
                self.rx_rttvar = self
                    .rx_rttvar
                    .wrapping_add(delta.wrapping_sub(self.rx_rttvar) >> 2);
            }
        }
        let rto = (self.rx_srtt as u32)
            .wrapping_add(self.interval.max((self.rx_rttvar as u32).wrapping_shl(2)));
        self.rx_rto = rto.clamp(self.rx_minrto, RTO_MAX);
    }

    fn shrink_buf(&mut self) {
        self.snd_una = match self.snd_buf.front() {
            Some(seg) => seg.sn,
            None => self.snd_nxt,
        };
    }

    fn parse_ack(&mut self, sn: u32) {
        if diff(sn, self.snd_una) < 0 || diff(sn, self.snd_nxt) >= 0 {
            return;
        }
        for seg in self.snd_buf.iter_mut() {
            if sn == seg.sn {
                // Marked and emptied; it leaves the buffer once `una` passes it.
                if !seg.acked {
                    seg.acked = true;
                    self.snd_bytes -= seg.data.len();
                    seg.data = Vec::new();
                }
                break;
            }
            if diff(sn, seg.sn) < 0 {
                break;
            }
        }
    }

    fn parse_fastack(&mut self, sn: u32, ts: u32) {
        if diff(sn, self.snd_una) < 0 || diff(sn, self.snd_nxt) >= 0 {
            return;
        }
        for seg in self.snd_buf.iter_mut() {
            if diff(sn, seg.sn) < 0 {
                break;
            } else if sn != seg.sn && diff(seg.ts, ts) <= 0 {
                seg.fastack += 1;
            }
        }
    }

    fn parse_una(&mut self, una: u32) {
        while let Some(seg) = self.snd_buf.front() {
            if diff(una, seg.sn) > 0 {
                let seg = self.snd_buf.pop_front().expect("front exists");
                self.snd_bytes -= seg.data.len();
            } else {
                break;
            }
        }
    }

    /// Files a PUSH segment inside the window into the reorder buffer (a copy of `data`),
    /// unless it is a duplicate, then moves what became in order.
    fn parse_data(&mut self, sn: u32, ts: u32, data: &[u8]) {
        if diff(sn, self.rcv_nxt.wrapping_add(self.rcv_wnd)) >= 0 || diff(sn, self.rcv_nxt) < 0 {
            return;
        }
        let mut insert_idx = 0;
        let mut repeat = false;
        for (i, seg) in self.rcv_buf.iter().enumerate().rev() {
            if seg.sn == sn {
                repeat = true;
                break;
            }
            if diff(sn, seg.sn) > 0 {
                insert_idx = i + 1;
                break;
            }
        }
        if !repeat {
            let mut seg = Segment::new(data.to_vec());
            seg.sn = sn;
            seg.ts = ts;
            self.rcv_buf.insert(insert_idx, seg);
        }
        self.move_buf();
    }

    /// Takes in the segments of one datagram (kcp-go's `Input`). `regular`: received as is,
    /// not rebuilt from parity. Segments before a bad one are kept, as in kcp-go.
    fn input(&mut self, mut data: &[u8], regular: bool, now: u32) -> Result<(), InputError> {
        if data.len() < KCP_OVERHEAD {
            return Err(InputError::Short(data.len()));
        }
        let mut latest = 0u32;
        let mut acked = false;
        while data.len() >= KCP_OVERHEAD {
            let conv = get_u32(data, 0);
            if conv != self.conv {
                return Err(InputError::Conv(conv));
            }
            let cmd = data[4];
            let wnd = u16::from_le_bytes([data[6], data[7]]);
            let ts = get_u32(data, 8);
            let sn = get_u32(data, 12);
            let una = get_u32(data, 16);
            let len = get_u32(data, 20);
            data = &data[KCP_OVERHEAD..];
            let n = match usize::try_from(len) {
                Ok(n) if n <= data.len() => n,
                _ => {
                    return Err(InputError::Length {
                        len,
                        left: data.len(),
                    })
                }
            };
            if !matches!(cmd, CMD_PUSH | CMD_ACK | CMD_WASK | CMD_WINS) {
                return Err(InputError::Cmd(cmd));
            }
            if regular {
                self.rmt_wnd = u32::from(wnd);
            }
            self.parse_una(una);
            self.shrink_buf();
            match cmd {
                CMD_ACK => {
                    self.parse_ack(sn);
                    self.parse_fastack(sn, ts);
                    acked = true;
                    latest = ts;
                }
                // Inside the window or behind it: ACKed; kept if not behind.
                CMD_PUSH if diff(sn, self.rcv_nxt.wrapping_add(self.rcv_wnd)) < 0 => {
                    self.acklist.push((sn, ts));
                    if diff(sn, self.rcv_nxt) >= 0 {
                        self.parse_data(sn, ts, &data[..n]);
                    }
                }
                CMD_WASK => self.probe |= ASK_TELL,
                _ => {} // WINS: the window was taken above; PUSH past the window: dropped
            }
            data = &data[n..];
        }
        if acked && regular {
            let rtt = diff(now, latest);
            if rtt >= 0 {
                self.update_ack(rtt);
            }
        }
        Ok(())
    }

    fn wnd_unused(&self) -> u16 {
        let used = self.rcv_queue.len();
        if used < self.rcv_wnd as usize {
            (self.rcv_wnd as usize - used) as u16
        } else {
            0
        }
    }

    /// Sends ACKs, window probes and due segments (kcp-go's `flush`). Returns the delay to the
    /// next flush: the interval, or less if a segment's resend time comes first. `out` gets
    /// each output buffer with `reserved` bytes of room in front.
    fn flush(&mut self, now: u32, ack_only: bool, out: &mut dyn FnMut(&mut [u8])) -> u32 {
        if self.buffer.len() != self.mtu {
            self.buffer = vec![0u8; self.mtu];
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        let mut p = Packer {
            buf: &mut buffer,
            off: self.reserved,
            reserved: self.reserved,
            out,
        };
        let wnd = self.wnd_unused();
        let una = self.rcv_nxt;
        // kcp-go's one `seg` for ACKs and probes: the probes reuse the last ACK's sn and ts.
        let mut h = Header {
            conv: self.conv,
            cmd: CMD_ACK,
            wnd,
            ts: 0,
            sn: 0,
            una,
            len: 0,
        };

        let last = self.acklist.len().wrapping_sub(1);
        for (i, &(sn, ts)) in self.acklist.iter().enumerate() {
            p.make_space(KCP_OVERHEAD);
            // Plain comparison, as kcp-go: ACKs below rcv_nxt are covered by una.
            if sn >= self.rcv_nxt || i == last {
                h.sn = sn;
                h.ts = ts;
                p.header(h);
            }
        }
        self.acklist.clear();

        if ack_only {
            p.flush();
            self.buffer = buffer;
            return self.interval;
        }

        if self.rmt_wnd == 0 {
            if self.probe_wait == 0 {
                self.probe_wait = PROBE_INIT;
                self.ts_probe = now.wrapping_add(self.probe_wait);
            } else if diff(now, self.ts_probe) >= 0 {
                self.probe_wait = self.probe_wait.max(PROBE_INIT);
                self.probe_wait += self.probe_wait / 2;
                self.probe_wait = self.probe_wait.min(PROBE_LIMIT);
                self.ts_probe = now.wrapping_add(self.probe_wait);
                self.probe |= ASK_SEND;
            }
        } else {
            self.ts_probe = 0;
            self.probe_wait = 0;
        }
        if self.probe & ASK_SEND != 0 {
            p.make_space(KCP_OVERHEAD);
            h.cmd = CMD_WASK;
            p.header(h);
        }
        if self.probe & ASK_TELL != 0 {
            p.make_space(KCP_OVERHEAD);
            h.cmd = CMD_WINS;
            p.header(h);
        }
        self.probe = 0;

        // No congestion window: what the peer and we allow.
        let cwnd = self.snd_wnd.min(self.rmt_wnd);
        let mut new_segs = 0;
        while diff(self.snd_nxt, self.snd_una.wrapping_add(cwnd)) < 0 {
            let Some(mut seg) = self.snd_queue.pop_front() else {
                break;
            };
            seg.sn = self.snd_nxt;
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
            self.snd_buf.push_back(seg);
            new_segs += 1;
        }

        let resent = if self.fastresend > 0 {
            self.fastresend
        } else {
            u32::MAX
        };
        let mut minrto = self.interval as i32;
        for seg in self.snd_buf.iter_mut() {
            if seg.acked {
                continue;
            }
            let mut needsend = false;
            if seg.xmit == 0 {
                needsend = true;
                seg.rto = self.rx_rto;
                seg.resendts = now.wrapping_add(seg.rto);
            } else if seg.fastack >= resent {
                needsend = true;
                seg.fastack = 0;
                seg.rto = self.rx_rto;
                seg.resendts = now.wrapping_add(seg.rto);
                self.fast_retrans_segs += 1;
            } else if seg.fastack > 0 && new_segs == 0 {
                needsend = true;
                seg.fastack = 0;
                seg.rto = self.rx_rto;
                seg.resendts = now.wrapping_add(seg.rto);
                self.early_retrans_segs += 1;
            } else if diff(now, seg.resendts) >= 0 {
                needsend = true;
                seg.rto = seg.rto.wrapping_add(if self.nodelay {
                    self.rx_rto / 2
                } else {
                    self.rx_rto
                });
                seg.fastack = 0;
                seg.resendts = now.wrapping_add(seg.rto);
                self.lost_segs += 1;
            }
            if needsend {
                seg.xmit += 1;
                seg.ts = now;
                let len = seg.data.len();
                p.make_space(KCP_OVERHEAD + len);
                p.header(Header {
                    conv: self.conv,
                    cmd: CMD_PUSH,
                    wnd,
                    ts: now,
                    sn: seg.sn,
                    una,
                    len: len as u32,
                });
                p.buf[p.off..p.off + len].copy_from_slice(&seg.data);
                p.off += len;
                if seg.xmit >= self.dead_link {
                    self.dead = true;
                }
            }
            let rto = diff(seg.resendts, now);
            if rto > 0 && rto < minrto {
                minrto = rto;
            }
        }
        p.flush();
        self.buffer = buffer;
        minrto as u32
    }

    fn waiting(&self) -> usize {
        self.snd_buf.len() + self.snd_queue.len()
    }
}

/// One KCP conversation over UDP, FEC included: what kcp-go's `UDPSession` does between its
/// socket and its `Read`/`Write`, without the socket, the goroutines or the clock.
///
/// Drive it with [`KcpSession::input`] for every datagram from the peer,
/// [`KcpSession::update`] at [`KcpSession::next_update`], [`KcpSession::send`] for outgoing
/// stream bytes and [`KcpSession::recv`] for incoming ones. Datagrams to send come out of
/// `input` and `update` through their `out` callback, each ready for one `send_to`.
#[derive(Debug)]
pub struct KcpSession {
    kcp: Kcp,
    fec_enc: Option<FecEncoder>,
    fec_dec: Option<FecDecoder>,
    ack_nodelay: bool,
    write_delay: bool,
    send_limit: usize,
    /// When the flush timer fires next; `None` until the first update (kcp-go's updater
    /// fires at once).
    next_flush: Option<u32>,
    /// A send filled the window (or write delay is off): flush at the next update.
    flush_pending: bool,
    stats: KcpStats,
}

impl KcpSession {
    /// A session for conversation `conv`. A client picks a random conv (kcp-go does); the
    /// gate takes it from the first datagram ([`conv_of`]).
    ///
    /// # Panics
    /// On a configuration kcp-go would refuse: an MTU outside 50..=1500, zero windows,
    /// invalid FEC shard counts (a programming error, not input).
    pub fn new(conv: u32, config: KcpConfig) -> KcpSession {
        assert!(
            (50..=MTU_LIMIT).contains(&config.mtu),
            "KCP MTU {} outside 50..=1500",
            config.mtu
        );
        assert!(config.snd_wnd > 0 && config.rcv_wnd > 0, "zero KCP window");
        let (fec_enc, fec_dec) = match config.fec {
            Some((d, p)) => (
                Some(FecEncoder::new(d, p).expect("valid FEC shard counts")),
                Some(FecDecoder::new(d, p).expect("valid FEC shard counts")),
            ),
            None => (None, None),
        };
        KcpSession {
            kcp: Kcp::new(conv, &config),
            fec_enc,
            fec_dec,
            ack_nodelay: config.ack_nodelay,
            write_delay: config.write_delay,
            send_limit: config.send_limit,
            next_flush: None,
            flush_pending: false,
            stats: KcpStats::default(),
        }
    }

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.kcp.conv
    }

    /// Stream bytes per segment: the MTU less the segment header and the FEC room.
    pub fn mss(&self) -> usize {
        self.kcp.mss
    }

    /// Takes in one datagram from the peer, received at `now_ms`. ACKs it triggers (with ACK
    /// nodelay) go out through `out` at once. Received stream bytes wait for
    /// [`KcpSession::recv`].
    ///
    /// An error rejects this datagram only (or, for a bad segment, the rest of it: the
    /// segments before it were taken, as kcp-go does); it is counted in [`KcpSession::stats`]
    /// and the session goes on, since anyone can send a datagram from the peer's address.
    pub fn input(
        &mut self,
        datagram: &[u8],
        now_ms: u32,
        out: &mut dyn FnMut(&[u8]),
    ) -> Result<(), LayerError> {
        let reserved = self.kcp.reserved;
        if datagram.len() < reserved + KCP_OVERHEAD {
            self.stats.in_errors += 1;
            return Err(LayerError::Protocol(format!(
                "KCP datagram of {} bytes (at least {})",
                datagram.len(),
                reserved + KCP_OVERHEAD
            )));
        }
        if datagram.len() > MTU_LIMIT {
            self.stats.in_errors += 1;
            return Err(LayerError::TooLarge {
                what: "KCP datagram",
                len: datagram.len(),
                max: MTU_LIMIT,
            });
        }
        let Some(dec) = self.fec_dec.as_mut() else {
            let r = self.kcp.input(datagram, true, now_ms);
            return self.after_input(r, now_ms, out);
        };

        let flag = fec::flag(datagram).unwrap_or(0);
        if flag == TYPE_DATA {
            // kcp-go ignores a data packet's size field; it always writes the packet's length.
            let size = u16::from_le_bytes([datagram[6], datagram[7]]) as usize;
            if size != datagram.len() - FEC_HEADER {
                self.stats.in_errors += 1;
                return Err(LayerError::Protocol(format!(
                    "FEC data packet of {} bytes with size field {size}",
                    datagram.len()
                )));
            }
        } else if flag == TYPE_PARITY {
            self.stats.fec_parity_shards += 1;
        } else {
            self.stats.in_errors += 1;
            return Err(LayerError::Protocol(format!(
                "FEC packet with flag {flag:#06x}"
            )));
        }

        let recovered = dec.decode(datagram, now_ms);
        let mut result = Ok(());
        if flag == TYPE_DATA {
            let r = self.kcp.input(&datagram[FEC_HEADER_PLUS2..], true, now_ms);
            result = self.after_input(r, now_ms, out);
        }
        for i in 0..recovered {
            let dec = self.fec_dec.as_ref().expect("FEC is on");
            let Some(shard) = dec.recovered().nth(i) else {
                break;
            };
            let size = if shard.len() >= 2 {
                u16::from_le_bytes([shard[0], shard[1]]) as usize
            } else {
                0
            };
            if size < 2 || size > shard.len() {
                self.stats.fec_errs += 1;
                continue;
            }
            // Not regular: no window update, no RTT sample.
            match self.kcp.input(&shard[2..size], false, now_ms) {
                Ok(()) => {
                    self.stats.fec_recovered += 1;
                    self.ack_now(now_ms, out);
                }
                Err(_) => self.stats.kcp_in_errors += 1,
            }
        }
        self.stats.fec_short_shards = self.fec_dec.as_ref().map_or(0, |d| d.short_shards);
        result
    }

    /// Counts a KCP input error, or flushes the ACKs the input queued.
    fn after_input(
        &mut self,
        r: Result<(), InputError>,
        now_ms: u32,
        out: &mut dyn FnMut(&[u8]),
    ) -> Result<(), LayerError> {
        match r {
            Ok(()) => {
                self.ack_now(now_ms, out);
                Ok(())
            }
            Err(e) => {
                self.stats.kcp_in_errors += 1;
                if self.kcp.acklist.len() > ACKLIST_LIMIT {
                    self.flush_inner(now_ms, true, out);
                }
                Err(e.to_layer(self.kcp.conv))
            }
        }
    }

    /// With ACK nodelay, sends the queued ACKs now (kcp-go's `flush(true)` inside `Input`).
    fn ack_now(&mut self, now_ms: u32, out: &mut dyn FnMut(&[u8])) {
        if (self.ack_nodelay && !self.kcp.acklist.is_empty())
            || self.kcp.acklist.len() > ACKLIST_LIMIT
        {
            self.flush_inner(now_ms, true, out);
        }
    }

    fn flush_inner(&mut self, now_ms: u32, ack_only: bool, out: &mut dyn FnMut(&[u8])) -> u32 {
        let fec_enc = &mut self.fec_enc;
        self.kcp
            .flush(now_ms, ack_only, &mut |buf: &mut [u8]| match fec_enc {
                Some(enc) => enc.encode(buf, out),
                None => out(buf),
            })
    }

    /// Appends every stream byte received in order so far to `out`; returns how many. The
    /// peer may send more only as this drains the receive window.
    pub fn recv(&mut self, out: &mut Vec<u8>) -> usize {
        self.kcp.recv(out)
    }

    /// Queues stream bytes to send. They go out at the next flush: the timer's with write
    /// delay, unless the queue reached the send or the peer's window, which asks
    /// [`KcpSession::next_update`] for an update at once (as kcp-go's `Write` flushes then).
    ///
    /// Fails, queueing nothing, if the unacknowledged bytes would pass
    /// [`KcpConfig::send_limit`]: the peer is not keeping up.
    pub fn send(&mut self, data: &[u8]) -> Result<(), LayerError> {
        if data.is_empty() {
            return Ok(());
        }
        let len = self.kcp.snd_bytes.saturating_add(data.len());
        if len > self.send_limit {
            return Err(LayerError::TooLarge {
                what: "KCP send queue",
                len,
                max: self.send_limit,
            });
        }
        self.kcp.send(data);
        let waiting = self.kcp.waiting();
        if waiting >= self.kcp.snd_wnd as usize
            || waiting >= self.kcp.rmt_wnd as usize
            || !self.write_delay
        {
            self.flush_pending = true;
        }
        Ok(())
    }

    /// Runs the flush timer if it is due at `now_ms` (or a send asked for a flush): sends
    /// ACKs, window probes, new segments within the window and due resends through `out`.
    pub fn update(&mut self, now_ms: u32, out: &mut dyn FnMut(&[u8])) {
        let due = self.next_flush.is_none_or(|t| diff(now_ms, t) >= 0);
        if due {
            let delay = self.flush_inner(now_ms, false, out);
            self.next_flush = Some(now_ms.wrapping_add(delay));
            self.flush_pending = false;
        } else if self.flush_pending {
            // kcp-go's Write flushes without touching the updater's timer.
            self.flush_inner(now_ms, false, out);
            self.flush_pending = false;
        }
    }

    /// Flushes now whatever is due, whatever the timer says (before closing a session,
    /// as kcp-go's `Close` does).
    pub fn flush(&mut self, now_ms: u32, out: &mut dyn FnMut(&[u8])) {
        self.flush_inner(now_ms, false, out);
        self.flush_pending = false;
    }

    /// When [`KcpSession::update`] should run next (a time on the `now_ms` clock; `now_ms`
    /// itself if it is already due). Never later than one interval ahead.
    pub fn next_update(&self, now_ms: u32) -> u32 {
        match self.next_flush {
            Some(t) if !self.flush_pending && diff(t, now_ms) > 0 => t,
            _ => now_ms,
        }
    }

    /// Nothing for a flush to send: no ACKs owed, nothing queued or in flight, no window
    /// probe owed or due (a peer with a zero window is probed on the timer). An idle
    /// session's timer may be skipped: its flush would send nothing. kcp-go runs every
    /// session's timer every interval regardless, which costs a gate with many quiet KCP
    /// clients a wake-up per session per 10 ms; the reactor skips idle sessions instead, and
    /// once one has work (input to acknowledge, a send) its overdue timer runs at once.
    pub fn is_idle(&self) -> bool {
        let k = &self.kcp;
        !self.flush_pending
            && k.acklist.is_empty()
            && k.snd_queue.is_empty()
            && k.snd_buf.is_empty()
            && k.probe == 0
            && k.rmt_wnd != 0
    }

    /// Segments queued or in flight (kcp-go's `WaitSnd`).
    pub fn waiting(&self) -> usize {
        self.kcp.waiting()
    }

    /// Stream bytes queued or in flight and not yet acknowledged.
    pub fn queued_bytes(&self) -> usize {
        self.kcp.snd_bytes
    }

    /// Whether kcp-go's `Write` would take more now: fewer segments waiting than either window.
    /// The caller may stop feeding [`KcpSession::send`] while this is false.
    pub fn writable(&self) -> bool {
        let w = self.kcp.waiting();
        w < self.kcp.snd_wnd as usize && w < self.kcp.rmt_wnd as usize
    }

    /// Stream bytes received and waiting for [`KcpSession::recv`].
    pub fn readable(&self) -> usize {
        self.kcp.rcv_queue.iter().map(|s| s.data.len()).sum()
    }

    /// Whether some segment was sent [`KcpConfig::dead_link`] times without an ACK. kcp-go
    /// v5.4.19 only records this (its sessions never close for it); the caller decides.
    pub fn is_dead(&self) -> bool {
        self.kcp.dead
    }

    /// The session's counters.
    pub fn stats(&self) -> KcpStats {
        KcpStats {
            lost_segs: self.kcp.lost_segs,
            fast_retrans_segs: self.kcp.fast_retrans_segs,
            early_retrans_segs: self.kcp.early_retrans_segs,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use std::cell::RefCell;
    use std::io;
    use std::rc::Rc;

    fn bare() -> KcpConfig {
        KcpConfig {
            fec: None,
            ..KcpConfig::goworld()
        }
    }

    fn collect(v: &mut Vec<Vec<u8>>) -> impl FnMut(&[u8]) + '_ {
        |d: &[u8]| v.push(d.to_vec())
    }

    /// Byte `i` of a test stream.
    fn stream_byte(seed: u8, i: usize) -> u8 {
        ((i as u64).wrapping_mul(2_654_435_761) >> 7) as u8 ^ seed
    }

    #[test]
    fn push_segment_golden_bytes() {
        let mut s = KcpSession::new(0x0102_0304, bare());
        s.send(b"hello").unwrap();
        let mut out = Vec::new();
        s.update(1000, &mut collect(&mut out));
        let mut want = vec![
            0x04, 0x03, 0x02, 0x01, // conv
            81,   // cmd PUSH
            0,    // frg
            32, 0, // wnd: the whole receive window is free
            0xe8, 0x03, 0, 0, // ts 1000
            0, 0, 0, 0, // sn 0
            0, 0, 0, 0, // una 0
            5, 0, 0, 0, // len 5
        ];
        want.extend_from_slice(b"hello");
        assert_eq!(out, vec![want.clone()]);

        // The same with FEC: [seqid 0][0xf1][size = 29 + 2] in front.
        let mut s = KcpSession::new(0x0102_0304, KcpConfig::goworld());
        s.send(b"hello").unwrap();
        let mut out = Vec::new();
        s.update(1000, &mut collect(&mut out));
        let mut fec = vec![0, 0, 0, 0, 0xf1, 0, 31, 0];
        fec.extend_from_slice(&want);
        assert_eq!(out, vec![fec.clone()]);
        assert_eq!(conv_of(&fec), Some(0x0102_0304));
        assert_eq!(KcpConfig::goworld().conv_of(&fec), Some(0x0102_0304));
        assert_eq!(bare().conv_of(&want), Some(0x0102_0304));
        assert_eq!(s.mss(), 1368);
    }

    #[test]
    fn ack_golden_bytes_and_ack_nodelay() {
        let mut s = KcpSession::new(7, bare());
        let mut push = vec![0u8; 24];
        Header {
            conv: 7,
            cmd: CMD_PUSH,
            wnd: 32,
            ts: 555,
            sn: 0,
            una: 0,
            len: 3,
        }
        .write(&mut push);
        push.extend_from_slice(b"abc");
        let mut out = Vec::new();
        s.input(&push, 600, &mut collect(&mut out)).unwrap();
        // ACK at once (ACK nodelay): echoes ts 555 and sn 0; una 1; one segment waits to be
        // read, so 31 of the window are free.
        let want = [
            7, 0, 0, 0, 82, 0, 31, 0, 0x2b, 0x02, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(out, vec![want.to_vec()]);
        let mut got = Vec::new();
        assert_eq!(s.recv(&mut got), 3);
        assert_eq!(got, b"abc");
    }

    #[test]
    fn conv_of_needs_a_whole_data_packet() {
        let mut pkt = vec![0u8; 32];
        pkt[4] = 0xf1;
        pkt[8..12].copy_from_slice(&99u32.to_le_bytes());
        assert_eq!(conv_of(&pkt), Some(99));
        assert_eq!(conv_of(&pkt[..31]), None);
        pkt[4] = 0xf2;
        assert_eq!(conv_of(&pkt), None, "parity packets open no session");
        assert_eq!(conv_of(&vec![0xf1; 1501]), None);
    }

    // ---- a simulated network with a fake clock ----

    /// One direction of a lossy, reordering, duplicating link.
    struct Link {
        rng: Rng,
        loss: f64,
        dup: f64,
        latency: u32,
        jitter: u32,
        queue: Vec<(u32, u64, Vec<u8>)>,
        order: u64,
    }

    impl Link {
        fn new(seed: u64, loss: f64, dup: f64, jitter: u32) -> Link {
            Link {
                rng: Rng::new(seed),
                loss,
                dup,
                latency: 5,
                jitter,
                queue: Vec::new(),
                order: 0,
            }
        }

        fn push(&mut self, now: u32, pkt: Vec<u8>) {
            if self.rng.unit() < self.loss {
                return;
            }
            let copies = if self.rng.unit() < self.dup { 2 } else { 1 };
            for _ in 0..copies {
                let at = now
                    .wrapping_add(self.latency)
                    .wrapping_add(self.rng.below(u64::from(self.jitter) + 1) as u32);
                self.order += 1;
                self.queue.push((at, self.order, pkt.clone()));
            }
        }

        fn due(&mut self, now: u32) -> Vec<Vec<u8>> {
            let mut due: Vec<(u32, u64, Vec<u8>)> = Vec::new();
            let mut i = 0;
            while i < self.queue.len() {
                if diff(now, self.queue[i].0) >= 0 {
                    due.push(self.queue.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            due.sort_by_key(|(at, order, _)| (diff(*at, now), *order));
            due.into_iter().map(|(_, _, p)| p).collect()
        }
    }

    /// A KCP endpoint in the simulation.
    trait End {
        fn input(&mut self, pkt: &[u8], now: u32, out: &mut Vec<Vec<u8>>);
        fn tick(&mut self, now: u32, out: &mut Vec<Vec<u8>>);
        fn send(&mut self, data: &[u8]);
        fn recv(&mut self, buf: &mut Vec<u8>);
        fn can_send(&self) -> bool;
    }

    impl End for KcpSession {
        fn input(&mut self, pkt: &[u8], now: u32, out: &mut Vec<Vec<u8>>) {
            KcpSession::input(self, pkt, now, &mut collect(out)).expect("valid datagram");
        }
        fn tick(&mut self, now: u32, out: &mut Vec<Vec<u8>>) {
            let at = self.next_update(now);
            assert!(diff(at, now) <= self.kcp.interval as i32);
            if diff(now, at) >= 0 {
                self.update(now, &mut collect(out));
            }
        }
        fn send(&mut self, data: &[u8]) {
            KcpSession::send(self, data).unwrap();
        }
        fn recv(&mut self, buf: &mut Vec<u8>) {
            KcpSession::recv(self, buf);
        }
        fn can_send(&self) -> bool {
            self.writable()
        }
    }

    /// The `kcp` crate's output: each write is one datagram.
    #[derive(Clone, Default)]
    struct Sink(Rc<RefCell<Vec<Vec<u8>>>>);

    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The independent implementation: the `kcp` crate (an ikcp port), with GoWorld's
    /// settings.
    struct Theirs {
        kcp: kcp::Kcp<Sink>,
        sink: Sink,
    }

    impl Theirs {
        fn new(conv: u32) -> Theirs {
            let sink = Sink::default();
            let mut kcp = kcp::Kcp::new_stream(conv, sink.clone());
            kcp.set_nodelay(true, 10, 2, true);
            kcp.set_wndsize(32, 32);
            Theirs { kcp, sink }
        }
        fn drain(&mut self, out: &mut Vec<Vec<u8>>) {
            out.append(&mut self.sink.0.borrow_mut());
        }
    }

    impl End for Theirs {
        fn input(&mut self, pkt: &[u8], _now: u32, out: &mut Vec<Vec<u8>>) {
            self.kcp
                .input(pkt)
                .expect("the ikcp port takes our datagram");
            self.drain(out);
        }
        fn tick(&mut self, now: u32, out: &mut Vec<Vec<u8>>) {
            self.kcp.update(now).unwrap();
            self.drain(out);
        }
        fn send(&mut self, data: &[u8]) {
            self.kcp.send(data).unwrap();
        }
        fn recv(&mut self, buf: &mut Vec<u8>) {
            let mut tmp = vec![0u8; 1 << 16];
            while let Ok(n) = self.kcp.recv(&mut tmp) {
                buf.extend_from_slice(&tmp[..n]);
            }
        }
        fn can_send(&self) -> bool {
            self.kcp.wait_snd() < 64
        }
    }

    /// One direction's stream: what was written and what was checked on arrival.
    struct Flow {
        seed: u8,
        total: usize,
        sent: usize,
        got: usize,
    }

    impl Flow {
        fn feed(&mut self, end: &mut dyn End, rng: &mut Rng) {
            while self.sent < self.total && end.can_send() {
                let n = (1 + rng.below(4000) as usize).min(self.total - self.sent);
                let chunk: Vec<u8> = (self.sent..self.sent + n)
                    .map(|i| stream_byte(self.seed, i))
                    .collect();
                end.send(&chunk);
                self.sent += n;
            }
        }
        fn check(&mut self, end: &mut dyn End) {
            let mut buf = Vec::new();
            end.recv(&mut buf);
            for (k, &b) in buf.iter().enumerate() {
                assert_eq!(
                    b,
                    stream_byte(self.seed, self.got + k),
                    "byte {} of stream {}",
                    self.got + k,
                    self.seed
                );
            }
            self.got += buf.len();
            assert!(self.got <= self.total, "more bytes than were sent");
        }
        fn done(&self) -> bool {
            self.got == self.total
        }
    }

    /// Runs `a` and `b` against each other through `ab` / `ba` until both streams of `bytes`
    /// arrived whole; returns the simulated milliseconds it took.
    #[allow(clippy::too_many_arguments)]
    fn exchange(
        a: &mut dyn End,
        b: &mut dyn End,
        ab: &mut Link,
        ba: &mut Link,
        bytes: usize,
        start: u32,
        limit_ms: u32,
    ) -> u32 {
        let mut rng = Rng::new(99);
        let mut fa = Flow {
            seed: 0x11,
            total: bytes,
            sent: 0,
            got: 0,
        };
        let mut fb = Flow {
            seed: 0x77,
            total: bytes,
            sent: 0,
            got: 0,
        };
        let mut out = Vec::new();
        for t in 0..limit_ms {
            let now = start.wrapping_add(t);
            fa.feed(a, &mut rng);
            fb.feed(b, &mut rng);
            for p in ab.due(now) {
                b.input(&p, now, &mut out);
            }
            for p in out.drain(..) {
                ba.push(now, p);
            }
            for p in ba.due(now) {
                a.input(&p, now, &mut out);
            }
            for p in out.drain(..) {
                ab.push(now, p);
            }
            a.tick(now, &mut out);
            for p in out.drain(..) {
                ab.push(now, p);
            }
            b.tick(now, &mut out);
            for p in out.drain(..) {
                ba.push(now, p);
            }
            fa.check(b);
            fb.check(a);
            if fa.done() && fb.done() {
                return t;
            }
        }
        panic!(
            "streams incomplete after {limit_ms} ms: a->b {}/{bytes}, b->a {}/{bytes}",
            fa.got, fb.got
        );
    }

    const MB: usize = 1 << 20;

    #[test]
    fn against_ikcp_clean() {
        let mut ours = KcpSession::new(0x5eed, bare());
        let mut theirs = Theirs::new(0x5eed);
        let t = exchange(
            &mut ours,
            &mut theirs,
            &mut Link::new(1, 0.0, 0.0, 0),
            &mut Link::new(2, 0.0, 0.0, 0),
            3 * MB,
            0,
            120_000,
        );
        assert_eq!(ours.stats().lost_segs, 0);
        assert!(t > 0);
    }

    #[test]
    fn against_ikcp_with_loss() {
        let mut ours = KcpSession::new(0x5eed, bare());
        let mut theirs = Theirs::new(0x5eed);
        exchange(
            &mut ours,
            &mut theirs,
            &mut Link::new(3, 0.10, 0.0, 0),
            &mut Link::new(4, 0.10, 0.0, 0),
            3 * MB,
            0,
            600_000,
        );
        let st = ours.stats();
        assert!(st.lost_segs + st.fast_retrans_segs + st.early_retrans_segs > 0);
        assert!(!ours.is_dead());
    }

    #[test]
    fn against_ikcp_with_reordering_and_duplication() {
        let mut ours = KcpSession::new(0x5eed, bare());
        let mut theirs = Theirs::new(0x5eed);
        exchange(
            &mut ours,
            &mut theirs,
            &mut Link::new(5, 0.05, 0.10, 30),
            &mut Link::new(6, 0.05, 0.10, 30),
            3 * MB,
            0,
            600_000,
        );
    }

    /// Client and gate, both ours with GoWorld's settings: the gate's session is opened from
    /// the client's first datagram as kcp-go's listener does it.
    fn ours_with_fec(
        seed: u64,
        loss: f64,
        dup: f64,
        jitter: u32,
        start: u32,
    ) -> (KcpStats, KcpStats) {
        let mut client = KcpSession::new(0xC0FFEE, KcpConfig::goworld());
        let mut ab = Link::new(seed, loss, dup, jitter);
        let mut ba = Link::new(seed + 1, loss, dup, jitter);
        // The heartbeat GoWorld's client writes first, so the gate's Accept fires.
        client.send(&[0u8; 16]).unwrap();
        let mut out = Vec::new();
        let mut now = start;
        let mut gate = loop {
            client.tick(now, &mut out);
            for p in out.drain(..) {
                ab.push(now, p);
            }
            if let Some(first) = ab.due(now).into_iter().find(|p| conv_of(p).is_some()) {
                let mut gate = KcpSession::new(conv_of(&first).unwrap(), KcpConfig::goworld());
                gate.input(&first, now, &mut collect(&mut out)).unwrap();
                for p in out.drain(..) {
                    ba.push(now, p);
                }
                break gate;
            }
            now = now.wrapping_add(1);
            assert!(diff(now, start) < 10_000, "no datagram opened the session");
        };
        assert_eq!(gate.conv(), 0xC0FFEE);
        let mut hb = Vec::new();
        // The heartbeat bytes come first on the gate's side; the flows start after them.
        while hb.len() < 16 {
            gate.recv(&mut hb);
            let mut o = Vec::new();
            client.tick(now, &mut o);
            for p in o {
                ab.push(now, p);
            }
            for p in ab.due(now) {
                // Duplicates and the lost first packets are fine; only valid input here.
                gate.input(&p, now, &mut collect(&mut out)).unwrap();
            }
            for p in out.drain(..) {
                ba.push(now, p);
            }
            gate.tick(now, &mut out);
            for p in out.drain(..) {
                ba.push(now, p);
            }
            for p in ba.due(now) {
                client.input(&p, now, &mut collect(&mut out)).unwrap();
            }
            for p in out.drain(..) {
                ab.push(now, p);
            }
            now = now.wrapping_add(1);
        }
        assert_eq!(hb, [0u8; 16]);
        exchange(
            &mut client,
            &mut gate,
            &mut ab,
            &mut ba,
            3 * MB,
            now,
            600_000,
        );
        (client.stats(), gate.stats())
    }

    #[test]
    fn ours_with_fec_clean() {
        let (c, g) = ours_with_fec(10, 0.0, 0.0, 0, 0);
        assert_eq!(c.fec_recovered + g.fec_recovered, 0);
        assert!(c.fec_parity_shards > 0 && g.fec_parity_shards > 0);
        assert_eq!(
            c.in_errors + g.in_errors + c.kcp_in_errors + g.kcp_in_errors,
            0
        );
    }

    #[test]
    fn ours_with_fec_recovers_lost_shards() {
        let (c, g) = ours_with_fec(20, 0.10, 0.02, 15, 0);
        assert!(
            c.fec_recovered > 0 && g.fec_recovered > 0,
            "client {c:?} gate {g:?}"
        );
        assert_eq!(
            c.in_errors + g.in_errors + c.kcp_in_errors + g.kcp_in_errors,
            0
        );
    }

    #[test]
    fn ours_with_fec_across_the_clock_wrap() {
        ours_with_fec(30, 0.05, 0.0, 5, u32::MAX - 1500);
    }

    /// The LCG both sides of the differential test below use (Numerical Recipes constants,
    /// top 24 bits out).
    struct Lcg(u32);

    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            self.0 >> 8
        }
    }

    /// Two endpoints with GoWorld's settings (FEC off) exchange a stream each way through a
    /// channel that drops a tenth of the datagrams and delays each by 5..17 ms; both read only
    /// every 50 ms, so the windows fill, close and reopen. Bulk: 1 MB in writes of up to 3000
    /// bytes while the window allows; small: 100 kB in one write of up to 400 bytes a
    /// millisecond, so segments are short and resends pack several into a datagram. Returns
    /// when both streams were whole, the datagrams sent, and an FNV-1a hash over every
    /// datagram's bytes.
    fn arq_run(small: bool) -> (u32, usize, u64) {
        struct Wire {
            rng: Lcg,
            h: u64,
            n: usize,
            seq: usize,
            queue: Vec<(u32, usize, usize, Vec<u8>)>,
        }
        impl Wire {
            fn out(&mut self, now: u32, from: usize, d: &[u8]) {
                for &c in d {
                    self.h ^= u64::from(c);
                    self.h = self.h.wrapping_mul(1_099_511_628_211);
                }
                self.h ^= 0xff;
                self.h = self.h.wrapping_mul(1_099_511_628_211);
                self.n += 1;
                let x = self.rng.next();
                if x.is_multiple_of(10) {
                    return;
                }
                self.seq += 1;
                self.queue
                    .push((now + 5 + x % 13, self.seq, 1 - from, d.to_vec()));
            }
        }
        let mut w = Wire {
            rng: Lcg(11),
            h: 14_695_981_039_346_656_037,
            n: 0,
            seq: 0,
            queue: Vec::new(),
        };
        let mut ks = [
            KcpSession::new(0x1122_3344, bare()),
            KcpSession::new(0x1122_3344, bare()),
        ];
        let total = if small { 100_000 } else { 1_000_000 };
        let (mut sent, mut got) = ([0usize; 2], [0usize; 2]);
        let mut rx = Vec::new();
        let mut now = 0u32;
        while now < 100_000 {
            w.queue.sort_by_key(|p| (p.0, p.1));
            while w.queue.first().is_some_and(|p| p.0 <= now) {
                let (_, _, to, d) = w.queue.remove(0);
                ks[to]
                    .input(&d, now, &mut |o: &[u8]| w.out(now, to, o))
                    .unwrap();
            }
            for (i, k) in ks.iter_mut().enumerate() {
                if k.next_update(now) == now {
                    k.update(now, &mut |o: &[u8]| w.out(now, i, o));
                }
            }
            for (i, k) in ks.iter_mut().enumerate() {
                while sent[i] < total && k.writable() {
                    let mut n = (w.rng.next() % 3000) as usize + 1;
                    if small {
                        n = n % 400 + 1;
                    }
                    let n = n.min(total - sent[i]);
                    let b: Vec<u8> = (0..n).map(|j| (sent[i] + j) as u8).collect();
                    k.send(&b).unwrap();
                    sent[i] += n;
                    // The window filled: kcp-go's Write flushes here.
                    k.update(now, &mut |o: &[u8]| w.out(now, i, o));
                    if small {
                        break;
                    }
                }
            }
            if now.is_multiple_of(50) {
                for (i, k) in ks.iter_mut().enumerate() {
                    rx.clear();
                    k.recv(&mut rx);
                    assert!(rx.iter().enumerate().all(|(j, &b)| b == (got[i] + j) as u8));
                    got[i] += rx.len();
                }
            }
            if got == [total, total] {
                break;
            }
            now += 1;
        }
        assert_eq!(got, [total, total]);
        (now, w.n, w.h)
    }

    #[test]
    fn arq_datagrams_byte_for_byte_as_kcp_go() {
        // kcp-go v5.4.19's KCP, driven the same way (flush on the timer it returns, Input with
        // ACK nodelay, Write's flush when the window fills), finished at the same millisecond
        // with the same datagrams, ts fields included.
        assert_eq!(arq_run(false), (1300, 4794, 10_799_415_962_300_875_294));
        assert_eq!(arq_run(true), (550, 447, 7_204_482_473_276_961_797));
    }

    #[test]
    fn a_session_is_idle_only_with_nothing_to_send_acknowledge_or_resend() {
        let mut a = KcpSession::new(7, bare());
        let mut b = KcpSession::new(7, bare());
        assert!(a.is_idle() && b.is_idle());
        a.send(b"hello").unwrap();
        assert!(!a.is_idle(), "data queued");
        let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
        let mut now = 0;
        a.update(now, &mut |d: &[u8]| to_b.push(d.to_vec()));
        assert!(!a.is_idle(), "data in flight, not acknowledged");
        for d in to_b.drain(..) {
            b.input(&d, now, &mut |o: &[u8]| to_a.push(o.to_vec()))
                .unwrap();
        }
        // b owes an ACK until its next flush (unless it acknowledged at once).
        now += 10;
        b.update(now, &mut |o: &[u8]| to_a.push(o.to_vec()));
        assert!(b.is_idle(), "b acknowledged everything");
        for d in to_a.drain(..) {
            a.input(&d, now, &mut |o: &[u8]| to_b.push(o.to_vec()))
                .unwrap();
        }
        assert!(a.is_idle(), "a's data acknowledged");
        let mut got = Vec::new();
        b.recv(&mut got);
        assert_eq!(got, b"hello");
    }

    // ---- bad input ----

    fn fec_data(conv: u32, seqid: u32, segs: &[u8]) -> Vec<u8> {
        let _ = conv;
        let mut p = Vec::new();
        p.extend_from_slice(&seqid.to_le_bytes());
        p.extend_from_slice(&TYPE_DATA.to_le_bytes());
        p.extend_from_slice(&((segs.len() + 2) as u16).to_le_bytes());
        p.extend_from_slice(segs);
        p
    }

    fn segment(conv: u32, cmd: u8, sn: u32, una: u32, data: &[u8]) -> Vec<u8> {
        let mut s = vec![0u8; 24];
        Header {
            conv,
            cmd,
            wnd: 32,
            ts: 0,
            sn,
            una,
            len: data.len() as u32,
        }
        .write(&mut s);
        s.extend_from_slice(data);
        s
    }

    #[test]
    fn malformed_datagrams_are_rejected_and_counted() {
        let mut s = KcpSession::new(1, KcpConfig::goworld());
        let mut out = Vec::new();
        let mut o = collect(&mut out);
        for n in 0..32 {
            assert!(s.input(&vec![0xf1; n], 0, &mut o).is_err());
        }
        assert_eq!(
            s.input(&vec![0; 1501], 0, &mut o),
            Err(LayerError::TooLarge {
                what: "KCP datagram",
                len: 1501,
                max: 1500
            })
        );
        let good = fec_data(1, 0, &segment(1, CMD_PUSH, 0, 0, b"x"));
        let mut bad_flag = good.clone();
        bad_flag[4] = 0xf3;
        assert!(s.input(&bad_flag, 0, &mut o).is_err());
        let mut bad_size = good.clone();
        bad_size[6] = 200;
        assert!(s.input(&bad_size, 0, &mut o).is_err());
        // A segment length past the end of the datagram.
        let mut long = segment(1, CMD_PUSH, 0, 0, b"xyz");
        long[20] = 250;
        assert!(s.input(&fec_data(1, 1, &long), 0, &mut o).is_err());
        let mut huge = segment(1, CMD_PUSH, 0, 0, b"xyz");
        huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(s.input(&fec_data(1, 2, &huge), 0, &mut o).is_err());
        // Wrong conv, unknown command.
        assert!(s
            .input(
                &fec_data(1, 3, &segment(2, CMD_PUSH, 0, 0, b"x")),
                0,
                &mut o
            )
            .is_err());
        assert!(s
            .input(&fec_data(1, 4, &segment(1, 99, 0, 0, b"x")), 0, &mut o)
            .is_err());
        drop(o);
        let st = s.stats();
        assert_eq!(st.in_errors, 32 + 1 + 1 + 1);
        assert_eq!(st.kcp_in_errors, 4);
        let mut got = Vec::new();
        assert_eq!(s.recv(&mut got), 0, "nothing reached the stream");
        // The session still works.
        s.input(&good, 1, &mut collect(&mut out)).unwrap();
        s.recv(&mut got);
        assert_eq!(got, b"x");
    }

    #[test]
    fn segments_outside_the_window_are_not_kept() {
        let mut s = KcpSession::new(1, bare());
        let mut out = Vec::new();
        let mut rng = Rng::new(5);
        for i in 0..5000u32 {
            // Far ahead, far behind, just inside: never more than the window is kept.
            let sn = match i % 4 {
                0 => rng.next_u64() as u32,
                1 => 1 + rng.below(31) as u32,
                2 => u32::MAX - rng.below(100) as u32,
                _ => 1_000_000 + i,
            };
            let una = rng.next_u64() as u32;
            let mut dgram = Vec::new();
            while dgram.len() + 24 + 40 <= 1400 {
                dgram.extend(segment(
                    1,
                    CMD_PUSH,
                    sn.wrapping_add(dgram.len() as u32),
                    una,
                    &[7; 40],
                ));
            }
            let _ = s.input(&dgram, i, &mut collect(&mut out));
            let ack = segment(1, CMD_ACK, rng.next_u64() as u32, una, &[]);
            let _ = s.input(&ack, i, &mut collect(&mut out));
            assert!(s.kcp.rcv_buf.len() <= 32 && s.kcp.rcv_queue.len() <= 32);
            assert!(s.kcp.acklist.is_empty(), "ACK nodelay flushed them");
            out.clear();
        }
        let mut got = Vec::new();
        s.recv(&mut got);
        // Whatever happened to fall in order is the peer's bytes, and no more than the
        // two windows' worth held at the end of the flood.
        assert!(got.iter().all(|&b| b == 7) && got.len() <= 64 * 40);

        // Without ACK nodelay the ACK list is still bounded.
        let mut s = KcpSession::new(
            1,
            KcpConfig {
                ack_nodelay: false,
                ..bare()
            },
        );
        let mut dgram = Vec::new();
        while dgram.len() + 24 <= 1400 {
            dgram.extend(segment(1, CMD_PUSH, 5, 0, &[]));
        }
        for i in 0..1000 {
            let _ = s.input(&dgram, i, &mut collect(&mut out));
            assert!(s.kcp.acklist.len() <= ACKLIST_LIMIT + 1400 / 24);
        }
    }

    #[test]
    fn flood_of_fec_seqids_stays_within_rxlimit() {
        let mut s = KcpSession::new(1, KcpConfig::goworld());
        let mut out = Vec::new();
        let mut rng = Rng::new(8);
        for i in 0..20_000u32 {
            let len = 32 + rng.below(1500 - 32 + 1) as usize;
            let mut p: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            p[4] = if i % 2 == 0 { 0xf1 } else { 0xf2 };
            p[5] = 0;
            p[6..8].copy_from_slice(&((len - 6) as u16).to_le_bytes());
            if i % 3 == 0 {
                // A valid segment for our conv behind some of them.
                let seg = segment(1, CMD_PUSH, rng.below(64) as u32, 0, &[1, 2, 3]);
                p.truncate(8);
                p.extend(seg);
                let l = p.len();
                p[6..8].copy_from_slice(&((l - 6) as u16).to_le_bytes());
            }
            let _ = s.input(&p, i, &mut collect(&mut out));
            let dec = s.fec_dec.as_ref().unwrap();
            assert!(dec.queued() <= dec.rxlimit());
            out.clear();
        }
        assert!(s.stats().kcp_in_errors > 0);
    }

    #[test]
    fn window_probe_after_a_zero_window() {
        let mut s = KcpSession::new(1, bare());
        let mut out = Vec::new();
        let mut zero = segment(1, CMD_WINS, 0, 0, &[]);
        zero[6] = 0;
        s.input(&zero, 0, &mut collect(&mut out)).unwrap();
        s.send(b"held").unwrap();
        let mut now = 0;
        let mut wask = false;
        while now < 20_000 && !wask {
            out.clear();
            s.update(now, &mut collect(&mut out));
            for d in &out {
                assert_ne!(d[4], CMD_PUSH, "nothing is sent into a zero window");
                wask |= d[4] == CMD_WASK;
            }
            now += 1;
        }
        assert!(wask && (7000..7100).contains(&now), "probe at {now}");
        // The peer answers with its window: the data goes.
        s.input(
            &segment(1, CMD_WINS, 0, 0, &[]),
            now,
            &mut collect(&mut out),
        )
        .unwrap();
        out.clear();
        s.update(now + 10, &mut collect(&mut out));
        assert!(out.iter().any(|d| d[4] == CMD_PUSH));
    }

    #[test]
    fn dead_link_after_twenty_sends() {
        let mut s = KcpSession::new(1, KcpConfig::goworld());
        s.send(b"into the void").unwrap();
        let mut sends = 0;
        let mut now = 0u32;
        while !s.is_dead() && now < 120_000 {
            let at = s.next_update(now);
            if at == now {
                s.update(now, &mut |d: &[u8]| {
                    sends += u32::from(fec::flag(d) == Some(TYPE_DATA))
                });
            }
            now += 1;
        }
        assert!(s.is_dead());
        assert_eq!(sends, 20);
    }

    #[test]
    fn send_limit() {
        let mut s = KcpSession::new(
            1,
            KcpConfig {
                send_limit: 10_000,
                ..bare()
            },
        );
        s.send(&[0; 6000]).unwrap();
        assert!(matches!(
            s.send(&[0; 6000]),
            Err(LayerError::TooLarge {
                len: 12_000,
                max: 10_000,
                ..
            })
        ));
        assert_eq!(s.queued_bytes(), 6000);
        assert_eq!(s.waiting(), 5);
        // Small sends are merged into the last segment.
        s.send(&[0; 10]).unwrap();
        assert_eq!(s.waiting(), 5);
    }
}
