//! One HTTP stream of the session filter: the load on request headers, the write on response
//! headers, and the store's answers (`on_http_call_response`), which resume the paused side.
//! Headers are touched only in their own callback or while that side is paused, as in Envoy.

use std::rc::Rc;
use std::time::Duration;

use keel_filter_logic::config::SessionConfig;
use keel_filter_logic::fingerprint::fingerprint;
use keel_filter_logic::session::{
    self, BackendSaid, Decision, LoadEffect, LoadOutcome, Loaded, StateError, StoreAnswer,
    StoreCall, StoreKey,
};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use crate::metrics::{Counter, Counters};
use crate::{adapter, edits, upstream};

/// A store call in flight.
enum Pending {
    /// The load of `key`; the request waits.
    Load { token: u32, key: StoreKey },
    /// A write; the response waits when `waiting`.
    Write {
        token: u32,
        call: StoreCall,
        waiting: bool,
    },
}

/// One HTTP stream: what the request loaded, for the response.
pub struct Stream {
    /// `None` only if a host creates streams for a plugin it never configured: pass through.
    config: Option<Rc<SessionConfig>>,
    counters: Option<Rc<Counters>>,
    /// The path matched `ignore_pattern`.
    ignored: bool,
    /// The session the request loaded.
    session: Option<Loaded>,
    /// The route of the member that served (from `upstream.address`).
    served: Option<String>,
    pending: Option<Pending>,
}

impl Stream {
    /// A stream of a plugin configured with `config` (`None`: pass everything through).
    pub fn new(config: Option<Rc<SessionConfig>>, counters: Option<Rc<Counters>>) -> Self {
        Stream {
            config,
            counters,
            ignored: false,
            session: None,
            served: None,
            pending: None,
        }
    }
}

/// Length and fingerprint of a key for log lines (never the id itself).
fn key_summary(key: &StoreKey) -> (usize, u32) {
    (key.as_str().len(), fingerprint(key.as_str().as_bytes()))
}

impl Stream {
    fn count(&self, counter: Counter) {
        if let Some(counters) = &self.counters {
            counters.add(counter as usize, 1);
        }
    }

    /// Sends `call` to the store.
    fn dispatch(&self, config: &SessionConfig, call: &StoreCall) -> Result<u32, String> {
        self.dispatch_http_call(
            &config.store_upstream,
            call.header_pairs(),
            call.body.as_deref(),
            Vec::new(),
            Duration::from_millis(config.store_timeout_ms),
        )
        .map_err(|status| format!("{status:?}"))
    }

    /// Gives the client `cookie`, replacing any other `Set-Cookie` of the session cookie (read
    /// from the response headers: in their callback, or while the response waits).
    fn set_cookie(config: &SessionConfig, cookie: Vec<u8>) {
        let headers = adapter::HeaderMap::read(MapType::HttpResponseHeaders);
        edits::apply_to_response(&session::cookie_edit(config, &headers.pairs(), cookie));
    }

    /// A local reply (the SDK's `send_http_response` panics on a status it does not expect).
    fn local_reply(status: u32, body: &[u8]) {
        if let Err(status) = hostcalls::send_http_response(status, Vec::new(), Some(body)) {
            log::error!("session: local reply refused by the host ({status:?})");
        }
    }

    /// Applies a load's outcome to the request; `Pause` when it was answered locally.
    fn finish_load(&mut self, config: &SessionConfig, outcome: LoadOutcome) -> Action {
        match &outcome {
            LoadOutcome::Loaded(loaded) => {
                self.count(Counter::Loaded);
                if loaded.relocated() {
                    self.count(Counter::Relocated);
                }
            }
            LoadOutcome::NotFound => self.count(Counter::NotFound),
            LoadOutcome::Unavailable => self.count(Counter::StoreUnavailable),
        }
        match outcome.effect(config) {
            LoadEffect::Refuse => {
                log::warn!("session: store unavailable, fail_closed: answering 503");
                Self::local_reply(503, b"session store unavailable\n");
                return Action::Pause;
            }
            LoadEffect::Continue(headers) => {
                for (name, value) in headers {
                    self.add_http_request_header_bytes(name, &value);
                }
            }
        }
        if let LoadOutcome::Loaded(loaded) = outcome {
            self.session = Some(loaded);
        }
        Action::Continue
    }

    /// Sends a write; `Pause` when the response waits for it.
    fn write(&mut self, config: &SessionConfig, call: StoreCall, wait: bool) -> Action {
        match self.dispatch(config, &call) {
            Ok(token) => {
                self.pending = Some(Pending::Write {
                    token,
                    call,
                    waiting: wait,
                });
                if wait {
                    Action::Pause
                } else {
                    Action::Continue
                }
            }
            Err(status) => {
                log::warn!("session: store call {:?} not sent ({status})", call.kind);
                // As a failed answer: counted, and a relocated session still gets its cookie.
                self.finish_write(config, &call, &StoreAnswer::default(), true);
                Action::Continue
            }
        }
    }

    /// Applies a write's answer; with `headers_open` (the response waits, or this is its
    /// headers callback) a cookie is added. Returns whether another call is now in flight.
    fn finish_write(
        &mut self,
        config: &SessionConfig,
        call: &StoreCall,
        answer: &StoreAnswer,
        headers_open: bool,
    ) -> bool {
        let result = session::on_write_answer(
            config,
            call,
            self.session.as_ref(),
            self.served.as_deref(),
            answer,
        );
        if let Some(counter) = Counter::of_write(result.outcome) {
            self.count(counter);
        }
        if result.relocated {
            self.count(Counter::Relocated);
        }
        log::debug!(
            "session: store {:?} answered {:?}: {:?}",
            call.kind,
            answer.status,
            result.outcome
        );
        match result.outcome {
            session::WriteOutcome::Conflict => log::warn!(
                "session: CAS conflict on save: another request of the session wrote first; this write is dropped"
            ),
            session::WriteOutcome::Failed | session::WriteOutcome::TooLarge => log::warn!(
                "session: store {:?} failed (status {:?}): the change is not stored",
                call.kind,
                answer.status
            ),
            _ => {}
        }
        if headers_open && let Some(cookie) = result.cookie {
            Self::set_cookie(config, cookie);
        }
        let Some(next) = result.next else {
            return false;
        };
        if !headers_open {
            log::warn!("session: record gone on an async save: the change is not stored");
            return false;
        }
        match self.dispatch(config, &next) {
            Ok(token) => {
                self.pending = Some(Pending::Write {
                    token,
                    call: next,
                    waiting: true,
                });
                true
            }
            Err(status) => {
                log::warn!("session: store call {:?} not sent ({status})", next.kind);
                self.finish_write(config, &next, &StoreAnswer::default(), true)
            }
        }
    }
}

impl Context for Stream {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(config) = self.config.clone() else {
            return;
        };
        let ours = match &self.pending {
            Some(Pending::Load { token, .. } | Pending::Write { token, .. }) => *token == token_id,
            None => false,
        };
        if !ours {
            return;
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        let headers = adapter::HeaderMap::read(MapType::HttpCallResponseHeaders);
        let answer = StoreAnswer::from_headers(&headers.pairs());
        match pending {
            Pending::Load { key, .. } => {
                // One byte past the limit is enough to refuse a state that is too long.
                let limit = body_size.min(config.max_state_bytes + 1);
                let body = if answer.status == Some(200) && limit > 0 {
                    self.get_http_call_response_body(0, limit)
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                let (len, fp) = key_summary(&key);
                log::debug!(
                    "session: load key_len={len} key_fp={fp:08x} answered {:?}",
                    answer.status
                );
                let outcome = session::on_load_answer(&config, key, answer, &body);
                if self.finish_load(&config, outcome) == Action::Continue
                    && let Err(status) = hostcalls::resume_http_request()
                {
                    log::error!("session: could not resume the request ({status:?})");
                }
            }
            Pending::Write { call, waiting, .. } => {
                let more = self.finish_write(&config, &call, &answer, waiting);
                if waiting
                    && !more
                    && let Err(status) = hostcalls::resume_http_response()
                {
                    log::error!("session: could not resume the response ({status:?})");
                }
            }
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let headers = adapter::HeaderMap::read(MapType::HttpRequestHeaders);
        let pairs = headers.pairs();
        let plan = session::on_request(&config, &pairs);
        if !plan.client_headers.is_empty() {
            for name in &plan.client_headers {
                // Header names are tokens (ASCII); one that is not cannot be in a real request.
                if let Ok(name) = core::str::from_utf8(name) {
                    self.set_http_request_header_bytes(name, None);
                }
            }
            self.count(Counter::ClientHeaderRemoved);
        }
        if plan.ignored {
            self.ignored = true;
            self.count(Counter::Ignored);
            return Action::Continue;
        }
        let Some(key) = plan.key else {
            return Action::Continue;
        };
        let call = StoreCall::load(&config, &key);
        match self.dispatch(&config, &call) {
            Ok(token) => {
                self.pending = Some(Pending::Load { token, key });
                Action::Pause
            }
            Err(status) => {
                log::warn!("session: load not sent ({status})");
                self.finish_load(&config, LoadOutcome::Unavailable)
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let headers = adapter::HeaderMap::read(MapType::HttpResponseHeaders);
        let pairs = headers.pairs();
        let said = BackendSaid::read(&pairs);
        for name in &said.names {
            if let Ok(name) = core::str::from_utf8(name) {
                self.set_http_response_header_bytes(name, None);
            }
        }
        if self.ignored {
            return Action::Continue;
        }
        self.served = upstream::address()
            .and_then(|address| config.routes.route_for_address(&address).map(str::to_owned));
        let plan =
            session::on_response(&config, said, self.session.as_ref(), self.served.as_deref());
        if let Some(cookie) = plan.cookie {
            Self::set_cookie(&config, cookie);
        }
        match plan.decision {
            Decision::Nothing => Action::Continue,
            Decision::Unchanged => {
                self.count(Counter::Unchanged);
                Action::Continue
            }
            Decision::Reject(err) => {
                let counter = match err {
                    StateError::TooLarge(_) => Counter::StateTooLarge,
                    StateError::NotVisibleAscii | StateError::Repeated => Counter::StateInvalid,
                };
                self.count(counter);
                log::warn!(
                    "session: backend state refused ({err:?}, max_state_bytes {}): not stored, answering 502",
                    config.max_state_bytes
                );
                Self::local_reply(502, b"session state refused\n");
                Action::Pause
            }
            Decision::Write(call) => self.write(&config, call, plan.wait),
        }
    }
}
