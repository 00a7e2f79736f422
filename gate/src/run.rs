//! The gate binary's shell: flags, config, logging, the client listener, dialing every
//! dispatcher, and the ready line. Everything interesting is in [`GateService`].

use std::time::{Duration, Instant, SystemTime};

use goworld_common::dialwatch::DialWatch;
use goworld_common::id::{IdGen, WallClock};
use goworld_common::process;
use goworld_common::reactor::{AfterTick, LinkKind, LinkOpts, Reactor, ReactorConfig};
use goworld_common::transport::stack::StackSpec;
use goworld_common::transport::tls;

use crate::{ClientLimits, GateEvent, GateService, Settings, CLIENT_LISTENER};

/// Runs a gate process: `gate -gid N [-configfile goworld.ini] [-log level]`.
pub fn main() {
    let (args, config) = process::boot("gate", "gid", false);
    let id = args.id;
    let Some(cfg) = config.gate(id) else {
        process::fail(&format!(
            "gate: -gid {id} has no [gate{id}] section and is outside 1..={}",
            config.deployment.desired_gates
        ));
    };
    process::init_logging(&format!("gate{id}"), &cfg.common, args.log_level.as_deref());
    let settings = Settings {
        gate_id: id,
        desired_dispatchers: config.deployment.desired_dispatchers,
        position_sync_interval: Duration::from_millis(cfg.position_sync_interval_ms.max(1)),
        clock: WallClock {
            at: Instant::now(),
            unix_secs: process::unix_secs(SystemTime::now()),
        },
        limits: ClientLimits::from_config(cfg),
    };
    log::info!("gate{id}: client limits: {}", settings.limits);
    let mut reactor = Reactor::new(ReactorConfig {
        signals: true,
        client_flush_interval: Duration::from_millis(cfg.client_flush_interval_ms),
        pause_rule: crate::pause_rule,
        client_output_budget: cfg.client_output_budget,
        client_write_budget: cfg.client_write_budget,
        ..ReactorConfig::default()
    })
    .unwrap_or_else(|e| process::fail(&format!("gate{id}: cannot start the reactor: {e}")));
    let listener = process::bind(&format!("gate{id}"), &cfg.listen_addr);
    let client_opts = LinkOpts {
        kind: LinkKind::Client {
            output_limit: cfg.client_output_limit,
        },
        max_frame: cfg.max_client_frame,
        group: crate::CLIENT_LINKS,
        heartbeat: None,
    };
    let layers = client_layers(id, cfg);
    log::info!("gate{id}: client connections: {}", layers.describe());
    let listen = reactor
        .add_listener_with(listener, CLIENT_LISTENER, client_opts, layers.clone())
        .unwrap_or_else(|e| process::fail(&format!("gate{id}: {e}")));
    // KCP clients on the same address over UDP, as GoWorld's gate serves them.
    match std::net::UdpSocket::bind(listen)
        .and_then(|u| reactor.add_kcp_listener(u, CLIENT_LISTENER, client_opts, layers.clone()))
    {
        Ok(a) => log::info!("gate{id}: kcp clients at {a} (udp)"),
        Err(e) => log::warn!(
            "gate{id}: cannot listen for KCP clients on udp {listen}: {}; TCP and WebSocket only",
            goworld_common::logging::io_kind(&e)
        ),
    }
    let server_opts = LinkOpts {
        kind: LinkKind::Server,
        max_frame: cfg.common.max_peer_frame,
        group: crate::DISPATCHER_LINKS,
        heartbeat: None,
    };
    let advertise = cfg.advertise_addr.clone();
    let http_sock = process::serve_http(&mut reactor, &format!("gate{id}"), &cfg.common.http_addr);
    let http = http_sock.map(|a| a.to_string());
    // WebSocket clients on the HTTP endpoint, with the same layers above the socket.
    if let Some(h) = &http {
        let scheme = if layers.tls_server.is_some() {
            "wss"
        } else {
            "ws"
        };
        reactor.serve_ws(
            CLIENT_LISTENER,
            client_opts,
            layers.snappy,
            layers.tls_server.clone(),
        );
        log::info!("gate{id}: websocket clients at {scheme}://{h}/ws");
    }
    // The live world page (web_root) on the same endpoint.
    let page = match http_sock {
        Some(a) if !cfg.web_root.as_os_str().is_empty() => {
            let root = &cfg.web_root;
            if !root.is_dir() {
                log::warn!(
                    "gate{id}: web_root {} is not a directory; the page's requests get 404s",
                    root.display()
                );
            }
            reactor.serve_files(root.clone());
            let url = page_url(a, layers.tls_server.is_some());
            log::info!("gate{id}: the page ({}) at {url}", root.display());
            Some(url)
        }
        _ => None,
    };
    let mut handler = DialWatch::new(
        AfterTick {
            inner: GateService::new(settings, IdGen::for_process()),
            after_tick: |gate: &mut GateService| {
                for ev in gate.take_events() {
                    match ev {
                        // The advertised address is the one clients dial (when there is one).
                        GateEvent::Ready => {
                            let mut addrs: Vec<(&str, &dyn std::fmt::Display)> =
                                vec![("listen", &listen)];
                            if let Some(a) = &advertise {
                                addrs.push(("advertise", a));
                            }
                            if let Some(h) = &http {
                                addrs.push(("http", h));
                            }
                            if let Some(p) = &page {
                                addrs.push(("page", p));
                            }
                            process::print_ready("GATE", &addrs)
                        }
                    }
                }
            },
        },
        &format!("gate{id}"),
        DIAL_HINT,
    );
    for (&d, dc) in &config.dispatchers {
        let addr = process::resolve(&dc.advertise_addr)
            .unwrap_or_else(|e| process::fail(&format!("gate{id}: dispatcher{d}: {e}")));
        let opts = LinkOpts {
            heartbeat: dc.link_heartbeat(),
            ..server_opts
        };
        reactor.add_dial(addr, u32::from(d), opts);
        handler.watch(
            u32::from(d),
            &format!("dispatcher{d} at {}", dc.advertise_addr),
            Instant::now(),
        );
    }
    if let Err(e) = reactor.run(&mut handler) {
        process::fail(&format!("gate{id}: reactor stopped: {e}"));
    }
    log::info!("gate{id} stopped");
}

/// Where a browser on this host opens the page served on `http` (an address on every
/// interface is opened on loopback).
fn page_url(http: std::net::SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let host = match http.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!("{scheme}://{host}:{}/", http.port())
}

/// The transport layers of the gate's client connections, from `encrypt_connection` (TLS
/// with `rsa_certificate` and `rsa_key`, read here) and `compress_connection` (snappy). A
/// certificate or key that cannot be read or used stops the gate with a line saying which.
fn client_layers(id: u16, cfg: &goworld_common::config::GateConfig) -> StackSpec {
    let tls_server = cfg.encrypt_connection.then(|| {
        let read = |what: &str, path: &std::path::Path| {
            std::fs::read(path).unwrap_or_else(|e| {
                process::fail(&format!(
                    "gate{id}: encrypt_connection=1: cannot read {what} {}: {}",
                    path.display(),
                    goworld_common::logging::io_kind(&e)
                ))
            })
        };
        let cert = read("rsa_certificate", &cfg.rsa_certificate);
        let key = read("rsa_key", &cfg.rsa_key);
        tls::server_config(&cert, &key).unwrap_or_else(|e| {
            process::fail(&format!(
                "gate{id}: encrypt_connection=1: {} and {}: {e}",
                cfg.rsa_certificate.display(),
                cfg.rsa_key.display()
            ))
        })
    });
    StackSpec {
        tls_server,
        snappy: cfg.compress_connection,
        ..StackSpec::default()
    }
}

/// What a warning about an unreachable dispatcher suggests checking.
const DIAL_HINT: &str = "Is the dispatcher running, and is its advertise_addr an address this \
     host can reach?";

#[cfg(test)]
mod tests {
    use super::page_url;

    #[test]
    fn the_page_url_names_a_host_a_browser_here_can_open() {
        let url = |a: &str, tls| page_url(a.parse().unwrap(), tls);
        assert_eq!(url("127.0.0.1:24001", false), "http://127.0.0.1:24001/");
        assert_eq!(url("0.0.0.0:24001", true), "https://127.0.0.1:24001/");
        assert_eq!(url("[::]:8080", false), "http://[::1]:8080/");
        assert_eq!(url("[::1]:8080", false), "http://[::1]:8080/");
        assert_eq!(url("10.0.0.2:80", false), "http://10.0.0.2:80/");
    }
}
