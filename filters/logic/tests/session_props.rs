//! Property tests of the session filter's logic: no panic on any bytes from the client, the
//! backend or the store, and nothing but validated ASCII ever reaches a store call or a cookie.

use keel_filter_logic::config::SessionConfig;
use keel_filter_logic::session::{
    self, BackendSaid, Decision, LoadEffect, LoadOutcome, StoreAnswer, StoreCall, on_load_answer,
    on_request, on_response, on_write_answer,
};
use proptest::collection::vec;
use proptest::prelude::*;

mod common;

/// Bytes biased towards what ids, cookies and states are made of.
fn hostile() -> impl Strategy<Value = Vec<u8>> {
    common::biased_bytes(b";= .-\r\nA0", 80)
}

/// Cookie headers that often hold an id of the keel form, sometimes damaged.
fn cookie() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        hostile(),
        ("[0-9A-F]{32}-[a-z0-9_]{1,4}(\\.[a-z0-9]{1,4})?", hostile()).prop_map(|(id, tail)| [
            b"JSESSIONID=".as_slice(),
            id.as_bytes(),
            &tail
        ]
        .concat()),
    ]
}

fn cfg(mode: &str) -> SessionConfig {
    let json = format!(
        r#"{{"routes": {{"t1": "127.0.0.1:8081"}}, "max_state_bytes": 32, "write_mode": "{mode}"}}"#
    );
    SessionConfig::from_json(json.as_bytes()).expect("valid")
}

/// Every byte a header value may carry unchanged: visible ASCII and space.
fn header_safe(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == b' ' || b.is_ascii_graphic())
}

fn check_call(call: &StoreCall) -> Result<(), TestCaseError> {
    for (name, value) in call.header_pairs() {
        prop_assert!(
            header_safe(name.as_bytes()) && header_safe(value.as_bytes()),
            "{name}: {value:?}"
        );
    }
    if let Some(body) = &call.body {
        prop_assert!(body.iter().all(u8::is_ascii_graphic));
    }
    Ok(())
}

proptest! {
    #[test]
    fn session_config_never_panics(bytes in hostile()) {
        let _ = SessionConfig::from_json(&bytes);
    }

    #[test]
    fn session_decisions_never_panic_and_stay_ascii(
        path in hostile(),
        cookies in vec(cookie(), 0..3),
        names in vec("[kK]eel-[sS]ession[-a-z]{0,6}", 0..3),
        status in proptest::option::of(prop_oneof![Just(200u16), Just(201), Just(204), Just(404), Just(409), any::<u16>()]),
        answer_key in hostile(),
        answer_route in hostile(),
        body in hostile(),
        states in vec(hostile(), 0..2),
        flags in (any::<bool>(), any::<bool>()),
        async_mode in any::<bool>(),
    ) {
        let c = cfg(if async_mode { "async" } else { "sync" });
        let mut request: Vec<(&[u8], &[u8])> = vec![(b":path", &path)];
        for value in &cookies { request.push((b"cookie", value)); }
        for name in &names { request.push((name.as_bytes(), b"forged")); }
        let plan = on_request(&c, &request);
        prop_assert_eq!(plan.client_headers.len() <= names.len(), true);
        for name in &plan.client_headers {
            prop_assert!(session::is_session_header(name));
        }
        let answer_headers: Vec<(&[u8], &[u8])> = vec![
            (b":status", b"200"),
            (b"keel-store-key", &answer_key),
            (b"keel-store-cas", &answer_route),
            (b"keel-store-route", &answer_route),
        ];
        let mut answer = StoreAnswer::from_headers(&answer_headers);
        answer.status = status;
        let loaded = match &plan.key {
            Some(key) => {
                check_call(&StoreCall::load(&c, key))?;
                let outcome = on_load_answer(&c, key.clone(), answer.clone(), &body);
                if let LoadEffect::Continue(headers) = outcome.effect(&c) {
                    for (_, value) in &headers { prop_assert!(header_safe(value)); }
                }
                match outcome { LoadOutcome::Loaded(l) => Some(l), _ => None }
            }
            None => None,
        };
        let mut response: Vec<(&[u8], &[u8])> = states.iter().map(|s| (&b"keel-session"[..], s.as_slice())).collect();
        if flags.0 { response.push((b"keel-session-invalidate", b"1")); }
        if flags.1 { response.push((b"keel-session-rotate", b"")); }
        let plan = on_response(&c, BackendSaid::read(&response), loaded.as_ref(), Some("t1"));
        if let Some(cookie) = &plan.cookie { prop_assert!(header_safe(cookie)); }
        if let Decision::Write(call) = &plan.decision {
            check_call(call)?;
            let result = on_write_answer(&c, call, loaded.as_ref(), Some("t1"), &answer);
            if let Some(cookie) = &result.cookie { prop_assert!(header_safe(cookie)); }
            if let Some(next) = &result.next { check_call(next)?; }
        }
    }
}
