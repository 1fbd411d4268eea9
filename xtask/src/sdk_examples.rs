//! `cargo xtask sdk-examples PATH-TO-SDK-CHECKOUT`: the proxy-wasm Rust SDK's own examples, built
//! as they are from a checkout of github.com/proxy-wasm/proxy-wasm-rust-sdk, each run in
//! `keel serve` in front of nginx (the examples' `direct_response` bodies) and driven with real
//! HTTP requests; each answer is checked against what the example's README and `envoy.yaml` show
//! Envoy doing. CI has no checkout, so this runs by hand. `grpc_auth_random`'s gRPC callouts
//! go to a real gRPC server (`host/tests/support/grpc_server.py`, Python grpcio). An example
//! the checkout does not have is reported as absent.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::procs::free_port;
use crate::http10::{self, Answer};
use crate::{cmd, wasm};

/// The examples, in the order they run.
const EXAMPLES: &[&str] = &[
    "http_headers",
    "http_body",
    "http_config",
    "http_auth_random",
    "shared_queue",
    "grpc_auth_random",
];

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the task.
pub fn run(args: &[String]) -> Result<()> {
    let [sdk] = args else {
        bail!("usage: cargo xtask sdk-examples PATH-TO-SDK-CHECKOUT");
    };
    let sdk = PathBuf::from(sdk)
        .canonicalize()
        .with_context(|| format!("no SDK checkout at {sdk}"))?;
    wasm::ensure_target()?;
    let work = cmd::target_dir().join("sdk-examples");
    std::fs::create_dir_all(&work)
        .with_context(|| format!("could not create {}", work.display()))?;
    let keel = keel_binary()?;
    let nginx = Nginx::start(&work)?;
    let mut unexpected = Vec::new();
    for example in EXAMPLES {
        println!("== {example}");
        let dir = sdk.join("examples").join(example);
        if !dir.join("Cargo.toml").is_file() {
            println!("ABSENT: the checkout has no examples/{example} (nothing to run)");
            continue;
        }
        let outcome =
            build(&dir, &work).and_then(|module| check(example, &module, &keel, &nginx, &work));
        match outcome {
            Ok(()) => println!("PASS"),
            Err(error) => {
                println!("FAIL: {error:#}");
                print_filter_log(&work);
                unexpected.push(*example);
            }
        }
    }
    if !unexpected.is_empty() {
        bail!("not as Envoy: {}", unexpected.join(", "));
    }
    Ok(())
}

/// The `keel` binary of this target directory, built if missing.
fn keel_binary() -> Result<PathBuf> {
    let keel = cmd::target_dir().join("debug").join("keel");
    if !keel.is_file() {
        cmd::run("cargo", &["build", "-p", "keel", "--bin", "keel"])?;
    }
    Ok(keel)
}

/// Prints what keel logged about the filter (its last run), to show how it failed.
fn print_filter_log(work: &Path) {
    let log = std::fs::read_to_string(work.join("keel.log")).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("example")) {
        println!("  keel: {line}");
    }
}

/// Builds one example as it is (its own `Cargo.toml`, release profile, wasm32-wasip1); returns
/// its module.
fn build(dir: &Path, work: &Path) -> Result<PathBuf> {
    let target = work.join("target");
    let manifest = dir.join("Cargo.toml");
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            wasm::TARGET,
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .context("could not start cargo")?;
    if !status.success() {
        bail!("building {} failed ({status})", manifest.display());
    }
    let text = std::fs::read_to_string(&manifest)?;
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .context("no package name in the example's Cargo.toml")?
        .replace('-', "_");
    let module = target
        .join(wasm::TARGET)
        .join("release")
        .join(format!("{name}.wasm"));
    if !module.is_file() {
        bail!("the build wrote no {}", module.display());
    }
    Ok(module)
}

/// nginx as the backend (`/secret`, `/hello`, anything: the examples' `direct_response` bodies)
/// and as two callout upstreams for `http_auth_random` (`/bytes/1`: an even byte, `B`, grants;
/// an odd one, `A`, forbids).
struct Nginx {
    _proc: Proc,
    backend: u16,
    grant: u16,
    deny: u16,
}

impl Nginx {
    fn start(work: &Path) -> Result<Nginx> {
        let (backend, grant, deny) = (free_port()?, free_port()?, free_port()?);
        let dir = work.join("nginx");
        std::fs::create_dir_all(&dir)?;
        let conf = format!(
            "daemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nevents {{}}\nhttp {{\n  \
             access_log off;\n  default_type text/plain;\n  client_body_temp_path {dir};\n  \
             server {{\n    listen 127.0.0.1:{backend};\n    \
             location = /secret {{ return 200 \"This secret message should not be read by anyone.\\n\"; }}\n    \
             location / {{ return 200 \"Everyone may read this message.\\n\"; }}\n  }}\n  \
             server {{ listen 127.0.0.1:{grant}; location / {{ return 200 \"B\"; }} }}\n  \
             server {{ listen 127.0.0.1:{deny}; location / {{ return 200 \"A\"; }} }}\n}}\n",
            dir = dir.display()
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let child = Command::new("nginx")
            .args(["-e", "stderr", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .spawn()
            .context("could not start nginx (Debian: apt-get install nginx)")?;
        let proc = Proc(child);
        for port in [backend, grant, deny] {
            wait_for(port)?;
        }
        Ok(Nginx {
            _proc: proc,
            backend,
            grant,
            deny,
        })
    }
}

/// The gRPC server of keel's tests (Python grpcio) on a free port: the process and the port.
fn grpc_server() -> Result<(Proc, u16)> {
    let script = cmd::root().join("host/tests/support/grpc_server.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdout(Stdio::piped())
        .spawn()
        .context("could not start python3 (the gRPC server needs it and grpcio)")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let proc = Proc(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    let port = line
        .strip_prefix("listening ")
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("the gRPC server did not start (pip install grpcio): {line:?}"))?;
    Ok((proc, port))
}

/// Waits up to ten seconds for a listener on `port`.
fn wait_for(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on 127.0.0.1:{port} after 10 s")
}

/// Starts keel with `module` as its one filter (plugin configuration `config`, YAML) in front
/// of the nginx backend, with `httpbin` as the callout upstream on `callout`.
fn keel(
    keel: &Path,
    module: &Path,
    config: &str,
    nginx: &Nginx,
    callout: u16,
    work: &Path,
) -> Result<(Proc, u16)> {
    let port = free_port()?;
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:{port}\nfilters:\n  - name: example\n    wasm: {wasm}\n{config}\
         balancer:\n  members:\n    - route: nginx\n      url: http://127.0.0.1:{backend}\n  \
         health:\n    enabled: false\ncallout_upstreams:\n  httpbin: http://127.0.0.1:{callout}\n  \
         grpcbin: http://127.0.0.1:{callout}\n",
        wasm = module.display(),
        backend = nginx.backend,
    );
    let path = work.join("keel.yaml");
    std::fs::write(&path, yaml)?;
    let log = std::fs::File::create(work.join("keel.log"))?;
    let child = Command::new(keel)
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("could not start {}", keel.display()))?;
    let proc = Proc(child);
    wait_for(port).context("keel did not start")?;
    Ok((proc, port))
}

/// `GET path` to keel with extra header lines, printed as it came back.
fn get(port: u16, path: &str, headers: &str) -> Result<Answer> {
    let reply = http10::get(([127, 0, 0, 1], port).into(), "localhost", path, headers)?;
    println!(
        "  GET {path} -> {} {:?} [{}]",
        reply.status,
        reply.body,
        reply
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(reply)
}

/// Fails with `what` unless `ok`.
fn expect(ok: bool, what: &str) -> Result<()> {
    if ok { Ok(()) } else { bail!("{what}") }
}

/// Runs one example and checks what Envoy would answer (its README and `envoy.yaml`).
fn check(example: &str, module: &Path, bin: &Path, nginx: &Nginx, work: &Path) -> Result<()> {
    match example {
        "http_headers" => {
            let (_keel, port) = keel(bin, module, "", nginx, nginx.grant, work)?;
            let hello = get(port, "/hello", "")?;
            expect(hello.status == 200, "/hello: 200, answered by the filter")?;
            expect(
                hello.body == "Hello, World!\n",
                "/hello: body \"Hello, World!\\n\"",
            )?;
            expect(
                hello.header("hello") == Some("World"),
                "/hello: hello: World",
            )?;
            expect(
                hello.header("powered-by") == Some("proxy-wasm"),
                "/hello: powered-by: proxy-wasm",
            )?;
            expect(
                hello.header("content-type") == Some("text/plain"),
                "/hello: content-type: text/plain",
            )?;
            let other = get(port, "/other", "")?;
            expect(
                other.status == 200 && other.body == "Everyone may read this message.\n",
                "/other: the backend's answer",
            )
        }
        "http_body" => {
            let (_keel, port) = keel(bin, module, "", nginx, nginx.grant, work)?;
            let secret = get(port, "/secret", "")?;
            expect(secret.status == 200, "/secret: 200")?;
            expect(
                secret.body == "Original message body (50 bytes) redacted.\n",
                "/secret: \"Original message body (50 bytes) redacted.\\n\" (the README)",
            )?;
            let hello = get(port, "/hello", "")?;
            expect(
                hello.body == "Everyone may read this message.\n",
                "/hello: the body unchanged",
            )
        }
        "http_config" => {
            // envoy.yaml: `configuration` a google.protobuf.StringValue, handed to the filter as
            // its raw string.
            let value = "The secret to life is meaningless unless you discover it yourself";
            let config = format!("    config: \"{value}\"\n");
            let (_keel, port) = keel(bin, module, &config, nginx, nginx.grant, work)?;
            let hello = get(port, "/hello", "")?;
            expect(hello.status == 200, "/hello: 200")?;
            expect(
                hello.header("custom-header") == Some(value),
                &format!(
                    "/hello: custom-header: {value} (the README), got {:?}",
                    hello.header("custom-header")
                ),
            )
        }
        "http_auth_random" => {
            let (granting, port) = keel(bin, module, "", nginx, nginx.grant, work)?;
            let granted = get(port, "/headers", "")?;
            expect(
                granted.status == 200,
                "granted (even byte): 200 from the backend",
            )?;
            expect(
                granted.body == "Everyone may read this message.\n",
                "granted: the backend's body",
            )?;
            expect(
                granted.header("powered-by") == Some("proxy-wasm"),
                "granted: powered-by: proxy-wasm",
            )?;
            drop(granting);
            let (_denying, port) = keel(bin, module, "", nginx, nginx.deny, work)?;
            let denied = get(port, "/headers", "")?;
            expect(denied.status == 403, "forbidden (odd byte): 403")?;
            expect(
                denied.body == "Access forbidden.\n",
                "forbidden: \"Access forbidden.\\n\" (the README)",
            )?;
            expect(
                denied.header("powered-by") == Some("proxy-wasm"),
                "forbidden: powered-by: proxy-wasm",
            )
        }
        "grpc_auth_random" => {
            // grpcbin: the real gRPC server of keel's tests, whose `grpcbin.GRPCBin/RandomError`
            // answers OK, then PERMISSION_DENIED (7), in turn (the example grants on an even
            // status and answers ABORTED on an odd one).
            let (_grpc, grpcbin) = grpc_server()?;
            let (_keel, port) = keel(bin, module, "", nginx, grpcbin, work)?;
            let plain = get(port, "/hello", "")?;
            expect(
                plain.status == 503 && plain.body == "Service accessible only to gRPC clients.\n",
                "a non-gRPC request: 503 \"Service accessible only to gRPC clients.\\n\"",
            )?;
            let grpc = "content-type: application/grpc\r\n";
            let granted = get(port, "/hello.HelloService/SayHello", grpc)?;
            expect(
                granted.status == 200
                    && granted.body == "Everyone may read this message.\n"
                    && granted.header("powered-by") == Some("proxy-wasm"),
                "RandomError OK: the request goes on to the backend (powered-by: proxy-wasm)",
            )?;
            let aborted = get(port, "/hello.HelloService/SayHello", grpc)?;
            expect(
                aborted.status == 200
                    && aborted.header("grpc-status") == Some("10")
                    && aborted.header("grpc-message") == Some("Aborted by Proxy-Wasm!")
                    && aborted.body.is_empty(),
                "RandomError 7: a gRPC ABORTED reply (200, grpc-status 10, grpc-message)",
            )
        }
        other => bail!("no checks for {other}"),
    }
}
