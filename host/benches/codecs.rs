//! The per-request codecs, each beside a reference measured in the same run: parsing one
//! HTTP/1 request head with `httparse` (what hyper does for every request any HTTP/1 proxy
//! serves). `cargo xtask bench --micro` prints every figure as a ratio to it
//! (`target/bench/micro.md`).
//!
//! * The filters' logic (`keel-filter-logic`, the code compiled into the modules, run natively
//!   here): the session id parsed, sticky's decision from the request's headers, and
//!   route_suffix's plans for the request and for a response that sets the session cookie.
//! * AJP (`keel-ajp`): the forward request as the client builds and encodes it, and the
//!   member's answer decoded (SEND_HEADERS, a 128-byte SEND_BODY_CHUNK, END_RESPONSE).
//! * memcached's meta protocol (`keel-store`): a session load (`mg` encoded, its `VA` answer
//!   decoded) and a save (`ms` encoded, its `HD` answer decoded), with a 2 KiB record.

#![allow(missing_docs)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use keel_ajp::client::{AjpRequest, ClientConfig, Peer, RequestBody, Secret, encode_request};
use keel_ajp::{PacketSize, container};
use keel_filter_logic::config::{RouteSuffixConfig, StickyConfig};
use keel_filter_logic::route_suffix::{on_request, on_response};
use keel_filter_logic::session_id::SessionId;
use keel_filter_logic::sticky::decide;
use keel_store::meta::{Expiry, Key, Limits, MetaGet, MetaSet, Response, decode};

const SESSION: &str = "4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F-n1.tomcat1";

/// The request every benchmark reads: a browser's GET with a session cookie, as keel forwards
/// it (the forwarding headers and the request id added).
const HEADERS: [(&str, &str); 10] = [
    ("host", "shop.example"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
    ("accept-language", "en-GB,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br"),
    (
        "cookie",
        "theme=dark; JSESSIONID=4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F-n1.tomcat1; lang=en",
    ),
    ("x-forwarded-for", "127.0.0.1"),
    ("x-forwarded-proto", "http"),
    ("x-forwarded-host", "shop.example"),
    ("x-request-id", "3f1e0c2a-9b8d-4c7e-a6f5-0e1d2c3b4a59"),
];

const PATH: &str = "/shop/cart?item=7";

/// The request head on the wire, for the reference.
fn head_bytes() -> Vec<u8> {
    let mut head = format!("GET {PATH} HTTP/1.1\r\n");
    for (name, value) in HEADERS {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The request's headers as the filters' logic reads them (the host's pairs).
fn pairs() -> Vec<(&'static str, &'static [u8])> {
    let mut pairs = vec![(":path", PATH.as_bytes()), (":method", &b"GET"[..])];
    pairs.extend(HEADERS.iter().map(|(n, v)| (*n, v.as_bytes())));
    pairs
}

fn reference(c: &mut Criterion) {
    let head = head_bytes();
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let parsed = httparse::Request::new(&mut headers).parse(&head);
    assert!(matches!(parsed, Ok(httparse::Status::Complete(n)) if n == head.len()));
    c.bench_function("reference: HTTP/1 head parse (httparse)", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut headers);
            black_box(req.parse(black_box(&head)).ok())
        });
    });
}

fn filter_logic(c: &mut Criterion) {
    let pairs = pairs();
    // Each benchmark measures the path that succeeds: checked once before it runs.
    assert!(SessionId::parse(SESSION.as_bytes()).is_some_and(|id| id.route().is_some()));
    c.bench_function("session id: parse", |b| {
        b.iter(|| black_box(SessionId::parse(black_box(SESSION.as_bytes()))));
    });
    let sticky = StickyConfig::default();
    assert_eq!(decide(&sticky, &pairs).header_value, Some("tomcat1"));
    c.bench_function("sticky: decide from the request headers", |b| {
        b.iter(|| black_box(decide(&sticky, black_box(&pairs)).header_value));
    });
    let suffix = RouteSuffixConfig::from_json(
        br#"{"routes": {"tomcat1": "127.0.0.1:8081", "tomcat2": "127.0.0.1:8082"}}"#,
    )
    .unwrap_or_else(|e| panic!("route_suffix configuration: {e}"));
    let set_cookie = format!("JSESSIONID={SESSION}; Path=/; HttpOnly");
    let response = [
        ("content-type", &b"text/html;charset=UTF-8"[..]),
        ("set-cookie", set_cookie.as_bytes()),
    ];
    let request = on_request(&suffix, &pairs);
    let plan = on_response(&suffix, "tomcat2", &request.client, &response);
    assert!(!plan.is_unchanged(), "the cookie moves to tomcat2");
    c.bench_function("route_suffix: request and response plans", |b| {
        b.iter(|| {
            let request = on_request(&suffix, black_box(&pairs));
            black_box(on_response(&suffix, "tomcat2", &request.client, &response))
        });
    });
}

fn ajp(c: &mut Criterion) {
    let config = ClientConfig::new(Secret::Value("bench-secret".into()));
    let request = || {
        let mut builder = Request::builder().method(Method::GET).uri(PATH);
        for (name, value) in HEADERS {
            builder = builder.header(name, value);
        }
        let (parts, ()) = builder
            .body(())
            .unwrap_or_else(|e| panic!("request: {e}"))
            .into_parts();
        AjpRequest {
            parts,
            body: RequestBody::Empty,
            peer: Peer {
                remote: ([127, 0, 0, 1], 40000).into(),
                local: ([127, 0, 0, 1], 8080).into(),
                tls: None,
            },
            route: Some("tomcat1".into()),
            retry_unanswered: true,
        }
    };
    let packet =
        encode_request(&mut request(), &config).unwrap_or_else(|e| panic!("forward request: {e}"));
    assert!(
        packet.len() > head_bytes().len() / 2,
        "{} bytes",
        packet.len()
    );
    c.bench_function("ajp: forward request (build and encode)", |b| {
        b.iter_batched_ref(
            request,
            |req| black_box(encode_request(req, &config).ok()),
            BatchSize::SmallInput,
        );
    });

    let mut answer = BytesMut::new();
    let headers = [
        ("content-type", "text/html;charset=UTF-8"),
        ("content-length", "128"),
        (
            "set-cookie",
            "JSESSIONID=4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F.tomcat1; Path=/",
        ),
    ]
    .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)));
    container::encode_send_headers(&mut answer, StatusCode::OK, &headers);
    container::encode_send_body_chunk(&mut answer, &[b'x'; 128]);
    container::encode_end_response(&mut answer, true);
    let mut frames = 0;
    let mut all = answer.clone();
    while let Ok(Some(_)) = keel_ajp::decode(&mut all, PacketSize::DEFAULT) {
        frames += 1;
    }
    assert_eq!((frames, all.len()), (3, 0), "head, body chunk, end");
    c.bench_function("ajp: response decode (head, 128 B body, end)", |b| {
        b.iter_batched_ref(
            || answer.clone(),
            |buf| {
                while let Ok(Some(frame)) = keel_ajp::decode(buf, PacketSize::DEFAULT) {
                    black_box(frame);
                }
            },
            BatchSize::SmallInput,
        );
    });
}

fn memcached(c: &mut Criterion) {
    let key = Key::new(SESSION).unwrap_or_else(|e| panic!("key: {e}"));
    let record = vec![b'r'; 2048];
    let mut hit = format!("VA {} c7 t1800\r\n", record.len()).into_bytes();
    hit.extend_from_slice(&record);
    hit.extend_from_slice(b"\r\n");
    let loaded = decode(&mut BytesMut::from(&hit[..]), Limits::default());
    assert!(matches!(loaded, Ok(Some(Response::Value { ref data, .. })) if data.len() == 2048));
    let saved = decode(&mut BytesMut::from(&b"HD c8\r\n"[..]), Limits::default());
    assert!(matches!(saved, Ok(Some(Response::Done(_)))));
    c.bench_function("memcached: session load (mg, VA 2 KiB)", |b| {
        let mut out = BytesMut::with_capacity(128);
        b.iter_batched_ref(
            || BytesMut::from(&hit[..]),
            |answer| {
                out.clear();
                let mut get = MetaGet::new(&key);
                get.value = true;
                get.cas = true;
                get.ttl_left = true;
                get.encode(&mut out);
                black_box(decode(answer, Limits::default()).ok())
            },
            BatchSize::SmallInput,
        );
    });
    c.bench_function("memcached: session save (ms 2 KiB, HD)", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter_batched_ref(
            || BytesMut::from(&b"HD c8\r\n"[..]),
            |answer| {
                out.clear();
                let mut set = MetaSet::new(&key, &record, Expiry::from_ttl(1800, 0));
                set.compare_cas = Some(7);
                set.encode(&mut out);
                black_box(decode(answer, Limits::default()).ok())
            },
            BatchSize::SmallInput,
        );
    });
}

criterion_group!(benches, reference, filter_logic, ajp, memcached);
criterion_main!(benches);
