//! `;name=value` path parameters (`/app/page;jsessionid=ABC.tomcat1?x=1`), found and replaced on
//! raw bytes.
//!
//! Only the path counts: the search stops at the first `?` or `#`. A parameter starts after a `;`
//! and runs to the next `;`, `/` or the end of the path, so it may sit among other parameters of
//! any segment. Names match exactly (case-sensitive, as Tomcat compares them). Percent-encoding is
//! left alone: `%3B` is not a `;`, and a value keeps its bytes as they are. This works on a request
//! `:path` and on a `Location` value (an absolute URL's scheme and authority contain no `;`).

use memchr::{memchr, memchr2};

/// A path parameter whose name matched: where its value is in the URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathParam<'a> {
    /// The value's bytes (possibly empty).
    pub value: &'a [u8],
    /// Offset of the value.
    pub value_start: usize,
    /// Offset just past the value (and the parameter).
    pub end: usize,
}

/// Length of the path part of `uri`: up to the first `?` or `#`.
pub fn path_len(uri: &[u8]) -> usize {
    memchr2(b'?', b'#', uri).unwrap_or(uri.len())
}

/// Every parameter of the path part of `uri` whose name satisfies `is_name`, in order.
pub fn find_all<'a, F>(
    uri: &'a [u8],
    mut is_name: F,
) -> impl Iterator<Item = (&'a [u8], PathParam<'a>)>
where
    F: FnMut(&[u8]) -> bool,
{
    let path = &uri[..path_len(uri)];
    let mut pos = 0;
    core::iter::from_fn(move || {
        while pos < path.len() {
            let semi = pos + memchr(b';', &path[pos..])?;
            let body = semi + 1;
            let end = body + memchr2(b';', b'/', &path[body..]).unwrap_or(path.len() - body);
            pos = end;
            let param = &path[body..end];
            let Some(eq) = memchr(b'=', param) else {
                continue;
            };
            let name = &param[..eq];
            if is_name(name) {
                let value_start = body + eq + 1;
                return Some((
                    name,
                    PathParam {
                        value: &path[value_start..end],
                        value_start,
                        end,
                    },
                ));
            }
        }
        None
    })
}

/// Rewrites the value of every parameter called `name`: `change` returns the replacement or
/// `None` to keep it. Everything else, the query included, stays byte for byte. `None` when
/// nothing changed.
pub fn replace_values(
    uri: &[u8],
    name: &[u8],
    mut change: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for (_, param) in find_all(uri, |n| n == name) {
        if let Some(new_value) = change(param.value) {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(uri.len() + 16));
            buf.extend_from_slice(&uri[copied..param.value_start]);
            buf.extend_from_slice(&new_value);
            copied = param.end;
        }
    }
    let mut buf = out?;
    buf.extend_from_slice(&uri[copied..]);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first parameter called `name` in the path part of `uri`.
    fn find<'a>(uri: &'a [u8], name: &'a [u8]) -> Option<PathParam<'a>> {
        find_all(uri, move |n| n == name).next().map(|(_, p)| p)
    }

    #[test]
    fn finds_before_the_query_only() {
        let p = find(b"/app/page;jsessionid=ABC.t1?jsessionid=XYZ", b"jsessionid").expect("found");
        assert_eq!(p.value, b"ABC.t1");
        assert_eq!(find(b"/app/page?x=1;jsessionid=XYZ", b"jsessionid"), None);
        assert_eq!(find(b"/app/page#;jsessionid=XYZ", b"jsessionid"), None);
        assert_eq!(
            find(b"/app/page;jsessionid=ABC#frag", b"jsessionid").map(|p| p.value),
            Some(&b"ABC"[..])
        );
    }

    #[test]
    fn among_other_parameters_and_segments() {
        let uri = b"/a;v=1;jsessionid=ABC.t1;x=y/b;jsessionid=DEF";
        let found: Vec<_> = find_all(uri, |n| n == b"jsessionid")
            .map(|(_, p)| p.value)
            .collect();
        assert_eq!(found, vec![&b"ABC.t1"[..], b"DEF"]);
        assert_eq!(find(b"/a;v=1/b", b"jsessionid"), None);
        assert_eq!(find(b"/a;jsessionid/b", b"jsessionid"), None);
        assert_eq!(
            find(b"/a;jsessionid=/b", b"jsessionid").map(|p| p.value),
            Some(&b""[..])
        );
    }

    #[test]
    fn names_match_exactly() {
        assert_eq!(find(b"/a;JSESSIONID=X", b"jsessionid"), None);
        assert_eq!(find(b"/a;xjsessionid=X", b"jsessionid"), None);
        assert_eq!(find(b"/a;jsessionidx=X", b"jsessionid"), None);
    }

    #[test]
    fn percent_encoding_is_left_alone() {
        assert_eq!(find(b"/a%3Bjsessionid=X", b"jsessionid"), None);
        assert_eq!(
            find(b"/a;jsessionid=A%2EB", b"jsessionid").map(|p| p.value),
            Some(&b"A%2EB"[..])
        );
        assert_eq!(find(b"/a;jsessionid%3DX", b"jsessionid"), None);
    }

    #[test]
    fn replace_keeps_the_rest() {
        let uri = b"/a;v=1;jsessionid=ABC.t1;x=y/b?q=;jsessionid=ABC.t1";
        let out = replace_values(uri, b"jsessionid", |_| Some(b"ABC".to_vec()));
        assert_eq!(
            out.as_deref(),
            Some(&b"/a;v=1;jsessionid=ABC;x=y/b?q=;jsessionid=ABC.t1"[..])
        );
        assert_eq!(replace_values(uri, b"jsessionid", |_| None), None);
        assert_eq!(
            replace_values(b"/plain", b"jsessionid", |_| Some(Vec::new())),
            None
        );
    }

    #[test]
    fn location_url() {
        let loc = b"https://shop.example:8443/app/cart;jsessionid=ABC.tomcat1?step=2";
        let out = replace_values(loc, b"jsessionid", |_| Some(b"ABC.tomcat2".to_vec()));
        assert_eq!(
            out.as_deref(),
            Some(&b"https://shop.example:8443/app/cart;jsessionid=ABC.tomcat2?step=2"[..])
        );
    }

    #[test]
    fn hostile_inputs_do_not_break_it() {
        for uri in [
            &b""[..],
            b";",
            b";;;",
            b";=",
            b"?;jsessionid=x",
            b"/;jsessionid=",
            b"\xff;jsessionid=\xfe",
        ] {
            let _ = find(uri, b"jsessionid");
            let _ = replace_values(uri, b"jsessionid", |v| Some(v.to_vec()));
        }
        assert_eq!(
            find(b"\xff;jsessionid=\xfe", b"jsessionid").map(|p| p.value),
            Some(&b"\xfe"[..])
        );
    }
}
