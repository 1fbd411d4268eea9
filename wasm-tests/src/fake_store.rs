//! **A test double** of the session store's HTTP API (the README's store API, version 1), served
//! as a callout handler: records in a map, ids from a counter, no memcached, no nodes but the ones
//! a test names. It drives `session.wasm` through what the real store (`keel_store::api::handle`)
//! cannot be made to do on demand in a unit test — answer 503, fail or hang a call, move a record
//! to another node on its next load — and it records every call, checking what the filter sends
//! (method, path, `:authority`, `keel-store-ttl`, CAS) as strictly as the API says. The filter
//! against the real store, in memory and on real memcached, is tested end to end through keel
//! (`host/tests/sessions.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use keel_wasm::{CalloutError, CalloutFuture, CalloutHandler};

/// The upstream name the fake answers to (the filter's default `store_upstream`).
pub const UPSTREAM: &str = "keel_store";

/// One stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The node it lives on.
    pub node: String,
    /// The state bytes.
    pub state: Vec<u8>,
    /// The CAS token.
    pub cas: u64,
    /// The bound route.
    pub route: Option<String>,
}

/// One call the filter made.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// The headers (names lowercase).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Call {
    /// The value of a header ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// How the fake behaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Mode {
    /// Answers by the API.
    #[default]
    Up,
    /// Answers 503 (`keel-store-error: unavailable`) to everything.
    Unavailable,
    /// Fails every call (the filter sees a failed callout, no headers).
    Failing,
    /// Never answers (the call times out).
    Hanging,
}

#[derive(Default)]
struct State {
    /// By the 32 hex digits of the id.
    records: HashMap<String, Record>,
    calls: Vec<Call>,
    mode: Mode,
    /// A load moves the record to this node first (its node is "down").
    relocate_to: Option<String>,
    next_id: u64,
    /// When set, a call reaches the store only after this delay, inside the callout's future
    /// (as a real HTTP request does: nothing happens unless the future runs to its end).
    latency: Option<Duration>,
}

/// The fake store. Test double: see the module docs.
#[derive(Default)]
pub struct FakeStore {
    state: Arc<Mutex<State>>,
}

/// `<32 HEX>-<node>` split, or `None` (the API's 400).
fn split_key(key: &str) -> Option<(&str, &str)> {
    let (id, node) = key.split_once('-')?;
    let ok = id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        && !node.is_empty()
        && node.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some((id, node))
}

fn answer(status: u16, headers: &[(&str, String)], body: Vec<u8>) -> http::Response<Bytes> {
    let mut builder = http::Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder
        .body(Bytes::from(body))
        .unwrap_or_else(|_| http::Response::new(Bytes::new()))
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeStore {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Calls reach the store `latency` after they are made, and only if their future is run.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = Some(latency);
    }

    /// Stores a session as if created earlier; returns its key `<id>-<node>`.
    pub fn insert(&self, id: &str, node: &str, state: &str, route: Option<&str>) -> String {
        self.lock().records.insert(
            id.to_owned(),
            Record {
                node: node.to_owned(),
                state: state.as_bytes().to_vec(),
                cas: 1,
                route: route.map(str::to_owned),
            },
        );
        format!("{id}-{node}")
    }

    /// The record of `id`, if any.
    pub fn record(&self, id: &str) -> Option<Record> {
        self.lock().records.get(id).cloned()
    }

    /// Removes a record behind the filter's back (expired, or deleted by another request).
    pub fn remove(&self, id: &str) {
        self.lock().records.remove(id);
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes a record's state and CAS behind the filter's back (another request's write).
    pub fn overwrite(&self, id: &str, state: &str) {
        if let Some(record) = self.lock().records.get_mut(id) {
            record.state = state.as_bytes().to_vec();
            record.cas += 1;
        }
    }

    /// Sets how the fake answers.
    pub fn set_mode(&self, mode: Mode) {
        self.lock().mode = mode;
    }

    /// Makes every load move its record to `node` first.
    pub fn relocate_to(&self, node: &str) {
        self.lock().relocate_to = Some(node.to_owned());
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls as `METHOD path` lines.
    pub fn call_lines(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| format!("{} {}", c.method, c.path))
            .collect()
    }
}

fn handle(state: &Mutex<State>, call: &Call) -> http::Response<Bytes> {
    let mut st = lock(state);
    st.calls.push(call.clone());
    if st.mode == Mode::Unavailable {
        return answer(
            503,
            &[("keel-store-error", "unavailable".into())],
            Vec::new(),
        );
    }
    let ttl_ok = call
        .header("keel-store-ttl")
        .parse::<u64>()
        .is_ok_and(|t| t > 0);
    if !ttl_ok || call.header(":authority") != UPSTREAM {
        return answer(400, &[], b"bad ttl or authority".to_vec());
    }
    let key = call.path.strip_prefix("/v1/sessions/");
    match (call.method.as_str(), key) {
        ("GET", Some(key)) => {
            let Some((id, node)) = split_key(key) else {
                return answer(400, &[], Vec::new());
            };
            let relocate = st.relocate_to.clone();
            let Some(record) = st.records.get_mut(id).filter(|r| r.node == node) else {
                return answer(404, &[], Vec::new());
            };
            if let Some(to) = relocate {
                record.node = to;
            }
            let mut headers = vec![
                ("keel-store-key", format!("{id}-{}", record.node)),
                ("keel-store-cas", record.cas.to_string()),
            ];
            if let Some(route) = &record.route {
                headers.push(("keel-store-route", route.clone()));
            }
            answer(200, &headers, record.state.clone())
        }
        ("POST", None) if call.path == "/v1/sessions" => {
            st.next_id += 1;
            let id = format!("{:032X}", 0xC0FF_EE00_u64 + st.next_id);
            let record = Record {
                node: "n1".into(),
                state: call.body.clone(),
                cas: 1,
                route: Some(call.header("keel-store-route"))
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned),
            };
            st.records.insert(id.clone(), record);
            if let Some((old, _)) = split_key(call.header("keel-store-replaces")) {
                st.records.remove(old);
            }
            let headers = [
                ("keel-store-key", format!("{id}-n1")),
                ("keel-store-cas", "1".into()),
            ];
            answer(201, &headers, Vec::new())
        }
        ("PUT", Some(key)) => {
            let Some((id, node)) = split_key(key) else {
                return answer(400, &[], Vec::new());
            };
            let Some(record) = st.records.get_mut(id).filter(|r| r.node == node) else {
                return answer(404, &[], Vec::new());
            };
            let cas = call.header("keel-store-cas");
            if !cas.is_empty() && cas != record.cas.to_string() {
                return answer(409, &[], Vec::new());
            }
            record.state.clone_from(&call.body);
            record.cas += 1;
            let headers = [
                ("keel-store-key", format!("{id}-{}", record.node)),
                ("keel-store-cas", record.cas.to_string()),
            ];
            answer(204, &headers, Vec::new())
        }
        ("DELETE", Some(key)) => {
            let Some((id, _)) = split_key(key) else {
                return answer(400, &[], Vec::new());
            };
            st.records.remove(id);
            answer(204, &[], Vec::new())
        }
        _ => answer(400, &[], b"not an API call".to_vec()),
    }
}

impl CalloutHandler for FakeStore {
    fn call(
        &self,
        _upstream: &str,
        request: http::Request<Bytes>,
        _timeout: Duration,
    ) -> CalloutFuture {
        let (parts, body) = request.into_parts();
        let mut headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        if let Some(authority) = parts.uri.authority() {
            headers.push((":authority".into(), authority.as_str().to_owned()));
        }
        let call = Call {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            headers,
            body: body.to_vec(),
        };
        let (mode, latency) = {
            let st = self.lock();
            (st.mode.clone(), st.latency)
        };
        let state = self.state.clone();
        let now = latency.is_none().then(|| handle(&state, &call));
        Box::pin(async move {
            let response = match now {
                Some(response) => response,
                None => {
                    tokio::time::sleep(latency.unwrap_or_default()).await;
                    handle(&state, &call)
                }
            };
            match mode {
                Mode::Failing => Err(CalloutError::Failed("the fake store is down".into())),
                Mode::Hanging => std::future::pending().await,
                Mode::Up | Mode::Unavailable => Ok(response),
            }
        })
    }

    fn has_upstream(&self, upstream: &str) -> bool {
        upstream == UPSTREAM
    }
}
