//! Randomness from the OS CSPRNG (`getrandom`): session ids must be unguessable, and the
//! store's node choice is drawn from the same source rather than from a second generator.

/// The OS random source failed (no entropy source: the store cannot make ids).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the OS random number generator failed: {0}")]
pub struct RandomError(String);

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|e| RandomError(e.to_string()))
}

/// Shuffles `items` in place (Fisher–Yates).
pub fn shuffle<T>(items: &mut [T]) -> Result<(), RandomError> {
    for i in (1..items.len()).rev() {
        let mut b = [0u8; 8];
        fill(&mut b)?;
        // The modulo bias over 2^64 for a handful of nodes is negligible.
        let j = (u64::from_le_bytes(b) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_keeps_the_items_and_varies_the_order() {
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut v = [0, 1, 2, 3];
            shuffle(&mut v).expect("rng");
            let mut sorted = v;
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3]);
            seen_first.insert(v[0]);
        }
        assert_eq!(seen_first.len(), 4, "every item comes first sometimes");
    }
}
