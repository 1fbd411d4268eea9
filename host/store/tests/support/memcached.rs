//! Real memcached processes for the tests: each test starts its own (Debian's
//! `/usr/bin/memcached`, on a free loopback port, `-vv` so that its stderr shows every
//! command it read — or quiet, for measurements), kills them with SIGKILL, and may restart one
//! on the same port. keel's own tests (`host/tests/sessions.rs`) include this file too.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BINARY: &str = "/usr/bin/memcached";

/// Makes every log file name unique.
static STARTS: AtomicUsize = AtomicUsize::new(0);

/// A memcached process owned by the test.
pub struct Memcached {
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
    verbose: bool,
}

impl Memcached {
    /// Starts memcached on a free loopback port.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        Self::start_on(port)
    }

    /// Starts memcached on a free loopback port without `-vv` (for measurements: the verbose
    /// log costs a write per command).
    pub fn start_quiet() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        Self::spawn(port, false)
    }

    /// Starts memcached on `port` (to bring a killed node back where it was).
    pub fn start_on(port: u16) -> Self {
        Self::spawn(port, true)
    }

    /// SIGKILL, then a new empty memcached on the same port (as verbose as before).
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
        *self = Self::spawn(self.port, self.verbose);
    }

    fn spawn(port: u16, verbose: bool) -> Self {
        assert!(
            Path::new(BINARY).exists(),
            "{BINARY} is missing: these tests need Debian's memcached (1.6.18); install it with \
             `apt-get install -y memcached` (the system service stays off: each test starts its \
             own processes)"
        );
        let log = std::env::temp_dir().join(format!(
            "keel-store-memcached-{}-{port}-{}.log",
            std::process::id(),
            STARTS.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = std::fs::File::create(&log).expect("log file");
        // `-u root` only matters when the tests run as root (memcached refuses to run as
        // root without -u); otherwise memcached ignores it. `-U 0`: no UDP.
        let child = Command::new(BINARY)
            .args(["-u", "root", "-l", "127.0.0.1", "-U", "0", "-m", "16", "-p"])
            .arg(port.to_string())
            .args(verbose.then_some("-vv"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start memcached");
        let m = Memcached {
            port,
            child: Some(child),
            log,
            verbose,
        };
        m.wait_ready();
        m
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `n1:127.0.0.1:<port>`.
    pub fn entry(&self, id: &str) -> String {
        format!("{id}:{}", self.addr())
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr()).is_err() {
            assert!(
                Instant::now() < deadline,
                "memcached did not listen on {} within 10 s; its log: {}",
                self.addr(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL memcached");
            c.wait().expect("reap memcached");
        }
    }

    /// SIGSTOP: the process keeps its port and connections but answers nothing.
    pub fn freeze(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .expect("kill -STOP")
            .success();
        assert!(ok, "kill -STOP {pid}");
        // The signal is delivered asynchronously: wait until the kernel shows every thread
        // stopped.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_threads_stopped(pid) {
            assert!(Instant::now() < deadline, "memcached {pid} did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// What memcached wrote to stderr (with `-vv`: every command line it read).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One counter of `stats`.
    pub fn stat(&self, name: &str) -> u64 {
        let text = self.raw(b"stats\r\n", b"END\r\n");
        text.lines()
            .find_map(|l| {
                l.strip_prefix("STAT ")
                    .and_then(|l| l.strip_prefix(name))
                    .and_then(|v| v.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no stat {name} in {text}"))
    }

    /// The counters that any command about an item moves.
    pub fn item_commands(&self) -> [u64; 5] {
        [
            self.stat("cmd_get"),
            self.stat("cmd_set"),
            self.stat("cmd_touch"),
            self.stat("delete_hits") + self.stat("delete_misses"),
            self.stat("get_misses") + self.stat("get_hits"),
        ]
    }

    /// Sends `command` on a fresh connection and reads until `end`.
    pub fn raw(&self, command: &[u8], end: &[u8]) -> String {
        let mut s = TcpStream::connect(self.addr()).expect("connect to memcached");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        s.write_all(command).expect("write");
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while !out.ends_with(end) {
            let n = s.read(&mut buf).expect("read");
            assert!(n > 0, "memcached closed: {}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Whether the item `key` is there (asked directly, not through the store).
    pub fn has(&self, key: &str) -> bool {
        let r = self.raw(format!("mg {key}\r\n").as_bytes(), b"\r\n");
        r.starts_with("HD")
    }

    /// The TTL left of `key` (`mg <key> t`).
    pub fn ttl_left(&self, key: &str) -> Option<i64> {
        let r = self.raw(format!("mg {key} t\r\n").as_bytes(), b"\r\n");
        r.trim().strip_prefix("HD t").and_then(|t| t.parse().ok())
    }
}

/// Whether every thread of `pid` is in state `T` (stopped).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        stat.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            == Some("T")
    })
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
