//! `cargo xtask cluster`: keel's main job on its embedded default configuration — two
//! backends (`keel-test-backend`) on 127.0.0.1:8081 and :8082, keel on 127.0.0.1:8080 in front
//! of them with the sticky, session and route_suffix filters. The backends keep nothing: the
//! page `/counter` keeps its counter in the session state that keel's store holds. The store
//! is keel's memory (the default), or — when Debian's `memcached` is installed — two memcached
//! nodes on 127.0.0.1:11311 and :11312 started here (the output says which).
//!
//! It first takes a short tour that proves the cluster works: a new session sticks to its
//! member; the member is killed with SIGKILL and the next request of the session is served by
//! the other one, with a cookie that names it and the counter going on; with memcached, the
//! node that holds the session is killed too and the counter still goes on; the member comes
//! back. Then it keeps serving until Ctrl-C (`--tour` stops after the tour, for scripts).

use std::io::{BufRead, BufReader};
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
/// The memcached nodes the tour starts when memcached is installed: (node id, port).
const NODES: [(&str, u16); 2] = [("n1", 11311), ("n2", 11312)];
/// The page whose counter lives in the session state.
const PAGE: &str = "/counter";

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
    let memcached = memcached_installed();
    let mut keel = Command::new(bin.join("keel"));
    keel.arg("serve");
    if memcached {
        for (node, port) in NODES {
            processes.0.push((node.into(), start_memcached(port)?));
        }
        let config = memcached_config(&bin)?;
        eprintln!(
            "xtask: session store: memcached nodes {} (the default configuration with \
             session_store type memcached: {})",
            node_list(),
            config.display()
        );
        keel.arg("--config").arg(config);
    } else {
        eprintln!(
            "xtask: session store: keel's memory (the embedded default; install Debian's \
             memcached to see the tour with two memcached nodes)"
        );
    }
    eprintln!("xtask: starting keel on {KEEL}");
    // The access log of every request would drown the tour; KEEL_LOG set by the user wins.
    let log = std::env::var("KEEL_LOG").unwrap_or_else(|_| "warn,keel::balancer=info".into());
    let keel = keel
        .env("KEEL_LOG", log)
        .current_dir(cmd::root())
        .spawn()
        .context("could not start keel")?;
    processes.0.push(("keel".into(), keel));
    wait_for(KEEL)?;
    tour(&bin, &mut processes, memcached)?;
    if tour_only {
        return Ok(());
    }
    eprintln!(
        "\nxtask: the cluster is up; try\n  curl -si -c /tmp/jar -b /tmp/jar http://{KEEL}{PAGE}\n\
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

/// Whether Debian's memcached is installed.
fn memcached_installed() -> bool {
    Command::new("memcached")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts one memcached node on 127.0.0.1:`port` and waits until it listens.
fn start_memcached(port: u16) -> Result<Child> {
    let child = Command::new("memcached")
        // `-u`: memcached refuses to run as root without a user to become (ignored otherwise).
        .args(["-l", "127.0.0.1", "-U", "0", "-m", "64", "-u", "nobody"])
        .args(["-p", &port.to_string()])
        .spawn()
        .with_context(|| format!("could not start memcached on {port}"))?;
    wait_for(&format!("127.0.0.1:{port}"))
        .with_context(|| format!("memcached on {port} (is the port taken?)"))?;
    eprintln!("xtask: memcached on 127.0.0.1:{port}");
    Ok(child)
}

/// `n1:127.0.0.1:11311,n2:127.0.0.1:11312`.
fn node_list() -> String {
    NODES
        .iter()
        .map(|(node, port)| format!("{node}:127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// keel's embedded default with the session store on the tour's memcached nodes, written to
/// `target/cluster/keel.yaml` (filter paths made absolute: a file's relative paths are taken
/// from its own folder).
fn memcached_config(bin: &std::path::Path) -> Result<std::path::PathBuf> {
    let default = cmd::output(&bin.join("keel").to_string_lossy(), &["default-config"])?;
    let memory = "session_store:\n  type: memory\n";
    ensure!(
        default.contains(memory),
        "keel's default configuration has no memory session store to replace"
    );
    let filters = cmd::target_dir().join("filters");
    let text = default
        .replace(
            memory,
            &format!(
                "session_store:\n  type: memcached\n  nodes: {}\n  retry_delay: 1s\n",
                node_list()
            ),
        )
        .replace(
            "wasm: target/filters/",
            &format!("wasm: {}/", filters.display()),
        );
    let dir = cmd::target_dir().join("cluster");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join("keel.yaml");
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
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

/// The counter a `/counter` page reports.
fn counter(reply: &Reply) -> Result<u64> {
    reply
        .body
        .split_whitespace()
        .find_map(|w| w.strip_prefix("counter="))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no counter in {:?}", reply.body))
}

/// The memcached node in a keel session id (`<id>-<node>.<route>`).
fn node_of(cookie: &str) -> Option<&str> {
    let id = cookie.strip_prefix("JSESSIONID=")?;
    let (_, rest) = id.split_once('-')?;
    Some(rest.split('.').next().unwrap_or(rest))
}

/// The tour: stickiness, SIGKILL of the sticky member (the counter goes on), with memcached
/// SIGKILL of the session's node (it goes on), the member's return.
fn tour(bin: &std::path::Path, processes: &mut Processes, memcached: bool) -> Result<()> {
    eprintln!("\ntour 1: a new session, then three requests that carry its cookie");
    let first = get(PAGE, None)?;
    let mut cookie = first
        .set_cookie
        .clone()
        .context("the first response set no JSESSIONID cookie")?;
    let owner = first.served_by.clone();
    first.show();
    let mut last = counter(&first)?;
    for _ in 0..3 {
        let next = get(PAGE, Some(&cookie))?;
        next.show();
        ensure!(
            next.served_by == owner,
            "stickiness broken: {} served a session of {owner}",
            next.served_by
        );
        ensure!(counter(&next)? == last + 1, "the counter did not go on");
        last += 1;
    }
    eprintln!("\ntour 2: kill -9 {owner}; the session's next request fails over, state and all");
    processes.kill(&owner)?;
    let moved = get(PAGE, Some(&cookie))?;
    moved.show();
    ensure!(moved.status == 200, "failover failed with {}", moved.status);
    ensure!(moved.served_by != owner, "{owner} is dead but served");
    ensure!(
        counter(&moved)? == last + 1,
        "the session's state was lost in the failover"
    );
    last += 1;
    cookie = moved
        .set_cookie
        .clone()
        .context("after the failover the client got no cookie naming the new member")?;
    ensure!(
        cookie.ends_with(&format!(".{}", moved.served_by)),
        "the cookie {cookie} does not name {}",
        moved.served_by
    );
    eprintln!(
        "  ({} had never seen this session: its state came from the store)",
        moved.served_by
    );
    if memcached {
        let node = node_of(&cookie)
            .context("the session id names no memcached node")?
            .to_string();
        eprintln!("\ntour 3: kill -9 memcached node {node}, which holds the session");
        processes.kill(&node)?;
        let relocated = get(PAGE, Some(&cookie))?;
        relocated.show();
        ensure!(
            counter(&relocated)? == last + 1,
            "the session's state was lost with its memcached node"
        );
        last += 1;
        let new_cookie = relocated
            .set_cookie
            .clone()
            .context("the session moved to another node but the client got no new cookie")?;
        ensure!(
            node_of(&new_cookie).is_some_and(|n| n != node),
            "the cookie {new_cookie} still names {node}"
        );
        eprintln!("  (read from the backup copy; the cookie now names the node that holds it)");
        cookie = new_cookie;
    }
    let again = get(PAGE, Some(&cookie))?;
    again.show();
    ensure!(
        again.served_by == moved.served_by && counter(&again)? == last + 1,
        "the moved session did not stick"
    );
    eprintln!(
        "\ntour {}: {owner} comes back and takes new sessions again",
        if memcached { 4 } else { 3 }
    );
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
        let fresh = get(PAGE, None)?;
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
    eprintln!("\ntour: done — sticky, failing over with the session's state, and recovering");
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
    let addr = KEEL.parse().context("keel's address")?;
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let answer = crate::http10::get(addr, KEEL, path, &cookie)?;
    Ok(Reply {
        status: answer.status,
        served_by: answer.header("x-served-by").unwrap_or_default().to_string(),
        set_cookie: answer
            .headers
            .iter()
            .filter(|(name, value)| name == "set-cookie" && value.starts_with("JSESSIONID="))
            .find_map(|(_, value)| value.split(';').next().map(str::to_string)),
        body: answer.body,
    })
}
