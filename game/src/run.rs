//! The game binary's shell: flags, config, logging, dialing every dispatcher, the ready line.
//! A game program's `main` calls [`main`]; everything interesting is in [`GameService`].

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use goworld_common::id::{IdGen, WallClock};
use goworld_common::process;
use goworld_common::reactor::{
    CloseReason, ConnId, Handler, Io, LinkKind, LinkOpts, Origin, Reactor, ReactorConfig,
};

use crate::{GameEvent, GameService, Settings};

/// Wraps the service to print the ready line when it reports ready.
struct Shell {
    service: GameService,
    dispatchers: Vec<(u16, SocketAddr)>,
}

impl Shell {
    fn report(&mut self) {
        for ev in self.service.take_events() {
            match ev {
                GameEvent::Ready => {
                    let addrs: Vec<(String, SocketAddr)> = self
                        .dispatchers
                        .iter()
                        .map(|(d, a)| (format!("dispatcher{d}"), *a))
                        .collect();
                    let refs: Vec<(&str, SocketAddr)> =
                        addrs.iter().map(|(n, a)| (n.as_str(), *a)).collect();
                    process::print_ready("GAME", &refs);
                }
                // The service logs it; nothing else to print.
                GameEvent::DeploymentReady => {}
            }
        }
    }
}

impl Handler for Shell {
    fn on_open(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        conn: ConnId,
        origin: Origin,
        peer: SocketAddr,
    ) {
        self.service.on_open(io, now, conn, origin, peer);
    }
    fn on_frame(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, payload: &[u8]) {
        self.service.on_frame(io, now, conn, payload);
    }
    fn on_close(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, reason: &CloseReason) {
        self.service.on_close(io, now, conn, reason);
    }
    fn on_tick(&mut self, io: &mut dyn Io, now: Instant, wall: SystemTime) {
        self.service.on_tick(io, now, wall);
        self.report();
    }
    fn next_deadline(&self) -> Option<Instant> {
        self.service.next_deadline()
    }
    fn on_signal(&mut self, io: &mut dyn Io, now: Instant, signal: i32) {
        self.service.on_signal(io, now, signal);
    }
    fn should_stop(&self) -> bool {
        self.service.should_stop()
    }
}

/// Runs a game process: `<program> -gid N [-configfile goworld.ini] [-log level] [-restore]`.
pub fn main(program: &str) {
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
    if args.restore {
        log::warn!(
            "game{id}: -restore given, but hot swap restore is not built yet; starting fresh"
        );
    }
    let mut reactor = Reactor::new(ReactorConfig {
        signals: true,
        ..ReactorConfig::default()
    })
    .unwrap_or_else(|e| process::fail(&format!("game{id}: cannot start the reactor: {e}")));
    let opts = LinkOpts {
        kind: LinkKind::Server,
        max_frame: cfg.common.max_peer_frame,
    };
    let mut dispatchers = Vec::new();
    for (&d, dc) in &config.dispatchers {
        let addr = process::resolve(&dc.advertise_addr)
            .unwrap_or_else(|e| process::fail(&format!("game{id}: dispatcher{d}: {e}")));
        reactor.add_dial(addr, u32::from(d), opts);
        dispatchers.push((d, addr));
    }
    let mut shell = Shell {
        service: GameService::new(settings, IdGen::for_process()),
        dispatchers,
    };
    if let Err(e) = reactor.run(&mut shell) {
        process::fail(&format!("game{id}: reactor stopped: {e}"));
    }
    log::info!("game{id} stopped");
}
