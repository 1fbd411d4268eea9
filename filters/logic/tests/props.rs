//! Property tests of the filters' logic: parse/format round trips, byte-for-byte rewriting, and
//! "never panics on any bytes" for every function that sees client or backend data.

use keel_filter_logic::config::{RouteSuffixConfig, StickyConfig};
use keel_filter_logic::route_suffix::{ClientSession, on_request, on_response};
use keel_filter_logic::session_id::{self, SessionId};
use keel_filter_logic::set_cookie::SetCookie;
use keel_filter_logic::{base64, cookie, path_param, sticky};
use proptest::collection::vec;
use proptest::prelude::*;

mod common;

fn base() -> impl Strategy<Value = Vec<u8>> {
    "[A-Za-z0-9_]{1,40}".prop_map(String::into_bytes)
}
fn node() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of("[A-Za-z0-9_-]{1,10}".prop_map(String::into_bytes))
}
fn route() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of("[A-Za-z0-9_.-]{1,20}".prop_map(String::into_bytes))
}
/// Bytes biased towards the separators the parsers care about.
fn hostile() -> impl Strategy<Value = Vec<u8>> {
    common::biased_bytes(b";=\" ./-?A", 80)
}

fn route_suffix_cfg(mode: &str) -> RouteSuffixConfig {
    let json = format!(
        r#"{{"routes": {{"t1": "127.0.0.1:8081", "t2": "127.0.0.1:8082"}}, "mode": "{mode}"}}"#
    );
    RouteSuffixConfig::from_json(json.as_bytes()).expect("valid")
}

proptest! {
    #[test]
    fn session_id_format_parse_round_trip(b in base(), n in node(), r in route()) {
        if let Some(bytes) = session_id::format(&b, n.as_deref(), r.as_deref()) {
            let id = SessionId::parse(&bytes).expect("a formatted id parses");
            prop_assert_eq!(id.base(), &b[..]);
            prop_assert_eq!(id.node(), n.as_deref());
            prop_assert_eq!(id.route(), r.as_deref());
        }
    }

    #[test]
    fn session_id_parse_format_round_trip(bytes in hostile()) {
        if let Some(id) = SessionId::parse(&bytes) {
            prop_assert!(session_id::is_valid(&bytes));
            prop_assert_eq!(session_id::format(id.base(), id.node(), id.route()), Some(bytes.clone()));
            if let Some(renamed) = id.with_route(b"t9") {
                let again = SessionId::parse(&renamed).expect("renamed id parses");
                prop_assert_eq!(again.without_route(), id.without_route());
                prop_assert_eq!(again.route(), Some(&b"t9"[..]));
            }
        }
    }

    #[test]
    fn cookie_header_round_trip(pairs in vec(("[A-Za-z0-9_]{1,12}", "[A-Za-z0-9_.-]{0,20}", any::<bool>()), 0..6)) {
        let mut header = Vec::new();
        for (i, (n, v, quoted)) in pairs.iter().enumerate() {
            if i > 0 { header.extend_from_slice(b"; "); }
            header.extend_from_slice(n.as_bytes());
            header.push(b'=');
            if *quoted { header.push(b'"'); }
            header.extend_from_slice(v.as_bytes());
            if *quoted { header.push(b'"'); }
        }
        let parsed: Vec<(Vec<u8>, Vec<u8>)> =
            cookie::pairs(&header).map(|p| (p.name.to_vec(), p.value.to_vec())).collect();
        let expected: Vec<(Vec<u8>, Vec<u8>)> =
            pairs.iter().map(|(n, v, _)| (n.clone().into_bytes(), v.clone().into_bytes())).collect();
        prop_assert_eq!(parsed, expected);
        let same = cookie::replace_values(&header, |_| true, |v| Some(v.to_vec()));
        prop_assert!(same.is_none() || same.as_deref() == Some(&header[..]));
    }

    #[test]
    fn cookie_pairs_point_into_the_header(header in hostile()) {
        for pair in cookie::pairs(&header) {
            prop_assert_eq!(&header[pair.value_start..pair.value_end()], pair.value);
            prop_assert!(!pair.name.is_empty());
        }
        let marked = cookie::replace_values(&header, |_| true, |v| Some([v, b"!"].concat()));
        if let Some(marked) = marked {
            prop_assert_eq!(marked.len(), header.len() + cookie::pairs(&header).count());
        }
    }

    // The new value is a valid session id, so never empty: an empty value followed by
    // whitespace would re-parse with that whitespace in front of it instead of behind it.
    #[test]
    fn set_cookie_rewrite_keeps_the_rest(raw in hostile(), value in "[A-Za-z0-9_.-]{1,30}") {
        if let Some(c) = SetCookie::parse(&raw) {
            prop_assert_eq!(c.with_value(c.value), raw.clone());
            let out = c.with_value(value.as_bytes());
            let again = SetCookie::parse(&out).expect("rewritten header parses");
            prop_assert_eq!(again.name, c.name);
            prop_assert_eq!(again.rest(), c.rest());
            let _ = again.attributes().count();
        }
    }

    #[test]
    fn path_param_identity_replace_is_identity(uri in hostile()) {
        let out = path_param::replace_values(&uri, b"jsessionid", |v| Some(v.to_vec()));
        prop_assert!(out.is_none() || out.as_deref() == Some(&uri[..]));
    }

    #[test]
    fn base64_length_and_alphabet(bytes in vec(any::<u8>(), 0..64)) {
        let out = base64::encode(&bytes);
        prop_assert_eq!(out.len(), bytes.len().div_ceil(3) * 4);
        prop_assert!(out.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='));
    }

    #[test]
    fn strip_then_append_restores_the_id(b in base(), n in node(), r in "[A-Za-z0-9_-]{1,8}") {
        let Some(id) = session_id::format(&b, n.as_deref(), Some(r.as_bytes())) else { return Ok(()) };
        let cfg = RouteSuffixConfig::from_json(
            format!(r#"{{"routes": {{"{r}": "127.0.0.1:8081"}}, "mode": "strip_append"}}"#).as_bytes(),
        ).expect("valid");
        let mut header = b"JSESSIONID=".to_vec();
        header.extend_from_slice(&id);
        let plan = on_request(&cfg, &[("cookie", &header)]);
        let stripped = plan.new_cookie.expect("the route is stripped");
        let backend_value = &stripped[b"JSESSIONID=".len()..];
        prop_assert_eq!(backend_value, SessionId::parse(&id).expect("valid").without_route());
        let mut set = b"JSESSIONID=".to_vec();
        set.extend_from_slice(backend_value);
        set.extend_from_slice(b"; Path=/");
        let out = on_response(&cfg, &r, &ClientSession::default(), &[("set-cookie", &set)]);
        prop_assert_eq!(out.cookies_rewritten, 1);
    }

    #[test]
    fn config_parsers_never_panic(bytes in hostile()) {
        let _ = StickyConfig::from_json(&bytes);
        let _ = RouteSuffixConfig::from_json(&bytes);
    }

    #[test]
    fn config_parsers_never_panic_on_json_like_input(
        s in r#"\{("[a-z_]{1,15}": ("[^"]{0,10}"|true|1|null|\[\]|\{\}|\{"[a-z0-9]{1,4}": "[0-9.:]{0,12}"\}),? ?){0,4}\}"#
    ) {
        let _ = StickyConfig::from_json(s.as_bytes());
        let _ = RouteSuffixConfig::from_json(s.as_bytes());
    }

    #[test]
    fn decisions_never_panic(path in hostile(), cookies in vec(hostile(), 0..3), set_cookies in vec(hostile(), 0..3), loc in hostile(), held in proptest::option::of(hostile())) {
        let sticky_cfg = StickyConfig::default();
        let mut request: Vec<(&str, &[u8])> = vec![(":path", &path)];
        for c in &cookies { request.push(("cookie", c)); }
        let d = sticky::decide(&sticky_cfg, &request);
        if let Some(v) = &d.header_value {
            prop_assert!(session_id::is_valid_route(v.as_bytes()));
        }
        for mode in ["rewrite", "strip_append"] {
            let cfg = route_suffix_cfg(mode);
            let plan = on_request(&cfg, &request);
            let client = ClientSession { cookie_id: held.clone(), path_id: plan.client.path_id.clone() };
            let mut response: Vec<(&str, &[u8])> = vec![("location", &loc)];
            for c in &set_cookies { response.push(("set-cookie", c)); }
            let _ = on_response(&cfg, "t2", &client, &response);
            let _ = on_response(&cfg, "t2", &plan.client, &response);
        }
    }
}
