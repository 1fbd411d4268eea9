//! The response side: what the backend said in its `keel-session*` headers, the store call that
//! follows and the cookie the client gets; then what the store's answer to that call means.

use super::key::StoreKey;
use super::request::{Loaded, state_is_valid};
use super::store_api::{CallKind, StoreAnswer, StoreCall};
use super::{INVALIDATE_HEADER, ROTATE_HEADER, STATE_HEADER, is_session_header};
use crate::config::{SessionConfig, WriteMode};
use crate::new_cookie;
use crate::route_suffix::HeaderEdit;
use crate::set_cookie::SetCookie;
use crate::syntax::name_is;

/// What the backend said, from the response headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendSaid<'a> {
    /// Every `keel-session*` header name (each once, as sent): all are removed.
    pub names: Vec<&'a [u8]>,
    /// The `keel-session` values (new state): more than one is an error.
    pub states: Vec<&'a [u8]>,
    /// `keel-session-invalidate` was there (any value).
    pub invalidate: bool,
    /// `keel-session-rotate` was there (any value).
    pub rotate: bool,
}

impl<'a> BackendSaid<'a> {
    /// Reads the response headers.
    pub fn read<N: AsRef<[u8]>>(headers: &'a [(N, &'a [u8])]) -> Self {
        let mut said = BackendSaid::default();
        for (name, value) in headers {
            let name = name.as_ref();
            if !is_session_header(name) {
                continue;
            }
            if !said.names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                said.names.push(name);
            }
            if name_is(name, STATE_HEADER) {
                said.states.push(value);
            } else if name_is(name, INVALIDATE_HEADER) {
                said.invalidate = true;
            } else if name_is(name, ROTATE_HEADER) {
                said.rotate = true;
            }
        }
        said
    }
}

/// Why a state was refused (the response becomes a local 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    /// Longer than `max_state_bytes` (the length).
    TooLarge(usize),
    /// A byte that is not visible ASCII.
    NotVisibleAscii,
    /// More than one `keel-session` header.
    Repeated,
}

/// What the response leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No session and no new state: nothing.
    Nothing,
    /// A session whose state did not change: no write (the load touched the TTL).
    Unchanged,
    /// A state that cannot be stored: not stored, the response is replaced by a local 502.
    Reject(StateError),
    /// A store call: create, rotate, save or delete.
    Write(StoreCall),
}

/// The response plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsePlan<'a> {
    /// The `keel-session*` headers to remove.
    pub remove: Vec<&'a [u8]>,
    /// What happens.
    pub decision: Decision,
    /// A `Set-Cookie` to add now (an expired cookie on invalidation; the new node after a
    /// relocation when no answer is awaited).
    pub cookie: Option<Vec<u8>>,
    /// Whether the response waits for the store's answer (sync mode, and always for a create
    /// or rotation: the new id comes from the store).
    pub wait: bool,
}

/// The route the cookie names: the member that served, else the one the record is bound to.
fn cookie_route<'s>(session: Option<&'s Loaded>, served: Option<&'s str>) -> Option<&'s str> {
    served.or_else(|| session.and_then(|s| s.route.as_deref()))
}

/// `Set-Cookie` for `key`.
fn cookie_for(cfg: &SessionConfig, key: &StoreKey, route: Option<&str>) -> Vec<u8> {
    new_cookie::build(
        cfg.cookie_name.as_bytes(),
        &key.cookie_value(route),
        &cfg.cookie,
    )
}

fn check_state<'a>(
    cfg: &SessionConfig,
    states: &[&'a [u8]],
) -> Result<Option<&'a [u8]>, StateError> {
    match states {
        [] => Ok(None),
        [state] if state.len() > cfg.max_state_bytes => Err(StateError::TooLarge(state.len())),
        [state] if state_is_valid(state, cfg.max_state_bytes) => Ok(Some(state)),
        [_] => Err(StateError::NotVisibleAscii),
        _ => Err(StateError::Repeated),
    }
}

/// Decides from what the backend said, the session the request loaded (if any) and the route of
/// the member that served. Invalidation wins over everything; then rotation; then new state.
pub fn on_response<'a>(
    cfg: &SessionConfig,
    said: BackendSaid<'a>,
    session: Option<&Loaded>,
    served: Option<&str>,
) -> ResponsePlan<'a> {
    let route = cookie_route(session, served);
    let mut plan = ResponsePlan {
        remove: said.names,
        decision: Decision::Nothing,
        cookie: None,
        wait: false,
    };
    if said.invalidate {
        if let Some(session) = session {
            plan.decision = Decision::Write(StoreCall::delete(cfg, &session.key));
            plan.cookie = Some(new_cookie::build_expired(
                cfg.cookie_name.as_bytes(),
                &cfg.cookie,
            ));
            plan.wait = cfg.write_mode == WriteMode::Sync;
        }
        return plan;
    }
    let state = match check_state(cfg, &said.states) {
        Ok(state) => state,
        Err(err) => {
            plan.decision = Decision::Reject(err);
            return plan;
        }
    };
    let call = match (session, state) {
        (Some(s), state) if said.rotate => Some(StoreCall::rotate(
            cfg,
            &s.key,
            state.unwrap_or(&s.state),
            route,
        )),
        (None, Some(state)) => Some(StoreCall::create(cfg, state, route)),
        (Some(s), Some(state)) if state != s.state.as_slice() => {
            Some(StoreCall::save(cfg, &s.key, state, route, s.cas))
        }
        (Some(_), _) | (None, None) => None,
    };
    match call {
        Some(call) => {
            plan.wait = cfg.write_mode == WriteMode::Sync || call.kind != CallKind::Save;
            if !plan.wait {
                plan.cookie = relocation_cookie(cfg, session, route);
            }
            plan.decision = Decision::Write(call);
        }
        None => {
            if session.is_some() {
                plan.decision = Decision::Unchanged;
            }
            plan.cookie = relocation_cookie(cfg, session, route);
        }
    }
    plan
}

/// The cookie naming the node a relocated session lives on now.
fn relocation_cookie(
    cfg: &SessionConfig,
    session: Option<&Loaded>,
    route: Option<&str>,
) -> Option<Vec<u8>> {
    session
        .filter(|s| s.relocated())
        .map(|s| cookie_for(cfg, &s.key, route))
}

/// How a write came out (one metric each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// 201 to a create.
    Created,
    /// 201 to a rotation.
    Rotated,
    /// 204 to a save.
    Saved,
    /// 204 to a delete.
    Deleted,
    /// 409 to a save: another request of the session wrote first; this write is dropped.
    Conflict,
    /// 404 to a save: the record is gone; the state goes to a fresh id ([`WriteResult::next`]).
    Gone,
    /// 413: the store's limit is below the filter's.
    TooLarge,
    /// 503, 400, another status, a failed or timed-out call.
    Failed,
}

/// What a write's answer leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// How it came out.
    pub outcome: WriteOutcome,
    /// A `Set-Cookie` to add: a new id, or the new node of a record the store moved.
    pub cookie: Option<Vec<u8>>,
    /// The store moved the record to another node on this write.
    pub relocated: bool,
    /// A call to make next (a create after [`WriteOutcome::Gone`]).
    pub next: Option<StoreCall>,
}

/// Reads the store's answer to `call`, made for `session` (the one the request loaded) on a
/// response served by `served`.
pub fn on_write_answer(
    cfg: &SessionConfig,
    call: &StoreCall,
    session: Option<&Loaded>,
    served: Option<&str>,
    answer: &StoreAnswer,
) -> WriteResult {
    let route = cookie_route(session, served);
    let mut result = WriteResult {
        outcome: WriteOutcome::Failed,
        cookie: None,
        relocated: false,
        next: None,
    };
    result.outcome = match (call.kind, answer.status) {
        (CallKind::Create | CallKind::Rotate, Some(201)) => {
            // Without a valid key in the answer there is no id to give the client.
            let Some(key) = &answer.key else {
                return result;
            };
            result.cookie = Some(cookie_for(cfg, key, route));
            if call.kind == CallKind::Create {
                WriteOutcome::Created
            } else {
                WriteOutcome::Rotated
            }
        }
        (CallKind::Save, Some(204)) => {
            if let (Some(session), Some(key)) = (session, &answer.key) {
                result.relocated = *key != session.key;
                if *key != session.requested {
                    result.cookie = Some(cookie_for(cfg, key, route));
                }
            } else {
                // The key as loaded (a relocation on load still needs its cookie).
                result.cookie = relocation_cookie(cfg, session, route);
            }
            WriteOutcome::Saved
        }
        (CallKind::Delete, Some(204)) => WriteOutcome::Deleted,
        (CallKind::Save, Some(409)) => WriteOutcome::Conflict,
        (CallKind::Save, Some(404)) => {
            let state = call.body.as_deref().unwrap_or_default();
            result.next = Some(StoreCall::create(cfg, state, route));
            WriteOutcome::Gone
        }
        (_, Some(413)) => WriteOutcome::TooLarge,
        _ => WriteOutcome::Failed,
    };
    if matches!(
        result.outcome,
        WriteOutcome::Conflict | WriteOutcome::TooLarge | WriteOutcome::Failed
    ) {
        // The client still needs the node a relocated session moved to.
        result.cookie = relocation_cookie(cfg, session, route);
    }
    result
}

/// The edit that gives the client `cookie`: a plain add, unless the response already sets the
/// cookie `cookie_name` (the backend's own id, or another filter's rewrite of it) — then those
/// `Set-Cookie` headers go, the others stay in order, and `cookie` comes last: one response never
/// sets the session cookie twice.
pub fn cookie_edit<N: AsRef<[u8]>>(
    cfg: &SessionConfig,
    headers: &[(N, &[u8])],
    cookie: Vec<u8>,
) -> HeaderEdit {
    let name = cfg.cookie_name.as_bytes();
    let set_cookies = headers
        .iter()
        .filter(|(n, _)| name_is(n.as_ref(), "set-cookie"))
        .map(|&(_, value)| value);
    let names_ours = |value: &[u8]| SetCookie::parse(value).is_some_and(|c| c.name == name);
    if !set_cookies.clone().any(names_ours) {
        return HeaderEdit::Add {
            name: "set-cookie",
            value: cookie,
        };
    }
    let mut values: Vec<Vec<u8>> = set_cookies
        .filter(|value| !names_ours(value))
        .map(<[u8]>::to_vec)
        .collect();
    values.push(cookie);
    HeaderEdit::ReplaceAll {
        name: "set-cookie",
        values,
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
