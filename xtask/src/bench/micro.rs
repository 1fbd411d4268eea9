//! `cargo xtask bench --micro`: the criterion benchmarks, against modules built just before,
//! then a summary of the run: each benchmark's median time as a ratio to the reference measured
//! in the same run (`host/benches/codecs.rs`: one HTTP/1 request head parsed with `httparse`),
//! printed and written to `target/bench/micro.md`. The machines these run on are shared and
//! noisy: the ratios are the figures to compare between runs, not the times.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{cmd, wasm};

/// The reference's benchmark id starts with this.
const REFERENCE: &str = "reference";

/// Builds the modules, then runs every benchmark of the workspace; extra arguments go to
/// criterion (for instance a benchmark name filter). Then the summary.
pub fn run(extra: &[String]) -> Result<()> {
    wasm::build()?;
    let started = SystemTime::now();
    wasm::cargo_with_modules(&["bench", "--workspace", "--bench", "*"], extra)?;
    let results = read_results(&cmd::target_dir().join("criterion"), started)?;
    let report = summary(&results);
    print!("{report}");
    let dir = cmd::target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("micro.md");
    std::fs::write(&path, report).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("xtask: {}", path.display());
    Ok(())
}

/// One benchmark's result: its id and median time in nanoseconds.
struct Measured {
    id: String,
    median_ns: f64,
}

/// Every benchmark criterion measured since `since` (its `new/` estimates were written then),
/// in id order.
fn read_results(root: &Path, since: SystemTime) -> Result<Vec<Measured>> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let estimates = path.join("new").join("estimates.json");
            let fresh = std::fs::metadata(&estimates)
                .and_then(|m| m.modified())
                .is_ok_and(|at| at >= since);
            if fresh {
                found.push(read_one(&path)?);
            } else if path.file_name().is_some_and(|n| n != "new" && n != "base") {
                dirs.push(path);
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

/// The id (`new/benchmark.json`) and median (`new/estimates.json`) of one benchmark's folder.
fn read_one(dir: &Path) -> Result<Measured> {
    let json = |name: &str| -> Result<Value> {
        let path: PathBuf = dir.join("new").join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
    };
    let id = json("benchmark.json")?["full_id"]
        .as_str()
        .with_context(|| format!("{}: no full_id", dir.display()))?
        .to_owned();
    let median_ns = json("estimates.json")?["median"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("{}: no median estimate", dir.display()))?;
    Ok(Measured { id, median_ns })
}

/// The Markdown table of `results`, each as a ratio to the reference; without the reference
/// (a name filter left it out) the times alone, and a line that says so.
fn summary(results: &[Measured]) -> String {
    let reference = results.iter().find(|r| r.id.starts_with(REFERENCE));
    let mut text = String::from(
        "# Microbenchmarks\n\n`cargo xtask bench --micro`: criterion's median time per iteration",
    );
    match reference {
        Some(reference) => {
            let _ = write!(
                text,
                ", and as a ratio to the reference measured in the same run ({}, {:.0} ns).",
                reference.id, reference.median_ns
            );
        }
        None => text.push_str(
            ". The reference (`reference…`) did not run (a name filter left it out): no ratios.",
        ),
    }
    text.push_str("\n\n| benchmark | median | × reference |\n|---|---:|---:|\n");
    for r in results {
        let ratio = reference.map_or("–".to_owned(), |reference| {
            format!("{:.2}", r.median_ns / reference.median_ns)
        });
        let _ = writeln!(text, "| {} | {} | {ratio} |", r.id, time(r.median_ns));
    }
    text
}

/// A time in ns, µs or ms.
fn time(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, median_ns: f64) -> Measured {
        Measured {
            id: id.to_owned(),
            median_ns,
        }
    }

    #[test]
    fn every_result_is_a_ratio_to_the_reference() {
        let text = summary(&[
            result("ajp: forward request", 300.0),
            result("reference: HTTP/1 head parse (httparse)", 150.0),
            result("sticky + route_suffix, headers only", 3000.0),
        ]);
        assert!(
            text.contains("| ajp: forward request | 300 ns | 2.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| sticky + route_suffix, headers only | 3.00 µs | 20.00 |"),
            "{text}"
        );
        assert!(text.contains("150 ns"), "{text}");
    }

    #[test]
    fn without_the_reference_the_times_stand_alone() {
        let text = summary(&[result("ajp: forward request", 300.0)]);
        assert!(
            text.contains("| ajp: forward request | 300 ns | – |"),
            "{text}"
        );
        assert!(text.contains("did not run"), "{text}");
    }

    #[test]
    fn reads_only_what_this_run_wrote() {
        let dir = std::env::temp_dir().join(format!("keel-micro-{}", std::process::id()));
        let write = |sub: &str, id: &str, median: f64| {
            let new = dir.join(sub).join("new");
            std::fs::create_dir_all(&new).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(
                new.join("benchmark.json"),
                format!(r#"{{"full_id": "{id}"}}"#),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(
                new.join("estimates.json"),
                format!(r#"{{"median": {{"point_estimate": {median}}}}}"#),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        };
        // File times come from a coarse clock (a few ms): the run starts well apart from both.
        let apart = std::time::Duration::from_millis(50);
        write("old", "old benchmark", 1.0);
        std::thread::sleep(apart);
        let since = SystemTime::now();
        std::thread::sleep(apart);
        write("group/one", "group/one", 5.0);
        let found = read_results(&dir, since).unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "group/one");
        assert!((found[0].median_ns - 5.0).abs() < 1e-9);
    }
}
