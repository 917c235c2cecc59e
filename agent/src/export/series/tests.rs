//! The series set over a model fed by hand: exact points, cumulative
//! growth, folding, the cap, and descriptors or pids reused.

use std::time::{Duration, UNIX_EPOCH};

use agent_common::write::{BYTES_SLOTS, RECORDS_SLOTS, WriteStats, WriteSyscall};

use super::*;
use crate::{
    attribution::container::Container,
    attribution::fds::{FdInfo, FdKind},
    attribution::identity::Identity,
    config::{Aggregation, Config},
    export::catalog::Instrument,
    kubernetes::{ApiFailures, ContainerPod},
    model::Rules,
    testing::Write,
};

const COST_NS: f64 = 100.0;

fn model() -> Model {
    model_of(false)
}

/// A model of the full mode, or of the degraded one (`/proc` averages).
fn model_of(degraded: bool) -> Model {
    Model::new(Rules::new(&Config::default(), COST_NS, degraded))
}

fn process(pid: u32, start_ticks: u64, comm: &str) -> Identity {
    Identity {
        pid,
        start_ticks,
        comm: comm.to_owned(),
        command: format!("/bin/{comm} --flag"),
        container: None,
        runtime: None,
    }
}

fn pipe(inode: u64) -> FdInfo {
    FdInfo { kind: FdKind::Pipe, target: format!("pipe:[{inode}]"), synced_writes: false }
}

fn file(path: &str) -> FdInfo {
    FdInfo { kind: FdKind::File, target: path.to_owned(), synced_writes: false }
}

/// `calls` write()s of `bytes` each, `gap_ns` apart.
fn writes(calls: u64, bytes: u64, gap_ns: u64) -> WriteStats {
    Write { calls, records: 1, bytes, gap_ns, eagain: 0 }.stats()
}

fn limits() -> Limits {
    Limits {
        min_ops_per_sec: 10.0,
        max_series: 5000,
        per_fd: false,
        aggregation: Aggregation::Process,
        idle_after: Duration::from_secs(300),
        attributes: Selection::all(),
        groups: Vec::new(),
    }
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000 + seconds)
}

fn observe(model: &Model) -> Observation<'_> {
    Observation {
        model,
        transition_cost_ns: COST_NS,
        transition_measured_at: Some(at(0)),
        probe_errors: ProbeErrors { stats_map_full: 2, uring_map_full: 1, ..ProbeErrors::default() },
        tracked_fds: 12,
        evicted_fds: 4,
        max_fds: 16384,
        endpoint: None,
        last: false,
    }
}

/// The value of the point of `metric` whose attributes include all of `attributes`.
fn value<'a>(collection: &'a Collection, metric: &Metric, attributes: &[(&str, &str)]) -> Option<&'a Value> {
    let (_, points) = collection.families.iter().find(|(m, _)| m.name == metric.name)?;
    let matches = |point: &Point| {
        attributes.iter().all(|(key, wanted)| point.attributes().any(|(k, v)| k == key && v.to_string() == *wanted))
    };
    points.iter().find(|point| matches(point)).map(|point| &point.value)
}

fn int(collection: &Collection, metric: &Metric, attributes: &[(&str, &str)]) -> u64 {
    match value(collection, metric, attributes) {
        Some(Value::Int(n)) => *n,
        other => panic!("{} {attributes:?}: {other:?}", metric.name),
    }
}

fn float(collection: &Collection, metric: &Metric, attributes: &[(&str, &str)]) -> f64 {
    match value(collection, metric, attributes) {
        Some(Value::Float(x)) => *x,
        other => panic!("{} {attributes:?}: {other:?}", metric.name),
    }
}

const PID_10: (&str, &str) = ("process.pid", "10");
const PIPES: (&str, &str) = ("batchwatch.fd.kind", "pipe");
const OTHER: (&str, &str) = ("batchwatch.folded", "true");

#[test]
fn a_sync_per_write_process_gets_its_sync_points_and_flag() {
    use agent_common::{
        hist::log2_slot,
        sync::{SyncCall, SyncOutcome, SyncStats},
    };
    let mut model = model();
    let db = process(10, 1, "app");
    // Three intervals of 100 fsyncs of one 100-byte write each, 2 of them EIO.
    let mut syncs = SyncStats::ZERO;
    syncs.calls[SyncCall::Fsync as usize] = 100;
    syncs.outcomes[SyncOutcome::Ok as usize] = 98;
    syncs.outcomes[SyncOutcome::Eio as usize] = 2;
    syncs.writes = 98;
    syncs.bytes = 9800;
    syncs.writes_hist[log2_slot(1, syncs.writes_hist.len())] = 98;
    syncs.bytes_hist[log2_slot(100, syncs.bytes_hist.len())] = 98;
    syncs.timed = 100;
    syncs.latency_ns_total = 100_000_000;
    syncs.latency_hist[log2_slot(1_000_000, syncs.latency_hist.len())] = 100;
    for _ in 0..3 {
        model.record(&db, 3, Some(&file("/var/lib/app.db")), &writes(100, 100, 10_000_000));
        model.record_sync(&db, 3, Some(&file("/var/lib/app.db")), &syncs);
        model.close_interval(1.0);
    }
    let s = SeriesSet::new(limits(), at(0)).collect(&observe(&model), None, None, at(3));
    assert_eq!(int(&s, &catalog::SYNC_CALLS, &[PID_10, ("batchwatch.sync.call", "fsync")]), 300);
    assert_eq!(int(&s, &catalog::SYNC_DROPS, &[PID_10, ("batchwatch.sync.error", "eio")]), 6);
    assert_eq!(int(&s, &catalog::SYNC_DROPS, &[PID_10, ("batchwatch.sync.error", "einval")]), 0);
    let Some(Value::Histogram { counts, sum }) = value(&s, &catalog::SYNC_BATCH_WRITES, &[PID_10]) else {
        panic!("no writes-per-sync histogram")
    };
    assert_eq!((counts[1], *sum), (294, 294.0));
    let Some(Value::Histogram { sum, .. }) = value(&s, &catalog::SYNC_DURATION, &[PID_10]) else {
        panic!("no sync duration histogram")
    };
    assert!((sum - 0.3).abs() < 1e-9, "{sum}");
    assert_eq!(int(&s, &catalog::UNBATCHED, &[PID_10, ("batchwatch.unbatched.reason", "sync_per_write")]), 1);
}

#[test]
fn one_writer_gets_exact_points() {
    let mut model = model();
    model.record(&process(10, 1, "writer"), 3, Some(&pipe(7)), &writes(1000, 512, 1000));
    model.close_interval(1.0);
    let mut set = SeriesSet::new(limits(), at(0));
    let s = set.collect(&observe(&model), None, None, at(1));

    let write = ("batchwatch.syscall", "write");
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &[PID_10, PIPES, write]), 1000);
    assert_eq!(int(&s, &catalog::WRITE_IO, &[PID_10, PIPES]), 512_000);
    assert_eq!(int(&s, &catalog::WRITE_RECORDS, &[PID_10, PIPES]), 1000);
    for reason in ["short_write", "eagain", "epipe", "enobufs", "other_error"] {
        assert_eq!(int(&s, &catalog::WRITE_DROPS, &[PID_10, PIPES, ("batchwatch.drop.reason", reason)]), 0);
    }
    let Some(Value::Histogram { counts, sum }) = value(&s, &catalog::WRITE_BATCH_SIZE, &[PID_10, PIPES]) else {
        panic!("no batch size histogram")
    };
    // Every slot, the empty ones above slot 10 too.
    assert_eq!((counts.len(), counts[10], counts[11], *sum), (BYTES_SLOTS, 1000, 0, 512_000.0));
    let Some(Value::Histogram { counts, sum }) = value(&s, &catalog::WRITE_BATCH_WAIT, &[PID_10, PIPES]) else {
        panic!("no wait histogram")
    };
    // 1000 ns lands in (512, 1024] ns.
    assert_eq!((counts[11], *sum), (1000, 1000.0 * 1000e-9));
    assert_eq!(float(&s, &catalog::TRANSITION_TIME, &[PID_10]), 1000.0 * COST_NS * 1e-9);
    // 1000 records at 64 per call would be 15.625 calls.
    assert_eq!(float(&s, &catalog::TRANSITION_AVOIDABLE, &[PID_10]), (1000.0 - 15.625) * COST_NS * 1e-9);
    assert_eq!(int(&s, &catalog::UNBATCHED, &[PID_10, ("batchwatch.unbatched.reason", "hot_writer")]), 0);
    assert!(value(&s, &catalog::UNBATCHED, &[PID_10, ("batchwatch.unbatched.reason", "sqpoll_trickle")]).is_none());
    assert!(value(&s, &catalog::URING_ENTERS, &[PID_10]).is_none(), "no io_uring, no io_uring series");
    assert!(value(&s, &catalog::SYNC_CALLS, &[PID_10]).is_none(), "no syncs, no sync series");

    assert_eq!(int(&s, &catalog::EXPORT_FOLDED, &[]), 0);
    assert_eq!(int(&s, &catalog::EXPORT_SERIES, &[]), s.points() as u64);
    assert_eq!(float(&s, &catalog::NODE_TRANSITION_COST, &[]), COST_NS * 1e-9);
    assert_eq!(float(&s, &catalog::NODE_TRANSITION_MEASURED, &[]), 1_000_000.0, "when it was measured");
    assert_eq!(int(&s, &catalog::FD_MAP_USAGE, &[]), 12);
    assert_eq!(int(&s, &catalog::FD_MAP_EVICTIONS, &[]), 4);
    assert_eq!(int(&s, &catalog::PROBE_ERRORS, &[("batchwatch.probe.error", "uring_map_full")]), 1);
    assert!(value(&s, &catalog::EXPORT_QUEUE_USAGE, &[]).is_none(), "no OTLP, no queue metrics");
}

/// A pod directory whose API requests failed.
struct FailingApi;

impl PodLookup for FailingApi {
    fn lookup(&self, _: &Container) -> Option<ContainerPod> {
        None
    }

    fn failures(&self) -> ApiFailures {
        ApiFailures { pod_lists: 2, job_reads: 5 }
    }
}

#[test]
fn failed_kubernetes_requests_are_counted_by_request() {
    let model = model();
    let s = SeriesSet::new(limits(), at(0)).collect(&observe(&model), None, Some(&FailingApi), at(1));
    assert_eq!(int(&s, &catalog::KUBERNETES_ERRORS, &[("batchwatch.kubernetes.request", "pod_list")]), 2);
    assert_eq!(int(&s, &catalog::KUBERNETES_ERRORS, &[("batchwatch.kubernetes.request", "job_read")]), 5);
    let outside = SeriesSet::new(limits(), at(0)).collect(&observe(&model), None, None, at(1));
    assert!(value(&outside, &catalog::KUBERNETES_ERRORS, &[]).is_none(), "outside Kubernetes, no such series");
}

#[test]
fn process_attributes_are_on_every_point_of_a_process() {
    let mut model = model();
    model.record(&process(10, 1, "writer"), 3, Some(&pipe(7)), &writes(1000, 512, 1000));
    model.close_interval(1.0);
    let s = SeriesSet::new(limits(), at(0)).collect(&observe(&model), None, None, at(1));
    let (_, points) = &s.families[0];
    let keys: Vec<_> = points[0].attributes().map(|(key, _)| *key).collect();
    assert_eq!(
        keys,
        ["process.pid", "process.executable.name", "process.command", "batchwatch.fd.kind", "batchwatch.syscall"]
    );
    assert_eq!(points[0].start, Some(at(0)), "its series cover the interval since the last collection");
}

#[test]
fn series_are_cumulative_across_collections() {
    let mut model = model();
    let writer = process(10, 1, "writer");
    let mut set = SeriesSet::new(limits(), at(0));
    model.record(&writer, 3, Some(&pipe(7)), &writes(1000, 512, 1000));
    model.close_interval(1.0);
    set.collect(&observe(&model), None, None, at(1));
    model.record(&writer, 3, Some(&pipe(7)), &writes(500, 512, 1000));
    model.close_interval(1.0);
    let s = set.collect(&observe(&model), None, None, at(2));
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &[PID_10, PIPES]), 1500);
    assert_eq!(float(&s, &catalog::TRANSITION_TIME, &[PID_10]), 1500.0 * COST_NS * 1e-9);
    let (_, points) = &s.families[0];
    assert_eq!(points[0].start, Some(at(0)));
}

#[test]
fn a_counter_that_goes_down_never_takes_the_series_down_or_doubles_it() {
    let mut model = model();
    let writer = process(10, 1, "writer");
    let mut set = SeriesSet::new(limits(), at(0));
    model.record(&writer, 3, Some(&pipe(7)), &writes(1000, 512, 1000));
    model.close_interval(1.0);
    let first = set.collect(&observe(&model), None, None, at(1));
    assert_eq!(int(&first, &catalog::WRITE_IO, &[PID_10, PIPES]), 512_000);
    // A kernel reading that went down by one byte (a wrapped counter) with
    // 10 more calls: the model's total of bytes goes down.
    let mut wrapped = writes(10, 0, 1000);
    wrapped.bytes_written = u64::MAX;
    model.record(&writer, 3, Some(&pipe(7)), &wrapped);
    model.close_interval(1.0);
    let s = set.collect(&observe(&model), None, None, at(2));
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &[PID_10, PIPES]), 1010, "not re-emitted as a restart");
    assert_eq!(int(&s, &catalog::WRITE_IO, &[PID_10, PIPES]), 512_000, "never down, never doubled");
}

#[test]
fn quiet_processes_fold_into_other_and_sums_stay_right() {
    let mut model = model();
    let (busy, quiet) = (process(10, 1, "busy"), process(20, 1, "quiet"));
    let mut set = SeriesSet::new(limits(), at(0));
    model.record(&busy, 3, Some(&pipe(7)), &writes(1000, 8, 1000));
    model.record(&quiet, 1, Some(&file("/var/log/q")), &writes(5, 8, 1000));
    model.close_interval(1.0);
    let s = set.collect(&observe(&model), None, None, at(1));
    assert!(value(&s, &catalog::WRITE_CALLS, &[("process.pid", "20")]).is_none());
    let other_files = [OTHER, ("batchwatch.fd.kind", "file")];
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &other_files), 5);
    assert_eq!(int(&s, &catalog::EXPORT_FOLDED, &[]), 1);
    let (_, points) = s.families.iter().find(|(m, _)| m.name == catalog::WRITE_CALLS.name).unwrap();
    let other = points.iter().find(|p| p.attributes().any(|(k, _)| *k == OTHER.0)).unwrap();
    assert_eq!(other.subject.len(), 1, "other has no process attributes");
    assert_eq!(other.start, Some(at(0)));

    // The quiet one gets busy: its own series start from then; what it did
    // before stays in `other`.
    model.record(&quiet, 1, Some(&file("/var/log/q")), &writes(2000, 8, 1000));
    model.close_interval(1.0);
    let s = set.collect(&observe(&model), None, None, at(2));
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &[("process.pid", "20")]), 2000);
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &other_files), 5);
    assert_eq!(int(&s, &catalog::EXPORT_FOLDED, &[]), 0);

    // Quiet again: it keeps its series while it lives.
    model.close_interval(1.0);
    let s = set.collect(&observe(&model), None, None, at(3));
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &[("process.pid", "20")]), 2000);
}

#[test]
fn the_cap_keeps_the_flagged_then_the_busiest() {
    let mut model = model();
    // Five writers; pid 50 is the busiest. Flags need three hot intervals.
    let writers: Vec<Identity> = (1..=5).map(|n| process(n * 10, 1, "w")).collect();
    for (n, writer) in writers.iter().enumerate() {
        model.record(writer, 3, Some(&pipe(n as u64)), &writes(100 * (n as u64 + 1), 8, 1000));
    }
    model.close_interval(1.0);
    // The node has 19 points, `other` 14 (one kind of descriptor), a writer 16.
    // With room for two writers before `other` fills, the second is refused
    // once the folded ones give `other` its points.
    for cap in [19 + 14 + 16, 19 + 16 + 16] {
        let mut set = SeriesSet::new(Limits { max_series: cap, ..limits() }, at(0));
        let s = set.collect(&observe(&model), None, None, at(1));
        assert!(s.points() <= cap, "{} points over {cap}", s.points());
        assert!(value(&s, &catalog::WRITE_CALLS, &[("process.pid", "50")]).is_some());
        for pid in ["10", "20", "30", "40"] {
            assert!(value(&s, &catalog::WRITE_CALLS, &[("process.pid", pid)]).is_none(), "pid {pid}");
        }
        assert_eq!(int(&s, &catalog::EXPORT_FOLDED, &[]), 4);
        assert_eq!(int(&s, &catalog::WRITE_CALLS, &[OTHER, PIPES]), 100 + 200 + 300 + 400);
        assert_eq!(int(&s, &catalog::EXPORT_SERIES, &[]), s.points() as u64);
    }
}

#[test]
fn a_flagged_process_keeps_its_series_under_the_cap() {
    let mut model = model();
    let hot = process(10, 1, "hot");
    let busy = process(20, 1, "busy");
    for _ in 0..3 {
        // 5000 one-record 8-byte writes a second: a hot writer, flagged after 3 intervals.
        model.record(&hot, 3, Some(&pipe(1)), &writes(5000, 8, 1000));
        model.record(&busy, 3, Some(&pipe(2)), &writes(900_000, 4096, 1000));
        model.close_interval(1.0);
    }
    let cap = 19 + 14 + 16;
    let s = SeriesSet::new(Limits { max_series: cap, ..limits() }, at(0)).collect(&observe(&model), None, None, at(3));
    assert_eq!(int(&s, &catalog::UNBATCHED, &[PID_10, ("batchwatch.unbatched.reason", "hot_writer")]), 1);
    assert!(value(&s, &catalog::WRITE_CALLS, &[("process.pid", "20")]).is_none());
}

#[test]
fn a_reused_descriptor_is_not_counted_twice() {
    let mut model = model();
    let writer = process(10, 1, "writer");
    let mut set = SeriesSet::new(limits(), at(0));
    model.record(&writer, 4, Some(&file("/tmp/a")), &writes(100, 8, 1000));
    model.close_interval(1.0);
    set.collect(&observe(&model), None, None, at(1));
    // fd 4 closed and reopened on another file: the model restarts its totals.
    model.record(&writer, 4, Some(&file("/tmp/b")), &writes(30, 8, 1000));
    model.close_interval(1.0);
    let s = set.collect(&observe(&model), None, None, at(2));
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &[PID_10, ("batchwatch.fd.kind", "file")]), 130);
}

#[test]
fn a_reused_pid_is_another_process() {
    let mut model = model();
    let mut set = SeriesSet::new(limits(), at(0));
    model.record(&process(10, 1, "first"), 3, Some(&pipe(1)), &writes(100, 8, 1000));
    model.close_interval(1.0);
    set.collect(&observe(&model), None, None, at(1));
    model.exit(10, 1.0);
    model.prune_exited(std::time::Instant::now() + Duration::from_secs(1));
    model.record(&process(10, 2, "second"), 3, Some(&pipe(2)), &writes(40, 8, 1000));
    model.close_interval(1.0);
    let s = set.collect(&observe(&model), None, None, at(2));
    let second = [PID_10, ("process.executable.name", "second")];
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &second), 40);
    assert!(value(&s, &catalog::WRITE_CALLS, &[("process.executable.name", "first")]).is_none());
    assert_eq!(set.parts[0].processes.len(), 1, "the first is forgotten once the model forgot it");
}

#[test]
fn per_fd_series_for_processes_and_by_kind_for_other() {
    let mut model = model();
    let (busy, quiet) = (process(10, 1, "busy"), process(20, 1, "quiet"));
    model.record(&busy, 3, Some(&pipe(7)), &writes(1000, 8, 1000));
    model.record(&busy, 4, Some(&pipe(8)), &writes(500, 8, 1000));
    model.record(&quiet, 5, Some(&pipe(9)), &writes(2, 8, 1000));
    model.close_interval(1.0);
    let mut set = SeriesSet::new(Limits { per_fd: true, ..limits() }, at(0));
    let s = set.collect(&observe(&model), None, None, at(1));
    let fd = |n: &'static str, target: &'static str| [PID_10, ("batchwatch.fd", n), ("batchwatch.fd.target", target)];
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &fd("3", "pipe:[7]")), 1000);
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &fd("4", "pipe:[8]")), 500);
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &[OTHER, PIPES]), 2);
    assert!(value(&s, &catalog::WRITE_CALLS, &[OTHER, ("batchwatch.fd", "5")]).is_none());
}

#[test]
fn histograms_keep_every_bucket_whatever_the_largest_value() {
    let mut model = model();
    let mut huge = writes(30, 1 << 40, 1000);
    huge.bytes_hist = [0; BYTES_SLOTS];
    huge.bytes_hist[BYTES_SLOTS - 1] = 30;
    model.record(&process(10, 1, "writer"), 3, Some(&pipe(7)), &huge);
    model.record(&process(11, 1, "small"), 3, Some(&pipe(7)), &writes(30, 30, 1000));
    model.close_interval(1.0);
    let s = SeriesSet::new(limits(), at(0)).collect(&observe(&model), None, None, at(1));
    let Some(Value::Histogram { counts, .. }) = value(&s, &catalog::WRITE_BATCH_SIZE, &[PID_10]) else { panic!() };
    assert_eq!(counts.len(), BYTES_SLOTS, "the last slot is the open bucket itself");
    assert_eq!(counts[BYTES_SLOTS - 1], 30);
    let Some(Value::Histogram { counts, .. }) = value(&s, &catalog::WRITE_BATCH_RECORDS, &[PID_10]) else { panic!() };
    let mut expected = [0; RECORDS_SLOTS];
    expected[1] = 30;
    assert_eq!(counts, &expected, "slot 1, and every empty slot above it up to the open bucket");
    // A process whose writes are small has the same buckets as the huge one.
    for (metric, points) in &s.families {
        if let Instrument::Histogram { slots, .. } = metric.instrument {
            for point in points {
                let Value::Histogram { counts, .. } = &point.value else { panic!("{}", metric.name) };
                assert_eq!(counts.len(), slots, "{}: {:?}", metric.name, point.subject);
            }
        }
    }
}

#[test]
fn the_endpoints_connections_and_refusals_are_node_points_only_when_it_is_on() {
    let model = model();
    let s = SeriesSet::new(limits(), at(0)).collect(&observe(&model), None, None, at(1));
    assert!(value(&s, &catalog::ENDPOINT_CONNECTION_USAGE, &[]).is_none(), "no endpoint, no endpoint series");
    let endpoint = EndpointHealth {
        open: 3,
        limit: 64,
        connection_limit: 1,
        client_limit: 3992,
        header_timeout: 8,
        response_stalled: 2,
        tls_handshake: 5,
        accept_failed: 9,
    };
    let observation = Observation { endpoint: Some(endpoint), ..observe(&model) };
    let s = SeriesSet::new(limits(), at(0)).collect(&observation, None, None, at(1));
    assert_eq!(int(&s, &catalog::ENDPOINT_CONNECTION_USAGE, &[]), 3);
    assert_eq!(int(&s, &catalog::ENDPOINT_CONNECTION_LIMIT, &[]), 64);
    for (reason, count) in [
        ("connection_limit", 1),
        ("client_limit", 3992),
        ("header_timeout", 8),
        ("response_stalled", 2),
        ("tls_handshake", 5),
        ("accept_failed", 9),
    ] {
        assert_eq!(int(&s, &catalog::ENDPOINT_ERRORS, &[("batchwatch.endpoint.error", reason)]), count, "{reason}");
    }
}

#[test]
fn export_health_comes_as_the_agents_own_batching_metrics() {
    let model = model();
    let mut health = crate::export::queue::ExportQueue::new(7).health();
    health.batch_size[5] = 2;
    health.batch_points = 40;
    health.dropped_queue_full = 9;
    let s = SeriesSet::new(limits(), at(0)).collect(&observe(&model), Some(&health), None, at(1));
    assert_eq!(int(&s, &catalog::EXPORT_QUEUE_LIMIT, &[]), 7);
    assert_eq!(int(&s, &catalog::EXPORT_DROPS, &[("batchwatch.drop.reason", "queue_full")]), 9);
    let Some(Value::Histogram { counts, sum }) = value(&s, &catalog::EXPORT_BATCH_SIZE, &[]) else { panic!() };
    assert_eq!((counts[5], *sum), (2, 40.0));
}

#[test]
fn every_point_has_the_value_its_instrument_calls_for() {
    let mut model = model();
    model.record(&process(10, 1, "writer"), 3, Some(&pipe(7)), &writes(1000, 512, 1000));
    model.close_interval(1.0);
    let health = crate::export::queue::ExportQueue::new(7).health();
    let s = SeriesSet::new(limits(), at(0)).collect(&observe(&model), Some(&health), None, at(1));
    for (metric, points) in &s.families {
        for point in points {
            let fits = match (&point.value, metric.instrument) {
                (Value::Histogram { counts, .. }, Instrument::Histogram { slots, .. }) => counts.len() == slots,
                (Value::Int(_) | Value::Float(_), Instrument::Counter) => point.start.is_some(),
                (Value::Int(_) | Value::Float(_), Instrument::Gauge) => point.start.is_none(),
                _ => false,
            };
            assert!(fits, "{}: {:?}", metric.name, point.value);
        }
    }
}

#[test]
fn the_degraded_mode_exports_calls_and_bytes_only() {
    let mut model = model_of(true);
    // What the /proc poller records: calls and bytes on the pseudo-fd -1.
    let mut polled = WriteStats::ZERO;
    polled.calls[WriteSyscall::Write as usize] = 3000;
    polled.bytes_written = 30_000;
    model.record(&process(10, 1, "writer"), -1, None, &polled);
    model.close_interval(1.0);
    let s = SeriesSet::new(limits(), at(0)).collect(&observe(&model), None, None, at(1));
    let all = [PID_10, ("batchwatch.fd.kind", "unknown")];
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &[all[0], all[1], ("batchwatch.syscall", "any")]), 3000);
    assert_eq!(int(&s, &catalog::WRITE_IO, &all), 30_000);
    assert_eq!(float(&s, &catalog::TRANSITION_TIME, &[PID_10]), 3000.0 * COST_NS * 1e-9);
    assert_eq!(int(&s, &catalog::UNBATCHED, &[PID_10]), 0);
    assert_eq!(int(&s, &catalog::AGENT_DEGRADED, &[]), 1);
    for unknown in
        [&catalog::WRITE_RECORDS, &catalog::WRITE_DROPS, &catalog::WRITE_BATCH_SIZE, &catalog::TRANSITION_AVOIDABLE]
    {
        assert!(value(&s, unknown, &[PID_10]).is_none(), "{} is not known in the degraded mode", unknown.name);
    }
}

/// Series of 200 short-lived processes of one executable over 10 minutes,
/// at each aggregation level: each lives 3 s, writing 1000 times a second,
/// and the next starts as it exits. Collections every second (the
/// Prometheus endpoint on), exited processes pruned at an export interval
/// of 60 s, as `export::Observer` does.
#[test]
fn short_lived_processes_of_one_executable_keep_one_series_above_the_process_level() {
    let mut counted = Vec::new();
    for level in [Aggregation::Process, Aggregation::Executable, Aggregation::Workload] {
        let mut model = model();
        let mut set = SeriesSet::new(Limits { aggregation: level, ..limits() }, at(0));
        let mut series = HashSet::new();
        let (mut most_points, mut last_export) = (0, std::time::Instant::now());
        let mut calls = Vec::new();
        for tick in 0..600u64 {
            let worker = process(1000 + (tick / 3) as u32, tick / 3, "worker");
            model.record(&worker, 3, Some(&pipe(9)), &writes(1000, 64, 1000));
            if tick % 3 == 2 {
                model.exit(worker.pid, 1.0);
            }
            model.close_interval(1.0);
            let s = set.collect(&observe(&model), None, None, at(tick + 1));
            most_points = most_points.max(s.points());
            for (metric, points) in &s.families {
                for point in points {
                    let attributes: Vec<String> = point.attributes().map(|(k, v)| format!("{k}={v}")).collect();
                    series.insert((metric.name, attributes));
                }
            }
            // The write calls of every series but `other`, at this collection.
            let (_, write_calls) = s.families.iter().find(|(m, _)| m.name == catalog::WRITE_CALLS.name).unwrap();
            calls = (write_calls.iter().filter(|p| !p.subject.is_empty() && p.subject[0].0 != "batchwatch.folded"))
                .map(|p| match p.value {
                    Value::Int(n) => n,
                    _ => 0,
                })
                .collect();
            if tick % 60 == 59 {
                model.prune_exited(last_export);
                last_export = std::time::Instant::now();
            }
        }
        let per_process = series.iter().filter(|(m, _)| *m == catalog::WRITE_CALLS.name).count();
        println!(
            "{level:?}: {} series over 10 minutes, {per_process} of write.calls, at most {most_points} points in one collection",
            series.len()
        );
        counted.push((series.len(), per_process, calls));
    }
    let [process, executable, workload] = counted.as_slice() else { unreachable!() };
    // Each process its own series of write calls (per syscall: one, write).
    assert_eq!(process.1, 200);
    // One series for the executable, whichever level above the process,
    // which holds every write of the 200 processes: 600 s of 1000 a second.
    assert_eq!((executable.1, workload.1), (1, 1));
    assert_eq!((executable.2.as_slice(), workload.2.as_slice()), (&[600_000][..], &[600_000][..]));
    assert!(executable.0 * 20 < process.0, "{} series against {}", executable.0, process.0);
}

#[test]
fn a_closed_descriptors_series_go_after_the_idle_time_and_restart_if_it_writes_again() {
    let mut model = model();
    let writer = process(10, 1, "writer");
    let mut set = SeriesSet::new(Limits { per_fd: true, idle_after: Duration::from_secs(10), ..limits() }, at(0));
    let fd = |fd: &'static str| [PID_10, ("batchwatch.fd", fd), ("batchwatch.syscall", "write")];
    // fd 3 writes once, then only fd 4, every second.
    model.record(&writer, 3, Some(&pipe(1)), &writes(100, 8, 1000));
    for second in 1..=11 {
        model.record(&writer, 4, Some(&pipe(2)), &writes(100, 8, 1000));
        model.close_interval(1.0);
        let s = set.collect(&observe(&model), None, None, at(second));
        let three = value(&s, &catalog::WRITE_CALLS, &fd("3")).cloned();
        // Exported for 10 s after its last write, then no more.
        assert_eq!(three, (second < 11).then_some(Value::Int(100)), "second {second}");
        assert_eq!(int(&s, &catalog::WRITE_CALLS, &fd("4")), 100 * second);
    }
    // It writes again: a new series, from the last collection.
    model.record(&writer, 3, Some(&pipe(1)), &writes(7, 8, 1000));
    model.close_interval(1.0);
    let s = set.collect(&observe(&model), None, None, at(12));
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &fd("3")), 7);
    let (_, points) = s.families.iter().find(|(m, _)| m.name == catalog::WRITE_CALLS.name).unwrap();
    let started = |fd: &str| {
        let point = points.iter().find(|p| p.own.iter().any(|(k, v)| *k == "batchwatch.fd" && v.to_string() == fd));
        point.unwrap().start
    };
    assert_eq!((started("3"), started("4")), (Some(at(11)), Some(at(0))));
}

#[test]
fn a_new_sockets_first_writes_wait_one_collection_for_its_kind() {
    let mut model = model();
    let writer = process(10, 1, "writer");
    let mut set = SeriesSet::new(limits(), at(0));
    let socket = FdInfo { kind: FdKind::Socket, target: "socket:[77]".to_owned(), synced_writes: false };
    model.record(&writer, 5, Some(&socket), &writes(1000, 8, 1000));
    model.close_interval(1.0);
    let first = set.collect(&observe(&model), None, None, at(1));
    assert_eq!(value(&first, &catalog::WRITE_CALLS, &[PID_10, ("batchwatch.fd.kind", "socket")]), None);
    // The depth sampler found it a UNIX socket at the next tick.
    let sample = crate::depth::Depth {
        queued_bytes: 0,
        charged_bytes: 0,
        capacity_bytes: 212_992,
        protocol: Some(crate::depth::SocketProtocol::Unix),
        exchange: None,
    };
    model.set_depth(10, 5, sample);
    model.close_interval(1.0);
    let second = set.collect(&observe(&model), None, None, at(2));
    let write = ("batchwatch.syscall", "write");
    assert_eq!(int(&second, &catalog::WRITE_CALLS, &[PID_10, ("batchwatch.fd.kind", "unix"), write]), 1000);
    assert_eq!(value(&second, &catalog::WRITE_CALLS, &[PID_10, ("batchwatch.fd.kind", "socket")]), None);

    // The last collection, at exit, holds nothing back.
    let other = FdInfo { target: "socket:[78]".to_owned(), ..socket };
    model.record(&writer, 6, Some(&other), &writes(5, 8, 1000));
    model.close_interval(1.0);
    let last = set.collect(&Observation { last: true, ..observe(&model) }, None, None, at(3));
    assert_eq!(int(&last, &catalog::WRITE_CALLS, &[PID_10, ("batchwatch.fd.kind", "socket"), write]), 5);
}

/// `export.attributes_select`: the sync metrics of two processes of one
/// executable without `process.pid` (one series for both, which keeps
/// counting after one exits), their write metrics each with its pid.
#[test]
fn a_group_of_metrics_keeps_its_own_attributes_and_cumulative_series() {
    use agent_common::sync::{SyncCall, SyncStats};
    let mut syncs = SyncStats::ZERO;
    syncs.calls[SyncCall::Fsync as usize] = 7;
    let sync_group = ("batchwatch.sync.*".to_owned(), Selection::of(&["*".to_owned()], &["process.pid".to_owned()]));
    let mut set = SeriesSet::new(Limits { groups: vec![sync_group], ..limits() }, at(0));
    let mut model = model();
    let (first, second) = (process(10, 1, "app"), process(11, 2, "app"));
    for app in [&first, &second] {
        model.record(app, 3, Some(&file("/var/lib/app.db")), &writes(100, 100, 1000));
        model.record_sync(app, 3, Some(&file("/var/lib/app.db")), &syncs);
    }
    model.close_interval(1.0);
    let s = set.collect(&observe(&model), None, None, at(1));

    let keys = |metric: &Metric| -> Vec<Vec<&str>> {
        let (_, points) = s.families.iter().find(|(m, _)| m.name == metric.name).unwrap();
        points.iter().map(|point| point.subject.iter().map(|(key, _)| *key).collect()).collect()
    };
    let fsyncs = [("process.executable.name", "app"), ("batchwatch.sync.call", "fsync")];
    assert_eq!(int(&s, &catalog::SYNC_CALLS, &fsyncs), 14);
    assert_eq!(keys(&catalog::SYNC_CALLS), [["process.executable.name", "process.command"]]);
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &[PID_10, ("batchwatch.syscall", "write")]), 100);
    assert_eq!(int(&s, &catalog::WRITE_CALLS, &[("process.pid", "11"), ("batchwatch.syscall", "write")]), 100);
    assert!(keys(&catalog::WRITE_CALLS).iter().all(|subject| subject.contains(&"process.pid")));
    assert_eq!(int(&s, &catalog::EXPORT_SERIES, &[]), s.points() as u64);

    // The first exits; the second syncs 7 times more: the sum goes on.
    model.exit(first.pid, 1.0);
    model.record_sync(&second, 3, Some(&file("/var/lib/app.db")), &syncs);
    model.close_interval(1.0);
    let s = set.collect(&observe(&model), None, None, at(2));
    assert_eq!(int(&s, &catalog::SYNC_CALLS, &fsyncs), 21);
}
