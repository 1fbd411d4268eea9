//! The access log: combined format plus member, route, upstream time and a hash of the
//! session id (never the id itself). Written at log target `keel::access`, level info.
//! Client-controlled fields are escaped.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use sha2::{Digest, Sha256};

/// One access-log entry.
pub struct Entry<'a> {
    /// Client address.
    pub remote: std::net::IpAddr,
    /// Method.
    pub method: &'a str,
    /// Path and query as sent.
    pub target: &'a str,
    /// `HTTP/1.1` etc.
    pub version: &'a str,
    /// Status sent.
    pub status: u16,
    /// Response bytes if known (Content-Length).
    pub bytes: Option<u64>,
    /// Request headers (Referer, User-Agent, Cookie).
    pub headers: &'a HeaderMap,
    /// Member route that served, if any.
    pub member: Option<&'a str>,
    /// Route asked for by the routing header, if any.
    pub route: Option<&'a str>,
    /// Time to the upstream response head.
    pub upstream_time: Option<Duration>,
}

/// Escapes a client-controlled string: printable ASCII except `"` and `\` stays, the rest is `\xNN`.
pub fn escape(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// A valid session id (DESIGN.md: `[A-Za-z0-9_.-]{1,128}`), else None.
fn valid_id(v: &str) -> Option<&str> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    ok.then_some(v)
}

/// Finds the session id in the cookies or the path parameter.
pub fn session_id<'a>(
    headers: &'a HeaderMap,
    target: &'a str,
    cookies: &[String],
    param: &str,
) -> Option<&'a str> {
    for v in headers.get_all(http::header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=')
                && cookies.iter().any(|c| c == k)
            {
                return valid_id(val);
            }
        }
    }
    let path = target.split('?').next().unwrap_or("");
    for seg in path.split(';').skip(1) {
        if let Some((k, val)) = seg.split_once('=')
            && k.eq_ignore_ascii_case(param)
        {
            return valid_id(val.split('/').next().unwrap_or(""));
        }
    }
    None
}

/// The first 8 bytes of SHA-256 of the id, hex.
pub fn hash_id(id: &str) -> String {
    let d = Sha256::digest(id.as_bytes());
    d.iter().take(8).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `10/Oct/2000:13:55:36 +0000` (UTC).
pub fn clf_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
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
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        M[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn header(h: &HeaderMap, name: http::header::HeaderName) -> String {
    h.get(name)
        .map(|v| escape(v.as_bytes()))
        .unwrap_or_else(|| "-".into())
}

/// Formats the line.
pub fn format(e: &Entry<'_>, session_hash: Option<&str>) -> String {
    format!(
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" member={} route={} upstream_ms={} session={}",
        e.remote,
        clf_time(SystemTime::now()),
        escape(e.method.as_bytes()),
        escape(e.target.as_bytes()),
        e.version,
        e.status,
        e.bytes.map_or_else(|| "-".to_string(), |b| b.to_string()),
        header(e.headers, http::header::REFERER),
        header(e.headers, http::header::USER_AGENT),
        e.member.unwrap_or("-"),
        e.route
            .map_or_else(|| "-".to_string(), |r| escape(r.as_bytes())),
        e.upstream_time
            .map_or_else(|| "-".to_string(), |d| d.as_millis().to_string()),
        session_hash.unwrap_or("-"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_and_escape() {
        let t = UNIX_EPOCH + Duration::from_secs(971_186_136);
        assert_eq!(clf_time(t), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(escape(b"a\"b\n"), "a\\x22b\\x0a");
    }

    #[test]
    fn session_id_is_found_validated_and_hashed() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=1; JSESSIONID=ABC.tomcat1".parse().unwrap(),
        );
        let c = vec!["JSESSIONID".to_string()];
        assert_eq!(session_id(&h, "/", &c, "jsessionid"), Some("ABC.tomcat1"));
        let h2 = HeaderMap::new();
        assert_eq!(
            session_id(&h2, "/x;jsessionid=Z9.t1?q", &c, "jsessionid"),
            Some("Z9.t1")
        );
        assert_eq!(
            session_id(&h2, "/x;jsessionid=bad$id", &c, "jsessionid"),
            None
        );
        let hash = hash_id("ABC.tomcat1");
        assert_eq!(hash.len(), 16);
        assert!(!hash.contains("ABC"));
    }
}
