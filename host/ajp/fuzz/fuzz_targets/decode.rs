//! Fuzzes the decoder of container messages: any bytes, fed in two pieces at a split the
//! input chooses, must decode to frames, incomplete or an error — never a panic, and never
//! consume bytes without producing a frame.
#![no_main]

use bytes::BytesMut;
use keel_ajp::{PacketSize, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(data.len());
    for size in [
        PacketSize::DEFAULT,
        PacketSize::new(65536).expect("valid size"),
    ] {
        let mut buf = BytesMut::from(&data[..split]);
        let mut fed = false;
        loop {
            let before = buf.len();
            match decode(&mut buf, size) {
                Ok(Some(_)) => assert!(buf.len() < before, "a frame consumes bytes"),
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
