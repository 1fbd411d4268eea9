//! Memory given back after a burst of connections. glibc keeps what a thread frees in that
//! thread's arena, and returns an arena's pages to the system only from its top: after a flood of
//! connections the workers' arenas stay as large as at the peak. The control thread watches the
//! number of open client connections and, once it has fallen well below its peak, or once many
//! more connections have been parked (their hyper state freed, `server::http1`) since the last
//! look, asks glibc to give back every whole free page of every arena (`malloc_trim`).

use std::time::Duration;

use prometheus::IntGauge;

/// How often the number of connections is looked at.
const PERIOD: Duration = Duration::from_secs(2);

/// Connections that must have closed since the peak before a trim is worth its cost (a trim
/// walks every arena: a few milliseconds at most, on the control thread).
const BURST: i64 = 256;

/// Trims after every burst of client connections that closed or were parked, for as long as
/// the process runs.
pub async fn trim_after_bursts(connections: IntGauge, parked: IntGauge) {
    let mut peak = 0;
    let mut parked_before = 0;
    loop {
        tokio::time::sleep(PERIOD).await;
        let open = connections.get();
        peak = peak.max(open);
        let now_parked = parked.get();
        let newly_parked = now_parked - parked_before;
        parked_before = now_parked;
        if newly_parked >= BURST {
            trim_because(format_args!(
                "{newly_parked} more client connections parked"
            ));
        }
        if peak - open >= BURST && open <= peak / 2 {
            trim_because(format_args!(
                "{} client connections closed since the peak of {peak}",
                peak - open
            ));
            peak = open;
        }
    }
}

/// Trims, and says why at debug level.
fn trim_because(why: std::fmt::Arguments<'_>) {
    let released = trim();
    log::debug!(
        "{why}: memory trimmed ({})",
        if released {
            "pages released"
        } else {
            "nothing to release"
        }
    );
}

/// Gives the free pages of every malloc arena back to the system; whether any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointer and is thread-safe (it locks each arena in turn).
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators give memory back on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}
