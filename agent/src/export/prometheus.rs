//! The HTTP endpoint: `/metrics` serves the last collection in the
//! Prometheus text format, named as the OpenTelemetry Collector names OTLP
//! metrics for Prometheus, so dashboards and alert rules work whichever
//! path a user picks; `/healthz` and `/readyz` answer the orchestrator.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Bytes, service::service_fn};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet, prometheus_text},
    metrics::MetricType,
    registry::Registry,
};

use super::{
    catalog::{Instrument, prometheus_label},
    endpoint::Endpoint,
    series::{Collection, Point, Value},
};

/// What the endpoint serves, updated by the agent's thread.
pub struct Status {
    latest: RwLock<Option<Arc<Collection>>>,
    last_tick: Mutex<Instant>,
    /// How long without a tick before the agent counts as stuck.
    stale_after: Duration,
    /// The resource attributes, as labels of `target_info`.
    target: Vec<(String, String)>,
}

impl Status {
    pub fn new(tick: Duration, target: Vec<(String, String)>) -> Status {
        Status {
            latest: RwLock::new(None),
            last_tick: Mutex::new(Instant::now()),
            // A tick reads every map and /proc entry it needs: allow for slow ones.
            stale_after: tick * 3 + Duration::from_secs(10),
            target,
        }
    }

    pub fn ticked(&self) {
        *self.last_tick.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
    }

    pub fn publish(&self, collection: Arc<Collection>) {
        *self.latest.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(collection);
    }

    fn latest(&self) -> Option<Arc<Collection>> {
        self.latest.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn since_tick(&self) -> Duration {
        self.last_tick.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).elapsed()
    }
}

/// Serves `listener` until the runtime stops, behind `endpoint`'s limits.
pub async fn serve(listener: tokio::net::TcpListener, status: Arc<Status>, endpoint: Arc<Endpoint>) {
    endpoint
        .serve(listener, move || {
            let status = status.clone();
            service_fn(move |request| {
                let status = status.clone();
                async move { Ok::<_, Infallible>(respond(&request, &status)) }
            })
        })
        .await;
}

fn respond<B>(request: &Request<B>, status: &Status) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".to_owned());
    }
    match request.uri().path() {
        "/metrics" => metrics(status),
        "/healthz" => match status.since_tick() {
            since if since <= status.stale_after => text(StatusCode::OK, "ok\n".to_owned()),
            since => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the agent has not read the kernel maps for {:.0} s\n", since.as_secs_f64()),
            ),
        },
        "/readyz" => match status.latest() {
            Some(_) => text(StatusCode::OK, "ok\n".to_owned()),
            None => text(StatusCode::SERVICE_UNAVAILABLE, "no collection yet\n".to_owned()),
        },
        _ => text(StatusCode::NOT_FOUND, "batchwatch serves /metrics, /healthz and /readyz\n".to_owned()),
    }
}

fn metrics(status: &Status) -> Response<Full<Bytes>> {
    let Some(collection) = status.latest() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no collection yet\n".to_owned());
    };
    match encode(collection, status.target.clone()) {
        Ok(body) => Response::builder()
            .header(hyper::header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response"),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics\n".to_owned()),
    }
}

/// `collection` in the Prometheus text format, with `target` as the labels
/// of `target_info`: the work of one scrape.
fn encode(collection: Arc<Collection>, target: Vec<(String, String)>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition { collection, target }));
    let mut body = String::new();
    prometheus_text::encode(&mut body, &registry)?;
    Ok(body)
}

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// One collection, for prometheus-client to encode.
#[derive(Debug)]
struct Exposition {
    collection: Arc<Collection>,
    target: Vec<(String, String)>,
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // The Collector's translation puts the resource attributes on `target_info`.
        let mut target = encoder.encode_descriptor("target_info", "Target metadata", None, MetricType::Gauge)?;
        target.encode_family(&self.target)?.encode_gauge(&1u64)?;
        for (metric, points) in &self.collection.families {
            let family = metric.prometheus_family();
            let kind = match metric.instrument {
                Instrument::Counter => MetricType::Counter,
                Instrument::Gauge => MetricType::Gauge,
                Instrument::Histogram { .. } => MetricType::Histogram,
            };
            let bounds = metric.bucket_bounds();
            let mut family_encoder = encoder.encode_descriptor(&family, metric.description, None, kind)?;
            for point in points {
                let labels = labels(point);
                let mut point_encoder = family_encoder.encode_family(&labels)?;
                match (&point.value, kind) {
                    (Value::Int(n), MetricType::Counter) => {
                        point_encoder.encode_counter::<NoLabelSet, _, u64>(n, None)?
                    }
                    (Value::Float(x), MetricType::Counter) => {
                        point_encoder.encode_counter::<NoLabelSet, _, f64>(x, None)?
                    }
                    (Value::Int(n), _) => point_encoder.encode_gauge(n)?,
                    (Value::Float(x), _) => point_encoder.encode_gauge(x)?,
                    (Value::Histogram { counts, sum }, _) => point_encoder.encode_histogram::<NoLabelSet>(
                        *sum,
                        counts.iter().sum(),
                        &buckets(&bounds, counts),
                        None,
                    )?,
                }
            }
        }
        Ok(())
    }
}

fn labels(point: &Point) -> Vec<(String, String)> {
    point.attributes().map(|(key, value)| (prometheus_label(key), value.to_string())).collect()
}

/// (upper bound, count) per bucket, the last one +Inf.
fn buckets(bounds: &[f64], counts: &[u64]) -> Vec<(f64, u64)> {
    let last = counts.len() - 1;
    counts.iter().enumerate().map(|(k, &count)| (if k == last { f64::INFINITY } else { bounds[k] }, count)).collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{
        attribution::{
            fds::{FdInfo, FdKind},
            identity::Identity,
        },
        bpf::collector::ProbeErrors,
        config::{Aggregation, Config},
        export::series::{Limits, Observation, SeriesSet},
        model::{Model, Rules},
        testing::Write,
    };

    /// The collection of `processes` writers, each to a pipe, a file and a
    /// TCP socket, every one with series of its own.
    fn writers(processes: u32) -> Collection {
        let mut model = Model::new(Rules::new(&Config::default(), 100.0, false));
        let fds = [(FdKind::Pipe, "pipe:[1]"), (FdKind::File, "/var/log/app.log"), (FdKind::Tcp, "socket:[2]")]
            .map(|(kind, target)| FdInfo { kind, target: target.to_owned(), synced_writes: false });
        for pid in 1..=processes {
            let command = format!("/usr/bin/writer --instance {pid}");
            let identity =
                Identity { pid, start_ticks: 1, comm: "writer".to_owned(), command, container: None, runtime: None };
            for (fd, info) in (3..).zip(&fds) {
                let write = Write { calls: 1000, records: 1, bytes: 512, gap_ns: 1000, eagain: 0 };
                model.record(&identity, fd, Some(info), &write.stats());
            }
        }
        model.close_interval(1.0);
        let limits = Limits {
            min_ops_per_sec: 0.0,
            max_series: 1_000_000,
            per_fd: false,
            aggregation: Aggregation::Process,
            idle_after: Duration::from_secs(300),
            attributes: crate::export::series::level::Selection::all(),
        };
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let observation = Observation {
            model: &model,
            transition_cost_ns: 100.0,
            transition_measured_at: None,
            probe_errors: ProbeErrors::default(),
            tracked_fds: 3 * processes as usize,
            evicted_fds: 0,
            max_fds: 16384,
            endpoint: None,
            last: false,
        };
        SeriesSet::new(limits, start).collect(&observation, None, None, start + Duration::from_secs(1))
    }

    /// The cost of a scrape at the default `max_series`: 5,000 points.
    /// Printed, not asserted (timings belong to `cargo xtask bench`); what
    /// is asserted is that every point is served.
    #[test]
    fn a_scrape_of_5000_points_serves_every_one() {
        // As many writers as fit in 5,000 points with the node's own.
        let (one, two) = (writers(1).points(), writers(2).points());
        let collection = Arc::new(writers(((5000 - one) / (two - one) + 1) as u32));
        let points = collection.points();
        assert!((4900..=5000).contains(&points), "{points} points");
        let samples: usize = (collection.families.iter())
            .map(|(metric, series)| match metric.instrument {
                // Each bucket and +Inf, _sum and _count.
                Instrument::Histogram { .. } => series.len() * (metric.bucket_bounds().len() + 3),
                _ => series.len(),
            })
            .sum();
        let started = std::time::Instant::now();
        let body = encode(collection.clone(), vec![("host_name".to_owned(), "node".to_owned())]).unwrap();
        let took = started.elapsed();
        let lines = body.lines().filter(|line| !line.starts_with('#')).count();
        println!("a scrape of {points} points: {lines} samples, {} KiB, encoded in {took:?}", body.len() / 1024);
        assert_eq!(lines, samples + 1, "every point, its buckets, _sum and _count, and target_info");
    }
}
