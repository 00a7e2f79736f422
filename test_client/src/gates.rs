//! Where the bots dial each gate.
//!
//! Each gate `1..=desired_gates` is dialed at its own address from the config, so one bots
//! process reaches gates on several hosts: its `advertise_addr`, else its `listen_addr`, an
//! address on every interface (`0.0.0.0`, `::`) meaning 127.0.0.1 (everything on this host).
//! `-server HOST`, when given, replaces the host of every gate and keeps its port (GoWorld's
//! `-server`, which takes only the port from the config).
//!
//! With `-ws` a bot dials the gate's `http_addr` instead (the gate serves `/ws` there, as
//! GoWorld's): on every interface or with no host, that is the host of the gate's
//! `advertise_addr` when set, else 127.0.0.1.

use goworld_common::config::{is_every_interface, join_host_port, split_host_port, Config};

/// The `host:port` each gate `1..=desired_gates` is dialed at, in gate order.
pub fn gate_addrs(config: &Config, server: Option<&str>) -> Result<Vec<String>, String> {
    let server = server.map(unbracket);
    (1..=config.deployment.desired_gates)
        .map(|id| {
            let g = config
                .gate(id)
                .ok_or_else(|| format!("the config has no gate{id}"))?;
            let addr = g.advertise_addr.as_deref().unwrap_or(&g.listen_addr);
            let key = if addr == g.listen_addr {
                "listen_addr"
            } else {
                "advertise_addr"
            };
            let (host, port) = split_host_port(addr)
                .ok_or_else(|| format!("[gate{id}] {key} = {addr} is not host:port"))?;
            let host = match server {
                Some(s) => s,
                None if is_every_interface(host) => "127.0.0.1",
                None => host,
            };
            Ok(join_host_port(host, port))
        })
        .collect()
}

/// The `host:port` of each gate's WebSocket endpoint (its `http_addr`), in gate order.
pub fn ws_addrs(config: &Config, server: Option<&str>) -> Result<Vec<String>, String> {
    let listen = gate_addrs(config, None)?;
    let server = server.map(unbracket);
    (1..=config.deployment.desired_gates)
        .zip(listen)
        .map(|(id, dialed)| {
            let g = config
                .gate(id)
                .ok_or_else(|| format!("the config has no gate{id}"))?;
            let http = &g.common.http_addr;
            if http.is_empty() {
                return Err(format!(
                    "-ws: gate{id} has no http_addr, where it serves WebSocket clients"
                ));
            }
            let http = if http.starts_with(':') {
                format!("127.0.0.1{http}")
            } else {
                http.clone()
            };
            let (host, port) = split_host_port(&http)
                .ok_or_else(|| format!("[gate{id}] http_addr = {http} is not host:port"))?;
            // The host the gate is dialed at for TCP (its advertise_addr's, or 127.0.0.1).
            let tcp_host = split_host_port(&dialed).map_or("127.0.0.1", |(h, _)| h);
            let host = match server {
                Some(s) => s,
                None if is_every_interface(host) => tcp_host,
                None => host,
            };
            Ok(join_host_port(host, port))
        })
        .collect()
}

/// `-server`'s host without the brackets of an IPv6 literal (`[::1]` is `::1`).
fn unbracket(s: &str) -> &str {
    (s.strip_prefix('['))
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(gates: &str, n: u16) -> Config {
        let ini = format!(
            "[deployment]\ndesired_dispatchers=1\ndesired_games=1\ndesired_gates={n}\n{gates}"
        );
        Config::parse(&ini, Path::new("/srv/gw")).unwrap()
    }

    #[test]
    fn each_gate_is_dialed_at_its_own_host() {
        let c = config(
            "[gate1]\nlisten_addr=10.0.0.1:14001\n\
             [gate2]\nlisten_addr=0.0.0.0:14002\nadvertise_addr=10.0.0.2:14012\n\
             [gate3]\nlisten_addr=0.0.0.0:14003\n\
             [gate4]\nlisten_addr=[::]:14004\n\
             [gate5]\nlisten_addr=[::1]:14005\n\
             [gate6]\nlisten_addr=gate-b.lan:14006\n",
            6,
        );
        assert_eq!(
            gate_addrs(&c, None).unwrap(),
            [
                "10.0.0.1:14001",
                // The advertised address wins, port included.
                "10.0.0.2:14012",
                // Every interface and nothing advertised: this host.
                "127.0.0.1:14003",
                "127.0.0.1:14004",
                "[::1]:14005",
                "gate-b.lan:14006",
            ]
        );
        // The default gate (0.0.0.0:14000).
        assert_eq!(
            gate_addrs(&config("", 1), None).unwrap(),
            ["127.0.0.1:14000"]
        );
    }

    #[test]
    fn server_replaces_every_host_and_keeps_the_ports() {
        let c = config(
            "[gate1]\nlisten_addr=10.0.0.1:14001\n\
             [gate2]\nlisten_addr=0.0.0.0:14002\nadvertise_addr=10.0.0.2:14012\n",
            2,
        );
        assert_eq!(
            gate_addrs(&c, Some("192.168.1.5")).unwrap(),
            ["192.168.1.5:14001", "192.168.1.5:14012"]
        );
        for v6 in ["::1", "[::1]"] {
            assert_eq!(
                gate_addrs(&c, Some(v6)).unwrap(),
                ["[::1]:14001", "[::1]:14012"]
            );
        }
    }

    #[test]
    fn a_gate_without_a_port_or_section_is_an_error() {
        let c = config("[gate1]\nlisten_addr=gate-b\n", 1);
        assert_eq!(
            gate_addrs(&c, None).unwrap_err(),
            "[gate1] listen_addr = gate-b is not host:port"
        );
        let c = config("[gate1]\nlisten_addr=:14001\n", 1);
        assert_eq!(gate_addrs(&c, None).unwrap(), ["127.0.0.1:14001"]);
        // Only gates 1..=desired_gates are dialed; each has a section (from gate_common).
        let c = config("[gate9]\nlisten_addr=x:1\n", 2);
        assert_eq!(
            gate_addrs(&c, None).unwrap(),
            ["127.0.0.1:14000", "127.0.0.1:14000"]
        );
    }

    #[test]
    fn websocket_bots_dial_each_gates_http_addr() {
        let c = config(
            "[gate1]\nlisten_addr=10.0.0.1:14001\nhttp_addr=10.0.0.1:24001\n\
             [gate2]\nlisten_addr=0.0.0.0:14002\nadvertise_addr=10.0.0.2:14012\nhttp_addr=0.0.0.0:24002\n\
             [gate3]\nlisten_addr=127.0.0.1:14003\nhttp_addr=:24003\n",
            3,
        );
        assert_eq!(
            ws_addrs(&c, None).unwrap(),
            ["10.0.0.1:24001", "10.0.0.2:24002", "127.0.0.1:24003"]
        );
        assert_eq!(
            ws_addrs(&c, Some("192.168.1.9")).unwrap(),
            [
                "192.168.1.9:24001",
                "192.168.1.9:24002",
                "192.168.1.9:24003"
            ]
        );
        let none = config("[gate1]\nlisten_addr=127.0.0.1:14001\nhttp_addr=\n", 1);
        assert!(ws_addrs(&none, None).unwrap_err().contains("no http_addr"));
    }
}
