//! `batchwatch run`: the agent headless, as the DaemonSet runs it. It reads
//! the kernel maps every `interval`, turns the model into series, and
//! hands them to the exporters: OTLP (gRPC or HTTP/protobuf) every export
//! interval, and a Prometheus endpoint every tick, so that a scrape is at
//! most a tick old. On SIGTERM it collects once
//! more, delivers what is queued, and returns.
//!
//! [`catalog`] lists every metric; [`series`] builds the points from the
//! model; [`identity`] names the node and the processes, with the
//! [`attributes`] the points carry; [`otlp`] encodes
//! and sends; [`queue`] buffers between the two and measures itself;
//! [`prometheus`] serves `/metrics`, `/healthz` and `/readyz`, behind the
//! connection limits of [`endpoint`], over TLS from [`tls`] if asked.
//!
//! # Threads
//! `Agent::tick` reads BPF maps and `/proc` with blocking calls, so the
//! agent runs on a thread of its own, which also builds the series (the
//! model is its to read). Everything that waits on the network (the OTLP
//! sender, the HTTP server, the signals) shares one single-threaded tokio
//! runtime on the main thread. They meet at the queue and at [`Status`].

pub mod attributes;
pub mod catalog;
pub mod endpoint;
pub mod identity;
pub mod otlp;
pub mod prometheus;
pub mod queue;
pub mod series;
pub mod tls;

use std::{
    net::SocketAddr,
    sync::{Arc, mpsc},
    time::{Duration, Instant, SystemTime},
};

use opentelemetry_proto::tonic::resource::v1::Resource as ResourceProto;
use tokio::signal::unix::{SignalKind, signal};

use self::{
    endpoint::Endpoint,
    identity::PodLookup,
    otlp::{Deltas, OtlpConfig, Sender},
    prometheus::Status,
    queue::{Batch, ExportQueue},
    series::{Limits, Observation, SeriesSet},
};
use crate::{
    agent::Agent,
    bpf::collector::CollectError,
    config::{Config, EndpointLimits, Histograms, describe_key},
};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A bad OTLP setting or `OTEL_*` variable.
    #[error(transparent)]
    Otlp(#[from] otlp::OtlpConfigError),
    /// The OTLP client could not be set up.
    #[error(transparent)]
    Client(#[from] otlp::ClientError),
    /// OTLP is off and no Prometheus address is set.
    #[error(
        "nothing to export: OTEL_METRICS_EXPORTER leaves OTLP out, and no Prometheus address is set ({})",
        describe_key("export.prometheus")
    )]
    Nothing,
    /// The Prometheus endpoint's certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The Prometheus address could not be listened on.
    #[error("cannot serve Prometheus metrics on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The runtime, a signal handler or the agent thread could not start.
    #[error("cannot start {what}: {source}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Reading the kernel maps failed.
    #[error("reading the kernel maps: {0}")]
    Collect(#[from] CollectError),
    /// The agent thread panicked.
    #[error("the agent thread panicked")]
    Panicked,
}

/// What `batchwatch run` exports and where, from the config and the
/// `OTEL_*` variables: resolved before the probes load, so that a bad
/// value or a busy port fails at once.
pub struct Exporters {
    tick: Duration,
    interval: Duration,
    otlp: Option<OtlpConfig>,
    prometheus: Option<std::net::TcpListener>,
    prometheus_limits: EndpointLimits,
    prometheus_tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    queue_capacity: usize,
    max_fds: u32,
}

impl Exporters {
    pub fn from_config(config: &Config) -> Result<Exporters, ExportError> {
        let env = &otlp::process_env;
        let export = &config.export;
        let otlp = if otlp::enabled(env)? { Some(OtlpConfig::resolve(export, env)?) } else { None };
        let prometheus = export
            .prometheus
            .map(|addr| listen(addr).map_err(|source| ExportError::Listen { addr, source }))
            .transpose()?;
        let prometheus_tls = export.prometheus_tls.as_ref().map(tls::acceptor).transpose()?;
        if otlp.is_none() && prometheus.is_none() {
            return Err(ExportError::Nothing);
        }
        Ok(Exporters {
            tick: config.interval,
            interval: otlp::interval(export, env)?,
            otlp,
            prometheus,
            prometheus_limits: export.prometheus_limits,
            prometheus_tls,
            limits: Limits::of(export),
            queue_capacity: export.queue_capacity as usize,
            max_fds: config.maps.max_fds,
        })
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Runs `agent` until SIGTERM or SIGINT, then flushes and returns. `pods`
/// names the pods of containers, in Kubernetes.
pub fn run(agent: Agent, exporters: Exporters, pods: Option<Box<dyn PodLookup>>) -> Result<(), ExportError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ExportError::Start { what: "the tokio runtime", source })?;
    runtime.block_on(serve(agent, exporters, pods))
}

async fn serve(agent: Agent, exporters: Exporters, pods: Option<Box<dyn PodLookup>>) -> Result<(), ExportError> {
    let start = |what| move |source| ExportError::Start { what, source };
    let mut terminate = signal(SignalKind::terminate()).map_err(start("the SIGTERM handler"))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(start("the SIGINT handler"))?;

    let resource = identity::node_resource();
    let target =
        resource.iter().map(|(key, value)| (catalog::prometheus_label(key.as_str()), value.to_string())).collect();
    let status = Arc::new(Status::new(exporters.tick, target));
    let endpoint = match exporters.prometheus {
        Some(listener) => {
            let listener = tokio::net::TcpListener::from_std(listener).map_err(start("the Prometheus endpoint"))?;
            let endpoint = Arc::new(Endpoint::new(exporters.prometheus_limits, exporters.prometheus_tls));
            tokio::spawn(prometheus::serve(listener, status.clone(), endpoint.clone()));
            Some(endpoint)
        }
        None => None,
    };
    let otlp = (exporters.otlp.as_ref())
        .map(|config| Otlp::start(config, exporters.queue_capacity, exporters.interval))
        .transpose()?;
    let publisher = Publisher {
        status,
        otlp: (otlp.as_ref().zip(exporters.otlp.as_ref())).map(|(otlp, config)| OtlpSide {
            queue: otlp.queue.clone(),
            resource: ResourceProto::from(&resource),
            deltas: Deltas::new(config.temporality),
            histograms: config.histograms,
        }),
    };

    let (stop, stopped) = mpsc::channel();
    let observer = Observer {
        agent,
        tick: exporters.tick,
        interval: exporters.interval,
        series: SeriesSet::new(exporters.limits, SystemTime::now()),
        publisher,
        pods,
        endpoint,
        max_fds: exporters.max_fds,
    };
    let thread = std::thread::Builder::new()
        .name("batchwatch-agent".to_owned())
        .spawn(move || observer.run(&stopped))
        .map_err(start("the agent thread"))?;
    let mut observed = tokio::task::spawn_blocking(move || thread.join());
    let joined = tokio::select! {
        _ = terminate.recv() => { let _ = stop.send(()); (&mut observed).await }
        _ = interrupt.recv() => { let _ = stop.send(()); (&mut observed).await }
        // It only ends by itself on an error.
        joined = &mut observed => joined,
    };
    if let Some(otlp) = otlp {
        otlp.flush().await;
    }
    // The waiting task, then the thread, may have panicked.
    joined.map_err(|_| ExportError::Panicked)?.map_err(|_| ExportError::Panicked)?.map_err(ExportError::from)
}

/// The OTLP side: the queue, and the task that delivers it.
struct Otlp {
    queue: Arc<ExportQueue>,
    delivery: tokio::task::JoinHandle<()>,
    timeout: Duration,
}

impl Otlp {
    /// Starts delivering to `config`'s endpoint from a queue of `capacity`
    /// collections, made every `interval`.
    fn start(config: &OtlpConfig, capacity: usize, interval: Duration) -> Result<Otlp, ExportError> {
        let queue = Arc::new(ExportQueue::new(capacity));
        let sender = Sender::new(config)?;
        // Retrying more seldom than collections come only lets the queue fill.
        let retry_cap = interval.min(Duration::from_secs(30));
        let delivery = tokio::spawn(deliver(queue.clone(), sender, retry_cap));
        Ok(Otlp { queue, delivery, timeout: config.timeout })
    }

    /// Delivers what is queued, giving up after the OTLP timeout.
    async fn flush(self) {
        self.queue.close();
        let abort = self.delivery.abort_handle();
        if tokio::time::timeout(self.timeout, self.delivery).await.is_err() {
            abort.abort();
            let lost = self.queue.abandon();
            let timeout = self.timeout;
            tracing::warn!("{lost} collection(s) not delivered over OTLP within {timeout:?} of stopping");
        }
    }
}

/// Sends queued collections in order until the queue closes and empties,
/// retrying those the receiver could not take, with a backoff of up to
/// `retry_cap` between attempts.
async fn deliver(queue: Arc<ExportQueue>, sender: Sender, retry_cap: Duration) {
    let mut failures = 0;
    while let Some(batch) = queue.next().await {
        match sender.send(&batch.request).await {
            Ok(rejected) => {
                if failures > 0 {
                    // A warning, like the failure it ends, so that both show by default.
                    tracing::warn!("OTLP export resumed after {failures} failed attempt(s)");
                }
                failures = 0;
                queue.delivered(&batch, rejected);
            }
            Err(error @ otlp::SendError::Unavailable { .. }) => {
                if failures == 0 {
                    tracing::warn!("OTLP export failed, retrying: {error}");
                }
                failures += 1;
                queue.retry(batch);
                tokio::time::sleep(backoff(failures, retry_cap)).await;
            }
            Err(error) => {
                tracing::warn!("OTLP export dropped a collection: {error}");
                queue.refused(&batch);
            }
        }
    }
}

/// Half a second, doubling with each failure up to `cap`, with jitter so
/// that the agents of a cluster do not all retry at once.
fn backoff(failures: u32, cap: Duration) -> Duration {
    let doubled = Duration::from_millis(500).saturating_mul(1 << failures.min(16)).min(cap);
    let jitter = f64::from(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().subsec_nanos());
    doubled.mul_f64(0.5 + 0.5 * jitter / 1e9)
}

/// Where a collection goes.
struct Publisher {
    status: Arc<Status>,
    otlp: Option<OtlpSide>,
}

/// What the agent's thread keeps for OTLP.
struct OtlpSide {
    queue: Arc<ExportQueue>,
    resource: ResourceProto,
    deltas: Deltas,
    histograms: Histograms,
}

impl Publisher {
    /// Serves `collection` on `/metrics`, and queues it for OTLP when `export`.
    fn publish(&mut self, collection: series::Collection, export: bool) {
        let collection = Arc::new(collection);
        if let Some(otlp) = self.otlp.as_mut().filter(|_| export) {
            let exported = otlp.deltas.apply(&collection);
            let request = otlp::request(&exported, &otlp.resource, otlp.deltas.temporality(), otlp.histograms);
            otlp.queue.push(Batch { request, points: collection.points(), collected: Instant::now() });
        }
        self.status.publish(collection);
    }
}

/// The agent's thread.
struct Observer {
    agent: Agent,
    tick: Duration,
    interval: Duration,
    series: SeriesSet,
    publisher: Publisher,
    pods: Option<Box<dyn PodLookup>>,
    /// The Prometheus endpoint, when it is on.
    endpoint: Option<Arc<Endpoint>>,
    max_fds: u32,
}

impl Observer {
    /// Ticks every `tick`. Exports over OTLP at the first tick, then every
    /// `interval`, and once more when told to stop. With the Prometheus
    /// endpoint on, it also collects at every tick, so that a scrape gets
    /// the model as of the last tick whatever the export interval.
    fn run(mut self, stop: &mpsc::Receiver<()>) -> Result<(), CollectError> {
        let mut next_tick = Instant::now() + self.tick;
        let mut next_export = next_tick;
        let mut last_export = None;
        loop {
            let stopping = match stop.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
                Err(mpsc::RecvTimeoutError::Timeout) => false,
                // Told to stop, or the runtime is gone.
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            };
            self.agent.tick()?;
            self.publisher.status.ticked();
            // Exports keep to the ticks' schedule, not to when a tick ended.
            let scheduled = next_tick;
            next_tick = (next_tick + self.tick).max(Instant::now());
            let export = stopping || scheduled >= next_export;
            if export || self.endpoint.is_some() {
                self.collect(export, stopping);
            }
            if export {
                // A process that exited is in the collections of two export
                // intervals, so that a receiver or a scraper polling once an
                // interval sees its end.
                if let Some(previous) = last_export.replace(Instant::now()) {
                    self.agent.model_mut().prune_exited(previous);
                }
                next_export = scheduled + self.interval;
            }
            if stopping {
                return Ok(());
            }
        }
    }

    /// Collects for the Prometheus endpoint, and for OTLP when `export`;
    /// `last` at exit.
    fn collect(&mut self, export: bool, last: bool) {
        let started = Instant::now();
        let health = self.publisher.otlp.as_ref().map(|otlp| otlp.queue.health());
        let mut observation = Observation::of(&self.agent, self.max_fds);
        observation.endpoint = self.endpoint.as_ref().map(|endpoint| endpoint.health());
        observation.last = last;
        let collection = self.series.collect(&observation, health.as_ref(), self.pods.as_deref(), SystemTime::now());
        let points = collection.points();
        self.publisher.publish(collection, export);
        tracing::debug!(points, export, micros = started.elapsed().as_micros() as u64, "collected");
    }
}
