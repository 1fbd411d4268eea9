//! The meta codec byte by byte: golden command bytes (as memcached 1.6.18 reads them) and
//! every response decoded from input cut at every offset.

use bytes::{Bytes, BytesMut};
use keel_store::meta::{
    DecodeError, ErrorReply, Expiry, Flag, Key, Limits, MetaDelete, MetaGet, MetaSet, Response,
    SetMode, decode, encode_noop,
};
use proptest::prelude::*;

fn key(s: &str) -> Key {
    Key::new(s).expect("valid key")
}

fn flag(code: u8, token: &str) -> Flag {
    Flag {
        code,
        token: token.to_owned(),
    }
}

#[test]
fn golden_meta_get() {
    let k = key("keel:ABC");
    let mut buf = BytesMut::new();
    MetaGet {
        value: true,
        cas: true,
        touch: Some(Expiry::from_ttl(1800, 0)),
        ..MetaGet::new(&k)
    }
    .encode(&mut buf);
    assert_eq!(&buf[..], b"mg keel:ABC v c T1800\r\n");

    let mut buf = BytesMut::new();
    MetaGet {
        value: true,
        cas: true,
        ttl_left: true,
        touch: Some(Expiry::from_ttl(5, 0)),
        return_key: true,
        opaque: Some(7),
        quiet: true,
        ..MetaGet::new(&k)
    }
    .encode(&mut buf);
    assert_eq!(&buf[..], b"mg keel:ABC v c t T5 k O7 q\r\n");

    let mut buf = BytesMut::new();
    MetaGet::new(&k).encode(&mut buf);
    assert_eq!(&buf[..], b"mg keel:ABC\r\n");
}

#[test]
fn golden_meta_set() {
    let k = key("keel:bak:ABC");
    let mut buf = BytesMut::new();
    MetaSet::new(&k, b"hi\r\n", Expiry::from_ttl(60, 0)).encode(&mut buf);
    // The data may hold CR LF: the length frames it.
    assert_eq!(&buf[..], b"ms keel:bak:ABC 4 T60 c\r\nhi\r\n\r\n");

    let mut buf = BytesMut::new();
    MetaSet {
        compare_cas: Some(42),
        mode: SetMode::Replace,
        ..MetaSet::new(&k, b"x", Expiry::from_ttl(60, 0))
    }
    .encode(&mut buf);
    assert_eq!(&buf[..], b"ms keel:bak:ABC 1 T60 C42 MR c\r\nx\r\n");

    let mut buf = BytesMut::new();
    MetaSet {
        mode: SetMode::Add,
        return_cas: false,
        opaque: Some(1),
        quiet: true,
        ..MetaSet::new(&k, b"", Expiry::from_ttl(0, 0))
    }
    .encode(&mut buf);
    assert_eq!(&buf[..], b"ms keel:bak:ABC 0 T0 ME O1 q\r\n\r\n");
}

#[test]
fn golden_delete_and_noop() {
    let k = key("keel:ABC");
    let mut buf = BytesMut::new();
    MetaDelete::new(&k).encode(&mut buf);
    MetaDelete {
        opaque: Some(9),
        quiet: true,
        ..MetaDelete::new(&k)
    }
    .encode(&mut buf);
    encode_noop(&mut buf);
    assert_eq!(&buf[..], b"md keel:ABC\r\nmd keel:ABC O9 q\r\nmn\r\n");
}

#[test]
fn expiry_over_30_days_is_absolute() {
    let now = 1_800_000_000;
    assert_eq!(Expiry::from_ttl(2_592_000, now).value(), 2_592_000);
    assert_eq!(Expiry::from_ttl(2_592_001, now).value(), 1_802_592_001);
    assert_eq!(Expiry::from_ttl(u64::MAX, now).value(), i32::MAX as u32);
}

/// Every response the store may see, with the bytes that carry it (as memcached 1.6.18
/// writes them: checked against the Debian binary).
fn cases() -> Vec<(&'static [u8], Response)> {
    vec![
        (
            b"VA 2 c2 t60 kk1 O7\r\nho\r\n",
            Response::Value {
                data: Bytes::from_static(b"ho"),
                flags: vec![
                    flag(b'c', "2"),
                    flag(b't', "60"),
                    flag(b'k', "k1"),
                    flag(b'O', "7"),
                ],
            },
        ),
        (
            b"VA 4\r\n\r\n\r\n\r\n",
            Response::Value {
                data: Bytes::from_static(b"\r\n\r\n"),
                flags: vec![],
            },
        ),
        (
            b"VA 0 c9\r\n\r\n",
            Response::Value {
                data: Bytes::new(),
                flags: vec![flag(b'c', "9")],
            },
        ),
        (b"HD c1\r\n", Response::Done(vec![flag(b'c', "1")])),
        (b"HD\r\n", Response::Done(vec![])),
        (b"HD t100\r\n", Response::Done(vec![flag(b't', "100")])),
        (b"EN\r\n", Response::Miss(vec![])),
        (
            b"EN O5 knope\r\n",
            Response::Miss(vec![flag(b'O', "5"), flag(b'k', "nope")]),
        ),
        (b"NS c0\r\n", Response::NotStored(vec![flag(b'c', "0")])),
        (b"NS\r\n", Response::NotStored(vec![])),
        (b"EX c0\r\n", Response::Exists(vec![flag(b'c', "0")])),
        (b"NF\r\n", Response::NotFound(vec![])),
        (b"MN\r\n", Response::Noop),
        (b"ERROR\r\n", Response::Error(ErrorReply::UnknownCommand)),
        (
            b"CLIENT_ERROR bad command line format\r\n",
            Response::Error(ErrorReply::Client("bad command line format".into())),
        ),
        (
            b"SERVER_ERROR out of memory storing object\r\n",
            Response::Error(ErrorReply::Server("out of memory storing object".into())),
        ),
    ]
}

#[test]
fn every_response_decodes_from_every_split() {
    for (bytes, want) in cases() {
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(
                decode(&mut buf, Limits::default()),
                Ok(None),
                "{:?} cut at {cut}",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(buf.len(), cut, "incomplete input is not consumed");
            buf.extend_from_slice(&bytes[cut..]);
            assert_eq!(decode(&mut buf, Limits::default()), Ok(Some(want.clone())));
            assert!(buf.is_empty(), "exactly one response consumed");
        }
    }
}

#[test]
fn back_to_back_responses_decode_in_order() {
    let mut all = Vec::new();
    let mut want = Vec::new();
    for (bytes, r) in cases() {
        all.extend_from_slice(bytes);
        want.push(r);
    }
    let mut buf = BytesMut::from(&all[..]);
    let mut got = Vec::new();
    while let Some(r) = decode(&mut buf, Limits::default()).expect("valid") {
        got.push(r);
    }
    assert_eq!(got, want);
    assert!(buf.is_empty());
}

#[test]
fn cas_accessor() {
    let mut buf = BytesMut::from(&b"HD c18446744073709551615\r\n"[..]);
    let r = decode(&mut buf, Limits::default())
        .expect("valid")
        .expect("complete");
    assert_eq!(r.cas(), Some(u64::MAX));
}

#[test]
fn oversized_value_is_refused_before_its_data_arrives() {
    let limits = Limits {
        max_value: 10,
        max_line: 64,
    };
    let mut buf = BytesMut::from(&b"VA 11 c1\r\n"[..]);
    assert_eq!(
        decode(&mut buf, limits),
        Err(DecodeError::ValueTooLarge { len: 11, max: 10 })
    );
    let mut buf = BytesMut::from(&b"VA 99999999999999999999999\r\n"[..]);
    assert!(matches!(
        decode(&mut buf, limits),
        Err(DecodeError::BadLength(_))
    ));
    let mut buf = BytesMut::from(&b"VA 10\r\n0123456789\r\n"[..]);
    assert!(matches!(decode(&mut buf, limits), Ok(Some(_))));
}

#[test]
fn malformed_responses_are_errors() {
    let limits = Limits {
        max_value: 100,
        max_line: 32,
    };
    for (bytes, want) in [
        (
            &b"STORED\r\n"[..],
            DecodeError::UnknownResponse("STORED".into()),
        ),
        (b"VA x\r\n", DecodeError::BadLength("x".into())),
        (b"VA -1\r\n", DecodeError::BadLength("-1".into())),
        (b"VA\r\n", DecodeError::BadLength(String::new())),
        (b"VA 2\r\nabXY", DecodeError::MissingDataTerminator(2)),
        (b"HD 1c\r\n", DecodeError::BadFlag("1c".into())),
        (b"HD c\x01\r\n", DecodeError::NotText { byte: 1, at: 4 }),
        (b"HD\nEN\r\n", DecodeError::NotText { byte: b'\n', at: 2 }),
        (b"MN x\r\n", DecodeError::UnknownResponse("MN x".into())),
        (
            b"HD aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            DecodeError::LineTooLong { max: 32 },
        ),
    ] {
        let mut buf = BytesMut::from(bytes);
        assert_eq!(
            decode(&mut buf, limits),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

proptest! {
    /// Any bytes, split anywhere: a response, incomplete or an error; never a panic, and
    /// incomplete input is never consumed.
    #[test]
    fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), split in 0usize..200) {
        let split = split.min(data.len());
        let limits = Limits { max_value: 64, max_line: 64 };
        let mut buf = BytesMut::from(&data[..split]);
        let before = buf.len();
        match decode(&mut buf, limits) {
            Ok(None) => prop_assert_eq!(buf.len(), before),
            Ok(Some(_)) => prop_assert!(buf.len() < before),
            Err(_) => {}
        }
    }

    /// A value of any bytes round-trips through `VA`.
    #[test]
    fn any_value_round_trips(data in proptest::collection::vec(any::<u8>(), 0..300), cas in any::<u64>()) {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(format!("VA {} c{cas}\r\n", data.len()).as_bytes());
        buf.extend_from_slice(&data);
        buf.extend_from_slice(b"\r\n");
        let r = decode(&mut buf, Limits::default()).expect("valid").expect("complete");
        prop_assert_eq!(r.cas(), Some(cas));
        match r {
            Response::Value { data: d, .. } => prop_assert_eq!(&d[..], &data[..]),
            other => prop_assert!(false, "{other:?}"),
        }
    }
}
