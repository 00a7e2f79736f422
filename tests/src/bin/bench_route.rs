//! Routing throughput of a real dispatcher process over loopback TCP: how many
//! CALL_ENTITY_METHOD packets one `target/release/dispatcher` routes per second of its own CPU,
//! with the reactor, syscalls and framing included.
//!
//! The load generator plays two games on two blocking TCP connections: game 2 announces
//! `-entities` entity IDs in its SET_GAME_ID, game 1 writes calls to all of them round-robin in
//! 64 KiB batches as fast as the dispatcher takes them, and game 2 reads and counts what arrives.
//! Figures are taken over a `-secs` window after a one-second warm-up, from the dispatcher's
//! utime+stime and VmRSS in /proc; the generator's own CPU is reported too, because on a
//! two-core machine it shares the cores with the dispatcher.
//!
//! With `-rate R` the calls are paced (R per second, written once a millisecond) instead: the
//! dispatcher then wakes about a thousand times a second with little to do, which shows the
//! fixed cost of one reactor iteration rather than the routing rate.
//!
//! Build the release binaries first, then:
//! `cargo run --release -p goworld-tests --bin bench_route -- [-secs 10] [-entities 1000] [-rate 0]`

use goworld_tests::procfs::{clk_tck, cpu_ticks, flag};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use goworld_common::frame::{write_frame, FrameDecoder};
use goworld_common::id::{EntityId, IdGen};
use goworld_common::proto::{mt, peek_type, Msg};
use goworld_common::INTERNAL_PROTOCOL_VERSION;
use goworld_tests::{Cluster, Kind};

/// Size of one batched write from game 1: large enough that syscalls do not dominate the
/// generator, small enough that the sender stays close behind the dispatcher.
const BATCH: usize = 64 * 1024;

/// (busy, total) jiffies of the whole machine, all cores, from /proc/stat: the share of the
/// cores other processes took tells whether the window was disturbed.
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let line = stat.lines().next().expect("cpu line");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait are the 4th and 5th numbers.
    (total - v[3] - v[4], total)
}

/// A `Vm...:` line of /proc/<pid>/status, in KiB.
fn status_kb(pid: &str, key: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Connects as game `game_id` announcing `entities`, and waits for SET_GAME_ID_ACK. Returns
/// the stream and the decoder, which may already hold the frames that followed the ack.
fn connect_game(
    addr: SocketAddr,
    game_id: u16,
    entities: Vec<EntityId>,
) -> (TcpStream, FrameDecoder) {
    let mut s = TcpStream::connect(addr).expect("connect to the dispatcher");
    s.set_nodelay(true).unwrap();
    let hello = Msg::SetGameId {
        game_id,
        is_reconnect: false,
        is_restore: false,
        is_ban_boot_entity: false,
        entities,
        version: Some(INTERNAL_PROTOCOL_VERSION),
    };
    let mut buf = Vec::new();
    write_frame(&mut buf, &hello.to_payload());
    s.write_all(&buf).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut dec = FrameDecoder::new(64 << 20);
    loop {
        while let Some(p) = dec.next_frame().unwrap() {
            if peek_type(p) == Some(mt::SET_GAME_ID_ACK) {
                return (s, dec);
            }
        }
        let n = dec.read_from(&mut s).expect("SET_GAME_ID_ACK within 10 s");
        assert!(n > 0, "the dispatcher closed game{game_id}'s connection");
    }
}

/// What one measured window saw: calls delivered, and CPU seconds of each party.
struct Window {
    wall: f64,
    delivered: u64,
    disp_cpu: f64,
    gen_cpu: f64,
    /// Seconds of CPU the whole machine spent busy, and the seconds available on all cores.
    machine_busy: f64,
    machine_total: f64,
}

fn main() {
    let secs = flag("secs", 10);
    let n_entities = flag("entities", 1000) as usize;
    // 0: as fast as the dispatcher takes them; otherwise calls per second, paced.
    let rate = flag("rate", 0);
    let tck = clk_tck();

    // desired_gates must be > 0 in goworld.ini; only the dispatcher is started, and routing
    // calls between games does not wait for deployment readiness.
    let mut cluster = Cluster::new("bench-route", 1, 2, 1, "");
    let pid = cluster
        .start(Kind::Dispatcher, 1)
        .unwrap_or_else(|e| panic!("{e}"))
        .child
        .id()
        .to_string();
    let addr: SocketAddr = format!("127.0.0.1:{}", cluster.dispatcher_ports[0])
        .parse()
        .unwrap();

    let mut gen = IdGen::new([9, 9, 9], 4242);
    let eids: Vec<EntityId> = (0..n_entities).map(|_| gen.next(1_700_000_000)).collect();
    let (game1, _) = connect_game(addr, 1, Vec::new());
    let (mut game2, mut dec2) = connect_game(addr, 2, eids.clone());

    // A ring of calls, one per entity in turn, padded to a whole number of batches, so the
    // dispatcher looks up every entity (not only the first batch's worth of them).
    let frame_of = |eid: EntityId| {
        let call = Msg::CallEntityMethod {
            eid,
            method: "TestMethod".into(),
            args: vec![
                vec![0xd3, 0, 0, 0, 0, 0, 0, 0, 1],
                vec![0xd3, 0, 0, 0, 0, 0, 0, 0, 2],
            ],
        };
        let mut frame = Vec::new();
        write_frame(&mut frame, &call.to_payload());
        frame
    };
    // Every call has the same length (same method, same-size IDs and arguments).
    let frame_len = frame_of(eids[0]).len();
    let per_batch = (BATCH / frame_len) as u64;
    let ring_frames = n_entities.div_ceil(per_batch as usize) * per_batch as usize;
    let mut ring = Vec::with_capacity(ring_frames * frame_len);
    for k in 0..ring_frames {
        let frame = frame_of(eids[k % n_entities]);
        assert_eq!(frame.len(), frame_len);
        ring.extend_from_slice(&frame);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));

    // Game 1: blocking writes. When the dispatcher pauses reading (its output to game 2 above
    // 16 MiB), the kernel buffers fill and write blocks, so the sender can never run further
    // ahead than the socket buffers plus the dispatcher's bounded output.
    let sender = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        let mut s = game1;
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        thread::spawn(move || {
            let batch_bytes = per_batch as usize * frame_len;
            if rate == 0 {
                while !stop.load(Ordering::Relaxed) {
                    for batch in ring.chunks(batch_bytes) {
                        s.write_all(batch).expect("game 1 write");
                        sent.fetch_add(per_batch, Ordering::Relaxed);
                    }
                }
                return s;
            }
            // Paced: once a millisecond, the frames due by then in one write, so the
            // dispatcher wakes about a thousand times a second with little to do each time.
            let start = Instant::now();
            let (mut written, mut at) = (0u64, 0usize);
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(1));
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                let k = due.saturating_sub(written).min(per_batch) as usize;
                let k = k.min(ring.len() / frame_len - at);
                if k > 0 {
                    s.write_all(&ring[at * frame_len..(at + k) * frame_len])
                        .expect("game 1 write");
                    written += k as u64;
                    sent.fetch_add(k as u64, Ordering::Relaxed);
                    at = (at + k) % (ring.len() / frame_len);
                }
            }
            s
        })
    };

    // Game 2: reads and counts calls; other frames (game-connected notices) are skipped.
    let receiver = {
        let (done, received) = (Arc::clone(&done), Arc::clone(&received));
        game2
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        thread::spawn(move || {
            // Game 2 only reads: its heartbeats (empty frames) keep the dispatcher from
            // declaring it dead (link_timeout_ms).
            let mut beat = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if beat.elapsed() >= Duration::from_millis(500) {
                    beat = Instant::now();
                    game2.write_all(&[0; 4]).expect("game 2 heartbeat");
                }
                match dec2.read_from(&mut game2) {
                    Ok(0) => panic!("the dispatcher closed game 2's connection"),
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue
                    }
                    Err(e) => panic!("game 2 read: {e}"),
                }
                let mut n = 0;
                while let Some(p) = dec2.next_frame().unwrap() {
                    if peek_type(p) == Some(mt::CALL_ENTITY_METHOD) {
                        n += 1;
                    }
                }
                received.fetch_add(n, Ordering::Relaxed);
            }
        })
    };

    // Warm-up: connections at full speed, buffers grown, caches warm.
    thread::sleep(Duration::from_secs(1));
    let (t0, r0, d0, g0, m0) = (
        Instant::now(),
        received.load(Ordering::Relaxed),
        cpu_ticks(&pid).expect("/proc/<pid>/stat"),
        cpu_ticks("self").expect("/proc/self/stat"),
        machine_jiffies(),
    );
    thread::sleep(Duration::from_secs(secs));
    let (t1, r1, d1, g1, m1) = (
        Instant::now(),
        received.load(Ordering::Relaxed),
        cpu_ticks(&pid).expect("/proc/<pid>/stat"),
        cpu_ticks("self").expect("/proc/self/stat"),
        machine_jiffies(),
    );
    let rss = status_kb(&pid, "VmRSS:");
    let hwm = status_kb(&pid, "VmHWM:");
    let w = Window {
        wall: (t1 - t0).as_secs_f64(),
        delivered: r1 - r0,
        disp_cpu: (d1 - d0) as f64 / tck,
        gen_cpu: (g1 - g0) as f64 / tck,
        machine_busy: (m1.0 - m0.0) as f64 / tck,
        machine_total: (m1.1 - m0.1) as f64 / tck,
    };

    // Drain: stop sending, then wait until game 2 has every call that was sent.
    stop.store(true, Ordering::Relaxed);
    let game1 = sender.join().expect("sender thread");
    let total_sent = sent.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.load(Ordering::Relaxed) < total_sent && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    done.store(true, Ordering::Relaxed);
    receiver.join().expect("receiver thread");
    let total_received = received.load(Ordering::Relaxed);
    let pauses = cluster
        .log(Kind::Dispatcher, 1)
        .matches("pausing reads")
        .count();
    drop(game1);
    let codes = cluster.stop_all();

    println!(
        "bench_route: {n_entities} entities, {frame_len}-byte frames, {secs} s window, {}, CLK_TCK {tck}",
        if rate == 0 { "unpaced".to_string() } else { format!("paced at {rate} calls/s") }
    );
    println!(
        "bench_route: delivered {} msgs in {:.2} s = {:.0} msgs per wall second",
        w.delivered,
        w.wall,
        w.delivered as f64 / w.wall
    );
    println!(
        "bench_route: dispatcher CPU {:.2} s = {:.1} % of one core; {:.0} msgs per dispatcher CPU-second",
        w.disp_cpu,
        100.0 * w.disp_cpu / w.wall,
        w.delivered as f64 / w.disp_cpu.max(1.0 / tck)
    );
    println!(
        "bench_route: dispatcher RSS {:.1} MB at the end of the window (peak {:.1} MB); {pauses} backpressure pauses logged",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "bench_route: load generator CPU {:.1} % of one core (sender + receiver threads); machine has {} cores",
        100.0 * w.gen_cpu / w.wall,
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    let others = (w.machine_busy - w.disp_cpu - w.gen_cpu).max(0.0);
    println!(
        "bench_route: machine busy {:.1} % of all cores; other processes and unattributed interrupt time took {:.1} % of one core{}",
        100.0 * w.machine_busy / w.machine_total.max(1.0 / tck),
        100.0 * others / w.wall,
        if others / w.wall > 0.2 { " (the figure may be disturbed: rerun on a quiet machine)" } else { "" }
    );
    println!(
        "bench_route: sent {total_sent}, received {total_received}{}; dispatcher exit {:?}",
        if total_sent == total_received {
            " (none lost)"
        } else {
            " (MISSING CALLS)"
        },
        codes.iter().map(|c| c.2).collect::<Vec<_>>()
    );
    assert_eq!(
        total_sent, total_received,
        "every call sent must be delivered"
    );
}
