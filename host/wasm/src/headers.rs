//! The header maps a filter reads and writes, over keel's own types: the request head
//! (`:authority`, `:path`, `:method`, `:scheme` mapped onto `http::request::Parts`), the response
//! head (`:status`), trailers (`http::HeaderMap`) and an http-call response (plain pairs).

use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{HeaderMap, Method, StatusCode};

/// One header map, borrowed for the length of a host call.
pub(crate) enum MapRef<'a> {
    /// The request head; the flag says whether the client connection is TLS (`:scheme`).
    Request(&'a mut http::request::Parts, bool),
    Response(&'a mut http::response::Parts),
    Trailers(&'a mut HeaderMap),
    Pairs(&'a mut Vec<(Vec<u8>, Vec<u8>)>),
}

fn authority_of(parts: &http::request::Parts) -> Option<&[u8]> {
    match parts.uri.authority() {
        Some(authority) => Some(authority.as_str().as_bytes()),
        None => parts.headers.get(HOST).map(HeaderValue::as_bytes),
    }
}

fn scheme_of(parts: &http::request::Parts, tls: bool) -> &str {
    match parts.uri.scheme_str() {
        Some(scheme) => scheme,
        None if tls => "https",
        None => "http",
    }
}

fn path_of(parts: &http::request::Parts) -> &str {
    parts.uri.path_and_query().map_or("/", PathAndQuery::as_str)
}

impl MapRef<'_> {
    /// Calls `each` for every pair in Envoy's order (pseudo-headers first).
    pub fn for_each<'s>(&'s self, mut each: impl FnMut(&'s [u8], &'s [u8])) {
        let headers = match self {
            MapRef::Request(parts, tls) => {
                if let Some(authority) = authority_of(parts) {
                    each(b":authority", authority);
                }
                each(b":path", path_of(parts).as_bytes());
                each(b":method", parts.method.as_str().as_bytes());
                each(b":scheme", scheme_of(parts, *tls).as_bytes());
                let hide_host = parts.uri.authority().is_none();
                for (name, value) in &parts.headers {
                    if !(hide_host && name == HOST) {
                        each(name.as_str().as_bytes(), value.as_bytes());
                    }
                }
                return;
            }
            MapRef::Response(parts) => {
                each(b":status", parts.status.as_str().as_bytes());
                &parts.headers
            }
            MapRef::Trailers(map) => &**map,
            MapRef::Pairs(pairs) => {
                for (key, value) in pairs.iter() {
                    each(key, value);
                }
                return;
            }
        };
        for (name, value) in headers {
            each(name.as_str().as_bytes(), value.as_bytes());
        }
    }

    /// The number of pairs (the `num_headers` argument of the headers callbacks).
    pub fn count(&self) -> usize {
        // What `for_each` yields, counted without walking the map.
        match self {
            MapRef::Request(parts, _) => {
                // Without an authority in the URI, `:authority` is the first `host` header and
                // every `host` header is hidden (one lookup for both).
                let (authority, hidden) = if parts.uri.authority().is_some() {
                    (1, 0)
                } else {
                    let hosts = parts.headers.get_all(HOST).iter().count();
                    (usize::from(hosts > 0), hosts)
                };
                3 + authority + parts.headers.len() - hidden
            }
            MapRef::Response(parts) => 1 + parts.headers.len(),
            MapRef::Trailers(map) => map.len(),
            MapRef::Pairs(pairs) => pairs.len(),
        }
    }

    /// The serialized map (`proxy_get_header_map_pairs`).
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = vec![0; self.serialized_len()];
        self.serialize_into(&mut out);
        out
    }

    /// The map as a header-map property (`request.headers`, ...) is serialized by Envoy: each
    /// name once, where it first appears, with its values joined by "," (`source/extensions/
    /// filters/common/expr/context.h` `HeadersWrapper`).
    pub fn serialize_joined(&self) -> Vec<u8> {
        let mut joined: Vec<(&[u8], Vec<u8>)> = Vec::new();
        self.for_each(|key, value| {
            match joined
                .iter_mut()
                .find(|(name, _)| name.eq_ignore_ascii_case(key))
            {
                Some((_, values)) => {
                    values.push(b',');
                    values.extend_from_slice(value);
                }
                None => joined.push((key, value.to_vec())),
            }
        });
        crate::serial::serialize_pairs(joined.iter().map(|(key, value)| (*key, value.as_slice())))
    }

    /// The length of [`MapRef::serialize`]'s output, without building it.
    pub fn serialized_len(&self) -> usize {
        let mut size = 4usize;
        self.for_each(|key, value| size += 8 + key.len() + value.len() + 2);
        size
    }

    /// Serializes the map into `out`, which must be exactly [`MapRef::serialized_len`] bytes
    /// long; false (and `out` unspecified) when it is not. One walk over the map: every write is
    /// checked against `out` as it goes.
    pub fn serialize_into(&self, out: &mut [u8]) -> bool {
        let count = self.count();
        let Some(table_end) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
            return false;
        };
        if table_end > out.len() {
            return false;
        }
        crate::serial::write_pairs_header(out, count);
        let (mut index, mut data, mut fits) = (4usize, table_end, true);
        self.for_each(|key, value| {
            let end = data + key.len() + value.len() + 2;
            if !fits || index + 8 > table_end || end > out.len() {
                fits = false;
                return;
            }
            out[index..index + 4].copy_from_slice(&crate::serial::len32(key.len()).to_le_bytes());
            out[index + 4..index + 8]
                .copy_from_slice(&crate::serial::len32(value.len()).to_le_bytes());
            index += 8;
            out[data..data + key.len()].copy_from_slice(key);
            data += key.len();
            out[data] = 0;
            data += 1;
            out[data..data + value.len()].copy_from_slice(value);
            data += value.len();
            out[data] = 0;
            data += 1;
        });
        fits && index == table_end && data == out.len()
    }

    /// The bytes of keys and values (`proxy_get_header_map_size`, Envoy's `byteSize`).
    pub fn byte_size(&self) -> usize {
        let mut size = 0;
        self.for_each(|key, value| size += key.len() + value.len());
        size
    }

    /// The first value of `key` (Envoy returns the first one); `key` in any case.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let is = |name: &[u8]| key.eq_ignore_ascii_case(name);
        match self {
            MapRef::Request(parts, tls) => {
                if is(b":authority") {
                    authority_of(parts)
                } else if is(b":path") {
                    Some(path_of(parts).as_bytes())
                } else if is(b":method") {
                    Some(parts.method.as_str().as_bytes())
                } else if is(b":scheme") {
                    Some(scheme_of(parts, *tls).as_bytes())
                } else if is(b"host") && parts.uri.authority().is_none() {
                    None
                } else {
                    first(&parts.headers, key)
                }
            }
            MapRef::Response(parts) if is(b":status") => Some(parts.status.as_str().as_bytes()),
            MapRef::Response(parts) => first(&parts.headers, key),
            MapRef::Trailers(map) => first(map, key),
            MapRef::Pairs(pairs) => pairs
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(key))
                .map(|(_, value)| value.as_slice()),
        }
    }

    /// Every value of `key` joined by "," (Envoy's `getAllOfHeaderAsString`, which the
    /// `request.headers.<name>` properties answer with); `key` in any case.
    pub fn all_of(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut joined: Option<Vec<u8>> = None;
        self.for_each(|name, value| {
            if name.eq_ignore_ascii_case(key) {
                match joined.as_mut() {
                    Some(joined) => {
                        joined.push(b',');
                        joined.extend_from_slice(value);
                    }
                    None => joined = Some(value.to_vec()),
                }
            }
        });
        joined
    }

    /// Adds a value (a pseudo-header is replaced). False when the key or value is not valid HTTP.
    pub fn add(&mut self, key: &[u8], value: &[u8]) -> bool {
        self.write(key, value, false)
    }

    /// Replaces all values of `key` by `value`.
    pub fn replace(&mut self, key: &[u8], value: &[u8]) -> bool {
        self.write(key, value, true)
    }

    /// Removes every value of `key` (pseudo-headers stay: keel's types always have them).
    pub fn remove(&mut self, key: &[u8]) {
        if key.first() == Some(&b':') {
            return;
        }
        if let MapRef::Pairs(pairs) = self {
            pairs.retain(|(name, _)| !name.eq_ignore_ascii_case(key));
            return;
        }
        // A `&str` key is matched case-insensitively without allocating.
        if let (Ok(name), Some(map)) = (std::str::from_utf8(key), self.header_map()) {
            map.remove(name);
        }
    }

    /// Replaces the whole map by `pairs` (`proxy_set_header_map_pairs`); pseudo-headers not given
    /// keep their values.
    pub fn set_all(&mut self, pairs: &[(&[u8], &[u8])]) -> bool {
        if let MapRef::Pairs(own) = self {
            **own = pairs
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            return true;
        }
        if let Some(map) = self.header_map() {
            map.clear();
        }
        let mut ok = true;
        for (key, value) in pairs {
            ok &= self.add(key, value);
        }
        ok
    }

    fn header_map(&mut self) -> Option<&mut HeaderMap> {
        match self {
            MapRef::Request(parts, _) => Some(&mut parts.headers),
            MapRef::Response(parts) => Some(&mut parts.headers),
            MapRef::Trailers(map) => Some(map),
            MapRef::Pairs(_) => None,
        }
    }

    fn write(&mut self, key: &[u8], value: &[u8], replace: bool) -> bool {
        if key.first() == Some(&b':') {
            return self.write_pseudo(&key.to_ascii_lowercase(), value);
        }
        if let MapRef::Pairs(pairs) = self {
            let key = key.to_ascii_lowercase();
            if replace {
                pairs.retain(|(name, _)| *name != key);
            }
            pairs.push((key, value.to_vec()));
            return true;
        }
        // The name lowercased, shared with earlier writes of it on this thread.
        let (Ok(name), Ok(value)) = (
            crate::header_names::name(key),
            HeaderValue::from_bytes(value),
        ) else {
            return false;
        };
        let Some(map) = self.header_map() else {
            return false;
        };
        if replace {
            map.insert(name, value);
        } else {
            map.append(name, value);
        }
        true
    }

    fn write_pseudo(&mut self, key: &[u8], value: &[u8]) -> bool {
        match self {
            MapRef::Request(parts, _) => match key {
                b":method" => Method::from_bytes(value).map(|m| parts.method = m).is_ok(),
                b":path" => PathAndQuery::try_from(value)
                    .ok()
                    .and_then(|path| rebuild(&parts.uri, None, None, Some(path)))
                    .map(|uri| parts.uri = uri)
                    .is_some(),
                b":authority" => {
                    let Ok(authority) = Authority::try_from(value) else {
                        return false;
                    };
                    if parts.uri.authority().is_some() {
                        rebuild(&parts.uri, None, Some(authority), None)
                            .map(|uri| parts.uri = uri)
                            .is_some()
                    } else {
                        HeaderValue::from_bytes(value)
                            .map(|value| parts.headers.insert(HOST, value))
                            .is_ok()
                    }
                }
                b":scheme" => match Scheme::try_from(value) {
                    Ok(scheme) if parts.uri.authority().is_some() => {
                        rebuild(&parts.uri, Some(scheme), None, None)
                            .map(|uri| parts.uri = uri)
                            .is_some()
                    }
                    Ok(_) => true,
                    Err(_) => false,
                },
                _ => false,
            },
            MapRef::Response(parts) if key == b":status" => StatusCode::from_bytes(value)
                .map(|status| parts.status = status)
                .is_ok(),
            MapRef::Pairs(pairs) => {
                pairs.retain(|(name, _)| name.as_slice() != key);
                pairs.push((key.to_vec(), value.to_vec()));
                true
            }
            _ => false,
        }
    }
}

fn first<'m>(map: &'m HeaderMap, key: &[u8]) -> Option<&'m [u8]> {
    // A `&str` key is matched case-insensitively without allocating.
    let name = std::str::from_utf8(key).ok()?;
    map.get(name).map(HeaderValue::as_bytes)
}

/// A copy of `uri` with some of its parts replaced.
fn rebuild(
    uri: &Uri,
    scheme: Option<Scheme>,
    authority: Option<Authority>,
    path: Option<PathAndQuery>,
) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    if let Some(scheme) = scheme {
        parts.scheme = Some(scheme);
    }
    if let Some(authority) = authority {
        parts.authority = Some(authority);
    }
    if let Some(path) = path {
        parts.path_and_query = Some(path);
    }
    if parts.authority.is_some() && parts.scheme.is_none() {
        parts.scheme = Some(Scheme::HTTP);
    }
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderName;

    fn request() -> http::request::Parts {
        let (parts, ()) = http::Request::builder()
            .method("GET")
            .uri("/app;jsessionid=abc.tomcat1?x=1")
            .header("host", "example.com")
            .header("cookie", "JSESSIONID=abc.tomcat1")
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[test]
    fn request_pairs_start_with_pseudo_headers_and_hide_host() {
        let mut parts = request();
        let map = MapRef::Request(&mut parts, false);
        let mut seen = Vec::new();
        map.for_each(|k, v| {
            seen.push((
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ))
        });
        let keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [":authority", ":path", ":method", ":scheme", "cookie"]
        );
        assert_eq!(seen[0].1, "example.com");
        assert_eq!(seen[1].1, "/app;jsessionid=abc.tomcat1?x=1");
        assert_eq!(map.count(), 5);
    }

    #[test]
    fn keys_match_in_any_case_without_lowercasing_first() {
        let mut parts = request();
        let long = "x-".to_owned() + &"long".repeat(20);
        parts.headers.append(
            HeaderName::from_bytes(long.as_bytes()).unwrap(),
            HeaderValue::from_static("v"),
        );
        let mut map = MapRef::Request(&mut parts, false);
        assert_eq!(map.get(b"Cookie").unwrap(), b"JSESSIONID=abc.tomcat1");
        assert_eq!(
            map.get(b":PATH").unwrap(),
            b"/app;jsessionid=abc.tomcat1?x=1"
        );
        assert_eq!(map.get(long.to_uppercase().as_bytes()).unwrap(), b"v");
        assert!(map.get(b"HOST").is_none());
        assert!(map.get(b"bad header\xff").is_none());
        assert!(map.add(b"X-Keel-Route", b"tomcat1"));
        map.remove(long.to_uppercase().as_bytes());
        map.remove(b"COOKIE");
        assert!(map.get(long.as_bytes()).is_none());
        assert!(map.get(b"cookie").is_none());
        assert_eq!(map.get(b"x-keel-route").unwrap(), b"tomcat1");
    }

    #[test]
    fn count_matches_the_pairs_yielded() {
        let mut parts = request();
        parts
            .headers
            .append(HOST, HeaderValue::from_static("second.example"));
        parts.headers.append("x-a", HeaderValue::from_static("1"));
        parts.headers.append("x-a", HeaderValue::from_static("2"));
        for authority in [false, true] {
            if authority {
                parts.uri = "http://example.com/app".parse().unwrap();
            }
            let map = MapRef::Request(&mut parts, false);
            let mut yielded = 0;
            map.for_each(|_, _| yielded += 1);
            assert_eq!(map.count(), yielded, "authority in uri: {authority}");
            assert_eq!(map.serialized_len(), map.serialize().len());
        }
        let mut empty = http::Request::new(()).into_parts().0;
        let map = MapRef::Request(&mut empty, false);
        let mut yielded = 0;
        map.for_each(|_, _| yielded += 1);
        assert_eq!(map.count(), yielded);
    }

    #[test]
    fn serialize_into_refuses_a_buffer_of_the_wrong_size() {
        let mut parts = request();
        let map = MapRef::Request(&mut parts, false);
        let golden = map.serialize();
        let mut exact = vec![0xAA; golden.len()];
        assert!(map.serialize_into(&mut exact));
        assert_eq!(exact, golden);
        for len in [0, 3, 4, 12, golden.len() - 1, golden.len() + 1] {
            let mut out = vec![0; len];
            assert!(!map.serialize_into(&mut out), "{len} bytes");
        }
    }

    #[test]
    fn pseudo_headers_write_through_to_the_parts() {
        let mut parts = request();
        let mut map = MapRef::Request(&mut parts, true);
        assert!(map.replace(b":path", b"/app?x=1"));
        assert!(map.replace(b":method", b"POST"));
        assert!(map.replace(b":authority", b"other:8080"));
        assert!(map.add(b"X-Keel-Route", b"tomcat1"));
        assert!(!map.add(b"bad header", b"v"));
        assert!(!map.add(b"x-inject", b"a\r\nb"));
        assert_eq!(map.get(b":scheme").unwrap(), b"https");
        map.remove(b"cookie");
        assert_eq!(parts.uri, "/app?x=1");
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.headers["host"], "other:8080");
        assert_eq!(parts.headers["x-keel-route"], "tomcat1");
        assert!(!parts.headers.contains_key("cookie"));
    }

    #[test]
    fn response_status_and_set_all() {
        let (mut parts, ()) = http::Response::builder()
            .status(200)
            .header("a", "1")
            .body(())
            .unwrap()
            .into_parts();
        let mut map = MapRef::Response(&mut parts);
        assert_eq!(map.get(b":status").unwrap(), b"200");
        assert!(map.set_all(&[(b":status", b"404"), (b"b", b"2"), (b"b", b"3")]));
        assert_eq!(parts.status, StatusCode::NOT_FOUND);
        assert!(!parts.headers.contains_key("a"));
        assert_eq!(parts.headers.get_all("b").iter().count(), 2);
    }
}
