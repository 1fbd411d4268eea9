//! The `route_suffix` filter's decisions: on the request, what the client holds (and, in
//! strip/append mode, the request without `.route`); on the response, the header edits that make
//! the client's session id name the route that really served it.

mod request;
mod response;

pub use request::{ClientSession, RequestPlan, on_request};
pub use response::{HeaderEdit, RESPONSE_HEADERS_READ, ResponsePlan, on_response};

use crate::config::Mode;
use crate::session_id::SessionId;

/// The id `value` should become so that it names `served`, or `None` to leave it alone: not a
/// valid id, already naming `served`, or (rewrite mode) an id without a route — a backend that
/// issues ids without a route does not want one added unless strip/append is configured.
pub(crate) fn renamed(mode: Mode, value: &[u8], served: &str) -> Option<Vec<u8>> {
    let id = SessionId::parse(value)?;
    match (mode, id.route()) {
        (_, Some(route)) if route == served.as_bytes() => None,
        (Mode::Rewrite, None) => None,
        _ => id.with_route(served.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_rules() {
        assert_eq!(
            renamed(Mode::Rewrite, b"A.t1", "t2").as_deref(),
            Some(&b"A.t2"[..])
        );
        assert_eq!(
            renamed(Mode::Rewrite, b"A-n1.t1", "t2").as_deref(),
            Some(&b"A-n1.t2"[..])
        );
        assert_eq!(renamed(Mode::Rewrite, b"A.t2", "t2"), None);
        assert_eq!(renamed(Mode::Rewrite, b"A", "t2"), None);
        assert_eq!(
            renamed(Mode::StripAppend, b"A", "t2").as_deref(),
            Some(&b"A.t2"[..])
        );
        assert_eq!(
            renamed(Mode::StripAppend, b"A-n1", "t2").as_deref(),
            Some(&b"A-n1.t2"[..])
        );
        assert_eq!(renamed(Mode::StripAppend, b"A.t2", "t2"), None);
        assert_eq!(
            renamed(Mode::StripAppend, b"A.t1", "t2").as_deref(),
            Some(&b"A.t2"[..])
        );
        assert_eq!(renamed(Mode::Rewrite, b"", "t2"), None);
        assert_eq!(renamed(Mode::StripAppend, b"bad id", "t2"), None);
        assert_eq!(renamed(Mode::StripAppend, &[b'A'; 128], "t2"), None);
    }
}
