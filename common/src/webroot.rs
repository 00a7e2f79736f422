//! The gate's static files (`web_root`), without IO: which file under the web root a request
//! path names ([`lookup`]) and the content type it is served with ([`content_type`]). The
//! reactor reads the file (a small blocking read; the page's files are tiny) and answers.
//!
//! Only plain relative paths are served: `/` is `index.html`; any other path is decoded
//! (`%XX`), split on `/`, and refused (404) when a segment is empty, `.` or `..`, starts with a
//! dot (dot-files, `.git`), is `node_modules`, or holds a backslash or NUL, or when a `%2F`
//! hides a separator. Files over [`MAX_FILE`] bytes are refused too (by the reader).

use std::path::PathBuf;

/// The largest file served, in bytes.
pub const MAX_FILE: u64 = 4 << 20;

/// Why a path is not served (the 404's body).
pub type Refusal = &'static str;

/// The file under the web root that request path `path` (the query already removed) names,
/// and its content type; or why it is not served.
pub fn lookup(path: &str) -> Result<(PathBuf, &'static str), Refusal> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("not a path under the web root");
    };
    let rest = if rest.is_empty() { "index.html" } else { rest };
    let mut rel = PathBuf::new();
    for raw in rest.split('/') {
        let seg = percent_decode(raw).ok_or("bad percent escape")?;
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err("empty or dot segment");
        }
        if seg.starts_with('.') {
            return Err("dot-files are not served");
        }
        if seg == "node_modules" {
            return Err("node_modules is not served");
        }
        if seg.contains(['/', '\\', '\0']) {
            return Err("bad character in the path");
        }
        rel.push(seg);
    }
    let kind = content_type(rel.file_name().and_then(|n| n.to_str()).unwrap_or(""));
    Ok((rel, kind))
}

/// The content type of a file named `name`, by its extension.
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `%XX` decoded, as UTF-8; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ok(path: &str) -> (PathBuf, &'static str) {
        lookup(path).unwrap_or_else(|why| panic!("{path}: refused: {why}"))
    }

    #[test]
    fn the_root_is_index_html() {
        assert_eq!(
            ok("/"),
            (PathBuf::from("index.html"), "text/html; charset=utf-8")
        );
    }

    #[test]
    fn files_and_nested_files_map_under_the_root() {
        assert_eq!(
            ok("/app.js"),
            (PathBuf::from("app.js"), "text/javascript; charset=utf-8")
        );
        assert_eq!(
            ok("/client/dist/index.js").0,
            Path::new("client").join("dist").join("index.js")
        );
        assert_eq!(ok("/client/dist/index.js.map").1, "application/json");
        assert_eq!(ok("/a%20b.txt").0, PathBuf::from("a b.txt"));
        assert_eq!(ok("/%E4%B8%96.css").0, PathBuf::from("世.css"));
    }

    #[test]
    fn content_types_by_extension() {
        for (name, want) in [
            ("index.html", "text/html; charset=utf-8"),
            ("a.js", "text/javascript; charset=utf-8"),
            ("a.mjs", "text/javascript; charset=utf-8"),
            ("style.CSS", "text/css; charset=utf-8"),
            ("a.json", "application/json"),
            ("a.js.map", "application/json"),
            ("a.png", "image/png"),
            ("a.svg", "image/svg+xml"),
            ("favicon.ico", "image/x-icon"),
            ("a.txt", "text/plain; charset=utf-8"),
            ("a.wasm", "application/octet-stream"),
            ("Makefile", "application/octet-stream"),
        ] {
            assert_eq!(content_type(name), want, "{name}");
        }
    }

    #[test]
    fn escapes_dot_files_node_modules_and_odd_paths_are_refused() {
        for path in [
            "/..",
            "/../etc/passwd",
            "/client/../../x",
            "/%2e%2e/etc/passwd",
            "/client/%2E%2E/%2E%2E/x",
            "/./index.html",
            "//etc/passwd",
            "/client//index.js",
            "/client/",
            "/.git/config",
            "/.env",
            "/client/.gitignore",
            "/client/node_modules/x/index.js",
            "/node_modules",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/a%00b",
            "/a%zz",
            "/a%4",
            "/%ff",
            "index.html",
            "",
        ] {
            assert!(lookup(path).is_err(), "{path:?} was served");
        }
    }

    #[test]
    fn a_mapped_path_is_always_relative_and_plain() {
        for path in ["/", "/a/b/c.js", "/x%20y/z", "/C:/x", "/a:b"] {
            let (rel, _) = ok(path);
            assert!(rel.is_relative(), "{path}");
            assert!(
                rel.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))),
                "{path}: {rel:?}"
            );
        }
    }
}
