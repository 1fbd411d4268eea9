//! The report: Markdown tables (`report.md`, every figure also as a ratio to HAProxy and to
//! direct from the same run) and a bar chart of the main table (`report.svg`, written by hand).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

/// The medians of one contender in one cell.
#[derive(Clone, Debug)]
pub struct Figures {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Total over the rounds.
    pub errors: u64,
    /// The proxy's processes (none for direct).
    pub peak_rss_mib: Option<f64>,
    pub cpu_per_10k: Option<f64>,
    /// The backends' CPU seconds per 10 000 requests, where they are measured (Tomcat).
    pub backend_cpu_per_10k: Option<f64>,
}

/// keel in front of `members` members.
pub struct Scale {
    pub members: usize,
    pub figures: Figures,
}

/// A member killed mid-run.
pub struct Failover {
    pub contender: String,
    pub requests: u64,
    pub errors: u64,
    /// From the kill to the last failed probe; `None`: still failing at the end.
    pub recovery_ms: Option<f64>,
    pub probes: u32,
}

/// The half-open connection flood.
pub struct Flood {
    pub contender: String,
    pub connections: usize,
    pub idle_mib: f64,
    pub during_mib: f64,
    pub after_mib: f64,
    pub after_three_mib: f64,
    /// Idle keep-alive connections (one request each) held open, and the RSS they added (KiB
    /// per connection, measured a few seconds after their last request).
    pub keepalive_connections: usize,
    pub keepalive_kib: f64,
}

/// Contenders × cells.
pub struct Table {
    pub contenders: Vec<String>,
    pub cells: Vec<String>,
    /// `figures[cell][contender]`.
    pub figures: Vec<Vec<Figures>>,
}

impl Table {
    fn index(&self, label: &str) -> Option<usize> {
        self.contenders.iter().position(|c| c == label)
    }
}

/// Everything a run measured.
pub struct Results {
    /// The main table: nginx members (and the AJP bench server for the AJP rows).
    pub main: Table,
    /// In front of two real Tomcat nodes ([`super::tomcat`]).
    pub tomcat: Option<Table>,
    pub scale: Vec<Scale>,
    pub failover: Vec<Failover>,
    pub flood: Vec<Flood>,
    pub seconds: u32,
    pub rounds: usize,
    /// keel's rows ran the profile-guided build (`--pgo`).
    pub pgo: bool,
}

fn ratio(value: f64, reference: Option<f64>) -> String {
    match reference {
        Some(r) if r > 0.0 && r.is_finite() && value.is_finite() => format!("{:.2}", value / r),
        _ => "–".into(),
    }
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// Rows: contenders; columns: cells; requests/s (×HAProxy, ×direct).
pub fn main_table(results: &Table) -> String {
    let haproxy = results.index("HAProxy");
    let direct = results.index("direct");
    let mut text = String::from("| requests/s (×HAProxy, ×direct) |");
    for cell in &results.cells {
        let _ = write!(text, " {cell} |");
    }
    text.push_str("\n|---|");
    text.push_str(&"---:|".repeat(results.cells.len()));
    text.push('\n');
    for (i, name) in results.contenders.iter().enumerate() {
        let _ = write!(text, "| {name} |");
        for cell in &results.figures {
            let f = &cell[i];
            let h = haproxy.map(|h| cell[h].rps);
            let d = direct.map(|d| cell[d].rps);
            let _ = write!(
                text,
                " {:.0} ({}, {}) |",
                f.rps,
                ratio(f.rps, h),
                ratio(f.rps, d)
            );
        }
        text.push('\n');
    }
    text
}

/// Every figure of one cell, with its ratios.
fn cell_table(results: &Table, cell: usize) -> String {
    let figures = &results.figures[cell];
    let h = results.index("HAProxy").map(|i| &figures[i]);
    let d = results.index("direct").map(|i| &figures[i]);
    let mut text = String::from(
        "| contender | req/s | ×H | ×D | p50 ms | ×H | ×D | p99 ms | ×H | ×D | errors | \
         peak RSS MiB | ×H | CPU s/10k req | ×H |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, f) in results.contenders.iter().zip(figures) {
        let _ = writeln!(
            text,
            "| {name} | {:.0} | {} | {} | {:.3} | {} | {} | {:.3} | {} | {} | {} | {} | {} | {} | {} |",
            f.rps,
            ratio(f.rps, h.map(|h| h.rps)),
            ratio(f.rps, d.map(|d| d.rps)),
            f.p50_ms,
            ratio(f.p50_ms, h.map(|h| h.p50_ms)),
            ratio(f.p50_ms, d.map(|d| d.p50_ms)),
            f.p99_ms,
            ratio(f.p99_ms, h.map(|h| h.p99_ms)),
            ratio(f.p99_ms, d.map(|d| d.p99_ms)),
            f.errors,
            opt(f.peak_rss_mib, 1),
            f.peak_rss_mib
                .map_or("–".into(), |v| ratio(v, h.and_then(|h| h.peak_rss_mib))),
            opt(f.cpu_per_10k, 3),
            f.cpu_per_10k
                .map_or("–".into(), |v| ratio(v, h.and_then(|h| h.cpu_per_10k))),
        );
    }
    text
}

/// The whole report in Markdown.
pub fn markdown(results: &Results) -> String {
    let mut text = format!(
        "# keel side by side\n\n`cargo xtask bench`: every contender in front of the same \
         backends (single-process nginx members serving a {small}-byte and a 64 KiB file; \
         `AJP` rows: keel's AJP bench server), the same `wrk` load, {rounds} interleaved rounds \
         of {seconds} s, medians. Ratios are to HAProxy (×H) and to the backend reached directly \
         (×D) in the same run. Peak RSS: VmHWM of the proxy's processes during a run (summed \
         over processes); CPU: utime + stime of all of them per 10 000 requests. The AJP rows \
         have a different backend: compare them with each other. keel: {build}.\n\n\
         ## Requests/s\n\n",
        small = super::contenders::SMALL_BYTES,
        rounds = results.rounds,
        seconds = results.seconds,
        build = if results.pgo {
            "the profile-guided build (`cargo xtask pgo`)"
        } else {
            "the release build (the dev build with `--quick`)"
        },
    );
    let main = &results.main;
    text.push_str(&main_table(main));
    for (i, cell) in main.cells.iter().enumerate() {
        let _ = write!(text, "\n## {cell}\n\n{}", cell_table(main, i));
    }
    if let Some(tomcat) = &results.tomcat {
        text.push_str(&tomcat_section(tomcat));
    }
    if !results.scale.is_empty() {
        text.push_str(
            "\n## keel sticky+suffix, 2 → 32 members (small GET c32)\n\n\
             | members | req/s | ×2 members | p99 ms | peak RSS MiB | CPU s/10k req |\n\
             |---:|---:|---:|---:|---:|---:|\n",
        );
        let base = results.scale.first().map(|s| s.figures.rps);
        for s in &results.scale {
            let f = &s.figures;
            let _ = writeln!(
                text,
                "| {} | {:.0} | {} | {:.3} | {} | {} |",
                s.members,
                f.rps,
                ratio(f.rps, base),
                f.p99_ms,
                opt(f.peak_rss_mib, 1),
                opt(f.cpu_per_10k, 3)
            );
        }
    }
    if !results.failover.is_empty() {
        text.push_str(
            "\n## Failover: the session's member killed with SIGKILL 3 s into an 8 s run \
             (small GET c32)\n\nRecovery: from the kill to the last failed probe (a GET with \
             the session cookie on a fresh connection every ~5 ms, for 4.5 s).\n\n\
             | contender | requests | errors seen by wrk | recovery ms | probes |\n\
             |---|---:|---:|---:|---:|\n",
        );
        for f in &results.failover {
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} | {} |",
                f.contender,
                f.requests,
                f.errors,
                f.recovery_ms
                    .map_or("not recovered".into(), |ms| format!("{ms:.0}")),
                f.probes
            );
        }
    }
    if !results.flood.is_empty() {
        text.push_str(
            "\n## Half-open connection flood (RSS MiB)\n\n\
             | contender | connections | idle | during | KiB per connection | after | after 3 floods | \
             KiB per idle keep-alive connection |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for f in &results.flood {
            let per_connection = (f.during_mib - f.idle_mib) * 1024.0 / f.connections.max(1) as f64;
            let _ = writeln!(
                text,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} ({}) |",
                f.contender,
                f.connections,
                f.idle_mib,
                f.during_mib,
                per_connection,
                f.after_mib,
                f.after_three_mib,
                f.keepalive_kib,
                f.keepalive_connections
            );
        }
    }
    text
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const COLOURS: [&str; 9] = [
    "#7f7f7f", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#d62728", "#8c564b", "#17becf",
    "#e377c2",
];

/// The Tomcat table, with keel over AJP as a ratio to httpd mod_proxy_ajp and to HAProxy over
/// HTTP (the two targets for real Tomcat).
fn tomcat_section(tomcat: &Table) -> String {
    let mut text = String::from(
        "\n## In front of two real Tomcat 10 nodes\n\n`/app/session` (a visit counter in the \
         `HttpSession`), each contender with a session of its own, the same load; direct is \
         Tomcat's HTTP connector; the AJP rows use Tomcat's AJP connector with a secret.\n\n",
    );
    for (i, cell) in tomcat.cells.iter().enumerate() {
        let figures = &tomcat.figures[i];
        let rps = |label: &str| tomcat.index(label).map(|i| figures[i].rps);
        let _ = write!(
            text,
            "### {cell}\n\n{}\nkeel over AJP: {}× httpd mod_proxy_ajp, {}× HAProxy over HTTP.\n",
            cell_table(tomcat, i),
            opt_ratio(rps("keel sticky+suffix AJP"), rps("httpd AJP")),
            opt_ratio(rps("keel sticky+suffix AJP"), rps("HAProxy")),
        );
        text.push_str(&cpu_split(&tomcat.contenders, figures));
    }
    text
}

/// Where the CPU of a request went: the proxy, and Tomcat (both nodes) behind it, in CPU
/// seconds per 10 000 requests. Tomcat's share differs by connector (AJP or HTTP) and by what
/// the proxy sends it; on two shared cores every contender's two shares compete with wrk.
fn cpu_split(contenders: &[String], figures: &[Figures]) -> String {
    let mut text = String::from(
        "\n| CPU s per 10 000 requests | proxy | Tomcat | both |\n|---|---:|---:|---:|\n",
    );
    for (name, f) in contenders.iter().zip(figures) {
        let both = f
            .backend_cpu_per_10k
            .map(|b| b + f.cpu_per_10k.unwrap_or(0.0));
        let _ = writeln!(
            text,
            "| {name} | {} | {} | {} |",
            opt(f.cpu_per_10k, 3),
            opt(f.backend_cpu_per_10k, 3),
            opt(both, 3)
        );
    }
    text
}

fn opt_ratio(value: Option<f64>, reference: Option<f64>) -> String {
    value.map_or("–".into(), |v| ratio(v, reference))
}

/// Horizontal bars of requests/s, one panel per cell, each on its own scale.
pub fn svg(results: &Table) -> String {
    let (label_w, bar_w, row_h, title_h, gap) = (190.0, 460.0, 18.0, 26.0, 14.0);
    let rows = results.contenders.len() as f64;
    let panel_h = title_h + rows * row_h + gap;
    let width = label_w + bar_w + 150.0;
    let height = 40.0 + panel_h * results.cells.len() as f64;
    let mut text = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"24\" font-size=\"16\" font-weight=\"bold\">keel side by side: \
         requests/s (medians; ×HAProxy)</text>\n"
    );
    let haproxy = results.index("HAProxy");
    for (c, cell) in results.cells.iter().enumerate() {
        let top = 40.0 + panel_h * c as f64;
        let figures = &results.figures[c];
        let max = figures
            .iter()
            .map(|f| f.rps)
            .filter(|v| v.is_finite())
            .fold(1.0, f64::max);
        let _ = writeln!(
            text,
            "<text x=\"10\" y=\"{}\" font-weight=\"bold\">{}</text>",
            top + 16.0,
            escape(cell)
        );
        for (i, (name, f)) in results.contenders.iter().zip(figures).enumerate() {
            let y = top + title_h + row_h * i as f64;
            let w = if f.rps.is_finite() {
                f.rps / max * bar_w
            } else {
                0.0
            };
            let h = haproxy.map(|h| figures[h].rps);
            let _ = writeln!(
                text,
                "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{name}</text>\
                 <rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"{bh}\" fill=\"{col}\"/>\
                 <text x=\"{vx:.1}\" y=\"{ty}\">{v:.0} (×{r})</text>",
                lx = label_w - 6.0,
                ty = y + 12.0,
                name = escape(name),
                bh = row_h - 4.0,
                col = COLOURS[i % COLOURS.len()],
                vx = label_w + w + 4.0,
                v = f.rps,
                r = ratio(f.rps, h),
            );
        }
    }
    text.push_str("</svg>\n");
    text
}

/// Writes `report.md` and `report.svg` into `dir`.
pub fn write(results: &Results, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let md = dir.join("report.md");
    std::fs::write(&md, markdown(results)).with_context(|| format!("write {}", md.display()))?;
    let chart = dir.join("report.svg");
    std::fs::write(&chart, svg(&results.main))
        .with_context(|| format!("write {}", chart.display()))?;
    Ok(())
}
