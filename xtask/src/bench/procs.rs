//! The processes of a benchmark: started in a process group of their own (so that a master
//! and its workers are stopped together and counted together), waited for, measured through
//! `/proc`, and stopped when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A free loopback port (bound, read, released: the small race is acceptable here).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// One started program (and, through its process group, whatever it forks).
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `command` in a process group of its own, its output going to `<dir>/<name>.log`.
    pub fn spawn(name: &str, dir: &Path, command: &mut Command) -> Result<Proc> {
        let log = dir.join(format!("{name}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("{name}: could not start {:?}", command.get_program()))?;
        Ok(Proc {
            name: name.into(),
            child: Some(child),
            log,
        })
    }

    /// The process id (also the id of its process group).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The end of its log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Fails, with the log, when the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "{} exited ({status}); its log:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Waits until `port` accepts connections; fails loudly (with the log) when the process
    /// dies or the port stays closed.
    pub fn wait_port(&mut self, port: u16, limit: Duration) -> Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + limit;
        loop {
            self.check_alive()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} does not listen on {addr} after {limit:?}; its log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to the process alone (a failover test's member).
    pub fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `limit` for the process to exit on its own (keel shuts down
    /// gracefully, and an instrumented build writes its profile as it exits); fails, with the
    /// log, when it does not.
    pub fn terminate(&mut self, limit: Duration) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + limit;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child = Some(child);
                bail!(
                    "{} did not exit within {limit:?} of SIGTERM; its log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Every process of its group: the program and what it forked.
    pub fn group(&self) -> Vec<u32> {
        let pgid = self.pid();
        let mut pids = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return pids;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(stat) = Stat::read(pid)
                && stat.pgrp == pgid
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// CPU seconds used so far by the group (user + system, with reaped children's).
    pub fn cpu_seconds(&self) -> f64 {
        let ticks: u64 = self
            .group()
            .into_iter()
            .filter_map(Stat::read)
            .map(|s| s.ticks)
            .sum();
        ticks as f64 / CLOCK_TICKS
    }

    /// Peak resident memory of the group since the last [`Proc::reset_peak`], in KiB (the sum
    /// of every process's VmHWM: shared pages count once per process).
    pub fn peak_rss_kib(&self) -> u64 {
        self.group()
            .into_iter()
            .filter_map(|pid| status_kib(pid, "VmHWM:"))
            .sum()
    }

    /// Resident memory of the group now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.group()
            .into_iter()
            .filter_map(|pid| status_kib(pid, "VmRSS:"))
            .sum()
    }

    /// Resets the peak (VmHWM) of every process of the group to its current RSS.
    pub fn reset_peak(&self) {
        for pid in self.group() {
            let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The whole group: nginx's and httpd's workers go with their master.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `sysconf(_SC_CLK_TCK)` on Linux.
const CLOCK_TICKS: f64 = 100.0;

/// CPU seconds used so far by `pid` and its descendants alive now (user + system, with each
/// one's reaped children's): a process this module did not start (Tomcat under its guard).
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let mut ticks = 0;
    let mut pending = vec![pid];
    while let Some(pid) = pending.pop() {
        ticks += Stat::read(pid).map_or(0, |s| s.ticks);
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            pending.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    ticks as f64 / CLOCK_TICKS
}

/// What the benchmark reads of `/proc/<pid>/stat`.
struct Stat {
    pgrp: u32,
    /// utime + stime + cutime + cstime.
    ticks: u64,
}

impl Stat {
    fn read(pid: u32) -> Option<Stat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: the fields start after the last ')'.
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is field 3 (state) of proc(5).
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            pgrp: field(5)? as u32,
            ticks: field(14)? + field(15)? + field(16)? + field(17)?,
        })
    }
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// What a probe request got back.
pub struct Probe {
    pub status: u16,
    /// The backend that served (`X-Served-By`).
    pub served_by: String,
    /// The `JSESSIONID` a `Set-Cookie` gave, if any.
    pub session: Option<String>,
    pub body: String,
}

/// One `GET` on a connection of its own, with a cookie (none if empty); errors for anything
/// but a response.
pub fn probe(port: u16, path: &str, cookie: &str, timeout: Duration) -> Result<Probe> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let cookie = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{cookie}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line from port {port}: {head:?}"))?;
    let fields: Vec<(&str, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    let field = |wanted: &'static str| {
        fields
            .iter()
            .filter(move |(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| *value)
    };
    let served_by = field("x-served-by").next().unwrap_or_default().to_string();
    let session = field("set-cookie").find_map(|c| {
        let value = c.strip_prefix("JSESSIONID=")?;
        Some(value.split(';').next().unwrap_or_default().to_string())
    });
    Ok(Probe {
        status,
        served_by,
        session,
        body: body.to_string(),
    })
}
