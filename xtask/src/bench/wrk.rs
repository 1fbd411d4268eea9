//! The load: Debian's `wrk` with `--latency`, and a parser for what it prints.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

/// What one wrk run is asked to do.
pub struct Load<'a> {
    pub port: u16,
    pub path: &'a str,
    pub cookie: &'a str,
    pub connections: u32,
    pub seconds: u32,
    /// A Lua script (the POST body), if any.
    pub script: Option<&'a Path>,
}

/// What one wrk run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub requests: u64,
    pub rps: f64,
    /// Latency percentiles, in milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors plus non-2xx/3xx responses.
    pub errors: u64,
}

impl Load<'_> {
    /// One thread up to 32 connections, two beyond (wrk shares the two cores with the rest).
    fn command(&self) -> Command {
        let threads = if self.connections > 32 { 2 } else { 1 };
        let mut command = Command::new("wrk");
        command
            .arg(format!("-t{threads}"))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.seconds))
            .args(["--latency", "--timeout", "5s"])
            .args(["-H", &format!("Cookie: {}", self.cookie)]);
        if let Some(script) = self.script {
            command.arg("-s").arg(script);
        }
        command.arg(format!("http://127.0.0.1:{}{}", self.port, self.path));
        command
    }

    /// Runs wrk to the end.
    pub fn run(&self) -> Result<Outcome> {
        let out = self
            .command()
            .stdin(Stdio::null())
            .output()
            .context("could not run wrk (apt-get install wrk)")?;
        finish(out)
    }

    /// Starts wrk and returns at once (the failover test acts during the run).
    pub fn start(&self) -> Result<Child> {
        self.command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("could not run wrk (apt-get install wrk)")
    }
}

/// Waits for a started wrk and parses its output.
pub fn wait(child: Child) -> Result<Outcome> {
    finish(child.wait_with_output()?)
}

fn finish(out: std::process::Output) -> Result<Outcome> {
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&text).with_context(|| format!("could not read wrk's output:\n{text}"))
}

/// Parses wrk 4's report.
pub fn parse(text: &str) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut seen_rps = false;
    for line in text.lines() {
        let line = line.trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => outcome.p50_ms = duration_ms(value)?,
            ["99%", value] => outcome.p99_ms = duration_ms(value)?,
            [n, "requests", "in", ..] => outcome.requests = n.parse()?,
            ["Requests/sec:", value] => {
                outcome.rps = value.parse()?;
                seen_rps = true;
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => outcome.errors += n.parse::<u64>()?,
            ["Socket", "errors:", ..] => {
                // Socket errors: connect 0, read 0, write 0, timeout 0
                for pair in line["Socket errors:".len()..].split(',') {
                    if let Some(n) = pair.split_whitespace().nth(1) {
                        outcome.errors += n.parse::<u64>()?;
                    }
                }
            }
            _ => {}
        }
    }
    if !seen_rps {
        bail!("no Requests/sec line");
    }
    Ok(outcome)
}

/// `301.00us`, `1.20ms`, `2.00s`, `1.00m` in milliseconds.
fn duration_ms(value: &str) -> Result<f64> {
    let (number, scale) = if let Some(n) = value.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = value.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        bail!("unknown duration {value}");
    };
    Ok(number.parse::<f64>()? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let text = "Running 2s test @ http://127.0.0.1:1234/small.txt
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.53us  101.11us   3.01ms   88.12%
    Req/Sec    77.10k     2.31k   80.12k    70.00%
  Latency Distribution
     50%  401.00us
     75%  450.00us
     90%  510.00us
     99%    1.20ms
  153421 requests in 2.00s, 40.12MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:  76710.50
Transfer/sec:     20.06MB
";
        let o = parse(text).expect("parses");
        assert_eq!(o.requests, 153_421);
        assert!((o.rps - 76_710.5).abs() < 1e-6);
        assert!((o.p50_ms - 0.401).abs() < 1e-9);
        assert!((o.p99_ms - 1.2).abs() < 1e-9);
        assert_eq!(o.errors, 10);
    }
}
