"""A real gRPC server (grpcio) for keel's gRPC callout tests: service `probe.Auth`, unary method
`Check`, raw bytes in and out (no protobuf). It answers `echo:<request>`, or PERMISSION_DENIED
with "denied by the test server" when the call's `x-id` metadata is `deny`. It listens on
127.0.0.1, on a free port it prints as `listening <port>`, and runs until killed."""

from concurrent import futures

import grpc


def check(request, context):
    metadata = dict(context.invocation_metadata())
    if metadata.get("x-id") == "deny":
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "denied by the test server")
    return b"echo:" + request


def main():
    handler = grpc.method_handlers_generic_handler(
        "probe.Auth", {"Check": grpc.unary_unary_rpc_method_handler(check)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
