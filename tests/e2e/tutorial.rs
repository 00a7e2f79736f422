//! docs/TUTORIAL.md cannot rot: its `file=` code blocks are the example's files byte for
//! byte, its `excerpt=` blocks are parts of them, its hex frame is what the codec builds, and
//! the game it builds (target/release/examples/tutorial) runs end to end with a raw client
//! and with the tutorial's Python client.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use goworld_common::id::EntityId;
use goworld_common::msgpack::{self, Value};
use goworld_common::proto::{ClientBound, ClientMsg, Msg};
use goworld_tests::{bin_dir, Cluster, RawClient};

const T: Duration = Duration::from_secs(10);
const EXAMPLE_DIR: &str = "game/examples/tutorial";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// One fenced code block of a Markdown file.
struct Block {
    /// The line of the opening fence, from 1.
    line: usize,
    /// The info string's words (`rust`, `file=...`).
    info: Vec<String>,
    /// The lines between the fences, joined by newlines (no trailing newline).
    body: String,
}

impl Block {
    /// The value of `key=value` in the info string.
    fn attr(&self, key: &str) -> Option<&str> {
        self.info
            .iter()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }
}

/// The fenced blocks of `md` (fences are lines starting with three backticks).
fn code_blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(usize, Vec<String>, Vec<&str>)> = None;
    for (i, line) in md.lines().enumerate() {
        match &mut open {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    let info = info.split_whitespace().map(str::to_string).collect();
                    open = Some((i + 1, info, Vec::new()));
                }
            }
            Some((start, info, body)) => {
                if line.trim_end() == "```" {
                    out.push(Block {
                        line: *start,
                        info: std::mem::take(info),
                        body: body.join("\n"),
                    });
                    open = None;
                } else {
                    body.push(line);
                }
            }
        }
    }
    assert!(open.is_none(), "TUTORIAL.md has an unclosed code block");
    out
}

fn tutorial() -> String {
    std::fs::read_to_string(root().join("docs/TUTORIAL.md")).expect("docs/TUTORIAL.md")
}

#[test]
fn tutorial_code_blocks_are_the_example_files() {
    let blocks = code_blocks(&tutorial());
    let mut shown = Vec::new();
    for b in &blocks {
        if let Some(path) = b.attr("file") {
            let text = std::fs::read_to_string(root().join(path))
                .unwrap_or_else(|e| panic!("TUTORIAL.md:{}: {path}: {e}", b.line));
            let text = text.strip_suffix('\n').unwrap_or(&text);
            if b.body != text {
                let at = b
                    .body
                    .lines()
                    .zip(text.lines())
                    .position(|(a, b)| a != b)
                    .map_or(b.body.lines().count().min(text.lines().count()), |n| n);
                panic!(
                    "TUTORIAL.md:{}: the block differs from {path} at its line {}; copy the file into the block",
                    b.line,
                    at + 1
                );
            }
            shown.push(path.to_string());
        }
        if let Some(path) = b.attr("excerpt") {
            let text = std::fs::read_to_string(root().join(path))
                .unwrap_or_else(|e| panic!("TUTORIAL.md:{}: {path}: {e}", b.line));
            assert!(
                !b.body.is_empty() && text.contains(&b.body),
                "TUTORIAL.md:{}: the excerpt is not part of {path}",
                b.line
            );
        }
    }
    // Every file of the example is in the tutorial, whole.
    let mut files: Vec<String> = std::fs::read_dir(root().join(EXAMPLE_DIR))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n != "__pycache__")
        .map(|n| format!("{EXAMPLE_DIR}/{n}"))
        .collect();
    files.sort();
    shown.sort();
    assert_eq!(shown, files, "each example file once, as a file= block");
}

#[test]
fn tutorial_hello_frame_is_what_the_codec_builds() {
    let blocks = code_blocks(&tutorial());
    let b = blocks
        .iter()
        .find(|b| b.attr("frame") == Some("hello-ada"))
        .expect("a ```hex frame=hello-ada block");
    let shown: String = b.body.split_whitespace().collect();
    let mut arg = Vec::new();
    msgpack::write_str(&mut arg, "Ada");
    let payload = Msg::CallEntityMethodFromClient {
        eid: EntityId::parse("awVBNWhsgjH.AAAH").unwrap(),
        method: "Hello".into(),
        args: vec![arg],
        client_id: None,
    }
    .to_payload();
    let mut frame = Vec::new();
    goworld_common::frame::write_frame(&mut frame, &payload);
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(shown, hex, "TUTORIAL.md:{}", b.line);
}

/// A server process this test started.
struct Server {
    name: String,
    child: Child,
    lines: Receiver<String>,
}

/// The servers of one run; killed (by PID, through their handles) if the test fails.
struct Servers(Vec<Server>);

impl Drop for Servers {
    fn drop(&mut self) {
        for s in &mut self.0 {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}

impl Servers {
    /// Starts `bin id_flag id -configfile config` in `dir` and waits for its ready line.
    fn start(&mut self, bin: &Path, id_flag: &str, tag: &str, config: &Path, dir: &Path) {
        let mut child = Command::new(bin)
            .args([id_flag, "1", "-configfile"])
            .arg(config)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (build with cargo build --release --workspace --bins --examples)",
                    bin.display()
                )
            });
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.0.push(Server {
            name: tag.to_string(),
            child,
            lines,
        });
        let s = self.0.last_mut().unwrap();
        let ready = goworld_common::ready_line(tag);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match s.lines.recv_timeout(left) {
                Ok(l) if l.contains(&ready) => return,
                Ok(_) => {}
                Err(_) => panic!("{tag} did not print its ready line"),
            }
        }
    }

    /// Stops every server with SIGTERM, last started first; returns their exit codes.
    fn stop_all(&mut self) -> Vec<(String, Option<i32>)> {
        let mut codes = Vec::new();
        for s in self.0.iter_mut().rev() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(s.child.id().to_string())
                .status();
            let deadline = Instant::now() + T;
            let code = loop {
                if let Some(st) = s.child.try_wait().unwrap() {
                    break st.code();
                }
                if Instant::now() > deadline {
                    let _ = s.child.kill();
                    let _ = s.child.wait();
                    break Some(-1);
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            codes.push((s.name.clone(), code));
        }
        self.0.clear();
        codes
    }
}

/// The next message for the client's entities (1502 position syncs skipped), with its payload.
fn next_entity_msg(client: &mut RawClient) -> (ClientMsg, Vec<u8>) {
    loop {
        let p = client
            .recv(T)
            .expect("a frame from the gate")
            .expect("the gate kept the connection");
        match ClientBound::decode(&p).expect("a frame a client can decode") {
            ClientBound::Entity { msg, .. } => return (msg, p),
            ClientBound::Sync(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn decode(raw: &[u8]) -> Value {
    msgpack::decode_exact(raw).expect("msgpack")
}

#[test]
fn tutorial_game_greets_counts_visits_and_signs_the_guestbook() {
    let c = Cluster::new("tutorial", 1, 1, 1, "");
    // The tutorial's own config, on this run's free ports.
    let ini = std::fs::read_to_string(root().join(EXAMPLE_DIR).join("goworld.ini")).unwrap();
    for addr in ["127.0.0.1:13000", "127.0.0.1:14001"] {
        assert!(ini.contains(addr), "the tutorial's config uses {addr}");
    }
    let ini = ini
        .replace(
            "127.0.0.1:13000",
            &format!("127.0.0.1:{}", c.dispatcher_ports[0]),
        )
        .replace("127.0.0.1:14001", &format!("127.0.0.1:{}", c.gate_ports[0]));
    std::fs::write(&c.config, ini).unwrap();

    let mut servers = Servers(Vec::new());
    let bins = bin_dir();
    servers.start(
        &bins.join("dispatcher"),
        "-dispid",
        "DISPATCHER",
        &c.config,
        &c.dir,
    );
    servers.start(
        &bins.join("examples").join("tutorial"),
        "-gid",
        "GAME",
        &c.config,
        &c.dir,
    );
    servers.start(&bins.join("gate"), "-gid", "GATE", &c.config, &c.dir);

    let gate: SocketAddr = format!("127.0.0.1:{}", c.gate_ports[0]).parse().unwrap();
    let mut client = RawClient::connect(gate).unwrap();
    // The Greeter arrives as the player, with its client attribute.
    let greeter = loop {
        if let (
            ClientMsg::CreateEntityOnClient {
                is_player: true,
                eid,
                type_name,
                client_data,
                ..
            },
            _,
        ) = next_entity_msg(&mut client)
        {
            assert_eq!(type_name, "Greeter");
            assert_eq!(
                decode(&client_data)
                    .map_get("visits")
                    .and_then(Value::as_i64),
                Some(0)
            );
            break eid;
        }
    };

    // (name, visits after the call, guests in the book after the call)
    for (name, visits, guests) in [("Ada", 1, 1), ("Bob", 2, 2), ("Ada", 3, 2)] {
        let mut arg = Vec::new();
        msgpack::write_str(&mut arg, name);
        let hello = Msg::CallEntityMethodFromClient {
            eid: greeter,
            method: "Hello".into(),
            args: vec![arg],
            client_id: None,
        };
        client.send(&hello.to_payload()).unwrap();

        let (m, raw) = next_entity_msg(&mut client);
        let ClientMsg::NotifyMapAttrChange {
            eid,
            path,
            key,
            val,
        } = m
        else {
            panic!("Hello({name}): expected the visits change, got {m:?}");
        };
        assert_eq!((eid, key.as_str()), (greeter, "visits"));
        assert_eq!(path, [0xc0], "a root attribute has path nil");
        assert_eq!(decode(&val), Value::Int(visits));
        // The bytes after the header and entity ID, as TUTORIAL.md shows them.
        let mut tail = vec![1, 0, 0, 0, 0xc0, 6, 0, 0, 0];
        tail.extend_from_slice(b"visits");
        tail.extend_from_slice(&[9, 0, 0, 0, 0xd3, 0, 0, 0, 0, 0, 0, 0, visits as u8]);
        assert_eq!(&raw[36..], &tail[..]);

        let (m, _) = next_entity_msg(&mut client);
        let ClientMsg::CallEntityMethodOnClient { eid, method, args } = m else {
            panic!("Hello({name}): expected OnHello, got {m:?}");
        };
        assert_eq!((eid, method.as_str()), (greeter, "OnHello"));
        let args: Vec<Value> = args.iter().map(|a| decode(a)).collect();
        assert_eq!(
            args,
            [Value::Str(format!("Hello, {name}!")), Value::Int(visits)]
        );

        let (m, _) = next_entity_msg(&mut client);
        let ClientMsg::CallEntityMethodOnClient { eid, method, args } = m else {
            panic!("Hello({name}): expected OnGuestbook, got {m:?}");
        };
        assert_eq!((eid, method.as_str()), (greeter, "OnGuestbook"));
        let args: Vec<Value> = args.iter().map(|a| decode(a)).collect();
        assert_eq!(args, [Value::Int(guests)]);
    }
    drop(client);

    // The tutorial's Python client, if this machine has Python 3.
    let python = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if python {
        let out = Command::new("python3")
            .arg(root().join(EXAMPLE_DIR).join("client.py"))
            .arg(gate.to_string())
            .args(["Cy", "Ada"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "client.py failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 7, "client.py printed {stdout}");
        assert!(
            lines[0].starts_with("1002 create Greeter ")
                && lines[0].ends_with(" player=True {'visits': 0}"),
            "{stdout}"
        );
        assert_eq!(
            lines[1..],
            [
                "1004 attr visits = 1",
                "1009 call OnHello('Hello, Cy!', 1)",
                "1009 call OnGuestbook(3)",
                "1004 attr visits = 2",
                "1009 call OnHello('Hello, Ada!', 2)",
                "1009 call OnGuestbook(3)",
            ],
            "{stdout}"
        );
    } else {
        eprintln!("python3 not found: the tutorial's client.py was not run");
    }

    for (name, code) in servers.stop_all() {
        assert_eq!(code, Some(0), "{name} exit status");
    }
    let game_log = std::fs::read_to_string(c.dir.join("game1.log")).unwrap();
    assert!(
        game_log.contains("is open"),
        "the Guestbook opened: {game_log}"
    );
    let errors = c.error_lines();
    assert!(errors.is_empty(), "error lines in the logs: {errors:#?}");
}
