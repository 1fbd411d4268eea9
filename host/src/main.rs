//! The `keel` command: `serve`, `check`, `bridge`, `default-config`, `example-config`,
//! `--version`.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use keel::config;
use keel::metrics::Metrics;
use keel::proxy::wasm;
use keel::runtime::Shared;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: keel serve [--config FILE] | keel check FILE | keel bridge --listen ADDR (--nodes ... | --memory) | keel default-config | keel example-config | keel --version";

/// Runs the command; an error is one line on stderr (`keel: error: ...`, the cause chain
/// included) and exit status 1, never a backtrace.
fn main() -> std::process::ExitCode {
    match command() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keel: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The command named by the first argument.
fn command() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "-V") => {
            println!("keel {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("check") => {
            let Some(path) = args.get(1) else {
                bail!("{USAGE}")
            };
            let settings = config::load(path.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{path}: ok ({} listener(s), {} member(s), {} filter(s))",
                settings.listeners.len(),
                settings.members.len(),
                settings.filters.len()
            );
            Ok(())
        }
        Some("default-config") => {
            print!("{}", config::DEFAULT_CONFIG);
            Ok(())
        }
        Some("example-config") => {
            print!("{}", config::EXAMPLE_CONFIG);
            Ok(())
        }
        Some("serve") => {
            let path = match args.get(1).map(String::as_str) {
                None => None,
                Some("--config") => match args.get(2) {
                    Some(p) => Some(PathBuf::from(p)),
                    None => bail!("--config needs a file; {USAGE}"),
                },
                Some(other) => bail!("unknown argument {other:?}; {USAGE}"),
            };
            serve(path)
        }
        Some("bridge") => {
            let args = keel::bridge::BridgeArgs::parse(&args[1..]).map_err(anyhow::Error::msg)?;
            bridge(args)
        }
        Some(other) => bail!("unknown command {other:?}; {USAGE}"),
        None => bail!("no command given; {USAGE}"),
    }
}

fn serve(path: Option<PathBuf>) -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::new().filter_or("KEEL_LOG", "info")).init();
    let settings = match &path {
        Some(p) => config::load(p),
        None => config::default_settings(),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = Metrics::new().context("metrics registry")?;
    // The control thread (signals, admin, health checks, reloads); the workers get their own.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run(settings, path, metrics))
}

/// `keel bridge`: the store's API over HTTP until SIGTERM or SIGINT.
fn bridge(args: keel::bridge::BridgeArgs) -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::new().filter_or("KEEL_LOG", "info")).init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("--listen: cannot bind {}", args.listen))?;
        let store = std::sync::Arc::new(args.store());
        println!(
            "keel bridge: listening on http://{}",
            listener.local_addr()?
        );
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(keel::bridge::serve(listener, store, rx));
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(true);
        let _ = task.await;
        println!("keel bridge: stopped");
        Ok(())
    })
}

async fn run(settings: config::Settings, path: Option<PathBuf>, metrics: Metrics) -> Result<()> {
    let workers = keel::worker::count(settings.config.workers);
    let shared = Shared::new(settings, path, metrics, wasm::builder())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bound = keel::server::bind(&shared, workers).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = std::io::stdout();
    for b in bound.first().into_iter().flatten() {
        let scheme = if b.tls.is_some() { "https" } else { "http" };
        writeln!(
            out,
            "keel: listening on {scheme}://{}",
            b.listener.local_addr()?
        )?;
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    if let Some(admin) = shared.current().settings.admin.clone() {
        let l = tokio::net::TcpListener::bind(admin.address)
            .await
            .with_context(|| format!("admin.address: cannot bind {}", admin.address))?;
        writeln!(out, "keel: admin on http://{}", l.local_addr()?)?;
        tasks.push(tokio::spawn(keel::admin::serve(
            l,
            shared.clone(),
            rx.clone(),
        )));
    }
    let trimmer = tokio::spawn(keel::memory::trim_after_bursts(
        shared.metrics.client_connections.clone(),
        shared.metrics.client_connections_parked.clone(),
    ));
    let grace = shared.current().settings.config.shutdown_grace.0;
    let mut threads = Vec::new();
    for (index, sockets) in bound.into_iter().enumerate() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let (shared, rx) = (shared.clone(), rx.clone());
        let thread = std::thread::Builder::new()
            .name(format!("keel-worker-{index}"))
            .spawn(move || {
                keel::server::run_worker(index, runtime, sockets, shared, rx, grace);
            })
            .context("worker thread")?;
        threads.push(thread);
    }
    writeln!(out, "keel: {workers} worker(s)")?;
    out.flush()?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { log::info!("SIGTERM: shutting down"); break }
            _ = int.recv() => { log::info!("SIGINT: shutting down"); break }
            _ = hup.recv() => match shared.reload() {
                Ok(()) => { log::info!("SIGHUP: configuration reloaded"); println!("keel: reloaded"); }
                Err(e) => { log::error!("SIGHUP: reload refused, old configuration kept: {e}"); println!("keel: reload refused"); }
            },
        }
    }
    let _ = tx.send(true);
    trimmer.abort();
    for t in tasks {
        let _ = t.await;
    }
    // The workers finish their connections (up to the grace period) while this runtime still
    // runs the health checks and the admin listener's last answers.
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            if thread.join().is_err() {
                log::error!("a worker thread panicked");
            }
        }
    })
    .await;
    println!("keel: stopped");
    Ok(())
}
