//! io_uring in the live view: the few words of the process table that tell
//! apart, at a glance, a process submitting one SQE per `io_uring_enter`,
//! one that batches and one on SQPOLL; and the detail pane's table of its
//! rings, with what they dropped and why they are flagged.

use std::{io, time::Duration};

use ratatui::{
    Frame,
    layout::Rect,
    style::{Style, Stylize as _},
    text::{Line, Span},
    widgets::{Cell, Row, TableState},
};

use super::{
    columns::{Column, cell, column, depth_style, table, text_cells, unbatched_flag},
    format::{self, NONE},
    snapshot::{per_sec, ring_failures},
};
use crate::model::{
    ProcessState,
    io_uring::{RingMetrics, RingState, UringState},
};

/// The process table's io_uring column, filled by [`summary`].
pub const IO_URING: Column = column("IO_URING", 20, false, None);

const FD: Column = column("FD", 4, true, None);
const MODE: Column = column("MODE", 6, false, None);
const ENTRIES: Column = column("ENTRIES", 11, true, None);
const ENTERS: Column = column("ENTERS/S", 9, true, None);
const SQES: Column = column("SQES/S", 9, true, None);
const PER_ENTER: Column = column("SQE/ENTER p50/p99", 17, true, None);
const WAKEUPS: Column = column("WAKE/S", 7, true, None);
const DEPTH: Column = column("SQ%/CQ%", 9, true, None);
const OVERFLOWS: Column = column("OVERFL/S", 8, true, None);
const FAILED: Column = column("FAILED/S", 8, true, None);
const FLAG: Column = column("FLAG", 0, false, None);

/// Most ring rows shown at once.
pub const MAX_RING_ROWS: u16 = 4;

/// How an SQPOLL ring whose poller keeps falling asleep stands out.
pub fn trickle_flag() -> Span<'static> {
    Span::styled("SQPOLL trickle", Style::new().yellow().bold())
}

/// The process table's io_uring cell, over the last interval:
/// - `1 SQE/enter`, `32 SQE/enter`: SQEs over `io_uring_enter` calls of the
///   rings without SQPOLL, those that only wait for completions included,
///   so it is what each syscall carries (the exact mean: the log2 median of
///   40 would read 32), red once a ring is flagged un-batched;
/// - `SQPOLL 0 enters/s` while the poller keeps up, `SQPOLL 40 wake/s`
///   when the application has to wake it, yellow once flagged a trickle;
/// - `denied` when `io_uring_setup` was refused and no ring is busy;
///   `idle` for rings that did nothing; blank without io_uring.
pub fn summary(process: &ProcessState) -> Line<'static> {
    let Some(uring) = &process.io_uring else { return Line::default() };
    let text = summary_text(uring);
    let style = if uring.rings.iter().any(|r| r.unbatched.is_raised()) {
        Style::new().red().bold()
    } else if uring.rings.iter().any(|r| r.trickle.is_raised()) || text == "denied" {
        Style::new().yellow()
    } else {
        Style::new()
    };
    Line::from(Span::styled(text, style))
}

fn summary_text(uring: &UringState) -> String {
    let busy = uring.rings.iter().filter(|r| r.metrics.enters > 0 || r.metrics.sqes > 0);
    let (polled, entered): (Vec<&RingState>, Vec<&RingState>) = busy.partition(|r| r.sqpoll());
    let sum = |rings: &[&RingState], of: fn(&RingMetrics) -> f64| rings.iter().map(|r| of(&r.metrics)).sum::<f64>();
    let entered = (!entered.is_empty()).then(|| {
        let (enters, sqes) = (sum(&entered, |m| m.enters as f64), sum(&entered, |m| m.sqes as f64));
        if enters == 0.0 {
            // SQEs of a ring whose enters went unseen (its fd unknown).
            format!("{} SQEs/s", format::rate(sum(&entered, |m| m.sqes_per_sec)))
        } else {
            format!("{} SQE/enter", format::amount(sqes / enters))
        }
    });
    let polled = (!polled.is_empty()).then(|| {
        let wakeups = sum(&polled, |m| m.wakeups as f64);
        if wakeups > 0.0 {
            format!("SQPOLL {} wake/s", format::rate(sum(&polled, |m| m.wakeups_per_sec)))
        } else {
            format!("SQPOLL {} enters/s", format::rate(sum(&polled, |m| m.enters_per_sec)))
        }
    });
    match (entered, polled) {
        (Some(entered), Some(_)) => format!("{entered} +SQPOLL"),
        (Some(text), None) | (None, Some(text)) => text,
        (None, None) if uring.denied_setups() > 0 => "denied".to_owned(),
        (None, None) if !uring.rings.is_empty() => "idle".to_owned(),
        (None, None) if uring.setups.other_errors > 0 => "set-up failed".to_owned(),
        (None, None) => String::new(),
    }
}

/// The table of `uring`'s rings, over the last interval, `interval` long.
pub fn draw_rings(frame: &mut Frame, area: Rect, uring: &UringState, interval: Duration) {
    let columns = [&FD, &MODE, &ENTRIES, &ENTERS, &SQES, &PER_ENTER, &WAKEUPS, &DEPTH, &OVERFLOWS, &FAILED, &FLAG];
    let rows = uring.rings.iter().map(|ring| ring_row(ring, interval, &columns));
    frame.render_stateful_widget(table(rows, &columns, None), area, &mut TableState::new());
}

fn ring_row<'a>(ring: &RingState, interval: Duration, columns: &[&Column]) -> Row<'a> {
    let m = &ring.metrics;
    let entries = ring.setup.map(|s| (s.sq_entries, s.cq_entries)).or(ring.depth.map(|d| (d.sq_entries, d.cq_entries)));
    let texts = vec![
        ring.fd.map_or_else(|| "?".to_owned(), |fd| fd.to_string()),
        if ring.sqpoll() { "SQPOLL" } else { "enter" }.to_owned(),
        entries.map_or_else(|| NONE.to_owned(), |(sq, cq)| format!("{sq}/{cq}")),
        format::rate(m.enters_per_sec),
        format::rate(m.sqes_per_sec),
        m.sqes_per_enter.map_or_else(|| NONE.to_owned(), |q| format!("{}/{}", q.p50, q.p99)),
        if ring.sqpoll() { format::rate(m.wakeups_per_sec) } else { NONE.to_owned() },
    ];
    let mut cells = text_cells(texts, columns);
    cells.push(cell(queue_depths(ring), &DEPTH));
    cells.push(cell(format::rate(per_sec(m, m.cq_overflows, interval)), &OVERFLOWS));
    cells.push(cell(format::rate(per_sec(m, ring_failures(m), interval)), &FAILED));
    let flags = [ring.unbatched.is_raised().then(unbatched_flag), ring.trickle.is_raised().then(trickle_flag)];
    let flags: Vec<Span> = flags.into_iter().flatten().flat_map(|flag| [" ".into(), flag]).skip(1).collect();
    // Not `Cell::default()`: its column span of 0 draws the next cell in its place.
    cells.push(Cell::from(Line::from(flags)));
    Row::new(cells)
}

/// `37%/75%`: submission and completion queue occupancy at the last look,
/// each standing out past the alert threshold.
fn queue_depths(ring: &RingState) -> Line<'static> {
    let Some(depth) = ring.depth else { return Line::from(NONE) };
    let share = |percent: f64| Span::styled(format::percent(percent), depth_style(percent));
    Line::from(vec![share(depth.sq_percent()), "/".into(), share(depth.cq_percent())])
}

/// What the pane says about `uring` in words: set-ups refused, what each
/// ring dropped in the last interval, and failed completions by errno.
pub fn findings(uring: &UringState, interval: Duration) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let denied = uring.denied_setups();
    if denied > 0 {
        let causes = [
            (uring.setups.eperm > 0).then_some("EPERM: seccomp or kernel.io_uring_disabled"),
            (uring.setups.enosys > 0).then_some("ENOSYS: no io_uring in the kernel, or hidden by seccomp"),
        ];
        let causes: Vec<&str> = causes.into_iter().flatten().collect();
        lines.push(Line::from(vec![
            "io_uring denied".yellow(),
            format!(
                " io_uring_setup refused {denied} time{} ({}): the process falls back to plain syscalls, or fails",
                if denied == 1 { "" } else { "s" },
                causes.join("; "),
            )
            .into(),
        ]));
    }
    for ring in &uring.rings {
        let m = &ring.metrics;
        let rate = |count: u64| format::rate(per_sec(m, count, interval));
        let parts = [
            (m.cq_overflows > 0)
                .then(|| format!("{} CQ overflows/s (completions not reaped in time)", rate(m.cq_overflows))),
            (ring_failures(m) > 0).then(|| {
                let at_submission = if m.failed > 0 {
                    format!(", {} of them failed at submission", rate(m.failed))
                } else {
                    String::new()
                };
                format!(
                    "{} failed completions/s ({} EAGAIN{at_submission})",
                    rate(ring_failures(m)),
                    rate(m.cqe_eagain)
                )
            }),
            (m.short_writes > 0).then(|| format!("{} short writes/s", rate(m.short_writes))),
        ];
        let parts: Vec<String> = parts.into_iter().flatten().collect();
        if !parts.is_empty() {
            let name =
                ring.fd.map_or_else(|| "io_uring ring (fd unknown)".to_owned(), |fd| format!("io_uring ring fd {fd}"));
            lines.push(Line::from(vec![format!("{name} ").yellow(), parts.join(", ").into()]));
        }
    }
    if !uring.cqe_errors.is_empty() {
        let errors: Vec<String> = uring
            .cqe_errors
            .iter()
            .map(|(&errno, &count)| format!("{} ×{count}", io::Error::from_raw_os_error(errno as i32)))
            .collect();
        lines.push(Line::from(format!("io_uring completions failed since first seen: {}", errors.join(", "))));
    }
    lines
}
