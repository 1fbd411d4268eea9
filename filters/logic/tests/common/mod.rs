//! What the property tests share: byte strategies biased towards the separators the parsers care
//! about.

use proptest::collection::vec;
use proptest::prelude::*;

/// Up to `max` bytes: any byte as often as one of `specials`.
pub fn biased_bytes(specials: &'static [u8], max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![any::<u8>(), proptest::sample::select(specials)],
        0..max,
    )
}
