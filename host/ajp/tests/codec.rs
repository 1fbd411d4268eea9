//! The codec pinned to golden bytes (commented byte arrays), every decoder test split at
//! every offset, and property tests: the decoder never panics; encodings round-trip.
#![allow(clippy::unwrap_used)] // tests may unwrap (PLAN.md)

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use keel_ajp::container;
use keel_ajp::{
    DecodeError, EncodeError, ForwardRequest, Frame, PacketSize, ResponseHead, TlsAttributes,
    decode, encode_body_chunk, encode_cping,
};
use proptest::prelude::*;

fn ps() -> PacketSize {
    PacketSize::DEFAULT
}

fn small_request() -> ForwardRequest<'static> {
    let mut f = ForwardRequest::new(Method::GET, "/a");
    f.remote_addr = "127.0.0.1".into();
    f.server_name = "h".into();
    f.server_port = 80;
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("h"));
    h.insert("x-k", HeaderValue::from_static("v"));
    f.headers = Cow::Owned(h);
    f.query_string = Some("q=1".into());
    f.route = Some("r1".into());
    f.remote_port = Some(5000);
    f.secret = Some("s".into());
    f
}

#[rustfmt::skip]
const SMALL_GET: &[u8] = &[
    0x12, 0x34, 0x00, 0x66,                         // magic, payload length 102
    0x02,                                           // FORWARD_REQUEST
    0x02,                                           // method GET
    0x00, 0x08, b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'1', 0x00, // protocol
    0x00, 0x02, b'/', b'a', 0x00,                   // req_uri
    0x00, 0x09, b'1', b'2', b'7', b'.', b'0', b'.', b'0', b'.', b'1', 0x00, // remote_addr
    0xFF, 0xFF,                                     // remote_host: null string
    0x00, 0x01, b'h', 0x00,                         // server_name
    0x00, 0x50,                                     // server_port 80
    0x00,                                           // is_ssl false
    0x00, 0x02,                                     // num_headers
    0xA0, 0x0B, 0x00, 0x01, b'h', 0x00,             // coded "host": h
    0x00, 0x03, b'x', b'-', b'k', 0x00, 0x00, 0x01, b'v', 0x00, // "x-k": v
    0x05, 0x00, 0x03, b'q', b'=', b'1', 0x00,       // query_string
    0x06, 0x00, 0x02, b'r', b'1', 0x00,             // route
    0x0A, 0x00, 0x0F, b'A', b'J', b'P', b'_', b'R', b'E', b'M', b'O', b'T', b'E', b'_',
          b'P', b'O', b'R', b'T', 0x00,             // req_attribute AJP_REMOTE_PORT
          0x00, 0x04, b'5', b'0', b'0', b'0', 0x00, //   = "5000"
    0x0C, 0x00, 0x01, b's', 0x00,                   // secret
    0xFF,                                           // are_done
];

#[test]
fn forward_request_golden() {
    let mut buf = BytesMut::new();
    small_request().encode(&mut buf, ps()).unwrap();
    assert_eq!(&buf[..], SMALL_GET);
}

#[test]
fn patch_goes_as_stored_method() {
    let mut f = small_request();
    f.method = Method::PATCH;
    f.headers.to_mut().clear();
    f.query_string = None;
    f.route = None;
    f.remote_port = None;
    f.secret = None;
    let mut buf = BytesMut::new();
    f.encode(&mut buf, ps()).unwrap();
    assert_eq!(buf[5], 0xFF, "method byte: SC_M_JK_STORED");
    #[rustfmt::skip]
    let tail: &[u8] = &[
        0x00, 0x00,                                            // num_headers 0
        0x0D, 0x00, 0x05, b'P', b'A', b'T', b'C', b'H', 0x00,  // stored_method
        0xFF,                                                  // are_done
    ];
    assert!(buf.ends_with(tail), "{:02x?}", &buf[..]);
    let back = container::parse_forward_request(buf.split_off(4).freeze()).unwrap();
    assert_eq!(back.method, Method::PATCH);
}

#[test]
fn tls_attributes_with_u16_key_size() {
    let mut f = small_request();
    f.headers.to_mut().clear();
    f.query_string = None;
    f.route = None;
    f.remote_port = None;
    f.secret = None;
    f.is_ssl = true;
    f.tls = Some(Cow::Owned(TlsAttributes {
        cipher: Some("C".into()),
        session: None,
        key_size: Some(256),
        cert: None,
        protocol: Some("TLSv1.3".into()),
    }));
    let mut buf = BytesMut::new();
    f.encode(&mut buf, ps()).unwrap();
    #[rustfmt::skip]
    let tail: &[u8] = &[
        0x01,                                   // is_ssl true
        0x00, 0x00,                             // num_headers 0
        0x08, 0x00, 0x01, b'C', 0x00,           // ssl_cipher
        0x0B, 0x01, 0x00,                       // ssl_key_size: u16 256
        0x0A, 0x00, 0x10, b'A', b'J', b'P', b'_', b'S', b'S', b'L', b'_', b'P', b'R', b'O',
              b'T', b'O', b'C', b'O', b'L', 0x00, // req_attribute AJP_SSL_PROTOCOL
              0x00, 0x07, b'T', b'L', b'S', b'v', b'1', b'.', b'3', 0x00,
        0xFF,
    ];
    assert!(buf.ends_with(tail), "{:02x?}", &buf[..]);
}

#[test]
fn local_addr_attribute() {
    let mut f = ForwardRequest::new(Method::GET, "/");
    f.local_addr = Some("127.0.0.1".into());
    let mut buf = BytesMut::new();
    f.encode(&mut buf, ps()).unwrap();
    let r = container::parse_forward_request(buf.split_off(4).freeze()).unwrap();
    assert_eq!(
        r.attributes,
        vec![(0x0A, "AJP_LOCAL_ADDR=127.0.0.1".to_owned())]
    );
}

#[test]
fn oversize_and_nul_are_refused_and_leave_the_buffer() {
    let mut f = small_request();
    f.headers
        .to_mut()
        .insert("x-big", HeaderValue::from_str(&"v".repeat(8200)).unwrap());
    let mut buf = BytesMut::from(&b"keep"[..]);
    let err = f.encode(&mut buf, ps()).unwrap_err();
    assert!(
        matches!(err, EncodeError::TooLarge { max: 8192, .. }),
        "{err}"
    );
    assert_eq!(&buf[..], b"keep");
    // The same request fits a 16 KiB packet.
    f.encode(&mut buf, PacketSize::new(16384).unwrap()).unwrap();
    let mut f = small_request();
    f.req_uri = "/a\0b".into();
    assert_eq!(
        f.encode(&mut BytesMut::new(), ps()),
        Err(EncodeError::Nul {
            what: "request URI"
        })
    );
    assert!(PacketSize::new(8191).is_err() && PacketSize::new(65537).is_err());
    assert_eq!(PacketSize::new(65536).unwrap().max_request_chunk(), 65530);
}

#[test]
fn body_chunks_and_cping_golden() {
    let mut buf = BytesMut::new();
    encode_body_chunk(&mut buf, b"abc", ps()).unwrap();
    // magic, payload 5, chunk length 3, bytes
    assert_eq!(
        &buf[..],
        &[0x12, 0x34, 0x00, 0x05, 0x00, 0x03, b'a', b'b', b'c']
    );
    buf.clear();
    encode_body_chunk(&mut buf, b"", ps()).unwrap();
    assert_eq!(
        &buf[..],
        &[0x12, 0x34, 0x00, 0x00],
        "empty packet ends the body"
    );
    buf.clear();
    encode_cping(&mut buf);
    assert_eq!(&buf[..], &[0x12, 0x34, 0x00, 0x01, 0x0A]);
    let max = vec![7u8; 8186];
    buf.clear();
    encode_body_chunk(&mut buf, &max, ps()).unwrap();
    assert_eq!(buf.len(), 8192, "a full chunk fills the packet");
    assert!(encode_body_chunk(&mut buf, &[0; 8187], ps()).is_err());
}

#[rustfmt::skip]
const RESPONSE: &[u8] = &[
    // SEND_HEADERS as Tomcat writes it
    b'A', b'B', 0x00, 0x26,                         // magic, payload 38
    0x04,                                           // SEND_HEADERS
    0x00, 0xC8,                                     // status 200
    0x00, 0x03, b'2', b'0', b'0', 0x00,             // reason "200"
    0x00, 0x02,                                     // 2 headers
    0xA0, 0x01,                                     // coded Content-Type
    0x00, 0x0A, b't', b'e', b'x', b't', b'/', b'p', b'l', b'a', b'i', b'n', 0x00,
    0x00, 0x05, b'x', b'-', b'o', b'n', b'e', 0x00, // "x-one"
    0x00, 0x01, b'1', 0x00,
    // GET_BODY_CHUNK for 8186 bytes (after SEND_HEADERS: allowed)
    b'A', b'B', 0x00, 0x03, 0x06, 0x1F, 0xFA,
    // SEND_BODY_CHUNK "abc" and its trailing byte
    b'A', b'B', 0x00, 0x07, 0x03, 0x00, 0x03, b'a', b'b', b'c', 0x00,
    // SEND_BODY_CHUNK of length 0: a flush
    b'A', b'B', 0x00, 0x04, 0x03, 0x00, 0x00, 0x00,
    // END_RESPONSE, reuse
    b'A', b'B', 0x00, 0x02, 0x05, 0x01,
    // CPONG
    b'A', b'B', 0x00, 0x01, 0x09,
];

fn expected_frames() -> Vec<Frame> {
    vec![
        Frame::SendHeaders(ResponseHead {
            status: StatusCode::OK,
            reason: Some(Bytes::from_static(b"200")),
            headers: vec![
                (
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain"),
                ),
                (
                    HeaderName::from_static("x-one"),
                    HeaderValue::from_static("1"),
                ),
            ],
        }),
        Frame::GetBodyChunk(8186),
        Frame::SendBodyChunk(Bytes::from_static(b"abc")),
        Frame::SendBodyChunk(Bytes::new()),
        Frame::EndResponse { reuse: true },
        Frame::Cpong,
    ]
}

/// Decodes all frames, feeding `input` in the given pieces.
fn decode_pieces(pieces: &[&[u8]]) -> Result<Vec<Frame>, DecodeError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for p in pieces {
        buf.extend_from_slice(p);
        while let Some(f) = decode(&mut buf, ps())? {
            out.push(f);
        }
    }
    assert!(buf.is_empty(), "nothing left over");
    Ok(out)
}

#[test]
fn response_golden_split_at_every_offset() {
    for i in 0..=RESPONSE.len() {
        let (a, b) = RESPONSE.split_at(i);
        assert_eq!(
            decode_pieces(&[a, b]).unwrap(),
            expected_frames(),
            "split at {i}"
        );
    }
    let bytes: Vec<&[u8]> = RESPONSE.chunks(1).collect();
    assert_eq!(
        decode_pieces(&bytes).unwrap(),
        expected_frames(),
        "byte by byte"
    );
}

#[test]
fn container_encoders_match_the_golden_bytes() {
    let mut buf = BytesMut::new();
    container::encode_send_headers(
        &mut buf,
        StatusCode::OK,
        &[
            (
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            ),
            (
                HeaderName::from_static("x-one"),
                HeaderValue::from_static("1"),
            ),
        ],
    );
    container::encode_get_body_chunk(&mut buf, 8186);
    container::encode_send_body_chunk(&mut buf, b"abc");
    container::encode_send_body_chunk(&mut buf, b"");
    container::encode_end_response(&mut buf, true);
    container::encode_cpong(&mut buf);
    assert_eq!(&buf[..], RESPONSE);
}

/// The error for `input` must come out at every split, and a valid prefix never errors.
fn assert_error_at_every_split(input: &[u8], want: &DecodeError) {
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        let got = decode_pieces(&[a, b]).unwrap_err();
        assert_eq!(&got, want, "split at {i}");
    }
}

#[test]
fn protocol_violations_split_at_every_offset() {
    assert_error_at_every_split(
        &[0x12, 0x34, 0x00, 0x01, 0x09],
        &DecodeError::BadMagic(0x12, 0x34),
    );
    assert_error_at_every_split(b"AC\x00\x01\x09", &DecodeError::BadMagic(b'A', b'C'));
    assert_error_at_every_split(
        &[b'A', b'B', 0x1F, 0xFD, 0x03],
        &DecodeError::Oversize {
            len: 8189,
            max: 8188,
        },
    );
    assert_error_at_every_split(
        &[b'A', b'B', 0x00, 0x01, 0x63],
        &DecodeError::UnknownType(0x63),
    );
    assert_error_at_every_split(&[b'A', b'B', 0x00, 0x00], &DecodeError::Empty);
    // SEND_BODY_CHUNK claiming 5 bytes in a packet that carries 3.
    assert_error_at_every_split(
        &[
            b'A', b'B', 0x00, 0x07, 0x03, 0x00, 0x05, b'a', b'b', b'c', 0x00,
        ],
        &DecodeError::ChunkLength {
            chunk: 5,
            packet: 7,
        },
    );
    // SEND_HEADERS whose header string runs past the packet (errors inside a head that is
    // framed right are `Head`: the connection is in step, the member's content is at fault).
    assert_error_at_every_split(
        &[
            b'A', b'B', 0x00, 0x09, 0x04, 0x00, 0xC8, 0xFF, 0xFF, 0x00, 0x01, 0x00, 0x09,
        ],
        &DecodeError::Head(Box::new(DecodeError::Truncated("header name"))),
    );
    // A coded header beyond WWW-Authenticate.
    assert_error_at_every_split(
        &[
            b'A', b'B', 0x00, 0x0B, 0x04, 0x00, 0xC8, 0xFF, 0xFF, 0x00, 0x01, 0xA0, 0x0C, 0xFF,
            0xFF,
        ],
        &DecodeError::Head(Box::new(DecodeError::UnknownHeaderCode(0xA00C))),
    );
    // A string without its NUL.
    assert_error_at_every_split(
        &[
            b'A', b'B', 0x00, 0x09, 0x04, 0x00, 0xC8, 0x00, 0x01, b'x', b'y', 0x00, 0x00,
        ],
        &DecodeError::Head(Box::new(DecodeError::MissingNul("reason phrase"))),
    );
    // END_RESPONSE with an extra byte.
    assert_error_at_every_split(
        &[b'A', b'B', 0x00, 0x03, 0x05, 0x01, 0x00],
        &DecodeError::TrailingBytes {
            message: "END_RESPONSE",
            extra: 1,
        },
    );
}

#[test]
fn larger_packet_size_allows_larger_packets() {
    let big = PacketSize::new(65536).unwrap();
    let mut buf = BytesMut::new();
    container::encode_send_body_chunk(&mut buf, &vec![1u8; 65528]);
    assert_eq!(buf.len(), 65536);
    assert!(matches!(
        decode(&mut buf.clone(), ps()),
        Err(DecodeError::Oversize { .. })
    ));
    assert!(matches!(decode(&mut buf, big), Ok(Some(Frame::SendBodyChunk(b))) if b.len() == 65528));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoder_never_panics(input in proptest::collection::vec(any::<u8>(), 0..300), split in 0usize..300) {
        let split = split.min(input.len());
        let mut buf = BytesMut::from(&input[..split]);
        let mut fed = false;
        loop {
            match decode(&mut buf, ps()) {
                Ok(Some(_)) => continue,
                Ok(None) if !fed => { buf.extend_from_slice(&input[split..]); fed = true; }
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn decoder_never_panics_on_ab_prefixed_input(
        ty in prop_oneof![Just(3u8), Just(4u8), Just(5u8), Just(6u8), Just(9u8), any::<u8>()],
        rest in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut input = vec![b'A', b'B'];
        input.extend_from_slice(&((rest.len() + 1) as u16).to_be_bytes());
        input.push(ty);
        input.extend_from_slice(&rest);
        let mut buf = BytesMut::from(&input[..]);
        let _ = decode(&mut buf, ps());
    }

    #[test]
    fn response_frames_round_trip(
        status in 100u16..600,
        headers in proptest::collection::vec(("[a-z][a-z0-9-]{0,20}", "[ -~]{0,40}"), 0..10),
        chunk in proptest::collection::vec(any::<u8>(), 0..3000),
        reuse in any::<bool>(),
        split in 0usize..5000,
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        let headers: Vec<(HeaderName, HeaderValue)> = headers
            .iter()
            .map(|(n, v)| (HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap()))
            .collect();
        let mut wire = BytesMut::new();
        container::encode_send_headers(&mut wire, status, &headers);
        container::encode_send_body_chunk(&mut wire, &chunk);
        container::encode_end_response(&mut wire, reuse);
        let split = split.min(wire.len());
        let frames = decode_pieces(&[&wire[..split], &wire[split..]]).unwrap();
        prop_assert_eq!(frames, vec![
            Frame::SendHeaders(ResponseHead { status, reason: Some(Bytes::from(status.as_str().to_owned())), headers }),
            Frame::SendBodyChunk(Bytes::from(chunk)),
            Frame::EndResponse { reuse },
        ]);
    }

    #[test]
    fn forward_request_round_trips(
        method in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::PATCH), Just(Method::from_bytes(b"PROPFIND").unwrap()), Just(Method::from_bytes(b"X-CUSTOM").unwrap())],
        path in "/[a-zA-Z0-9%/._-]{0,50}",
        headers in proptest::collection::vec(prop_oneof![Just("accept".to_owned()), Just("cookie".to_owned()), Just("content-type".to_owned()), "x-[a-z]{1,10}"], 0..12),
        value in "[ -~]{0,30}",
        query in proptest::option::of("[a-z0-9=&%]{0,40}"),
    ) {
        let mut f = ForwardRequest::new(method.clone(), path.clone());
        for h in &headers {
            f.headers.to_mut().append(HeaderName::from_bytes(h.as_bytes()).unwrap(), HeaderValue::from_str(&value).unwrap());
        }
        f.query_string = query.clone().map(Cow::Owned);
        f.secret = Some("k".into());
        let mut buf = BytesMut::new();
        f.encode(&mut buf, ps()).unwrap();
        let mut incoming = buf.clone();
        let payload = container::decode_from_proxy(&mut incoming, ps()).unwrap().unwrap();
        let r = container::parse_forward_request(payload).unwrap();
        prop_assert_eq!(&r.method, &method);
        prop_assert_eq!(&r.req_uri, &path);
        prop_assert_eq!(r.headers.len(), headers.len());
        for ((n, v), h) in r.headers.iter().zip(f.headers.iter()) {
            prop_assert_eq!(n, h.0);
            prop_assert_eq!(v, h.1);
        }
        prop_assert_eq!(r.attribute(0x05).map(str::to_owned), query);
        prop_assert_eq!(r.attribute(0x0C), Some("k"));
    }
}
