//! The Prometheus endpoint of `batchwatch run`, end to end: a real
//! Prometheus server (the Debian package) scrapes it every second, and
//! PromQL returns the series of a `dd` of known size, with the names the
//! OpenTelemetry Collector would give them, and the exact values. Root only.

#[path = "support/prometheus_server.rs"]
#[expect(dead_code, reason = "label lookups serve the dashboards test; here only values")]
mod prometheus_server;
mod support;

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use agent_common::{hist::log2_slot, write::BYTES_SLOTS};
use batchwatch::{
    export::catalog::{self, Instrument},
    model::metrics::Quantiles,
};

use self::{
    prometheus_server::PrometheusServer,
    support::{Agent, BLOCK, BLOCKS, MIXED_WRITES, MixedWriter, dd_blocks, free_port, run_command},
};

/// Starts `batchwatch run` serving /metrics on a free port, without OTLP.
fn start_serving() -> (Agent, String) {
    start_serving_with(&[])
}

/// The same, with `more` settings.
fn start_serving_with(more: &[(&str, &str)]) -> (Agent, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut env = vec![
        ("OTEL_METRICS_EXPORTER", "none"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ("BATCHWATCH_TRANSITION_COST_NS", "100"),
        ("BATCHWATCH_MIN_OPS_PER_SEC", "0"),
    ];
    env.extend_from_slice(more);
    let agent = Agent::start(&["--prometheus", &addr], &env);
    (agent, addr)
}

#[test]
fn prometheus_scrapes_the_workload_under_the_translated_names() {
    let (mut agent, target) = start_serving();
    let prometheus = scraping(&target);
    // Prometheus takes its first scrape some seconds after it starts.
    wait_for(&prometheus, "up{job=\"batchwatch\"}", 1.0);
    let pid = dd_blocks().to_string();

    // Series of an exited process go after two collections: ask for their last value.
    let series = format!("process_pid=\"{pid}\",batchwatch_fd_kind=\"chardev\"");
    let calls = format!("last_over_time(batchwatch_write_calls_total{{{series},batchwatch_syscall=\"write\"}}[5m])");
    wait_for(&prometheus, &calls, BLOCKS as f64);
    let bytes = format!("last_over_time(batchwatch_write_io_bytes_total{{{series}}}[5m])");
    assert_eq!(value_of(&prometheus, &bytes), (BLOCKS * BLOCK) as f64);
    // Every block lies in the bucket (256, 512]: Prometheus interpolates
    // the median at its middle, and p99 near its top, 512 itself.
    let sizes = format!("last_over_time(batchwatch_write_batch_size_bytes_bucket{{{series}}}[5m])");
    assert_eq!(value_of(&prometheus, &format!("histogram_quantile(0.5, {sizes})")), 384.0);
    let p99 = value_of(&prometheus, &format!("histogram_quantile(0.99, {sizes})"));
    assert!((p99 - (256.0 + 256.0 * 0.99)).abs() < 1e-9, "{p99}");
    let count = format!("last_over_time(batchwatch_write_batch_size_bytes_count{{{series}}}[5m])");
    assert_eq!(value_of(&prometheus, &count), BLOCKS as f64);
    let cost = format!("last_over_time(batchwatch_process_transition_time_seconds_total{{process_pid=\"{pid}\"}}[5m])");
    assert!((value_of(&prometheus, &cost) - BLOCKS as f64 * 100e-9).abs() < 1e-12);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let target_info = format!("target_info{{host_name=\"{}\",service_name=\"batchwatch\"}}", hostname.trim());
    assert_eq!(value_of(&prometheus, &target_info), 1.0);

    assert!(agent.is_running());
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn at_the_executable_level_restarts_add_to_one_series_without_pid() {
    let (mut agent, addr) = start_serving_with(&[("BATCHWATCH_AGGREGATION", "executable")]);
    wait_until_ready(&addr);
    // One dd, then another: a restart.
    let pids = [dd_blocks(), dd_blocks()];
    let series = |body: &str| -> Vec<String> {
        body.lines()
            .filter(|line| {
                line.starts_with("batchwatch_write_calls_total{") && line.contains("process_executable_name=\"dd\"")
            })
            .filter(|line| {
                line.contains("batchwatch_fd_kind=\"chardev\"") && line.contains("batchwatch_syscall=\"write\"")
            })
            .map(str::to_owned)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let lines = loop {
        let (_, _, body) = get(&addr, "/metrics");
        let lines = series(&body);
        if lines.iter().any(|line| line.ends_with(&format!(" {}", 2 * BLOCKS))) {
            break lines;
        }
        assert!(Instant::now() < deadline, "no series of both dd's {} writes:\n{lines:?}", 2 * BLOCKS);
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(lines.len(), 1, "one series for both: {lines:?}");
    assert!(!lines[0].contains("process_pid"), "{}", lines[0]);
    assert_ne!(pids[0], pids[1]);
    assert!(agent.is_running());
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_group_of_metrics_carries_exactly_its_selected_attributes() {
    // `batchwatch.write.io` keeps only the pid; every other metric all the
    // process attributes, as by default.
    let config = std::env::temp_dir().join(format!("batchwatch-select-{}.toml", std::process::id()));
    std::fs::write(&config, "[export.attributes_select.\"batchwatch.write.io\"]\ninclude = [\"process.pid\"]\n")
        .unwrap();
    let (mut agent, addr) = start_serving_with(&[("BATCHWATCH_CONFIG", config.to_str().unwrap())]);
    wait_until_ready(&addr);
    let pid = dd_blocks().to_string();
    let body = scrape_with(&addr, &pid);
    let of_dd = |family: &str| -> Vec<(Vec<String>, String)> {
        (body.lines())
            .filter_map(|line| line.strip_prefix(family)?.strip_prefix('{'))
            .filter_map(|rest| rest.split_once("} "))
            .filter(|(labels, _)| labels.contains(&format!("process_pid=\"{pid}\"")))
            .map(|(labels, value)| {
                let keys = labels.split("\",").map(|label| label.split('=').next().unwrap().to_owned()).collect();
                (keys, value.to_owned())
            })
            .collect()
    };
    let io = of_dd("batchwatch_write_io_bytes_total");
    assert_eq!(io, [(vec!["process_pid".to_owned(), "batchwatch_fd_kind".to_owned()], (BLOCKS * BLOCK).to_string())]);
    let calls = of_dd("batchwatch_write_calls_total");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0],
        (
            ["pid", "executable_name", "command", "runtime_name"]
                .map(|key| format!("process_{key}"))
                .into_iter()
                .chain(["batchwatch_fd_kind".to_owned(), "batchwatch_syscall".to_owned()])
                .collect::<Vec<_>>(),
            BLOCKS.to_string()
        )
    );
    assert!(agent.is_running());
    let (status, stderr) = agent.terminate();
    std::fs::remove_file(&config).unwrap();
    assert!(status.success(), "{stderr}");
}

#[test]
fn the_endpoint_serves_catalog_names_and_answers_probes() {
    let (agent, addr) = start_serving();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&addr, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "not ready after its first collection");
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&addr, "/healthz"), (200, "text/plain; charset=utf-8".to_owned(), "ok\n".to_owned()));
    assert_eq!(get(&addr, "/nothing").0, 404);

    let (status, content_type, body) = get(&addr, "/metrics");
    assert_eq!((status, content_type.as_str()), (200, "text/plain; version=0.0.4; charset=utf-8"));
    let mut families = 0;
    for line in body.lines().filter_map(|line| line.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').expect("# TYPE name kind");
        if name == "target_info" {
            continue;
        }
        let metric = catalog::ALL
            .into_iter()
            .find(|m| m.prometheus_name() == name)
            .unwrap_or_else(|| panic!("{name} is not in the catalog"));
        let expected = match metric.instrument {
            Instrument::Counter => "counter",
            Instrument::Gauge => "gauge",
            Instrument::Histogram { .. } => "histogram",
        };
        assert_eq!(kind, expected, "{name}");
        families += 1;
    }
    assert!(families >= 10, "{body}");
    assert!(body.contains("batchwatch_agent_fd_map_limit 16384\n"), "{body}");
    assert!(!body.contains("batchwatch_export_queue"), "no OTLP, no OTLP queue");
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_busy_port_is_named() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run_command(&["--prometheus", &addr], &[("OTEL_METRICS_EXPORTER", "none")]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot serve Prometheus metrics on {addr}: Address already in use")), "{stderr}");
}

/// A Prometheus server on the loopback scraping `target` every second.
fn scraping(target: &str) -> PrometheusServer {
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: batchwatch\n    static_configs:\n      - targets: ['{target}']\n"
    );
    PrometheusServer::start("prometheus", &format!("127.0.0.1:{}", free_port()), &config, &[], &[])
}

/// The same Prometheus, asking for native histograms: it scrapes the
/// protobuf exposition.
fn scraping_native(target: &str) -> PrometheusServer {
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: batchwatch\n    static_configs:\n      - targets: ['{target}']\n"
    );
    let flags = ["--enable-feature=native-histograms"];
    PrometheusServer::start("native", &format!("127.0.0.1:{}", free_port()), &config, &[], &flags)
}

/// The value of a PromQL instant query that returns one sample.
fn value_of(prometheus: &PrometheusServer, promql: &str) -> f64 {
    match prometheus.query(promql).as_deref() {
        Ok([one]) => one.value,
        other => panic!("no single sample for {promql}: {other:?}"),
    }
}

/// Polls `promql` for up to 30 s until it returns the one sample `expected`.
fn wait_for(prometheus: &PrometheusServer, promql: &str, expected: f64) {
    prometheus.wait_until(promql, Duration::from_secs(30), |result| matches!(result, [one] if one.value == expected));
}

/// GET `path` from `addr` over HTTP/1.0: (status code, content type, body).
fn get(addr: &str, path: &str) -> (u16, String, String) {
    get_from(TcpStream::connect(addr).expect("connect"), addr, path)
}

/// GET `path` from `addr` on a connection from the loopback address
/// 127.0.0.2, a client apart from those on 127.0.0.1.
fn get_from_another_client(addr: &str, path: &str) -> (u16, String, String) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.2:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    socket.connect(&addr.parse::<std::net::SocketAddr>().unwrap().into()).expect("connect");
    get_from(socket.into(), addr, path)
}

fn get_from(mut stream: TcpStream, addr: &str, path: &str) -> (u16, String, String) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("a status code");
    let content_type = head
        .lines()
        .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

#[test]
fn native_histograms_give_the_reports_quantiles_within_a_bucket() {
    let (agent, target) = start_serving();
    let prometheus = scraping_native(&target);
    wait_for(&prometheus, "up{job=\"batchwatch\"}", 1.0);
    let writer = MixedWriter::start();
    let pid = writer.pid().to_string();

    let series = format!("process_pid=\"{pid}\",batchwatch_fd_kind=\"chardev\"");
    // Prometheus 2.42's last_over_time takes no native histogram: the
    // writer stays alive, its series fresh.
    let sizes = format!("batchwatch_write_batch_size_bytes{{{series}}}");
    let calls: u64 = MIXED_WRITES.iter().map(|&(_, n)| n).sum();
    wait_for(&prometheus, &format!("histogram_count({sizes})"), calls as f64);
    let bytes: u64 = MIXED_WRITES.iter().map(|&(size, n)| size * n).sum();
    assert_eq!(value_of(&prometheus, &format!("histogram_sum({sizes})")), bytes as f64);
    // Native only: no classic series for this histogram.
    let classic = format!("batchwatch_write_batch_size_bytes_bucket{{{series}}}");
    assert_eq!(prometheus.query(&classic).map(|samples| samples.len()), Ok(0));

    // What the report says for this workload: p50 and p99 as the upper
    // edges of their buckets, 100 B in (64, 128] and 5000 B in (4096, 8192].
    let mut slots = [0; BYTES_SLOTS];
    MIXED_WRITES.iter().for_each(|&(size, n)| slots[log2_slot(size, BYTES_SLOTS)] += n);
    let report = Quantiles::of(&slots).unwrap();
    assert_eq!((report.p50, report.p99), (128, 8192));
    for (q, edge) in [(0.5, report.p50), (0.99, report.p99)] {
        let quantile = value_of(&prometheus, &format!("histogram_quantile({q}, {sizes})"));
        let bucket = (edge as f64 / 2.0, edge as f64);
        println!("p{}: Prometheus {quantile}, the report {edge}", q * 100.0);
        assert!(bucket.0 < quantile && quantile <= bucket.1, "p{}: {quantile} outside {bucket:?}", q * 100.0);
    }
    // The waits, in seconds, stay classic.
    let waits = format!("batchwatch_write_batch_wait_seconds_count{{{series}}}");
    assert_eq!(value_of(&prometheus, &waits), (calls - 1) as f64);
    drop(writer);
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn every_series_of_a_histogram_has_the_same_buckets_in_every_scrape() {
    let (agent, addr) = start_serving();
    // Small writes first, then one process whose writes are 2,048 times larger.
    let small = dd_zeros(64, 1000);
    let first = scrape_with(&addr, &small);
    let large = dd_zeros(128 << 10, 10);
    let second = scrape_with(&addr, &large);

    for metric in catalog::ALL.into_iter().filter(|m| matches!(m.instrument, Instrument::Histogram { .. })) {
        let family = metric.prometheus_family();
        let expected = metric.bucket_bounds().len() + 1;
        let (first, second) = (bucket_bounds(&first, &family), bucket_bounds(&second, &family));
        let Some((series, les)) = first.iter().chain(&second).next() else { continue };
        assert_eq!(les.len(), expected, "{family}{{{series}}}: {les:?}");
        for (other, other_les) in first.iter().chain(&second) {
            assert_eq!(other_les, les, "{family}: {{{other}}} has other buckets than {{{series}}}");
        }
    }
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
}

/// Runs `dd` writing `count` blocks of `block` bytes to /dev/null; returns its pid.
fn dd_zeros(block: u64, count: u64) -> String {
    let mut dd = std::process::Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", &format!("bs={block}"), &format!("count={count}"), "status=none"])
        .spawn()
        .expect("start dd");
    let pid = dd.id();
    assert!(dd.wait().expect("dd").success());
    pid.to_string()
}

/// /metrics once it has series of `pid`, polled for up to 15 s.
fn scrape_with(addr: &str, pid: &str) -> String {
    let wanted = format!("process_pid=\"{pid}\"");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, body) = get(addr, "/metrics");
        if status == 200 && body.contains(&wanted) {
            return body;
        }
        assert!(Instant::now() < deadline, "no series of pid {pid} after 15 s:\n{body}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// The `le` values of every series of histogram `family` in a scrape, by
/// the series' other labels, in the order served.
fn bucket_bounds(body: &str, family: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut series = std::collections::BTreeMap::<String, Vec<String>>::new();
    let prefix = format!("{family}_bucket{{");
    for line in body.lines().filter_map(|line| line.strip_prefix(&prefix)) {
        let (labels, _) = line.rsplit_once('}').expect("labels end with }");
        let (others, le) = labels.rsplit_once("le=\"").expect("an le label");
        series.entry(others.to_owned()).or_default().push(le.trim_end_matches('"').to_owned());
    }
    series
}

/// Clients that each send half a request and wait.
const HALF_OPEN: usize = 4000;

/// How much the agent's RSS may grow while HALF_OPEN half-open clients try
/// to hold it. Without limits, 4,000 of them took it from 44 to 145 MiB
/// here (from 39 to 107 MiB when they only connect). With them, connections
/// cost nothing measurable (39 to 39 MiB when they only connect); what
/// grows is the agent's model of the 4,000 sockets the clients wrote their
/// half requests to (15-20 MiB here, 2 CPUs), which any writer of 4,000
/// sockets costs.
const RSS_GROWTH_BOUND_KIB: u64 = 32 << 10;

#[test]
fn half_open_clients_are_cut_off_and_the_probes_still_answer() {
    raise_open_files_limit(HALF_OPEN as u64 + 1024);
    let (mut agent, addr) = start_serving_with(&[("BATCHWATCH_PROMETHEUS_HEADER_TIMEOUT", "15s")]);
    let pid = agent.child.id();
    wait_until_ready(&addr);
    // Past the first collections, which grow it anyway.
    thread::sleep(Duration::from_secs(3));
    let rss_before = rss_kib(pid);

    let started = Instant::now();
    let clients: Vec<TcpStream> = (0..HALF_OPEN)
        .map(|_| {
            let mut client = TcpStream::connect(&addr).expect("connect");
            client.write_all(b"GET /metrics HTTP/1.1\r\nHost: batchwatch\r\n").unwrap();
            client
        })
        .collect();
    let connected_in = started.elapsed();
    assert!(connected_in < Duration::from_secs(12), "the clients took {connected_in:?}, near the header timeout");
    // Those over the per-client limit are closed at once; the others are held.
    let (closed, held) = wait_for_closed(&clients, HALF_OPEN - 8, Duration::from_secs(5));
    assert_eq!((closed, held), (HALF_OPEN - 8, 8));
    let rss_held = rss_kib(pid);
    assert_eq!(get_from_another_client(&addr, "/healthz").0, 200, "the kubelet's probe still answers");
    let refused = endpoint_errors(&addr, "client_limit", (HALF_OPEN - 8) as u64);
    println!(
        "{HALF_OPEN} half-open clients in {connected_in:?}: RSS {rss_before} KiB before, {rss_held} KiB while \
         held, {refused} refused at once"
    );
    assert!(rss_held < rss_before + RSS_GROWTH_BOUND_KIB, "RSS grew from {rss_before} KiB to {rss_held} KiB");

    // The held ones are cut after the header timeout, and counted.
    let (closed, held) = wait_for_closed(&clients, HALF_OPEN, Duration::from_secs(20));
    assert_eq!((closed, held), (HALF_OPEN, 0));
    assert!(started.elapsed() >= Duration::from_secs(15), "cut before the header timeout");
    endpoint_errors(&addr, "header_timeout", 8);
    assert_eq!(get(&addr, "/healthz").0, 200, "127.0.0.1 may connect again");
    assert!(agent.is_running());
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn failing_accepts_back_off_and_the_endpoint_recovers() {
    let (agent, addr) = start_serving_with(&[("BATCHWATCH_PROMETHEUS_HEADER_TIMEOUT", "2s")]);
    let pid = agent.child.id();
    wait_until_ready(&addr);
    // Room for one descriptor more (the lowest free number; the limit is on
    // numbers): the first client takes it, and accept fails with EMFILE for
    // the next, which stays queued.
    let open: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    let lowest_free = (0..).find(|fd| !open.contains(fd)).unwrap();
    let original = set_open_files_limit(pid, lowest_free + 1);
    let clients: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).expect("connect")).collect();
    thread::sleep(Duration::from_secs(3));
    set_open_files_limit(pid, original);
    // The held client is cut after 2 s, then the queued one is accepted and cut too.
    let (closed, _) = wait_for_closed(&clients, 2, Duration::from_secs(10));
    assert_eq!(closed, 2);
    let failed = endpoint_errors_at_least(&addr, "accept_failed", 1);
    // Retried in a loop, accept would have failed millions of times in 3 s;
    // with the backoff (10 ms doubling to 1 s) it fails about ten times.
    assert!(failed <= 15, "accept failed {failed} times in 3 s");
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("the Prometheus endpoint cannot accept connections, backing off"), "{stderr}");
}

fn wait_until_ready(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(addr, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "not ready after its first collection");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `clients` until `wanted` of them are closed by the agent or
/// `within` passes: (closed, still open).
fn wait_for_closed(clients: &[TcpStream], wanted: usize, within: Duration) -> (usize, usize) {
    let deadline = Instant::now() + within;
    loop {
        let closed = clients.iter().filter(|client| is_closed(client)).count();
        if closed >= wanted || Instant::now() > deadline {
            return (closed, clients.len() - closed);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Whether the peer closed (or reset) the connection; never blocks.
fn is_closed(mut client: &TcpStream) -> bool {
    client.set_nonblocking(true).unwrap();
    let mut byte = [0];
    match client.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("a half-sent request was answered"),
        Err(error) if error.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Polls /metrics from 127.0.0.2 for up to 10 s until the endpoint's
/// `reason` count is `expected`; returns it.
fn endpoint_errors(addr: &str, reason: &str, expected: u64) -> u64 {
    poll_endpoint_errors(addr, reason, |count| count == expected)
}

fn endpoint_errors_at_least(addr: &str, reason: &str, least: u64) -> u64 {
    poll_endpoint_errors(addr, reason, |count| count >= least)
}

fn poll_endpoint_errors(addr: &str, reason: &str, done: impl Fn(u64) -> bool) -> u64 {
    let line = format!("batchwatch_export_prometheus_errors_total{{batchwatch_endpoint_error=\"{reason}\"}} ");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, body) = get_from_another_client(addr, "/metrics");
        let count = body.lines().find_map(|l| l.strip_prefix(&line)).map(|v| v.parse::<u64>().expect("a count"));
        match count {
            Some(count) if done(count) => return count,
            _ if Instant::now() > deadline => panic!("{reason}: {count:?} after 10 s"),
            _ => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).expect("VmRSS");
    line.trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// Raises this test's own RLIMIT_NOFILE to at least `wanted` (the agent,
/// started after, inherits it).
fn raise_open_files_limit(wanted: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted;
            limit.rlim_max = limit.rlim_max.max(wanted);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0, "{}", std::io::Error::last_os_error());
        }
    }
}

/// Sets `pid`'s soft RLIMIT_NOFILE to `limit`; returns the old one.
fn set_open_files_limit(pid: u32, limit: u64) -> u64 {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: prlimit(2) on a child we started, with valid rlimit structs.
    unsafe {
        assert_eq!(libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old), 0);
        let new = libc::rlimit { rlim_cur: limit, rlim_max: old.rlim_max };
        assert_eq!(libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()), 0);
    }
    old.rlim_cur
}

#[test]
fn a_client_that_never_reads_its_responses_is_cut_at_the_end_of_its_lifetime() {
    let (agent, addr) = start_serving_with(&[
        ("BATCHWATCH_PROMETHEUS_HEADER_TIMEOUT", "1s"),
        ("BATCHWATCH_PROMETHEUS_CONNECTION_LIFETIME", "2s"),
    ]);
    wait_until_ready(&addr);
    // Fifty requests at once on a small receive buffer, never read: far more
    // than the socket buffers hold, so the agent is stuck writing.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.parse::<std::net::SocketAddr>().unwrap().into()).expect("connect");
    let mut client: TcpStream = socket.into();
    let request = "GET /metrics HTTP/1.1\r\nHost: batchwatch\r\n\r\n".repeat(50);
    client.write_all(request.as_bytes()).unwrap();
    let sent = Instant::now();

    endpoint_errors(&addr, "response_stalled", 1);
    assert!(sent.elapsed() >= Duration::from_secs(3), "cut before its lifetime and grace");
    // What was sent before the cut can still be read, then the end.
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut received = Vec::new();
    match client.read_to_end(&mut received) {
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
        Err(error) => panic!("the connection is still open after {} bytes: {error}", received.len()),
    }
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn the_endpoint_serves_tls_from_certificate_files() {
    let dir = std::env::temp_dir().join(format!("bw-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let openssl = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=batchwatch", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .args([&key, std::path::Path::new("-out"), &cert])
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(openssl.status.success(), "{}", String::from_utf8_lossy(&openssl.stderr));
    let (cert_path, key_path) = (cert.to_str().unwrap(), key.to_str().unwrap());

    let (agent, addr) = start_serving_with(&[
        ("BATCHWATCH_PROMETHEUS_TLS_CERT", cert_path),
        ("BATCHWATCH_PROMETHEUS_TLS_KEY", key_path),
    ]);
    let curl = |path: &str| {
        let output = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert", cert_path, &format!("https://{addr}{path}")])
            .output()
            .expect("curl");
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    assert_eq!(curl("/healthz"), (true, "ok\n".to_owned()), "verified against its certificate");
    // Plain HTTP to it is a failed handshake, counted.
    let mut plain = TcpStream::connect(&addr).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(plain, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("batchwatch_"), "no metrics over plain HTTP");
    let line = "batchwatch_export_prometheus_errors_total{batchwatch_endpoint_error=\"tls_handshake\"} 1\n";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !curl("/metrics").1.contains(line) {
        assert!(Instant::now() < deadline, "the failed handshake was not counted:\n{}", curl("/metrics").1);
        thread::sleep(Duration::from_millis(200));
    }
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");

    // A key that is not a key is named before the probes load.
    let output = run_command(
        &["--prometheus", "127.0.0.1:0"],
        &[
            ("OTEL_METRICS_EXPORTER", "none"),
            ("BATCHWATCH_PROMETHEUS_TLS_CERT", cert_path),
            ("BATCHWATCH_PROMETHEUS_TLS_KEY", cert_path),
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("config key `export.prometheus_tls_key`") && stderr.contains(cert_path), "{stderr}");
    assert!(!stderr.contains("probes attached"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
