//! Configuration: defaults, then a TOML file, then environment variables and
//! flags. Every source fills the same [`Settings`]; [`Config::resolve`]
//! validates the result once, and its errors name the key, the value and the
//! allowed range.
//!
//! Naming is mechanical: the TOML key `hot_writer.min_calls_per_sec` is the
//! flag `--min-calls-per-sec` and the variable `BATCHWATCH_MIN_CALLS_PER_SEC`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    ops::RangeInclusive,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{
    export::catalog::{self, PROCESS_ATTRIBUTES},
    model::flag::Window,
};

/// Everything that can be set, all optional: one value of this per source.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// How often the kernel maps are read [default: 1s].
    #[arg(long, global = true, env = "BATCHWATCH_INTERVAL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,

    /// Cost of one kernel transition in nanoseconds [default: measured at start].
    #[arg(long, global = true, env = "BATCHWATCH_TRANSITION_COST_NS")]
    #[serde(default)]
    pub transition_cost_ns: Option<f64>,

    /// How syscall exits are hooked: `auto` tries fexit and falls back to
    /// tracepoints [default: auto].
    #[arg(long, global = true, env = "BATCHWATCH_ATTACH", value_enum)]
    #[serde(default)]
    pub attach: Option<AttachPreference>,

    #[command(flatten, next_help_heading = "Un-batched hot writers")]
    #[serde(default)]
    pub hot_writer: HotWriterSettings,

    #[command(flatten, next_help_heading = "Timer-driven flushing")]
    #[serde(default)]
    pub timer_flush: TimerFlushSettings,

    #[command(flatten, next_help_heading = "io_uring")]
    #[serde(default)]
    pub io_uring: IoUringSettings,

    #[command(flatten, next_help_heading = "Sync per write (durability)")]
    #[serde(default)]
    pub sync: SyncSettings,

    #[command(flatten, next_help_heading = "Kernel maps")]
    #[serde(default)]
    pub maps: MapSettings,

    #[command(flatten, next_help_heading = "Metrics export (batchwatch run)")]
    #[serde(default)]
    pub export: ExportSettings,
}

#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotWriterSettings {
    /// Calls per second on one fd from which it counts as hot [default: 1000].
    #[arg(long, global = true, env = "BATCHWATCH_MIN_CALLS_PER_SEC")]
    pub min_calls_per_sec: Option<f64>,
    /// Median bytes per call up to which calls count as tiny [default: 512].
    #[arg(long, global = true, env = "BATCHWATCH_MAX_BYTES_PER_CALL")]
    pub max_bytes_per_call: Option<u64>,
    /// Median records per call up to which a call carries one message: a
    /// header and a payload in one `writev` are still one [default: 4].
    #[arg(long, global = true, env = "BATCHWATCH_MAX_RECORDS_PER_CALL")]
    pub max_records_per_call: Option<u64>,
    /// Hot intervals among the last `window_intervals` that raise a flag
    /// [default: 3].
    #[arg(long, global = true, env = "BATCHWATCH_SUSTAIN_INTERVALS")]
    pub sustain_intervals: Option<u32>,
    /// Intervals a flag looks back over; it clears after this many calm
    /// intervals in a row [default: 10].
    #[arg(long, global = true, env = "BATCHWATCH_WINDOW_INTERVALS")]
    pub window_intervals: Option<u32>,
    /// Records per call assumed for "what batching would save" [default: 64].
    #[arg(long, global = true, env = "BATCHWATCH_BATCH_TARGET")]
    pub batch_target: Option<u64>,
}

#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerFlushSettings {
    /// Shortest flush period taken for a timer [default: 1ms].
    #[arg(long, global = true, env = "BATCHWATCH_MIN_PERIOD", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub min_period: Option<Duration>,
    /// Share of gaps that must fall in one log2 bucket [default: 0.8].
    #[arg(long, global = true, env = "BATCHWATCH_MIN_SHARE")]
    pub min_share: Option<f64>,
    /// Gaps needed before judging [default: 10].
    #[arg(long, global = true, env = "BATCHWATCH_MIN_FLUSHES")]
    pub min_flushes: Option<u64>,
}

#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoUringSettings {
    /// SQPOLL wake-ups per second from which a ring counts as a trickle load
    /// that SQPOLL does not suit [default: 10].
    #[arg(long, global = true, env = "BATCHWATCH_MIN_WAKEUPS_PER_SEC")]
    pub min_wakeups_per_sec: Option<f64>,
}

#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
    /// Syncs per second on one fd from which one or two writes per sync
    /// count as sync per write [default: 10].
    #[arg(long, global = true, env = "BATCHWATCH_MIN_PER_SEC")]
    pub min_per_sec: Option<f64>,
}

#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapSettings {
    /// (process, fd) pairs the kernel tracks at once; each takes about 0.9 KB
    /// of kernel memory, whatever the node's CPU count [default: 16384].
    #[arg(long, global = true, env = "BATCHWATCH_MAX_FDS")]
    pub max_fds: Option<u32>,
    /// Processes whose names the kernel keeps [default: 8192].
    #[arg(long, global = true, env = "BATCHWATCH_MAX_PROCESSES")]
    pub max_processes: Option<u32>,
    /// io_uring rings (and processes setting rings up) the kernel tracks at
    /// once; each takes about 0.7 KB of kernel memory, whatever the node's
    /// CPU count [default: 1024].
    #[arg(long, global = true, env = "BATCHWATCH_MAX_RINGS")]
    pub max_rings: Option<u32>,
    /// A (process, fd) pair that wrote nothing for this long leaves the
    /// kernel map, so that its room goes to active writers; the agent keeps
    /// its totals [default: 60s].
    #[arg(long, global = true, env = "BATCHWATCH_EVICT_IDLE_AFTER", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub evict_idle_after: Option<Duration>,
}

/// What `batchwatch run` exports, where, and how much. The OTLP keys win
/// over the standard `OTEL_EXPORTER_OTLP_*` variables, which fill in what
/// they leave unset (see `docs/export.md`). The flags are global, so that
/// they may follow `run`.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSettings {
    /// Serve Prometheus /metrics, /healthz and /readyz on this address [default: off].
    #[arg(long, global = true, env = "BATCHWATCH_PROMETHEUS", value_name = "ADDR:PORT")]
    pub prometheus: Option<SocketAddr>,
    /// How long a client of the Prometheus endpoint may take to send a
    /// request's headers, and stay idle between requests, before it is
    /// disconnected [default: 10s].
    #[arg(long, global = true, env = "BATCHWATCH_PROMETHEUS_HEADER_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub prometheus_header_timeout: Option<Duration>,
    /// How long a connection to the Prometheus endpoint may live; then the
    /// response in flight gets one more header timeout, and it is closed
    /// [default: 60s].
    #[arg(long, global = true, env = "BATCHWATCH_PROMETHEUS_CONNECTION_LIFETIME", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub prometheus_connection_lifetime: Option<Duration>,
    /// Serve the Prometheus endpoint over TLS with this PEM certificate
    /// chain (with `prometheus_tls_key`) [default: plain HTTP].
    #[arg(long, global = true, env = "BATCHWATCH_PROMETHEUS_TLS_CERT", value_name = "PATH")]
    pub prometheus_tls_cert: Option<PathBuf>,
    /// The PEM private key of `prometheus_tls_cert`.
    #[arg(long, global = true, env = "BATCHWATCH_PROMETHEUS_TLS_KEY", value_name = "PATH")]
    pub prometheus_tls_key: Option<PathBuf>,
    /// Connections the Prometheus endpoint holds at once; beyond, new ones
    /// are closed at once [default: 64].
    #[arg(long, global = true, env = "BATCHWATCH_PROMETHEUS_MAX_CONNECTIONS")]
    pub prometheus_max_connections: Option<u32>,
    /// Connections the Prometheus endpoint holds at once from one client
    /// address; beyond, its new ones are closed at once [default: 8].
    #[arg(long, global = true, env = "BATCHWATCH_PROMETHEUS_MAX_CONNECTIONS_PER_CLIENT")]
    pub prometheus_max_connections_per_client: Option<u32>,
    /// How often metrics are collected and exported [default: OTEL_METRIC_EXPORT_INTERVAL, else 60s].
    #[arg(long, global = true, env = "BATCHWATCH_EXPORT_INTERVAL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub export_interval: Option<Duration>,
    /// Write calls plus io_uring SQEs per second from which a process gets
    /// series of its own; quieter processes are summed into `other` [default: 10].
    #[arg(long, global = true, env = "BATCHWATCH_MIN_OPS_PER_SEC")]
    pub min_ops_per_sec: Option<f64>,
    /// Most series one collection exports, all together [default: 5000].
    #[arg(long, global = true, env = "BATCHWATCH_MAX_SERIES")]
    pub max_series: Option<u32>,
    /// Series per descriptor instead of per descriptor kind [default: false].
    #[arg(long, global = true, env = "BATCHWATCH_PER_FD")]
    pub per_fd: Option<bool>,
    /// Whose series: each process (with its pid), each executable of a
    /// container (its processes together, no pid: series outlive
    /// restarts), or each workload (service and namespace) [default: process].
    #[arg(long, global = true, env = "BATCHWATCH_AGGREGATION", value_enum)]
    pub aggregation: Option<Aggregation>,
    /// Process attributes the series keep, wildcards allowed (`k8s.*`),
    /// comma-separated [default: all].
    #[arg(long, global = true, env = "BATCHWATCH_ATTRIBUTES_INCLUDE", value_delimiter = ',')]
    pub attributes_include: Option<Vec<String>>,
    /// Process attributes the series leave out, wildcards allowed
    /// (`process.command,k8s.pod.*`), comma-separated [default: none].
    #[arg(long, global = true, env = "BATCHWATCH_ATTRIBUTES_EXCLUDE", value_delimiter = ',')]
    pub attributes_exclude: Option<Vec<String>>,
    /// The attributes of a group of metrics, by metric-name pattern
    /// (`"batchwatch.sync.*"`): config file only, a table of its own.
    #[arg(skip)]
    #[serde(default)]
    pub attributes_select: Option<BTreeMap<String, GroupSelection>>,
    /// How OTLP histograms go on the wire: explicit buckets with one fixed
    /// bound list per metric, or exponential histograms at scale 0
    /// [default: explicit].
    #[arg(long, global = true, env = "BATCHWATCH_HISTOGRAMS", value_enum)]
    pub histograms: Option<Histograms>,
    /// How long the series of a descriptor (or kind of descriptor) that
    /// writes nothing, such as a closed one, are still exported [default: 5m].
    #[arg(long, global = true, env = "BATCHWATCH_SERIES_IDLE_AFTER", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub series_idle_after: Option<Duration>,
    /// Collections kept while the OTLP receiver is unreachable; beyond, the
    /// oldest is dropped [default: 10].
    #[arg(long, global = true, env = "BATCHWATCH_QUEUE_CAPACITY")]
    pub queue_capacity: Option<u32>,
    /// OTLP endpoint, used as is [default: OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT].
    #[arg(long, global = true, env = "BATCHWATCH_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// OTLP protocol, grpc or http/protobuf [default: OTEL_EXPORTER_OTLP_(METRICS_)PROTOCOL].
    #[arg(long, global = true, env = "BATCHWATCH_OTLP_PROTOCOL")]
    pub otlp_protocol: Option<String>,
    /// OTLP request headers, key1=value1,key2=value2 [default: OTEL_EXPORTER_OTLP_(METRICS_)HEADERS].
    #[arg(long, global = true, env = "BATCHWATCH_OTLP_HEADERS")]
    pub otlp_headers: Option<String>,
    /// How long one OTLP request may take [default: OTEL_EXPORTER_OTLP_(METRICS_)TIMEOUT, else 10s].
    #[arg(long, global = true, env = "BATCHWATCH_OTLP_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub otlp_timeout: Option<Duration>,
}

/// The `include` and `exclude` lists of one group of metrics; a list left
/// out is the global one (`export.attributes_include`, `..._exclude`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSelection {
    pub include: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
}

impl ExportSettings {
    /// `self` with every value that `over` sets replaced by it.
    fn overridden_by(self, over: ExportSettings) -> ExportSettings {
        ExportSettings {
            prometheus: over.prometheus.or(self.prometheus),
            prometheus_header_timeout: over.prometheus_header_timeout.or(self.prometheus_header_timeout),
            prometheus_connection_lifetime: over.prometheus_connection_lifetime.or(self.prometheus_connection_lifetime),
            prometheus_tls_cert: over.prometheus_tls_cert.or(self.prometheus_tls_cert),
            prometheus_tls_key: over.prometheus_tls_key.or(self.prometheus_tls_key),
            prometheus_max_connections: over.prometheus_max_connections.or(self.prometheus_max_connections),
            prometheus_max_connections_per_client: over
                .prometheus_max_connections_per_client
                .or(self.prometheus_max_connections_per_client),
            export_interval: over.export_interval.or(self.export_interval),
            min_ops_per_sec: over.min_ops_per_sec.or(self.min_ops_per_sec),
            max_series: over.max_series.or(self.max_series),
            per_fd: over.per_fd.or(self.per_fd),
            aggregation: over.aggregation.or(self.aggregation),
            series_idle_after: over.series_idle_after.or(self.series_idle_after),
            attributes_include: over.attributes_include.or(self.attributes_include),
            attributes_exclude: over.attributes_exclude.or(self.attributes_exclude),
            attributes_select: over.attributes_select.or(self.attributes_select),
            histograms: over.histograms.or(self.histograms),
            queue_capacity: over.queue_capacity.or(self.queue_capacity),
            otlp_endpoint: over.otlp_endpoint.or(self.otlp_endpoint),
            otlp_protocol: over.otlp_protocol.or(self.otlp_protocol),
            otlp_headers: over.otlp_headers.or(self.otlp_headers),
            otlp_timeout: over.otlp_timeout.or(self.otlp_timeout),
        }
    }
}

impl Settings {
    /// Reads a TOML file of settings.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Settings::parse(&text, &path.display().to_string())
    }

    /// Parses settings in TOML; `origin` names where the text came from. A
    /// bad value is named by its key (`export.histograms`), other errors by
    /// the text at fault.
    pub fn parse(text: &str, origin: &str) -> Result<Settings, ConfigError> {
        let error = |error: toml::de::Error, key: Option<String>| ConfigError::Parse {
            path: origin.to_owned(),
            message: error.message().to_owned(),
            key: key.unwrap_or_else(|| error.span().and_then(|span| text.get(span)).unwrap_or_default().to_owned()),
        };
        let document = toml::Deserializer::parse(text).map_err(|e| error(e, None))?;
        serde_path_to_error::deserialize(document).map_err(|e| {
            let key = e.path().to_string();
            error(e.into_inner(), (key != ".").then_some(key))
        })
    }

    /// `self` with every value that `over` sets replaced by it.
    pub fn overridden_by(self, over: Settings) -> Settings {
        Settings {
            interval: over.interval.or(self.interval),
            transition_cost_ns: over.transition_cost_ns.or(self.transition_cost_ns),
            attach: over.attach.or(self.attach),
            hot_writer: HotWriterSettings {
                min_calls_per_sec: over.hot_writer.min_calls_per_sec.or(self.hot_writer.min_calls_per_sec),
                max_bytes_per_call: over.hot_writer.max_bytes_per_call.or(self.hot_writer.max_bytes_per_call),
                max_records_per_call: over.hot_writer.max_records_per_call.or(self.hot_writer.max_records_per_call),
                sustain_intervals: over.hot_writer.sustain_intervals.or(self.hot_writer.sustain_intervals),
                window_intervals: over.hot_writer.window_intervals.or(self.hot_writer.window_intervals),
                batch_target: over.hot_writer.batch_target.or(self.hot_writer.batch_target),
            },
            timer_flush: TimerFlushSettings {
                min_period: over.timer_flush.min_period.or(self.timer_flush.min_period),
                min_share: over.timer_flush.min_share.or(self.timer_flush.min_share),
                min_flushes: over.timer_flush.min_flushes.or(self.timer_flush.min_flushes),
            },
            io_uring: IoUringSettings {
                min_wakeups_per_sec: over.io_uring.min_wakeups_per_sec.or(self.io_uring.min_wakeups_per_sec),
            },
            sync: SyncSettings { min_per_sec: over.sync.min_per_sec.or(self.sync.min_per_sec) },
            maps: MapSettings {
                max_fds: over.maps.max_fds.or(self.maps.max_fds),
                max_processes: over.maps.max_processes.or(self.maps.max_processes),
                max_rings: over.maps.max_rings.or(self.maps.max_rings),
                evict_idle_after: over.maps.evict_idle_after.or(self.maps.evict_idle_after),
            },
            export: self.export.overridden_by(over.export),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub interval: Duration,
    pub transition_cost_ns: Option<f64>,
    pub attach: AttachPreference,
    pub hot_writer: HotWriterRule,
    pub timer_flush: TimerFlushRule,
    pub io_uring: IoUringRule,
    pub sync: SyncRule,
    pub maps: MapLimits,
    pub export: ExportConfig,
}

/// How the probes hook syscall exits (see `bpf::probes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachPreference {
    /// fexit where the kernel allows it, else classic tracepoints.
    Auto,
    /// fexit on the syscall functions; fails where the kernel refuses it.
    Fexit,
    /// Classic `syscalls:sys_exit_*` tracepoints.
    Tracepoint,
    /// One BTF tracepoint on every syscall exit, filtered by number.
    RawTracepoint,
}

/// Whose series `batchwatch run` exports (see `export::series::level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregation {
    /// One series per process, with its pid.
    Process,
    /// One per executable of a container (or of the host): no pid.
    Executable,
    /// One per workload: `service.name` and `k8s.namespace.name`.
    Workload,
}

/// How OTLP histograms go on the wire (`export.histograms`; see
/// `export::otlp::encode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Histograms {
    /// Explicit buckets, one fixed bound list per metric.
    Explicit,
    /// Exponential histograms at scale 0, whose buckets are the kernel's
    /// slots; the metrics in seconds stay explicit.
    Exponential,
}

/// When a descriptor counts as an un-batched hot writer.
#[derive(Debug, Clone, PartialEq)]
pub struct HotWriterRule {
    pub min_calls_per_sec: f64,
    pub max_bytes_per_call: u64,
    pub max_records_per_call: u64,
    /// Hot intervals among the last `window_intervals` that raise a flag.
    pub sustain_intervals: u32,
    pub window_intervals: u32,
    pub batch_target: u64,
}

/// When a descriptor makes each write durable on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRule {
    /// Syncs per second from which the verdict may hold. The default, 10,
    /// is where group commit starts to pay: a sync costs about 1-10 ms on
    /// SATA SSDs and cloud block volumes (tens of µs only on NVMe with a
    /// volatile cache), so 10 a second keep a thread 1-10% of its time
    /// waiting on the disk, while a group-commit window of a few ms would
    /// already gather more than one write per sync. Below it, a service
    /// syncing each rare record loses little and may need the latency.
    pub min_per_sec: f64,
}

/// When the gaps between flushes say a batcher flushes on a timer.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerFlushRule {
    pub min_period: Duration,
    pub min_share: f64,
    pub min_flushes: u64,
}

/// When an SQPOLL ring is on a load too light for it.
#[derive(Debug, Clone, PartialEq)]
pub struct IoUringRule {
    pub min_wakeups_per_sec: f64,
}

/// Capacities of the kernel maps.
#[derive(Debug, Clone, PartialEq)]
pub struct MapLimits {
    pub max_fds: u32,
    pub max_processes: u32,
    pub max_rings: u32,
    /// How long a (process, fd) pair may stay idle in the kernel map.
    pub evict_idle_after: Duration,
}

/// What `batchwatch run` exports. The OTLP values stay unset when the
/// config leaves them so; `export::otlp` then takes the `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportConfig {
    pub prometheus: Option<SocketAddr>,
    pub prometheus_limits: EndpointLimits,
    /// TLS for the Prometheus endpoint, or plain HTTP.
    pub prometheus_tls: Option<TlsFiles>,
    pub export_interval: Option<Duration>,
    pub min_ops_per_sec: f64,
    pub max_series: u32,
    pub per_fd: bool,
    pub aggregation: Aggregation,
    pub series_idle_after: Duration,
    /// Patterns of the process attributes kept, and of those left out.
    pub attributes_include: Vec<String>,
    pub attributes_exclude: Vec<String>,
    /// Groups of metrics with attribute patterns of their own.
    pub attributes_select: Vec<AttributeGroup>,
    pub histograms: Histograms,
    pub queue_capacity: u32,
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: Option<String>,
    pub otlp_headers: Option<String>,
    pub otlp_timeout: Option<Duration>,
}

/// The metrics whose names match `metrics` (`*` a wildcard) keep the
/// process attributes that match `include` and no `exclude` pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeGroup {
    pub metrics: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// A certificate chain and its private key, in PEM files.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What one client, and all together, may hold of the Prometheus endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointLimits {
    pub header_timeout: Duration,
    pub connection_lifetime: Duration,
    pub max_connections: u32,
    pub max_connections_per_client: u32,
}

impl HotWriterRule {
    /// The sliding window every flag is judged over.
    pub fn window(&self) -> Window {
        Window { hot: self.sustain_intervals, of: self.window_intervals }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::resolve(Settings::default()).expect("the defaults are valid")
    }
}

impl Config {
    /// Fills in defaults and checks every value against its allowed range.
    pub fn resolve(s: Settings) -> Result<Config, ConfigError> {
        let ms = Duration::from_millis;
        let hot = s.hot_writer;
        let timer = s.timer_flush;
        let window_intervals = check("hot_writer.window_intervals", hot.window_intervals, 10, 1..=Window::MAX)?;
        Ok(Config {
            interval: check("interval", s.interval, ms(1000), ms(100)..=ms(60_000))?,
            transition_cost_ns: s
                .transition_cost_ns
                .map(|cost| check("transition_cost_ns", Some(cost), cost, 1.0..=100_000.0))
                .transpose()?,
            attach: s.attach.unwrap_or(AttachPreference::Auto),
            hot_writer: HotWriterRule {
                min_calls_per_sec: check("hot_writer.min_calls_per_sec", hot.min_calls_per_sec, 1000.0, 1.0..=1e9)?,
                max_bytes_per_call: check("hot_writer.max_bytes_per_call", hot.max_bytes_per_call, 512, 1..=1 << 20)?,
                max_records_per_call: check(
                    "hot_writer.max_records_per_call",
                    hot.max_records_per_call,
                    4,
                    1..=agent_common::write::MAX_RECORDS_PER_CALL,
                )?,
                // At most the window: more hot intervals than it holds never come.
                sustain_intervals: check(
                    "hot_writer.sustain_intervals",
                    hot.sustain_intervals,
                    3.min(window_intervals),
                    1..=window_intervals,
                )?,
                window_intervals,
                batch_target: check("hot_writer.batch_target", hot.batch_target, 64, 2..=1024)?,
            },
            timer_flush: TimerFlushRule {
                min_period: check(
                    "timer_flush.min_period",
                    timer.min_period,
                    ms(1),
                    Duration::from_micros(1)..=ms(60_000),
                )?,
                min_share: check("timer_flush.min_share", timer.min_share, 0.8, 0.5..=1.0)?,
                min_flushes: check("timer_flush.min_flushes", timer.min_flushes, 10, 2..=1_000_000)?,
            },
            io_uring: IoUringRule {
                min_wakeups_per_sec: check(
                    "io_uring.min_wakeups_per_sec",
                    s.io_uring.min_wakeups_per_sec,
                    10.0,
                    0.01..=1e6,
                )?,
            },
            sync: SyncRule { min_per_sec: check("sync.min_per_sec", s.sync.min_per_sec, 10.0, 0.1..=1e6)? },
            maps: MapLimits {
                max_fds: check("maps.max_fds", s.maps.max_fds, DEFAULT_MAX_FDS, 256..=1 << 20)?,
                max_processes: check("maps.max_processes", s.maps.max_processes, 8192, 64..=1 << 20)?,
                max_rings: check("maps.max_rings", s.maps.max_rings, 1024, 64..=1 << 16)?,
                evict_idle_after: check(
                    "maps.evict_idle_after",
                    s.maps.evict_idle_after,
                    ms(60_000),
                    ms(10_000)..=ms(86_400_000),
                )?,
            },
            export: ExportConfig::resolve(s.export)?,
        })
    }
}

impl ExportConfig {
    fn resolve(s: ExportSettings) -> Result<ExportConfig, ConfigError> {
        let ms = Duration::from_millis;
        let optional = |key, value: Option<Duration>, allowed: RangeInclusive<Duration>| {
            value.map(|v| check(key, Some(v), v, allowed)).transpose()
        };
        let attributes_include = attribute_patterns("export.attributes_include", s.attributes_include, &["*"])?;
        let attributes_exclude = attribute_patterns("export.attributes_exclude", s.attributes_exclude, &[])?;
        let attributes_select =
            attribute_groups(s.attributes_select.unwrap_or_default(), &attributes_include, &attributes_exclude)?;
        Ok(ExportConfig {
            prometheus: s.prometheus,
            prometheus_limits: EndpointLimits {
                header_timeout: check(
                    "export.prometheus_header_timeout",
                    s.prometheus_header_timeout,
                    ms(10_000),
                    ms(1000)..=ms(600_000),
                )?,
                connection_lifetime: check(
                    "export.prometheus_connection_lifetime",
                    s.prometheus_connection_lifetime,
                    ms(60_000),
                    ms(1000)..=ms(3_600_000),
                )?,
                max_connections: check(
                    "export.prometheus_max_connections",
                    s.prometheus_max_connections,
                    64,
                    1..=65_536,
                )?,
                max_connections_per_client: check(
                    "export.prometheus_max_connections_per_client",
                    s.prometheus_max_connections_per_client,
                    8,
                    1..=65_536,
                )?,
            },
            prometheus_tls: match (s.prometheus_tls_cert, s.prometheus_tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                (None, None) => None,
                _ => return Err(ConfigError::Together("export.prometheus_tls_cert", "export.prometheus_tls_key")),
            },
            export_interval: optional("export.export_interval", s.export_interval, ms(100)..=ms(3_600_000))?,
            min_ops_per_sec: check("export.min_ops_per_sec", s.min_ops_per_sec, 10.0, 0.0..=1e9)?,
            // The floor leaves room for the `other` and node series (see export::series).
            max_series: check("export.max_series", s.max_series, 5000, 1000..=1_000_000)?,
            per_fd: s.per_fd.unwrap_or(false),
            aggregation: s.aggregation.unwrap_or(Aggregation::Process),
            series_idle_after: check(
                "export.series_idle_after",
                s.series_idle_after,
                ms(300_000),
                ms(10_000)..=ms(86_400_000),
            )?,
            attributes_include,
            attributes_exclude,
            attributes_select,
            histograms: s.histograms.unwrap_or(Histograms::Explicit),
            queue_capacity: check("export.queue_capacity", s.queue_capacity, 10, 1..=1000)?,
            otlp_endpoint: s.otlp_endpoint,
            otlp_protocol: s.otlp_protocol,
            otlp_headers: s.otlp_headers,
            otlp_timeout: optional("export.otlp_timeout", s.otlp_timeout, ms(1)..=ms(600_000))?,
        })
    }
}

/// (process, fd) pairs the kernel tracks by default, on any node: their
/// statistics live once per pair, not once per CPU, so 16,384 take about
/// 14 MiB of kernel memory on 2 CPUs and on 192 alike.
const DEFAULT_MAX_FDS: u32 = 16384;

/// `value` (or `default`) if it lies in `allowed`.
fn check<T: PartialOrd + Copy + Shown>(
    key: &'static str,
    value: Option<T>,
    default: T,
    allowed: RangeInclusive<T>,
) -> Result<T, ConfigError> {
    let value = value.unwrap_or(default);
    // `contains` is false for NaN too.
    if allowed.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::OutOfRange {
            key,
            value: value.shown(),
            allowed: format!("{} to {}", allowed.start().shown(), allowed.end().shown()),
        })
    }
}

/// How a value is written in error messages: as a user would type it.
trait Shown {
    fn shown(&self) -> String;
}

impl Shown for Duration {
    fn shown(&self) -> String {
        humantime::format_duration(*self).to_string()
    }
}

macro_rules! shown_by_display {
    ($($t:ty),*) => { $(impl Shown for $t { fn shown(&self) -> String { self.to_string() } })* };
}
shown_by_display!(u32, u64, f64);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value outside its allowed range.
    #[error(
        "config key `{key}` (flag --{flag}, env {env}) is {value}: allowed {allowed}",
        flag = flag_name(key),
        env = env_name(key)
    )]
    OutOfRange { key: &'static str, value: String, allowed: String },
    /// One of two keys that only mean something together is set alone.
    #[error("{} and {} go together: set both or neither", describe_key(.0), describe_key(.1))]
    Together(&'static str, &'static str),
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key or a bad value.
    #[error("config file {path}: {message} (at `{key}`)")]
    Parse { path: String, message: String, key: String },
    /// An attribute pattern that matches no process attribute.
    #[error("{} has `{pattern}`, which matches no process attribute; they are: {known}", describe_key(key))]
    Attribute { key: &'static str, pattern: String, known: String },
    /// A metric-name pattern of `export.attributes_select` that matches no
    /// metric with process attributes.
    #[error(
        "config key `export.attributes_select.\"{group}\"` matches no metric with process attributes; they are: {known}"
    )]
    MetricGroup { group: String, known: String },
    /// An attribute pattern of a group of metrics that matches no process attribute.
    #[error(
        "config key `export.attributes_select.\"{group}\".{field}` has `{pattern}`, which matches no process \
         attribute; they are: {known}"
    )]
    GroupAttribute { group: String, field: &'static str, pattern: String, known: String },
}

/// `patterns`, or `default`, if each matches at least one process attribute.
fn attribute_patterns(
    key: &'static str,
    patterns: Option<Vec<String>>,
    default: &[&str],
) -> Result<Vec<String>, ConfigError> {
    let patterns = patterns.unwrap_or_else(|| default.iter().map(|&pattern| pattern.to_owned()).collect());
    match unmatched(&patterns, &PROCESS_ATTRIBUTES.map(|attribute| attribute.key)) {
        Some((pattern, known)) => Err(ConfigError::Attribute { key, pattern, known }),
        None => Ok(trimmed(patterns)),
    }
}

/// `export.attributes_select`, each group's metric-name pattern matching
/// at least one metric with process attributes, and its attribute patterns
/// at least one of those; the lists a group leaves out are `include` and
/// `exclude`.
fn attribute_groups(
    groups: BTreeMap<String, GroupSelection>,
    include: &[String],
    exclude: &[String],
) -> Result<Vec<AttributeGroup>, ConfigError> {
    let metrics: Vec<&str> =
        catalog::ALL.iter().filter(|m| m.subject != catalog::Subject::Node).map(|m| m.name).collect();
    let attributes = PROCESS_ATTRIBUTES.map(|attribute| attribute.key);
    groups
        .into_iter()
        .map(|(group, selection)| {
            if let Some((_, known)) = unmatched(std::slice::from_ref(&group), &metrics) {
                return Err(ConfigError::MetricGroup { group, known });
            }
            let list = |field: &'static str, patterns: Option<Vec<String>>, global: &[String]| {
                let patterns = patterns.unwrap_or_else(|| global.to_vec());
                match unmatched(&patterns, &attributes) {
                    Some((pattern, known)) => {
                        Err(ConfigError::GroupAttribute { group: group.clone(), field, pattern, known })
                    }
                    None => Ok(trimmed(patterns)),
                }
            };
            let include = list("include", selection.include, include)?;
            let exclude = list("exclude", selection.exclude, exclude)?;
            Ok(AttributeGroup { metrics: group.trim().to_owned(), include, exclude })
        })
        .collect()
}

/// The first of `patterns` (`*` a wildcard) that matches none of `known`,
/// with `known` as an error shows them.
fn unmatched(patterns: &[String], known: &[&str]) -> Option<(String, String)> {
    let matches_none = |pattern: &&String| {
        let wildcard = wildmatch::WildMatch::new(pattern.trim());
        !known.iter().any(|key| wildcard.matches(key))
    };
    patterns.iter().find(matches_none).map(|pattern| (pattern.clone(), known.join(", ")))
}

fn trimmed(patterns: Vec<String>) -> Vec<String> {
    patterns.into_iter().map(|pattern| pattern.trim().to_owned()).collect()
}

/// How a user sets `key`, for errors found after [`Config::resolve`]:
/// "config key `export.otlp_protocol` (flag --otlp-protocol, env BATCHWATCH_OTLP_PROTOCOL)".
pub fn describe_key(key: &str) -> String {
    format!("config key `{key}` (flag --{}, env {})", flag_name(key), env_name(key))
}

/// `hot_writer.min_calls_per_sec` → `min-calls-per-sec`.
fn flag_name(key: &str) -> String {
    last_segment(key).replace('_', "-")
}

/// `hot_writer.min_calls_per_sec` → `BATCHWATCH_MIN_CALLS_PER_SEC`.
fn env_name(key: &str) -> String {
    format!("BATCHWATCH_{}", last_segment(key).to_uppercase())
}

fn last_segment(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser};

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::default();
        assert_eq!(config.interval, Duration::from_secs(1));
        assert_eq!(config.hot_writer.sustain_intervals, 3);
    }

    #[test]
    fn out_of_range_names_key_flag_env_value_and_range() {
        let mut settings = Settings::default();
        settings.hot_writer.min_calls_per_sec = Some(0.0);
        let error = Config::resolve(settings).unwrap_err().to_string();
        assert_eq!(
            error,
            "config key `hot_writer.min_calls_per_sec` (flag --min-calls-per-sec, env \
             BATCHWATCH_MIN_CALLS_PER_SEC) is 0: allowed 1 to 1000000000"
        );
    }

    #[test]
    fn export_grouping_keys_from_a_file_and_bad_attribute_patterns() {
        let text = "[export]\naggregation = \"workload\"\nseries_idle_after = \"30s\"\n\
                    attributes_exclude = [\"process.command\", \"k8s.pod.*\"]\n";
        let export = Config::resolve(Settings::parse(text, "test").unwrap()).unwrap().export;
        assert_eq!((export.aggregation, export.series_idle_after), (Aggregation::Workload, Duration::from_secs(30)));
        assert_eq!(
            (export.attributes_include, export.attributes_exclude),
            (vec!["*".to_owned()], vec!["process.command".to_owned(), "k8s.pod.*".to_owned()])
        );
        let defaults = Config::default().export;
        assert_eq!(
            (defaults.aggregation, defaults.series_idle_after),
            (Aggregation::Process, Duration::from_secs(300))
        );

        let mut settings = Settings::default();
        settings.export.attributes_exclude = Some(vec!["pod.name".to_owned()]);
        let error = Config::resolve(settings).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "config key `export.attributes_exclude` (flag --attributes-exclude, env BATCHWATCH_ATTRIBUTES_EXCLUDE) \
                 has `pod.name`, which matches no process attribute; they are: process.pid, process.executable.name"
            ),
            "{error}"
        );
    }

    #[test]
    fn attribute_selection_per_group_of_metrics() {
        let text = "[export]\nattributes_exclude = [\"process.command\"]\n\
                    [export.attributes_select.\"batchwatch.sync.*\"]\nexclude = [\"process.pid\"]\n\
                    [export.attributes_select.\"batchwatch.write.calls\"]\ninclude = [\"k8s.*\"]\n";
        let export = Config::resolve(Settings::parse(text, "test").unwrap()).unwrap().export;
        let group = |metrics: &str, include: &[&str], exclude: &[&str]| AttributeGroup {
            metrics: metrics.to_owned(),
            include: include.iter().map(|&p| p.to_owned()).collect(),
            exclude: exclude.iter().map(|&p| p.to_owned()).collect(),
        };
        // A list a group leaves out is the global one.
        assert_eq!(
            export.attributes_select,
            [
                group("batchwatch.sync.*", &["*"], &["process.pid"]),
                group("batchwatch.write.calls", &["k8s.*"], &["process.command"])
            ]
        );
        assert!(Config::default().export.attributes_select.is_empty());

        let error = |text: &str| Config::resolve(Settings::parse(text, "test").unwrap()).unwrap_err().to_string();
        let no_metric = error("[export.attributes_select.\"batchwatch.node.*\"]\ninclude = [\"*\"]\n");
        assert!(
            no_metric.starts_with(
                "config key `export.attributes_select.\"batchwatch.node.*\"` matches no metric with process \
                 attributes; they are: batchwatch.write.calls, batchwatch.write.io"
            ),
            "{no_metric}"
        );
        let no_attribute = error("[export.attributes_select.\"batchwatch.sync.*\"]\nexclude = [\"pid\"]\n");
        assert!(
            no_attribute.starts_with(
                "config key `export.attributes_select.\"batchwatch.sync.*\".exclude` has `pid`, which matches no \
                 process attribute; they are: process.pid, process.executable.name"
            ),
            "{no_attribute}"
        );
        let unknown = Settings::parse("[export.attributes_select.\"batchwatch.sync.*\"]\ndrop = [\"x\"]\n", "test");
        assert!(unknown.unwrap_err().to_string().contains("unknown field `drop`, expected `include` or `exclude`"));
    }

    #[test]
    fn histograms_are_explicit_or_exponential() {
        assert_eq!(Config::default().export.histograms, Histograms::Explicit);
        let settings = Settings::parse("[export]\nhistograms = \"exponential\"\n", "test").unwrap();
        assert_eq!(Config::resolve(settings).unwrap().export.histograms, Histograms::Exponential);
        let error = Settings::parse("[export]\nhistograms = \"native\"\n", "test").unwrap_err().to_string();
        assert!(
            error.contains("unknown variant `native`, expected `explicit` or `exponential`")
                && error.contains("export.histograms"),
            "{error}"
        );
    }

    #[test]
    fn sync_rate_is_checked_and_set_from_a_file() {
        let mut settings = Settings::default();
        settings.sync.min_per_sec = Some(0.0);
        let error = Config::resolve(settings).unwrap_err().to_string();
        assert_eq!(
            error,
            "config key `sync.min_per_sec` (flag --min-per-sec, env BATCHWATCH_MIN_PER_SEC) is 0: allowed 0.1 to 1000000"
        );
        let settings = Settings::parse("[sync]\nmin_per_sec = 50\n", "test").unwrap();
        assert_eq!(Config::resolve(settings).unwrap().sync.min_per_sec, 50.0);
        assert_eq!(Config::default().sync.min_per_sec, 10.0);
    }

    #[test]
    fn durations_are_shown_as_typed() {
        let settings = Settings { interval: Some(Duration::from_millis(5)), ..Default::default() };
        let error = Config::resolve(settings).unwrap_err().to_string();
        assert!(error.ends_with("is 5ms: allowed 100ms to 1m"), "{error}");
    }

    #[test]
    fn eviction_shorter_than_ten_seconds_is_refused() {
        let mut settings = Settings::default();
        settings.maps.evict_idle_after = Some(Duration::from_secs(1));
        let error = Config::resolve(settings).unwrap_err().to_string();
        assert!(error.starts_with("config key `maps.evict_idle_after` (flag --evict-idle-after"), "{error}");
        assert!(error.ends_with("is 1s: allowed 10s to 1day"), "{error}");
    }

    #[test]
    fn window_keys_are_checked_against_each_other() {
        let mut settings = Settings::default();
        settings.hot_writer.window_intervals = Some(65);
        let error = Config::resolve(settings).unwrap_err().to_string();
        assert!(error.starts_with("config key `hot_writer.window_intervals`"), "{error}");
        assert!(error.ends_with("is 65: allowed 1 to 64"), "{error}");
        let mut settings = Settings::default();
        settings.hot_writer.window_intervals = Some(5);
        settings.hot_writer.sustain_intervals = Some(6);
        let error = Config::resolve(settings).unwrap_err().to_string();
        assert!(error.starts_with("config key `hot_writer.sustain_intervals`"), "{error}");
        assert!(error.ends_with("is 6: allowed 1 to 5"), "{error}");
        let mut settings = Settings::default();
        settings.hot_writer.window_intervals = Some(2);
        assert_eq!(Config::resolve(settings).unwrap().hot_writer.window(), Window { hot: 2, of: 2 });
    }

    #[test]
    fn nan_is_out_of_range() {
        let mut settings = Settings::default();
        settings.timer_flush.min_share = Some(f64::NAN);
        assert!(Config::resolve(settings).is_err());
    }

    #[test]
    fn file_then_flags() {
        let file: Settings =
            toml::from_str("interval = \"2s\"\n[hot_writer]\nmin_calls_per_sec = 50\nbatch_target = 8\n").unwrap();
        let flags = Flags::parse_from(["x", "--batch-target", "16"]).settings;
        let config = Config::resolve(file.overridden_by(flags)).unwrap();
        assert_eq!(config.interval, Duration::from_secs(2));
        assert_eq!(config.hot_writer.min_calls_per_sec, 50.0);
        assert_eq!(config.hot_writer.batch_target, 16);
    }

    #[test]
    fn unknown_file_key_is_named() {
        let dir = std::env::temp_dir().join(format!("bw-config-{}", std::process::id()));
        std::fs::write(&dir, "[hot_writer]\nmin_calls = 5\n").unwrap();
        let error = Settings::from_file(&dir).unwrap_err().to_string();
        std::fs::remove_file(&dir).unwrap();
        assert!(error.contains("unknown field `min_calls`"), "{error}");
    }

    #[test]
    fn export_section_from_file_then_flags() {
        let file: Settings = toml::from_str(
            "[export]\nprometheus = \"127.0.0.1:9464\"\nexport_interval = \"15s\"\nper_fd = true\n\
             otlp_protocol = \"grpc\"\nqueue_capacity = 3\n",
        )
        .unwrap();
        let flags = Flags::parse_from(["x", "--max-series", "2000", "--otlp-timeout", "2s"]).settings;
        let export = Config::resolve(file.overridden_by(flags)).unwrap().export;
        assert_eq!(export.prometheus, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(export.export_interval, Some(Duration::from_secs(15)));
        assert!(export.per_fd);
        assert_eq!(export.otlp_protocol.as_deref(), Some("grpc"));
        assert_eq!((export.queue_capacity, export.max_series), (3, 2000));
        assert_eq!(export.otlp_timeout, Some(Duration::from_secs(2)));
        assert_eq!(export.min_ops_per_sec, 10.0);
        // Left unset, so the OTEL_* variables may fill them in.
        assert_eq!((export.otlp_endpoint, export.otlp_headers), (None, None));
    }

    #[test]
    fn export_values_are_checked() {
        let mut settings = Settings::default();
        settings.export.max_series = Some(10);
        let error = Config::resolve(settings).unwrap_err().to_string();
        assert_eq!(
            error,
            "config key `export.max_series` (flag --max-series, env BATCHWATCH_MAX_SERIES) is 10: allowed 1000 to 1000000"
        );
        let mut settings = Settings::default();
        settings.export.export_interval = Some(Duration::from_millis(1));
        assert!(Config::resolve(settings).unwrap_err().to_string().contains("export.export_interval"));
    }

    #[test]
    fn endpoint_limits_are_checked() {
        let limits = Config::default().export.prometheus_limits;
        assert_eq!(
            (
                limits.header_timeout,
                limits.connection_lifetime,
                limits.max_connections,
                limits.max_connections_per_client
            ),
            (Duration::from_secs(10), Duration::from_secs(60), 64, 8)
        );
        let mut settings = Settings::default();
        settings.export.prometheus_max_connections = Some(0);
        assert_eq!(
            Config::resolve(settings).unwrap_err().to_string(),
            "config key `export.prometheus_max_connections` (flag --prometheus-max-connections, env \
             BATCHWATCH_PROMETHEUS_MAX_CONNECTIONS) is 0: allowed 1 to 65536"
        );
        let mut settings = Settings::default();
        settings.export.prometheus_header_timeout = Some(Duration::from_millis(10));
        let error = Config::resolve(settings).unwrap_err().to_string();
        assert!(error.ends_with("is 10ms: allowed 1s to 10m"), "{error}");
    }

    #[test]
    fn a_tls_certificate_needs_its_key() {
        let flags = Flags::parse_from(["x", "--prometheus-tls-cert", "/etc/tls/cert.pem"]).settings;
        assert_eq!(
            Config::resolve(flags).unwrap_err().to_string(),
            "config key `export.prometheus_tls_cert` (flag --prometheus-tls-cert, env BATCHWATCH_PROMETHEUS_TLS_CERT) \
             and config key `export.prometheus_tls_key` (flag --prometheus-tls-key, env BATCHWATCH_PROMETHEUS_TLS_KEY) \
             go together: set both or neither"
        );
        let both = Flags::parse_from(["x", "--prometheus-tls-cert", "c.pem", "--prometheus-tls-key", "k.pem"]).settings;
        let tls = Config::resolve(both).unwrap().export.prometheus_tls;
        assert_eq!(tls, Some(TlsFiles { cert: "c.pem".into(), key: "k.pem".into() }));
    }

    #[test]
    fn keys_are_described_as_a_user_sets_them() {
        assert_eq!(
            describe_key("export.otlp_protocol"),
            "config key `export.otlp_protocol` (flag --otlp-protocol, env BATCHWATCH_OTLP_PROTOCOL)"
        );
    }

    #[test]
    fn every_flag_follows_the_naming_rule() {
        for arg in Flags::command().get_arguments() {
            let flag = arg.get_long().unwrap();
            let env = arg.get_env().unwrap().to_str().unwrap();
            assert_eq!(env, env_name(&flag.replace('-', "_")), "flag --{flag}");
        }
    }
}
