//! What a run measures: the main table (workloads × contenders, interleaved rounds, medians),
//! keel's scale from 2 to 32 members, a member killed mid-run, and the half-open connection
//! flood.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Options;
use super::contenders::{Backends, Contender, Env, Filters, Kind, Memcached, Workers};
use super::procs::{probe, tree_cpu_seconds};
use super::report::{self, Failover, Figures, Flood, Results, Scale, Table};
use super::wrk::{self, Load};

/// One workload at one concurrency.
#[derive(Clone)]
pub struct Cell {
    pub label: String,
    pub path: &'static str,
    pub post: bool,
    pub connections: u32,
}

impl Cell {
    pub fn new(workload: &str, connections: u32) -> Cell {
        let (path, post) = match workload {
            "64 KB GET" => ("/64k.bin", false),
            "1 MB POST" => ("/post", true),
            _ => ("/small.txt", false),
        };
        Cell {
            label: format!("{workload} c{connections}"),
            path,
            post,
            connections,
        }
    }
}

/// One wrk run through one contender, with what the contender's processes spent.
struct Sample {
    outcome: wrk::Outcome,
    peak_rss_kib: Option<u64>,
    cpu_per_10k: Option<f64>,
    backend_cpu_per_10k: Option<f64>,
}

/// The contenders of a run: id (file names), label (tables), kind, over AJP.
fn lineup(quick: bool, only: &[String]) -> Vec<(&'static str, &'static str, Kind, bool)> {
    let all = vec![
        ("direct", "direct", Kind::Direct, false),
        ("haproxy", "HAProxy", Kind::Haproxy, false),
        ("nginx", "nginx hash", Kind::Nginx, false),
        ("httpd", "httpd balancer", Kind::Httpd, false),
        (
            "keel-none",
            "keel no filter",
            Kind::Keel(Filters::None, Workers::PerCore),
            false,
        ),
        (
            "hyper-floor",
            "hyper floor (no keel)",
            Kind::HyperFloor,
            false,
        ),
        (
            "keel-sticky",
            "keel sticky+suffix",
            Kind::Keel(Filters::Sticky, Workers::PerCore),
            false,
        ),
        (
            "keel-sticky-w1",
            "keel sticky+suffix 1 worker",
            Kind::Keel(Filters::Sticky, Workers::One),
            false,
        ),
        (
            "keel-all",
            "keel 3 filters+mc",
            Kind::Keel(Filters::All, Workers::PerCore),
            false,
        ),
        ("httpd-ajp", "httpd AJP", Kind::Httpd, true),
        (
            "keel-ajp",
            "keel sticky+suffix AJP",
            Kind::Keel(Filters::Sticky, Workers::PerCore),
            true,
        ),
    ];
    all.into_iter()
        .filter(|(id, ..)| !quick || ["direct", "haproxy", "keel-sticky"].contains(id))
        .filter(|(id, ..)| only.is_empty() || only.iter().any(|o| o == id))
        .collect()
}

/// Runs everything the options ask for and writes the report.
pub fn run(options: &Options) -> Result<()> {
    let started = Instant::now();
    let mut env = Env::new(&super::binaries(options))?;
    if options.pgo {
        env.keel = super::pgo::binary()?;
        if !env.keel.exists() {
            bail!("{} is missing: cargo xtask pgo", env.keel.display());
        }
    }
    eprintln!("bench: configurations and logs in {}", env.dir.display());
    let post_script = post_script(&env)?;
    let mut backends = Backends::start(&env, if options.quick { 2 } else { 32 }, false)?;
    let lineup = lineup(options.quick, &options.only);
    let mut ajp_backends = if lineup.iter().any(|(.., ajp)| *ajp) {
        Some(Backends::start(&env, 2, true)?)
    } else {
        None
    };
    let memcached = if lineup
        .iter()
        .any(|(_, _, kind, _)| *kind == Kind::Keel(Filters::All, Workers::PerCore))
    {
        Some(Memcached::start(&env)?)
    } else {
        None
    };
    let mut contenders = Vec::new();
    let mut labels = Vec::new();
    for (id, label, kind, ajp) in lineup {
        let members = match (&ajp_backends, ajp) {
            (Some(ajp_backends), true) => &ajp_backends.members[..],
            _ => &backends.members[..2],
        };
        let contender = Contender::start(&env, id, kind, members, memcached.as_ref())
            .with_context(|| format!("{label} did not start"))?;
        eprintln!(
            "bench: {label} on 127.0.0.1:{} (cookie {})",
            contender.port, contender.cookie
        );
        contenders.push(contender);
        labels.push(label.to_string());
    }
    let cells: Vec<Cell> = if options.quick {
        vec![Cell::new("small GET", 32)]
    } else {
        vec![
            Cell::new("small GET", 1),
            Cell::new("small GET", 32),
            Cell::new("small GET", 256),
            Cell::new("64 KB GET", 32),
            Cell::new("1 MB POST", 32),
        ]
    };
    let mut figures = Vec::new();
    for cell in &cells {
        figures.push(rounds(
            &mut contenders,
            &labels,
            cell,
            options,
            &post_script,
            &[],
        )?);
    }
    let mut results = Results {
        main: Table {
            contenders: labels.clone(),
            cells: cells.iter().map(|c| c.label.clone()).collect(),
            figures,
        },
        tomcat: None,
        scale: Vec::new(),
        failover: Vec::new(),
        flood: Vec::new(),
        seconds: options.seconds,
        rounds: options.rounds,
        pgo: options.pgo,
    };
    // Scale needs 32 members: not in the quick run. Failover and the flood are quick enough.
    if !options.quick && labels.iter().any(|l| l == "keel sticky+suffix") {
        results.scale = scale(&env, &backends, &mut contenders, &labels, options)?;
    }
    for (i, contender) in contenders.iter_mut().enumerate() {
        // Neither the backend nor the floor under keel fails over.
        if matches!(contender.kind, Kind::Direct | Kind::HyperFloor) {
            continue;
        }
        let backends = if labels[i].ends_with("AJP") {
            match ajp_backends.as_mut() {
                Some(b) => b,
                None => continue,
            }
        } else {
            &mut backends
        };
        let result = failover(&env, backends, contender, &labels[i])
            .with_context(|| format!("failover through {}", labels[i]))?;
        results.failover.push(result);
    }
    for (i, contender) in contenders.iter().enumerate() {
        if matches!(
            contender.kind,
            Kind::Haproxy | Kind::Keel(Filters::Sticky, Workers::PerCore)
        ) && !labels[i].ends_with("AJP")
        {
            results.flood.push(flood(contender, &labels[i])?);
        }
    }
    // Last: the JVMs' own threads would disturb the other measurements.
    results.tomcat = super::tomcat::run(&env, options)?;
    let dir = crate::cmd::target_dir().join("bench");
    report::write(&results, &dir)?;
    println!("{}", report::main_table(&results.main));
    if let Some(tomcat) = &results.tomcat {
        println!("In front of Tomcat:\n{}", report::main_table(tomcat));
    }
    eprintln!(
        "bench: done in {:.0} s; {} and report.svg",
        started.elapsed().as_secs_f64(),
        dir.join("report.md").display()
    );
    // The contenders go first, then their backends.
    drop(contenders);
    Ok(())
}

/// The wrk script of the 1 MB POST cell, written into the run's directory.
pub fn post_script(env: &Env) -> Result<PathBuf> {
    let path = env.dir.join("post.lua");
    std::fs::write(
        &path,
        "wrk.method = \"POST\"\nwrk.body = string.rep(\"k\", 1048576)\n\
         wrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n",
    )?;
    Ok(path)
}

/// `cell` through every contender, in interleaved rounds; the medians, by contender. In a
/// quick run, any error fails it. `backends`: processes (with their descendants) whose CPU
/// per request is measured too (the Tomcat nodes; none for the bench's own members).
pub fn rounds(
    contenders: &mut [Contender],
    labels: &[String],
    cell: &Cell,
    options: &Options,
    post_script: &Path,
    backends: &[u32],
) -> Result<Vec<Figures>> {
    let mut samples: Vec<Vec<Sample>> = contenders.iter().map(|_| Vec::new()).collect();
    for round in 1..=options.rounds {
        for (i, contender) in contenders.iter_mut().enumerate() {
            let sample = measure(contender, cell, options.seconds, post_script, backends)
                .with_context(|| format!("{} ({})", labels[i], cell.label))?;
            eprintln!(
                "bench: {} round {round}: {:<24} {:>9.0} req/s  p99 {:>7.2} ms  errors {}",
                cell.label,
                labels[i],
                sample.outcome.rps,
                sample.outcome.p99_ms,
                sample.outcome.errors
            );
            if options.quick && (sample.outcome.errors > 0 || sample.outcome.requests == 0) {
                bail!(
                    "{}: {} errors in {} requests ({})",
                    labels[i],
                    sample.outcome.errors,
                    sample.outcome.requests,
                    cell.label
                );
            }
            samples[i].push(sample);
        }
    }
    Ok(samples.iter().map(|s| medians(s)).collect())
}

/// One wrk run through `contender`, with the CPU and peak memory its processes used (and the
/// CPU of `backends`, when there are some).
fn measure(
    contender: &mut Contender,
    cell: &Cell,
    seconds: u32,
    post_script: &Path,
    backends: &[u32],
) -> Result<Sample> {
    if let Some(proc) = &contender.proc {
        proc.reset_peak();
    }
    let backend_cpu = || -> f64 { backends.iter().map(|p| tree_cpu_seconds(*p)).sum() };
    let backend_before = backend_cpu();
    let cpu_before = contender.proc.as_ref().map(|p| p.cpu_seconds());
    let outcome = Load {
        port: contender.port,
        path: cell.path,
        cookie: &contender.cookie,
        connections: cell.connections,
        seconds,
        script: cell.post.then_some(post_script),
    }
    .run()?;
    let per_10k = |spent: f64| spent / outcome.requests.max(1) as f64 * 10_000.0;
    let backend_cpu_per_10k =
        (!backends.is_empty()).then(|| per_10k(backend_cpu() - backend_before));
    let mut peak_rss_kib = None;
    let mut cpu_per_10k = None;
    if let Some(proc) = contender.proc.as_mut() {
        proc.check_alive()?;
        peak_rss_kib = Some(proc.peak_rss_kib());
        if let Some(before) = cpu_before {
            let spent = proc.cpu_seconds() - before;
            cpu_per_10k = Some(per_10k(spent));
        }
    }
    Ok(Sample {
        outcome,
        peak_rss_kib,
        cpu_per_10k,
        backend_cpu_per_10k,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Medians of every figure (errors: the total over the rounds; peak RSS: the highest).
fn medians(samples: &[Sample]) -> Figures {
    let of = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    Figures {
        rps: of(|s| s.outcome.rps),
        p50_ms: of(|s| s.outcome.p50_ms),
        p99_ms: of(|s| s.outcome.p99_ms),
        errors: samples.iter().map(|s| s.outcome.errors).sum(),
        peak_rss_mib: samples
            .iter()
            .filter_map(|s| s.peak_rss_kib)
            .max()
            .map(|k| k as f64 / 1024.0),
        cpu_per_10k: if samples.iter().all(|s| s.cpu_per_10k.is_some()) {
            Some(of(|s| s.cpu_per_10k.unwrap_or_default()))
        } else {
            None
        },
        backend_cpu_per_10k: if samples.iter().all(|s| s.backend_cpu_per_10k.is_some()) {
            Some(of(|s| s.backend_cpu_per_10k.unwrap_or_default()))
        } else {
            None
        },
    }
}

/// keel sticky + route_suffix in front of 2, 8 and 32 members (small GET, 32 connections),
/// interleaved.
fn scale(
    env: &Env,
    backends: &Backends,
    contenders: &mut [Contender],
    labels: &[String],
    options: &Options,
) -> Result<Vec<Scale>> {
    let two = labels
        .iter()
        .position(|l| l == "keel sticky+suffix")
        .context("no keel sticky contender")?;
    let mut more = Vec::new();
    for n in [8, 32] {
        more.push(Contender::start(
            env,
            &format!("keel-sticky-{n}"),
            Kind::Keel(Filters::Sticky, Workers::PerCore),
            &backends.members[..n],
            None,
        )?);
    }
    let cell = Cell::new("small GET", 32);
    let unused = Path::new("/dev/null");
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for round in 1..=options.rounds {
        for (k, samples) in samples.iter_mut().enumerate() {
            let contender = if k == 0 {
                &mut contenders[two]
            } else {
                &mut more[k - 1]
            };
            let sample = measure(contender, &cell, options.seconds, unused, &[])?;
            eprintln!(
                "bench: scale round {round}: {} members {:>9.0} req/s",
                [2, 8, 32][k],
                sample.outcome.rps
            );
            samples.push(sample);
        }
    }
    Ok([2, 8, 32]
        .into_iter()
        .zip(samples.iter())
        .map(|(members, s)| Scale {
            members,
            figures: medians(s),
        })
        .collect())
}

/// A member killed with SIGKILL 3 s into an 8 s run of small GETs whose session lives on it:
/// the errors wrk saw and how long a probe on fresh connections kept failing.
fn failover(
    env: &Env,
    backends: &mut Backends,
    contender: &mut Contender,
    label: &str,
) -> Result<Failover> {
    let route = backends.members[0].route.clone();
    contender.wait_sticky(&route, Duration::from_secs(30))?;
    let load = Load {
        port: contender.port,
        path: "/small.txt",
        cookie: &contender.cookie,
        connections: 32,
        seconds: 8,
        script: None,
    };
    let child = load.start()?;
    sleep(Duration::from_secs(3));
    backends.kill(0);
    let killed = Instant::now();
    let window = Duration::from_millis(4500);
    let mut last_failure: Option<Duration> = None;
    let mut probes = 0u32;
    while killed.elapsed() < window {
        let ok = matches!(
            probe(contender.port, "/small.txt", &contender.cookie, Duration::from_secs(1)),
            Ok(reply) if reply.status == 200
        );
        probes += 1;
        if !ok {
            last_failure = Some(killed.elapsed());
        }
        sleep(Duration::from_millis(5));
    }
    let outcome = wrk::wait(child)?;
    backends.restart(env, 0)?;
    let recovered = last_failure.is_none_or(|t| t + Duration::from_millis(250) < window);
    let result = Failover {
        contender: label.into(),
        requests: outcome.requests,
        errors: outcome.errors,
        recovery_ms: recovered.then(|| last_failure.map_or(0.0, |t| t.as_secs_f64() * 1000.0)),
        probes,
    };
    eprintln!(
        "bench: failover {label}: {} errors in {} requests, recovered {}",
        result.errors,
        result.requests,
        match result.recovery_ms {
            Some(ms) => format!("after {ms:.0} ms"),
            None => "not within the window".into(),
        }
    );
    Ok(result)
}

/// RSS idle, with ~5000 half-open connections (a request head never finished), after they
/// closed, and after two more such floods.
fn flood(contender: &Contender, label: &str) -> Result<Flood> {
    let proc = contender.proc.as_ref().context("no process to measure")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], contender.port));
    let kib = |k: u64| k as f64 / 1024.0;
    let idle = kib(proc.rss_kib());
    let (mut during, mut after_one, mut opened) = (0.0, 0.0, 0);
    for flood in 0..3 {
        let mut connections = Vec::new();
        for _ in 0..5000 {
            if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
                let _ = stream.write_all(b"GET /small.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n");
                connections.push(stream);
            }
        }
        sleep(Duration::from_secs(2));
        if flood == 0 {
            during = kib(proc.rss_kib());
            opened = connections.len();
        }
        drop(connections);
        sleep(Duration::from_secs(2));
        if flood == 0 {
            after_one = kib(proc.rss_kib());
        }
    }
    let after_three = kib(proc.rss_kib());
    let (keepalive_connections, keepalive_kib) = keepalive(proc, addr);
    eprintln!(
        "bench: flood {label}: {idle:.1} MiB idle, {during:.1} with {opened} connections, \
         {after_one:.1} after, {after_three:.1} after three floods; \
         {keepalive_kib:.1} KiB per idle keep-alive connection ({keepalive_connections})"
    );
    Ok(Flood {
        contender: label.into(),
        connections: opened,
        idle_mib: idle,
        during_mib: during,
        after_mib: after_one,
        after_three_mib: after_three,
        keepalive_connections,
        keepalive_kib,
    })
}

/// 3000 keep-alive connections that each made one whole request, then stay idle: how many
/// there were, and the RSS they added per connection 3 s after the last one's answer (keel
/// parks a connection after a second without a request).
fn keepalive(proc: &super::procs::Proc, addr: SocketAddr) -> (usize, f64) {
    let before = proc.rss_kib();
    let mut connections = Vec::new();
    for _ in 0..3000 {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let asked = stream
            .write_all(b"GET /small.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .is_ok();
        if asked && read_answer(&mut stream) {
            connections.push(stream);
        }
    }
    sleep(Duration::from_secs(3));
    let added = proc.rss_kib().saturating_sub(before);
    let per = added as f64 / connections.len().max(1) as f64;
    (connections.len(), per)
}

/// Reads one answer with a Content-Length body; whether it came whole.
fn read_answer(stream: &mut TcpStream) -> bool {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut buf) else {
            return false;
        };
        if n == 0 {
            return false;
        }
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if got.len() >= end + 4 + length {
            return true;
        }
    }
}
