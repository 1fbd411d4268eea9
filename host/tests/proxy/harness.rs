//! Test harness: backends, a keel process, an HTTP client, polling with a deadline.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Polls `f` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn read_line_with_prefix(rx: &mpsc::Receiver<String>, prefix: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return line,
            Ok(_) => continue,
            Err(_) => panic!("no line starting with {prefix:?} within {timeout:?}"),
        }
    }
}

fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A real gRPC server (`host/tests/support/grpc_server.py`, Python grpcio; its docstring lists
/// its methods): `probe.Auth/Check` answers `echo:<request>`, or PERMISSION_DENIED for
/// metadata `x-id: deny`. Killed on drop.
pub struct GrpcServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    /// What it prints after the port.
    lines: mpsc::Receiver<String>,
}

impl GrpcServer {
    /// Starts it; fails the test when Python or grpcio is missing (CI installs them).
    pub fn start() -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/grpc_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3 (the gRPC test server)");
        let rx = lines(&mut child);
        let line = read_line_with_prefix(&rx, "listening ", Duration::from_secs(20));
        let port = line["listening ".len()..].trim().parse().expect("port");
        Self {
            port,
            child,
            lines: rx,
        }
    }

    /// The next line it prints that starts with `prefix`, within `timeout` (else the test
    /// fails).
    pub fn line(&self, prefix: &str, timeout: Duration) -> String {
        read_line_with_prefix(&self.lines, prefix, timeout)
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A backend process.
pub struct Backend {
    /// Its route.
    pub route: String,
    /// Its port.
    pub port: u16,
    child: Option<Child>,
}

impl Backend {
    /// Starts a backend on `port` (0: any).
    pub fn start_on(route: &str, port: u16) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel-test-backend"))
            .args([route, &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start backend");
        let rx = lines(&mut child);
        let line = read_line_with_prefix(&rx, "listening ", Duration::from_secs(10));
        let port = line["listening ".len()..].trim().parse().expect("port");
        Self {
            route: route.into(),
            port,
            child: Some(child),
        }
    }

    /// Starts a backend on any port.
    pub fn start(route: &str) -> Self {
        Self::start_on(route, 0)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let child = Command::new(env!("CARGO_BIN_EXE_keel-test-backend"))
                .args([self.route.as_str(), &self.port.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start backend");
            let mut child = child;
            let rx = lines(&mut child);
            if let Ok(line) = rx.recv_timeout(Duration::from_secs(5))
                && line.starts_with("listening ")
            {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "backend could not rebind {}",
                self.port
            );
        }
    }

    /// Whether the process exited (e.g. after `/die`).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    /// Waits (at most 5 s) until the process exited, e.g. after `/die`.
    pub async fn wait_exited(&mut self) {
        let what = format!("{} to exit", self.route);
        eventually(&what, Duration::from_secs(5), || {
            let exited = self.has_exited();
            async move { exited.then_some(()) }
        })
        .await;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

static DIRS: AtomicU32 = AtomicU32::new(0);

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new empty directory.
    pub fn new() -> Self {
        let n = DIRS.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("keel-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Self(p)
    }

    /// Writes a file, returning its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The admin token the tests use.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// The keel binary with `args`, its log at info, stdout piped (the harness reads its
/// "listening" lines), stderr shown only with `KEEL_TEST_LOG=1` (when a test needs explaining).
fn keel_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command
        .args(args)
        .env("KEEL_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("KEEL_TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    command
}

/// A running `keel serve`.
pub struct Keel {
    /// The proxy listener.
    pub addr: SocketAddr,
    /// The admin listener, if configured.
    pub admin: Option<SocketAddr>,
    /// Scratch dir with `keel.yaml` (and the token file).
    pub dir: Scratch,
    child: Child,
    rx: mpsc::Receiver<String>,
}

impl Keel {
    /// Starts keel with this configuration (the text may use `{token_file}`).
    pub fn start(config: &str) -> Self {
        let dir = Scratch::new();
        let token = dir.write("token", TOKEN);
        let config = config.replace("{token_file}", &token.display().to_string());
        let path = dir.write("keel.yaml", &config);
        let mut child = keel_command(&["serve", "--config"])
            .arg(&path)
            .spawn()
            .expect("start keel");
        let rx = lines(&mut child);
        let line = read_line_with_prefix(&rx, "keel: listening on ", Duration::from_secs(10));
        let addr = line
            .rsplit("://")
            .next()
            .and_then(|a| a.parse().ok())
            .expect("listener address");
        let admin = config.contains("token_file").then(|| {
            let l = read_line_with_prefix(&rx, "keel: admin on http://", Duration::from_secs(10));
            l["keel: admin on http://".len()..]
                .parse()
                .expect("admin addr")
        });
        Self {
            addr,
            admin,
            dir,
            child,
            rx,
        }
    }

    /// `http://addr<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a signal (`HUP`, `TERM`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for a stdout line with this prefix.
    pub fn wait_line(&self, prefix: &str) -> String {
        read_line_with_prefix(&self.rx, prefix, Duration::from_secs(10))
    }

    /// Rewrites the configuration file.
    pub fn rewrite(&self, config: &str) {
        let token = self.dir.0.join("token");
        let config = config.replace("{token_file}", &token.display().to_string());
        self.dir.write("keel.yaml", &config);
    }

    /// kill -9, and wait until it is gone.
    #[allow(dead_code)] // used by tests/sessions.rs
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `GET /metrics` on the admin listener (the configuration needs an `admin:` section).
    #[allow(dead_code)] // used by tests/sessions.rs
    pub async fn metrics(&self, http: &Http) -> String {
        let admin = self.admin.expect("an admin section in the configuration");
        let bearer = format!("Bearer {TOKEN}");
        let r = http
            .get(
                &format!("http://{admin}/metrics"),
                &[("authorization", bearer.as_str())],
            )
            .await;
        assert_eq!(r.status, 200, "GET /metrics: {r:?}");
        r.body
    }

    /// The value of the unlabelled metric `name` in `/metrics` (0 when it is not there yet).
    #[allow(dead_code)] // used by tests/sessions.rs
    pub async fn metric(&self, http: &Http, name: &str) -> f64 {
        metric_value(&self.metrics(http).await, name)
    }

    /// Waits for the process to exit; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "keel did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Keel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as text.
    pub body: String,
}

impl Reply {
    /// The `x-served-by` header.
    pub fn served_by(&self) -> &str {
        self.header("x-served-by")
    }

    /// A header's text ("" when absent or not text).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// An HTTP/1.1 client.
#[derive(Clone)]
pub struct Http(Client<HttpConnector, Full<Bytes>>);

impl Http {
    /// A pooled client.
    pub fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).build(HttpConnector::new()))
    }

    /// Sends a request.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Reply, String> {
        let mut b = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let res = tokio::time::timeout(Duration::from_secs(10), self.0.request(req))
            .await
            .map_err(|_| "client timeout".to_string())?
            .map_err(|e| e.to_string())?;
        reply(res).await
    }

    /// GET.
    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, url, headers, "").await.expect("GET")
    }
}

/// Reads a whole response.
async fn reply(res: http::Response<hyper::body::Incoming>) -> Result<Reply, String> {
    let status = res.status();
    let headers = res.headers().clone();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A request body of one chunk whose size is not announced: HTTP/1.1 sends it chunked,
/// HTTP/2 without content-length.
pub struct UnsizedBody(Option<Bytes>);

impl http_body::Body for UnsizedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

/// POSTs `body` without announcing its length, over HTTP/1.1 (chunked) or, with `h2`, over
/// HTTP/2 cleartext (prior knowledge).
pub async fn post_unsized(
    url: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
    h2: bool,
) -> Reply {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build::<_, UnsizedBody>(HttpConnector::new());
    let mut b = Request::builder().method(Method::POST).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(UnsizedBody(Some(Bytes::from_static(body))))
        .expect("request");
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("client timeout")
        .expect("request sent");
    reply(res).await.expect("response")
}

/// The folder with the built filters (`KEEL_FILTERS_DIR`, else `target/filters`); a missing
/// build is a failure that says how to fix it.
pub fn filters_dir() -> PathBuf {
    let dir = match std::env::var_os("KEEL_FILTERS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/filters"),
    };
    for module in ["sticky.wasm", "route_suffix.wasm"] {
        assert!(
            dir.join(module).is_file(),
            "{} is missing: run `cargo xtask build-wasm` (or `cargo xtask test`)",
            dir.join(module).display()
        );
    }
    dir
}

/// The value of the unlabelled metric `name` in Prometheus text (0 when it is not there).
#[allow(dead_code)] // used by tests/sessions.rs
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// The `filters:` section of keel's default chain with the session filter: sticky, session
/// (with `session_config`, a YAML flow mapping such as `{idle_timeout_seconds: 2}`; empty: its
/// defaults) and route_suffix, all with `inject_routes: true`.
#[allow(dead_code)] // used by tests/sessions.rs
pub fn session_filters_section(session_config: &str) -> String {
    let dir = filters_dir();
    let session = dir.join("session.wasm");
    assert!(
        session.is_file(),
        "{} is missing: run `cargo xtask build-wasm` (or `cargo xtask test`)",
        session.display()
    );
    let config = if session_config.is_empty() {
        String::new()
    } else {
        format!("    config: {session_config}\n")
    };
    format!(
        "filters:\n  - name: sticky\n    wasm: {}\n    inject_routes: true\n  \
         - name: session\n    wasm: {}\n    inject_routes: true\n{config}  \
         - name: route_suffix\n    wasm: {}\n    inject_routes: true\n",
        dir.join("sticky.wasm").display(),
        session.display(),
        dir.join("route_suffix.wasm").display()
    )
}

/// A running `keel bridge` (the session store's HTTP API for stock Envoy).
#[allow(dead_code)] // used by tests/sessions.rs
pub struct Bridge {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
}

#[allow(dead_code)] // used by tests/sessions.rs
impl Bridge {
    /// `keel bridge --listen 127.0.0.1:0 <args>` (e.g. `--nodes n1:127.0.0.1:P,...`).
    pub fn start(args: &[&str]) -> Self {
        let mut child = keel_command(&["bridge", "--listen", "127.0.0.1:0"])
            .args(args)
            .spawn()
            .expect("start keel bridge");
        let rx = lines(&mut child);
        let prefix = "keel bridge: listening on http://";
        let line = read_line_with_prefix(&rx, prefix, Duration::from_secs(10));
        let addr = line[prefix.len()..].trim().parse().expect("bridge address");
        Self { addr, child }
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `filters:` section of keel's default chain, sticky and route_suffix.
pub fn filters_section() -> String {
    let dir = filters_dir();
    format!(
        "filters:\n  - name: sticky\n    wasm: {}\n    inject_routes: true\n  \
         - name: route_suffix\n    wasm: {}\n    inject_routes: true\n",
        dir.join("sticky.wasm").display(),
        dir.join("route_suffix.wasm").display()
    )
}

/// A configuration with a listener on port 0, these members (`route url [status]`), fast
/// health checks and retries, and `extra` appended under `balancer:` (indented 2).
pub fn config(members: &[(&str, String, &str)], balancer_extra: &str, top_extra: &str) -> String {
    let mut s = String::from("listeners:\n  - address: 127.0.0.1:0\nbalancer:\n  members:\n");
    for (route, url, status) in members {
        s.push_str(&format!(
            "    - route: {route}\n      url: {url}\n      status: {status}\n"
        ));
    }
    s.push_str(
        "  health:\n    interval: 50ms\n    timeout: 1s\n    passes: 1\n    fails: 2\n    path: /health\n",
    );
    s.push_str("  timeouts:\n    connect: 1s\n    response_header: 2s\n    total: 5s\n");
    s.push_str(balancer_extra);
    s.push_str(top_extra);
    s
}

/// Backends `a` and `b`, both active, behind a keel with `balancer_extra` under `balancer:`.
pub fn two_members(balancer_extra: &str) -> (Backend, Backend, Keel) {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active"), ("b", b.url(), "active")],
        balancer_extra,
        "",
    ));
    (a, b, keel)
}

/// Polls until a GET of `/` bound to `route` is served by `member`.
pub async fn eventually_served_by(
    http: &Http,
    keel: &Keel,
    route: &str,
    member: &str,
    what: &str,
    timeout: Duration,
) {
    eventually(what, timeout, || async {
        (http
            .get(&keel.url("/"), &[("x-keel-route", route)])
            .await
            .served_by()
            == member)
            .then_some(())
    })
    .await;
}

/// Reads from a raw client connection (or its read half) until `until` says enough came or the
/// stream closed or failed (at most 10 s).
pub async fn read_some(
    tcp: &mut (impl tokio::io::AsyncRead + Unpin),
    until: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !until(&got) {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s");
    got
}

/// Two answers with status 200 came.
pub fn two_oks(b: &[u8]) -> bool {
    String::from_utf8_lossy(b).matches("HTTP/1.1 200").count() >= 2
}

/// A whole head came.
pub fn head_end(b: &[u8]) -> bool {
    b.windows(4).any(|w| w == b"\r\n\r\n")
}

/// A whole answer with a Content-Length body came.
pub fn whole_answer(b: &[u8]) -> bool {
    let text = String::from_utf8_lossy(b).to_ascii_lowercase();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse::<usize>().ok());
    length.is_some_and(|n| body.len() >= n)
}
