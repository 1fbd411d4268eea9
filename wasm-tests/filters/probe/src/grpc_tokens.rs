//! The probe's modes about the tokens of gRPC calls and streams, which call the gRPC imports
//! themselves (the SDK panics on `BadArgument`):
//! * `grpc_tokens <upstream>` makes two http calls, two gRPC calls and two gRPC streams; their
//!   tokens go into `x-tokens` (`h h c c s s`), and what `proxy_grpc_send`, `proxy_grpc_close`
//!   and `proxy_grpc_cancel` answer for a token of each kind, and for tokens of each kind that
//!   no callout has, into `x-token-answers`; the calls and streams are cancelled and the
//!   request goes on.
//! * `grpc_late_cancel <upstream> [close]`: a call to `probe.Auth/Slow` and one to
//!   `probe.Auth/Started`, which the server answers once `Slow` has reached it; that answer
//!   cancels the slow call (or closes it, with `close`), puts the status into
//!   `x-grpc-late-cancel` and resumes the request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::Probe;

mod raw {
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        pub fn proxy_grpc_send(token: u32, ptr: *const u8, len: usize, end: u32) -> u32;
        pub fn proxy_grpc_close(token: u32) -> u32;
        pub fn proxy_grpc_cancel(token: u32) -> u32;
    }
}

thread_local! {
    /// `grpc_late_cancel`: the token of each `Started` call, with the `Slow` call it releases.
    static SLOW: RefCell<HashMap<u32, u32>> = RefCell::new(HashMap::new());
}

/// A status as its name (the ABI's numbers).
fn name(status: u32) -> String {
    match status {
        0 => "Ok".to_owned(),
        1 => "NotFound".to_owned(),
        2 => "BadArgument".to_owned(),
        other => format!("status {other}"),
    }
}

fn send(token: u32) -> String {
    let message = b"x";
    // SAFETY: a pointer to a local the host reads during the call.
    name(unsafe { raw::proxy_grpc_send(token, message.as_ptr(), message.len(), 0) })
}

fn close(token: u32) -> String {
    // SAFETY: no pointers.
    name(unsafe { raw::proxy_grpc_close(token) })
}

fn cancel(token: u32) -> String {
    // SAFETY: no pointers.
    name(unsafe { raw::proxy_grpc_cancel(token) })
}

impl Probe {
    /// `grpc_tokens` (see the module docs).
    pub(super) fn grpc_tokens(&mut self) -> Action {
        let upstream = self.args.first().cloned().unwrap_or_default();
        let http = || {
            let headers = vec![
                (":method", "GET"),
                (":path", "/lookup?id=tokens"),
                (":authority", "store"),
            ];
            self.dispatch_http_call(&upstream, headers, None, vec![], Duration::from_secs(5))
                .unwrap_or(0)
        };
        let call = || {
            self.dispatch_grpc_call(
                &upstream,
                "probe.Auth",
                "Check",
                vec![("x-id", b"tokens")],
                Some(b"ping"),
                Duration::from_secs(5),
            )
            .unwrap_or(0)
        };
        let stream = || {
            self.open_grpc_stream(&upstream, "probe.Echo", "Chat", vec![("x-id", b"tokens")])
                .unwrap_or(0)
        };
        let (h1, h2) = (http(), http());
        let (c1, c2) = (call(), call());
        let (s1, s2) = (stream(), stream());
        let tokens = format!("{h1} {h2} {c1} {c2} {s1} {s2}");
        self.add_http_request_header("x-tokens", &tokens);
        // The next token of each gRPC kind, which no callout has yet; 7 is of no kind.
        let (no_call, no_stream) = (c2 + 4, s2 + 4);
        let answers = [
            ("send(http)", send(h1)),
            ("close(http)", close(h1)),
            ("cancel(http)", cancel(h1)),
            ("send(call)", send(c1)),
            ("send(7)", send(7)),
            ("close(7)", close(7)),
            ("cancel(7)", cancel(7)),
            ("send(no-call)", send(no_call)),
            ("close(no-call)", close(no_call)),
            ("cancel(no-call)", cancel(no_call)),
            ("send(no-stream)", send(no_stream)),
            ("close(no-stream)", close(no_stream)),
            ("cancel(no-stream)", cancel(no_stream)),
            ("send(stream)", send(s1)),
            ("close(call)", close(c1)),
            ("cancel(closed-call)", cancel(c1)),
            ("cancel(stream)", cancel(s1)),
            ("send(cancelled-stream)", send(s1)),
            ("cancel(call)", cancel(c2)),
            ("close(stream)", close(s2)),
            ("cancel(closed-stream)", cancel(s2)),
        ];
        let answers: Vec<String> = answers
            .iter()
            .map(|(what, status)| format!("{what}={status}"))
            .collect();
        self.add_http_request_header("x-token-answers", &answers.join(" "));
        Action::Continue
    }

    /// `grpc_late_cancel`: sends the two calls and pauses.
    pub(super) fn grpc_late_cancel(&mut self) -> Action {
        let upstream = self.args.first().cloned().unwrap_or_default();
        let call = |method: &str| {
            self.dispatch_grpc_call(
                &upstream,
                "probe.Auth",
                method,
                vec![],
                Some(b"late"),
                Duration::from_secs(5),
            )
        };
        match (call("Slow"), call("Started")) {
            (Ok(slow), Ok(started)) => {
                SLOW.with(|slows| slows.borrow_mut().insert(started, slow));
                Action::Pause
            }
            failed => {
                let body = format!("grpc dispatch failed: {failed:?}\n");
                self.send_http_response(502, vec![], Some(body.as_bytes()));
                Action::Pause
            }
        }
    }

    /// `grpc_late_cancel`: a call's answer; `Started`'s cancels (or closes) `Slow`.
    pub(super) fn grpc_late_answer(&mut self, token: u32) {
        let Some(slow) = SLOW.with(|slows| slows.borrow_mut().remove(&token)) else {
            self.add_http_request_header("x-grpc-slow-answered", &token.to_string());
            return;
        };
        let status = if self.args.get(1).map(String::as_str) == Some("close") {
            close(slow)
        } else {
            cancel(slow)
        };
        self.add_http_request_header("x-grpc-late-cancel", &status);
        self.resume_http_request();
    }
}
