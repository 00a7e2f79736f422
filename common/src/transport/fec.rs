//! kcp-go's forward error correction packet layer (xtaci/kcp-go v5.4.19, `fec.go`), as its
//! sessions use it without block encryption.
//!
//! Every datagram carries a 6-byte header, `[seqid u32][flag u16]`, little-endian:
//!
//! * a data packet (flag `0xf1`) follows it with `[size u16][payload]`, where `size` is the
//!   payload length plus 2 and the payload is one KCP output buffer;
//! * after every `data` data packets come `parity` parity packets (flag `0xf2`), each
//!   carrying the Reed-Solomon parity ([`super::rs`]) of the group's `[size][payload]`
//!   regions, zero-padded to the longest of them. A parity packet is as long as the longest
//!   data packet of its group.
//!
//! Seqids count up by one per packet, data and parity alike, and wrap to zero after the
//! largest multiple of the group size below 2^32, so a group always starts at a multiple of
//! the group size and `seqid % group` is a packet's shard index.
//!
//! The receiver feeds data packets straight to KCP and keeps every packet in an ordered queue
//! of at most `rxlimit` (three groups); once a group has all its data shards it is dropped,
//! and once it has lost data shards but holds at least `data` shards, the lost ones are
//! rebuilt and handed up as well. Duplicates (by seqid) are ignored; packets older than a
//! minute leave the queue's front. All of it is bounded by `rxlimit` packets of at most
//! [`MTU_LIMIT`] bytes each.

use std::collections::VecDeque;

use super::rs::ReedSolomon;

/// Bytes of the FEC header: seqid (4) and flag (2).
pub const FEC_HEADER: usize = 6;
/// The FEC header plus a data packet's size field: what kcp-go reserves in front of every KCP
/// output buffer.
pub const FEC_HEADER_PLUS2: usize = FEC_HEADER + 2;
/// Flag of a data packet.
pub const TYPE_DATA: u16 = 0xf1;
/// Flag of a parity packet.
pub const TYPE_PARITY: u16 = 0xf2;
/// The largest datagram kcp-go reads or builds (its receive buffers are this long).
pub const MTU_LIMIT: usize = 1500;
/// Received packets older than this (milliseconds) leave the queue.
const FEC_EXPIRE: u32 = 60_000;
/// The receive queue holds this many groups' worth of packets.
pub const RX_FEC_MULTI: usize = 3;

/// `later - earlier` on a wrapping u32 clock or sequence, as a signed distance.
fn diff(later: u32, earlier: u32) -> i32 {
    later.wrapping_sub(earlier) as i32
}

fn seqid_of(pkt: &[u8]) -> u32 {
    u32::from_le_bytes([pkt[0], pkt[1], pkt[2], pkt[3]])
}

fn flag_of(pkt: &[u8]) -> u16 {
    u16::from_le_bytes([pkt[4], pkt[5]])
}

/// The sending half: stamps data packets and produces each group's parity packets.
#[derive(Debug)]
pub struct FecEncoder {
    rs: ReedSolomon,
    /// Seqids wrap to zero at this multiple of the group size.
    paws: u32,
    next: u32,
    /// Data shards of the current group so far.
    shard_count: usize,
    /// Longest data packet of the current group, header included.
    max_size: usize,
    /// One parity packet per parity shard, header included, accumulated as the data
    /// shards go out; allocated on first use, zero from `max_size` on.
    parity: Vec<Vec<u8>>,
}

impl FecEncoder {
    /// An encoder for groups of `data` data and `parity` parity shards, first seqid 0.
    pub fn new(data: usize, parity: usize) -> Result<FecEncoder, super::rs::RsError> {
        let rs = ReedSolomon::new(data, parity)?;
        let group = (data + parity) as u32;
        Ok(FecEncoder {
            rs,
            paws: u32::MAX / group * group,
            next: 0,
            shard_count: 0,
            max_size: 0,
            parity: Vec::new(),
        })
    }

    /// The seqid the next packet will carry.
    pub fn next_seqid(&self) -> u32 {
        self.next
    }

    /// Starts the seqids at `seqid` (tests of the wrap-around). Call before the first packet.
    pub fn set_next_seqid(&mut self, seqid: u32) {
        self.next = seqid % self.paws;
    }

    /// Turns `pkt` into a data packet and sends it, then the group's parity packets if it
    /// completes a group. `pkt[..FEC_HEADER_PLUS2]` is the room kcp-go reserves in front of a
    /// KCP output buffer (overwritten here); the KCP bytes follow. `pkt` must be at least
    /// [`FEC_HEADER_PLUS2`] and at most [`MTU_LIMIT`] bytes long; the KCP layer never builds
    /// anything else (longer input is cut to [`MTU_LIMIT`] rather than panicking).
    pub fn encode(&mut self, pkt: &mut [u8], out: &mut dyn FnMut(&[u8])) {
        debug_assert!(pkt.len() >= FEC_HEADER_PLUS2 && pkt.len() <= MTU_LIMIT);
        let len = pkt.len().min(MTU_LIMIT);
        if len < FEC_HEADER_PLUS2 {
            return;
        }
        let pkt = &mut pkt[..len];
        pkt[0..4].copy_from_slice(&self.next.to_le_bytes());
        pkt[4..6].copy_from_slice(&TYPE_DATA.to_le_bytes());
        self.next = self.next.wrapping_add(1);
        pkt[6..8].copy_from_slice(&((len - FEC_HEADER) as u16).to_le_bytes());
        out(pkt);

        if self.parity.is_empty() {
            self.parity = vec![vec![0u8; MTU_LIMIT]; self.rs.parity_shards()];
        }
        for (k, p) in self.parity.iter_mut().enumerate() {
            self.rs.add_to_parity_shard(
                k,
                self.shard_count,
                &pkt[FEC_HEADER..],
                &mut p[FEC_HEADER..len],
            );
        }
        self.shard_count += 1;
        self.max_size = self.max_size.max(len);

        if self.shard_count == self.rs.data_shards() {
            for p in self.parity.iter_mut() {
                p[0..4].copy_from_slice(&self.next.to_le_bytes());
                p[4..6].copy_from_slice(&TYPE_PARITY.to_le_bytes());
                // The seqid wraps only here, at the end of a group.
                self.next = (self.next.wrapping_add(1)) % self.paws;
                out(&p[..self.max_size]);
                p[FEC_HEADER..self.max_size].fill(0);
            }
            self.shard_count = 0;
            self.max_size = 0;
        }
    }
}

/// One received packet in the decoder's queue.
#[derive(Debug)]
struct RxPacket {
    /// The whole packet, header included.
    pkt: Vec<u8>,
    /// Arrival time, for expiry.
    ts: u32,
}

impl RxPacket {
    fn seqid(&self) -> u32 {
        seqid_of(&self.pkt)
    }
    fn flag(&self) -> u16 {
        flag_of(&self.pkt)
    }
    fn data(&self) -> &[u8] {
        &self.pkt[FEC_HEADER..]
    }
}

/// The receiving half: the ordered queue of recent packets and the reconstruction of lost
/// data shards.
#[derive(Debug)]
pub struct FecDecoder {
    rs: ReedSolomon,
    group: usize,
    rxlimit: usize,
    rx: VecDeque<RxPacket>,
    /// Data shards rebuilt by the last [`FecDecoder::decode`], `recovered_len` bytes each.
    recovered: Vec<Vec<u8>>,
    n_recovered: usize,
    recovered_len: usize,
    /// Packets pushed out of a full queue while their group was incomplete and they were data
    /// (kcp-go's `FECShortShards`).
    pub short_shards: u64,
}

impl FecDecoder {
    /// A decoder for groups of `data` data and `parity` parity shards, keeping at most
    /// [`RX_FEC_MULTI`] groups' worth of packets.
    pub fn new(data: usize, parity: usize) -> Result<FecDecoder, super::rs::RsError> {
        let rs = ReedSolomon::new(data, parity)?;
        Ok(FecDecoder {
            rs,
            group: data + parity,
            rxlimit: RX_FEC_MULTI * (data + parity),
            rx: VecDeque::new(),
            recovered: Vec::new(),
            n_recovered: 0,
            recovered_len: 0,
            short_shards: 0,
        })
    }

    /// Packets held in the receive queue (at most `rxlimit`).
    pub fn queued(&self) -> usize {
        self.rx.len()
    }

    /// The queue's limit: three groups.
    pub fn rxlimit(&self) -> usize {
        self.rxlimit
    }

    /// Takes in one FEC packet (data or parity; the caller has checked the flag and that it is
    /// longer than [`FEC_HEADER`] and at most [`MTU_LIMIT`]) received at `now` (ms). Returns how
    /// many data shards it allowed to rebuild; they are then at [`FecDecoder::recovered`], as
    /// `[size u16][payload][zero padding]`, until the next call.
    pub fn decode(&mut self, pkt: &[u8], now: u32) -> usize {
        self.n_recovered = 0;
        if pkt.len() <= FEC_HEADER || pkt.len() > MTU_LIMIT {
            return 0;
        }
        let seqid = seqid_of(pkt);
        let group = self.group as u32;

        // Ordered insertion, searching from the back; a known seqid is a duplicate.
        let mut insert_idx = 0;
        for i in (0..self.rx.len()).rev() {
            let s = self.rx[i].seqid();
            if s == seqid {
                return 0;
            }
            if diff(seqid, s) > 0 {
                insert_idx = i + 1;
                break;
            }
        }
        self.rx.insert(
            insert_idx,
            RxPacket {
                pkt: pkt.to_vec(),
                ts: now,
            },
        );

        // The packet's group, and where in the queue its members can be.
        let shard_begin = seqid.wrapping_sub(seqid % group);
        let shard_end = shard_begin.wrapping_add(group - 1);
        let search_begin = insert_idx.saturating_sub((seqid % group) as usize);
        let search_end = (search_begin + self.group - 1).min(self.rx.len() - 1);

        if search_end + 1 - search_begin >= self.rs.data_shards() {
            let mut present: Vec<Option<usize>> = vec![None; self.group];
            let (mut numshard, mut num_data, mut first, mut maxlen) = (0, 0, 0, 0);
            for i in search_begin..=search_end {
                let p = &self.rx[i];
                let s = p.seqid();
                if diff(s, shard_end) > 0 {
                    break;
                }
                if diff(s, shard_begin) >= 0 {
                    present[(s % group) as usize] = Some(i);
                    numshard += 1;
                    if p.flag() == TYPE_DATA {
                        num_data += 1;
                    }
                    if numshard == 1 {
                        first = i;
                    }
                    maxlen = maxlen.max(p.data().len());
                }
            }

            if num_data == self.rs.data_shards() {
                // Nothing lost: the group is done.
                self.rx.drain(first..first + numshard);
            } else if numshard >= self.rs.data_shards() {
                self.reconstruct(&present, maxlen);
                self.rx.drain(first..first + numshard);
            }
        }

        if self.rx.len() > self.rxlimit {
            if self.rx[0].flag() == TYPE_DATA {
                self.short_shards += 1;
            }
            self.rx.pop_front();
        }

        // Expiry: the run of stale packets at the front.
        while let Some(p) = self.rx.front() {
            if diff(now, p.ts) > FEC_EXPIRE as i32 {
                self.rx.pop_front();
            } else {
                break;
            }
        }
        self.n_recovered
    }

    /// Rebuilds the group's missing data shards from the queue positions in `present`.
    fn reconstruct(&mut self, present: &[Option<usize>], maxlen: usize) {
        let data = self.rs.data_shards();
        let missing = present[..data].iter().filter(|p| p.is_none()).count();
        if self.recovered.len() < missing {
            self.recovered.resize_with(missing, Vec::new);
        }
        for buf in &mut self.recovered[..missing] {
            buf.clear();
            buf.resize(maxlen, 0);
        }
        let shards: Vec<Option<&[u8]>> = present
            .iter()
            .map(|p| p.map(|i| self.rx[i].data()))
            .collect();
        if self
            .rs
            .reconstruct_data(&shards, &mut self.recovered[..missing])
            .is_ok()
        {
            self.n_recovered = missing;
            self.recovered_len = maxlen;
        }
    }

    /// The data shards rebuilt by the last [`FecDecoder::decode`].
    pub fn recovered(&self) -> impl Iterator<Item = &[u8]> {
        self.recovered[..self.n_recovered]
            .iter()
            .map(|b| &b[..self.recovered_len])
    }
}

/// The flag of a packet at least [`FEC_HEADER`] bytes long.
pub fn flag(pkt: &[u8]) -> Option<u16> {
    (pkt.len() >= FEC_HEADER).then(|| flag_of(pkt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reed_solomon_erasure::galois_8::ReedSolomon as Reference;

    /// A fake KCP output buffer of `len` bytes (room for the FEC header included).
    fn kcp_buf(i: usize, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        for (j, x) in b.iter_mut().enumerate().skip(FEC_HEADER_PLUS2) {
            *x = (i * 13 + j * 7) as u8;
        }
        b
    }

    fn encode_all(enc: &mut FecEncoder, bufs: &mut [Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for b in bufs.iter_mut() {
            enc.encode(b, &mut |p| out.push(p.to_vec()));
        }
        out
    }

    #[test]
    fn data_packet_golden_bytes() {
        let mut enc = FecEncoder::new(10, 3).unwrap();
        let mut pkt = vec![0xEEu8; 8];
        pkt.extend_from_slice(&[1, 2, 3, 4, 5]);
        let mut out = Vec::new();
        enc.encode(&mut pkt, &mut |p| out.push(p.to_vec()));
        enc.encode(&mut pkt, &mut |p| out.push(p.to_vec()));
        assert_eq!(
            out[0],
            [0, 0, 0, 0, 0xf1, 0, 7, 0, 1, 2, 3, 4, 5],
            "[seqid 0][0xf1][size = 5 + 2][payload]"
        );
        assert_eq!(out[1][..8], [1, 0, 0, 0, 0xf1, 0, 7, 0]);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn one_group_byte_for_byte_as_kcp_go_writes_it() {
        // Written by kcp-go v5.4.19's fecEncoder (10, 3, no crypto header) on top of
        // klauspost/reedsolomon v1.9.3, for data packets of 32 + (7i mod 11) bytes whose
        // bytes past the 8 reserved ones are (31i + 17j) mod 256.
        let mut enc = FecEncoder::new(10, 3).unwrap();
        let mut bufs: Vec<Vec<u8>> = (0..10)
            .map(|i| {
                let n = 8 + 24 + (i * 7) % 11;
                (0..n)
                    .map(|j| if j < 8 { 0 } else { (i * 31 + j * 17) as u8 })
                    .collect()
            })
            .collect();
        let out = encode_all(&mut enc, &mut bufs);
        assert_eq!(
            hex(&out[0]),
            "00000000f1001a008899aabbccddeeff102132435465768798a9bacbdcedfe0f"
        );
        assert_eq!(
            hex(&out[9]),
            "09000000f10022009fb0c1d2e3f405162738495a6b7c8d9eafc0d1e2f30415263748596a7b8c9dae"
        );
        assert_eq!(
            out[10..].iter().map(|p| hex(p)).collect::<Vec<_>>(),
            [
                "0a000000f200e900976f7b9e81a3055a873ebc54a8c6aba0c7306b0191fc1545973a5ee5064961fd44f8",
                "0b000000f200fe00344e247f1282d23b79b68efa468e014144d13420029dc2646952e15fe681cedc30e7",
                "0c000000f200b200bb7a48c7b636858bcc2e70714ee8b2dc2bb2584fa6fe9583dc972af30dc72af3ba9c",
            ]
        );
    }

    /// A 32-bit LCG (Numerical Recipes constants), top 24 bits out: easy to reproduce
    /// anywhere, which this test needs.
    struct Lcg(u32);

    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            self.0 >> 8
        }
    }

    #[test]
    fn decoder_follows_kcp_go_call_for_call() {
        // 400 data packets of 32..231 bytes and their parity; each packet lost with
        // probability 1/10, duplicated (later) with 1/20, delivered out of order within a
        // window of ten; the clock steps 237 ms a call with a 61 s pause every 97 calls. kcp-go
        // v5.4.19's fecDecoder, fed the same sequence, rebuilt 48 shards, ended with 17
        // packets queued, and gave this FNV-1a hash over (rebuilt count, queue length,
        // rebuilt bytes) of every call.
        let mut enc = FecEncoder::new(10, 3).unwrap();
        let mut r = Lcg(7);
        let mut pkts: Vec<Vec<u8>> = Vec::new();
        for _ in 0..400 {
            let n = 8 + 24 + (r.next() % 200) as usize;
            let mut b = vec![0u8; n];
            for x in b.iter_mut().skip(8) {
                *x = r.next() as u8;
            }
            enc.encode(&mut b, &mut |p| pkts.push(p.to_vec()));
        }
        let mut events: Vec<(usize, usize)> = Vec::new();
        for i in 0..pkts.len() {
            let x = r.next();
            if x.is_multiple_of(10) {
                continue;
            }
            events.push((i * 4 + (r.next() % 40) as usize, i));
            if x % 20 == 1 {
                events.push((i * 4 + (r.next() % 200) as usize, i));
            }
        }
        events.sort_by_key(|e| e.0); // stable, as Go's SliceStable
        let mut dec = FecDecoder::new(10, 3).unwrap();
        let mut h: u64 = 14_695_981_039_346_656_037;
        let mut mix = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(1_099_511_628_211);
        };
        let mut total = 0;
        for (k, &(_, i)) in events.iter().enumerate() {
            let now = (k * 237 + 61_000 * ((k + 47) / 97)) as u32;
            let n = dec.decode(&pkts[i], now);
            mix(n as u8);
            mix(dec.queued() as u8);
            for rec in dec.recovered() {
                rec.iter().for_each(|&c| mix(c));
            }
            total += n;
        }
        assert_eq!(
            (events.len(), total, dec.queued(), h),
            (505, 48, 17, 18_020_738_302_059_642_438)
        );
    }

    #[test]
    fn parity_packets_follow_each_group_and_match_reference() {
        let mut enc = FecEncoder::new(10, 3).unwrap();
        let lens = [40, 1400, 32, 33, 700, 1400, 90, 41, 1000, 36];
        for round in 0..3u32 {
            let mut bufs: Vec<Vec<u8>> = lens
                .iter()
                .enumerate()
                .map(|(i, &l)| kcp_buf(i + round as usize, l))
                .collect();
            let out = encode_all(&mut enc, &mut bufs);
            assert_eq!(out.len(), 13);
            for (k, p) in out.iter().enumerate() {
                assert_eq!(seqid_of(p), round * 13 + k as u32);
                assert_eq!(flag_of(p), if k < 10 { TYPE_DATA } else { TYPE_PARITY });
            }
            // Parity packets are as long as the longest data packet.
            assert!(out[10..].iter().all(|p| p.len() == 1400));
            let mut shards: Vec<Vec<u8>> = out[..10]
                .iter()
                .map(|p| {
                    let mut s = p[FEC_HEADER..].to_vec();
                    s.resize(1400 - FEC_HEADER, 0);
                    s
                })
                .collect();
            shards.extend(std::iter::repeat_n(vec![0u8; 1400 - FEC_HEADER], 3));
            Reference::new(10, 3).unwrap().encode(&mut shards).unwrap();
            for k in 0..3 {
                assert_eq!(
                    &out[10 + k][FEC_HEADER..],
                    &shards[10 + k][..],
                    "round {round}"
                );
            }
        }
    }

    #[test]
    fn seqids_wrap_at_the_last_whole_group() {
        let mut enc = FecEncoder::new(10, 3).unwrap();
        let paws = u32::MAX / 13 * 13;
        enc.set_next_seqid(paws - 13);
        let mut bufs: Vec<Vec<u8>> = (0..20).map(|i| kcp_buf(i, 40)).collect();
        let out = encode_all(&mut enc, &mut bufs);
        let seqids: Vec<u32> = out.iter().map(|p| seqid_of(p)).collect();
        assert_eq!(seqids[12], paws - 1);
        assert_eq!(&seqids[13..16], &[0, 1, 2]);
        assert_eq!(enc.next_seqid(), 13);
    }

    /// Sends `n` groups through the encoder, drops the packets `lose` picks, and returns what
    /// the decoder handed up: data packets' payloads plus rebuilt ones, and the rebuilt count.
    fn run_lossy(lose: impl Fn(usize) -> bool, groups: usize) -> (Vec<Vec<u8>>, usize, FecDecoder) {
        let mut enc = FecEncoder::new(10, 3).unwrap();
        let mut dec = FecDecoder::new(10, 3).unwrap();
        let mut bufs: Vec<Vec<u8>> = (0..groups * 10).map(|i| kcp_buf(i, 32 + i % 50)).collect();
        let sent = encode_all(&mut enc, &mut bufs);
        let mut got = Vec::new();
        let mut rebuilt = 0;
        for (i, p) in sent.iter().enumerate() {
            if lose(i) {
                continue;
            }
            let n = dec.decode(p, 0);
            if flag_of(p) == TYPE_DATA {
                got.push(p[FEC_HEADER_PLUS2..].to_vec());
            }
            for r in dec.recovered() {
                let size = u16::from_le_bytes([r[0], r[1]]) as usize;
                got.push(r[2..size].to_vec());
            }
            rebuilt += n;
        }
        (got, rebuilt, dec)
    }

    #[test]
    fn lost_data_shards_are_rebuilt() {
        // Lose data shards 0, 4 and 9 of every group: three losses, three parities.
        let (mut got, rebuilt, _) = run_lossy(|i| matches!(i % 13, 0 | 4 | 9), 5);
        assert_eq!(rebuilt, 15);
        let mut want: Vec<Vec<u8>> = (0..50)
            .map(|i| kcp_buf(i, 32 + i % 50)[FEC_HEADER_PLUS2..].to_vec())
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn four_losses_are_not_rebuilt_and_the_queue_stays_bounded() {
        let (got, rebuilt, dec) = run_lossy(|i| i % 13 < 4, 20);
        assert_eq!(rebuilt, 0);
        assert_eq!(got.len(), 20 * 6);
        assert!(dec.queued() <= dec.rxlimit());
        assert!(dec.short_shards > 0);
    }

    #[test]
    fn duplicates_are_ignored() {
        let mut enc = FecEncoder::new(10, 3).unwrap();
        let mut dec = FecDecoder::new(10, 3).unwrap();
        let mut bufs: Vec<Vec<u8>> = (0..10).map(|i| kcp_buf(i, 40)).collect();
        let sent = encode_all(&mut enc, &mut bufs);
        // Shards 0 and 1 lost, parity 10 arrives three times: still two short of a rebuild
        // until the second parity.
        for p in &sent[2..10] {
            assert_eq!(dec.decode(p, 0), 0);
        }
        for _ in 0..3 {
            assert_eq!(dec.decode(&sent[10], 0), 0);
        }
        assert_eq!(dec.queued(), 9);
        assert_eq!(dec.decode(&sent[11], 0), 2);
        assert_eq!(dec.queued(), 0);
        // The late third parity is kept on its own until it expires.
        assert_eq!(dec.decode(&sent[12], 1000), 0);
        assert_eq!(dec.queued(), 1);
        let mut other = sent[3].clone();
        other[0..4].copy_from_slice(&1000u32.to_le_bytes());
        dec.decode(&other, 1000 + FEC_EXPIRE + 1);
        assert_eq!(dec.queued(), 1, "the stale parity left the queue");
    }

    #[test]
    fn flood_of_distinct_seqids_stays_within_rxlimit() {
        let mut dec = FecDecoder::new(10, 3).unwrap();
        let mut pkt = vec![0u8; MTU_LIMIT];
        pkt[4..6].copy_from_slice(&TYPE_PARITY.to_le_bytes());
        let mut x: u32 = 12345;
        for i in 0..20_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let seqid = if i % 2 == 0 { x } else { i };
            pkt[0..4].copy_from_slice(&seqid.to_le_bytes());
            pkt[4..6]
                .copy_from_slice(&(if i % 3 == 0 { TYPE_DATA } else { TYPE_PARITY }).to_le_bytes());
            let len = 7 + (x as usize % (MTU_LIMIT - 7));
            dec.decode(&pkt[..len], i);
            assert!(dec.queued() <= dec.rxlimit());
        }
        // Near the wrap of the u32 seqid space too.
        for s in [u32::MAX, u32::MAX - 1, 0, 1, u32::MAX / 13 * 13, 7] {
            pkt[0..4].copy_from_slice(&s.to_le_bytes());
            dec.decode(&pkt[..100], 0);
        }
        assert!(dec.queued() <= dec.rxlimit());
        assert_eq!(dec.decode(&pkt[..6], 0), 0);
        assert_eq!(dec.decode(&pkt[..0], 0), 0);
    }

    #[test]
    fn header_checks() {
        assert_eq!(flag(&[0, 0, 0, 0, 0xf1, 0]), Some(TYPE_DATA));
        assert_eq!(flag(&[0, 0, 0, 0, 0xf2, 0, 9]), Some(TYPE_PARITY));
        assert_eq!(flag(&[0, 0, 0, 0, 0xf1, 1]), Some(0x1f1));
        assert_eq!(flag(&[0, 0, 0, 0, 0xf1]), None);
    }
}
