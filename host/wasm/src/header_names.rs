//! The header names filters write, kept per thread: a filter that sets the same header on
//! every request (a routing header, a cookie of its own) gets the name it wrote before, shared,
//! instead of a fresh copy that the head's first clone (the copy `on_log` reads, the copy each
//! attempt sends) would allocate once more. At most [`KEPT`] names of at most [`LONGEST`]
//! bytes are kept per thread, the first ones written; any other name is made each time.

use std::cell::RefCell;

use http::header::{HeaderName, InvalidHeaderName};

/// How many names a thread keeps.
const KEPT: usize = 32;
/// The longest name kept, in bytes.
const LONGEST: usize = 64;

thread_local! {
    static NAMES: RefCell<Vec<HeaderName>> = const { RefCell::new(Vec::new()) };
}

/// `key` (in any case) as a header name, as `HeaderName::from_bytes` makes it.
pub(crate) fn name(key: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
    NAMES.with_borrow_mut(|names| {
        // A name that differs from a valid one only in the case of its letters is valid, and
        // `from_bytes` lowercases it: the same name.
        if let Some(known) = names
            .iter()
            .find(|name| name.as_str().as_bytes().eq_ignore_ascii_case(key))
        {
            return Ok(known.clone());
        }
        let name = HeaderName::from_bytes(key)?;
        if names.len() < KEPT && key.len() <= LONGEST {
            names.push(name.clone());
        }
        Ok(name)
    })
}

#[cfg(test)]
mod tests {
    use super::name;

    #[test]
    fn a_name_written_again_is_the_same_name_in_any_case() {
        let first = name(b"X-Route").unwrap();
        assert_eq!(first.as_str(), "x-route");
        assert_eq!(name(b"x-route").unwrap(), first);
        assert_eq!(name(b"X-ROUTE").unwrap(), first);
        assert!(name(b"bad name").is_err());
        assert!(
            name(b"x-route ").is_err(),
            "no near match passes for a kept name"
        );
    }
}
