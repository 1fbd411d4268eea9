"""A real gRPC server (grpcio) for keel's gRPC callout tests, raw bytes in and out (no protobuf):
* `probe.Auth/Check` answers `echo:<request>`, or PERMISSION_DENIED with "denied by the test
  server" when the call's `x-id` metadata is `deny`;
* `probe.Echo/Chat` (bidirectional streaming) sends initial metadata `x-initial: 1`, answers
  each request message with `echo:<message>` and, once the client has closed its side, ends
  with status OK and trailing metadata `x-trailer: done`; when the call's `x-id` is `deny` it
  ends after the first answer with PERMISSION_DENIED "denied mid-stream";
* `probe.Auth/Slow` waits up to 2 s for the client to cancel it, then prints `slow cancelled
  after <seconds> s` (or `slow not cancelled after ...`) and answers `slow:<request>`;
  `probe.Auth/Started` answers `started` once a `Slow` call has reached the server (at most
  2 s later), so a client can cancel `Slow` while it is known to be in flight;
* `grpcbin.GRPCBin/RandomError` (the method the proxy-wasm SDK's `grpc_auth_random` example
  calls, `cargo xtask sdk-examples`) answers OK, then PERMISSION_DENIED, in turn.
It listens on 127.0.0.1, on a free port it prints as `listening <port>`, and runs until
killed."""

import itertools
import threading
import time
from concurrent import futures

import grpc


def check(request, context):
    metadata = dict(context.invocation_metadata())
    if metadata.get("x-id") == "deny":
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "denied by the test server")
    return b"echo:" + request


def chat(requests, context):
    metadata = dict(context.invocation_metadata())
    context.send_initial_metadata((("x-initial", "1"),))
    for request in requests:
        yield b"echo:" + request
        if metadata.get("x-id") == "deny":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "denied mid-stream")
    context.set_trailing_metadata((("x-trailer", "done"),))


SLOW_STARTED = threading.Event()


def slow(request, context):
    started = time.monotonic()
    ended = threading.Event()
    context.add_callback(ended.set)
    SLOW_STARTED.set()
    ended.wait(2.0)
    seen = "cancelled" if not context.is_active() else "not cancelled"
    print(f"slow {seen} after {time.monotonic() - started:.3f} s", flush=True)
    return b"slow:" + request


def slow_started(_request, _context):
    SLOW_STARTED.wait(2.0)
    SLOW_STARTED.clear()
    return b"started"


RANDOM_ERROR_CALLS = itertools.count()


def random_error(_request, context):
    if next(RANDOM_ERROR_CALLS) % 2 == 1:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "the odd call")
    return b""


def main():
    handlers = (
        grpc.method_handlers_generic_handler(
            "probe.Auth",
            {
                "Check": grpc.unary_unary_rpc_method_handler(check),
                "Slow": grpc.unary_unary_rpc_method_handler(slow),
                "Started": grpc.unary_unary_rpc_method_handler(slow_started),
            },
        ),
        grpc.method_handlers_generic_handler(
            "probe.Echo", {"Chat": grpc.stream_stream_rpc_method_handler(chat)}
        ),
        grpc.method_handlers_generic_handler(
            "grpcbin.GRPCBin",
            {"RandomError": grpc.unary_unary_rpc_method_handler(random_error)},
        ),
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
