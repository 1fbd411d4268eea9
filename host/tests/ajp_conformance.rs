//! Conformance run: Tomcat behind keel sees what it sees behind Apache httpd's mod_proxy_ajp.
//!
//! One real Tomcat 10 (AJP with a secret, `jvmRoute tc1`; `host/ajp/tests/support/tomcat.rs`),
//! one Apache httpd (Debian's `apache2`; `tests/support/httpd.rs`: `ProxyPass / ajp://…` with
//! the secret, HTTP/1.1 and h2c) and one keel (an `ajp://` member with the same secret and the
//! default filter chain, `sticky` + `route_suffix`). Every case is sent by the same hyper client
//! through httpd and through keel; `KeelConformanceServlet` reports what Tomcat saw (`key=value`
//! lines: the servlet API's view of the request, every header, the body's length and SHA-256,
//! the session id, the cookies) and the client adds what it got back (`client.*`). The two
//! reports must be equal field by field, except for the differences listed in `DIFFERENCES`,
//! each with the values both sides give and the reason keel differs on purpose. A listed
//! difference that no case shows any more fails the run too, so the list stays true.
//!
//! Before comparing, two things that differ only because there are two fronts are replaced in
//! both reports: the front's own port (`127.0.0.1:<front>`; Host, server and local port) and
//! the client's ephemeral port (`remotePort`, when it is the port the client really used).
//! Header names are compared lower-cased and sorted (the servlet reports them so): keel's
//! `http::HeaderMap` lower-cases names and groups fields by name, which HTTP makes equivalent;
//! the order of the values of one name is kept.
//!
//! httpd gets h2c too (mod_http2, prior knowledge), so the HTTP/2 cases compare both sides.
//! Run: `cargo test -p keel --test ajp_conformance` (needs `tomcat10`, a JDK, `apache2` and
//! the built filters, as `.ci/run` and `cargo xtask test` provide).
#![allow(clippy::unwrap_used)] // tests may unwrap (PLAN.md)

#[allow(dead_code)]
#[path = "proxy/harness.rs"]
mod harness;
#[path = "support/httpd.rs"]
mod httpd;
#[allow(dead_code)]
#[path = "../ajp/tests/support/tomcat.rs"]
mod tomcat;
#[path = "support/uuid.rs"]
mod uuid;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use harness::{Keel, Scratch, config, eventually, filters_section};
use http::{Method, Request, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use httpd::Httpd;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{HttpConnector, HttpInfo};
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use tomcat::Tomcat;

const SECRET: &str = "keel-conformance-secret";
/// Tomcat's jvmRoute and keel's member route: the sticky filter routes `.tc1` ids to it.
const ROUTE: &str = "tc1";
/// A session id as Tomcat writes them, with the route.
const SESSION: &str = "0123456789ABCDEF0123456789ABCDEF.tc1";
/// The header that names a request in the servlet's stash (left out of its report).
const ID_HEADER: &str = "x-conformance-id";

/// A difference between the two reports that keel makes on purpose.
struct Difference {
    /// The report key.
    field: &'static str,
    /// The cases it shows in (empty: every case).
    cases: &'static [&'static str],
    /// The value through httpd (`None`: absent), after normalization; several values joined
    /// with `\n`.
    httpd: Option<&'static str>,
    /// The value through keel.
    keel: Option<&'static str>,
    /// Why keel differs.
    reason: &'static str,
}

/// The cases without a request body.
const BODYLESS: &[&str] = &[
    "get-query-encoded-path",
    "head",
    "cookies",
    "40-headers",
    "big-response-headers",
    "jsessionid-path",
];

/// The differences keel makes on purpose. Keep this list short and every reason true.
const DIFFERENCES: &[Difference] = &[
    Difference {
        field: "header.x-forwarded-for",
        cases: &[],
        httpd: None,
        keel: Some("127.0.0.1"),
        reason: "keel adds X-Forwarded-For/-Proto/-Host to every member, HTTP and AJP alike, so \
                 that applications that read them work the same behind either (configurable: \
                 `forwarded:`); mod_proxy_ajp adds none (AJP carries remote_addr itself)",
    },
    Difference {
        field: "header.x-forwarded-proto",
        cases: &[],
        httpd: None,
        keel: Some("http"),
        reason: "as header.x-forwarded-for",
    },
    Difference {
        field: "header.x-forwarded-host",
        cases: &[],
        httpd: None,
        keel: Some("127.0.0.1:<front>"),
        reason: "as header.x-forwarded-for",
    },
    Difference {
        field: "header.x-request-id",
        cases: &[],
        httpd: None,
        keel: Some("<uuid v4>"),
        reason: "keel gives every request without one Envoy's generated x-request-id, a UUID v4 \
                 (`forwarded.generate_request_id`, as Envoy's connection manager: \
                 source/common/http/conn_manager_utility.cc); httpd adds none",
    },
    Difference {
        field: "header.x-repeated",
        cases: &["40-headers"],
        httpd: Some("one, two"),
        keel: Some("one\ntwo"),
        reason: "keel forwards each header field line as the client sent it (two AJP headers, \
                 two getHeaders() values); httpd joins repeated fields into one with \", \" \
                 (apr_table_mergen). RFC 9110 §5.3 makes both the same list; keeping the lines \
                 apart is also right for fields that are not lists",
    },
    Difference {
        field: "contentLength",
        cases: BODYLESS,
        httpd: Some("-1"),
        keel: Some("0"),
        reason: "keel sends Content-Length: 0 with a bodyless request, as mod_jk does: Tomcat \
                 takes a missing Content-Length for a body of unknown length (mod_jk.c, \
                 ajp-fidelity.md F11), so an application that reads the body costs an \
                 extra GET_BODY_CHUNK round trip behind httpd, and getContentLength() says -1",
    },
    Difference {
        field: "header.content-length",
        cases: BODYLESS,
        httpd: None,
        keel: Some("0"),
        reason: "as contentLength",
    },
    Difference {
        field: "requestURI",
        cases: &["get-query-encoded-path"],
        httpd: Some("/app/conformance/caf%C3%A9/a%20b/~user"),
        keel: Some("/app/conformance/caf%C3%A9/a%20b/%7Euser"),
        reason: "keel forwards the client's path as sent, which is what Tomcat expects of \
                 req_uri (it decodes and normalizes it itself); httpd's ProxyPass decodes the \
                 path and encodes it again (ap_proxy_canonenc), turning %7E into ~ (review \
                 ajp-fidelity.md §1.3)",
    },
];

/// A request body as the client sends it.
#[derive(Clone)]
enum Payload {
    /// No body.
    Empty,
    /// With Content-Length.
    Length(Bytes),
    /// These pieces, with no length (HTTP/1.1: `Transfer-Encoding: chunked`; HTTP/2: DATA
    /// frames and no content-length).
    Chunked(Vec<Bytes>),
}

/// The client's request body: the pieces, and the size if told.
struct TestBody {
    pieces: VecDeque<Bytes>,
    size: Option<u64>,
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.pieces.pop_front().map(|b| Ok(Frame::data(b))))
    }
    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }
    fn size_hint(&self) -> SizeHint {
        self.size
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

impl Payload {
    fn body(&self) -> TestBody {
        match self {
            Payload::Empty => TestBody {
                pieces: VecDeque::new(),
                size: Some(0),
            },
            Payload::Length(b) => TestBody {
                pieces: VecDeque::from([b.clone()]),
                size: Some(b.len() as u64),
            },
            Payload::Chunked(p) => TestBody {
                pieces: p.iter().cloned().collect(),
                size: None,
            },
        }
    }
}

/// One request of the run.
struct Case {
    name: &'static str,
    version: Version,
    method: Method,
    /// Path and query.
    target: String,
    headers: Vec<(String, String)>,
    body: Payload,
    /// The SHA-256 Tomcat must see of the body, when the case checks it.
    sha256: Option<String>,
}

fn case(name: &'static str, method: Method, target: &str) -> Case {
    Case {
        name,
        version: Version::HTTP_11,
        method,
        target: target.to_owned(),
        headers: Vec::new(),
        body: Payload::Empty,
        sha256: None,
    }
}

impl Case {
    fn header(mut self, name: &str, value: &str) -> Case {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    fn body(mut self, body: Payload) -> Case {
        self.body = body;
        self
    }
    fn h2(mut self) -> Case {
        self.version = Version::HTTP_2;
        self
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

/// Pseudo-random bytes.
fn data(n: usize) -> Bytes {
    let mut x: u32 = 0x9e37_79b9;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect::<Vec<u8>>()
        .into()
}

fn hex_sha256(b: &[u8]) -> String {
    Sha256::digest(b).iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn cases() -> Vec<Case> {
    let form = Bytes::from_static(b"a=1&b=2");
    let form_pieces = vec![Bytes::from_static(b"a=1"), Bytes::from_static(b"&b=2")];
    let upload = data(1 << 20);
    let upload_sha = hex_sha256(&upload);
    let mut forty = case("40-headers", Method::GET, "/app/conformance/headers");
    for i in 1..=35 {
        forty = forty.header(&format!("X-Conformance-H{i:02}"), &format!("value {i}"));
    }
    // 40 fields with a repeated header, the test's id header and Host.
    forty = forty
        .header("X-Repeated", "one")
        .header("X-Repeated", "two")
        .header("Accept", "text/plain");
    vec![
        case(
            "get-query-encoded-path",
            Method::GET,
            "/app/conformance/caf%C3%A9/a%20b/%7Euser?q=a%20b&x=1&x=2&e=%C3%A9&empty=&flag",
        ),
        case("head", Method::HEAD, "/app/conformance/head?x=1"),
        case("form-length", Method::POST, "/app/conformance/form")
            .header("content-type", FORM)
            .body(Payload::Length(form.clone())),
        case("form-chunked", Method::POST, "/app/conformance/form")
            .header("content-type", FORM)
            .body(Payload::Chunked(form_pieces.clone())),
        case("h2-form-no-length", Method::POST, "/app/conformance/form")
            .h2()
            .header("content-type", FORM)
            .body(Payload::Chunked(form_pieces)),
        case("h2-form-length", Method::POST, "/app/conformance/form")
            .h2()
            .header("content-type", FORM)
            .body(Payload::Length(form)),
        Case {
            sha256: Some(upload_sha.clone()),
            ..case("upload-1mb", Method::POST, "/app/conformance/upload")
                .header("content-type", "application/octet-stream")
                .body(Payload::Length(upload.clone()))
        },
        Case {
            sha256: Some(upload_sha),
            ..case(
                "upload-1mb-chunked",
                Method::POST,
                "/app/conformance/upload",
            )
            .header("content-type", "application/octet-stream")
            .body(Payload::Chunked(
                upload.chunks(100_000).map(Bytes::copy_from_slice).collect(),
            ))
        },
        case("cookies", Method::GET, "/app/conformance/cookies").header(
            "cookie",
            &format!("JSESSIONID={SESSION}; theme=dark; lang=\"en-GB\""),
        ),
        forty,
        case(
            "big-response-headers",
            Method::GET,
            "/app/conformance/big-headers?size=6000",
        ),
        case(
            "jsessionid-path",
            Method::GET,
            &format!("/app/conformance/page;jsessionid={SESSION}?x=1"),
        ),
    ]
}

/// The client: HTTP/1.1 and h2c (prior knowledge), pooled.
struct Clients {
    h1: Client<HttpConnector, TestBody>,
    h2: Client<HttpConnector, TestBody>,
}

/// What the client got.
struct Got {
    /// `client.*` fields.
    fields: Vec<(String, String)>,
    /// The client's own port.
    local_port: Option<u16>,
}

impl Clients {
    fn new() -> Clients {
        Clients {
            h1: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            h2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(HttpConnector::new()),
        }
    }

    async fn send(&self, front: &str, c: &Case, id: &str) -> Got {
        let mut b = Request::builder()
            .method(c.method.clone())
            .uri(format!("{front}{}", c.target))
            .version(c.version)
            .header(ID_HEADER, id);
        for (n, v) in &c.headers {
            b = b.header(n, v);
        }
        let req = b.body(c.body.body()).unwrap();
        let client = if c.version == Version::HTTP_2 {
            &self.h2
        } else {
            &self.h1
        };
        let res = match tokio::time::timeout(Duration::from_secs(30), client.request(req)).await {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => {
                return Got {
                    fields: vec![("client.error".into(), format!("{e:?}"))],
                    local_port: None,
                };
            }
            Err(_) => {
                return Got {
                    fields: vec![("client.error".into(), "timeout (30 s)".into())],
                    local_port: None,
                };
            }
        };
        let local_port = res
            .extensions()
            .get::<HttpInfo>()
            .map(|i| i.local_addr().port());
        let mut fields = vec![
            ("client.status".to_owned(), res.status().as_str().to_owned()),
            ("client.version".to_owned(), format!("{:?}", res.version())),
        ];
        // The headers Tomcat's servlet sets; the fronts' own (Date, Server, framing) differ by
        // nature.
        for name in ["content-type", "set-cookie", "x-conformance-big"] {
            for v in res.headers().get_all(name) {
                fields.push((
                    format!("client.{name}"),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                ));
            }
        }
        match res.into_body().collect().await {
            Ok(_) => {}
            Err(e) => fields.push(("client.body-error".into(), e.to_string())),
        }
        Got { fields, local_port }
    }

    /// The servlet's report for `id`, from Tomcat's own HTTP connector.
    async fn report(&self, tomcat: &Tomcat, id: &str) -> Vec<(String, String)> {
        let url = format!("http://{}/app/conformance/stash?id={id}", tomcat.http);
        let req = Request::get(url).body(Payload::Empty.body()).unwrap();
        let res = self.h1.request(req).await.expect("stash request");
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        if status != 200 {
            return vec![(
                "tomcat".into(),
                "(the request did not reach the servlet)".into(),
            )];
        }
        String::from_utf8_lossy(&body)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

type Report = BTreeMap<String, Vec<String>>;

/// What Tomcat saw and the client got, with the front's port and the client's port replaced.
fn normalize(fields: Vec<(String, String)>, front_port: u16, client_port: Option<u16>) -> Report {
    let front = format!("127.0.0.1:{front_port}");
    let mut r = Report::new();
    for (k, v) in fields {
        let v = if (k == "serverPort" || k == "localPort") && v == front_port.to_string() {
            "<front>".to_owned()
        } else if k == "remotePort" && client_port.is_some_and(|p| v == p.to_string()) {
            "<client port>".to_owned()
        } else if k == "header.x-request-id" && uuid::is_uuid_v4(&v) {
            "<uuid v4>".to_owned()
        } else {
            v.replace(&front, "127.0.0.1:<front>")
        };
        r.entry(k).or_default().push(v);
    }
    r
}

fn joined(r: &Report, k: &str) -> Option<String> {
    r.get(k).map(|v| v.join("\n"))
}

fn print_report(out: &mut String, title: &str, r: &Report) {
    let _ = writeln!(out, "  --- {title}");
    for (k, vs) in r {
        for v in vs {
            let shown = if v.len() > 120 {
                format!("{}… ({} bytes)", &v[..120], v.len())
            } else {
                v.clone()
            };
            let _ = writeln!(out, "    {k}={shown}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tomcat_sees_the_same_through_keel_as_through_httpd() {
    let tomcat = Tomcat::start(ROUTE, SECRET);
    let httpd = Httpd::start(tomcat.ajp, SECRET);
    let scratch = Scratch::new();
    let secret = scratch.write("ajp-secret", &format!("{SECRET}\n"));
    let keel = Keel::start(&config(
        &[(ROUTE, format!("ajp://{}", tomcat.ajp), "active")],
        &format!("  ajp:\n    secret_file: {}\n", secret.display()),
        &filters_section(),
    ));
    let clients = Clients::new();
    let fronts = [
        ("httpd", httpd.url(""), httpd.addr.port()),
        ("keel", keel.url(""), keel.addr.port()),
    ];

    // Tomcat answers through both before the run (it may still be warming up).
    for (name, url, _) in &fronts {
        let clients = &clients;
        eventually(
            &format!("Tomcat through {name}"),
            Duration::from_secs(30),
            move || async move {
                let c = case("warm-up", Method::GET, "/app/conformance/warm-up");
                let got = clients.send(url, &c, "warm-up").await;
                got.fields
                    .iter()
                    .any(|(k, v)| k == "client.status" && v == "200")
                    .then_some(())
            },
        )
        .await;
    }

    let mut failures = String::new();
    let mut seen: BTreeSet<usize> = BTreeSet::new();
    let mut today = String::new();
    for c in cases() {
        let mut reports = Vec::new();
        for (name, url, port) in &fronts {
            let id = format!("{}@{name}", c.name);
            let got = clients.send(url, &c, &id).await;
            let mut fields = clients.report(&tomcat, &id).await;
            fields.extend(got.fields);
            reports.push(normalize(fields, *port, got.local_port));
        }
        let (h, k) = (&reports[0], &reports[1]);
        let mut unexpected = Vec::new();
        let keys: BTreeSet<&String> = h.keys().chain(k.keys()).collect();
        for key in keys {
            let (hv, kv) = (joined(h, key), joined(k, key));
            if hv == kv {
                continue;
            }
            let listed = DIFFERENCES.iter().position(|d| {
                d.field == key
                    && (d.cases.is_empty() || d.cases.contains(&c.name))
                    && d.httpd == hv.as_deref()
                    && d.keel == kv.as_deref()
            });
            match listed {
                Some(i) => {
                    seen.insert(i);
                }
                None => {
                    let _ = writeln!(today, "{}: {key}: httpd {hv:?} keel {kv:?}", c.name);
                    unexpected.push(format!("{key}: httpd {hv:?}, keel {kv:?}"))
                }
            }
        }
        for (side, r) in [("httpd", h), ("keel", k)] {
            if let Some(want) = &c.sha256
                && joined(r, "body.sha256").as_deref() != Some(want.as_str())
            {
                unexpected.push(format!(
                    "body.sha256 through {side} is not the SHA-256 of what the client sent"
                ));
            }
        }
        if !unexpected.is_empty() {
            let _ = writeln!(failures, "\n=== {}: {}", c.name, unexpected.join("; "));
            print_report(&mut failures, "through httpd", h);
            print_report(&mut failures, "through keel", k);
        }
    }
    for (i, d) in DIFFERENCES.iter().enumerate() {
        if seen.contains(&i) {
            eprintln!("listed difference {}: {}", d.field, d.reason);
        } else {
            let _ = writeln!(
                failures,
                "\n=== listed difference no longer seen (remove it from DIFFERENCES): {} \
                 (cases {:?}): httpd {:?}, keel {:?}",
                d.field, d.cases, d.httpd, d.keel
            );
        }
    }
    if !today.is_empty() {
        eprintln!("unlisted differences:\n{today}");
    }
    assert!(
        failures.is_empty(),
        "Tomcat saw different requests through httpd and keel{failures}\nhttpd log:\n{}",
        httpd.log()
    );
}
