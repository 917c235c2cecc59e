//! The sync probes and the sync-per-write verdict against known workloads,
//! and against SQLite: every count exact.
//!
//! Root only: each test loads the real probes, runs a workload, and compares
//! what the agent saw for that pid and descriptor with what it did.

mod common;

use std::{
    io::Write as _,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use agent_common::{
    hist::log2_slot,
    sync::{IO_URING_FD, SyncCall, SyncOutcome, SyncStats},
};
use batchwatch::{agent::Agent, model::ProcessState};
use common::{Observed, observe, observe_while_ticking, require_tool, start_agent, strace_calls};

/// The sync statistics of descriptor `fd` of the workload.
fn syncs_of(process: &ProcessState, fd: i32) -> SyncStats {
    process.syncs.get(&fd).unwrap_or_else(|| panic!("no syncs on fd {fd} in {process:#?}")).total
}

fn pattern_syncs(observed: &Observed) -> SyncStats {
    syncs_of(observed.process(), observed.report.fd)
}

fn all_in_slot(hist: &[u64], value: u64, count: u64) -> Vec<u64> {
    let mut expected = vec![0; hist.len()];
    expected[log2_slot(value, hist.len())] = count;
    expected
}

#[test]
fn each_write_synced_is_one_write_per_sync_and_flagged() {
    // 100 write+fsync pairs a second for 6 s: hot for more than the 3
    // intervals the flag needs.
    let [observed] = observe_while_ticking([&["sync-every", "--count", "600", "--every", "1", "--rate", "100"]]);
    let s = pattern_syncs(&observed);
    assert_eq!(observed.report.syncs, 600);
    assert_eq!((s.total_calls(), s.calls[SyncCall::Fsync as usize]), (600, 600));
    assert_eq!((s.outcomes[SyncOutcome::Ok as usize], s.errors()), (600, 0));
    assert_eq!((s.writes, s.bytes), (600, 600 * 100));
    assert_eq!(s.writes_hist.to_vec(), all_in_slot(&s.writes_hist, 1, 600), "one write per sync");
    assert_eq!(s.bytes_hist.to_vec(), all_in_slot(&s.bytes_hist, 100, 600));
    assert_eq!(s.timed, 600, "every sync timed from its entry");
    assert_eq!(s.latency_hist.iter().sum::<u64>(), 600);
    assert_eq!(s.gap_hist.iter().sum::<u64>(), 599, "one gap per sync after the first");
    let process = observed.process();
    assert!(process.ever_sync_per_write, "{process:#?}");
    assert!(process.last_reasons.iter().any(|r| r.contains("sync per write")), "{:?}", process.last_reasons);
    assert!(process.last_advice.iter().any(|a| a.starts_with("group commit")), "{:?}", process.last_advice);
}

#[test]
fn a_sync_every_hundred_writes_makes_a_hundred_durable_and_is_not_flagged() {
    // 20 syncs a second, each of 100 writes, for 5 s.
    let [observed] = observe_while_ticking([&["sync-every", "--count", "10000", "--every", "100", "--rate", "2000"]]);
    let s = pattern_syncs(&observed);
    assert_eq!((s.calls[SyncCall::Fsync as usize], s.writes, s.bytes), (100, 10_000, 1_000_000));
    assert_eq!(s.writes_hist.to_vec(), all_in_slot(&s.writes_hist, 100, 100), "100 writes per sync");
    assert_eq!(s.bytes_hist.to_vec(), all_in_slot(&s.bytes_hist, 10_000, 100));
    let process = observed.process();
    assert!(!process.ever_sync_per_write, "{:?}", process.last_reasons);
}

#[test]
fn o_dsync_writes_count_as_synced() {
    // Alive across a reading, so the agent sees the descriptor's flags.
    let [observed] = observe_while_ticking([&[
        "--linger",
        "1500ms",
        "sync-every",
        "--count",
        "300",
        "--every",
        "0",
        "--rate",
        "150",
        "--dsync",
    ]]);
    let s = pattern_syncs(&observed);
    assert_eq!((s.calls[SyncCall::DsyncWrite as usize], s.total_calls()), (300, 300));
    assert_eq!((s.writes, s.bytes), (300, 30_000));
    assert_eq!(s.writes_hist.to_vec(), all_in_slot(&s.writes_hist, 1, 300));
    let fd = &observed.process().fds[&observed.report.fd];
    assert!(fd.info.as_ref().is_some_and(|info| info.synced_writes), "{fd:#?}");
}

#[test]
fn an_io_uring_fsync_chain_is_counted() {
    let observed = observe(&["uring-fsync", "--count", "200"]);
    let s = syncs_of(observed.process(), IO_URING_FD);
    assert_eq!((s.calls[SyncCall::UringFsync as usize], s.total_calls()), (200, 200));
    assert_eq!(observed.report.syncs, 200);
}

#[test]
fn a_failed_sync_is_a_drop() {
    let observed = observe(&["sync-pipe", "--count", "50"]);
    let s = pattern_syncs(&observed);
    assert_eq!((s.calls[SyncCall::Fsync as usize], s.outcomes[SyncOutcome::Einval as usize]), (50, 50));
    assert_eq!((s.errors(), s.writes_hist.iter().sum::<u64>()), (50, 0), "a failed sync makes nothing durable");
}

/// What `sqlite` ran and saw.
struct Sqlite {
    agent: Agent,
    pid: u32,
    /// `strace -c`'s summary of the syncs, when run under strace.
    strace: Option<String>,
}

/// Runs `sqlite3` on a fresh database, feeding it `before`, then `rows`
/// INSERTs at 50 a second, then `after`, under an agent ticking every
/// second as the live one does; with `strace`, under `strace -f -c` counting
/// its syncs. Paced so that an autocommit run keeps syncing for the
/// intervals the flag needs, whatever the disk's speed.
fn sqlite(before: &str, rows: usize, after: &str, strace: bool) -> Sqlite {
    let sqlite3 = require_tool("sqlite3", "sqlite3");
    let mut agent = start_agent();
    let name = format!("batchwatch-sqlite-{}-{}", std::process::id(), before.len());
    let db = std::env::temp_dir().join(format!("{name}.db"));
    let summary = std::env::temp_dir().join(format!("{name}.strace"));
    let mut command = if strace {
        let mut command = Command::new(require_tool("strace", "strace"));
        command.args(["-f", "-qq", "-c", "-e", "trace=fsync,fdatasync,sync_file_range,msync,syncfs,sync", "-o"]);
        command.arg(&summary).arg(sqlite3);
        command
    } else {
        Command::new(sqlite3)
    };
    let mut child = command.arg(&db).stdin(Stdio::piped()).spawn().expect("sqlite3 starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let (before, after) = (before.to_owned(), after.to_owned());
    let feeder = thread::spawn(move || {
        stdin.write_all(format!("CREATE TABLE t (v TEXT);\n{before}").as_bytes()).expect("script");
        for i in 0..rows {
            stdin.write_all(format!("INSERT INTO t VALUES ('row {i}');\n").as_bytes()).expect("insert");
            thread::sleep(Duration::from_millis(20));
        }
        stdin.write_all(after.as_bytes()).expect("script");
    });
    let pid = if strace { traced_child(child.id()) } else { child.id() };
    while child.try_wait().expect("wait").is_none() {
        thread::sleep(Duration::from_secs(1));
        agent.tick().expect("reading the maps");
    }
    agent.tick().expect("reading the maps");
    feeder.join().expect("feeder");
    for suffix in ["", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let strace = strace.then(|| std::fs::read_to_string(&summary).expect("strace's summary"));
    let _ = std::fs::remove_file(&summary);
    Sqlite { agent, pid, strace }
}

/// The pid of the `sqlite3` that `strace` (pid `tracer`) started, once it
/// has executed it.
fn traced_child(tracer: u32) -> u32 {
    let children = format!("/proc/{tracer}/task/{tracer}/children");
    for _ in 0..500 {
        let pids = std::fs::read_to_string(&children).unwrap_or_default();
        let sqlite3 = pids.split_whitespace().filter_map(|pid| pid.parse::<u32>().ok()).find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "sqlite3")
        });
        if let Some(pid) = sqlite3 {
            return pid;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("strace started no sqlite3");
}

/// Calls of `syscall` in an `strace -c` summary; 0 when it has no row.
fn strace_count(summary: &str, syscall: &str) -> u64 {
    if summary.lines().any(|line| line.split_whitespace().last() == Some(syscall)) {
        strace_calls(summary, syscall)
    } else {
        0
    }
}

#[test]
fn sqlite_autocommit_syncs_per_insert_and_one_transaction_does_not() {
    const ROWS: usize = 250;
    let run = sqlite("", ROWS, "", true);
    let process = run.agent.model().process(run.pid).expect("sqlite3 seen");
    let total = process.sync_total();
    // Each autocommit INSERT syncs its rollback journal and the database.
    assert!(total.total_calls() >= 2 * ROWS as u64, "{} syncs for {ROWS} commits", total.total_calls());
    // Exactly what strace counted, call by call.
    let summary = run.strace.expect("traced");
    for call in [SyncCall::Fsync, SyncCall::Fdatasync, SyncCall::SyncFileRange, SyncCall::Msync, SyncCall::Syncfs] {
        assert_eq!(total.calls[call as usize], strace_count(&summary, call.name()), "{}:\n{summary}", call.name());
    }
    assert_eq!(total.errors(), 0);
    eprintln!(
        "sqlite3 autocommit, {ROWS} inserts: {} syncs ({} fdatasync), as strace counted",
        total.total_calls(),
        total.calls[SyncCall::Fdatasync as usize]
    );
    assert!(process.ever_sync_per_write, "{:?}", process.last_reasons);
    assert!(process.last_advice.iter().any(|a| a.contains("SQLite")), "{:?}", process.last_advice);

    let run = sqlite("BEGIN;\n", ROWS, "COMMIT;\n", false);
    let process = run.agent.model().process(run.pid).expect("sqlite3 seen");
    let batched = process.sync_total();
    assert!(batched.total_calls() < 20, "{} syncs for one transaction", batched.total_calls());
    eprintln!("sqlite3, the same inserts in one transaction: {} syncs", batched.total_calls());
    assert!(!process.ever_sync_per_write, "{:?}", process.last_reasons);
}
