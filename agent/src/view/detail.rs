//! The detail pane of the selected process: its descriptors, why it is
//! flagged, and histograms of its last interval, for the whole process or
//! for the descriptor in focus.

use agent_common::write::WriteStats;
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::Stylize as _,
    text::Line,
    widgets::{Block, Borders, Cell, Paragraph, Row, TableState, Wrap},
};

use super::{
    bars::{Label, bars},
    columns::{Column, METRIC_COLUMNS, column, metric_cells, table, text_cells, unbatched_flag},
    snapshot::Snapshot,
};
use crate::model::{
    FdState, ProcessState,
    classify::{TimerFlush, human_bytes, human_ns},
};

const FD: Column = column("FD", 4, true, None);
const KIND: Column = column("KIND", 8, false, None);
const TARGET: Column = column("TARGET", 0, false, None);
const FLAG: Column = column("FLAG", 9, false, None);
const TIMER: Column = column("TIMER FLUSH", 24, false, None);

/// Most descriptor rows shown at once; the table scrolls to the one in focus.
const MAX_FD_ROWS: u16 = 8;
/// Most lines of findings, so the histograms keep their room.
const MAX_FINDING_LINES: u16 = 6;

/// The pane's content for one process.
pub struct Detail<'a> {
    process: &'a ProcessState,
    focus_fd: Option<i32>,
    findings: Vec<Line<'static>>,
    /// What the histograms draw.
    last_interval: WriteStats,
}

impl<'a> Detail<'a> {
    pub fn new(snapshot: &Snapshot, process: &'a ProcessState, focus_fd: Option<i32>) -> Detail<'a> {
        Detail {
            process,
            focus_fd,
            findings: findings(process),
            last_interval: snapshot.last_interval(process, focus_fd),
        }
    }

    /// Lines the pane needs at `width`: its title, then its parts.
    pub fn height(&self, width: u16) -> u16 {
        1 + self.part_heights(width).iter().sum::<u16>()
    }

    /// Heights of the descriptor table, the findings and the histograms.
    fn part_heights(&self, width: u16) -> [u16; 3] {
        let fds = (self.process.fds.len() as u16).min(MAX_FD_ROWS) + 1;
        let wrapped = |line: &Line| line.width().max(1).div_ceil(width.max(1).into()) as u16;
        let findings = self.findings.iter().map(wrapped).sum::<u16>().min(MAX_FINDING_LINES);
        let stats = &self.last_interval;
        let buckets = [&stats.bytes_hist[..], &stats.records_hist, &stats.gap_hist]
            .map(|slots| slots.iter().filter(|&&n| n > 0).count() as u16);
        // Borders around at least one line ("no writes").
        [fds, findings, buckets.into_iter().max().unwrap_or(0).max(1) + 2]
    }

    /// Draws into `area`; when it is shorter than [`Detail::height`], the
    /// histograms give up lines first.
    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let block = Block::new().borders(Borders::TOP).title(title(self.process).bold());
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let [fds, findings, _] = self.part_heights(inner.width);
        let [fds_area, findings_area, histograms_area] =
            Layout::vertical([Constraint::Length(fds), Constraint::Length(findings), Constraint::Fill(1)]).areas(inner);
        draw_fds(frame, fds_area, self.process, self.focus_fd);
        frame.render_widget(Paragraph::new(self.findings.clone()).wrap(Wrap { trim: true }), findings_area);
        draw_histograms(frame, histograms_area, &self.last_interval, self.focus_fd);
    }
}

fn title(process: &ProcessState) -> String {
    let identity = &process.identity;
    let exited = if process.exited.is_some() { " (exited)" } else { "" };
    format!(" pid {} {}{exited}: {} ", identity.pid, identity.comm, identity.command)
}

fn draw_fds(frame: &mut Frame, area: Rect, process: &ProcessState, focus_fd: Option<i32>) {
    let columns: Vec<&Column> =
        [&FD, &KIND, &TARGET].into_iter().chain(&METRIC_COLUMNS).chain([&FLAG, &TIMER]).collect();
    let rows = process.fds.iter().map(|(&fd, state)| fd_row(fd, state, &columns));
    let focused = focus_fd.and_then(|focus| process.fds.keys().position(|&fd| fd == focus));
    let table = table(rows, &columns, None);
    frame.render_stateful_widget(table, area, &mut TableState::new().with_selected(focused));
}

fn fd_row<'a>(fd: i32, state: &FdState, columns: &[&Column]) -> Row<'a> {
    let (kind, target) = state.info.as_ref().map_or(("?", ""), |info| (info.kind.name(), info.target.as_str()));
    let mut texts = vec![fd.to_string(), kind.to_owned(), target.to_owned()];
    texts.extend(metric_cells(&state.metrics));
    let mut cells = text_cells(texts, columns);
    // Not `Cell::default()`: ratatui 0.30 derives it with a column span of 0,
    // which draws the next cell in its place.
    cells.push(Cell::from(if state.flag.is_raised() { unbatched_flag() } else { "".into() }));
    cells.push(Cell::from(state.timer.as_ref().map(timer_period).unwrap_or_default()));
    Row::new(cells)
}

/// `16.8ms-33.6ms (92%)`: the period's range and the share of gaps in it.
fn timer_period(timer: &TimerFlush) -> String {
    format!("{}-{} ({:.0}%)", human_ns(timer.period_min_ns), human_ns(timer.period_max_ns), timer.share * 100.0)
}

/// Why the process is flagged, and what its descriptors' gaps say, in words.
fn findings(process: &ProcessState) -> Vec<Line<'static>> {
    let mut lines: Vec<Line> =
        process.reasons.iter().map(|reason| Line::from(vec![unbatched_flag(), format!(" {reason}").into()])).collect();
    if lines.is_empty() {
        // Flagged once and cleared since: still worth knowing.
        lines.extend(process.last_reasons.iter().map(|reason| Line::from(format!("flagged earlier: {reason}")).dim()));
    }
    for (fd, timer) in process.fds.iter().filter_map(|(fd, state)| state.timer.map(|timer| (fd, timer))) {
        lines.push(Line::from(vec![format!("fd {fd} ").yellow(), timer.describe().into()]));
    }
    if lines.is_empty() {
        lines.push(Line::from("not flagged: no descriptor is an un-batched hot writer").dim());
    }
    lines
}

fn draw_histograms(frame: &mut Frame, area: Rect, stats: &WriteStats, focus_fd: Option<i32>) {
    let whose = focus_fd.map_or_else(|| "all fds".to_owned(), |fd| format!("fd {fd}"));
    let panels: [(&str, &[u64], Label); 3] = [
        ("bytes per call", &stats.bytes_hist, human_bytes),
        ("records per call", &stats.records_hist, |records| records.to_string()),
        ("gap between writes", &stats.gap_hist, human_ns),
    ];
    let areas: [Rect; 3] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(area);
    for ((what, slots, label), area) in panels.into_iter().zip(areas) {
        let block = Block::bordered().title(format!(" {what} · {whose} · last interval "));
        let inner = block.inner(area);
        let lines = bars(slots, label, inner.width.into(), inner.height.into());
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::{KeyCode, KeyEvent};

    use super::*;
    use crate::view::{
        app::ViewState,
        testing::{self, line_with, lines, words},
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
                "DEPTH%",
                "FLAG",
                "TIMER",
                "FLUSH"
            ]
        );
        assert_eq!(
            words(&screen[usize::from(fd_header) + 1]),
            ["3", "tcp", "socket:[7]", "50.0k", "64", "B/64", "B", "1.0", "16.4µs/16.4µs", "0", "-", "UNBATCHED"]
        );
        let (_, reason) = line_with(&screen, "median 1 record");
        assert!(
            reason.starts_with(
                "UNBATCHED fd 3 (tcp socket:[7]): 50000 writes/s, median 1 record and 64 B per call, for 3 s"
            ),
            "{reason}"
        );
        let (titles_row, titles) = line_with(&screen, "bytes per call");
        for title in ["bytes per call", "records per call", "gap between writes"] {
            assert!(titles.contains(&format!(" {title} · all fds · last interval ")), "{titles}");
        }
        // One bucket each in the last interval: 64-127 B, 1 record, 16-32 µs.
        assert_eq!(panels(&screen[usize::from(titles_row) + 1]), ["64 B █ 100%", "1 █ 100%", "16.4µs █ 100%"]);
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
        assert_eq!(panels(&screen[usize::from(titles_row) + 1]), ["64 B █ 100%", "1 █ 100%", "16.4µs █ 100%"]);
        // 10 of 50010 calls: a sliver, still drawn.
        assert_eq!(panels(&screen[usize::from(titles_row) + 2]), ["64 KiB █ <1%", "4 █ <1%", "2.1ms █ <1%"]);

        let screen = detail_screen(&shown, &[KeyCode::Tab, KeyCode::Tab]);
        let (titles_row, _) = line_with(&screen, " bytes per call · fd 9 · last interval ");
        assert_eq!(panels(&screen[usize::from(titles_row) + 1]), ["64 KiB █ 100%", "4 █ 100%", "2.1ms █ 100%"]);
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
        assert!(row.ends_with("16.8ms-33.6ms (100%)"), "{row}");
        let (_, finding) = line_with(&screen, "flushes on a timer");
        assert!(
            finding.starts_with("fd 6 flushes on a timer of 16.8ms-33.6ms (100% of gaps) with median batches of 128 B"),
            "{finding}"
        );
    }

    #[test]
    fn a_cleared_flag_is_still_told() {
        let (mut model, shown) = testing::three_writers();
        let logger = testing::identity(100, "logger");
        let mut shown = shown;
        // Three slow intervals clear the flag.
        for _ in 0..3 {
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

    /// The text inside each of the three histogram panels on a line, a bar
    /// squeezed to one cell.
    fn panels(line: &str) -> Vec<String> {
        let parts: Vec<&str> = line.split('│').collect();
        let squeeze = |word: &str| if word.chars().all(|c| c == '█') { "█".to_owned() } else { word.to_owned() };
        [1, 3, 5].iter().map(|&i| parts[i].split_whitespace().map(squeeze).collect::<Vec<_>>().join(" ")).collect()
    }
}
