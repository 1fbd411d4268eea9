//! `cargo xtask cluster`: keel's main job on its embedded default configuration — two
//! session-holding backends (`keel-test-backend`, Tomcat-like `JSESSIONID=<id>.<route>` cookies)
//! on 127.0.0.1:8081 and :8082, keel on 127.0.0.1:8080 in front of them with the sticky and
//! route_suffix filters.
//!
//! It first takes a short tour that proves the cluster works: a new session sticks to its
//! member; the member is killed with SIGKILL and the next request of the session is served by
//! the other one, with a cookie that names it; the member comes back. Then it keeps serving
//! until Ctrl-C (`--tour` stops after the tour, for scripts).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::{cmd, wasm};

/// keel's listener in the embedded default configuration.
const KEEL: &str = "127.0.0.1:8080";
/// The default configuration's members: (route, port).
const MEMBERS: [(&str, u16); 2] = [("tomcat1", 8081), ("tomcat2", 8082)];

/// Child processes, killed when this goes out of scope (also on errors).
struct Processes(Vec<(String, Child)>);

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Processes {
    /// Kills the named process with SIGKILL and waits for it.
    fn kill(&mut self, name: &str) -> Result<()> {
        let index = self
            .0
            .iter()
            .position(|(n, _)| n == name)
            .with_context(|| format!("no process named {name}"))?;
        let (_, mut child) = self.0.remove(index);
        child
            .kill()
            .with_context(|| format!("could not kill {name}"))?;
        child
            .wait()
            .with_context(|| format!("could not reap {name}"))?;
        Ok(())
    }
}

/// Builds everything, starts the cluster, takes the tour, and serves until Ctrl-C.
pub fn run(args: &[String]) -> Result<()> {
    let tour_only = match args {
        [] => false,
        [flag] if flag == "--tour" => true,
        _ => bail!("usage: cargo xtask cluster [--tour]"),
    };
    wasm::build()?;
    cmd::run("cargo", &["build", "--package", "keel", "--bins"])?;
    let bin = cmd::target_dir().join("debug");
    let mut processes = Processes(Vec::new());
    for (route, port) in MEMBERS {
        processes
            .0
            .push((route.into(), start_backend(&bin, route, port)?));
    }
    eprintln!("xtask: starting keel on {KEEL} (embedded default configuration)");
    // The access log of every request would drown the tour; KEEL_LOG set by the user wins.
    let log = std::env::var("KEEL_LOG").unwrap_or_else(|_| "warn,keel::balancer=info".into());
    let keel = Command::new(bin.join("keel"))
        .arg("serve")
        .env("KEEL_LOG", log)
        .current_dir(cmd::root())
        .spawn()
        .context("could not start keel")?;
    processes.0.push(("keel".into(), keel));
    wait_for(KEEL)?;
    tour(&bin, &mut processes)?;
    if tour_only {
        return Ok(());
    }
    eprintln!(
        "\nxtask: the cluster is up; try\n  curl -si -c /tmp/jar -b /tmp/jar http://{KEEL}/app/\n\
         and kill one backend to watch the session move. Ctrl-C stops everything."
    );
    let (_, keel) = processes
        .0
        .iter_mut()
        .find(|(name, _)| name == "keel")
        .context("keel is not running")?;
    let status = keel.wait().context("could not wait for keel")?;
    bail!("keel exited ({status})")
}

/// Starts one backend on its fixed port and waits until it listens.
fn start_backend(bin: &std::path::Path, route: &str, port: u16) -> Result<Child> {
    let mut child = Command::new(bin.join("keel-test-backend"))
        .args([route, &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start backend {route}"))?;
    let stdout = child.stdout.take().context("backend has no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .with_context(|| format!("backend {route} did not start"))?;
    ensure!(
        line.trim() == format!("listening {port}"),
        "backend {route} said {line:?}, expected it to listen on {port} (is the port taken?)"
    );
    eprintln!("xtask: backend {route} on 127.0.0.1:{port}");
    Ok(child)
}

/// Waits until `address` accepts connections (keel checks its members first).
fn wait_for(address: &str) -> Result<()> {
    let address: SocketAddr = address.parse()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        ensure!(Instant::now() < deadline, "nothing listens on {address}");
        sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The tour: stickiness, SIGKILL of the sticky member, failover, return.
fn tour(bin: &std::path::Path, processes: &mut Processes) -> Result<()> {
    eprintln!("\ntour 1: a new session, then three requests that carry its cookie");
    let first = get("/app/", None)?;
    let cookie = first
        .set_cookie
        .clone()
        .context("the first response set no JSESSIONID cookie")?;
    let owner = first.served_by.clone();
    first.show();
    for _ in 0..3 {
        let next = get("/app/", Some(&cookie))?;
        next.show();
        ensure!(
            next.served_by == owner,
            "stickiness broken: {} served a session of {owner}",
            next.served_by
        );
    }
    eprintln!("\ntour 2: kill -9 {owner}; the session's next request fails over");
    processes.kill(&owner)?;
    let moved = get("/app/", Some(&cookie))?;
    moved.show();
    ensure!(moved.status == 200, "failover failed with {}", moved.status);
    ensure!(moved.served_by != owner, "{owner} is dead but served");
    let new_cookie = moved
        .set_cookie
        .clone()
        .context("after the failover the client got no cookie naming the new member")?;
    ensure!(
        new_cookie.ends_with(&format!(".{}", moved.served_by)),
        "the cookie {new_cookie} does not name {}",
        moved.served_by
    );
    eprintln!(
        "  (the backends keep sessions in memory, so {} starts a new one; with the session \
         store in memcached the state moves along)",
        moved.served_by
    );
    let again = get("/app/", Some(&new_cookie))?;
    again.show();
    ensure!(
        again.served_by == moved.served_by,
        "the moved session did not stick"
    );
    eprintln!("\ntour 3: {owner} comes back and takes new sessions again");
    let port = MEMBERS
        .iter()
        .find(|(route, _)| *route == owner)
        .map(|(_, port)| *port)
        .context("unknown member")?;
    processes
        .0
        .push((owner.clone(), start_backend(bin, &owner, port)?));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fresh = get("/app/", None)?;
        if fresh.served_by == owner {
            fresh.show();
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{owner} did not return to rotation"
        );
        sleep(Duration::from_millis(200));
    }
    eprintln!("\ntour: done — sticky, failing over, and recovering");
    Ok(())
}

/// What the tour needs of a response.
struct Reply {
    status: u16,
    served_by: String,
    /// `JSESSIONID=...` from a Set-Cookie, without attributes.
    set_cookie: Option<String>,
    body: String,
}

impl Reply {
    fn show(&self) {
        eprintln!(
            "  {} {}{}",
            self.status,
            self.body.trim(),
            self.set_cookie
                .as_deref()
                .map(|c| format!("  [Set-Cookie: {c}]"))
                .unwrap_or_default()
        );
    }
}

/// One GET through keel, on its own connection (HTTP/1.0: the body ends with the connection).
fn get(path: &str, cookie: Option<&str>) -> Result<Reply> {
    let mut stream = TcpStream::connect(KEEL).with_context(|| format!("connect {KEEL}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {KEEL}\r\n{cookie}\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).context("read the response")?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let mut reply = Reply {
        status,
        served_by: String::new(),
        set_cookie: None,
        body: body.to_string(),
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("x-served-by") {
            reply.served_by = value.to_string();
        } else if name.eq_ignore_ascii_case("set-cookie") && value.starts_with("JSESSIONID=") {
            reply.set_cookie = value.split(';').next().map(str::to_string);
        }
    }
    Ok(reply)
}
