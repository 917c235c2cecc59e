//! Durability in the live view: the process table's column that tells, at a
//! glance, how often a process syncs and how many writes each sync carries;
//! and the detail pane's lines on each descriptor's syncs and its verdict.

use ratatui::{
    style::Style,
    text::{Line, Span},
};

use super::{
    columns::{Column, column},
    format,
};
use crate::model::{
    ProcessState,
    human::human_ns,
    sync::{SyncMetrics, SyncState},
};

/// The process table's sync column, filled by [`summary`].
pub const SYNC: Column = column("SYNCS/S ×W", 12, false, None);

/// How a sync-per-write verdict stands out.
pub fn sync_per_write_flag() -> Span<'static> {
    Span::styled("SYNC/WRITE", Style::new().red().bold())
}

/// `120 ×1`: syncs a second in the last interval and the median writes each
/// made durable; empty for a process that never synced; red when flagged.
pub fn summary(process: &ProcessState) -> Line<'static> {
    if process.syncs.is_empty() {
        return Line::default();
    }
    let m = &process.sync_metrics;
    let text = match m.writes_per_sync {
        Some(q) => format!("{} ×{}", format::rate(m.calls_per_sec), q.p50),
        None => format::rate(m.calls_per_sec),
    };
    let style = if process.sync_per_write { Style::new().red().bold() } else { Style::new() };
    Line::from(Span::styled(text, style))
}

/// One line per descriptor that synced in the last interval or is flagged,
/// the verdicts with their flag (the detail pane adds the advice).
pub fn findings(process: &ProcessState) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for (&fd, state) in &process.syncs {
        if let Some(reason) = state.flag.reason() {
            lines.push(Line::from(vec![sync_per_write_flag(), format!(" {reason}").into()]));
        } else if state.metrics.calls > 0 || state.metrics.errors.total > 0 {
            lines.push(Line::from(describe(fd, state)));
        }
    }
    lines
}

/// `fd 3 (file /db): 120 syncs/s, 1 write each (p50), 2.1ms each (p50), 25% waiting, 0 failed`.
fn describe(fd: i32, state: &SyncState) -> String {
    let m: &SyncMetrics = &state.metrics;
    let writes = m.writes_per_sync.map_or_else(String::new, |q| format!(", {} write(s) each (p50)", q.p50));
    let latency = m.latency_ns.map_or_else(String::new, |q| format!(", {} each (p50)", human_ns(q.p50)));
    format!(
        "{}: {} syncs/s{writes}{latency}, {:.0}% waiting, {} failed",
        state.describe(fd),
        format::rate(m.calls_per_sec),
        m.wait_share * 100.0,
        m.errors.total,
    )
}
