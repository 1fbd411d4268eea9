//! The response decisions and the write answers, as tables of facts and outcomes.

use super::*;
use crate::route_suffix::HeaderEdit;
use crate::session::request::Loaded;
use crate::session::store_api::{CAS, REPLACES, ROUTE};

const HEX: &str = "0123456789ABCDEF0123456789ABCDEF";
const HEX2: &str = "FEDCBA9876543210FEDCBA9876543210";

fn cfg(extra: &str) -> SessionConfig {
    SessionConfig::from_json(
        format!(r#"{{"routes": {{"t1": "127.0.0.1:8081"}}, "max_state_bytes": 16{extra}}}"#)
            .as_bytes(),
    )
    .expect("valid")
}

fn key(hex: &str, node: &str) -> StoreKey {
    StoreKey::parse(format!("{hex}-{node}").as_bytes()).expect("valid")
}

fn loaded(state: &[u8]) -> Loaded {
    Loaded {
        requested: key(HEX, "n1"),
        key: key(HEX, "n1"),
        cas: Some(5),
        route: Some("t9".into()),
        state: state.to_vec(),
    }
}

fn plan<'a>(
    c: &SessionConfig,
    headers: &'a [(&'a str, &'a [u8])],
    session: Option<&Loaded>,
) -> ResponsePlan<'a> {
    on_response(c, BackendSaid::read(headers), session, Some("t1"))
}

fn call(plan: &ResponsePlan<'_>) -> StoreCall {
    match &plan.decision {
        Decision::Write(call) => call.clone(),
        other => panic!("expected a write, got {other:?}"),
    }
}

#[test]
fn backend_headers_are_read_and_all_removed() {
    let headers: &[(&str, &[u8])] = &[
        ("keel-session", b"a=1"),
        ("Keel-Session-Rotate", b"1"),
        ("keel-session-invalidate", b""),
        ("keel-session-debug", b"x"),
        ("content-type", b"text/plain"),
    ];
    let said = BackendSaid::read(headers);
    assert_eq!(said.states, [&b"a=1"[..]]);
    assert!(said.rotate && said.invalidate);
    assert_eq!(
        said.names,
        [
            &b"keel-session"[..],
            b"Keel-Session-Rotate",
            b"keel-session-invalidate",
            b"keel-session-debug"
        ]
    );
}

#[test]
fn new_state_without_a_session_is_created_on_the_serving_route() {
    let c = cfg("");
    let p = plan(&c, &[("keel-session", b"c=1")], None);
    let create = call(&p);
    assert_eq!(
        (create.kind, create.body.as_deref()),
        (CallKind::Create, Some(&b"c=1"[..]))
    );
    assert!(create.headers.contains(&(ROUTE, "t1".into())));
    assert!(p.wait && p.cookie.is_none());
    assert_eq!(p.remove, [&b"keel-session"[..]]);
    // Async mode waits too: the id comes from the store.
    assert!(
        plan(
            &cfg(r#", "write_mode": "async""#),
            &[("keel-session", b"c=1")],
            None
        )
        .wait
    );
    // No state, no session: nothing at all.
    assert_eq!(plan(&c, &[], None).decision, Decision::Nothing);
}

#[test]
fn changed_state_is_saved_with_cas_and_unchanged_is_not() {
    let c = cfg("");
    let s = loaded(b"c=1");
    let p = plan(&c, &[("keel-session", b"c=2")], Some(&s));
    let save = call(&p);
    assert_eq!(save.kind, CallKind::Save);
    assert_eq!(save.path, format!("/v1/sessions/{HEX}-n1"));
    assert!(save.headers.contains(&(CAS, "5".into())));
    assert!(p.wait);
    assert_eq!(
        plan(&c, &[("keel-session", b"c=1")], Some(&s)).decision,
        Decision::Unchanged
    );
    assert_eq!(plan(&c, &[], Some(&s)).decision, Decision::Unchanged);
    let p = plan(
        &cfg(r#", "write_mode": "async""#),
        &[("keel-session", b"c=2")],
        Some(&s),
    );
    assert!(!p.wait);
}

#[test]
fn invalidate_deletes_and_expires_the_cookie() {
    let c = cfg("");
    let s = loaded(b"c=1");
    let p = plan(
        &c,
        &[("keel-session-invalidate", b"1"), ("keel-session", b"c=2")],
        Some(&s),
    );
    let delete = call(&p);
    assert_eq!((delete.kind, delete.method), (CallKind::Delete, "DELETE"));
    assert_eq!(
        p.cookie.as_deref(),
        Some(&b"JSESSIONID=; Path=/; HttpOnly; Max-Age=0"[..])
    );
    // Without a session there is nothing to delete.
    let p = plan(&c, &[("keel-session-invalidate", b"1")], None);
    assert_eq!((p.decision, p.cookie), (Decision::Nothing, None));
}

#[test]
fn rotate_replaces_the_id_with_the_same_or_new_state() {
    let c = cfg("");
    let s = loaded(b"c=1");
    let same = call(&plan(&c, &[("keel-session-rotate", b"1")], Some(&s)));
    assert_eq!(
        (same.kind, same.body.as_deref()),
        (CallKind::Rotate, Some(&b"c=1"[..]))
    );
    assert!(same.headers.contains(&(REPLACES, format!("{HEX}-n1"))));
    let new = call(&plan(
        &c,
        &[("keel-session-rotate", b"1"), ("keel-session", b"c=2")],
        Some(&s),
    ));
    assert_eq!(new.body.as_deref(), Some(&b"c=2"[..]));
    // Rotating no session with state is a create; without state, nothing.
    let p = plan(
        &c,
        &[("keel-session-rotate", b"1"), ("keel-session", b"c=2")],
        None,
    );
    assert_eq!(call(&p).kind, CallKind::Create);
    assert_eq!(
        plan(&c, &[("keel-session-rotate", b"1")], None).decision,
        Decision::Nothing
    );
}

#[test]
fn bad_state_is_rejected() {
    let c = cfg("");
    let s = loaded(b"c=1");
    for (headers, err) in [
        (
            vec![("keel-session", &[b'x'; 17][..])],
            StateError::TooLarge(17),
        ),
        (
            vec![("keel-session", &b"a b"[..])],
            StateError::NotVisibleAscii,
        ),
        (
            vec![("keel-session", &b"a\xff"[..])],
            StateError::NotVisibleAscii,
        ),
        (
            vec![("keel-session", &b"a"[..]), ("keel-session", b"b")],
            StateError::Repeated,
        ),
    ] {
        assert_eq!(plan(&c, &headers, Some(&s)).decision, Decision::Reject(err));
        assert_eq!(plan(&c, &headers, None).decision, Decision::Reject(err));
    }
    let at_limit: &[(&str, &[u8])] = &[("keel-session", &[b'x'; 16])];
    assert_eq!(call(&plan(&c, at_limit, None)).kind, CallKind::Create);
}

#[test]
fn a_relocated_session_gets_a_cookie_with_its_new_node() {
    let c = cfg("");
    let mut s = loaded(b"c=1");
    s.key = key(HEX, "n2");
    let p = plan(&c, &[], Some(&s));
    assert_eq!(p.decision, Decision::Unchanged);
    let cookie = format!("JSESSIONID={HEX}-n2.t1; Path=/; HttpOnly");
    assert_eq!(p.cookie.as_deref(), Some(cookie.as_bytes()));
    // A save goes to where the record is now; the cookie comes with the answer (sync).
    let p = plan(&c, &[("keel-session", b"c=2")], Some(&s));
    assert_eq!(call(&p).path, format!("/v1/sessions/{HEX}-n2"));
    assert_eq!(p.cookie, None);
    // In async mode the answer is not awaited: the cookie goes now.
    let p = plan(
        &cfg(r#", "write_mode": "async""#),
        &[("keel-session", b"c=2")],
        Some(&s),
    );
    assert_eq!(p.cookie.as_deref(), Some(cookie.as_bytes()));
    // Without a known serving member the record's route is used.
    let p = on_response(&c, BackendSaid::default(), Some(&s), None);
    let cookie = format!("JSESSIONID={HEX}-n2.t9; Path=/; HttpOnly");
    assert_eq!(p.cookie.as_deref(), Some(cookie.as_bytes()));
}

fn answer(status: Option<u16>, key: Option<StoreKey>) -> StoreAnswer {
    StoreAnswer {
        status,
        key,
        ..StoreAnswer::default()
    }
}

#[test]
fn write_answers() {
    let c = cfg(r#", "cookie": {"secure": true}"#);
    let s = loaded(b"c=1");
    let create = StoreCall::create(&c, b"c=2", Some("t1"));
    let r = on_write_answer(
        &c,
        &create,
        None,
        Some("t1"),
        &answer(Some(201), Some(key(HEX2, "n3"))),
    );
    assert_eq!(r.outcome, WriteOutcome::Created);
    let cookie = format!("JSESSIONID={HEX2}-n3.t1; Path=/; Secure; HttpOnly");
    assert_eq!(r.cookie.as_deref(), Some(cookie.as_bytes()));
    let r = on_write_answer(&c, &create, None, Some("t1"), &answer(Some(201), None));
    assert_eq!((r.outcome, r.cookie), (WriteOutcome::Failed, None));

    let rotate = StoreCall::rotate(&c, &s.key, b"c=1", Some("t1"));
    let r = on_write_answer(
        &c,
        &rotate,
        Some(&s),
        Some("t1"),
        &answer(Some(201), Some(key(HEX2, "n1"))),
    );
    assert_eq!(r.outcome, WriteOutcome::Rotated);
    assert!(r.cookie.is_some());

    let save = StoreCall::save(&c, &s.key, b"c=2", Some("t1"), s.cas);
    let r = on_write_answer(
        &c,
        &save,
        Some(&s),
        Some("t1"),
        &answer(Some(204), Some(key(HEX, "n1"))),
    );
    assert_eq!(
        (r.outcome, r.cookie, r.relocated),
        (WriteOutcome::Saved, None, false)
    );
    let r = on_write_answer(
        &c,
        &save,
        Some(&s),
        Some("t1"),
        &answer(Some(204), Some(key(HEX, "n2"))),
    );
    assert_eq!((r.outcome, r.relocated), (WriteOutcome::Saved, true));
    let cookie = format!("JSESSIONID={HEX}-n2.t1; Path=/; Secure; HttpOnly");
    assert_eq!(r.cookie.as_deref(), Some(cookie.as_bytes()));
    let r = on_write_answer(&c, &save, Some(&s), Some("t1"), &answer(Some(409), None));
    assert_eq!(
        (r.outcome, r.cookie, r.next),
        (WriteOutcome::Conflict, None, None)
    );
    let r = on_write_answer(&c, &save, Some(&s), Some("t1"), &answer(Some(404), None));
    assert_eq!(r.outcome, WriteOutcome::Gone);
    let next = r.next.expect("a create follows");
    assert_eq!(
        (next.kind, next.body.as_deref()),
        (CallKind::Create, Some(&b"c=2"[..]))
    );
    let r = on_write_answer(&c, &save, Some(&s), Some("t1"), &answer(Some(413), None));
    assert_eq!(r.outcome, WriteOutcome::TooLarge);

    let delete = StoreCall::delete(&c, &s.key);
    let r = on_write_answer(&c, &delete, Some(&s), Some("t1"), &answer(Some(204), None));
    assert_eq!((r.outcome, r.cookie), (WriteOutcome::Deleted, None));
    for status in [Some(503), Some(400), Some(200), None] {
        for call in [&create, &rotate, &save, &delete] {
            let r = on_write_answer(&c, call, Some(&s), Some("t1"), &answer(status, None));
            assert_eq!(
                r.outcome,
                WriteOutcome::Failed,
                "{status:?} {:?}",
                call.kind
            );
        }
    }
    // A failed write of a relocated session still tells the client where the record is.
    let mut moved = s.clone();
    moved.key = key(HEX, "n2");
    let r = on_write_answer(
        &c,
        &save,
        Some(&moved),
        Some("t1"),
        &answer(Some(503), None),
    );
    assert!(r.cookie.is_some());
}

#[test]
fn our_cookie_replaces_any_other_setting_of_the_session_cookie() {
    let c = cfg("");
    let ours = b"JSESSIONID=NEW-n1.t1; Path=/; HttpOnly".to_vec();
    let edit = cookie_edit(
        &c,
        &[("set-cookie", &b"a=1"[..]), ("content-type", b"x")],
        ours.clone(),
    );
    assert_eq!(
        edit,
        HeaderEdit::Add {
            name: "set-cookie",
            value: ours.clone()
        }
    );
    let headers: &[(&str, &[u8])] = &[
        ("Set-Cookie", b"JSESSIONID=TOMCAT.t1; Path=/"),
        ("set-cookie", b"a=1"),
        ("set-cookie", b" JSESSIONID = \"X\" ; Path=/"),
        ("set-cookie", b"jsessionid=other-case"),
        ("set-cookie", b"\xff=\xfe"),
    ];
    assert_eq!(
        cookie_edit(&c, headers, ours.clone()),
        HeaderEdit::ReplaceAll {
            name: "set-cookie",
            values: vec![
                b"a=1".to_vec(),
                b"jsessionid=other-case".to_vec(),
                b"\xff=\xfe".to_vec(),
                ours
            ],
        }
    );
}
