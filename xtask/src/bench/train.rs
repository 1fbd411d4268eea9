//! The training load of a profile-guided build (`cargo xtask pgo`): keel, built to record
//! where it spends its time, in front of the bench's own backends, under the bench's own cells —
//! without filters, with sticky + route_suffix, with all three and memcached, and over AJP — then
//! stopped with SIGTERM, so that it writes its profile as it exits.

use std::time::Duration;

use anyhow::{Context, Result};

use super::contenders::{Backends, Contender, Env, Filters, Kind, Memcached, Workers};
use super::scenarios::{Cell, post_script};
use super::wrk::Load;

/// How long each cell runs: enough for the profile's counts, a small part of the two builds.
const SECONDS: u32 = 3;

/// Runs the load through every keel configuration the bench measures, on `env.keel`.
pub fn run(env: &Env) -> Result<()> {
    let post = post_script(env)?;
    let backends = Backends::start(env, 2, false)?;
    let ajp_backends = Backends::start(env, 2, true)?;
    let memcached = Memcached::start(env)?;
    let lineup = [
        ("train-none", Filters::None, &backends, None),
        ("train-sticky", Filters::Sticky, &backends, None),
        ("train-all", Filters::All, &backends, Some(&memcached)),
        ("train-ajp", Filters::Sticky, &ajp_backends, None),
    ];
    let cells = [
        Cell::new("small GET", 32),
        Cell::new("small GET", 1),
        Cell::new("small GET", 256),
        Cell::new("64 KB GET", 32),
        Cell::new("1 MB POST", 32),
    ];
    for (name, filters, members, memcached) in lineup {
        let kind = Kind::Keel(filters, Workers::PerCore);
        let mut keel = Contender::start(env, name, kind, &members.members, memcached)
            .with_context(|| format!("{name} did not start"))?;
        for cell in &cells {
            let outcome = Load {
                port: keel.port,
                path: cell.path,
                cookie: &keel.cookie,
                connections: cell.connections,
                seconds: SECONDS,
                script: cell.post.then_some(post.as_path()),
            }
            .run()
            .with_context(|| format!("{name}: {}", cell.label))?;
            eprintln!(
                "pgo: {name:<13} {:<16} {:>8.0} req/s",
                cell.label, outcome.rps
            );
        }
        if let Some(proc) = keel.proc.as_mut() {
            proc.terminate(Duration::from_secs(30))?;
        }
    }
    Ok(())
}
