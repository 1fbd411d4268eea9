//! Method codes of the forward request (ajpv13a "Request Packet Structure"; Tomcat
//! `Constants.methodTransArray`, codes 1..=27). A method without a code goes as 0xFF with the
//! `stored_method` attribute (0x0D).

use http::Method;

/// The code for methods without one of their own (`SC_M_JK_STORED`).
pub const STORED: u8 = 0xFF;

/// Method names in code order: code = index + 1.
const METHODS: [&str; 27] = [
    "OPTIONS",
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "TRACE",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "ACL",
    "REPORT",
    "VERSION-CONTROL",
    "CHECKIN",
    "CHECKOUT",
    "UNCHECKOUT",
    "SEARCH",
    "MKWORKSPACE",
    "UPDATE",
    "LABEL",
    "MERGE",
    "BASELINE-CONTROL",
    "MKACTIVITY",
];

/// The AJP code of `method`, or [`STORED`] when it has none (PATCH, extension methods).
pub fn code(method: &Method) -> u8 {
    METHODS
        .iter()
        .position(|m| *m == method.as_str())
        .map_or(STORED, |i| i as u8 + 1)
}

/// The method for an AJP code (1..=27), for the test server.
pub fn from_code(code: u8) -> Option<Method> {
    let name = METHODS.get(usize::from(code).checked_sub(1)?)?;
    Method::from_bytes(name.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_tomcat() {
        assert_eq!(code(&Method::OPTIONS), 1);
        assert_eq!(code(&Method::GET), 2);
        assert_eq!(code(&Method::HEAD), 3);
        assert_eq!(code(&Method::POST), 4);
        assert_eq!(code(&Method::PUT), 5);
        assert_eq!(code(&Method::DELETE), 6);
        assert_eq!(code(&Method::TRACE), 7);
        assert_eq!(code(&Method::from_bytes(b"PROPFIND").unwrap()), 8);
        assert_eq!(code(&Method::from_bytes(b"MKACTIVITY").unwrap()), 27);
        assert_eq!(code(&Method::PATCH), STORED);
        assert_eq!(code(&Method::CONNECT), STORED);
        for c in 1..=27 {
            assert_eq!(code(&from_code(c).unwrap()), c);
        }
        assert_eq!(from_code(0), None);
        assert_eq!(from_code(28), None);
    }
}
