//! The Prometheus endpoint of `batchwatch run`, end to end: a real
//! Prometheus server (the Debian package) scrapes it every second, and
//! PromQL returns the series of a `dd` of known size, with the names the
//! OpenTelemetry Collector would give them, and the exact values. Root only.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use batchwatch::export::catalog::{self, Instrument};
use serde_json::Value;

use self::support::{Agent, BLOCK, BLOCKS, dd_blocks, free_port, run_command};

/// Starts `batchwatch run` serving /metrics on a free port, without OTLP.
fn start_serving() -> (Agent, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let env = [
        ("OTEL_METRICS_EXPORTER", "none"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ("BATCHWATCH_TRANSITION_COST_NS", "100"),
        ("BATCHWATCH_MIN_OPS_PER_SEC", "0"),
    ];
    let agent = Agent::start(&["--prometheus", &addr], &env);
    (agent, addr)
}

#[test]
fn prometheus_scrapes_the_workload_under_the_translated_names() {
    let (mut agent, target) = start_serving();
    let prometheus = Prometheus::start(&target);
    // Prometheus takes its first scrape some seconds after it starts.
    prometheus.wait_for("up{job=\"batchwatch\"}", 1.0);
    let pid = dd_blocks().to_string();

    // Series of an exited process go after two collections: ask for their last value.
    let series = format!("process_pid=\"{pid}\",batchwatch_fd_kind=\"chardev\"");
    let calls = format!("last_over_time(batchwatch_write_calls_total{{{series},batchwatch_syscall=\"write\"}}[5m])");
    prometheus.wait_for(&calls, BLOCKS as f64);
    let bytes = format!("last_over_time(batchwatch_write_io_bytes_total{{{series}}}[5m])");
    assert_eq!(prometheus.query(&bytes), (BLOCKS * BLOCK) as f64);
    // Every block lies in the bucket (511, 1023]: Prometheus interpolates
    // the median at its middle, and p99 near its top.
    let sizes = format!("last_over_time(batchwatch_write_batch_size_bytes_bucket{{{series}}}[5m])");
    assert_eq!(prometheus.query(&format!("histogram_quantile(0.5, {sizes})")), 767.0);
    let p99 = prometheus.query(&format!("histogram_quantile(0.99, {sizes})"));
    assert!((p99 - (511.0 + 512.0 * 0.99)).abs() < 1e-9, "{p99}");
    let count = format!("last_over_time(batchwatch_write_batch_size_bytes_count{{{series}}}[5m])");
    assert_eq!(prometheus.query(&count), BLOCKS as f64);
    let cost = format!("last_over_time(batchwatch_process_transition_time_seconds_total{{process_pid=\"{pid}\"}}[5m])");
    assert!((prometheus.query(&cost) - BLOCKS as f64 * 100e-9).abs() < 1e-12);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let target_info = format!("target_info{{host_name=\"{}\",service_name=\"batchwatch\"}}", hostname.trim());
    assert_eq!(prometheus.query(&target_info), 1.0);

    assert!(agent.is_running());
    let (status, stderr) = agent.terminate();
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

/// A Prometheus server on the loopback scraping `target` every second,
/// with its storage in a directory of its own.
struct Prometheus {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("bw-prometheus-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: batchwatch\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (apt-get install prometheus)");
        let prometheus = Prometheus { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&prometheus.addr).is_err() || get(&prometheus.addr, "/-/ready").0 != 200 {
            assert!(Instant::now() < deadline, "prometheus did not get ready");
            thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    /// The value of a PromQL instant query that returns one sample.
    fn query(&self, promql: &str) -> f64 {
        self.try_query(promql).unwrap_or_else(|| panic!("no single sample for {promql}"))
    }

    fn try_query(&self, promql: &str) -> Option<f64> {
        let (status, _, body) = get(&self.addr, &format!("/api/v1/query?query={}", url_encode(promql)));
        assert_eq!(status, 200, "{promql}: {body}");
        let reply: Value = serde_json::from_str(&body).unwrap();
        let results = reply["data"]["result"].as_array()?;
        match results.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// Polls `promql` for up to 30 s until it returns `expected`.
    fn wait_for(&self, promql: &str, expected: f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.try_query(promql);
            if value == Some(expected) {
                return;
            }
            assert!(Instant::now() < deadline, "{promql} is {value:?} after 30 s, not {expected}");
            thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// GET `path` from `addr` over HTTP/1.0: (status code, content type, body).
fn get(addr: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
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

/// Percent-encodes everything but unreserved characters.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
