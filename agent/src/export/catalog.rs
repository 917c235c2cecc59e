//! Every metric batchwatch exports: its name, instrument, unit, attributes
//! and meaning, following the OpenTelemetry naming guidelines. This list is
//! the one source: the series builder emits only what is here, the
//! Prometheus names are derived from it, and `docs/metrics.md` holds its
//! tables, which a test keeps equal to [`markdown`].

use std::fmt::Write as _;

use Instrument::{Counter, Gauge};
use Subject::{Descriptor, Node, Process};
use agent_common::{
    hist::slot_upper_bound,
    io_uring::SUBMIT_SLOTS,
    sync,
    write::{BYTES_SLOTS, GAP_SLOTS, RECORDS_SLOTS},
};

/// An attribute key and what its values mean.
#[derive(Debug, PartialEq, Eq)]
pub struct Attribute {
    pub key: &'static str,
    pub description: &'static str,
}

pub const PROCESS_PID: Attribute = Attribute { key: "process.pid", description: "Process id." };
pub const PROCESS_EXECUTABLE_NAME: Attribute =
    Attribute { key: "process.executable.name", description: "Process name, as in `/proc/PID/comm`." };
pub const PROCESS_RUNTIME_NAME: Attribute = Attribute {
    key: "process.runtime.name",
    description: "The process's language runtime, from its executable and mapped libraries: `nodejs`, `java`, \
                  `python`, `go`, `rust`, `dotnet` or `native`; absent when the executable could not be read.",
};
pub const PROCESS_COMMAND: Attribute = Attribute {
    key: "process.command",
    description: "The command that started the process: the first word of its command line (the rest of the \
                  line, which may hold secrets, is not exported). Absent when the process exited before it was read.",
};
pub const CONTAINER_ID: Attribute =
    Attribute { key: "container.id", description: "Container id, from the process's cgroup path." };
pub const K8S_NAMESPACE_NAME: Attribute =
    Attribute { key: "k8s.namespace.name", description: "Namespace of the pod (in Kubernetes)." };
pub const K8S_POD_NAME: Attribute = Attribute { key: "k8s.pod.name", description: "Pod name (in Kubernetes)." };
pub const K8S_POD_UID: Attribute =
    Attribute { key: "k8s.pod.uid", description: "Pod uid, from the Kubernetes API or else from the cgroup path." };
pub const K8S_CONTAINER_NAME: Attribute = Attribute {
    key: "k8s.container.name",
    description: "Container name in the pod spec (in Kubernetes; left out while the API does not tell it yet).",
};
pub const SERVICE_NAME: Attribute = Attribute {
    key: "service.name",
    description: "Service of the pod (in Kubernetes): its `app.kubernetes.io/name` label, else its `app` label, else \
                  its workload's name, else the pod's name (docs/kubernetes-identity.md).",
};
pub const K8S_DEPLOYMENT_NAME: Attribute = Attribute {
    key: "k8s.deployment.name",
    description: "The Deployment of the pod: the owner of its ReplicaSet, named by the pod's `pod-template-hash` (in \
                  Kubernetes).",
};
pub const K8S_STATEFULSET_NAME: Attribute =
    Attribute { key: "k8s.statefulset.name", description: "The StatefulSet that owns the pod (in Kubernetes)." };
pub const K8S_DAEMONSET_NAME: Attribute =
    Attribute { key: "k8s.daemonset.name", description: "The DaemonSet that owns the pod (in Kubernetes)." };
pub const K8S_JOB_NAME: Attribute =
    Attribute { key: "k8s.job.name", description: "The Job that owns the pod (in Kubernetes)." };
pub const K8S_CRONJOB_NAME: Attribute = Attribute {
    key: "k8s.cronjob.name",
    description: "The CronJob that owns the pod's Job, from the Job's owner references (in Kubernetes; left out \
                  while the Job cannot be read).",
};
pub const FOLDED: Attribute = Attribute {
    key: "batchwatch.folded",
    description: "`true` on the one series per node that sums every process without series of its own; that \
                  series carries no process attributes.",
};
pub const FD_KIND: Attribute = Attribute {
    key: "batchwatch.fd.kind",
    description: "What the descriptor is: `file`, `pipe`, `socket`, `tcp`, `udp`, `unix`, `tty`, `chardev`, \
                  `io_uring`, `other`, or `unknown` (closed before it was seen).",
};
pub const FD: Attribute =
    Attribute { key: "batchwatch.fd", description: "Descriptor number (only with `export.per_fd`)." };
pub const FD_TARGET: Attribute = Attribute {
    key: "batchwatch.fd.target",
    description: "What the descriptor points to: a path, `socket:[INODE]`, `pipe:[INODE]`... (only with `export.per_fd`).",
};
pub const SYSCALL: Attribute = Attribute {
    key: "batchwatch.syscall",
    description: "`write`, `writev`, `pwrite64`, `pwritev`, `pwritev2`, `sendto`, `sendmsg` or `sendmmsg`; `any` in \
                  the degraded mode, which sees all write calls together.",
};
pub const WRITE_DROP_REASON: Attribute = Attribute {
    key: "batchwatch.drop.reason",
    description: "Why data did not go out as asked. Writes: `short_write` (fewer bytes or messages than asked), \
                  `eagain` (EAGAIN/EWOULDBLOCK), `epipe` (EPIPE or ECONNRESET), `enobufs`, `other_error`. io_uring: \
                  `cq_overflow`, `failed` (request failed by the kernel), `cqe_eagain`, `cqe_error`, `short_write`. \
                  Export: `queue_full`, `rejected` (refused by the receiver).",
};
pub const UNBATCHED_REASON: Attribute = Attribute {
    key: "batchwatch.unbatched.reason",
    description: "`hot_writer` (a descriptor written at a high rate, one small record per call), `io_uring_unbatched` \
                  (one SQE per `io_uring_enter` at a high rate), `sqpoll_trickle` (an SQPOLL poller woken over and over), \
                  `sync_per_write` (a descriptor syncing often, one or two writes per sync).",
};
pub const SYNC_CALL: Attribute = Attribute {
    key: "batchwatch.sync.call",
    description: "`fsync`, `fdatasync`, `sync_file_range`, `msync`, `syncfs`, `sync`, `io_uring_fsync`, \
                  `io_uring_sync_file_range`, or `o_dsync_write` (a write to a descriptor opened O_SYNC/O_DSYNC).",
};
pub const SYNC_DROP_REASON: Attribute = Attribute {
    key: "batchwatch.sync.error",
    description: "Why a sync failed: `eio` (write-back failed: data may be lost), `einval` (the descriptor cannot be \
                  synced), `enospc` (ENOSPC or EDQUOT), `other_error`.",
};
pub const IO_URING_OP: Attribute =
    Attribute { key: "batchwatch.io_uring.op", description: "Class of the SQE's opcode: `write`, `read`, `other`." };
pub const IO_URING_QUEUE: Attribute = Attribute {
    key: "batchwatch.io_uring.queue",
    description: "`sq` (submissions the kernel has not consumed) or `cq` (completions the process has not reaped).",
};
pub const PROBE_ERROR: Attribute = Attribute {
    key: "batchwatch.probe.error",
    description: "`stats_map_full` (a new (process, fd) pair found the map full), `args_unreadable` (iovecs or \
                  message headers unreadable), `uring_map_full` (a ring found its map full), `exit_map_full` (an exit \
                  could not be recorded; a periodic /proc sweep finds the process gone), `exec_map_full` (an exec \
                  could not be recorded; the process keeps its old name), `ring_index_unresolved` (an \
                  `io_uring_enter` on a registered ring whose ring could not be told, not counted), `args_clamped` (a \
                  call asked for more than the kernel ever accepts, counted clamped to MAX_RW_COUNT or UIO_MAXIOV), \
                  `compat_skipped` (a 32-bit call of a traced syscall, skipped by the raw-tracepoint mode), \
                  `recursion_misses` (calls the kernel ran no program for, because one was already running on that \
                  CPU: the programs' own count), `exits_missed` (an exit the kernel did not tell, found by a /proc \
                  sweep: the process gone, or its pid reused), `sync_map_full` (a sync, or its duration, could not be \
                  recorded).",
};
pub const KUBERNETES_REQUEST: Attribute = Attribute {
    key: "batchwatch.kubernetes.request",
    description: "`pod_list` (listing the node's pods: lookups answer from the last list that succeeded) or \
                  `job_read` (reading a pod's Job for its CronJob, or put off after one failed in the same list: \
                  those pods go without `k8s.cronjob.name` until a read succeeds).",
};
pub const ENDPOINT_ERROR: Attribute = Attribute {
    key: "batchwatch.endpoint.error",
    description: "`connection_limit` (a connection closed at once: the endpoint held \
                  `export.prometheus_max_connections`), `client_limit` (closed at once: its client address held \
                  `export.prometheus_max_connections_per_client`), `header_timeout` (closed: no complete request \
                  headers within `export.prometheus_header_timeout`), `response_stalled` (cut at the end of \
                  `export.prometheus_connection_lifetime` with its response still unsent: a client that does not \
                  read), `tls_handshake` (a TLS handshake failed or took longer than the header timeout), `accept_failed` (accept(2) failed, e.g. EMFILE; \
                  the endpoint backs off up to a second).",
};

/// The attributes of a process's series, in the order they are attached.
pub const PROCESS_ATTRIBUTES: [&Attribute; 15] = [
    &PROCESS_PID,
    &PROCESS_EXECUTABLE_NAME,
    &PROCESS_COMMAND,
    &PROCESS_RUNTIME_NAME,
    &CONTAINER_ID,
    &K8S_NAMESPACE_NAME,
    &K8S_POD_NAME,
    &K8S_POD_UID,
    &K8S_CONTAINER_NAME,
    &SERVICE_NAME,
    &K8S_DEPLOYMENT_NAME,
    &K8S_STATEFULSET_NAME,
    &K8S_DAEMONSET_NAME,
    &K8S_JOB_NAME,
    &K8S_CRONJOB_NAME,
];

/// The attributes that tell a process's series apart, beyond the process.
pub const METRIC_ATTRIBUTES: [&Attribute; 14] = [
    &FD_KIND,
    &FD,
    &FD_TARGET,
    &SYSCALL,
    &WRITE_DROP_REASON,
    &UNBATCHED_REASON,
    &SYNC_CALL,
    &SYNC_DROP_REASON,
    &IO_URING_OP,
    &IO_URING_QUEUE,
    &PROBE_ERROR,
    &KUBERNETES_REQUEST,
    &ENDPOINT_ERROR,
    &FOLDED,
];

/// What a log2 histogram's bucket bounds count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Bounds in the metric's unit: 0, 1, 2, 4, ... 2^k.
    Unit,
    /// The kernel counts nanoseconds, the metric is in seconds: bounds 2^k·1e-9.
    NanosAsSeconds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instrument {
    /// A monotonic, cumulative sum.
    Counter,
    Gauge,
    /// A cumulative histogram with the kernel's log2 buckets: `slots` counts,
    /// slot 0 holding 0, slot 1 holding 1, slot k >= 2 holding
    /// (2^(k-2), 2^(k-1)], the last one open (`agent_common::hist`).
    Histogram {
        slots: usize,
        scale: Scale,
    },
}

impl Instrument {
    fn name(self) -> &'static str {
        match self {
            Instrument::Counter => "Counter",
            Instrument::Gauge => "Gauge",
            Instrument::Histogram { .. } => "Histogram",
        }
    }
}

/// Whose series a metric has, and so which attributes come before its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A process (or `other`) and one kind of descriptor it writes to (or,
    /// with `export.per_fd`, one descriptor).
    Descriptor,
    /// A process, or `other`.
    Process,
    /// The node or the agent itself: the resource attributes only.
    Node,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub instrument: Instrument,
    /// UCUM, with `{annotation}` for counts of things.
    pub unit: &'static str,
    pub subject: Subject,
    /// Attributes of its own, after the subject's.
    pub attributes: &'static [&'static Attribute],
    pub description: &'static str,
}

const fn log2(slots: usize) -> Instrument {
    Instrument::Histogram { slots, scale: Scale::Unit }
}

const fn log2_seconds(slots: usize) -> Instrument {
    Instrument::Histogram { slots, scale: Scale::NanosAsSeconds }
}

/// Slots of the agent's own histograms: up to 2^30 points per request.
pub const EXPORT_BATCH_SLOTS: usize = 32;

pub const WRITE_CALLS: Metric = Metric {
    name: "batchwatch.write.calls",
    instrument: Counter,
    unit: "{call}",
    subject: Descriptor,
    attributes: &[&SYSCALL],
    description: "Write-family system calls; its rate is the call rate.",
};
pub const WRITE_IO: Metric = Metric {
    name: "batchwatch.write.io",
    instrument: Counter,
    unit: "By",
    subject: Descriptor,
    attributes: &[],
    description: "Bytes the write-family calls wrote; its rate is the byte rate.",
};
pub const WRITE_RECORDS: Metric = Metric {
    name: "batchwatch.write.records",
    instrument: Counter,
    unit: "{record}",
    subject: Descriptor,
    attributes: &[],
    description: "Records the calls that did not fail carried: 1 per plain write, the iovecs of a vectored write, the \
                  messages a `sendmmsg` sent.",
};
pub const WRITE_FAILED_REQUESTED: Metric = Metric {
    name: "batchwatch.write.failed.requested",
    instrument: Counter,
    unit: "By",
    subject: Descriptor,
    attributes: &[],
    description: "Bytes the failed write-family calls (an error result) asked to write, each clamped to MAX_RW_COUNT; \
                  kept out of the batch sizes.",
};
pub const WRITE_DROPS: Metric = Metric {
    name: "batchwatch.write.drops",
    instrument: Counter,
    unit: "{call}",
    subject: Descriptor,
    attributes: &[&WRITE_DROP_REASON],
    description: "Calls the kernel did not complete as asked (batching metric 4, drops): should stay 0.",
};
pub const WRITE_BATCH_SIZE: Metric = Metric {
    name: "batchwatch.write.batch.size",
    instrument: log2(BYTES_SLOTS),
    unit: "By",
    subject: Descriptor,
    attributes: &[],
    description: "Bytes asked per write-family call (batching metric 1, batch size in bytes).",
};
pub const WRITE_BATCH_RECORDS: Metric = Metric {
    name: "batchwatch.write.batch.records",
    instrument: log2(RECORDS_SLOTS),
    unit: "{record}",
    subject: Descriptor,
    attributes: &[],
    description: "Records per write-family call (batching metric 1, batch size in records).",
};
pub const WRITE_BATCH_WAIT: Metric = Metric {
    name: "batchwatch.write.batch.wait",
    instrument: log2_seconds(GAP_SLOTS),
    unit: "s",
    subject: Descriptor,
    attributes: &[],
    description: "Time between successive write-family calls on the same descriptor (batching metric 2, batch wait \
                  time): a batcher flushing on its timer shows a peak at its max-wait.",
};
pub const WRITE_BUFFER_USAGE: Metric = Metric {
    name: "batchwatch.write.buffer.usage",
    instrument: Gauge,
    unit: "By",
    subject: Descriptor,
    attributes: &[],
    description: "Bytes the kernel holds against the limits of the socket send buffers and pipes these descriptors \
                  write into, at the last look (batching metric 3, buffer depth): for sockets the memory charged \
                  (payload plus overhead), for pipes the bytes unread.",
};
pub const WRITE_BUFFER_LIMIT: Metric = Metric {
    name: "batchwatch.write.buffer.limit",
    instrument: Gauge,
    unit: "By",
    subject: Descriptor,
    attributes: &[],
    description: "Those buffers' limits: the socket send buffers (`SO_SNDBUF`) and pipe sizes.",
};
pub const WRITE_BUFFER_UTILIZATION: Metric = Metric {
    name: "batchwatch.write.buffer.utilization",
    instrument: Gauge,
    unit: "1",
    subject: Descriptor,
    attributes: &[],
    description: "Fill of the fullest of those buffers, 0 to 1 (can pass 1 by one write): alert above 0.8, \
                  backpressure is building.",
};
pub const TRANSITION_TIME: Metric = Metric {
    name: "batchwatch.process.transition.time",
    instrument: Counter,
    unit: "s",
    subject: Process,
    attributes: &[],
    description: "Estimated CPU time spent crossing into the kernel for write-family calls and `io_uring_enter`: calls \
                  times the crossing cost measured on the node. Its rate is in cores.",
};
pub const TRANSITION_AVOIDABLE: Metric = Metric {
    name: "batchwatch.process.transition.avoidable",
    instrument: Counter,
    unit: "s",
    subject: Process,
    attributes: &[],
    description: "The part of `batchwatch.process.transition.time` that batching `hot_writer.batch_target` records (or \
                  SQEs) per call would save.",
};
pub const UNBATCHED: Metric = Metric {
    name: "batchwatch.process.unbatched",
    instrument: Gauge,
    unit: "{process}",
    subject: Process,
    attributes: &[&UNBATCHED_REASON],
    description: "1 while the process is flagged as an un-batched writer for this reason, else 0. `io_uring` reasons \
                  only for processes that use io_uring.",
};
pub const ROUND_TRIP_BOUND: Metric = Metric {
    name: "batchwatch.process.round_trip_bound",
    instrument: Gauge,
    unit: "{process}",
    subject: Process,
    attributes: &[],
    description: "1 while a descriptor of the process is round-trip bound: written at a hot writer's rate, one small \
                  message per call, but request/response (about one data segment in for each one out), so the peer \
                  could pipeline and the process cannot batch; else 0. Such a descriptor is never counted in \
                  `batchwatch.process.unbatched`.",
};
pub const SYNC_CALLS: Metric = Metric {
    name: "batchwatch.sync.calls",
    instrument: Counter,
    unit: "{call}",
    subject: Process,
    attributes: &[&SYNC_CALL],
    description: "Syncs: calls that make written data durable, and writes to O_SYNC/O_DSYNC descriptors.",
};
pub const SYNC_BATCH_WRITES: Metric = Metric {
    name: "batchwatch.sync.batch.writes",
    instrument: log2(sync::WRITES_SLOTS),
    unit: "{write}",
    subject: Process,
    attributes: &[],
    description: "Write calls each successful sync made durable: the descriptor's writes since its previous sync \
                  (durability batch size; a median of 1 is sync per write).",
};
pub const SYNC_BATCH_SIZE: Metric = Metric {
    name: "batchwatch.sync.batch.size",
    instrument: log2(sync::BYTES_SLOTS),
    unit: "By",
    subject: Process,
    attributes: &[],
    description: "Bytes each successful sync made durable (durability batch size in bytes).",
};
pub const SYNC_DURATION: Metric = Metric {
    name: "batchwatch.sync.duration",
    instrument: log2_seconds(sync::NS_SLOTS),
    unit: "s",
    subject: Process,
    attributes: &[],
    description: "Each sync's duration, entry to exit (durability wait); its sum's rate is the threads' time spent \
                  waiting in sync.",
};
pub const SYNC_DROPS: Metric = Metric {
    name: "batchwatch.sync.drops",
    instrument: Counter,
    unit: "{call}",
    subject: Process,
    attributes: &[&SYNC_DROP_REASON],
    description: "Failed syncs (durability drops, the worst kind: the caller may believe data durable that is not): \
                  should stay 0; page on `eio`.",
};
pub const URING_ENTERS: Metric = Metric {
    name: "batchwatch.io_uring.enters",
    instrument: Counter,
    unit: "{call}",
    subject: Process,
    attributes: &[],
    description: "`io_uring_enter` calls.",
};
pub const URING_SQES: Metric = Metric {
    name: "batchwatch.io_uring.sqes",
    instrument: Counter,
    unit: "{sqe}",
    subject: Process,
    attributes: &[&IO_URING_OP],
    description: "Submission queue entries submitted, by the process or its SQPOLL thread.",
};
pub const URING_BATCH_SIZE: Metric = Metric {
    name: "batchwatch.io_uring.batch.size",
    instrument: log2(SUBMIT_SLOTS),
    unit: "{sqe}",
    subject: Process,
    attributes: &[],
    description: "SQEs submitted per submitting `io_uring_enter`, on rings without SQPOLL (batching metric 1 for io_uring).",
};
pub const URING_WAKEUPS: Metric = Metric {
    name: "batchwatch.io_uring.sqpoll.wakeups",
    instrument: Counter,
    unit: "{wakeup}",
    subject: Process,
    attributes: &[],
    description: "`io_uring_enter` calls that woke a sleeping SQPOLL poller: each is a syscall SQPOLL was meant to avoid.",
};
pub const URING_DROPS: Metric = Metric {
    name: "batchwatch.io_uring.drops",
    instrument: Counter,
    unit: "{event}",
    subject: Process,
    attributes: &[&WRITE_DROP_REASON],
    description: "Completions lost to a full CQ, failed requests, failed completions and short writes (batching metric 4 \
                  for io_uring).",
};
pub const URING_SETUPS_DENIED: Metric = Metric {
    name: "batchwatch.io_uring.setups.denied",
    instrument: Counter,
    unit: "{call}",
    subject: Process,
    attributes: &[],
    description: "`io_uring_setup` calls refused with EPERM or ENOSYS (seccomp, `kernel.io_uring_disabled`): the process \
                  fell back to something else, or failed.",
};
pub const URING_QUEUE_USAGE: Metric = Metric {
    name: "batchwatch.io_uring.queue.usage",
    instrument: Gauge,
    unit: "{entry}",
    subject: Process,
    attributes: &[&IO_URING_QUEUE],
    description: "Entries waiting in the process's rings at the last look, summed over its rings with a known \
                  descriptor (batching metric 3, buffer depth).",
};
pub const URING_QUEUE_LIMIT: Metric = Metric {
    name: "batchwatch.io_uring.queue.limit",
    instrument: Gauge,
    unit: "{entry}",
    subject: Process,
    attributes: &[&IO_URING_QUEUE],
    description: "Entries those rings hold: `usage / limit` is the fill ratio.",
};
pub const AGENT_DEGRADED: Metric = Metric {
    name: "batchwatch.agent.degraded",
    instrument: Gauge,
    unit: "{state}",
    subject: Node,
    attributes: &[],
    description: "1 when BPF is refused and the agent polls `/proc/PID/io` instead (the degraded mode): then only \
                  `batchwatch.write.calls`, `batchwatch.write.io`, `batchwatch.process.transition.time` and the \
                  `hot_writer` flag (from averages) are known, per process, on descriptor kind `unknown`.",
};
pub const NODE_TRANSITION_COST: Metric = Metric {
    name: "batchwatch.node.transition.cost",
    instrument: Gauge,
    unit: "s",
    subject: Node,
    attributes: &[],
    description: "Cost of one kernel crossing on this node, measured at start (or `transition_cost_ns`) and again \
                  while the node is idle, the lowest estimate kept.",
};
pub const NODE_TRANSITION_MEASURED: Metric = Metric {
    name: "batchwatch.node.transition.measured",
    instrument: Gauge,
    unit: "s",
    subject: Node,
    attributes: &[],
    description: "When the transition cost was last measured, in seconds since the Unix epoch; absent when it is \
                  configured (`transition_cost_ns`).",
};
pub const FD_MAP_USAGE: Metric = Metric {
    name: "batchwatch.agent.fd_map.usage",
    instrument: Gauge,
    unit: "{entry}",
    subject: Node,
    attributes: &[],
    description: "(process, fd) pairs the kernel side tracks now.",
};
pub const FD_MAP_LIMIT: Metric = Metric {
    name: "batchwatch.agent.fd_map.limit",
    instrument: Gauge,
    unit: "{entry}",
    subject: Node,
    attributes: &[],
    description: "Pairs it can track (`maps.max_fds`); beyond, new pairs are counted in `batchwatch.agent.probe.errors`.",
};
pub const FD_MAP_EVICTIONS: Metric = Metric {
    name: "batchwatch.agent.fd_map.evictions",
    instrument: Counter,
    unit: "{entry}",
    subject: Node,
    attributes: &[],
    description: "Pairs removed from the kernel side after `maps.evict_idle_after` without a write, to make room; \
                  their totals stay.",
};
pub const PROBE_ERRORS: Metric = Metric {
    name: "batchwatch.agent.probe.errors",
    instrument: Counter,
    unit: "{event}",
    subject: Node,
    attributes: &[&PROBE_ERROR],
    description: "What the kernel side could not record.",
};
pub const KUBERNETES_ERRORS: Metric = Metric {
    name: "batchwatch.agent.kubernetes.errors",
    instrument: Counter,
    unit: "{request}",
    subject: Node,
    attributes: &[&KUBERNETES_REQUEST],
    description: "Requests to the Kubernetes API server that failed (in Kubernetes only; the log says why).",
};
pub const EXPORT_SERIES: Metric = Metric {
    name: "batchwatch.export.series",
    instrument: Gauge,
    unit: "{series}",
    subject: Node,
    attributes: &[],
    description: "Series (data points) in the last collection, these included; at most `export.max_series`.",
};
pub const EXPORT_FOLDED: Metric = Metric {
    name: "batchwatch.export.folded",
    instrument: Gauge,
    unit: "{process}",
    subject: Node,
    attributes: &[],
    description: "Processes summed into the `other` series in the last collection, below the activity floor or over the cap.",
};
pub const EXPORT_BATCH_SIZE: Metric = Metric {
    name: "batchwatch.export.batch.size",
    instrument: log2(EXPORT_BATCH_SLOTS),
    unit: "{point}",
    subject: Node,
    attributes: &[],
    description: "Data points per OTLP request delivered (the agent's own batch size).",
};
pub const EXPORT_BATCH_WAIT: Metric = Metric {
    name: "batchwatch.export.batch.wait",
    instrument: log2_seconds(GAP_SLOTS),
    unit: "s",
    subject: Node,
    attributes: &[],
    description: "Time from a collection to the delivery of its request (the agent's own batch wait time).",
};
pub const EXPORT_QUEUE_USAGE: Metric = Metric {
    name: "batchwatch.export.queue.usage",
    instrument: Gauge,
    unit: "{batch}",
    subject: Node,
    attributes: &[],
    description: "Collections waiting to be sent over OTLP (the agent's own buffer depth).",
};
pub const EXPORT_QUEUE_LIMIT: Metric = Metric {
    name: "batchwatch.export.queue.limit",
    instrument: Gauge,
    unit: "{batch}",
    subject: Node,
    attributes: &[],
    description: "Collections the queue holds (`export.queue_capacity`).",
};
pub const EXPORT_DROPS: Metric = Metric {
    name: "batchwatch.export.drops",
    instrument: Counter,
    unit: "{point}",
    subject: Node,
    attributes: &[&WRITE_DROP_REASON],
    description: "Data points not delivered over OTLP (the agent's own drops): the oldest collection when the queue is \
                  full, or what the receiver refused.",
};
pub const ENDPOINT_CONNECTION_USAGE: Metric = Metric {
    name: "batchwatch.export.prometheus.connection.usage",
    instrument: Gauge,
    unit: "{connection}",
    subject: Node,
    attributes: &[],
    description: "Connections the Prometheus endpoint holds now (only when it is on).",
};
pub const ENDPOINT_CONNECTION_LIMIT: Metric = Metric {
    name: "batchwatch.export.prometheus.connection.limit",
    instrument: Gauge,
    unit: "{connection}",
    subject: Node,
    attributes: &[],
    description: "Connections it holds at most (`export.prometheus_max_connections`).",
};
pub const ENDPOINT_ERRORS: Metric = Metric {
    name: "batchwatch.export.prometheus.errors",
    instrument: Counter,
    unit: "{connection}",
    subject: Node,
    attributes: &[&ENDPOINT_ERROR],
    description: "Connections the Prometheus endpoint refused or cut, and accept(2) calls that failed.",
};

/// Every metric, in the order the exporters emit them.
pub const ALL: [&Metric; 46] = [
    &WRITE_CALLS,
    &WRITE_IO,
    &WRITE_RECORDS,
    &WRITE_FAILED_REQUESTED,
    &WRITE_DROPS,
    &WRITE_BATCH_SIZE,
    &WRITE_BATCH_RECORDS,
    &WRITE_BATCH_WAIT,
    &WRITE_BUFFER_USAGE,
    &WRITE_BUFFER_LIMIT,
    &WRITE_BUFFER_UTILIZATION,
    &TRANSITION_TIME,
    &TRANSITION_AVOIDABLE,
    &UNBATCHED,
    &ROUND_TRIP_BOUND,
    &SYNC_CALLS,
    &SYNC_BATCH_WRITES,
    &SYNC_BATCH_SIZE,
    &SYNC_DURATION,
    &SYNC_DROPS,
    &URING_ENTERS,
    &URING_SQES,
    &URING_BATCH_SIZE,
    &URING_WAKEUPS,
    &URING_DROPS,
    &URING_SETUPS_DENIED,
    &URING_QUEUE_USAGE,
    &URING_QUEUE_LIMIT,
    &NODE_TRANSITION_COST,
    &NODE_TRANSITION_MEASURED,
    &AGENT_DEGRADED,
    &FD_MAP_USAGE,
    &FD_MAP_LIMIT,
    &FD_MAP_EVICTIONS,
    &PROBE_ERRORS,
    &KUBERNETES_ERRORS,
    &EXPORT_SERIES,
    &EXPORT_FOLDED,
    &EXPORT_BATCH_SIZE,
    &EXPORT_BATCH_WAIT,
    &EXPORT_QUEUE_USAGE,
    &EXPORT_QUEUE_LIMIT,
    &EXPORT_DROPS,
    &ENDPOINT_CONNECTION_USAGE,
    &ENDPOINT_CONNECTION_LIMIT,
    &ENDPOINT_ERRORS,
];

/// The metric named `name`.
pub fn find(name: &str) -> Option<&'static Metric> {
    ALL.into_iter().find(|m| m.name == name)
}

impl Metric {
    /// The name the OpenTelemetry Collector gives this metric when it
    /// translates OTLP to Prometheus: `.` becomes `_`, the unit is spelt out
    /// as a suffix (`By` → `_bytes`, `s` → `_seconds`; `{...}` units add
    /// nothing), and counters end in `_total`.
    pub fn prometheus_name(&self) -> String {
        let base = self.prometheus_family();
        if self.instrument == Counter { format!("{base}_total") } else { base }
    }

    /// The Prometheus name without `_total`: what a metric family is called
    /// before the text format adds its suffixes.
    pub fn prometheus_family(&self) -> String {
        let name = prometheus_label(self.name);
        match unit_word(self.unit, self.instrument) {
            Some(word) if !name.split('_').any(|token| token == word) => format!("{name}_{word}"),
            _ => name,
        }
    }

    /// Bucket bounds of a histogram: upper bounds, inclusive, of every
    /// slot but the last, which is the open-ended (+Inf) bucket.
    pub fn bucket_bounds(&self) -> Vec<f64> {
        let Instrument::Histogram { slots, scale } = self.instrument else { return Vec::new() };
        (0..slots - 1)
            .map(|k| {
                let bound = slot_upper_bound(k) as f64;
                match scale {
                    Scale::Unit => bound,
                    Scale::NanosAsSeconds => bound * 1e-9,
                }
            })
            .collect()
    }
}

/// The word a unit adds to a Prometheus name; `None` for annotations such
/// as `{call}`, which name no unit. A dimensionless gauge is a ratio.
fn unit_word(unit: &str, instrument: Instrument) -> Option<&'static str> {
    match unit {
        "By" => Some("bytes"),
        "s" => Some("seconds"),
        "1" if instrument == Gauge => Some("ratio"),
        _ => None,
    }
}

/// An OpenTelemetry attribute key as a Prometheus label: `process.pid` →
/// `process_pid` (every character outside `[A-Za-z0-9_]` becomes `_`).
pub fn prometheus_label(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// The tables of `docs/metrics.md`: the process attributes, then every
/// metric, then every attribute a metric adds.
pub fn markdown() -> String {
    let mut out = String::from("### Process attributes\n\n| Attribute | Prometheus label | Meaning |\n|---|---|---|\n");
    for attribute in PROCESS_ATTRIBUTES {
        attribute_row(&mut out, attribute);
    }
    out.push_str(
        "\n### Metrics\n\n| Name | Instrument | Unit | Attributes | Meaning | Prometheus name |\n|---|---|---|---|---|---|\n",
    );
    for metric in ALL {
        let subject = match metric.subject {
            Descriptor => vec!["process", "`batchwatch.fd.kind`"],
            Process => vec!["process"],
            Node => vec![],
        };
        let own = metric.attributes.iter().map(|a| format!("`{}`", a.key));
        let attributes: Vec<String> = subject.into_iter().map(str::to_owned).chain(own).collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}` | {} | {} | `{}` |",
            metric.name,
            metric.instrument.name(),
            metric.unit,
            if attributes.is_empty() { "none".to_owned() } else { attributes.join(", ") },
            metric.description,
            metric.prometheus_name(),
        );
    }
    out.push_str("\n### Metric attributes\n\n| Attribute | Prometheus label | Meaning |\n|---|---|---|\n");
    for attribute in METRIC_ATTRIBUTES {
        attribute_row(&mut out, attribute);
    }
    out
}

fn attribute_row(out: &mut String, attribute: &Attribute) {
    let _ =
        writeln!(out, "| `{}` | `{}` | {} |", attribute.key, prometheus_label(attribute.key), attribute.description);
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const BEGIN: &str = "<!-- catalog:begin (generated from agent/src/export/catalog.rs) -->\n";
    const END: &str = "<!-- catalog:end -->";

    /// docs/metrics.md lists exactly the catalog. After changing the
    /// catalog, `BATCHWATCH_BLESS=1 cargo test -p batchwatch catalog` rewrites it.
    #[test]
    fn docs_list_exactly_the_catalog() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
        let doc = std::fs::read_to_string(path).expect("docs/metrics.md");
        let start = doc.find(BEGIN).expect("the begin marker") + BEGIN.len();
        let end = doc.find(END).expect("the end marker");
        let generated = markdown();
        if std::env::var_os("BATCHWATCH_BLESS").is_some() {
            std::fs::write(path, format!("{}{generated}{}", &doc[..start], &doc[end..])).unwrap();
        } else {
            assert!(doc[start..end] == generated, "docs/metrics.md is out of date; rerun with BATCHWATCH_BLESS=1");
        }
    }

    #[test]
    fn prometheus_names_follow_the_collector_translation() {
        assert_eq!(WRITE_CALLS.prometheus_name(), "batchwatch_write_calls_total");
        assert_eq!(WRITE_IO.prometheus_name(), "batchwatch_write_io_bytes_total");
        assert_eq!(WRITE_BATCH_SIZE.prometheus_name(), "batchwatch_write_batch_size_bytes");
        assert_eq!(WRITE_BATCH_WAIT.prometheus_name(), "batchwatch_write_batch_wait_seconds");
        assert_eq!(TRANSITION_TIME.prometheus_name(), "batchwatch_process_transition_time_seconds_total");
        assert_eq!(NODE_TRANSITION_COST.prometheus_name(), "batchwatch_node_transition_cost_seconds");
        assert_eq!(URING_QUEUE_USAGE.prometheus_name(), "batchwatch_io_uring_queue_usage");
        assert_eq!(WRITE_BUFFER_UTILIZATION.prometheus_name(), "batchwatch_write_buffer_utilization_ratio");
        assert_eq!(prometheus_label("k8s.pod.uid"), "k8s_pod_uid");
    }

    #[test]
    fn names_are_unique_and_units_known() {
        let names: HashSet<_> = ALL.iter().map(|m| m.name).collect();
        assert_eq!(names.len(), ALL.len());
        let prometheus: HashSet<_> = ALL.iter().map(|m| m.prometheus_name()).collect();
        assert_eq!(prometheus.len(), ALL.len());
        for metric in ALL {
            let annotation = metric.unit.starts_with('{') && metric.unit.ends_with('}');
            let known = unit_word(metric.unit, metric.instrument).is_some();
            assert!(annotation || known, "{}: unit {}", metric.name, metric.unit);
        }
    }

    #[test]
    fn every_attribute_of_a_metric_is_documented() {
        for metric in ALL {
            for attribute in metric.attributes {
                assert!(METRIC_ATTRIBUTES.contains(attribute), "{}: {}", metric.name, attribute.key);
            }
        }
    }

    #[test]
    fn histogram_bounds_are_the_log2_slots() {
        let bounds = WRITE_BATCH_RECORDS.bucket_bounds();
        assert_eq!(bounds.len(), RECORDS_SLOTS - 1);
        assert_eq!(&bounds[..5], &[0.0, 1.0, 2.0, 4.0, 8.0]);
        let seconds = WRITE_BATCH_WAIT.bucket_bounds();
        assert_eq!(seconds[1], 1e-9);
        assert_eq!(seconds[11], 1024e-9);
        assert!(WRITE_CALLS.bucket_bounds().is_empty());
    }
}
