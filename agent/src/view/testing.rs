//! Snapshots of known writers, for the view's tests: built through the real
//! model from the deltas a collector would hand it.

use std::time::Duration;

use agent_common::{
    hist::log2_slot,
    write::{Outcome, WriteStats, WriteSyscall},
};

use ratatui::{Terminal, backend::TestBackend, buffer::Buffer};

use super::{
    app::ViewState,
    render,
    snapshot::{NodeFacts, Snapshot},
};
use crate::{
    collector::ProbeErrors,
    config::Config,
    fds::{FdInfo, FdKind},
    identity::Identity,
    model::{Model, Rules, metrics::Transition},
};

/// One interval of same-sized calls on one descriptor.
#[derive(Debug, Clone, Copy)]
pub struct Write {
    pub calls: u64,
    pub records: u64,
    /// Bytes asked per call.
    pub bytes: u64,
    pub gap_ns: u64,
    /// Calls that failed with EAGAIN.
    pub eagain: u64,
}

impl Write {
    /// An un-batched hot writer: 50k one-record calls of 100 B a second.
    pub const HOT: Write = Write { calls: 50_000, records: 1, bytes: 100, gap_ns: 20_000, eagain: 0 };

    pub fn stats(&self) -> WriteStats {
        let mut s = WriteStats::ZERO;
        let syscall = if self.records == 1 { WriteSyscall::Write } else { WriteSyscall::Writev };
        s.calls[syscall as usize] = self.calls;
        s.outcomes[Outcome::Complete as usize] = self.calls - self.eagain;
        s.outcomes[Outcome::WouldBlock as usize] = self.eagain;
        s.bytes_requested = self.calls * self.bytes;
        s.bytes_written = (self.calls - self.eagain) * self.bytes;
        s.records = self.calls * self.records;
        s.bytes_hist[log2_slot(self.bytes, s.bytes_hist.len())] = self.calls;
        s.records_hist[log2_slot(self.records, s.records_hist.len())] = self.calls;
        s.gap_hist[log2_slot(self.gap_ns, s.gap_hist.len())] = self.calls;
        s
    }
}

/// A model with the default rules and a crossing cost of 1 µs, so that
/// 1000 calls/s cost 0.001 cores.
pub fn model() -> Model {
    let config = Config::default();
    Model::new(Rules {
        hot_writer: config.hot_writer,
        timer_flush: config.timer_flush,
        io_uring: config.io_uring,
        transition: Transition { cost_ns: 1000.0, batch_target: 64 },
        degraded: false,
    })
}

pub fn node() -> NodeFacts {
    NodeFacts {
        interval: Duration::from_secs(1),
        transition_cost_ns: 1000.0,
        cost_measured: false,
        probes_attached: 16,
        probes_failed: vec!["sys_exit_pwritev2".to_owned()],
        tracked_fds: 3,
        errors: ProbeErrors { stats_map_full: 2, args_unreadable: 5, uring_map_full: 1 },
    }
}

pub fn identity(pid: u32, comm: &str) -> Identity {
    Identity {
        pid,
        start_ticks: 1000 + u64::from(pid),
        comm: comm.to_owned(),
        command: format!("/usr/bin/{comm} --run"),
        container: None,
    }
}

pub fn socket(inode: u64) -> FdInfo {
    FdInfo { kind: FdKind::Tcp, target: format!("socket:[{inode}]") }
}

/// Three one-second intervals of three writers, and the snapshot the view
/// took after the last one:
/// - `logger` (pid 100), fd 3 a TCP socket: 50k one-record calls of 100 B a
///   second, so it is flagged;
/// - `batcher` (pid 200), fd 4 a file: 2000 writev()s of 16 records, 8 KiB;
/// - `dropper` (pid 300), fd 5 a pipe: 1200 one-record calls of 4 KiB, 300
///   of which fail with EAGAIN.
pub fn three_writers() -> (Model, Snapshot) {
    let mut model = model();
    let mut shown = Snapshot::empty(node());
    let file = FdInfo { kind: FdKind::File, target: "/var/log/batch.log".to_owned() };
    let pipe = FdInfo { kind: FdKind::Pipe, target: "pipe:[9]".to_owned() };
    let batched = Write { calls: 2000, records: 16, bytes: 8192, gap_ns: 500_000, eagain: 0 };
    let dropping = Write { calls: 1200, records: 1, bytes: 4096, gap_ns: 800_000, eagain: 300 };
    for _ in 0..3 {
        model.record(&identity(100, "logger"), 3, Some(&socket(7)), &Write::HOT.stats());
        model.record(&identity(200, "batcher"), 4, Some(&file), &batched.stats());
        model.record(&identity(300, "dropper"), 5, Some(&pipe), &dropping.stats());
        model.close_interval(1.0);
        shown = Snapshot::capture(&model, node(), &shown);
    }
    (model, shown)
}

/// A timer-driven batcher: `ticker` (pid 400), fd 6 a pipe, 50 calls 20 ms
/// apart, most of 200 B and a few of 6400 B.
pub fn add_ticker(model: &mut Model) {
    let ticker = identity(400, "ticker");
    let pipe = FdInfo { kind: FdKind::Pipe, target: "pipe:[12]".to_owned() };
    for (calls, bytes) in [(45, 200), (5, 6400)] {
        model.record(
            &ticker,
            6,
            Some(&pipe),
            &Write { calls, records: 1, bytes, gap_ns: 20_000_000, eagain: 0 }.stats(),
        );
    }
}

/// Draws the whole screen into a `width` × `height` buffer.
pub fn draw(snapshot: &Snapshot, state: &ViewState, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test terminal");
    terminal.draw(|frame| render::draw(frame, snapshot, state)).expect("drawing");
    terminal.backend().buffer().clone()
}

/// The buffer's text, line by line, trailing spaces removed.
pub fn lines(buffer: &Buffer) -> Vec<String> {
    let area = buffer.area;
    (0..area.height)
        .map(|y| (0..area.width).map(|x| buffer[(x, y)].symbol()).collect::<String>().trim_end().to_owned())
        .collect()
}

/// The one line holding `text`, with its row number.
pub fn line_with<'a>(lines: &'a [String], text: &str) -> (u16, &'a str) {
    let found: Vec<_> = lines.iter().enumerate().filter(|(_, line)| line.contains(text)).collect();
    assert_eq!(found.len(), 1, "one line with {text:?} in:\n{}", lines.join("\n"));
    (found[0].0 as u16, found[0].1)
}

/// The words of a line, as a column-blind way to check a row.
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}
