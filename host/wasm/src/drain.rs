//! Instances let go whose root asked to be waited for: its `on_done` answered "not yet". As
//! cpp-host keeps such a VM until the root calls `proxy_done` (`src/wasm.cc`
//! `WasmBase::startShutdown`, `WasmBase::done`), keel keeps the instance on a thread of its own,
//! sends the callouts and gRPC streams the root starts and delivers their answers and events to
//! it, until `proxy_done`, until no callout or open stream is left that could lead to it, or until [`DONE_TIMEOUT`]; then `on_delete`.

use std::time::Duration;

use crate::grpc_stream::StreamEvent;
use crate::instance::Instance;
use crate::ticker::{CalloutResult, Started};

/// How long a root that is not done is waited for (keel's bound; Envoy bounds it by its own
/// shutdown).
pub(crate) const DONE_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits for filter `name`'s root in the background (see the module docs).
pub(crate) fn drain(name: String, instance: Instance) {
    let spawned = std::thread::Builder::new()
        .name("keel-wasm-drain".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(wait(&name, instance)),
                Err(error) => log::error!(
                    target: "keel_wasm",
                    "filter {name}: no runtime to wait for the root's proxy_done ({error}); \
                     its callouts are not sent"
                ),
            }
        });
    if let Err(error) = spawned {
        log::error!(
            target: "keel_wasm",
            "no thread to wait for a root's proxy_done ({error}); its callouts are not sent"
        );
    }
}

async fn wait(name: &str, mut instance: Instance) {
    let deadline = tokio::time::Instant::now() + DONE_TIMEOUT;
    let (sender, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let mut in_flight = 0usize;
    while instance.done_pending() {
        for callout in instance.take_callouts() {
            let sender = sender.clone();
            let token = callout.token;
            in_flight += 1;
            match crate::ticker::start(callout) {
                Started::Once { answer, .. } => tokio::spawn(async move {
                    let _ = sender.send((token, answer.await));
                }),
                // A gRPC stream is in flight until its close.
                Started::Stream(mut reader) => tokio::spawn(async move {
                    while let Some(event) = reader.next().await {
                        if sender
                            .send((token, CalloutResult::GrpcStream(event)))
                            .is_err()
                        {
                            return;
                        }
                    }
                }),
            };
        }
        if in_flight == 0 {
            log::warn!(
                target: "keel_wasm",
                "filter {name}: the root's on_done asked to be waited for, but no callout of it \
                 is in flight; not waited for"
            );
            break;
        }
        let Ok(Some((token, result))) = tokio::time::timeout_at(deadline, answers.recv()).await
        else {
            log::warn!(
                target: "keel_wasm",
                "filter {name}: the root did not call proxy_done within {DONE_TIMEOUT:?} of on_done"
            );
            break;
        };
        if !matches!(&result, CalloutResult::GrpcStream(event) if !matches!(event, StreamEvent::Close(..)))
        {
            in_flight -= 1;
        }
        if let Err(failure) = instance.on_callout(token, result) {
            log::warn!(target: "keel_wasm", "filter {name}: the root failed after on_done: {failure}");
            return;
        }
    }
    if let Err(failure) = instance.root_delete() {
        log::warn!(target: "keel_wasm", "filter {name}: root on_delete failed: {failure}");
    }
}
