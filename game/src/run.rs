//! The game binary's shell: flags, config, logging, dialing every dispatcher, the ready line,
//! the freeze file, and the storage and KVDB worker threads. A game program's `main` calls
//! [`main`]; everything interesting is in [`GameService`].
//!
//! The shell owns the [`StorePool`] built from `[storage]` and `[kvdb]`: after every call
//! into the game it submits the store requests the game made
//! ([`GameService::take_store_requests`]), and when a worker wakes the reactor it hands the
//! results back ([`GameService::on_store_results`]). At exit it gives the pool
//! [`POOL_SHUTDOWN_TIMEOUT`] to finish (the game has waited for its saves already).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use goworld_common::dialwatch::DialWatch;
use goworld_common::id::{IdGen, WallClock};
use goworld_common::process;
use goworld_common::reactor::{
    CloseReason, ConnId, Handler, Io, LinkKind, LinkOpts, Origin, Reactor, ReactorConfig,
};

use goworld_common::rng::Rng;

use crate::api::Registry;
use crate::store::StorePool;
use crate::{GameEvent, GameService, Settings};

/// Runs a game process with the entity types `types`:
/// `<program> -gid N [-configfile goworld.ini] [-log level] [-restore]`.
pub fn main(program: &str, types: Registry) {
    let (args, config) = process::boot(program, "gid", true);
    let id = args.id;
    let Some(cfg) = config.game(id) else {
        process::fail(&format!(
            "{program}: -gid {id} has no [game{id}] section and is outside 1..={}",
            config.deployment.desired_games
        ));
    };
    process::init_logging(&format!("game{id}"), &cfg.common, args.log_level.as_deref());
    let settings = Settings {
        game_id: id,
        desired_dispatchers: config.deployment.desired_dispatchers,
        ban_boot_entity: cfg.ban_boot_entity,
        boot_entity: cfg.boot_entity.clone(),
        restore: args.restore,
        clock: WallClock {
            at: Instant::now(),
            unix_secs: process::unix_secs(SystemTime::now()),
        },
    };
    if !types.has(&cfg.boot_entity) {
        process::fail(&format!(
            "game{id}: boot_entity {} is not a registered entity type",
            cfg.boot_entity
        ));
    }
    let mut reactor = Reactor::new(ReactorConfig {
        signals: true,
        // A leaf: a call that fans out to thousands of clients may not keep adding output
        // the dispatcher cannot take yet; its hub keeps reading it, so it drains.
        pause_rule: goworld_common::reactor::pause_all,
        ..ReactorConfig::default()
    })
    .unwrap_or_else(|e| process::fail(&format!("game{id}: cannot start the reactor: {e}")));
    let opts = LinkOpts {
        kind: LinkKind::Server,
        max_frame: cfg.common.max_peer_frame,
        group: 0,
        heartbeat: None,
    };
    // The ready line names each dispatcher's advertised address, as dialed (resolved).
    let mut dispatchers: Vec<(String, SocketAddr)> = Vec::new();
    for (&d, dc) in &config.dispatchers {
        let addr = process::resolve(&dc.advertise_addr)
            .unwrap_or_else(|e| process::fail(&format!("game{id}: dispatcher{d}: {e}")));
        dispatchers.push((format!("dispatcher{d}"), addr));
    }
    let pool = StorePool::open(&config.storage, &config.kvdb, Some(reactor.waker()))
        .unwrap_or_else(|e| process::fail(&format!("game{id}: {e}")));
    let mut service = GameService::new(
        settings,
        IdGen::for_process(),
        types,
        pool.stores(),
        Rng::from_entropy(),
    );
    service.set_save_interval(std::time::Duration::from_secs(cfg.save_interval));
    service.set_refused_calls_limit(cfg.refused_calls_limit);
    service.set_position_sync_interval(std::time::Duration::from_millis(
        cfg.position_sync_interval_ms.max(5),
    ));
    service.enable_load_reports();
    let freeze_file = freeze_file_name(id);
    if args.restore {
        restore(&mut service, id, &freeze_file);
    }
    let http = process::serve_http(&mut reactor, &format!("game{id}"), &cfg.common.http_addr);
    let mut cpu = (Instant::now(), process_cpu_ticks());
    let dials: Vec<(u16, SocketAddr, String, LinkOpts)> = (config.dispatchers.iter())
        .zip(&dispatchers)
        .map(|((&d, dc), (_, addr))| {
            let opts = LinkOpts {
                heartbeat: dc.link_heartbeat(),
                ..opts
            };
            (d, *addr, dc.advertise_addr.clone(), opts)
        })
        .collect();
    let shell = Shell {
        game: service,
        pool,
        after_tick: move |game: &mut GameService| {
            // The shell, not the logic, reads /proc: CPU of this process over the last second.
            let now = Instant::now();
            if now.duration_since(cpu.0) >= crate::LOAD_REPORT_INTERVAL {
                let ticks = process_cpu_ticks();
                let secs = now.duration_since(cpu.0).as_secs_f64();
                game.set_cpu_percent(
                    ticks.saturating_sub(cpu.1) as f64 / clock_ticks() / secs * 100.0,
                );
                cpu = (now, ticks);
            }
            for ev in game.take_events() {
                match ev {
                    // Deployment readiness is in the log already; the ready line goes to
                    // stdout too. A restored game's file is retired once every dispatcher
                    // has accepted it, so a stray -restore cannot bring old state back.
                    GameEvent::Ready => {
                        if args.restore {
                            retire_freeze_file(id, &freeze_file);
                        }
                        let http_text = http.map(|a| a.to_string());
                        let mut addrs: Vec<(&str, &dyn std::fmt::Display)> = (dispatchers.iter())
                            .map(|(n, a)| (n.as_str(), a as &dyn std::fmt::Display))
                            .collect();
                        if let Some(h) = &http_text {
                            addrs.push(("http", h));
                        }
                        process::print_ready("GAME", &addrs);
                    }
                    GameEvent::Frozen(bytes) => match write_freeze_file(&freeze_file, &bytes) {
                        Ok(()) => {
                            log::info!(
                                "game{id}: state written to {} ({} bytes); exiting",
                                freeze_file.display(),
                                bytes.len()
                            );
                            game.freeze_written();
                        }
                        Err(e) => game.freeze_write_failed(
                            Instant::now(),
                            format!("cannot write {}: {e}", freeze_file.display()),
                        ),
                    },
                    GameEvent::DeploymentReady => {}
                }
            }
        },
    };
    let mut handler = DialWatch::new(
        shell,
        &format!("game{id}"),
        "Is the dispatcher running, and is its advertise_addr an address this host can reach?",
    );
    for (d, addr, advertised, opts) in &dials {
        reactor.add_dial(*addr, u32::from(*d), *opts);
        handler.watch(
            u32::from(*d),
            &format!("dispatcher{d} at {advertised}"),
            Instant::now(),
        );
    }
    // What restored game code asked of storage goes to the workers before the first poll.
    handler.inner.feed();
    if let Err(e) = reactor.run(&mut handler) {
        process::fail(&format!("game{id}: reactor stopped: {e}"));
    }
    if let Err(left) = handler.inner.pool.shutdown(POOL_SHUTDOWN_TIMEOUT) {
        log::warn!(
            "game{id}: {left} storage and KVDB requests still running after {POOL_SHUTDOWN_TIMEOUT:?}; not waiting for them"
        );
    }
    log::info!("game{id} stopped");
}

/// How long the shell waits for the store workers at exit. The game itself waits for its
/// saves (a freeze or a stop ends once everything is answered), so this only bounds the
/// join of idle threads, or the rare request still running after the game's own timeout.
pub const POOL_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// The game as the reactor drives it: every call goes to the game, then the store requests
/// it made go to the pool; the pool's wake-ups bring the results back. `after_tick` runs
/// after each tick (the CPU measure and the game's events).
struct Shell<F> {
    game: GameService,
    pool: StorePool,
    after_tick: F,
}

impl<F> Shell<F> {
    /// Submits the store requests the game made since the last look; never blocks.
    fn feed(&mut self) {
        let reqs = self.game.take_store_requests();
        if !reqs.is_empty() {
            self.pool.submit_all(reqs);
        }
    }
}

impl<F: FnMut(&mut GameService)> Handler for Shell<F> {
    fn on_open(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        conn: ConnId,
        origin: Origin,
        peer: SocketAddr,
    ) {
        self.game.on_open(io, now, conn, origin, peer);
        self.feed();
    }
    fn on_frame(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, payload: &[u8]) {
        self.game.on_frame(io, now, conn, payload);
        self.feed();
    }
    fn on_close(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, reason: &CloseReason) {
        self.game.on_close(io, now, conn, reason);
        self.feed();
    }
    fn on_tick(&mut self, io: &mut dyn Io, now: Instant, wall: SystemTime) {
        self.game.on_tick(io, now, wall);
        self.feed();
        (self.after_tick)(&mut self.game);
        self.feed();
    }
    fn next_deadline(&self) -> Option<Instant> {
        self.game.next_deadline()
    }
    fn on_signal(&mut self, io: &mut dyn Io, now: Instant, signal: i32) {
        self.game.on_signal(io, now, signal);
        self.feed();
    }
    fn on_wake(&mut self, io: &mut dyn Io, now: Instant) {
        let results = self.pool.take_results();
        if !results.is_empty() {
            self.game.on_store_results(io, now, results);
        }
        self.feed();
    }
    fn should_stop(&self) -> bool {
        self.game.should_stop()
    }
    fn metrics(&self, m: &mut goworld_common::http::Metrics) {
        self.game.metrics(m);
        m.gauge(
            "store_pool_pending",
            "Requests the store workers have not answered (queued, spilled or running).",
            self.pool.pending() as f64,
        );
    }
    fn status(&self, s: &mut goworld_common::http::Status) {
        self.game.status(s)
    }
}

/// The freeze file of game `id`, in the working directory (as GoWorld's).
fn freeze_file_name(id: u16) -> PathBuf {
    PathBuf::from(format!("game{id}_freezed.dat"))
}

/// `-restore`: brings back what the frozen game wrote, before connecting. A missing or
/// unreadable file, or one this binary cannot use, is an error: the process exits non-zero
/// and the file stays.
fn restore(service: &mut GameService, id: u16, path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        process::fail(&format!(
            "game{id}: -restore: cannot read {}: {e}",
            path.display()
        ))
    });
    // Not connected yet: whatever restored game code sends waits in the dispatcher links.
    let mut io = goworld_common::testio::MemIo::new();
    let started = Instant::now();
    match service.thaw(&mut io, started, &bytes) {
        Ok(r) => log::info!(
            "game{id}: restored from {} in {:.1} ms: {} entities, {} spaces",
            path.display(),
            started.elapsed().as_secs_f64() * 1000.0,
            r.entities,
            r.spaces
        ),
        Err(e) => process::fail(&format!(
            "game{id}: -restore: {}: {e} (the file is kept)",
            path.display()
        )),
    }
    debug_assert!(io.sent.is_empty(), "nothing leaves before the links are up");
}

/// Renames the freeze file `<name>.restored` once the restored game is accepted.
fn retire_freeze_file(id: u16, path: &Path) {
    let mut done = path.as_os_str().to_owned();
    done.push(".restored");
    match std::fs::rename(path, &done) {
        Ok(()) => log::info!(
            "game{id}: every dispatcher accepted the restored game; {} renamed {}",
            path.display(),
            Path::new(&done).display()
        ),
        Err(e) => log::warn!(
            "game{id}: cannot rename {} after the restore: {e}",
            path.display()
        ),
    }
}

/// Writes the freeze file safely: a temporary file, fsync, rename over the name, and an
/// fsync of the directory, so a crash leaves either the old file or the whole new one.
fn write_freeze_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

use process::{clock_ticks, cpu_ticks as process_cpu_ticks};
