//! The detail pane of the selected process: its descriptors and rings, why
//! it is flagged, and histograms of its last interval, for the whole process
//! or for the descriptor in focus.

use std::time::Duration;

use agent_common::{io_uring::SUBMIT_SLOTS, write::WriteStats};
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::Stylize as _,
    text::Line,
    widgets::{Block, Borders, Cell, Paragraph, Row, TableState, Wrap},
};

use super::{
    bars::{Label, bars},
    columns::{
        Column, METRIC_COLUMNS, column, depth_cell, metric_cells, round_trip_flag, table, text_cells, unbatched_flag,
    },
    format,
    snapshot::{Snapshot, drops_per_sec},
    sync,
    uring::{self, MAX_RING_ROWS, trickle_flag},
};
use crate::model::{
    FdState, ProcessState,
    classify::TimerFlush,
    human::{human_bytes, human_ns},
};

const FD: Column = column("FD", 4, true, None);
const KIND: Column = column("KIND", 8, false, None);
const TARGET: Column = column("TARGET", 0, false, None);
/// `92% 3.6MiB/4MiB`: the share, then the payload queued and the limit.
const DEPTH: Column = column("DEPTH queued/max", 19, true, None);
const FLAG: Column = column("FLAG", 9, false, None);
const TIMER: Column = column("TIMER FLUSH", 24, false, None);

/// Most descriptor rows shown at once; the table scrolls to the one in focus.
const MAX_FD_ROWS: u16 = 8;
/// Most lines of findings, so the histograms keep their room.
const MAX_FINDING_LINES: u16 = 6;

/// Length of a container id in the title, as `docker ps` shortens it.
const SHORT_ID: usize = 12;

/// The pane's content for one process.
pub struct Detail<'a> {
    process: &'a ProcessState,
    focus_fd: Option<i32>,
    findings: Vec<Line<'static>>,
    /// What the histograms draw.
    last_interval: WriteStats,
    /// SQEs per enter in the last interval, for a process with rings.
    sqes_per_enter: Option<[u64; SUBMIT_SLOTS]>,
    interval: Duration,
}

impl<'a> Detail<'a> {
    pub fn new(snapshot: &Snapshot, process: &'a ProcessState, focus_fd: Option<i32>) -> Detail<'a> {
        let interval = snapshot.node.interval;
        let has_rings = process.io_uring.as_ref().is_some_and(|u| !u.rings.is_empty());
        Detail {
            process,
            focus_fd,
            findings: findings(process, interval),
            last_interval: snapshot.last_interval(process, focus_fd),
            sqes_per_enter: has_rings.then(|| snapshot.sqes_per_enter(process)),
            interval,
        }
    }

    /// Lines the pane needs at `width`: its title, then its parts.
    pub fn height(&self, width: u16) -> u16 {
        1 + self.part_heights(width).iter().sum::<u16>()
    }

    /// Whether the descriptor table and the write histograms are drawn: not
    /// for a process that only ever used its rings.
    fn shows_fds(&self) -> bool {
        !self.process.fds.is_empty() || self.sqes_per_enter.is_none()
    }

    /// Heights of the descriptor table, the ring table, the findings and
    /// the histograms.
    fn part_heights(&self, width: u16) -> [u16; 4] {
        let fds = if self.shows_fds() { (self.process.fds.len() as u16).min(MAX_FD_ROWS) + 1 } else { 0 };
        let rings = self.process.io_uring.as_ref().map_or(0, |u| u.rings.len() as u16);
        let rings = if rings == 0 { 0 } else { rings.min(MAX_RING_ROWS) + 1 };
        let wrapped = |line: &Line| line.width().max(1).div_ceil(width.max(1).into()) as u16;
        let findings = self.findings.iter().map(wrapped).sum::<u16>().min(MAX_FINDING_LINES);
        let buckets = self.panels().into_iter().map(|(_, slots, _, _)| slots.iter().filter(|&&n| n > 0).count() as u16);
        // Borders around at least one line ("no writes").
        [fds, rings, findings, buckets.max().unwrap_or(0).max(1) + 2]
    }

    /// Draws into `area`; when it is shorter than [`Detail::height`], the
    /// histograms give up lines first.
    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let block = Block::new().borders(Borders::TOP).title(title(self.process).bold());
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let [fds, rings, findings, _] = self.part_heights(inner.width);
        let [fds_area, rings_area, findings_area, histograms_area] = Layout::vertical([
            Constraint::Length(fds),
            Constraint::Length(rings),
            Constraint::Length(findings),
            Constraint::Fill(1),
        ])
        .areas(inner);
        if self.shows_fds() {
            draw_fds(frame, fds_area, self.process, self.focus_fd);
        }
        if let Some(uring) = self.process.io_uring.as_ref().filter(|u| !u.rings.is_empty()) {
            uring::draw_rings(frame, rings_area, uring, self.interval);
        }
        frame.render_widget(Paragraph::new(self.findings.clone()).wrap(Wrap { trim: true }), findings_area);
        self.draw_histograms(frame, histograms_area);
    }

    /// The histogram panels: title, slots, bucket label, and what an empty
    /// one says.
    fn panels(&self) -> Vec<(String, &[u64], Label, &'static str)> {
        let whose = self.focus_fd.map_or_else(|| "all fds".to_owned(), |fd| format!("fd {fd}"));
        let stats = &self.last_interval;
        let mut panels: Vec<(String, &[u64], Label, &'static str)> = Vec::new();
        if self.shows_fds() {
            const NO_WRITES: &str = "no writes in the last interval";
            panels.extend([
                (format!("bytes per call · {whose}"), &stats.bytes_hist[..], human_bytes as Label, NO_WRITES),
                (format!("records per call · {whose}"), &stats.records_hist, |records| records.to_string(), NO_WRITES),
                (format!("gap between writes · {whose}"), &stats.gap_hist, human_ns, NO_WRITES),
            ]);
        }
        if let Some(slots) = &self.sqes_per_enter {
            let only_sqpoll = self.process.io_uring.iter().flat_map(|u| &u.rings).all(|r| r.sqpoll());
            let empty = if only_sqpoll {
                "SQPOLL: the poller submits, no enter to count"
            } else {
                "no SQE submitted by an enter in the last interval"
            };
            panels.push(("SQEs per io_uring_enter".to_owned(), slots, |sqes| sqes.to_string(), empty));
        }
        panels
    }

    fn draw_histograms(&self, frame: &mut Frame, area: Rect) {
        let panels = self.panels();
        let count = panels.len() as u32;
        let areas = Layout::horizontal((0..count).map(|_| Constraint::Ratio(1, count))).split(area);
        for ((what, slots, label, empty), &area) in panels.into_iter().zip(areas.iter()) {
            let block = Block::bordered().title(format!(" {what} · last interval "));
            let inner = block.inner(area);
            let lines = bars(slots, label, inner.width.into(), inner.height.into(), empty);
            frame.render_widget(Paragraph::new(lines).block(block), area);
        }
    }
}

/// ` pid 100 logger · docker 3f8b3b1c0f2a: /usr/bin/logger --run `: the
/// container, if any, by its runtime and short id; the process's language
/// runtime (` · go go1.19.8`) once known.
fn title(process: &ProcessState) -> String {
    let identity = &process.identity;
    let exited = if process.exited.is_some() { " (exited)" } else { "" };
    let runtime = identity.runtime.as_ref().map_or_else(String::new, |r| {
        format!(" · {}{}", r.name.name(), r.version.as_ref().map_or_else(String::new, |v| format!(" {v}")))
    });
    let container = identity
        .container
        .as_ref()
        .map_or_else(String::new, |c| format!(" · {} {}", c.runtime, c.id.get(..SHORT_ID).unwrap_or(&c.id)));
    format!(" pid {} {}{exited}{runtime}{container}: {} ", identity.pid, identity.comm, identity.command)
}

fn draw_fds(frame: &mut Frame, area: Rect, process: &ProcessState, focus_fd: Option<i32>) {
    let columns: Vec<&Column> =
        [&FD, &KIND, &TARGET].into_iter().chain(&METRIC_COLUMNS).chain([&DEPTH, &FLAG, &TIMER]).collect();
    let rows = process.fds.iter().map(|(&fd, state)| fd_row(fd, state, &columns));
    let focused = focus_fd.and_then(|focus| process.fds.keys().position(|&fd| fd == focus));
    let table = table(rows, &columns, None);
    frame.render_stateful_widget(table, area, &mut TableState::new().with_selected(focused));
}

fn fd_row<'a>(fd: i32, state: &FdState, columns: &[&Column]) -> Row<'a> {
    let (kind, target) = state.info.as_ref().map_or(("?", ""), |info| (info.kind.name(), info.target.as_str()));
    let mut texts = vec![fd.to_string(), kind.to_owned(), target.to_owned()];
    texts.extend(metric_cells(&state.metrics, drops_per_sec(&state.metrics)));
    let mut cells = text_cells(texts, columns);
    let depth = state.depth.map(|d| {
        let text = format!(
            "{} {}/{}",
            format::percent(d.percent()),
            format::size(d.queued_bytes),
            format::size(d.capacity_bytes)
        );
        (d.percent(), text)
    });
    cells.push(depth_cell(depth, &DEPTH));
    // Not `Cell::default()`: ratatui 0.30 derives it with a column span of 0,
    // which draws the next cell in its place.
    let flag = match (state.flag.is_raised(), state.round_trip.is_raised()) {
        (true, _) => unbatched_flag(),
        (false, true) => round_trip_flag(),
        (false, false) => "".into(),
    };
    cells.push(Cell::from(flag));
    cells.push(Cell::from(state.timer.as_ref().map(timer_period).unwrap_or_default()));
    Row::new(cells)
}

/// `every 20.0ms (92%)`: the period and the share of gaps in its peak.
fn timer_period(timer: &TimerFlush) -> String {
    format!("every {} ({:.0}%)", human_ns(timer.period_ns), timer.share * 100.0)
}

/// Why the process is flagged, what its descriptors' gaps say, and what its
/// rings refused or lost, in words.
fn findings(process: &ProcessState, interval: Duration) -> Vec<Line<'static>> {
    // The model's reasons, told from the flags that gave them, so that each
    // line carries its own flag.
    let rings = process.io_uring.iter().flat_map(|u| &u.rings);
    let fd_reasons = process.fds.values().flat_map(|fd| {
        [fd.flag.reason().map(|r| (unbatched_flag(), r)), fd.round_trip.reason().map(|r| (round_trip_flag(), r))]
    });
    let ring_reasons = rings.flat_map(|ring| {
        [ring.unbatched.reason().map(|r| (unbatched_flag(), r)), ring.trickle.reason().map(|r| (trickle_flag(), r))]
    });
    let mut lines: Vec<Line> = fd_reasons
        .flatten()
        .chain(ring_reasons.flatten())
        .map(|(flag, reason)| Line::from(vec![flag, format!(" {reason}").into()]))
        .collect();
    lines.extend(sync::findings(process));
    if lines.is_empty() {
        // Flagged once and cleared since: still worth knowing.
        lines.extend(process.last_reasons.iter().map(|reason| Line::from(format!("flagged earlier: {reason}")).dim()));
    }
    lines.extend(process.advice.iter().map(|advice| Line::from(vec!["advice ".green().bold(), advice.clone().into()])));
    for (fd, timer) in process.fds.iter().filter_map(|(fd, state)| state.timer.map(|timer| (fd, timer))) {
        lines.push(Line::from(vec![format!("fd {fd} ").yellow(), timer.describe().into()]));
    }
    if let Some(uring) = &process.io_uring {
        lines.extend(uring::findings(uring, interval));
    }
    if lines.is_empty() {
        lines.push(Line::from("not flagged: no descriptor or ring is an un-batched hot writer").dim());
    }
    lines
}

#[cfg(test)]
mod tests {
    use crossterm::event::{KeyCode, KeyEvent};
    use ratatui::{buffer::Buffer, style::Color};

    use super::*;
    use crate::view::{
        app::ViewState,
        testing::{self, cells, line_with, lines, words, x_of},
    };

    /// The screen with the detail pane open, after pressing `keys`.
    fn detail_screen(snapshot: &Snapshot, keys: &[KeyCode]) -> Vec<String> {
        let mut state = ViewState::default();
        for &key in [KeyCode::Enter].iter().chain(keys) {
            state.on_key(KeyEvent::from(key), snapshot);
        }
        lines(&testing::draw(snapshot, &state, 200, 50))
    }

    #[test]
    fn a_sync_per_write_process_shows_its_syncs_verdict_and_advice() {
        let (_, shown) = testing::with_syncer();
        let (_, screen) = detail_of(&shown, "journal");
        line_with(&screen, " pid 500 journal");
        let (_, verdict) = line_with(&screen, "sync per write");
        assert!(
            verdict.starts_with(
                "SYNC/WRITE fd 4 (file /var/lib/journal): sync per write, 120 syncs/s with a median of 1 write(s) \
                 each, 2000 µs each, for 3 s; 24% of the time spent waiting in sync"
            ),
            "{verdict}"
        );
        let (_, advice) = line_with(&screen, "advice");
        assert!(advice.starts_with("advice group commit"), "{advice}");
    }

    #[test]
    fn flagged_process_shows_its_fds_reasons_and_histograms() {
        let (_, shown) = testing::three_writers();
        let screen = detail_screen(&shown, &[]);
        line_with(&screen, " pid 100 logger: /usr/bin/logger --run ");
        let (fd_header, titles) = line_with(&screen, "TARGET");
        assert_eq!(
            words(titles),
            [
                "FD",
                "KIND",
                "TARGET",
                "WRITES/S",
                "BYTES/CALL",
                "p50/p99",
                "REC/CALL",
                "GAP",
                "p50/p99",
                "DROPS/S",
                "DEPTH",
                "queued/max",
                "FLAG",
                "TIMER",
                "FLUSH"
            ]
        );
        assert_eq!(
            words(&screen[usize::from(fd_header) + 1]),
            ["3", "tcp", "socket:[7]", "50.0k", "128", "B/128", "B", "1.0", "32.8µs/32.8µs", "0", "-", "UNBATCHED"]
        );
        let (_, reason) = line_with(&screen, "median 1 record");
        assert!(
            reason.starts_with(
                "UNBATCHED fd 3 (tcp socket:[7]): 50000 writes/s, median 1 record and 100 B per call, for 3 s \
                 of the last 10 s"
            ),
            "{reason}"
        );
        let (_, advice) = line_with(&screen, "advice ");
        assert!(advice.starts_with("advice fd 3 (tcp socket:[7]): native: give the stream full buffering"), "{advice}");
        let (titles_row, titles) = line_with(&screen, "bytes per call");
        for title in ["bytes per call", "records per call", "gap between writes"] {
            assert!(titles.contains(&format!(" {title} · all fds · last interval ")), "{titles}");
        }
        // One bucket each in the last interval: 65-128 B, 1 record, 16-32 µs.
        assert_eq!(panels(&screen[usize::from(titles_row) + 1]), ["128 B █ 100%", "1 █ 100%", "32.8µs █ 100%"]);
        assert!(screen[usize::from(titles_row) + 2].starts_with('└'), "the pane fits its content");
    }

    #[test]
    fn tab_focuses_the_histograms_on_one_descriptor() {
        let (mut model, shown) = testing::three_writers();
        let logger = testing::identity(100, "logger");
        model.record(&logger, 3, Some(&testing::socket(7)), &testing::Write::HOT.stats());
        let big = testing::Write { calls: 10, records: 4, bytes: 70_000, gap_ns: 3_000_000, eagain: 0 };
        model.record(&logger, 9, Some(&testing::socket(70)), &big.stats());
        model.close_interval(1.0);
        let shown = Snapshot::capture(&model, testing::node(), &shown);

        let screen = detail_screen(&shown, &[]);
        let (titles_row, _) = line_with(&screen, " bytes per call · all fds · last interval ");
        assert_eq!(panels(&screen[usize::from(titles_row) + 1]), ["128 B █ 100%", "1 █ 100%", "32.8µs █ 100%"]);
        // 10 of 50010 calls: a sliver, still drawn.
        assert_eq!(panels(&screen[usize::from(titles_row) + 2]), ["128 KiB █ <1%", "4 █ <1%", "4.2ms █ <1%"]);

        let screen = detail_screen(&shown, &[KeyCode::Tab, KeyCode::Tab]);
        let (titles_row, _) = line_with(&screen, " bytes per call · fd 9 · last interval ");
        assert_eq!(panels(&screen[usize::from(titles_row) + 1]), ["128 KiB █ 100%", "4 █ 100%", "4.2ms █ 100%"]);
        let (_, fd9) = line_with(&screen, "socket:[70]");
        assert_eq!(words(fd9)[..4], ["9", "tcp", "socket:[70]", "10"]);
    }

    #[test]
    fn timer_flushing_is_explained() {
        let (mut model, shown) = testing::three_writers();
        testing::add_ticker(&mut model);
        model.close_interval(1.0);
        let shown = Snapshot::capture(&model, testing::node(), &shown);
        // The only writer in the last interval: the top row.
        let screen = detail_screen(&shown, &[]);
        line_with(&screen, " pid 400 ticker: /usr/bin/ticker --run ");
        let (_, row) = line_with(&screen, "pipe:[12]");
        assert!(row.ends_with("every 20.0ms (100%)"), "{row}");
        let (_, finding) = line_with(&screen, "flushes on a timer");
        assert!(
            finding.starts_with(
                "fd 6 flushes on a timer every 20.0ms (100% of gaps in 16.8ms-33.6ms), median batch 199 B"
            ),
            "{finding}"
        );
    }

    #[test]
    fn a_cleared_flag_is_still_told() {
        let (mut model, shown) = testing::three_writers();
        let logger = testing::identity(100, "logger");
        let mut shown = shown;
        // A whole window (10 intervals) of slow ones clears the flag.
        for _ in 0..10 {
            model.record(
                &logger,
                3,
                Some(&testing::socket(7)),
                &testing::Write { calls: 10, ..testing::Write::HOT }.stats(),
            );
            model.close_interval(1.0);
            shown = Snapshot::capture(&model, testing::node(), &shown);
        }
        let mut state = ViewState::default();
        state.filter = "logger".into();
        state.detail = true;
        let screen = lines(&testing::draw(&shown, &state, 200, 50));
        let (_, finding) = line_with(&screen, "flagged earlier: fd 3 (tcp socket:[7]): ");
        assert!(!finding.contains("UNBATCHED"), "{finding}");
        assert!(!line_with(&screen, "   3 tcp").1.contains("UNBATCHED"), "the fd is no longer flagged");
    }

    /// The screen with the detail pane of the one process named `name` open.
    fn detail_of(snapshot: &Snapshot, name: &str) -> (Buffer, Vec<String>) {
        let mut state = ViewState::default();
        state.filter = name.into();
        state.detail = true;
        let buffer = testing::draw(snapshot, &state, 180, 40);
        let screen = lines(&buffer);
        (buffer, screen)
    }

    #[test]
    fn descriptors_show_their_depth_in_bytes_and_stand_out_from_80_percent() {
        let (mut model, shown) = testing::three_writers();
        testing::add_depths(&mut model);
        let shown = Snapshot::capture(&model, testing::node(), &shown);
        for (name, depth, colour) in [
            ("logger", "92% 3.6MiB/4MiB", Color::Yellow),
            ("dropper", "100% 64KiB/64KiB", Color::Red),
            ("batcher", "-", Color::Reset),
        ] {
            let (buffer, screen) = detail_of(&shown, name);
            let (header, titles) = line_with(&screen, "TARGET");
            // Right-aligned: the title's last cell is the text's last cell.
            let end = x_of(titles, "queued/max") + "queued/max".len() as u16;
            // Each has one descriptor.
            let (y, row) = (header + 1, &screen[usize::from(header) + 1]);
            assert_eq!(cells(row, end - 19, 19), depth, "{row}");
            assert_eq!(buffer[(end - 1, y)].fg, colour, "{name}: {row}");
        }
    }

    #[test]
    fn the_title_names_the_container() {
        let mut model = testing::model();
        model.record(&testing::in_container(100, "logger"), 3, Some(&testing::socket(7)), &testing::Write::HOT.stats());
        model.close_interval(1.0);
        let shown = Snapshot::capture(&model, testing::node(), &Snapshot::empty(testing::node()));
        let (_, screen) = detail_of(&shown, "logger");
        line_with(&screen, " pid 100 logger · docker 3f8b3b1c0f2a: /usr/bin/logger --run ");
    }

    #[test]
    fn a_batching_ring_is_tabled_with_its_drops_and_sqes_per_enter() {
        let (_, shown) = testing::uring_users();
        let (_, screen) = detail_of(&shown, "batch32");
        line_with(&screen, " pid 600 batch32: /usr/bin/batch32 --run ");
        assert!(!screen.iter().any(|line| line.contains("TARGET")), "no descriptor table: it only used its ring");
        let (header, titles) = line_with(&screen, "SQE/ENTER");
        assert_eq!(
            words(titles),
            [
                "FD",
                "MODE",
                "ENTRIES",
                "ENTERS/S",
                "SQES/S",
                "SQE/ENTER",
                "p50/p99",
                "WAKE/S",
                "SQ%/CQ%",
                "OVERFL/S",
                "FAILED/S",
                "FLAG"
            ]
        );
        assert_eq!(
            words(&screen[usize::from(header) + 1]),
            ["8", "enter", "32/64", "1.0k", "32.0k", "32/32", "-", "0%/87%", "10", "7"]
        );
        let (_, drops) = line_with(&screen, "CQ overflows/s");
        assert_eq!(
            drops,
            "io_uring ring fd 8 10 CQ overflows/s (completions not reaped in time), 7 failed completions/s (2 EAGAIN)"
        );
        line_with(&screen, "io_uring completions failed since first seen: Broken pipe (os error 32) ×15");
        let (titles_row, titles) = line_with(&screen, " SQEs per io_uring_enter · last interval ");
        assert!(!titles.contains("bytes per call"), "no write histograms: {titles}");
        assert_eq!(
            words(&screen[usize::from(titles_row) + 1]).iter().map(|w| squeeze(w)).collect::<Vec<_>>(),
            ["│32", "█", "100%│"]
        );
    }

    #[test]
    fn one_sqe_per_enter_and_sqpoll_rings_are_told_apart() {
        let (_, shown) = testing::uring_users();
        let (buffer, screen) = detail_of(&shown, "submit1");
        let (header, _) = line_with(&screen, "SQE/ENTER");
        let (y, row) = (header + 1, &screen[usize::from(header) + 1]);
        assert_eq!(words(row), ["7", "enter", "8/16", "5.0k", "5.0k", "1/1", "-", "0%/12%", "0", "0", "UNBATCHED"]);
        assert_eq!(buffer[(x_of(row, "UNBATCHED"), y)].fg, Color::Red);
        let (_, reason) = line_with(&screen, "submitting 1 SQE each");
        assert!(reason.starts_with("UNBATCHED io_uring ring fd 7: 5000 io_uring_enter calls/s"), "{reason}");
        let (titles_row, _) = line_with(&screen, " SQEs per io_uring_enter · last interval ");
        assert!(screen[usize::from(titles_row) + 1].contains("│1 █"), "{}", screen[usize::from(titles_row) + 1]);

        let (_, screen) = detail_of(&shown, "sqpoll");
        let (header, _) = line_with(&screen, "SQE/ENTER");
        assert_eq!(
            words(&screen[usize::from(header) + 1]),
            ["9", "SQPOLL", "16/32", "0", "100.0k", "-", "0", "18%/0%", "0", "0"]
        );
        line_with(&screen, "SQPOLL: the poller submits, no enter to count");
        line_with(&screen, "not flagged: no descriptor or ring is an un-batched hot writer");

        let (_, screen) = detail_of(&shown, "trickle");
        let (header, _) = line_with(&screen, "SQE/ENTER");
        assert_eq!(
            words(&screen[usize::from(header) + 1]),
            ["10", "SQPOLL", "16/32", "40", "40", "-", "40", "0%/0%", "0", "0", "SQPOLL", "trickle"]
        );
        let (_, reason) = line_with(&screen, "its poller fell asleep");
        assert!(
            reason.starts_with(
                "SQPOLL trickle io_uring ring fd 10 (SQPOLL): its poller fell asleep and was woken 40 times/s"
            ),
            "{reason}"
        );
    }

    #[test]
    fn a_denied_ring_is_explained() {
        let (_, shown) = testing::uring_users();
        let (_, screen) = detail_of(&shown, "denied");
        assert!(!screen.iter().any(|line| line.contains("SQE/ENTER")), "no ring to table");
        line_with(&screen, "/var/log/fallback.log");
        let (_, finding) = line_with(&screen, "io_uring_setup refused");
        assert_eq!(
            finding,
            "io_uring denied io_uring_setup refused 1 time (EPERM: seccomp or kernel.io_uring_disabled): the process falls \
             back to plain syscalls, or fails"
        );
        line_with(&screen, " bytes per call · all fds · last interval ");
    }

    /// A bar squeezed to one cell.
    fn squeeze(word: &str) -> String {
        if word.chars().all(|c| c == '█') { "█".to_owned() } else { word.to_owned() }
    }

    /// The text inside each of the three histogram panels on a line, a bar
    /// squeezed to one cell.
    fn panels(line: &str) -> Vec<String> {
        let parts: Vec<&str> = line.split('│').collect();
        let squeeze = |word: &str| if word.chars().all(|c| c == '█') { "█".to_owned() } else { word.to_owned() };
        [1, 3, 5].iter().map(|&i| parts[i].split_whitespace().map(squeeze).collect::<Vec<_>>().join(" ")).collect()
    }
}
