//! Fuzzes the memcached meta response decoder: any bytes, fed in two pieces at a split the
//! input chooses, decode to responses, incomplete or an error — never a panic, never a
//! consumed byte without a response, never a value above the limit.
#![no_main]

use bytes::BytesMut;
use keel_store::meta::{Limits, Response, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(data.len());
    for limits in [
        Limits::default(),
        Limits {
            max_value: 16,
            max_line: 32,
        },
    ] {
        let mut buf = BytesMut::from(&data[..split]);
        let mut fed = false;
        loop {
            let before = buf.len();
            match decode(&mut buf, limits) {
                Ok(Some(r)) => {
                    assert!(buf.len() < before, "a response consumes bytes");
                    if let Response::Value { data, .. } = r {
                        assert!(data.len() <= limits.max_value, "value within the limit");
                    }
                }
                Ok(None) if !fed => {
                    assert_eq!(buf.len(), before, "incomplete consumes nothing");
                    buf.extend_from_slice(&data[split..]);
                    fed = true;
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
});
