//! Real servers for tests, started on free loopback ports and stopped by their PID: a
//! `redis-server` ([`RedisServer`], and six of them as a [`RedisCluster`]) and a
//! MongoDB-wire stand-in run by node ([`MongoServer`]; no real MongoDB can be installed
//! here, see tests/mongo/README.md). The README's test command installs what is missing
//! (scripts/test.sh); a test that cannot start its server fails saying so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A `redis-server` for one test, in memory only (no RDB, no AOF), stopped on drop.
pub struct RedisServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    /// Its `redis-server` arguments beyond port, bind and dir.
    args: Vec<String>,
}

/// Sends `sig` (`-STOP`, `-CONT`) to a child process by its PID.
fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(sig)
        .arg(child.id().to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {} failed", child.id());
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
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (child, args, dir) = RedisServer::spawn(port, &args, dir);
        let server = RedisServer {
            child,
            port,
            dir,
            args,
        };
        server.wait_ready();
        server
    }

    fn spawn(port: u16, args: &[String], dir: PathBuf) -> (Child, Vec<String>, PathBuf) {
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
        (child, args.to_vec(), dir)
    }

    /// Waits until it answers PING; panics after 10 s.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pings() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its URL, `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A server on a free port that keeps its data across [`RedisServer::restart`] (an
    /// append-only file, fsynced on every write).
    pub fn start_durable() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        RedisServer::start_with(port, &["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// Kills the server (SIGKILL): connections are refused until [`RedisServer::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and directory, with the same arguments (a
    /// [`RedisServer::start_durable`] server finds its data again).
    pub fn restart(&mut self) {
        self.kill();
        let again = RedisServer::spawn(self.port, &self.args, self.dir.clone());
        self.child = again.0;
        self.wait_ready();
    }

    /// Stops the process (SIGSTOP): connections stay open and nothing answers.
    pub fn pause(&self) {
        signal(&self.child, "-STOP");
    }

    /// Continues a paused process (SIGCONT).
    pub fn resume(&self) {
        signal(&self.child, "-CONT");
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

/// Where the MongoDB stand-in lives: tests/mongo in the workspace.
const MONGO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/mongo");

/// A MongoDB-wire server for one test: the in-memory stand-in that tests/mongo/install.sh
/// installs (smartmongo's CongoServer, run by node). Stopped on drop. It keeps its data in
/// memory only, so a server started again on the same port ([`MongoServer::start_on`], to
/// test reconnecting) is empty. What it does and does not do: tests/mongo/README.md.
pub struct MongoServer {
    /// Its stdin is a pipe that stays open while this lives: the server exits when it
    /// closes, so it does not outlive a test process that dies.
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl MongoServer {
    /// A server on a free port (node picks it, so no other process can take it first).
    pub fn start() -> MongoServer {
        MongoServer::spawn(0)
    }

    /// A server on `port`; panics if it does not listen within 10 s.
    pub fn start_on(port: u16) -> MongoServer {
        assert_ne!(port, 0, "MongoServer::start picks a free port");
        MongoServer::spawn(port)
    }

    fn spawn(port: u16) -> MongoServer {
        let dir = Path::new(MONGO_DIR);
        let not_installed = "the MongoDB stand-in is not installed: run tests/mongo/install.sh \
             (needs node, npm and the npm registry reachable; ./scripts/test.sh runs it)";
        assert!(
            dir.join("node_modules/.goworld-mongo-standin").is_file()
                && dir
                    .join("node_modules/@push.rocks/smartmongo/dist_ts/congodb/index.js")
                    .is_file(),
            "{not_installed}"
        );
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start node ({e}): the MongoDB tests need node; {not_installed}")
            });
        // Its stdout's first line says it is ready; its stderr is kept to say why not.
        let (tx, rx) = mpsc::channel();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        let errors = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("piped stderr");
        let kept = Arc::clone(&errors);
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                let mut kept = kept.lock().unwrap();
                if kept.len() < 16384 {
                    kept.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let mut server = MongoServer { child, port };
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        let ready = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok());
        let Some(ready) = ready else {
            // It died, or hangs: stop it and say what it printed.
            let _ = server.child.kill();
            let _ = server.child.wait();
            let _ = stderr_reader.join();
            panic!(
                "the MongoDB stand-in (node tests/mongo/server.mjs {port}) did not get ready \
                 within 10 s; it printed {line:?} and on stderr: {}; if it is not installed, \
                 run tests/mongo/install.sh (needs npm reachable)",
                errors.lock().unwrap().trim()
            );
        };
        server.port = ready;
        assert!(
            TcpStream::connect(("127.0.0.1", server.port)).is_ok(),
            "the MongoDB stand-in said it listens on port {ready} but does not accept"
        );
        server
    }

    /// Its URL, `mongodb://127.0.0.1:<port>/?directConnection=true`.
    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// Stops the process (SIGSTOP): connections stay open and nothing answers (it keeps
    /// its data, unlike a restart).
    pub fn pause(&self) {
        signal(&self.child, "-STOP");
    }

    /// Continues a paused process (SIGCONT).
    pub fn resume(&self) {
        signal(&self.child, "-CONT");
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One OP_MSG command as bytes: `{hello: 1, $db: "admin"}`.
    fn hello_op_msg(request_id: i32) -> Vec<u8> {
        let mut doc = Vec::new();
        doc.push(0x10); // int32
        doc.extend_from_slice(b"hello\0");
        doc.extend_from_slice(&1i32.to_le_bytes());
        doc.push(0x02); // string
        doc.extend_from_slice(b"$db\0");
        doc.extend_from_slice(&6i32.to_le_bytes());
        doc.extend_from_slice(b"admin\0");
        doc.push(0);
        let doc_len = (doc.len() + 4) as i32;
        let mut body = Vec::new();
        body.extend_from_slice(&0u32.to_le_bytes()); // flagBits
        body.push(0); // section kind 0: the body
        body.extend_from_slice(&doc_len.to_le_bytes());
        body.extend_from_slice(&doc);
        let mut msg = Vec::new();
        msg.extend_from_slice(&((16 + body.len()) as i32).to_le_bytes());
        msg.extend_from_slice(&request_id.to_le_bytes());
        msg.extend_from_slice(&0i32.to_le_bytes()); // responseTo
        msg.extend_from_slice(&2013i32.to_le_bytes()); // OP_MSG
        msg.extend_from_slice(&body);
        msg
    }

    /// The value of a top-level number field of a BSON document, as f64.
    fn bson_number(doc: &[u8], field: &str) -> Option<f64> {
        let mut i = 4;
        while i < doc.len() && doc[i] != 0 {
            let kind = doc[i];
            let name_end = i + 1 + doc[i + 1..].iter().position(|&b| b == 0)?;
            let name = &doc[i + 1..name_end];
            let v = name_end + 1;
            let le32 = |at: usize| i32::from_le_bytes(doc[at..at + 4].try_into().unwrap());
            let (value, len) = match kind {
                0x01 => (
                    Some(f64::from_le_bytes(doc[v..v + 8].try_into().unwrap())),
                    8,
                ),
                0x10 => (Some(le32(v) as f64), 4),
                0x12 => (
                    Some(i64::from_le_bytes(doc[v..v + 8].try_into().unwrap()) as f64),
                    8,
                ),
                0x02 => (None, 4 + le32(v) as usize),
                0x03 | 0x04 => (None, le32(v) as usize),
                0x05 => (None, 5 + le32(v) as usize),
                0x07 => (None, 12),
                0x08 => (None, 1),
                0x09 | 0x11 => (None, 8),
                0x0A => (None, 0),
                other => panic!("BSON type {other:#x} in a hello reply"),
            };
            if name == field.as_bytes() {
                return value;
            }
            i = v + len;
        }
        None
    }

    #[test]
    fn mongo_server_answers_hello() {
        let server = MongoServer::start();
        assert!(server.url().starts_with("mongodb://127.0.0.1:"));
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&hello_op_msg(7)).unwrap();
        let mut header = [0u8; 16];
        s.read_exact(&mut header).unwrap();
        let word = |at: usize| i32::from_le_bytes(header[at..at + 4].try_into().unwrap());
        assert_eq!(word(8), 7, "responseTo");
        assert_eq!(word(12), 2013, "opCode OP_MSG");
        let mut body = vec![0u8; word(0) as usize - 16];
        s.read_exact(&mut body).unwrap();
        assert_eq!(body[4], 0, "section kind 0");
        let doc = &body[5..];
        assert_eq!(bson_number(doc, "ok"), Some(1.0));
        assert!(bson_number(doc, "maxWireVersion").is_some_and(|v| v >= 8.0));
    }

    #[test]
    #[should_panic(expected = "EADDRINUSE")]
    fn mongo_server_on_a_taken_port_says_why_it_failed() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        MongoServer::start_on(taken.local_addr().unwrap().port());
    }

    #[test]
    fn mongo_server_restarts_on_its_port() {
        let first = MongoServer::start();
        let port = first.port;
        drop(first);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        let again = MongoServer::start_on(port);
        assert_eq!(again.port, port);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    }
}
