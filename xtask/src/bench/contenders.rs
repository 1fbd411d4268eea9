//! The backends and the contenders, each configured by a file generated into the run's
//! temporary directory, bound to loopback ports, and stopped when dropped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::procs::{Proc, free_port, probe};
use crate::wasm;

/// The session id every client sends (Tomcat's form: 32 hex digits), with `.<route>` after it.
pub const SESSION: &str = "5F1D2A7C9B3E4F60A1B2C3D4E5F60718";
/// The small response (bytes) and the large one.
pub const SMALL_BYTES: usize = 128;
pub const BIG_BYTES: usize = 64 * 1024;

const APACHE2: &str = "/usr/sbin/apache2";
const APACHE_MODULES: &str = "/usr/lib/apache2/modules";

/// The run's directory, programs and static files.
pub struct Env {
    pub dir: PathBuf,
    pub www: PathBuf,
    pub keel: PathBuf,
    pub ajp_server: PathBuf,
    /// The floor under keel (`host/examples/hyper_floor.rs`).
    pub hyper_floor: PathBuf,
    pub filters: PathBuf,
    pub root: bool,
}

impl Env {
    /// A fresh temporary directory with the files the backends serve.
    pub fn new(binaries: &Path) -> Result<Env> {
        let dir = std::env::temp_dir().join(format!("keel-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let www = dir.join("www");
        std::fs::create_dir_all(&www).with_context(|| format!("create {}", www.display()))?;
        let line = b"keel bench: a small static response from the backend.\n";
        let small: Vec<u8> = line.iter().copied().cycle().take(SMALL_BYTES).collect();
        std::fs::write(www.join("small.txt"), small)?;
        let big: Vec<u8> = (0..BIG_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(www.join("64k.bin"), big)?;
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let root = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0");
        Ok(Env {
            keel: binaries.join("keel"),
            ajp_server: binaries.join("examples").join("ajp_bench_server"),
            hyper_floor: binaries.join("examples").join("hyper_floor"),
            filters: wasm::out_dir(),
            dir,
            www,
            root,
        })
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One backend member: its own process, so that it can be killed alone.
pub struct Member {
    pub route: String,
    pub port: u16,
    pub ajp: bool,
    /// The AJP connector's secret (Tomcat's), if it has one.
    pub secret: Option<String>,
    /// A path the member answers 200 on (health checks).
    pub health: &'static str,
    /// `None` for a member started elsewhere ([`super::tomcat`]).
    pub proc: Option<Proc>,
}

impl Member {
    /// A single-process nginx (or, with `ajp`, keel's AJP bench server) serving the files.
    pub fn start(env: &Env, route: &str, port: u16, ajp: bool) -> Result<Member> {
        let mut proc = if ajp {
            let mut command = Command::new(&env.ajp_server);
            command.arg(route).arg(port.to_string()).arg(&env.www);
            Proc::spawn(route, &env.dir, &mut command)?
        } else {
            let prefix = env.dir.join(format!("nginx-{route}"));
            std::fs::create_dir_all(&prefix)?;
            let conf = env.write(
                &format!("nginx-{route}.conf"),
                &format!(
                    "master_process off;\ndaemon off;\nworker_processes 1;\n\
                     pid {p}/nginx.pid;\nerror_log stderr warn;\n\
                     events {{ worker_connections 8192; }}\n\
                     http {{\n  access_log off;\n  default_type application/octet-stream;\n\
                     \x20 keepalive_requests 100000000;\n  keepalive_timeout 300s;\n\
                     \x20 client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
                     \x20 fastcgi_temp_path {p}/fcgi;\n  uwsgi_temp_path {p}/uwsgi;\n\
                     \x20 scgi_temp_path {p}/scgi;\n\
                     \x20 server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    root {www};\n\
                     \x20   add_header X-Served-By {route};\n\
                     \x20   location = /post {{ client_max_body_size 4m; client_body_buffer_size 2m; \
                     return 200 \"posted\\n\"; }}\n  }}\n}}\n",
                    p = prefix.display(),
                    www = env.www.display(),
                ),
            )?;
            let mut command = Command::new("nginx");
            command.arg("-p").arg(&prefix).arg("-c").arg(conf);
            Proc::spawn(route, &env.dir, &mut command)?
        };
        proc.wait_port(port, Duration::from_secs(20))?;
        Ok(Member {
            route: route.into(),
            port,
            ajp,
            secret: None,
            health: "/small.txt",
            proc: Some(proc),
        })
    }
}

/// The members every contender is put in front of (the same processes for all).
pub struct Backends {
    pub members: Vec<Member>,
}

impl Backends {
    pub fn start(env: &Env, count: usize, ajp: bool) -> Result<Backends> {
        let prefix = if ajp { "a" } else { "m" };
        let mut members = Vec::new();
        for i in 1..=count {
            members.push(Member::start(
                env,
                &format!("{prefix}{i}"),
                free_port()?,
                ajp,
            )?);
        }
        Ok(Backends { members })
    }

    /// Kills member `index` with SIGKILL (a failover test).
    pub fn kill(&mut self, index: usize) {
        if let Some(proc) = self.members[index].proc.as_mut() {
            proc.kill_now();
        }
    }

    /// Starts member `index` again on its port.
    pub fn restart(&mut self, env: &Env, index: usize) -> Result<()> {
        let old = &self.members[index];
        let (route, port, ajp) = (old.route.clone(), old.port, old.ajp);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Member::start(env, &route, port, ajp) {
                Ok(member) => {
                    self.members[index] = member;
                    return Ok(());
                }
                // The port may still be held for a moment.
                Err(error) if Instant::now() < deadline => {
                    eprintln!("bench: restarting {route}: {error:#}; again");
                    sleep(Duration::from_millis(500));
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Two memcached nodes for keel's session store.
pub struct Memcached {
    pub ports: Vec<u16>,
    _procs: Vec<Proc>,
}

impl Memcached {
    pub fn start(env: &Env) -> Result<Memcached> {
        let mut ports = Vec::new();
        let mut procs = Vec::new();
        for i in 1..=2 {
            let port = free_port()?;
            let mut command = Command::new("memcached");
            command.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]);
            command.args(["-t", "1", "-m", "64", "-c", "4096"]);
            if env.root {
                command.args(["-u", "root"]);
            }
            let mut proc = Proc::spawn(&format!("memcached{i}"), &env.dir, &mut command)?;
            proc.wait_port(port, Duration::from_secs(10))?;
            ports.push(port);
            procs.push(proc);
        }
        Ok(Memcached {
            ports,
            _procs: procs,
        })
    }
}

/// keel's filter chains.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Filters {
    None,
    Sticky,
    All,
}

/// How many workers keel runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Workers {
    /// keel's default: one per core.
    PerCore,
    /// One: on a machine whose cores the load generator and the backends share too, one
    /// worker can beat one per core (fewer threads contending for the same cores).
    One,
}

/// What kind of proxy a contender is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Direct,
    Keel(Filters, Workers),
    /// hyper and tokio with keel's threading model and none of keel's work, to the first
    /// member only: what keel's libraries cost (it does not fail over).
    HyperFloor,
    Haproxy,
    Nginx,
    Httpd,
}

/// A running contender: where to send the load, with which cookie.
pub struct Contender {
    pub name: String,
    pub kind: Kind,
    pub port: u16,
    /// `JSESSIONID=...` naming the first member (each proxy's own encoding).
    pub cookie: String,
    /// The proxy's processes (none for direct).
    pub proc: Option<Proc>,
}

impl Contender {
    /// Starts `kind` in front of `members` and waits until it answers with the first member
    /// for the session cookie.
    pub fn start(
        env: &Env,
        name: &str,
        kind: Kind,
        members: &[Member],
        memcached: Option<&Memcached>,
    ) -> Result<Contender> {
        let first = members.first().context("no members")?;
        let mut contender = Self::launch(env, name, kind, members, memcached)?;
        if kind == Kind::Nginx {
            contender.cookie = contender.find_cookie(&first.route)?;
        }
        contender.wait_sticky(&first.route, Duration::from_secs(30))?;
        Ok(contender)
    }

    /// Starts `kind` in front of `members` and waits until it listens.
    pub fn launch(
        env: &Env,
        name: &str,
        kind: Kind,
        members: &[Member],
        memcached: Option<&Memcached>,
    ) -> Result<Contender> {
        let first = members.first().context("no members")?;
        let tomcat_cookie = format!("JSESSIONID={SESSION}.{}", first.route);
        let (port, cookie, proc) = match kind {
            Kind::Direct => (first.port, tomcat_cookie, None),
            Kind::Keel(filters, workers) => {
                let port = free_port()?;
                let conf = env.write(
                    &format!("{name}.yaml"),
                    &keel_config(env, name, port, filters, workers, members, memcached)?,
                )?;
                let mut command = Command::new(&env.keel);
                command
                    .args(["serve", "--config"])
                    .arg(conf)
                    .env("KEEL_LOG", "warn");
                let proc = Proc::spawn(name, &env.dir, &mut command)?;
                (port, tomcat_cookie, Some(proc))
            }
            Kind::HyperFloor => {
                let port = free_port()?;
                let mut command = Command::new(&env.hyper_floor);
                command
                    .arg(format!("127.0.0.1:{port}"))
                    .arg(format!("127.0.0.1:{}", first.port));
                let proc = Proc::spawn(name, &env.dir, &mut command)?;
                (port, tomcat_cookie, Some(proc))
            }
            Kind::Haproxy => {
                let port = free_port()?;
                let conf = env.write(&format!("{name}.cfg"), &haproxy_config(port, members))?;
                let mut command = Command::new("haproxy");
                command.arg("-db").arg("-f").arg(conf);
                let proc = Proc::spawn(name, &env.dir, &mut command)?;
                // HAProxy's prefix mode: `<server cookie>~<the application's value>`.
                let cookie = format!("JSESSIONID={}~{SESSION}.{}", first.route, first.route);
                (port, cookie, Some(proc))
            }
            Kind::Nginx => {
                let port = free_port()?;
                let prefix = env.dir.join(name);
                std::fs::create_dir_all(&prefix)?;
                let conf = env.write(
                    &format!("{name}.conf"),
                    &nginx_config(&prefix, port, members),
                )?;
                let mut command = Command::new("nginx");
                command.arg("-p").arg(&prefix).arg("-c").arg(conf);
                let proc = Proc::spawn(name, &env.dir, &mut command)?;
                (port, String::new(), Some(proc))
            }
            Kind::Httpd => {
                ensure!(
                    Path::new(APACHE2).is_file(),
                    "Apache httpd is missing: apt-get install apache2 (see .ci/run)"
                );
                let port = free_port()?;
                let dir = env.dir.join(name);
                std::fs::create_dir_all(&dir)?;
                let conf = env.write(
                    &format!("{name}.conf"),
                    &httpd_config(env, &dir, port, members),
                )?;
                let mut command = Command::new(APACHE2);
                command.arg("-f").arg(conf).arg("-DFOREGROUND");
                let proc = Proc::spawn(name, &env.dir, &mut command)?;
                (port, tomcat_cookie, Some(proc))
            }
        };
        let mut contender = Contender {
            name: name.into(),
            kind,
            port,
            cookie,
            proc,
        };
        if let Some(proc) = contender.proc.as_mut() {
            proc.wait_port(port, Duration::from_secs(60))?;
        }
        Ok(contender)
    }

    /// nginx hashes the whole cookie: the first `<id>.<route>` that lands on `route`.
    fn find_cookie(&mut self, route: &str) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in 0.. {
            let cookie = format!("JSESSIONID={}{n:02}.{route}", &SESSION[..30]);
            if let Ok(reply) = probe(self.port, "/small.txt", &cookie, Duration::from_secs(2))
                && reply.status == 200
                && reply.served_by == route
            {
                return Ok(cookie);
            }
            if Instant::now() > deadline || n > 500 {
                break;
            }
        }
        bail!("{}: no session cookie is routed to {route}", self.name)
    }

    /// Waits until the session cookie's requests are answered 200 by `route` (startup, and the
    /// member's return after a failover test).
    pub fn wait_sticky(&mut self, route: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(proc) = self.proc.as_mut() {
                proc.check_alive()?;
            }
            let last = match probe(
                self.port,
                "/small.txt",
                &self.cookie,
                Duration::from_secs(2),
            ) {
                Ok(reply) if reply.status == 200 && reply.served_by == route => return Ok(()),
                Ok(reply) => format!("status {} from {:?}", reply.status, reply.served_by),
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() > deadline {
                let log = self.proc.as_ref().map(Proc::log_tail).unwrap_or_default();
                bail!(
                    "{}: the session cookie is not served by {route} after {limit:?} \
                     (last: {last}); its log:\n{log}",
                    self.name
                );
            }
            sleep(Duration::from_millis(100));
        }
    }
}

fn keel_config(
    env: &Env,
    name: &str,
    port: u16,
    filters: Filters,
    workers: Workers,
    members: &[Member],
    memcached: Option<&Memcached>,
) -> Result<String> {
    let mut text = format!(
        "listeners:\n  - address: 127.0.0.1:{port}\naccess_log:\n  enabled: false\n\
         limits:\n  max_body_bytes: 4194304\n"
    );
    if workers == Workers::One {
        text.push_str("workers: 1\n");
    }
    let chain: &[&str] = match filters {
        Filters::None => &[],
        Filters::Sticky => &["sticky", "route_suffix"],
        Filters::All => &["sticky", "session", "route_suffix"],
    };
    if chain.is_empty() {
        text.push_str("filters: []\n");
    } else {
        text.push_str("filters:\n");
    }
    for name in chain {
        let wasm = env.filters.join(format!("{name}.wasm"));
        ensure!(
            wasm.is_file(),
            "{} is missing (cargo xtask build-wasm)",
            wasm.display()
        );
        writeln!(
            text,
            "  - name: {name}\n    wasm: {}\n    inject_routes: true",
            wasm.display()
        )?;
    }
    if filters == Filters::All {
        let memcached = memcached.context("the session filter needs memcached")?;
        let nodes: Vec<String> = memcached
            .ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("n{}:127.0.0.1:{port}", i + 1))
            .collect();
        writeln!(
            text,
            "session_store:\n  type: memcached\n  nodes: {}",
            nodes.join(",")
        )?;
    }
    text.push_str(
        "balancer:\n  lbmethod: byrequests\n  sticky:\n    header: x-keel-route\n  members:\n",
    );
    for member in members {
        let scheme = if member.ajp { "ajp" } else { "http" };
        writeln!(
            text,
            "    - route: {}\n      url: {scheme}://127.0.0.1:{}",
            member.route, member.port
        )?;
    }
    let first = members.first().context("no members")?;
    writeln!(
        text,
        "  health:\n    interval: 1s\n    timeout: 500ms\n    path: {}\n\
         \x20 retry:\n    interval: 2s\n    failonstatus: [503]\n\
         \x20 pool:\n    max_idle: 1024",
        first.health
    )?;
    if let Some(secret) = &first.secret {
        let file = env.write(&format!("{name}.secret"), secret)?;
        writeln!(text, "  ajp:\n    secret_file: {}", file.display())?;
    } else if first.ajp {
        text.push_str("  ajp:\n    secret_required: false\n");
    }
    Ok(text)
}

fn haproxy_config(port: u16, members: &[Member]) -> String {
    let mut text = format!(
        "global\n  maxconn 9000\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n\
         \x20 option http-keep-alive\n  option redispatch\n  retries 2\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
         backend be\n  balance roundrobin\n  cookie JSESSIONID prefix\n"
    );
    for m in members {
        let _ = writeln!(
            text,
            "  server {r} 127.0.0.1:{p} cookie {r} check inter 1s fall 1 rise 1",
            r = m.route,
            p = m.port
        );
    }
    text
}

fn nginx_config(prefix: &Path, port: u16, members: &[Member]) -> String {
    let p = prefix.display();
    let mut servers = String::new();
    for m in members {
        let _ = writeln!(
            servers,
            "    server 127.0.0.1:{} max_fails=1 fail_timeout=2s;",
            m.port
        );
    }
    format!(
        "daemon off;\nworker_processes auto;\npid {p}/nginx.pid;\nerror_log stderr warn;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
         \x20 fastcgi_temp_path {p}/fcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
         \x20 keepalive_requests 100000000;\n\
         \x20 upstream be {{\n    hash $cookie_jsessionid consistent;\n{servers}    keepalive 256;\n  }}\n\
         \x20 server {{\n    listen 127.0.0.1:{port} backlog=4096;\n\
         \x20   client_max_body_size 4m;\n    client_body_buffer_size 2m;\n\
         \x20   location / {{\n      proxy_pass http://be;\n      proxy_http_version 1.1;\n\
         \x20     proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n"
    )
}

fn httpd_config(env: &Env, dir: &Path, port: u16, members: &[Member]) -> String {
    let d = dir.display();
    let mut text = format!(
        "ServerRoot {d}\nDefaultRuntimeDir {d}\nPidFile {d}/httpd.pid\nErrorLog {d}/error.log\n\
         LogLevel warn\nListen 127.0.0.1:{port}\nServerName 127.0.0.1\n"
    );
    if env.root {
        text.push_str("User www-data\nGroup www-data\n");
    }
    for (name, file) in [
        ("mpm_event_module", "mod_mpm_event.so"),
        ("authz_core_module", "mod_authz_core.so"),
        ("slotmem_shm_module", "mod_slotmem_shm.so"),
        ("proxy_module", "mod_proxy.so"),
        ("proxy_http_module", "mod_proxy_http.so"),
        ("proxy_ajp_module", "mod_proxy_ajp.so"),
        ("proxy_balancer_module", "mod_proxy_balancer.so"),
        ("lbmethod_byrequests_module", "mod_lbmethod_byrequests.so"),
    ] {
        let _ = writeln!(text, "LoadModule {name} {APACHE_MODULES}/{file}");
    }
    // Threads enough for 256 connections, all started up front, none retired during a run.
    text.push_str(
        "StartServers 4\nServerLimit 8\nThreadLimit 64\nThreadsPerChild 64\n\
         MaxRequestWorkers 512\nMinSpareThreads 64\nMaxSpareThreads 512\n\
         MaxConnectionsPerChild 0\nKeepAlive On\nMaxKeepAliveRequests 0\nKeepAliveTimeout 60\n\
         LimitRequestBody 0\n<Proxy balancer://be>\n",
    );
    for m in members {
        let scheme = if m.ajp { "ajp" } else { "http" };
        let secret = m
            .secret
            .as_ref()
            .map(|s| format!(" secret={s}"))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "  BalancerMember {scheme}://127.0.0.1:{} route={} retry=2{secret}",
            m.port, m.route
        );
    }
    text.push_str(
        "  ProxySet stickysession=JSESSIONID|jsessionid lbmethod=byrequests\n</Proxy>\n\
         ProxyPass / balancer://be/\n",
    );
    text
}
