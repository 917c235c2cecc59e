//! The HTTP endpoint: `/metrics` serves the last collection in the
//! Prometheus text format, named as the OpenTelemetry Collector names OTLP
//! metrics for Prometheus, so dashboards and alert rules work whichever
//! path a user picks; `/healthz` and `/readyz` answer the orchestrator.
//!
//! A scraper that asks for the protobuf exposition (`Accept:
//! application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
//! encoding=delimited`, as Prometheus does with native histograms enabled)
//! gets it, and in it the histograms counted in their own unit carry a
//! native histogram at schema 0 next to their classic buckets: the kernel's
//! slots are its buckets (`agent_common::hist`). The histograms in seconds
//! keep classic buckets only: powers of two of nanoseconds are no powers of
//! two of seconds.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Bytes, service::service_fn};
use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, NativeHistogram, NativeHistogramBuckets, NoLabelSet, prometheus_protobuf, prometheus_text,
    },
    metrics::MetricType,
    registry::Registry,
};

use super::{
    catalog::{Instrument, Scale, prometheus_label},
    endpoint::Endpoint,
    series::{Collection, Point, Value},
};
use crate::model::histogram::Log2Histogram;

/// The protobuf exposition's media type and parameters, as Prometheus asks
/// for it and as a response names it.
const PROTOBUF: &str = "application/vnd.google.protobuf";
const PROTOBUF_PARAMS: [&str; 2] = ["proto=io.prometheus.client.MetricFamily", "encoding=delimited"];
/// The zero bucket's width: client_golang's default, 2^-128. Any width
/// below 1 holds exactly the value 0 of counts that are whole numbers; one
/// above 0 marks even an empty histogram as native to Prometheus 2.42.
const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// Which exposition a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Protobuf,
}

impl Format {
    /// The protobuf exposition if the `Accept` header lists it (with a
    /// non-zero quality), else the text format.
    fn accepted<B>(request: &Request<B>) -> Format {
        let accept = request.headers().get_all(hyper::header::ACCEPT).iter().filter_map(|v| v.to_str().ok());
        let protobuf = accept.flat_map(|value| value.split(',')).any(|range| {
            let mut parts = range.split(';').map(str::trim);
            parts.next().is_some_and(|media| media.eq_ignore_ascii_case(PROTOBUF)) && {
                let params: Vec<&str> = parts.collect();
                PROTOBUF_PARAMS.iter().all(|wanted| params.contains(wanted))
                    && !params.iter().any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f64>().ok()) == Some(0.0))
            }
        });
        if protobuf { Format::Protobuf } else { Format::Text }
    }

    fn content_type(self) -> String {
        match self {
            Format::Text => prometheus_text::CONTENT_TYPE.to_owned(),
            Format::Protobuf => format!("{PROTOBUF}; {}", PROTOBUF_PARAMS.join("; ")),
        }
    }
}

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
        "/metrics" => metrics(status, Format::accepted(request)),
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

fn metrics(status: &Status, format: Format) -> Response<Full<Bytes>> {
    let Some(collection) = status.latest() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no collection yet\n".to_owned());
    };
    match encode(collection, status.target.clone(), format) {
        Some(body) => Response::builder()
            .header(hyper::header::CONTENT_TYPE, format.content_type())
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response"),
        None => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics\n".to_owned()),
    }
}

/// `collection` in `format`, with `target` as the labels of `target_info`:
/// the work of one scrape. `None` if prometheus-client cannot encode it.
fn encode(collection: Arc<Collection>, target: Vec<(String, String)>, format: Format) -> Option<Vec<u8>> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition { collection, target }));
    match format {
        Format::Text => {
            let mut body = String::new();
            prometheus_text::encode(&mut body, &registry).ok()?;
            Some(body.into_bytes())
        }
        Format::Protobuf => prometheus_protobuf::encode_to_vec(&registry).ok(),
    }
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
                    (Value::Histogram { counts, sum }, _) => {
                        let (count, classic) = (counts.iter().sum(), buckets(&bounds, counts));
                        match metric.instrument {
                            // The text encoder writes the classic buckets only.
                            Instrument::Histogram { scale: Scale::Unit, .. } => {
                                let (offset, positive) = Log2Histogram::new(counts).exponential_buckets();
                                // Prometheus numbers a bucket by its upper edge, 2^i
                                // ((2^(i-1), 2^i]), OpenTelemetry by its lower one: one more.
                                let offset = offset + 1;
                                let deltas = deltas(positive);
                                // Prometheus takes no span at all for no bucket: one of length 0.
                                let spans = [(offset, positive.len() as u32)];
                                let native = NativeHistogram {
                                    schema: 0,
                                    zero_threshold: ZERO_THRESHOLD,
                                    zero_count: counts[0],
                                    negative: NativeHistogramBuckets { spans: &[], deltas: &[] },
                                    positive: NativeHistogramBuckets { spans: &spans, deltas: &deltas },
                                    created: point.start,
                                };
                                point_encoder
                                    .encode_histogram_with_native::<NoLabelSet>(*sum, count, &classic, None, native)?
                            }
                            _ => point_encoder.encode_histogram::<NoLabelSet>(*sum, count, &classic, None)?,
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn labels(point: &Point) -> Vec<(String, String)> {
    point.attributes().map(|(key, value)| (prometheus_label(key), value.to_string())).collect()
}

/// Native histogram bucket counts as the protobuf carries them: the first
/// count, then each one's difference from the one before.
fn deltas(counts: &[u64]) -> Vec<i64> {
    let mut before = 0;
    counts
        .iter()
        .map(|&n| {
            let delta = n as i64 - before;
            before = n as i64;
            delta
        })
        .collect()
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
            groups: Vec::new(),
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
        let target = vec![("host_name".to_owned(), "node".to_owned())];
        let body = String::from_utf8(encode(collection.clone(), target, Format::Text).unwrap()).unwrap();
        let took = started.elapsed();
        let lines = body.lines().filter(|line| !line.starts_with('#')).count();
        println!("a scrape of {points} points: {lines} samples, {} KiB, encoded in {took:?}", body.len() / 1024);
        assert_eq!(lines, samples + 1, "every point, its buckets, _sum and _count, and target_info");

        // The same for a scraper that asks for native histograms.
        let started = std::time::Instant::now();
        let body = encode(collection, vec![("host_name".to_owned(), "node".to_owned())], Format::Protobuf).unwrap();
        let took = started.elapsed();
        let served: usize = families(&body).iter().map(|family| family.metric.len()).sum();
        println!("as protobuf: {served} metrics, {} KiB, encoded in {took:?}", body.len() / 1024);
        assert_eq!(served, points + 1, "every point and target_info");
    }

    /// The metric families of a protobuf exposition.
    fn families(mut body: &[u8]) -> Vec<prometheus_protobuf::prometheus_data_model::MetricFamily> {
        let mut families = Vec::new();
        while !body.is_empty() {
            families.push(prost::Message::decode_length_delimited(&mut body).unwrap());
        }
        families
    }

    #[test]
    fn the_protobuf_exposition_goes_to_who_asks_for_it() {
        let format =
            |accept: &str| Format::accepted(&Request::get("/metrics").header("accept", accept).body(()).unwrap());
        // What Prometheus 2.42 sends with native histograms enabled.
        let prometheus = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;\
                          q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(format(prometheus), Format::Protobuf);
        assert_eq!(format("text/plain;version=0.0.4;q=1,*/*;q=0.1"), Format::Text);
        assert_eq!(
            format("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;q=0.5"),
            Format::Text
        );
        let refused =
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited; q=0";
        assert_eq!(format(refused), Format::Text);
        assert_eq!(Format::accepted(&Request::get("/metrics").body(()).unwrap()), Format::Text);
    }

    #[test]
    fn histograms_in_their_own_unit_are_native_at_schema_0() {
        use prometheus_protobuf::prometheus_data_model::BucketSpan;

        let body = encode(Arc::new(writers(1)), vec![], Format::Protobuf).unwrap();
        let families = families(&body);
        let histogram = |name: &str| {
            let family = families.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no {name}"));
            family.metric[0].histogram.clone().unwrap()
        };
        // 3000 calls of 512 B (1000 per descriptor kind, one series each).
        let sizes = histogram("batchwatch_write_batch_size_bytes");
        assert_eq!((sizes.schema, sizes.zero_threshold, sizes.zero_count), (0, ZERO_THRESHOLD, 0));
        // 512 lies in (256, 512], Prometheus's bucket 9 (2^9 its upper edge).
        assert_eq!(sizes.positive_span, [BucketSpan { offset: 9, length: 1 }]);
        assert_eq!((sizes.positive_delta.as_slice(), sizes.sample_count), (&[1000][..], 1000));
        assert_eq!(sizes.bucket.len(), catalog_bounds("batchwatch_write_batch_size_bytes") + 1, "classic too");
        // Gaps of 1000 ns, in seconds: classic only.
        let waits = histogram("batchwatch_write_batch_wait_seconds");
        assert!(waits.positive_span.is_empty() && waits.zero_threshold == 0.0, "{waits:?}");
        assert_eq!(deltas(&[3, 5, 5, 0, 1]), [3, 2, 0, -5, 1]);
    }

    fn catalog_bounds(family: &str) -> usize {
        let metric = crate::export::catalog::ALL.iter().find(|m| m.prometheus_family() == family).unwrap();
        metric.bucket_bounds().len()
    }
}
