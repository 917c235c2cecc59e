//! `batchwatch run` exporting over OTLP, end to end: the real binary, real
//! probes, a `dd` of known size, and OTLP receivers started by the test
//! (gRPC and HTTP/protobuf). The received metrics carry the documented
//! names, units and attributes and exact values; a receiver stopped and
//! restarted makes drops, and export resumes; SIGTERM flushes; bad OTLP
//! settings are named. Root only.

#[path = "support/otlp.rs"]
mod receiver;
mod support;

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use batchwatch::export::catalog::{self, Instrument};
use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    metrics::v1::{AggregationTemporality, metric::Data},
};

use self::{
    receiver::{Receiver, ServerTls, Transport, exponential, histogram, metric, metrics, number, text, value},
    support::{Agent, BLOCK, BLOCKS, MIXED_WRITES, MixedWriter, dd_blocks, free_port, run_command},
};

const WAIT: Duration = Duration::from_secs(30);

/// Exports every second to `receiver`, with a fixed transition cost so that
/// the transition time is exact, and no activity floor so that `dd` has
/// series of its own.
fn start_exporting(receiver: &Receiver, transport: Transport, more: &[(&str, &str)]) -> Agent {
    let endpoint = receiver.endpoint();
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_PROTOCOL", transport.protocol()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ("BATCHWATCH_TRANSITION_COST_NS", "100"),
        ("BATCHWATCH_MIN_OPS_PER_SEC", "0"),
    ];
    env.extend_from_slice(more);
    Agent::start(&[], &env)
}

/// The attributes of `dd`'s write series to /dev/null.
fn dd_devnull(pid: &str) -> [(&str, &str); 2] {
    [("process.pid", pid), ("batchwatch.fd.kind", "chardev")]
}

/// Whether `request` holds all of `pid`'s `dd` writes.
fn has_all_dd_writes(request: &ExportMetricsServiceRequest, pid: &str) -> bool {
    let [process, kind] = dd_devnull(pid);
    let calls = [process, kind, ("batchwatch.syscall", "write")];
    number(request, "batchwatch.write.calls", &calls).is_some_and(|p| value(p) == BLOCKS as f64)
}

#[test]
fn grpc_export_carries_the_documented_metrics_with_exact_values() {
    exports_exact_values(Transport::Grpc);
}

#[test]
fn http_export_carries_the_documented_metrics_with_exact_values() {
    exports_exact_values(Transport::Http);
}

fn exports_exact_values(transport: Transport) {
    let mut receiver = Receiver::start(transport);
    let more = [
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-test-token=s%20ecret"),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test"),
        ("K8S_NODE_NAME", "node-a"),
    ];
    let agent = start_exporting(&receiver, transport, &more);
    let pid = dd_blocks().to_string();
    // One that also reports an earlier delivery, for the agent's own metrics.
    let delivered =
        |r: &ExportMetricsServiceRequest| histogram(r, "batchwatch.export.batch.size", &[]).map(|h| h.count);
    let got = receiver.wait_for(WAIT, |r| has_all_dd_writes(&r.request, &pid) && delivered(&r.request) >= Some(1));
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "batchwatch run failed: {stderr}");

    assert_eq!(got.header("x-test-token"), Some("s ecret"));
    assert!(got.header("user-agent").is_some_and(|agent| agent.starts_with("batchwatch/")));
    if transport == Transport::Http {
        assert_eq!(got.path, "/v1/metrics");
        assert_eq!(got.header("content-type"), Some("application/x-protobuf"));
    }
    let request = &got.request;
    let resource = &request.resource_metrics[0].resource.as_ref().expect("a resource").attributes;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(text(resource, "service.name").as_deref(), Some("batchwatch"));
    assert_eq!(text(resource, "host.name").as_deref(), Some(hostname.trim()));
    assert_eq!(text(resource, "k8s.node.name").as_deref(), Some("node-a"));
    assert_eq!(text(resource, "deployment.environment.name").as_deref(), Some("test"));
    assert_eq!(request.resource_metrics[0].scope_metrics[0].scope.as_ref().unwrap().name, "batchwatch");

    every_metric_is_as_documented(request);
    dd_has_exact_values(request, &pid);
    node_and_agent_metrics(request);
}

/// Every metric received is in the catalog, with its unit, instrument,
/// temporality and buckets.
fn every_metric_is_as_documented(request: &ExportMetricsServiceRequest) {
    let cumulative = AggregationTemporality::Cumulative as i32;
    for received in metrics(request) {
        let documented = catalog::find(&received.name).unwrap_or_else(|| panic!("{} is not documented", received.name));
        assert_eq!(received.unit, documented.unit, "{}", received.name);
        assert_eq!(received.description, documented.description);
        match (received.data.as_ref().unwrap(), documented.instrument) {
            (Data::Sum(sum), Instrument::Counter) => {
                assert!(sum.is_monotonic && sum.aggregation_temporality == cumulative, "{}", received.name);
            }
            (Data::Gauge(_), Instrument::Gauge) => {}
            (Data::Histogram(h), Instrument::Histogram { slots, .. }) => {
                assert_eq!(h.aggregation_temporality, cumulative);
                let bounds = documented.bucket_bounds();
                for point in &h.data_points {
                    // Every point has all the documented bounds, whatever its largest value.
                    assert_eq!(point.explicit_bounds, bounds, "{}", received.name);
                    assert_eq!(point.bucket_counts.len(), slots, "{}", received.name);
                    assert_eq!(point.count, point.bucket_counts.iter().sum::<u64>());
                }
            }
            (data, instrument) => panic!("{}: {instrument:?} sent as {data:?}", received.name),
        }
    }
}

/// `dd` wrote BLOCKS blocks of BLOCK bytes to /dev/null, one write() each.
fn dd_has_exact_values(request: &ExportMetricsServiceRequest, pid: &str) {
    let series = dd_devnull(pid);
    let counter = |name: &str, extra: &[(&str, &str)]| {
        let wanted: Vec<_> = series.iter().chain(extra).copied().collect();
        value(number(request, name, &wanted).unwrap_or_else(|| panic!("{name} {wanted:?}")))
    };
    assert_eq!(counter("batchwatch.write.calls", &[("batchwatch.syscall", "write")]), BLOCKS as f64);
    assert_eq!(counter("batchwatch.write.io", &[]), (BLOCKS * BLOCK) as f64);
    assert_eq!(counter("batchwatch.write.records", &[]), BLOCKS as f64);
    for reason in ["short_write", "eagain", "epipe", "enobufs", "other_error"] {
        assert_eq!(counter("batchwatch.write.drops", &[("batchwatch.drop.reason", reason)]), 0.0, "{reason}");
    }
    let point = number(request, "batchwatch.write.calls", &series).unwrap();
    let attribute = |key| text(&point.attributes, key);
    assert_eq!(attribute("process.executable.name").as_deref(), Some("dd"));
    assert!(point.start_time_unix_nano > 0 && point.start_time_unix_nano < point.time_unix_nano);

    let sizes = histogram(request, "batchwatch.write.batch.size", &series).expect("batch sizes");
    // 512 lies in slot 10, (256, 512]: the bucket whose upper bound is 512.
    assert_eq!(sizes.explicit_bounds[10], 512.0);
    assert_eq!((sizes.count, sizes.bucket_counts[10], sizes.sum), (BLOCKS, BLOCKS, Some((BLOCKS * BLOCK) as f64)));
    let records = histogram(request, "batchwatch.write.batch.records", &series).expect("records");
    assert_eq!((records.count, records.bucket_counts[1], records.sum), (BLOCKS, BLOCKS, Some(BLOCKS as f64)));
    let waits = histogram(request, "batchwatch.write.batch.wait", &series).expect("waits");
    assert_eq!(waits.count, BLOCKS - 1, "the first write has no gap before it");
    assert!(waits.sum.unwrap() > 0.0 && waits.sum.unwrap() < 60.0);

    let process = [("process.pid", pid)];
    let transition = value(number(request, "batchwatch.process.transition.time", &process).unwrap());
    assert!((transition - BLOCKS as f64 * 100e-9).abs() < 1e-12, "{transition}");
    let avoidable = value(number(request, "batchwatch.process.transition.avoidable", &process).unwrap());
    let expected = (BLOCKS as f64 - BLOCKS as f64 / 64.0) * 100e-9;
    assert!((avoidable - expected).abs() < 1e-12, "{avoidable} against {expected}");
    // A flag needs three hot intervals in a row; dd lives for one.
    let flag = [("process.pid", pid), ("batchwatch.unbatched.reason", "hot_writer")];
    assert_eq!(value(number(request, "batchwatch.process.unbatched", &flag).unwrap()), 0.0);
}

fn node_and_agent_metrics(request: &ExportMetricsServiceRequest) {
    let node = |name: &str| value(number(request, name, &[]).unwrap_or_else(|| panic!("{name}")));
    assert!((node("batchwatch.node.transition.cost") - 100e-9).abs() < 1e-18);
    assert_eq!(node("batchwatch.agent.fd_map.limit"), 16384.0);
    assert!(node("batchwatch.agent.fd_map.usage") >= 1.0);
    assert_eq!(node("batchwatch.export.queue.limit"), 10.0);
    let points: usize = metrics(request)
        .map(|m| match m.data.as_ref().unwrap() {
            Data::Sum(s) => s.data_points.len(),
            Data::Gauge(g) => g.data_points.len(),
            Data::Histogram(h) => h.data_points.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(node("batchwatch.export.series"), points as f64);
    let batches = histogram(request, "batchwatch.export.batch.size", &[]).expect("export batch sizes");
    assert!(batches.sum.unwrap() >= batches.count as f64, "each delivery had points");
    let waits = histogram(request, "batchwatch.export.batch.wait", &[]).expect("export waits");
    assert_eq!(waits.count, batches.count);
    for reason in ["queue_full", "rejected"] {
        assert_eq!(
            value(number(request, "batchwatch.export.drops", &[("batchwatch.drop.reason", reason)]).unwrap()),
            0.0
        );
    }
    for error in ["stats_map_full", "args_unreadable", "uring_map_full"] {
        assert!(number(request, "batchwatch.agent.probe.errors", &[("batchwatch.probe.error", error)]).is_some());
    }
}

/// Runs `dd` writing `count` blocks of `bs` bytes from /dev/zero to /dev/null; returns its pid.
pub fn dd(bs: u64, count: u64) -> u32 {
    let mut dd = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", &format!("bs={bs}"), &format!("count={count}"), "status=none"])
        .spawn()
        .expect("start dd");
    let pid = dd.id();
    assert!(dd.wait().expect("dd").success());
    pid
}

#[test]
fn a_hot_writer_is_flagged_with_its_reason() {
    let mut receiver = Receiver::start(Transport::Http);
    let fast = [("BATCHWATCH_INTERVAL", "200ms"), ("BATCHWATCH_SUSTAIN_INTERVALS", "2")];
    let agent = start_exporting(&receiver, Transport::Http, &fast);
    // Three million 1-byte writes: seconds of a hot writer, one record per call.
    let dd = thread::spawn(|| dd(1, 3_000_000));
    let got = receiver.wait_for(WAIT, |r| {
        let flags = metric(&r.request, "batchwatch.process.unbatched").map(|m| match m.data.as_ref() {
            Some(Data::Gauge(g)) => g.data_points.clone(),
            _ => Vec::new(),
        });
        flags.unwrap_or_default().iter().any(|p| {
            text(&p.attributes, "process.executable.name").as_deref() == Some("dd")
                && text(&p.attributes, "batchwatch.unbatched.reason").as_deref() == Some("hot_writer")
                && value(p) == 1.0
        })
    });
    let pid = dd.join().unwrap().to_string();
    let flagged = [("process.pid", pid.as_str()), ("batchwatch.unbatched.reason", "hot_writer")];
    assert_eq!(value(number(&got.request, "batchwatch.process.unbatched", &flagged).expect("dd's flag")), 1.0);
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_receiver_down_then_back_makes_drops_and_export_resumes() {
    let mut receiver = Receiver::start(Transport::Grpc);
    let mut agent = start_exporting(&receiver, Transport::Grpc, &[("BATCHWATCH_QUEUE_CAPACITY", "2")]);
    receiver.wait_for(WAIT, |_| true);
    receiver.stop();
    // Six collections for a queue of two, while the agent keeps observing.
    thread::sleep(Duration::from_secs(6));
    assert!(agent.is_running(), "the agent survives its receiver");
    receiver.restart();
    let queue_full = [("batchwatch.drop.reason", "queue_full")];
    let dropped = |r: &ExportMetricsServiceRequest| number(r, "batchwatch.export.drops", &queue_full).map(value);
    let got = receiver.wait_for(WAIT, |r| dropped(&r.request).is_some_and(|n| n > 0.0));
    let queue = |name| value(number(&got.request, name, &[]).unwrap());
    assert_eq!(queue("batchwatch.export.queue.limit"), 2.0);
    assert!(queue("batchwatch.export.queue.usage") <= 2.0);
    // Export goes on with new data.
    let pid = dd_blocks().to_string();
    receiver.wait_for(WAIT, |r| has_all_dd_writes(&r.request, &pid));
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("OTLP export failed, retrying"), "{stderr}");
    assert!(stderr.contains("OTLP export resumed"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn sigterm_collects_once_more_flushes_and_exits_zero() {
    let mut receiver = Receiver::start(Transport::Http);
    let agent = start_exporting(&receiver, Transport::Http, &[("OTEL_METRIC_EXPORT_INTERVAL", "600000")]);
    // The first collection goes at the first tick; the next would be in ten minutes.
    receiver.wait_for(WAIT, |_| true);
    let pid = dd_blocks().to_string();
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
    let flushed = receiver.drain(Duration::from_secs(2));
    assert_eq!(flushed.len(), 1, "one final collection");
    assert!(has_all_dd_writes(&flushed[0].request, &pid), "the final collection holds dd's writes");
}

#[test]
fn scrapes_see_the_last_tick_while_otlp_keeps_its_interval() {
    let mut receiver = Receiver::start(Transport::Http);
    let (endpoint, addr) = (receiver.endpoint(), format!("127.0.0.1:{}", free_port()));
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "600000"),
        ("BATCHWATCH_MIN_OPS_PER_SEC", "0"),
    ];
    let agent = Agent::start(&["--prometheus", &addr], &env);
    // The first export goes at the first tick; the next would be in ten minutes.
    receiver.wait_for(WAIT, |_| true);
    let pid = dd_blocks().to_string();
    let labels = [format!("process_pid=\"{pid}\""), "batchwatch_fd_kind=\"chardev\"".to_owned()];
    let all_writes = |line: &&str| {
        line.starts_with("batchwatch_write_calls_total{")
            && labels.iter().all(|label| line.contains(label.as_str()))
            && line.ends_with(&format!(" {BLOCKS}"))
    };
    // Served within seconds, not at the next export ten minutes away.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let body = curl(&format!("http://{addr}/metrics"));
        if body.lines().any(|line| all_writes(&line)) {
            break body;
        }
        assert!(Instant::now() < deadline, "dd's {BLOCKS} writes not served 10 s after it ended:\n{body}");
        thread::sleep(Duration::from_millis(200));
    };
    assert!(body.contains("batchwatch_export_queue_limit 10\n"), "{body}");
    assert_eq!(receiver.drain(Duration::from_millis(500)).len(), 0, "no OTLP export between its intervals");
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
    let flushed = receiver.drain(Duration::from_secs(2));
    assert_eq!(flushed.len(), 1, "one final collection");
    assert!(has_all_dd_writes(&flushed[0].request, &pid), "the final collection holds dd's writes");
}

/// The body of a GET of `url`.
fn curl(url: &str) -> String {
    let output = Command::new("curl").args(["-sS", "--max-time", "10", url]).output().expect("curl");
    assert!(output.status.success(), "{url}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn gzip_bodies_arrive_compressed_over_http_and_grpc() {
    for (transport, variable) in [
        (Transport::Http, "OTEL_EXPORTER_OTLP_COMPRESSION"),
        (Transport::Grpc, "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION"),
    ] {
        let mut receiver = Receiver::start(transport);
        let agent = start_exporting(&receiver, transport, &[(variable, "gzip")]);
        let pid = dd_blocks().to_string();
        let got = receiver.wait_for(WAIT, |r| has_all_dd_writes(&r.request, &pid));
        let (status, stderr) = agent.terminate();
        assert!(status.success(), "{stderr}");
        match transport {
            Transport::Http => {
                assert_eq!(got.header("content-encoding"), Some("gzip"));
                let decoded = prost::Message::encoded_len(&got.request);
                println!("HTTP: {} bytes on the wire for a {decoded}-byte request", got.body_bytes);
                assert!(got.body_bytes * 3 < decoded, "{} bytes gzipped of {decoded}", got.body_bytes);
            }
            // tonic's receiver only decodes a gzip message it was told to accept.
            Transport::Grpc => assert_eq!(got.header("grpc-encoding"), Some("gzip")),
        }
    }
}

#[test]
fn mutual_tls_with_a_ca_and_client_certificate_made_here() {
    let ca = TestCa::new();
    for transport in [Transport::Http, Transport::Grpc] {
        let mut receiver = Receiver::start_with(transport, Some(ca.server_tls()));
        let (ca_file, cert, key) = (ca.path("ca.pem"), ca.path("client.pem"), ca.path("client.key"));
        // The generic variables for one transport, the metrics-specific ones for the other.
        let names = match transport {
            Transport::Http => [
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            ],
            Transport::Grpc => [
                "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
            ],
        };
        let agent = start_exporting(&receiver, transport, &[(names[0], &ca_file), (names[1], &cert), (names[2], &key)]);
        let pid = dd_blocks().to_string();
        receiver.wait_for(WAIT, |r| has_all_dd_writes(&r.request, &pid));
        let (status, stderr) = agent.terminate();
        assert!(status.success(), "{stderr}");
        // Its last collection, sent on SIGTERM.
        receiver.drain(Duration::from_secs(1));

        // Without its client certificate, the receiver refuses the agent.
        let agent = start_exporting(&receiver, transport, &[(names[0], &ca_file)]);
        assert!(
            receiver.drain(Duration::from_secs(4)).is_empty(),
            "{transport:?}: a client without certificate got in"
        );
        let (status, stderr) = agent.terminate();
        assert!(status.success(), "{stderr}");
        assert!(stderr.contains("OTLP export failed, retrying"), "{transport:?}: {stderr}");
    }
}

#[test]
fn delta_points_sum_to_the_cumulative_ones() {
    let mut receiver = Receiver::start(Transport::Http);
    let agent =
        start_exporting(&receiver, Transport::Http, &[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")]);
    receiver.wait_for(WAIT, |_| true);
    let pid = dd_blocks().to_string();
    // dd's writes are in one or more deltas; then a few exports with none.
    thread::sleep(Duration::from_secs(3));
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
    receiver.drain(Duration::from_secs(2));

    let series = dd_devnull(&pid);
    let calls = [series[0], series[1], ("batchwatch.syscall", "write")];
    let (mut total_calls, mut sizes, mut sized_bytes, mut deltas) = (0.0, 0, 0.0, 0);
    let delta = AggregationTemporality::Delta as i32;
    for received in &receiver.log {
        let request = &received.request;
        if let Some(Data::Sum(sum)) = metric(request, "batchwatch.write.calls").and_then(|m| m.data.as_ref()) {
            assert_eq!(sum.aggregation_temporality, delta);
        }
        if let Some(point) = number(request, "batchwatch.write.calls", &calls) {
            total_calls += value(point);
            deltas += 1;
            assert!(point.start_time_unix_nano < point.time_unix_nano);
        }
        if let Some(point) = histogram(request, "batchwatch.write.batch.size", &series) {
            sizes += point.count;
            sized_bytes += point.sum.unwrap();
        }
    }
    assert!(deltas >= 2, "dd's series in {deltas} export(s)");
    assert_eq!((total_calls, sizes, sized_bytes), (BLOCKS as f64, BLOCKS, (BLOCKS * BLOCK) as f64));
}

#[test]
fn exponential_histograms_carry_the_kernel_slots_at_scale_0() {
    let mut receiver = Receiver::start(Transport::Grpc);
    let agent = start_exporting(&receiver, Transport::Grpc, &[("BATCHWATCH_HISTOGRAMS", "exponential")]);
    let writer = MixedWriter::start();
    let pid = writer.pid().to_string();
    let series = [("process.pid", pid.as_str()), ("batchwatch.fd.kind", "chardev")];
    let calls: u64 = MIXED_WRITES.iter().map(|&(_, n)| n).sum();
    let got = receiver.wait_for(WAIT, |r| {
        exponential(&r.request, "batchwatch.write.batch.size", &series).is_some_and(|p| p.count == calls)
    });
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");

    let sizes = exponential(&got.request, "batchwatch.write.batch.size", &series).unwrap();
    let bytes: u64 = MIXED_WRITES.iter().map(|&(size, n)| size * n).sum();
    assert_eq!((sizes.scale, sizes.zero_threshold, sizes.sum), (0, 0.0, Some(bytes as f64)));
    // 10 empty writes in the zero bucket; 1 B in (1/2, 1], index -1, the
    // first; 100 B in (64, 128], index 6; 4096 B in (2048, 4096], index 11;
    // 5000 B in (4096, 8192], index 12.
    assert_eq!(sizes.zero_count, 10);
    let positive = sizes.positive.as_ref().expect("positive buckets");
    let mut expected = vec![0; 14];
    (expected[0], expected[7], expected[12], expected[13]) = (400, 1200, 300, 90);
    assert_eq!((positive.offset, &positive.bucket_counts), (-1, &expected));
    assert_eq!((sizes.min, sizes.max), (None, None), "sizes differ: no exact extremes");
    // Every call wrote one record: exactly 1, so min and max are known.
    let records = exponential(&got.request, "batchwatch.write.batch.records", &series).expect("records");
    assert_eq!((records.zero_count, records.count, records.min, records.max), (0, calls, Some(1.0), Some(1.0)));
    assert_eq!(records.positive.as_ref().map(|b| (b.offset, b.bucket_counts.clone())), Some((-1, vec![calls])));
    // The waits, in seconds, stay explicit.
    let waits = histogram(&got.request, "batchwatch.write.batch.wait", &series).expect("explicit waits");
    assert_eq!(waits.count, calls - 1);
    for received in metrics(&got.request) {
        let documented = catalog::find(&received.name).unwrap();
        let exponential = matches!(documented.instrument, Instrument::Histogram { scale: catalog::Scale::Unit, .. });
        assert_eq!(
            matches!(received.data, Some(Data::ExponentialHistogram(_))),
            exponential,
            "{}: {:?}",
            received.name,
            documented.instrument
        );
    }
}

/// A CA, a receiver certificate for 127.0.0.1 and a client certificate it
/// signed, made by openssl in a directory of their own.
struct TestCa {
    dir: std::path::PathBuf,
}

impl TestCa {
    fn new() -> TestCa {
        let dir = std::env::temp_dir().join(format!("bw-otlp-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = TestCa { dir };
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"];
        ca.openssl(&[
            &["req", "-x509"],
            &key[..],
            &["-subj", "/CN=batchwatch test CA", "-keyout", "ca.key", "-out", "ca.pem"],
        ]);
        for (name, usage, san) in [("server", "serverAuth", "IP:127.0.0.1"), ("client", "clientAuth", "DNS:agent")] {
            let (key_out, cert_out) = (format!("{name}.key"), format!("{name}.pem"));
            let (usage, san, subject) =
                (format!("extendedKeyUsage={usage}"), format!("subjectAltName={san}"), format!("/CN={name}"));
            ca.openssl(&[
                &["req", "-x509", "-CA", "ca.pem", "-CAkey", "ca.key"],
                &key[..],
                &["-subj", &subject, "-addext", "basicConstraints=CA:FALSE", "-addext", &usage, "-addext", &san],
                &["-keyout", &key_out, "-out", &cert_out],
            ]);
        }
        ca
    }

    fn openssl(&self, args: &[&[&str]]) {
        let output = Command::new("openssl")
            .args(args.concat())
            .current_dir(&self.dir)
            .output()
            .expect("openssl (apt-get install openssl)");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_owned()
    }

    fn server_tls(&self) -> ServerTls {
        let read = |file: &str| std::fs::read(self.dir.join(file)).unwrap();
        ServerTls { cert: read("server.pem"), key: read("server.key"), client_ca: read("ca.pem") }
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn bad_otlp_settings_are_named_before_the_probes_load() {
    let cases: [(&[&str], (&str, &str), &str); 6] = [
        (
            &[],
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp"),
            "OTEL_EXPORTER_OTLP_PROTOCOL is `udp`: allowed grpc or http/protobuf",
        ),
        (
            &[],
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            "OTEL_EXPORTER_OTLP_ENDPOINT is `collector:4318`: scheme `collector` is not http or https",
        ),
        (
            &[],
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "authorization"),
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS has a bad entry `authorization`: no `=`",
        ),
        (&[], ("OTEL_EXPORTER_OTLP_TIMEOUT", "5s"), "OTEL_EXPORTER_OTLP_TIMEOUT is `5s`: expected milliseconds"),
        (
            &["--otlp-endpoint", "ftp://collector"],
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://fine:4318"),
            "config key `export.otlp_endpoint` (flag --otlp-endpoint, env BATCHWATCH_OTLP_ENDPOINT) is `ftp://collector`",
        ),
        (
            &[],
            ("OTEL_METRICS_EXPORTER", "prometheus"),
            "nothing to export: OTEL_METRICS_EXPORTER leaves OTLP out, and no Prometheus address is set \
             (config key `export.prometheus` (flag --prometheus, env BATCHWATCH_PROMETHEUS))",
        ),
    ];
    for (args, var, expected) in cases {
        let output = run_command(args, &[var]).output().expect("run batchwatch");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{var:?}: {stderr}");
        assert!(stderr.contains(expected), "{var:?}: {stderr}");
        assert!(!stderr.contains("probes attached"), "{var:?} failed only after loading: {stderr}");
    }
}

#[test]
fn a_group_of_metrics_arrives_with_exactly_its_selected_attributes() {
    let config = std::env::temp_dir().join(format!("batchwatch-select-otlp-{}.toml", std::process::id()));
    std::fs::write(&config, "[export.attributes_select.\"batchwatch.write.io\"]\ninclude = [\"process.pid\"]\n")
        .unwrap();
    let mut receiver = Receiver::start(Transport::Http);
    let agent = start_exporting(&receiver, Transport::Http, &[("BATCHWATCH_CONFIG", config.to_str().unwrap())]);
    let pid = dd_blocks().to_string();
    let got = receiver.wait_for(WAIT, |r| has_all_dd_writes(&r.request, &pid));
    let (status, stderr) = agent.terminate();
    std::fs::remove_file(&config).unwrap();
    assert!(status.success(), "{stderr}");

    let keys = |name: &str, attributes: &[(&str, &str)]| -> Vec<String> {
        let point = number(&got.request, name, attributes).unwrap_or_else(|| panic!("{name} of dd"));
        point.attributes.iter().map(|attribute| attribute.key.clone()).collect()
    };
    let io = keys("batchwatch.write.io", &dd_devnull(&pid));
    assert_eq!(io, ["process.pid", "batchwatch.fd.kind"]);
    assert_eq!(value(number(&got.request, "batchwatch.write.io", &dd_devnull(&pid)).unwrap()), (BLOCKS * BLOCK) as f64);
    let [process, kind] = dd_devnull(&pid);
    let calls = keys("batchwatch.write.calls", &[process, kind, ("batchwatch.syscall", "write")]);
    assert_eq!(
        calls,
        [
            "process.pid",
            "process.executable.name",
            "process.command",
            "process.runtime.name",
            "batchwatch.fd.kind",
            "batchwatch.syscall"
        ]
    );
}
