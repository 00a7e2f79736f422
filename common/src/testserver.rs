//! Real servers for tests, started on free loopback ports and stopped by their PID: today a
//! `redis-server` ([`RedisServer`]). The README's test command installs what is missing
//! (scripts/test.sh); a test that cannot start its server fails saying so.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A `redis-server` for one test, in memory only (no RDB, no AOF), stopped on drop.
pub struct RedisServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// A server on a free port.
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        RedisServer::start_on(port)
    }

    /// A server on `port`; panics if it does not answer PING within 10 s.
    pub fn start_on(port: u16) -> RedisServer {
        RedisServer::start_with(port, &[])
    }

    /// A server on `port` with more `redis-server` arguments.
    pub fn start_with(port: u16, args: &[&str]) -> RedisServer {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "goworld-rs-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir for redis-server");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(args)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the Redis tests need it; ./scripts/test.sh installs it (apt-get install -y redis-server)"
                )
            });
        let server = RedisServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.pings() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Its URL, `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pings(&self) -> bool {
        self.ask("PING").is_some_and(|r| r.starts_with("+PONG"))
    }

    /// Whether the node says its cluster is ok.
    fn cluster_ok(&self) -> bool {
        self.ask("CLUSTER INFO")
            .is_some_and(|r| r.contains("cluster_state:ok"))
    }

    /// One inline command and the start of its answer.
    fn ask(&self, cmd: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A 6-node Redis Cluster (3 masters, 3 replicas) on free loopback ports, made with
/// `redis-cli --cluster create`; every node is stopped on drop.
pub struct RedisCluster {
    /// The nodes, masters and replicas.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts six cluster-enabled servers and joins them; panics if the cluster is not
    /// `ok` within 20 s.
    pub fn start() -> RedisCluster {
        let mut nodes = Vec::new();
        while nodes.len() < 6 {
            // A node also listens on its port + 10000 (the cluster bus).
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if port > 55000 || TcpListener::bind(("127.0.0.1", port + 10000)).is_err() {
                continue;
            }
            nodes.push(RedisServer::start_with(
                port,
                &["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"],
            ));
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); it comes with redis-server"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.nodes.iter().all(|n| n.cluster_ok()) {
            assert!(
                Instant::now() < deadline,
                "the cluster is not ok within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// The nodes as `host:port` (GoWorld's `start_nodes_N`).
    pub fn start_nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect()
    }
}
