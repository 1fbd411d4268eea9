//! route_suffix on the request path: remember the session id the client holds (the response needs
//! it), and in strip/append mode take `.route` off the cookie and the path parameter so that the
//! backend sees the id it issued.

use crate::config::{Mode, RouteSuffixConfig};
use crate::cookie;
use crate::lookup::RequestParts;
use crate::path_param;
use crate::session_id::SessionId;

/// The session ids the client came with (valid ones only, as sent, route included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSession {
    /// The first valid id in a cookie named `cookie_name`.
    pub cookie_id: Option<Vec<u8>>,
    /// The first valid id in a `;path_parameter=` path parameter.
    pub path_id: Option<Vec<u8>>,
}

/// What to do with the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestPlan {
    /// What the client holds; keep it for the response.
    pub client: ClientSession,
    /// Strip/append: the new `:path`, when it changed.
    pub new_path: Option<Vec<u8>>,
    /// Strip/append: the new (single) `cookie` header, when a cookie changed. Several `cookie`
    /// headers are joined into this one.
    pub new_cookie: Option<Vec<u8>>,
}

/// `value` without its `.route`, when it is a valid id that has one.
fn stripped(value: &[u8]) -> Option<Vec<u8>> {
    let id = SessionId::parse(value)?;
    id.route()?;
    Some(id.without_route().to_vec())
}

/// Plans the request side for these request headers.
pub fn on_request<N: AsRef<[u8]>>(cfg: &RouteSuffixConfig, headers: &[(N, &[u8])]) -> RequestPlan {
    let parts = RequestParts::from_headers(headers);
    let name = cfg.cookie_name.as_bytes();
    let param = cfg.path_parameter.as_bytes();
    let mut plan = RequestPlan::default();
    plan.client.cookie_id = parts
        .cookies
        .iter()
        .flat_map(|header| cookie::values(header, name))
        .find_map(|value| SessionId::parse(value).map(|id| id.as_bytes().to_vec()));
    plan.client.path_id = parts.path.and_then(|path| {
        path_param::find_all(path, |n| n == param)
            .find_map(|(_, p)| SessionId::parse(p.value).map(|id| id.as_bytes().to_vec()))
    });
    if cfg.mode != Mode::StripAppend {
        return plan;
    }
    if let Some(path) = parts.path {
        plan.new_path = path_param::replace_values(path, param, stripped);
    }
    let rewritten: Vec<Option<Vec<u8>>> = parts
        .cookies
        .iter()
        .map(|header| cookie::replace_values(header, |n| n == name, stripped))
        .collect();
    if rewritten.iter().any(Option::is_some) {
        plan.new_cookie = Some(cookie::join_headers(
            rewritten
                .iter()
                .zip(&parts.cookies)
                .map(|(new, old)| new.as_deref().unwrap_or(old)),
        ));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request without headers.
    const NO_HEADERS: &[(&str, &[u8])] = &[];

    fn cfg(mode: &str) -> RouteSuffixConfig {
        let json = format!(
            r#"{{"routes": {{"t1": "127.0.0.1:8081", "t2": "127.0.0.1:8082"}}, "mode": "{mode}"}}"#
        );
        RouteSuffixConfig::from_json(json.as_bytes()).expect("valid")
    }

    #[test]
    fn rewrite_mode_only_remembers() {
        let plan = on_request(
            &cfg("rewrite"),
            &[
                (":path", b"/a;jsessionid=P.t1"),
                ("cookie", b"x=1; JSESSIONID=bad id; JSESSIONID=C-n1.t1"),
            ],
        );
        assert_eq!(plan.client.cookie_id.as_deref(), Some(&b"C-n1.t1"[..]));
        assert_eq!(plan.client.path_id.as_deref(), Some(&b"P.t1"[..]));
        assert_eq!((plan.new_path, plan.new_cookie), (None, None));
    }

    #[test]
    fn strip_mode_strips_cookie_and_path_parameter() {
        let plan = on_request(
            &cfg("strip_append"),
            &[
                (":path", b"/a;v=1;jsessionid=P-n2.t1/b?jsessionid=Q.t1"),
                ("cookie", b"x=1;  JSESSIONID=\"C.t1\" ; y=2"),
            ],
        );
        assert_eq!(plan.client.cookie_id.as_deref(), Some(&b"C.t1"[..]));
        assert_eq!(
            plan.new_path.as_deref(),
            Some(&b"/a;v=1;jsessionid=P-n2/b?jsessionid=Q.t1"[..])
        );
        assert_eq!(
            plan.new_cookie.as_deref(),
            Some(&b"x=1;  JSESSIONID=\"C\" ; y=2"[..])
        );
    }

    #[test]
    fn strip_mode_leaves_bare_and_invalid_ids() {
        let plan = on_request(
            &cfg("strip_append"),
            &[
                (":path", b"/a;jsessionid=P"),
                (
                    "cookie",
                    b"JSESSIONID=C; JSESSIONID=.t1; JSESSIONID=\xff.t1",
                ),
            ],
        );
        assert_eq!(plan.client.cookie_id.as_deref(), Some(&b"C"[..]));
        assert_eq!((plan.new_path, plan.new_cookie), (None, None));
    }

    #[test]
    fn strip_mode_joins_several_cookie_headers_when_one_changes() {
        let plan = on_request(
            &cfg("strip_append"),
            &[
                ("cookie", b"a=1"),
                ("cookie", b"JSESSIONID=C.t2"),
                ("cookie", b"b=2"),
            ],
        );
        assert_eq!(
            plan.new_cookie.as_deref(),
            Some(&b"a=1; JSESSIONID=C; b=2"[..])
        );
        assert_eq!(plan.client.cookie_id.as_deref(), Some(&b"C.t2"[..]));
    }

    #[test]
    fn nothing_to_find() {
        let plan = on_request(
            &cfg("strip_append"),
            &[(":path", b"/"), ("cookie", b"SID=C.t1")],
        );
        assert_eq!(plan, RequestPlan::default());
        assert_eq!(
            on_request(&cfg("rewrite"), NO_HEADERS),
            RequestPlan::default()
        );
    }
}
