// A proxy-wasm test filter written in AssemblyScript against @solo-io/proxy-runtime 0.1.8 (the
// version the npm registry serves; proxy-wasm ABI 0.2.0), as third-party AssemblyScript filters
// are. It reproduces the patterns of the proxy-wasm Rust SDK's examples, so that
// wasm-tests/tests/assemblyscript.rs can check keel answers them as Envoy does:
//
// * http_headers / http_config: adds `x-as-config: <plugin configuration>` to the request,
//   replaces `x-as-replace`, removes `x-as-remove`; `GET /hello` is answered locally with
//   200 "Hello, World!\n" and `hello: World`, `powered-by: proxy-wasm`; every response (a local
//   one too) gets `x-as-status: <:status>` in the response headers callback.
// * http_body: removes the response's content-length, buffers the response body to its end and
//   replaces a body containing "secret" with "Original message body (N bytes) redacted.\n".
// * http_auth_random: a request with `x-as-auth: <id>` pauses for a callout to the `store`
//   upstream (`GET /auth?id=<id>`); a 200 resumes it with `x-as-auth-status: 200`, anything
//   else answers 403 "Access forbidden.\n".
// * a shared queue: the root context registers `as_queue`; a request with `x-as-enqueue: <v>`
//   enqueues v on the queue of its vm (`plugin_vm_id`); `onQueueReady` dequeues it; every request gets `x-as-dequeued: <values so far>`.
//
// Where SDK 0.1.8 has a bug, this filter works around it with the SDK's own lower-level calls
// (each place says which).

export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext,
  Context,
  registerRootContext,
  FilterHeadersStatusValues,
  FilterDataStatusValues,
  GrpcStatusValues,
  HeaderPair,
  LogLevelValues,
  WasmResultValues,
  log,
  send_local_response,
  continue_request,
  stream_context,
} from "@solo-io/proxy-runtime";
import {
  BufferTypeValues,
  Reference,
  get_buffer_bytes,
  get_property,
  register_shared_queue,
  resolve_shared_queue,
  enqueue_shared_queue,
} from "@solo-io/proxy-runtime/runtime";
import { proxy_dequeue_shared_queue } from "@solo-io/proxy-runtime/imports";
import { free } from "@solo-io/proxy-runtime/malloc";

// SDK 0.1.8 imports `proxy_set_buffer_status`, which no ABI version has (the SDK removed it in
// 0.1.9); the ABI 0.2.x name is `proxy_set_buffer_bytes`.
// @ts-ignore: decorator
@external("env", "proxy_set_buffer_bytes")
declare function proxy_set_buffer_bytes(typ: u32, start: u32, length: u32, data: usize, size: usize): u32;

/// The root id this filter answers to (keel's FilterSpec.root_id, Envoy's `root_id`).
const ROOT_ID = "assemblyscript_root";
const QUEUE = "as_queue";

/// What `onQueueReady` dequeued so far, comma-separated.
let dequeued = "";

function header(name: string, value: string): HeaderPair {
  return new HeaderPair(String.UTF8.encode(name), String.UTF8.encode(value));
}

class AsRoot extends RootContext {
  config: string = "";

  createContext(context_id: u32): Context {
    return new AsFilter(context_id, this);
  }

  // SDK 0.1.8's onConfigure passes the configuration size as the pointer the host writes the
  // size to (fixed upstream after 0.1.8); read the configuration with its get_buffer_bytes.
  onConfigure(configuration_size: u32): bool {
    this.config = String.UTF8.decode(
      get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size),
    );
    // SDK 0.1.8's register_shared_queue takes the token's address as a u32.
    const token = new Reference<u32>();
    const result = register_shared_queue(QUEUE, token.ptr() as u32);
    if (result != WasmResultValues.Ok) {
      log(LogLevelValues.error, "could not register " + QUEUE + ": " + result.toString());
      return false;
    }
    return true;
  }

  // SDK 0.1.8's dequeue_shared_queue does not compile with the AssemblyScript it names (a field
  // without an initializer); make the call it wraps.
  onQueueReady(token: u32): void {
    const data = new Reference<usize>();
    const size = new Reference<usize>();
    const result = proxy_dequeue_shared_queue(token, data.ptr(), size.ptr());
    if (result != WasmResultValues.Ok) {
      log(LogLevelValues.error, "dequeue failed: " + result.toString());
      return;
    }
    // The host allocated the item with the SDK's `malloc` (an ArrayBuffer, retained once): take
    // it as that ArrayBuffer and drop the allocation's own reference, as the SDK does.
    const buffer = changetype<ArrayBuffer>(data.data);
    free(data.data);
    const value = String.UTF8.decode(buffer.slice(0, size.data as i32));
    // An `if`, not a conditional expression: AssemblyScript 0.14 releases the string a
    // conditional assigned to a global still holds.
    if (dequeued.length > 0) {
      dequeued += ",";
    }
    dequeued += value;
  }
}

class AsFilter extends Context {
  constructor(context_id: u32, root_context: AsRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(_headers: u32, _end_of_stream: bool): FilterHeadersStatusValues {
    const request = stream_context.headers.request;
    request.add("x-as-config", (this.root_context as AsRoot).config);
    if (request.get("x-as-replace").length > 0) {
      request.replace("x-as-replace", "replaced");
    }
    request.remove("x-as-remove");
    request.add("x-as-dequeued", dequeued);

    const item = request.get("x-as-enqueue");
    if (item.length > 0) {
      const token = new Reference<u32>();
      // The queue of this plugin's own vm (Envoy's `vm_config.vm_id`, property `plugin_vm_id`).
      const vm_id = String.UTF8.decode(get_property("plugin_vm_id"));
      let result = resolve_shared_queue(vm_id, QUEUE, token.ptr() as u32);
      if (result == WasmResultValues.Ok) {
        result = enqueue_shared_queue(token.data, String.UTF8.encode(item));
      }
      request.add("x-as-enqueued", result.toString());
    }

    if (request.get(":path") == "/hello") {
      send_local_response(
        200,
        "hello",
        String.UTF8.encode("Hello, World!\n"),
        [header("hello", "World"), header("powered-by", "proxy-wasm")],
        GrpcStatusValues.InvalidCode,
      );
      return FilterHeadersStatusValues.StopIteration;
    }

    const id = request.get("x-as-auth");
    if (id.length > 0) {
      const result = this.root_context.httpCall(
        "store",
        [header(":method", "GET"), header(":path", "/auth?id=" + id), header(":authority", "store")],
        new ArrayBuffer(0),
        [],
        1000,
        this,
        (_origin: Context, headers: u32, _body_size: usize, _trailers: u32): void => {
          const status = headers == 0 ? "" : stream_context.headers.http_callback.get(":status");
          if (status == "200") {
            stream_context.headers.request.add("x-as-auth-status", status);
            continue_request();
          } else {
            send_local_response(
              403,
              "forbidden",
              String.UTF8.encode("Access forbidden.\n"),
              [header("powered-by", "proxy-wasm")],
              GrpcStatusValues.InvalidCode,
            );
          }
        },
      );
      if (result != WasmResultValues.Ok) {
        send_local_response(
          500,
          "callout failed",
          String.UTF8.encode("callout failed: " + result.toString() + "\n"),
          [],
          GrpcStatusValues.InvalidCode,
        );
      }
      return FilterHeadersStatusValues.StopIteration;
    }
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(_headers: u32, _end_of_stream: bool): FilterHeadersStatusValues {
    const response = stream_context.headers.response;
    response.add("x-as-status", response.get(":status"));
    response.remove("content-length");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) {
      return FilterDataStatusValues.StopIterationAndBuffer;
    }
    // As the Rust example: after StopIterationAndBuffer, the size given is the whole body's.
    const size = body_buffer_length;
    const body = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.HttpResponseBody, 0, size as u32));
    if (body.includes("secret")) {
      const redacted = String.UTF8.encode(
        "Original message body (" + (size as u32).toString() + " bytes) redacted.\n",
      );
      proxy_set_buffer_bytes(
        BufferTypeValues.HttpResponseBody,
        0,
        size as u32,
        changetype<usize>(redacted),
        redacted.byteLength,
      );
    }
    return FilterDataStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => new AsRoot(context_id), ROOT_ID);
