//! A real Prometheus server (the Debian package) on the loopback, with a
//! configuration the test writes, storage in a directory of its own, and
//! its HTTP API; and a tiny HTTP client for it and for the agent.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// A Prometheus server started by the test, killed when dropped.
pub struct PrometheusServer {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
}

impl PrometheusServer {
    /// Starts `prometheus` with `config` (YAML) on `addr`, and waits until it is ready.
    /// `files` are written next to the configuration first (rule files, say);
    /// `flags` go on its command line (`--enable-feature=native-histograms`).
    pub fn start(name: &str, addr: &str, config: &str, files: &[(&str, &Path)], flags: &[&str]) -> PrometheusServer {
        let dir = std::env::temp_dir().join(format!("bw-{name}-{}-{}", std::process::id(), addr.replace(':', "-")));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, source) in files {
            std::fs::copy(source, dir.join(file)).unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
        }
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus runs (apt-get install prometheus; `cargo xtask setup` does)");
        let mut server = PrometheusServer { child, addr: addr.to_owned(), dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}): {}", server.log());
            }
            if http_get(&server.addr, "/-/ready").is_some_and(|(status, _)| status == 200) {
                break server;
            }
            assert!(Instant::now() < deadline, "prometheus not ready after 30 s: {}", server.log());
            thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// GET an API path; the `data` of a successful answer, or the error text.
    pub fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = http_get(&self.addr, path).ok_or_else(|| format!("no answer to {path}"))?;
        let reply: Value = serde_json::from_str(&body).map_err(|e| format!("{path}: {status} {e}: {body}"))?;
        match reply["status"].as_str() {
            Some("success") => Ok(reply["data"].clone()),
            _ => Err(format!("{path}: {status}: {}", reply["error"])),
        }
    }

    /// The result of an instant PromQL query (a vector's samples, or a scalar as one).
    pub fn query(&self, promql: &str) -> Result<Vec<Sample>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(promql)))?;
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"].as_array().unwrap().iter().map(Sample::from_json).collect()),
            Some("scalar") => Ok(vec![Sample { labels: Value::Null, value: number(&data["result"][1]) }]),
            other => Err(format!("{promql}: unexpected result type {other:?}")),
        }
    }

    /// Values of `label` over the series that `selector` matches.
    pub fn label_values(&self, label: &str, selector: &str) -> Vec<String> {
        let data = self
            .api(&format!("/api/v1/label/{label}/values?match[]={}", url_encode(selector)))
            .unwrap_or_else(|e| panic!("{e}"));
        data.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    }

    /// Polls `promql` every 250 ms for up to `timeout` until `done` holds for its result.
    pub fn wait_until(&self, promql: &str, timeout: Duration, done: impl Fn(&[Sample]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(promql);
            if result.as_deref().is_ok_and(&done) {
                return;
            }
            assert!(Instant::now() < deadline, "{promql} after {timeout:?}: {result:?}");
            thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One sample of an instant vector: its labels (a JSON object) and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: Value,
    pub value: f64,
}

impl Sample {
    fn from_json(json: &Value) -> Sample {
        Sample { labels: json["metric"].clone(), value: number(&json["value"][1]) }
    }
}

/// A sample value as Prometheus writes it: a string, `NaN` and `+Inf` included.
fn number(value: &Value) -> f64 {
    value.as_str().and_then(|text| text.parse().ok()).unwrap_or(f64::NAN)
}

/// GET `path` from `addr` over HTTP/1.0: the status code and body, or None
/// when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Percent-encodes all but the unreserved characters (RFC 3986).
pub fn url_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
