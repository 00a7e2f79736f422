//! The observability endpoint's HTTP, without sockets: reading a request ([`parse`]),
//! writing a response ([`response`], [`response_with`]), and the two bodies it serves: Prometheus text
//! ([`Metrics`], format 0.0.4) for `/metrics` and a flat JSON object ([`Status`]) for
//! `/status`. The reactor owns the connections (one request each, GET only, closed after
//! the answer; a request that is malformed, too large or too slow costs its connection).
//! No sockets, no clock.

use std::fmt::Write as _;

/// The largest request accepted (request line and headers).
pub const MAX_REQUEST: usize = 8192;

/// What a buffer holds so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// The headers have not ended yet.
    Incomplete,
    /// A GET (or HEAD) of this path (the query string removed).
    Get { path: String, head: bool },
    /// Not a request this endpoint serves: the status to answer and why.
    Refuse { status: u16, why: &'static str },
}

/// Reads a request from the bytes received so far.
pub fn parse(buf: &[u8]) -> Parse {
    let Some(end) = find(buf, b"\r\n\r\n").or_else(|| find(buf, b"\n\n")) else {
        return if buf.len() > MAX_REQUEST {
            Parse::Refuse {
                status: 431,
                why: "request headers too large",
            }
        } else {
            Parse::Incomplete
        };
    };
    if end > MAX_REQUEST {
        return Parse::Refuse {
            status: 431,
            why: "request headers too large",
        };
    }
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Parse::Refuse {
            status: 400,
            why: "request is not text",
        };
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parse::Refuse {
            status: 400,
            why: "malformed request line",
        };
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Parse::Refuse {
            status: 400,
            why: "malformed request line",
        };
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return Parse::Refuse {
                status: 405,
                why: "only GET is served",
            }
        }
    };
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
    Parse::Get {
        path,
        head: head_only,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A whole response: status line, headers (the connection closes after it) and body (left
/// out for HEAD, its length still given).
pub fn response(status: u16, content_type: &str, body: &[u8], head: bool) -> Vec<u8> {
    response_with(status, content_type, &[], body, head)
}

/// [`response`] with more header lines (`name`, `value`) after the content type and length.
pub fn response_with(
    status: u16,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    head: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    if !head {
        out.extend_from_slice(body);
    }
    out
}

/// The content type of [`Metrics`] bodies.
pub const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of [`Status`] bodies.
pub const STATUS_TYPE: &str = "application/json";

/// A Prometheus text-format body. Each metric family is written once with its HELP and
/// TYPE lines, then its samples; every name is prefixed `goworld_`.
#[derive(Debug, Default)]
pub struct Metrics {
    out: String,
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(l: &[(&str, &str)]) -> String {
    if l.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Metrics {
    /// An empty body.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP goworld_{name} {help}");
        let _ = writeln!(self.out, "# TYPE goworld_{name} {kind}");
    }

    /// A counter family with one sample per label set (`name` without `_total`; it is added).
    pub fn counters(&mut self, name: &str, help: &str, samples: &[(&[(&str, &str)], u64)]) {
        self.family(&format!("{name}_total"), "counter", help);
        for (l, v) in samples {
            let _ = writeln!(self.out, "goworld_{name}_total{} {v}", labels(l));
        }
    }

    /// A counter family with one label: one sample per `(label value, count)`.
    pub fn counters_by(&mut self, name: &str, help: &str, label: &str, samples: &[(&str, u64)]) {
        let labels: Vec<[(&str, &str); 1]> = samples.iter().map(|(v, _)| [(label, *v)]).collect();
        let s: Vec<(&[(&str, &str)], u64)> = (labels.iter().zip(samples))
            .map(|(l, (_, n))| (&l[..], *n))
            .collect();
        self.counters(name, help, &s);
    }

    /// A gauge family with one label: one sample per `(label value, value)`.
    pub fn gauges_by(&mut self, name: &str, help: &str, label: &str, samples: &[(&str, f64)]) {
        let labels: Vec<[(&str, &str); 1]> = samples.iter().map(|(v, _)| [(label, *v)]).collect();
        let s: Vec<(&[(&str, &str)], f64)> = (labels.iter().zip(samples))
            .map(|(l, (_, n))| (&l[..], *n))
            .collect();
        self.gauges(name, help, &s);
    }

    /// A counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.counters(name, help, &[(&[], v)]);
    }

    /// A counter without labels whose value is not whole (seconds).
    pub fn counter_f(&mut self, name: &str, help: &str, v: f64) {
        self.family(&format!("{name}_total"), "counter", help);
        let _ = writeln!(self.out, "goworld_{name}_total {v}");
    }

    /// A gauge family with one sample per label set.
    pub fn gauges(&mut self, name: &str, help: &str, samples: &[(&[(&str, &str)], f64)]) {
        self.family(name, "gauge", help);
        for (l, v) in samples {
            let _ = writeln!(self.out, "goworld_{name}{} {v}", labels(l));
        }
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, v: f64) {
        self.gauges(name, help, &[(&[], v)]);
    }

    /// A histogram (seconds).
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        let mut cum = 0u64;
        for (i, le) in BUCKETS.iter().enumerate() {
            cum += h.counts[i];
            let _ = writeln!(self.out, "goworld_{name}_bucket{{le=\"{le}\"}} {cum}");
        }
        cum += h.counts[BUCKETS.len()];
        let _ = writeln!(self.out, "goworld_{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(self.out, "goworld_{name}_sum {}", h.sum);
        let _ = writeln!(self.out, "goworld_{name}_count {cum}");
    }

    /// The body.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Histogram bucket bounds in seconds: 10 µs to 10 s.
pub const BUCKETS: [f64; 13] = [
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 10.0,
];

/// Durations counted into [`BUCKETS`].
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
}

impl Histogram {
    /// Counts one observation of `secs` seconds.
    pub fn observe(&mut self, secs: f64) {
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// A flat JSON object, fields in the order they are set.
#[derive(Debug, Default)]
pub struct Status {
    fields: Vec<(String, String)>,
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Status {
    /// An empty object.
    pub fn new() -> Status {
        Status::default()
    }

    /// A string field.
    pub fn str(&mut self, k: &str, v: &str) -> &mut Status {
        self.fields.push((k.to_string(), json_str(v)));
        self
    }

    /// A number field (non-finite numbers are written as null).
    pub fn num(&mut self, k: &str, v: f64) -> &mut Status {
        let v = if v.is_finite() {
            format!("{v}")
        } else {
            "null".into()
        };
        self.fields.push((k.to_string(), v));
        self
    }

    /// An object field of numbers (counts by type, say).
    pub fn counts(&mut self, k: &str, v: &[(String, u64)]) -> &mut Status {
        let inner: Vec<String> = v
            .iter()
            .map(|(name, n)| format!("{}:{n}", json_str(name)))
            .collect();
        self.fields
            .push((k.to_string(), format!("{{{}}}", inner.join(","))));
        self
    }

    /// The body.
    pub fn finish(&self) -> String {
        let inner: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("{}:{v}", json_str(k)))
            .collect();
        format!("{{{}}}\n", inner.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_or_refused() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Parse::Incomplete
        );
        assert_eq!(
            parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Parse::Get {
                path: "/metrics".into(),
                head: false
            }
        );
        assert_eq!(
            parse(b"HEAD /status HTTP/1.0\n\n"),
            Parse::Get {
                path: "/status".into(),
                head: true
            }
        );
        let refused = |b: &[u8]| match parse(b) {
            Parse::Refuse { status, .. } => status,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(b"POST /metrics HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(refused(b"GET metrics HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(refused(b"GET /a b HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(refused(b"\xff\xfe\r\n\r\n"), 400);
        assert_eq!(refused(&vec![b'a'; MAX_REQUEST + 1]), 431);
    }

    #[test]
    fn responses_carry_their_length_and_close() {
        let r = response(200, STATUS_TYPE, b"{}", false);
        assert_eq!(
            r,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
        let h = response(404, "text/plain", b"no", true);
        assert!(h.ends_with(b"Content-Length: 2\r\nConnection: close\r\n\r\n"));
        let f = response_with(
            200,
            "text/css",
            &[("Cache-Control", "no-cache")],
            b"a{}",
            true,
        );
        assert_eq!(
            f,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/css\r\nContent-Length: 3\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let mut m = Metrics::new();
        m.counters(
            "closed",
            "Connections closed, by reason.",
            &[(&[("reason", "peer \"x\"")], 3), (&[("reason", "io")], 1)],
        );
        m.gauge("entities", "Entities.", 2.0);
        let mut h = Histogram::default();
        h.observe(0.00002);
        h.observe(3.0);
        h.observe(20.0);
        m.histogram("tick_seconds", "Tick time.", &h);
        let text = m.finish();
        assert!(text.contains("# TYPE goworld_closed_total counter\n"));
        assert!(text.contains("goworld_closed_total{reason=\"peer \\\"x\\\"\"} 3\n"));
        assert!(text.contains("goworld_entities 2\n"));
        assert!(text.contains("goworld_tick_seconds_bucket{le=\"0.00005\"} 1\n"));
        assert!(text.contains("goworld_tick_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("goworld_tick_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("goworld_tick_seconds_count 3\n"));
    }

    #[test]
    fn status_is_json() {
        let mut s = Status::new();
        s.str("kind", "game\"1")
            .num("pid", 12.0)
            .num("bad", f64::NAN);
        s.counts("entities", &[("Avatar".into(), 3)]);
        assert_eq!(
            s.finish(),
            "{\"kind\":\"game\\\"1\",\"pid\":12,\"bad\":null,\"entities\":{\"Avatar\":3}}\n"
        );
    }
}
