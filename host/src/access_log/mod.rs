//! The access log: combined format plus member, route, upstream time and a hash of the
//! session id (never the id itself). Client-controlled fields are escaped. The line goes to a
//! [`Sink`]: keel's log (target `keel::access`, level info) or a file of its own.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Version};
use keel_filter_logic::lookup::{Lookup, RequestParts, find_session};
use sha2::{Digest, Sha256};

use crate::config::schema::AccessLog;

mod sink;

pub use sink::{Sink, SinkMetrics};

/// What the access log keeps of a request, taken before the request goes on (cheap clones of
/// the values it needs, never the whole header map).
pub struct Seen {
    method: Method,
    target: Option<PathAndQuery>,
    version: Version,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    /// The hash of the session id, if the request carries a valid one.
    session: Option<String>,
}

impl Seen {
    /// Takes what the log line needs from the request head.
    pub fn new(parts: &http::request::Parts, cfg: &AccessLog) -> Self {
        let target = parts.uri.path_and_query().cloned();
        let path = target.as_ref().map_or("/", PathAndQuery::as_str);
        let session = session_id(
            &parts.headers,
            path,
            &cfg.session_cookies,
            &cfg.session_path_parameter,
        )
        .map(hash_id);
        Self {
            method: parts.method.clone(),
            target,
            version: parts.version,
            referer: parts.headers.get(header::REFERER).cloned(),
            user_agent: parts.headers.get(header::USER_AGENT).cloned(),
            session,
        }
    }
}

/// One access-log entry.
pub struct Entry<'a> {
    /// Client address.
    pub remote: std::net::IpAddr,
    /// The request.
    pub request: &'a Seen,
    /// Status sent.
    pub status: u16,
    /// Response bytes if known (Content-Length).
    pub bytes: Option<u64>,
    /// Member route that served, if any.
    pub member: Option<&'a str>,
    /// Route asked for by the routing header, if any.
    pub route: Option<&'a str>,
    /// Time to the upstream response head.
    pub upstream_time: Option<Duration>,
}

/// Appends a client-controlled string, escaped: printable ASCII except `"` and `\` stays, the
/// rest is `\xNN`.
pub fn escape_into(out: &mut String, s: &[u8]) {
    for &b in s {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

/// The session id of a request, found with the filters' rules (`keel_filter_logic::lookup`):
/// the path parameter first, then the cookies, the first *valid* id (`[A-Za-z0-9_.-]{1,128}`).
pub fn session_id<'a>(
    headers: &'a HeaderMap,
    target: &'a str,
    cookies: &[String],
    param: &str,
) -> Option<&'a [u8]> {
    let parts = RequestParts {
        path: Some(target.as_bytes()),
        cookies: headers
            .get_all(header::COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect(),
    };
    match find_session(&parts, &[param], cookies) {
        Lookup::Found(id, _) => Some(id.as_bytes()),
        Lookup::Invalid | Lookup::Absent => None,
    }
}

/// The first 8 bytes of SHA-256 of the id, hex.
pub fn hash_id(id: &[u8]) -> String {
    let d = Sha256::digest(id);
    d.iter().take(8).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Appends `10/Oct/2000:13:55:36 +0000` (UTC).
pub fn clf_time(out: &mut String, t: SystemTime) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const M: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let name = usize::try_from(month - 1)
        .ok()
        .and_then(|m| M.get(m))
        .unwrap_or(&"???");
    let _ = write!(
        out,
        "{day:02}/{name}/{year}:{:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
}

fn quoted(out: &mut String, v: Option<&HeaderValue>) {
    out.push('"');
    match v {
        Some(v) => escape_into(out, v.as_bytes()),
        None => out.push('-'),
    }
    out.push('"');
}

fn or_dash(out: &mut String, v: Option<impl std::fmt::Display>) {
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push('-'),
    }
}

/// Formats the line (combined format, then `member=`, `route=`, `upstream_ms=`, `session=`).
pub fn format(e: &Entry<'_>) -> String {
    let r = e.request;
    let mut out = String::with_capacity(256);
    let _ = write!(out, "{} - - [", e.remote);
    clf_time(&mut out, SystemTime::now());
    out.push_str("] \"");
    escape_into(&mut out, r.method.as_str().as_bytes());
    out.push(' ');
    escape_into(
        &mut out,
        r.target
            .as_ref()
            .map_or("/", PathAndQuery::as_str)
            .as_bytes(),
    );
    let _ = write!(out, " {}\" {} ", version_str(r.version), e.status);
    or_dash(&mut out, e.bytes);
    out.push(' ');
    quoted(&mut out, r.referer.as_ref());
    out.push(' ');
    quoted(&mut out, r.user_agent.as_ref());
    out.push_str(" member=");
    out.push_str(e.member.unwrap_or("-"));
    out.push_str(" route=");
    match e.route {
        Some(route) => escape_into(&mut out, route.as_bytes()),
        None => out.push('-'),
    }
    out.push_str(" upstream_ms=");
    or_dash(&mut out, e.upstream_time.map(|d| d.as_millis()));
    out.push_str(" session=");
    out.push_str(r.session.as_deref().unwrap_or("-"));
    out
}

/// The `Version` as an access-log string.
pub fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_and_escape() {
        let t = UNIX_EPOCH + Duration::from_secs(971_186_136);
        let mut out = String::new();
        clf_time(&mut out, t);
        assert_eq!(out, "10/Oct/2000:13:55:36 +0000");
        let mut out = String::new();
        escape_into(&mut out, b"a\"b\n");
        assert_eq!(out, "a\\x22b\\x0a");
    }

    #[test]
    fn a_line_escapes_what_the_client_sent_and_hashes_the_session() {
        let req = http::Request::builder()
            .method("GET")
            .uri("/a\"b?q=%0a")
            .header(header::USER_AGENT, "x\ty")
            .header(header::COOKIE, "JSESSIONID=ABC.t1")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let seen = Seen::new(&req, &AccessLog::default());
        let line = format(&Entry {
            remote: "127.0.0.11".parse().unwrap(),
            request: &seen,
            status: 200,
            bytes: Some(5),
            member: Some("t1"),
            route: Some("t1\n"),
            upstream_time: Some(Duration::from_millis(7)),
        });
        let tail = line.split_once("] ").unwrap().1;
        assert_eq!(
            tail,
            format!(
                "\"GET /a\\x22b?q=%0a HTTP/1.1\" 200 5 \"-\" \"x\\x09y\" member=t1 route=t1\\x0a upstream_ms=7 session={}",
                hash_id(b"ABC.t1")
            )
        );
        assert!(!line.contains("ABC"), "never the id itself");
    }

    #[test]
    fn session_id_is_found_validated_and_hashed() {
        let c = vec!["JSESSIONID".to_string()];
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; JSESSIONID=ABC.tomcat1".parse().unwrap(),
        );
        assert_eq!(
            session_id(&h, "/", &c, "jsessionid"),
            Some(&b"ABC.tomcat1"[..])
        );
        assert_eq!(
            session_id(&h, "/x;jsessionid=Z9.t1?q", &c, "jsessionid"),
            Some(&b"Z9.t1"[..]),
            "the URL wins, as in routing"
        );
        let mut bad_first = HeaderMap::new();
        bad_first.insert(
            header::COOKIE,
            "JSESSIONID=bad$id; JSESSIONID=OK.t2".parse().unwrap(),
        );
        assert_eq!(
            session_id(&bad_first, "/", &c, "jsessionid"),
            Some(&b"OK.t2"[..]),
            "the first valid id, as the filters take it"
        );
        assert_eq!(
            session_id(&HeaderMap::new(), "/x;jsessionid=bad$id", &c, "jsessionid"),
            None
        );
        let hash = hash_id(b"ABC.tomcat1");
        assert_eq!(hash.len(), 16);
        assert!(!hash.contains("ABC"));
    }
}
