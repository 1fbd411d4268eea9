//! The realistic rows: two real Tomcat 10 nodes (Debian's `tomcat10`, set up as in production:
//! both JIT tiers, the parallel GC, Tomcat's default threads; an AJP connector with a secret and
//! an HTTP one), serving `/app/session`, a page that counts visits in its `HttpSession`. In
//! front of them: Tomcat reached directly (the ceiling), HAProxy over HTTP (`cookie JSESSIONID
//! prefix`), httpd mod_proxy_balancer with mod_proxy_ajp, and keel with sticky + route_suffix
//! over AJP and over HTTP. Each contender gets a real session of its own — a first request
//! without a cookie, then a check that the session's second request is counted by the same
//! node — and the same wrk load with that cookie, in interleaved rounds, medians.
//!
//! The Tomcat nodes are the tests' (`host/ajp/tests/support/tomcat.rs`, with
//! [`Tuning::Bench`]).

use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::Options;
use super::contenders::{Contender, Env, Filters, Kind, Member, Workers};
use super::procs::probe;
use super::report::Table;
use super::scenarios::{Cell, rounds};
use super::wrk::Load;

#[allow(dead_code)]
#[path = "../../../host/ajp/tests/support/tomcat.rs"]
mod node;

use node::{Tomcat, Tuning};

/// The page, and the connections of the load.
const PAGE: &str = "/app/session";
const CONNECTIONS: u32 = 64;
/// The AJP connectors' secret (generated configurations only, on loopback).
const SECRET: &str = "keel-bench-ajp-secret";

/// The contenders in front of Tomcat: id (for `--only`), label, kind, over AJP.
fn lineup(quick: bool, only: &[String]) -> Vec<(&'static str, &'static str, Kind, bool)> {
    let keel = Kind::Keel(Filters::Sticky, Workers::PerCore);
    [
        ("tomcat-direct", "direct", Kind::Direct, false),
        ("tomcat-haproxy", "HAProxy", Kind::Haproxy, false),
        ("tomcat-httpd-ajp", "httpd AJP", Kind::Httpd, true),
        ("tomcat-keel-ajp", "keel sticky+suffix AJP", keel, true),
        ("tomcat-keel", "keel sticky+suffix", keel, false),
    ]
    .into_iter()
    .filter(|(id, ..)| !quick || ["tomcat-httpd-ajp", "tomcat-keel-ajp"].contains(id))
    .filter(|(id, ..)| only.is_empty() || only.iter().any(|o| o == id))
    .collect()
}

/// A Tomcat node as a member of the contenders: its AJP connector or its HTTP one.
fn member(tomcat: &Tomcat, ajp: bool) -> Member {
    Member {
        route: tomcat.route.clone(),
        port: if ajp {
            tomcat.ajp.port()
        } else {
            tomcat.http.port()
        },
        ajp,
        secret: ajp.then(|| tomcat.secret.clone()),
        health: "/app/health",
        proc: None,
    }
}

/// A session of `contender`'s own: the cookie its clients send. Fails unless the session's
/// second request is counted in the same session (sticky).
fn session(contender: &Contender) -> Result<String> {
    let timeout = Duration::from_secs(5);
    let first = probe(contender.port, PAGE, "", timeout)?;
    let value = first.session.with_context(|| {
        format!(
            "{}: no session cookie from {PAGE} (status {}): {}",
            contender.name, first.status, first.body
        )
    })?;
    let cookie = format!("JSESSIONID={value}");
    let second = probe(contender.port, PAGE, &cookie, timeout)?;
    if second.status != 200 || !second.body.contains("visits=2") || second.session.is_some() {
        bail!(
            "{}: the session's second request was not counted in it (status {}, new \
             session {:?}): {}",
            contender.name,
            second.status,
            second.session,
            second.body
        );
    }
    Ok(cookie)
}

/// Starts the nodes and the contenders, runs the rounds; the table (`None` when `--only`
/// leaves no contender in front of Tomcat).
pub fn run(env: &Env, options: &Options) -> Result<Option<Table>> {
    let lineup = lineup(options.quick, &options.only);
    if lineup.is_empty() {
        return Ok(None);
    }
    let other = std::thread::spawn(|| Tomcat::start_tuned("t2", SECRET, Tuning::Bench));
    let t1 = Tomcat::start_tuned("t1", SECRET, Tuning::Bench);
    let t2 = other
        .join()
        .map_err(|_| anyhow::anyhow!("Tomcat t2 did not start (see the panic above)"))?;
    let nodes = [&t1, &t2];
    let mut contenders = Vec::new();
    let mut labels = Vec::new();
    for (id, label, kind, ajp) in lineup {
        let members: Vec<Member> = nodes.iter().map(|t| member(t, ajp)).collect();
        let mut contender = Contender::launch(env, id, kind, &members, None)
            .with_context(|| format!("{label} in front of Tomcat did not start"))?;
        contender.cookie = session(&contender)?;
        eprintln!(
            "bench: Tomcat: {label} on 127.0.0.1:{} (cookie {})",
            contender.port, contender.cookie
        );
        contenders.push(contender);
        labels.push(label.to_string());
    }
    let cell = Cell {
        label: format!("session page c{CONNECTIONS}"),
        path: PAGE,
        post: false,
        connections: CONNECTIONS,
    };
    // The JIT compiles the hot paths of both nodes first.
    for contender in &contenders {
        Load {
            port: contender.port,
            path: PAGE,
            cookie: &contender.cookie,
            connections: CONNECTIONS,
            seconds: if options.quick { 1 } else { 5 },
            script: None,
        }
        .run()
        .with_context(|| format!("warming up through {}", contender.name))?;
    }
    let unused = std::path::Path::new("/dev/null");
    // Tomcat's own CPU per request, by contender: what the proxy and the connector it speaks
    // to leave Tomcat (and the two cores everything shares).
    let backends: Vec<u32> = nodes.iter().filter_map(|t| t.guard_pid()).collect();
    let figures = rounds(&mut contenders, &labels, &cell, options, unused, &backends)?;
    // The contenders go before the nodes.
    drop(contenders);
    Ok(Some(Table {
        contenders: labels,
        cells: vec![cell.label],
        figures: vec![figures],
    }))
}
