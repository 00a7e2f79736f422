//! `dispatcher -dispid N [-configfile goworld.ini] [-log level]`: runs one dispatcher.

use goworld_common::process;
use goworld_common::reactor::{LinkKind, LinkOpts, Reactor, ReactorConfig};
use goworld_dispatcher::{Dispatcher, Settings};

fn main() {
    let (args, config) = process::boot("dispatcher", "dispid", false);
    let id = args.id;
    let Some(cfg) = config.dispatcher(id) else {
        process::fail(&format!(
            "dispatcher: -dispid {id} is outside 1..={} ([deployment] desired_dispatchers)",
            config.deployment.desired_dispatchers
        ));
    };
    process::init_logging(
        &format!("dispatcher{id}"),
        &cfg.common,
        args.log_level.as_deref(),
    );
    let settings = Settings::from_config(
        id,
        cfg,
        config.deployment.desired_games,
        config.deployment.desired_gates,
    );
    let listener = process::bind(&format!("dispatcher{id}"), &cfg.listen_addr);
    let mut reactor = Reactor::new(ReactorConfig {
        signals: true,
        pause_rule: goworld_dispatcher::pause_rule,
        ..ReactorConfig::default()
    })
    .unwrap_or_else(|e| process::fail(&format!("dispatcher{id}: cannot start the reactor: {e}")));
    let opts = LinkOpts {
        kind: LinkKind::Server,
        max_frame: cfg.common.max_peer_frame,
        group: 0,
        heartbeat: cfg.link_heartbeat(),
    };
    let addr = reactor
        .add_listener(listener, 0, opts)
        .unwrap_or_else(|e| process::fail(&format!("dispatcher{id}: {e}")));
    let http = process::serve_http(
        &mut reactor,
        &format!("dispatcher{id}"),
        &cfg.common.http_addr,
    );
    let mut service = Dispatcher::new(settings);
    // What games and gates dial: its listen_addr, or the advertise_addr the config gives.
    let mut addrs: Vec<(&str, &dyn std::fmt::Display)> =
        vec![("listen", &addr), ("advertise", &cfg.advertise_addr)];
    let http_text = http.map(|a| a.to_string());
    if let Some(h) = &http_text {
        addrs.push(("http", h));
    }
    process::print_ready("DISPATCHER", &addrs);
    if let Err(e) = reactor.run(&mut service) {
        process::fail(&format!("dispatcher{id}: reactor stopped: {e}"));
    }
    log::info!("dispatcher{id} stopped");
}
