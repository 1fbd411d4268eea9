//! The probe's mode `grpc_flood <upstream>`: a gRPC stream to `probe.Echo/Chat` (with the
//! request's `x-id`) on which it sends 40 messages of 256 KiB at once, more than an upstream
//! that reads nothing lets keel queue; what the sends answer goes into `x-grpc-sends` (`<n>
//! <status>` per run of equal answers), and the stream's callbacks into `x-grpc-stream` as in
//! mode `grpc_stream`, whose close resumes the request.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::HttpContext;
use proxy_wasm::types::Action;

use super::Probe;

/// How many messages, and how large.
const MESSAGES: usize = 40;
const MESSAGE_BYTES: usize = 256 * 1024;

impl Probe {
    /// `grpc_flood` (see the module docs).
    pub(super) fn grpc_flood(&mut self) -> Action {
        let Some(token) = self.open_chat() else {
            return Action::Pause;
        };
        let message = vec![b'f'; MESSAGE_BYTES];
        let mut runs: Vec<(usize, String)> = Vec::new();
        for _ in 0..MESSAGES {
            let answer = format!(
                "{:?}",
                hostcalls::send_grpc_stream_message(token, Some(&message), false)
            );
            match runs.last_mut() {
                Some((count, last)) if *last == answer => *count += 1,
                _ => runs.push((1, answer)),
            }
        }
        let runs: Vec<String> = runs
            .iter()
            .map(|(count, answer)| format!("{count} {answer}"))
            .collect();
        self.add_http_request_header("x-grpc-sends", &runs.join(", "));
        Action::Pause
    }
}
