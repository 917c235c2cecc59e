//! A slow OTLP/HTTP receiver: it takes every request, waits, then answers
//! 200 with an empty `ExportMetricsServiceResponse`. With collections more
//! frequent than its answers, the agent's export queue fills and drops its
//! oldest collection: the agent's own four batching metrics all move.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

pub struct SlowSink {
    pub port: u16,
    received: Arc<AtomicU64>,
}

impl SlowSink {
    /// Listens on a free loopback port; each request is answered `delay` after it arrived.
    /// The listener lives as long as the test process.
    pub fn start(delay: Duration) -> SlowSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&received);
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let counter = Arc::clone(&counter);
                thread::spawn(move || serve(stream, delay, &counter));
            }
        });
        SlowSink { port, received }
    }

    /// The endpoint for `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/metrics", self.port)
    }

    /// Requests received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// Serves the requests of one (keep-alive) connection until it closes.
fn serve(stream: TcpStream, delay: Duration, received: &AtomicU64) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        // The request line, then headers up to the empty line.
        let mut first = true;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() && !first {
                break;
            }
            first = false;
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("a Content-Length");
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        received.fetch_add(1, Ordering::Relaxed);
        thread::sleep(delay);
        let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
