//! Idle cost of a 1 dispatcher / 1 game / 1 gate deployment, and the memory each silent client
//! costs: CPU (% of one core, from utime+stime in /proc/<pid>/stat) and RSS (VmRSS) of each
//! process in three phases:
//!
//! 1. idle, no clients, over `-secs` seconds after the game reports the deployment ready;
//! 2. `-clients` silent raw clients connected, each greeted with its boot entity (an Account
//!    on the game), over `-phase-secs` seconds;
//! 3. the clients gone: RSS three seconds after the last one disconnected (GoWorld's gate kept
//!    121 MB after 5 000 clients left), then CPU over `-phase-secs` seconds.
//!
//! Build the release binaries first, then:
//! `cargo run --release -p goworld-tests --bin bench_idle -- [-secs 30] [-clients 1000] [-phase-secs 10]`
//!
//! Each client costs the gate and this process one file descriptor; the run stops early with a
//! message if `ulimit -n` is too low (raise the soft limit up to the hard one with `ulimit -n`).

use goworld_tests::procfs::{clk_tck, cpu_ticks, flag};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use goworld_common::proto::{ClientBound, ClientMsg};
use goworld_tests::{Cluster, Kind, RawClient};

/// Clients connected before their greetings are read: the gate, dispatcher and game work on a
/// batch together instead of one round trip per client.
const CONNECT_BATCH: usize = 100;

/// The number after `key` in /proc/<pid>/status.
fn status_field(pid: u32, key: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// VmRSS of `pid`, in KiB.
fn rss_kb(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

/// Times `pid` went to sleep and woke up again: an idle reactor should do it only when
/// something happens (GoWorld ticks every 5 ms, about 200 times a second).
fn wakeups(pid: u32) -> u64 {
    status_field(pid, "voluntary_ctxt_switches:")
}

/// The soft limit on open files of this process (inherited by the servers it starts).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The three server processes, in report order.
const PROCS: [(Kind, &str); 3] = [
    (Kind::Dispatcher, "dispatcher"),
    (Kind::Game, "game"),
    (Kind::Gate, "gate"),
];

/// CPU % of one core, wake-ups per second and RSS (KiB) of each process over one phase.
struct Phase {
    cpu_pct: [f64; 3],
    wakeups_per_s: [f64; 3],
    rss_kb: [u64; 3],
}

/// Samples CPU for `secs` seconds, then RSS, for each process.
fn measure(pids: &[u32; 3], secs: u64, tck: f64) -> Phase {
    let t0 = Instant::now();
    let (c0, w0) = (
        pids.map(|p| cpu_ticks(&p.to_string()).expect("/proc/<pid>/stat")),
        pids.map(wakeups),
    );
    thread::sleep(Duration::from_secs(secs));
    let (c1, w1) = (
        pids.map(|p| cpu_ticks(&p.to_string()).expect("/proc/<pid>/stat")),
        pids.map(wakeups),
    );
    let wall = t0.elapsed().as_secs_f64();
    let (mut cpu_pct, mut wakeups_per_s) = ([0.0; 3], [0.0; 3]);
    for i in 0..3 {
        cpu_pct[i] = 100.0 * (c1[i] - c0[i]) as f64 / tck / wall;
        wakeups_per_s[i] = (w1[i] - w0[i]) as f64 / wall;
    }
    Phase {
        cpu_pct,
        wakeups_per_s,
        rss_kb: pids.map(rss_kb),
    }
}

fn print_phase(name: &str, secs: u64, p: &Phase) {
    let cells: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "{} {:.2} % CPU, {:.1} wake-ups/s, {:.1} MB",
                PROCS[i].1,
                p.cpu_pct[i],
                p.wakeups_per_s[i],
                p.rss_kb[i] as f64 / 1024.0
            )
        })
        .collect();
    println!("bench_idle: {name} ({secs} s): {}", cells.join("; "));
}

/// Reads frames until the boot entity's CREATE_ENTITY_ON_CLIENT arrives.
fn wait_boot_entity(client: &mut RawClient) {
    loop {
        let p = client
            .recv(Duration::from_secs(20))
            .expect("a frame from the gate within 20 s")
            .expect("the gate kept the connection");
        if let Ok(ClientBound::Entity {
            msg: ClientMsg::CreateEntityOnClient {
                is_player: true, ..
            },
            ..
        }) = ClientBound::decode(&p)
        {
            return;
        }
    }
}

fn main() {
    let secs = flag("secs", 30);
    let n_clients = flag("clients", 1000) as usize;
    let phase_secs = flag("phase-secs", 10);
    let tck = clk_tck();
    if let Some(limit) = open_files_limit() {
        // The gate holds one descriptor per client, this process one more; 100 spare.
        if (n_clients as u64) + 100 > limit {
            eprintln!(
                "bench_idle: -clients {n_clients} needs more open files than `ulimit -n` {limit}; raise it (ulimit -n $(ulimit -Hn)) or use fewer clients"
            );
            std::process::exit(2);
        }
    }

    let mut cluster = Cluster::new("bench-idle", 1, 1, 1, "");
    cluster.start_all(1, 1, 1).unwrap_or_else(|e| panic!("{e}"));
    cluster
        .wait_log(
            Kind::Game,
            1,
            "deployment ready",
            1,
            Duration::from_secs(15),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let pids = PROCS.map(|(kind, _)| cluster.proc(kind, 1).child.id());
    let gate: SocketAddr = format!("127.0.0.1:{}", cluster.gate_ports[0])
        .parse()
        .unwrap();
    // Start-up work (config, first dials, handshakes) is over before the idle window.
    thread::sleep(Duration::from_secs(1));

    let idle = measure(&pids, secs, tck);

    let t = Instant::now();
    let mut clients = Vec::with_capacity(n_clients);
    while clients.len() < n_clients {
        let from = clients.len();
        let to = (from + CONNECT_BATCH).min(n_clients);
        for _ in from..to {
            clients.push(RawClient::connect(gate).expect("connect to the gate"));
        }
        for c in &mut clients[from..to] {
            wait_boot_entity(c);
        }
    }
    let login = t.elapsed().as_secs_f64();
    // Let the processes finish anything the logins left behind before the window.
    thread::sleep(Duration::from_secs(2));
    let connected = measure(&pids, phase_secs, tck);

    drop(clients);
    thread::sleep(Duration::from_secs(3));
    let rss_after = pids.map(rss_kb);
    let after = measure(&pids, phase_secs, tck);

    let codes = cluster.stop_all();
    let errors = cluster.error_lines();

    println!(
        "bench_idle: 1 dispatcher, 1 game, 1 gate; CLK_TCK {tck}; {} cores",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    print_phase("idle, no clients", secs, &idle);
    print_phase(
        &format!("{n_clients} idle clients connected"),
        phase_secs,
        &connected,
    );
    let per_client = |i: usize| {
        (connected.rss_kb[i] as f64 - idle.rss_kb[i] as f64) * 1024.0 / n_clients as f64 / 1000.0
    };
    println!(
        "bench_idle: {n_clients} clients logged in (boot entity received) in {login:.2} s = {:.0} logins/s; per client: gate {:.1} KB, game {:.1} KB, dispatcher {:.2} KB",
        n_clients as f64 / login,
        per_client(2),
        per_client(1),
        per_client(0)
    );
    println!(
        "bench_idle: 3 s after all {n_clients} clients left: dispatcher {:.1} MB, game {:.1} MB, gate {:.1} MB",
        rss_after[0] as f64 / 1024.0,
        rss_after[1] as f64 / 1024.0,
        rss_after[2] as f64 / 1024.0
    );
    print_phase("after the clients left", phase_secs, &after);
    println!(
        "bench_idle: exit codes {:?}; {} error lines in the logs",
        codes.iter().map(|c| c.2).collect::<Vec<_>>(),
        errors.len()
    );
    for e in &errors {
        println!("bench_idle: log: {e}");
    }
}
