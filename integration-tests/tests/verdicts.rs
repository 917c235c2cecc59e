//! The verdicts against known workloads: what a call carries, the sliding
//! window, timer against size flushing.
//!
//! Root only: each test loads the real probes and judges only the pids of
//! the workloads it started.

mod common;

use std::{
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use batchwatch::model::exchange::{Pattern, Peer};
use common::{WORKLOAD, observe, observe_while_ticking, start_agent};

#[test]
fn framed_writer_is_flagged_at_one_message_per_writev_and_not_at_64() {
    // Each message is writev([4 B header, 20 B payload]): 2 iovecs, 24 B.
    let one = ["framed", "--count", "40000", "--messages", "1", "--rate", "10000"];
    let batch = ["framed", "--count", "40000", "--messages", "64", "--rate", "10000"];
    let [one, batch] = observe_while_ticking([&one[..], &batch[..]]);

    let framed = one.process();
    let fd = &framed.fds[&one.report.fd].total;
    assert_eq!((fd.total_calls(), fd.records, fd.bytes_requested), (40_000, 80_000, 960_000));
    assert!(framed.ever_unbatched, "{framed:#?}");
    let reason = framed.last_reasons.join("\n");
    assert!(reason.contains("median 2 records and 24 B per call"), "{reason}");

    let batcher = batch.process();
    assert_eq!(batcher.fds[&batch.report.fd].total.records, 40_000 * 128);
    assert!(!batcher.ever_unbatched, "{:?}", batcher.last_reasons);
}

#[test]
fn writer_hot_1s_and_idle_2s_eight_times_is_flagged_and_the_flag_holds() {
    let mut agent = start_agent();
    let mut child = Command::new(WORKLOAD)
        .args(["bursts", "--bursts", "8", "--calls", "100000", "--hot", "1s", "--idle", "2s"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn workload");
    let pid = child.id();
    // Whether the process was flagged at each tick while it ran.
    let mut flagged = Vec::new();
    while child.try_wait().expect("wait").is_none() {
        thread::sleep(Duration::from_secs(1));
        agent.tick().expect("reading the maps");
        flagged.extend(agent.model().process(pid).map(|p| p.unbatched));
    }
    let output = child.wait_with_output().expect("exit");
    assert!(output.status.success());
    let report = common::parse_report(&output.stdout);
    let process = agent.model().process(pid).expect("the agent saw the workload");
    assert_eq!(process.fds[&report.fd].total.total_calls(), 800_000);
    let first = flagged.iter().position(|&f| f).unwrap_or_else(|| panic!("never flagged: {flagged:?}"));
    // Raised by the third burst (about 7 s in), held to the end: no flapping.
    assert!(first <= 9, "raised late: {flagged:?}");
    assert!(flagged[first..].iter().all(|&f| f), "the flag flapped: {flagged:?}");
    let reason = process.last_reasons.join("\n");
    assert!(reason.contains("median 1 record and 1 B per call") && reason.contains("of the last 10 s"), "{reason}");
}

#[test]
fn a_ticker_over_a_trickle_is_a_20ms_timer_and_a_full_buffer_is_not() {
    // A record of 50 B every 1 ms, flushed every 20 ms: about 19 records a
    // flush, every batch in one log2 bucket (the old rule saw no timer).
    let trickle = observe(&["trickle", "--period", "20ms", "--every", "1ms", "--flushes", "60"]);
    let fd = &trickle.process().fds[&trickle.report.fd];
    assert_eq!((fd.total.total_calls(), fd.total.bytes_written), (60, trickle.report.bytes_written));
    let timer = fd.timer.unwrap_or_else(|| panic!("no timer seen: {:?}", fd.total));
    // The ticker's period, from the exact sum of the gaps: 20 ms give or
    // take what a loaded machine adds to a sleep.
    assert!((19_000_000..=22_000_000).contains(&timer.period_ns), "{timer:?}");
    // At most 20 records of 50 B a flush (a sleep is never short): batches
    // below 1 KiB, and when they share one log2 bucket (unless a loaded
    // machine stretched some sleeps), the median reported is their exact mean.
    let mean = trickle.report.bytes_written as f64 / 60.0;
    let buckets = fd.total.bytes_hist.iter().filter(|&&n| n > 0).count();
    assert!(timer.batch_bytes < 1024.0, "{timer:?}");
    if buckets == 1 {
        assert!((timer.batch_bytes - mean).abs() < 1e-9, "{timer:?} against {mean}");
    }
    assert!(timer.describe().contains("never fills a buffer"), "{}", timer.describe());

    // 4 KiB filled by a record of 100 B every 250 µs: a flush every 10 ms
    // or so, steady gaps, every flush exactly 4096 B.
    let full = observe(&["full-buffer", "--buffer", "4096", "--every", "250us", "--flushes", "60"]);
    let fd = &full.process().fds[&full.report.fd];
    assert_eq!((fd.total.total_calls(), fd.total.bytes_requested), (60, 60 * 4096));
    assert_eq!(fd.timer, None, "{:?}", fd.total.gap_hist);
}

/// A free loopback port: bound, read, released.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child killed when the test ends, pass or fail.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[test]
fn redis_answering_one_request_at_a_time_is_round_trip_bound_and_a_stream_is_unbatched() {
    let server = common::require_tool("redis-server", "redis-server");
    let benchmark = common::require_tool("redis-benchmark", "redis-tools");
    let cli = common::require_tool("redis-cli", "redis-tools");
    let port = free_port().to_string();
    let redis = Killed(
        Command::new(server)
            .args(["--bind", "127.0.0.1", "--port", &port, "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts"),
    );
    let ping = || Command::new(&cli).args(["-h", "127.0.0.1", "-p", &port, "ping"]).output().expect("redis-cli");
    let ready = (0..50).any(|_| {
        thread::sleep(Duration::from_millis(100));
        String::from_utf8_lossy(&ping().stdout).trim() == "PONG"
    });
    assert!(ready, "redis-server did not answer on port {port}");

    let mut agent = start_agent();
    // One connection, one request at a time (-P 1), SETs until killed.
    let client = Killed(
        Command::new(benchmark)
            .args(["-h", "127.0.0.1", "-p", &port, "-c", "1", "-P", "1", "-n", "10000000", "-t", "set", "-q"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-benchmark starts"),
    );
    // A stream of one-byte writes to a reader that never answers, meanwhile.
    let mut stream = Command::new(WORKLOAD)
        .args(["tcp-stream", "--count", "50000", "--rate", "5000"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn workload");
    while stream.try_wait().expect("wait").is_none() {
        thread::sleep(Duration::from_secs(1));
        agent.tick().expect("reading the maps");
    }
    let output = stream.wait_with_output().expect("exit");
    assert!(output.status.success());
    let stream = common::parse_report(&output.stdout);

    let model = agent.model();
    let server = model.process(redis.0.id()).expect("the agent saw redis-server");
    let (&fd, connection) = server
        .fds
        .iter()
        .find(|(_, state)| state.info.as_ref().is_some_and(|i| i.kind == batchwatch::attribution::fds::FdKind::Tcp))
        .unwrap_or_else(|| panic!("no TCP descriptor in {server:#?}"));
    assert_eq!(connection.pattern(), Some(Pattern::RequestResponse), "{:?}", connection.conversation);
    assert!(connection.round_trip.is_raised() && server.round_trip_bound, "{:?}", connection.conversation);
    assert!(!server.ever_unbatched, "{:?}", server.last_reasons);
    // The client is named: its pid, command and the descriptor of its end.
    let Some(Peer::Local { pid, comm, fd: peer_fd }) = connection.peer() else {
        panic!("no local peer: {:?}", connection.conversation)
    };
    assert_eq!((*pid, comm.as_str()), (client.0.id(), "redis-benchmark"));
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{peer_fd}")).expect("the peer's descriptor");
    assert!(link.to_string_lossy().starts_with("socket:["), "{link:?}");
    let reason = server.reasons.join("\n");
    assert!(reason.starts_with(&format!("fd {fd} (tcp 127.0.0.1:{port} ↔ 127.0.0.1:")), "{reason}");
    assert!(reason.contains("round trips/s with one message each way"), "{reason}");

    let writer = model.process(stream.pid).expect("the agent saw the stream writer");
    let fd = &writer.fds[&stream.fd];
    assert_eq!(fd.total.total_calls(), 50_000);
    assert_eq!(fd.pattern(), Some(Pattern::Stream), "{:?}", fd.conversation);
    assert!(writer.ever_unbatched && !writer.ever_round_trip_bound, "{:?}", writer.last_reasons);
    // The client first, so that it does not see its server go.
    drop(client);
    drop(redis);
}

#[test]
fn a_process_that_execs_carries_its_new_name_command_and_runtime() {
    let mut agent = start_agent();
    // The shell writes (so the probes track it), waits while the agent reads
    // its identity, then execs the workload in its place.
    let script = format!("printf shell; sleep 2; exec {WORKLOAD} write --count 40000 --size 1 --rate 10000");
    let mut child = Command::new("sh").args(["-c", &script]).stdout(Stdio::piped()).spawn().expect("sh starts");
    let pid = child.id();
    let mut before = None;
    while child.try_wait().expect("wait").is_none() {
        thread::sleep(Duration::from_secs(1));
        agent.tick().expect("reading the maps");
        before = before.or_else(|| agent.model().process(pid).map(|p| p.identity.comm.clone()));
    }
    let output = child.wait_with_output().expect("exit");
    assert!(output.status.success());
    agent.tick().expect("reading the maps");
    assert_eq!(before.as_deref(), Some("sh"), "the agent first saw the shell");
    let process = agent.model().process(pid).expect("the agent saw the process");
    let identity = &process.identity;
    assert_eq!(identity.comm, "workload");
    assert!(identity.command.contains("workload write --count 40000"), "{}", identity.command);
    assert_eq!(identity.runtime.as_ref().map(|r| r.name), Some(batchwatch::runtime::RuntimeName::Rust));
    // The shell's write and the workload's, on the same stdout descriptor (a
    // pipe) and /dev/null, all under the one process.
    assert_eq!(process.total().total_calls(), 1 + 40_000 + 1, "{:#?}", process.fds);
    assert!(process.last_reasons.iter().any(|r| r.contains("chardev /dev/null")), "{:?}", process.last_reasons);
}
