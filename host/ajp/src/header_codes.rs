//! Coded header names, both ways. Request headers 0xA001 accept … 0xA00E user-agent
//! (Tomcat `Constants.headerTransArray`), response headers 0xA001 Content-Type … 0xA00B
//! WWW-Authenticate (`Constants.responseTransArray`). A name without a code is a string.

use http::HeaderName;

/// Request header names (lower case, as `http` spells them), code = 0xA000 + index + 1.
const REQUEST: [&str; 14] = [
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "authorization",
    "connection",
    "content-type",
    "content-length",
    "cookie",
    "cookie2",
    "host",
    "pragma",
    "referer",
    "user-agent",
];

/// Response header names, code = 0xA000 + index + 1.
const RESPONSE: [&str; 11] = [
    "content-type",
    "content-language",
    "content-length",
    "date",
    "last-modified",
    "location",
    "set-cookie",
    "set-cookie2",
    "servlet-engine",
    "status",
    "www-authenticate",
];

/// The code of a request header name, if it has one.
pub fn request_code(name: &HeaderName) -> Option<u16> {
    REQUEST
        .iter()
        .position(|n| *n == name.as_str())
        .map(|i| 0xA001 + i as u16)
}

/// The request header name for a code (for the test server).
pub fn request_name(code: u16) -> Option<HeaderName> {
    let i = usize::from(code.checked_sub(0xA001)?);
    REQUEST.get(i).map(|n| HeaderName::from_static(n))
}

/// The code of a response header name, if it has one (for the test server).
pub fn response_code(name: &HeaderName) -> Option<u16> {
    RESPONSE
        .iter()
        .position(|n| *n == name.as_str())
        .map(|i| 0xA001 + i as u16)
}

/// The response header name for a code.
pub fn response_name(code: u16) -> Option<HeaderName> {
    let i = usize::from(code.checked_sub(0xA001)?);
    RESPONSE.get(i).map(|n| HeaderName::from_static(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    #[test]
    fn codes_match_tomcat() {
        assert_eq!(request_code(&header::ACCEPT), Some(0xA001));
        assert_eq!(request_code(&header::CONTENT_LENGTH), Some(0xA008));
        assert_eq!(request_code(&header::COOKIE), Some(0xA009));
        assert_eq!(request_code(&header::HOST), Some(0xA00B));
        assert_eq!(request_code(&header::USER_AGENT), Some(0xA00E));
        assert_eq!(request_code(&HeaderName::from_static("x-other")), None);
        assert_eq!(response_name(0xA001), Some(header::CONTENT_TYPE));
        assert_eq!(response_name(0xA007), Some(header::SET_COOKIE));
        assert_eq!(response_name(0xA00B), Some(header::WWW_AUTHENTICATE));
        assert_eq!(response_name(0xA00C), None);
        assert_eq!(response_name(0xA000), None);
        for c in 0xA001..=0xA00E {
            assert_eq!(request_code(&request_name(c).unwrap()), Some(c));
        }
        for c in 0xA001..=0xA00B {
            assert_eq!(response_code(&response_name(c).unwrap()), Some(c));
        }
    }
}
