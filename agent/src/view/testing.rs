//! Snapshots of known writers, for the view's tests: built through the real
//! model from the deltas a collector would hand it.

use std::time::Duration;

use agent_common::{
    hist::log2_slot,
    io_uring::{EnterStats, RingOpStats, RingSetup, SETUP_SQPOLL, SUBMIT_SLOTS, SetupStats},
};

use ratatui::{Terminal, backend::TestBackend, buffer::Buffer};

use super::{
    app::ViewState,
    render,
    snapshot::{NodeFacts, Snapshot},
};
pub use crate::testing::Write;
use crate::{
    attribution::container::Container,
    attribution::fds::{FdInfo, FdKind},
    attribution::identity::Identity,
    bpf::collector::ProbeErrors,
    config::Config,
    depth::fdinfo::RingFdinfo,
    depth::{Depth, SocketProtocol},
    model::{Model, Rules},
};

/// A model with the default rules and a transition cost of 1 µs, so that
/// 1000 calls/s cost 0.001 cores.
pub fn model() -> Model {
    Model::new(Rules::new(&Config::default(), 1000.0, false))
}

pub fn node() -> NodeFacts {
    NodeFacts {
        interval: Duration::from_secs(1),
        transition_cost_ns: 1000.0,
        cost_measured: false,
        probes_attached: 16,
        probes_failed: vec!["sys_exit_pwritev2".to_owned()],
        tracked_fds: 3,
        errors: ProbeErrors { stats_map_full: 2, args_unreadable: 5, uring_map_full: 1, ..ProbeErrors::default() },
        attach_mode: Some("tracepoint"),
        degraded: None,
    }
}

pub fn identity(pid: u32, comm: &str) -> Identity {
    Identity {
        pid,
        start_ticks: 1000 + u64::from(pid),
        comm: comm.to_owned(),
        command: format!("/usr/bin/{comm} --run"),
        container: None,
        runtime: None,
    }
}

pub fn socket(inode: u64) -> FdInfo {
    FdInfo { kind: FdKind::Tcp, target: format!("socket:[{inode}]"), synced_writes: false }
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
    let file = FdInfo { kind: FdKind::File, target: "/var/log/batch.log".to_owned(), synced_writes: false };
    let pipe = FdInfo { kind: FdKind::Pipe, target: "pipe:[9]".to_owned(), synced_writes: false };
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
    let pipe = FdInfo { kind: FdKind::Pipe, target: "pipe:[12]".to_owned(), synced_writes: false };
    for (calls, bytes) in [(45, 200), (5, 6400)] {
        model.record(
            &ticker,
            6,
            Some(&pipe),
            &Write { calls, records: 1, bytes, gap_ns: 20_000_000, eagain: 0 }.stats(),
        );
    }
}

/// Buffer depths sampled for two of [`three_writers`]: the logger's TCP
/// socket 92% full (3.6 MiB of payload queued in a 4 MiB send buffer, 3.7
/// MiB charged), the dropper's pipe full (64 KiB of 64 KiB); the batcher
/// writes a file, which has no depth.
pub fn add_depths(model: &mut Model) {
    let mib = 1 << 20;
    let tcp = Depth {
        queued_bytes: 3_774_874,
        charged_bytes: 3_860_000,
        capacity_bytes: 4 * mib,
        protocol: Some(SocketProtocol::Tcp),
        exchange: None,
    };
    model.set_depth(100, 3, tcp);
    let pipe =
        Depth { queued_bytes: 65_536, charged_bytes: 65_536, capacity_bytes: 65_536, protocol: None, exchange: None };
    model.set_depth(300, 5, pipe);
}

/// One interval of `io_uring_enter` calls on one ring fd.
#[derive(Debug, Clone, Copy)]
pub struct Enters {
    pub enters: u64,
    /// SQEs each enter submits.
    pub per_enter: u64,
    /// Enters that woke an SQPOLL poller.
    pub wakeups: u64,
}

impl Enters {
    pub fn stats(&self) -> EnterStats {
        let mut e = EnterStats {
            enters: self.enters,
            sq_wakeups: self.wakeups,
            submitting: self.enters,
            submitted: self.enters * self.per_enter,
            ..EnterStats::ZERO
        };
        if self.enters > 0 {
            e.submitted_hist[log2_slot(self.per_enter, SUBMIT_SLOTS)] = self.enters;
        }
        e
    }
}

/// One interval of `sqes` write SQEs on a ring, and what went wrong.
pub fn ring_ops(sqes: u64) -> RingOpStats {
    RingOpStats { sqes, sqes_by_class: [sqes, 0, 0], ..RingOpStats::ZERO }
}

pub fn ring_setup(tgid: u32, fd: i32, sq_entries: u32, flags: u32) -> RingSetup {
    RingSetup { tgid, fd, sq_entries, cq_entries: 2 * sq_entries, flags, _pad: 0 }
}

/// A ring's fdinfo with `sq_pending` and `cq_pending` entries in use.
pub fn ring_fdinfo(setup: &RingSetup, sq_pending: u32, cq_pending: u32) -> RingFdinfo {
    RingFdinfo {
        sq_entries: setup.sq_entries,
        cq_entries: setup.cq_entries,
        sq_pending,
        cq_pending,
        sqpoll: setup.flags & SETUP_SQPOLL != 0,
    }
}

/// Three one-second intervals of five io_uring users, and the snapshot the
/// view took after the last one (a transition costs 1 µs):
/// - `submit1` (pid 500), ring fd 7 (8/16 entries): 5000 enters a second
///   of one SQE each, so it is flagged; CQ 2 of 16 full;
/// - `batch32` (pid 600), ring fd 8 (32/64 entries): 1000 enters of 32
///   SQEs; CQ 56 of 64 full (87%); each second 10 completions overflow the
///   CQ and 7 fail (2 with EAGAIN, 5 with EPIPE);
/// - `sqpoll` (pid 700), ring fd 9 with SQPOLL: 100k SQEs a second, no enter;
/// - `trickle` (pid 750), ring fd 10 with SQPOLL: 40 SQEs a second, each
///   after an enter that wakes the poller, so it is flagged a trickle;
/// - `denied` (pid 800): `io_uring_setup` refused with EPERM once; falls
///   back to 10 write()s a second on fd 3, a file.
pub fn uring_users() -> (Model, Snapshot) {
    let mut model = model();
    let mut shown = Snapshot::empty(node());
    let submit1 = ring_setup(500, 7, 8, 0);
    let batch32 = ring_setup(600, 8, 32, 0);
    let sqpoll = ring_setup(700, 9, 16, SETUP_SQPOLL);
    let trickle = ring_setup(750, 10, 16, SETUP_SQPOLL);
    let file = FdInfo { kind: FdKind::File, target: "/var/log/fallback.log".to_owned(), synced_writes: false };
    let fallback = Write { calls: 10, records: 1, bytes: 300, gap_ns: 100_000_000, eagain: 0 };
    for round in 0..3 {
        let uring = model.io_uring(&identity(500, "submit1"));
        uring.record_enters(7, &Enters { enters: 5000, per_enter: 1, wakeups: 0 }.stats());
        uring.record_ops(0x500, Some(&submit1), &ring_ops(5000));

        let uring = model.io_uring(&identity(600, "batch32"));
        uring.record_enters(8, &Enters { enters: 1000, per_enter: 32, wakeups: 0 }.stats());
        let ops = RingOpStats { cq_overflows: 10, cqe_eagain: 2, cqe_errors: 5, ..ring_ops(32_000) };
        uring.record_ops(0x600, Some(&batch32), &ops);
        uring.record_cqe_error(32, 5);

        model.io_uring(&identity(700, "sqpoll")).record_ops(0x700, Some(&sqpoll), &ring_ops(100_000));

        let uring = model.io_uring(&identity(750, "trickle"));
        uring.record_enters(10, &Enters { enters: 40, per_enter: 1, wakeups: 40 }.stats());
        uring.record_ops(0x750, Some(&trickle), &ring_ops(40));

        let denied = identity(800, "denied");
        if round == 0 {
            model.io_uring(&denied).record_setups(&SetupStats { eperm: 1, ..SetupStats::default() });
        }
        model.record(&denied, 3, Some(&file), &fallback.stats());

        for (pid, setup, sq, cq) in
            [(500, submit1, 0, 2), (600, batch32, 0, 56), (700, sqpoll, 3, 0), (750, trickle, 0, 0)]
        {
            model.sample_ring_depths(pid, |_, _| Some(ring_fdinfo(&setup, sq, cq)));
        }
        model.close_interval(1.0);
        shown = Snapshot::capture(&model, node(), &shown);
    }
    (model, shown)
}

/// `identity(pid, comm)` in a docker container.
pub fn in_container(pid: u32, comm: &str) -> Identity {
    let container = Container {
        id: "3f8b3b1c0f2a4a6bb1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f708192".to_owned(),
        runtime: "docker",
        pod_uid: None,
    };
    Identity { container: Some(container), ..identity(pid, comm) }
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

/// Where `text` starts on `line`, in cells.
pub fn x_of(line: &str, text: &str) -> u16 {
    let byte = line.find(text).unwrap_or_else(|| panic!("{text:?} in {line:?}"));
    line[..byte].chars().count() as u16
}

/// The `width` cells of `line` from `x`, trimmed: one column of a row.
pub fn cells(line: &str, x: u16, width: u16) -> String {
    line.chars().skip(x.into()).take(width.into()).collect::<String>().trim().to_owned()
}

/// [`three_writers`] and `journal` (pid 500), which writes `/var/lib/journal`
/// (fd 4) and fsyncs it after every write, 120 times a second, 2 ms each,
/// for three intervals: flagged sync per write.
pub fn with_syncer() -> (Model, Snapshot) {
    use agent_common::{
        hist::log2_slot,
        sync::{SyncCall, SyncOutcome, SyncStats},
    };
    let (mut model, mut shown) = three_writers();
    let journal = identity(500, "journal");
    let file = FdInfo { kind: FdKind::File, target: "/var/lib/journal".to_owned(), synced_writes: false };
    let mut syncs = SyncStats::ZERO;
    syncs.calls[SyncCall::Fsync as usize] = 120;
    syncs.outcomes[SyncOutcome::Ok as usize] = 120;
    (syncs.writes, syncs.bytes) = (120, 120 * 200);
    syncs.writes_hist[log2_slot(1, syncs.writes_hist.len())] = 120;
    syncs.bytes_hist[log2_slot(200, syncs.bytes_hist.len())] = 120;
    (syncs.timed, syncs.latency_ns_total) = (120, 120 * 2_000_000);
    syncs.latency_hist[log2_slot(2_000_000, syncs.latency_hist.len())] = 120;
    for _ in 0..3 {
        let writes = Write { calls: 120, records: 1, bytes: 200, gap_ns: 8_000_000, eagain: 0 }.stats();
        model.record(&journal, 4, Some(&file), &writes);
        model.record_sync(&journal, 4, Some(&file), &syncs);
        model.close_interval(1.0);
        shown = Snapshot::capture(&model, node(), &shown);
    }
    (model, shown)
}
