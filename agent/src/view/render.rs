//! Drawing the live view from a snapshot and the view state: the header with
//! the node's facts, the process table, the detail pane (in `detail`) and the
//! keys. Nothing here reads the agent, so all of it draws in tests.

use std::time::Duration;

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Margin, Rect},
    style::{Style, Stylize as _},
    text::Line,
    widgets::{Cell, Paragraph, Row, TableState},
};

use super::{
    app::{SortColumn, ViewState},
    columns::{
        Column, METRIC_COLUMNS, cell, column, depth_cell, metric_cells, round_trip_flag, table, text_cells,
        unbatched_flag,
    },
    detail::Detail,
    format,
    snapshot::{NodeFacts, Snapshot, process_drops_per_sec},
    sync::{self, SYNC, sync_per_write_flag},
    uring::{self, IO_URING, trickle_flag},
};
use crate::model::ProcessState;

/// The whole screen.
pub fn draw(frame: &mut Frame, snapshot: &Snapshot, state: &ViewState) {
    let rows = state.rows(snapshot);
    let selected = state.selected(&rows);
    let area = frame.area();
    let detail =
        selected.filter(|_| state.detail).map(|row| Detail::new(snapshot, rows[row], state.focus_fd(rows[row])));
    // The pane takes what its content needs, up to 60% of the screen.
    let detail_height = detail.as_ref().map_or(0, |detail| detail.height(area.width).min(area.height * 3 / 5));
    let [header, table, detail_area, footer] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(3),
        Constraint::Length(detail_height),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_lines(snapshot, state.paused)), header);
    draw_processes(frame, table, &rows, selected, state, snapshot.node.interval);
    if let Some(detail) = detail {
        detail.draw(frame, detail_area);
    }
    frame.render_widget(Paragraph::new(footer_line(state)), footer);
}

fn header_lines(snapshot: &Snapshot, paused: bool) -> Vec<Line<'static>> {
    let node = &snapshot.node;
    let totals = snapshot.totals();
    let mut title = vec![
        "batchwatch".bold(),
        format!("  write batching per process, refreshed every {}", humantime::format_duration(node.interval)).into(),
    ];
    if paused {
        title.push("  PAUSED (measuring goes on)".black().on_yellow());
    }
    let sqes = if totals.sqes_per_sec > 0.0 {
        format!(" + {} io_uring SQEs/s", format::rate(totals.sqes_per_sec))
    } else {
        String::new()
    };
    let mut summary = vec![
        format!(
            "total {} writes/s{sqes} │ {} est. cores crossing into the kernel │ {} flagged ",
            format::rate(totals.writes_per_sec),
            format::cores(totals.transition_cores),
            totals.flagged,
        )
        .into(),
    ];
    let live = snapshot.processes.iter().filter(|p| p.exited.is_none());
    let (unbatched, trickle) = live.map(verdicts).fold((false, false), |(u, t), (pu, pt)| (u || pu, t || pt));
    let flags = [unbatched.then(unbatched_flag), trickle.then(trickle_flag)];
    summary.extend(flags.into_iter().flatten().flat_map(|flag| [flag, " ".into()]));
    let mut lines = vec![Line::from(title), node_facts(node)];
    if node.degraded.is_none() {
        lines.push(Line::from(kernel_errors(node)));
    }
    lines.push(Line::from(summary));
    lines
}

/// The node line; in the degraded mode, what is missing instead.
fn node_facts(node: &NodeFacts) -> Line<'static> {
    match &node.degraded {
        Some(reason) => Line::from(
            format!("DEGRADED: /proc/PID/io averages per process only, no BPF, no syncs ({reason})").white().on_red(),
        ),
        None => Line::from(probe_facts(node)),
    }
}

fn probe_facts(node: &NodeFacts) -> String {
    let failed = match node.probes_failed.as_slice() {
        [] => "0 failed".to_owned(),
        names => format!("{} failed ({})", names.len(), names.join(", ")),
    };
    format!(
        "transition {:.0} ns ({}) │ probes {} attached ({}), {failed} │ tracked fds {}",
        node.transition_cost_ns,
        if node.cost_measured { "measured" } else { "configured" },
        node.probes_attached,
        node.attach_mode.unwrap_or("-"),
        node.tracked_fds,
    )
}

/// What the kernel side could not record: every loss counted, on screen.
fn kernel_errors(node: &NodeFacts) -> String {
    let e = &node.errors;
    format!(
        "kernel errors: {} fds and {} rings untracked (map full) │ args of {} calls unreadable, {} clamped │ \
         {} 32-bit calls skipped │ {} calls missed (recursion) │ {} exits missed",
        e.stats_map_full,
        e.uring_map_full,
        e.args_unreadable,
        e.args_clamped,
        e.compat_skipped,
        e.recursion_misses,
        e.exits_missed,
    )
}

const PID: Column = column("PID", 7, true, Some(SortColumn::Pid));
const COMMAND: Column = column("COMMAND", 15, false, None);
/// The fullest of the process's buffers: sockets, pipes, io_uring queues.
const DEPTH: Column = column("DEPTH%", 6, true, None);
const CORES: Column = column("EST.CORES", 11, true, Some(SortColumn::Cores));
const FLAG: Column = column("FLAG", 0, false, None);

fn draw_processes(
    frame: &mut Frame,
    area: Rect,
    rows: &[&ProcessState],
    selected: Option<usize>,
    state: &ViewState,
    interval: Duration,
) {
    let columns: Vec<&Column> =
        [&PID, &COMMAND].into_iter().chain(&METRIC_COLUMNS).chain([&DEPTH, &IO_URING, &SYNC, &CORES, &FLAG]).collect();
    let table_rows = rows.iter().map(|p| process_row(p, &columns, interval));
    let table = table(table_rows, &columns, Some((state.sort, state.reversed)));
    frame.render_stateful_widget(table, area, &mut TableState::new().with_selected(selected));
    if rows.is_empty() {
        let why = if state.filter.is_empty() && !state.only_unbatched {
            "no process has written yet"
        } else {
            "no process matches the filter"
        };
        frame.render_widget(Paragraph::new(why).dim(), area.inner(Margin::new(1, 1)));
    }
}

fn process_row<'a>(p: &ProcessState, columns: &[&Column], interval: Duration) -> Row<'a> {
    let mut texts = vec![p.identity.pid.to_string(), p.identity.comm.clone()];
    // Drops count the process's io_uring drops too (`process_drops_per_sec`
    // says which), so that DROPS/S is every refusal or loss whatever path
    // the data took.
    texts.extend(metric_cells(&p.metrics, process_drops_per_sec(p, interval)));
    let mut cells = text_cells(texts, columns);
    cells.push(depth_cell(p.depth_percent().map(|percent| (percent, format::percent(percent))), &DEPTH));
    cells.push(cell(uring::summary(p), &IO_URING));
    cells.push(cell(sync::summary(p), &SYNC));
    cells.push(cell(format::cores(p.transition_cores()), &CORES));
    cells.push(Cell::from(process_flags(p)));
    // An exited process lingers a few seconds, dimmed, before it goes.
    let style = if p.exited.is_some() { Style::new().dim() } else { Style::new() };
    Row::new(cells).style(style)
}

/// `UNBATCHED`, `SQPOLL trickle`, `timer flush`, `exited`: what stands out
/// about a process. The model's verdict (`unbatched`) covers both un-batched
/// writers and rings and SQPOLL trickles; they are told apart here.
fn process_flags(p: &ProcessState) -> Line<'static> {
    let (unbatched, trickle) = verdicts(p);
    let flags = [
        unbatched.then(unbatched_flag),
        trickle.then(trickle_flag),
        p.round_trip_bound.then(round_trip_flag),
        p.sync_per_write.then(sync_per_write_flag),
        p.fds.values().any(|fd| fd.timer.is_some()).then(|| "timer flush".yellow()),
        p.exited.is_some().then(|| "exited".into()),
    ];
    Line::from(flags.into_iter().flatten().flat_map(|flag| [" ".into(), flag]).skip(1).collect::<Vec<_>>())
}

/// Whether `p` is an un-batched writer (a descriptor or a ring), and
/// whether an SQPOLL ring of it runs on a trickle.
fn verdicts(p: &ProcessState) -> (bool, bool) {
    let rings = || p.io_uring.iter().flat_map(|u| &u.rings);
    let unbatched = p.hot_fds().next().is_some() || rings().any(|r| r.unbatched.is_raised());
    (unbatched, rings().any(|r| r.trickle.is_raised()))
}

fn footer_line(state: &ViewState) -> Line<'static> {
    if state.editing_filter {
        return Line::from(vec![
            "filter: ".bold(),
            format!("{}▏", state.filter).into(),
            "   Enter keep · Esc clear".dim(),
        ]);
    }
    let on = |flag: bool| if flag { " [on]" } else { "" };
    let filter = if state.filter.is_empty() { String::new() } else { format!(": {}", state.filter) };
    let keys = [
        ("q Esc ^C", "quit".to_owned()),
        ("↑↓ j k", "select".to_owned()),
        ("Enter", "details".to_owned()),
        ("Tab", "fd histograms".to_owned()),
        ("s", format!("sort: {}", state.sort.name())),
        ("r", format!("reverse{}", on(state.reversed))),
        ("/", format!("filter{filter}")),
        ("u", format!("unbatched only{}", on(state.only_unbatched))),
        ("p", if state.paused { "resume".to_owned() } else { "pause".to_owned() }),
    ];
    let spans = keys.into_iter().flat_map(|(key, what)| [key.black().on_cyan(), format!(" {what}  ").into()]);
    Line::from(spans.collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use ratatui::style::{Color, Modifier};

    use super::*;
    use crate::view::testing::{self, cells, line_with, lines, words, x_of};

    const IO_URING_WIDTH: u16 = 20;

    #[test]
    fn header_tells_the_node_facts_and_totals() {
        let (_, shown) = testing::three_writers();
        let screen = lines(&testing::draw(&shown, &ViewState::default(), 200, 30));
        assert_eq!(screen[0], "batchwatch  write batching per process, refreshed every 1s");
        assert_eq!(
            screen[1],
            "transition 1000 ns (configured) │ probes 16 attached (tracepoint), 1 failed (sys_exit_pwritev2) │ tracked fds 3"
        );
        assert_eq!(
            screen[2],
            "kernel errors: 2 fds and 1 rings untracked (map full) │ args of 5 calls unreadable, 0 clamped │ 0 32-bit \
             calls skipped │ 0 calls missed (recursion) │ 0 exits missed"
        );
        assert_eq!(screen[3], "total 53.2k writes/s │ 0.053 est. cores crossing into the kernel │ 1 flagged UNBATCHED");
    }

    #[test]
    fn degraded_mode_says_so_in_the_header() {
        let (_, mut shown) = testing::three_writers();
        shown.node.degraded = Some("bpf(): Operation not permitted".to_owned());
        let screen = lines(&testing::draw(&shown, &ViewState::default(), 200, 30));
        assert_eq!(
            screen[1],
            "DEGRADED: /proc/PID/io averages per process only, no BPF, no syncs (bpf(): Operation not permitted)"
        );
    }

    #[test]
    fn process_rows_by_cores_with_their_metrics_and_flag() {
        let (_, shown) = testing::three_writers();
        let buffer = testing::draw(&shown, &ViewState::default(), 200, 30);
        let screen = lines(&buffer);
        let (header, titles) = line_with(&screen, "COMMAND");
        assert_eq!(
            words(titles),
            [
                "PID",
                "COMMAND",
                "WRITES/S",
                "BYTES/CALL",
                "p50/p99",
                "REC/CALL",
                "GAP",
                "p50/p99",
                "DROPS/S",
                "DEPTH%",
                "IO_URING",
                "SYNCS/S",
                "×W",
                "EST.CORES",
                "▼",
                "FLAG"
            ]
        );
        let (logger, logger_line) = line_with(&screen, "logger");
        let (batcher, batcher_line) = line_with(&screen, "batcher");
        let (dropper, dropper_line) = line_with(&screen, "dropper");
        assert_eq!((logger, batcher, dropper), (header + 1, header + 2, header + 3), "sorted by est. cores");
        assert_eq!(
            words(logger_line),
            ["100", "logger", "50.0k", "128", "B/128", "B", "1.0", "32.8µs/32.8µs", "0", "-", "0.050", "UNBATCHED"]
        );
        assert_eq!(
            words(batcher_line),
            ["200", "batcher", "2.0k", "8", "KiB/8", "KiB", "16.0", "524.3µs/524.3µs", "0", "-", "0.002"]
        );
        assert_eq!(
            words(dropper_line),
            ["300", "dropper", "1.2k", "4", "KiB/4", "KiB", "1.0", "1.0ms/1.0ms", "300", "-", "0.001"]
        );
        let flag_x = logger_line.find("UNBATCHED").map(|byte| logger_line[..byte].chars().count()).unwrap();
        assert_eq!(buffer[(flag_x as u16, logger)].fg, Color::Red, "the flag stands out");
    }

    #[test]
    fn sync_column_tells_syncs_a_second_and_writes_per_sync() {
        let (_, shown) = testing::with_syncer();
        let buffer = testing::draw(&shown, &ViewState::default(), 200, 30);
        let screen = lines(&buffer);
        let (_, titles) = line_with(&screen, "COMMAND");
        let x = x_of(titles, "SYNCS/S");
        let (y, journal) = line_with(&screen, "journal");
        assert_eq!(cells(journal, x, 12), "120 ×1");
        assert_eq!(buffer[(x, y)].fg, Color::Red, "flagged sync per write");
        assert!(journal.contains(" SYNC/WRITE") && !journal.contains("UNBATCHED"), "{journal}");
        let (_, logger) = line_with(&screen, "logger");
        assert_eq!(cells(logger, x, 12), "", "never synced");
    }

    #[test]
    fn depth_is_the_fullest_buffer_and_stands_out_from_80_percent() {
        let (mut model, shown) = testing::three_writers();
        testing::add_depths(&mut model);
        let shown = Snapshot::capture(&model, testing::node(), &shown);
        let buffer = testing::draw(&shown, &ViewState::default(), 180, 30);
        let screen = lines(&buffer);
        let (_, titles) = line_with(&screen, "COMMAND");
        // Right-aligned under the title, which is as wide as the column.
        let x = x_of(titles, "DEPTH%");
        for (name, depth, colour) in
            [("logger", "92%", Color::Yellow), ("batcher", "-", Color::Reset), ("dropper", "100%", Color::Red)]
        {
            let (y, line) = line_with(&screen, name);
            assert_eq!(cells(line, x, 6), depth, "{line}");
            assert_eq!(buffer[(x + 5, y)].fg, colour, "{name}: {line}");
        }
    }

    #[test]
    fn io_uring_column_tells_one_sqe_per_enter_batches_and_sqpoll_apart() {
        let (_, shown) = testing::uring_users();
        // The widest row, with its flags, fits in 180 columns.
        let buffer = testing::draw(&shown, &ViewState::default(), 180, 30);
        let screen = lines(&buffer);
        assert_eq!(
            screen[3],
            "total 10 writes/s + 137.0k io_uring SQEs/s │ 0.006 est. cores crossing into the kernel │ 2 flagged UNBATCHED \
             SQPOLL trickle"
        );
        let (header, titles) = line_with(&screen, "COMMAND");
        assert!(titles.ends_with("EST.CORES ▼ FLAG"), "{titles}");
        let x = x_of(titles, "IO_URING");
        let io_uring = |name: &str| {
            let (y, line) = line_with(&screen, name);
            (cells(line, x, IO_URING_WIDTH), buffer[(x, y)].fg)
        };
        assert_eq!(io_uring("submit1"), ("1 SQE/enter".to_owned(), Color::Red), "flagged un-batched");
        assert_eq!(io_uring("batch32"), ("32 SQE/enter".to_owned(), Color::Reset));
        assert_eq!(io_uring("sqpoll"), ("SQPOLL 0 enters/s".to_owned(), Color::Reset), "zero syscalls");
        assert_eq!(io_uring("750 trickle"), ("SQPOLL 40 wake/s".to_owned(), Color::Yellow), "flagged a trickle");
        assert_eq!(io_uring("denied"), ("denied".to_owned(), Color::Yellow));

        // By est. cores: 5000 and 1000 enters/s, 40 wake-ups, 10 writes, none.
        let rows: Vec<&str> = screen[usize::from(header) + 1..].iter().take(5).map(|l| words(l)[1]).collect();
        assert_eq!(rows, ["submit1", "batch32", "trickle", "denied", "sqpoll"]);
        assert_eq!(
            words(line_with(&screen, "batch32").1),
            ["600", "batch32", "0", "-", "-", "-", "17", "87%", "32", "SQE/enter", "0.001"],
            "10 CQ overflows and 7 failed completions a second are drops; the CQ is 87% full"
        );
        assert!(line_with(&screen, "submit1").1.ends_with(" 0.005 UNBATCHED"));
        let (_, trickle) = line_with(&screen, "750 trickle");
        assert!(trickle.ends_with(" SQPOLL trickle") && !trickle.contains("UNBATCHED"), "{trickle}");
        assert_eq!(words(line_with(&screen, "sqpoll").1)[7], "18%", "SQ 3 of 16");

        let mut state = ViewState::default();
        state.sort = SortColumn::Drops;
        let screen = lines(&testing::draw(&shown, &state, 180, 30));
        let (header, _) = line_with(&screen, "COMMAND");
        assert_eq!(words(&screen[usize::from(header) + 1])[1], "batch32", "io_uring drops sort too");
    }

    #[test]
    fn exited_processes_are_dimmed_and_timer_flushers_marked() {
        let (mut model, shown) = testing::three_writers();
        testing::add_ticker(&mut model);
        model.close_interval(1.0);
        model.exit(300, 1.0);
        let shown = Snapshot::capture(&model, testing::node(), &shown);
        let buffer = testing::draw(&shown, &ViewState::default(), 200, 30);
        let screen = lines(&buffer);
        let (dropper, dropper_line) = line_with(&screen, "dropper");
        assert!(dropper_line.ends_with(" exited"), "{dropper_line}");
        assert!(buffer[(0, dropper)].modifier.contains(Modifier::DIM));
        let (ticker, ticker_line) = line_with(&screen, "ticker");
        assert!(ticker_line.ends_with(" timer flush"), "{ticker_line}");
        assert!(!buffer[(0, ticker)].modifier.contains(Modifier::DIM));
    }

    #[test]
    fn sort_arrow_filter_and_keys_are_shown() {
        let (_, shown) = testing::three_writers();
        let mut state = ViewState::default();
        (state.sort, state.reversed, state.only_unbatched, state.paused) = (SortColumn::Drops, true, true, true);
        state.filter = "er".into();
        let screen = lines(&testing::draw(&shown, &state, 200, 30));
        assert!(screen[0].ends_with("PAUSED (measuring goes on)"), "{}", screen[0]);
        assert!(line_with(&screen, "COMMAND").1.contains("DROPS/S ▲"));
        line_with(&screen, "logger");
        assert!(!screen.iter().any(|line| line.contains("batcher") || line.contains("dropper")), "only the unbatched");
        assert_eq!(
            screen[29],
            "q Esc ^C quit  ↑↓ j k select  Enter details  Tab fd histograms  s sort: drops  r reverse [on]  / filter: er  \
             u unbatched only [on]  p resume"
        );
    }

    #[test]
    fn empty_tables_say_why() {
        let empty = Snapshot::empty(testing::node());
        let screen = lines(&testing::draw(&empty, &ViewState::default(), 120, 12));
        line_with(&screen, "no process has written yet");
        let (_, shown) = testing::three_writers();
        let mut state = ViewState::default();
        (state.filter, state.editing_filter) = ("nobody".into(), true);
        let screen = lines(&testing::draw(&shown, &state, 120, 12));
        line_with(&screen, "no process matches the filter");
        assert_eq!(screen[11], "filter: nobody▏   Enter keep · Esc clear");
    }
}
