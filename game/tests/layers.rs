//! The game crate's layering, checked from its sources: which top-level module may use which.
//!
//! Each module of `game/src` (a file `x.rs` and, if present, the folder `x/`) is a node; a
//! reference `crate::other` (or `crate::{other, ..}`) in its sources is an edge, and a
//! `crate::Item` naming something defined in `lib.rs` is an edge to the crate root. Every edge
//! must go down the table below (or stay in the module's own layer), and the graph must have
//! no loop. A new module must be given a layer here, so the picture in ARCHITECTURE.md stays
//! true. Test modules (`tests.rs`, `*_tests.rs`) are not part of the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may use modules of lower layers, and of its own layer
/// as long as no loop forms.
const LAYERS: &[(&str, &[&str])] = &[
    // Leaf parts: attribute trees, typed arguments, the AOI index, crontab specs.
    ("leaves", &["aoi", "args", "attr", "crontab"]),
    // Storage and the KVDB: requests, results, backends and their workers.
    ("stores", &["store"]),
    // What game code is written against; reads the world only through `api::WorldView`.
    ("api", &["api"]),
    // The engine: entities, spaces, services, persistence, timers.
    ("engine", &["world"]),
    // The game process as a state machine (`GameService`, in lib.rs).
    ("service", &["<root>"]),
    // The shell: the reactor, signals, worker threads.
    ("shell", &["run"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn is_test_file(p: &Path) -> bool {
    let name = p.file_name().unwrap().to_string_lossy();
    name == "tests.rs" || name.ends_with("_tests.rs")
}

/// The `.rs` files of module `m`: `m.rs` and everything under `m/`.
fn files_of(m: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let file = src().join(format!("{m}.rs"));
    if file.exists() {
        out.push(file);
    }
    let mut dirs = vec![src().join(m)];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.retain(|p| !is_test_file(p));
    out
}

/// Top-level modules declared in lib.rs (`mod x;` / `pub mod x;`).
fn modules(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            let name = rest.strip_suffix(';')?;
            Some(name.to_string())
        })
        .filter(|m| !m.ends_with("tests"))
        .collect()
}

/// Strips `//` comments (doc comments included: an intra-doc link is not a dependency).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segments after every `crate::` in `text`, including each entry of a
/// `crate::{a, b::c}` group.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            for entry in body.split(',') {
                let id = ident_at(entry.trim());
                if !id.is_empty() {
                    out.insert(id.to_string());
                }
            }
        } else {
            let id = ident_at(rest);
            if !id.is_empty() {
                out.insert(id.to_string());
            }
        }
    }
    out
}

/// Edges between modules (and `<root>`, lib.rs).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let mods = modules(&lib);
    let node = |seg: &str| {
        if mods.iter().any(|m| m == seg) {
            seg.to_string()
        } else {
            "<root>".to_string()
        }
    };
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &mods {
        let mut to = BTreeSet::new();
        for f in files_of(m) {
            let text = code(&std::fs::read_to_string(&f).unwrap());
            for seg in crate_refs(&text) {
                let n = node(&seg);
                if n != *m {
                    to.insert(n);
                }
            }
        }
        g.insert(m.clone(), to);
    }
    // lib.rs itself: its own modules by name, outside their declarations.
    let lib_code = code(&lib);
    let mut to = BTreeSet::new();
    for m in &mods {
        let used = lib_code.match_indices(&format!("{m}::")).any(|(i, _)| {
            !lib_code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        });
        if used {
            to.insert(m.clone());
        }
    }
    g.insert("<root>".to_string(), to);
    g
}

fn layer_of(m: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&m))
}

/// A loop in `g`, as the path that closes it, if there is one.
fn find_loop(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let at = path.iter().position(|p| p == n).unwrap();
                let mut cycle = path[at..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for next in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, g, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn game_modules_use_only_lower_layers_and_form_no_loop() {
    let g = graph();
    assert!(g.len() >= 8, "modules not found: {g:?}");
    let mut wrong = Vec::new();
    for (from, tos) in &g {
        let Some(lf) = layer_of(from) else {
            wrong.push(format!(
                "module {from} has no layer in LAYERS (tests/layers.rs)"
            ));
            continue;
        };
        for to in tos {
            match layer_of(to) {
                None => wrong.push(format!("module {to} has no layer in LAYERS")),
                Some(lt) if lt > lf => wrong.push(format!(
                    "{from} ({}) uses {to} ({}), a higher layer",
                    LAYERS[lf].0, LAYERS[lt].0
                )),
                Some(_) => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}\nthe graph: {g:#?}", wrong.join("\n"));
    if let Some(cycle) = find_loop(&g) {
        panic!("an import loop: {}\nthe graph: {g:#?}", cycle.join(" -> "));
    }
    // The api reads the world only through its view: no path to the engine at all.
    assert!(!g["api"].contains("world") && !g["api"].contains("<root>"));
}

/// The checker finds what it is meant to find (so a pass above means something).
#[test]
fn the_checker_sees_grouped_references_and_loops() {
    let refs = crate_refs("use crate::{attr::X, api::{Ctx, Y}};\nlet x = crate::world::f();");
    assert!(refs.contains("attr") && refs.contains("api") && refs.contains("world"));
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(find_loop(&g).unwrap(), ["a", "b", "a"]);
    assert!(code("let a = 1; // crate::world").find("world").is_none());
}
