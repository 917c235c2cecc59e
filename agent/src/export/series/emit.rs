//! The points of one subject (a process, `other`, or the node), metric by
//! metric as the catalog defines them.

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use agent_common::{
    io_uring::OpClass,
    sync::{SyncCall, SyncOutcome, SyncStats},
    write::{Outcome, WriteStats, WriteSyscall},
};

use super::{
    Point, Value,
    activity::{Activity, FdGroup, Gauges, UringActivity},
};
use crate::export::{
    attributes::{Attr, attr},
    catalog::{self, Metric},
    endpoint::EndpointHealth,
    queue::ExportHealth,
};

/// Appends the points of one subject.
pub(super) struct Emit<'a> {
    pub(super) out: &'a mut Vec<(&'static Metric, Point)>,
    pub(super) subject: Arc<[Attr]>,
    /// Start of its cumulative series.
    pub(super) start: SystemTime,
    /// Per group of descriptors, when its write series started, if not at `start`.
    pub(super) write_starts: Option<&'a BTreeMap<FdGroup, (SystemTime, SystemTime)>>,
    /// Only calls and bytes are known (the degraded mode): the rest is
    /// left out rather than sent as zeros.
    pub(super) averages_only: bool,
    /// The metrics it emits, by name, when not all: the others belong to
    /// another attribute selection's part.
    pub(super) only: Option<&'a [&'static str]>,
}

impl Emit<'_> {
    fn point(&mut self, metric: &'static Metric, own: Vec<Attr>, start: Option<SystemTime>, value: Value) {
        if self.only.is_some_and(|names| !names.contains(&metric.name)) {
            return;
        }
        self.out.push((metric, Point { subject: self.subject.clone(), own, start, value }));
    }

    pub(super) fn counter(&mut self, metric: &'static Metric, own: Vec<Attr>, value: Value) {
        self.point(metric, own, Some(self.start), value);
    }

    pub(super) fn gauge(&mut self, metric: &'static Metric, own: Vec<Attr>, value: Value) {
        self.point(metric, own, None, value);
    }

    /// Every slot, empty or not: points of one metric must share their
    /// bounds, or `sum by (le)` across series mixes layouts and delta
    /// converters take a series whose top bucket grew for a reset.
    fn histogram(&mut self, metric: &'static Metric, own: Vec<Attr>, slots: &[u64], sum: f64) {
        debug_assert_eq!(metric.bucket_bounds().len() + 1, slots.len(), "{}: one count per slot", metric.name);
        self.counter(metric, own, Value::Histogram { counts: slots.to_vec(), sum });
    }

    /// Every cumulative point of `activity`.
    pub(super) fn activity(&mut self, activity: &Activity) {
        for (group, stats) in &activity.writes {
            let start = self.write_starts.and_then(|starts| starts.get(group)).map_or(self.start, |(start, _)| *start);
            let series_start = std::mem::replace(&mut self.start, start);
            if self.averages_only {
                self.write_totals(&group.attributes(), stats);
            } else {
                self.writes(&group.attributes(), stats);
            }
            self.start = series_start;
        }
        self.counter(&catalog::TRANSITION_TIME, vec![], Value::Float(activity.transition_s));
        if !self.averages_only {
            // It needs the records per call.
            self.counter(&catalog::TRANSITION_AVOIDABLE, vec![], Value::Float(activity.avoidable_s));
        }
        if let Some(uring) = &activity.uring {
            self.uring(uring);
        }
        if let Some(syncs) = &activity.syncs {
            self.syncs(syncs);
        }
    }

    fn syncs(&mut self, s: &SyncStats) {
        for call in SyncCall::ALL.into_iter().filter(|&c| s.calls[c as usize] > 0) {
            let own = vec![attr(&catalog::SYNC_CALL, call.name())];
            self.counter(&catalog::SYNC_CALLS, own, Value::Int(s.calls[call as usize]));
        }
        self.histogram(&catalog::SYNC_BATCH_WRITES, vec![], &s.writes_hist, s.writes as f64);
        self.histogram(&catalog::SYNC_BATCH_SIZE, vec![], &s.bytes_hist, s.bytes as f64);
        self.histogram(&catalog::SYNC_DURATION, vec![], &s.latency_hist, s.latency_ns_total as f64 * 1e-9);
        for outcome in SyncOutcome::ALL.into_iter().filter(|&o| o != SyncOutcome::Ok) {
            let own = vec![attr(&catalog::SYNC_DROP_REASON, outcome.name())];
            self.counter(&catalog::SYNC_DROPS, own, Value::Int(s.outcomes[outcome as usize]));
        }
    }

    fn writes(&mut self, group: &[Attr], w: &WriteStats) {
        let with = |attribute: &'static catalog::Attribute, value: &str| {
            let mut own = group.to_vec();
            own.push(attr(attribute, value));
            own
        };
        for syscall in WriteSyscall::ALL.into_iter().filter(|&s| w.calls[s as usize] > 0) {
            self.counter(
                &catalog::WRITE_CALLS,
                with(&catalog::SYSCALL, syscall.name()),
                Value::Int(w.calls[syscall as usize]),
            );
        }
        self.counter(&catalog::WRITE_IO, group.to_vec(), Value::Int(w.bytes_written));
        self.counter(&catalog::WRITE_RECORDS, group.to_vec(), Value::Int(w.records));
        self.counter(&catalog::WRITE_FAILED_REQUESTED, group.to_vec(), Value::Int(w.failed_bytes_requested));
        for outcome in Outcome::ALL.into_iter().filter(|&o| o != Outcome::Complete) {
            let count = Value::Int(w.outcomes[outcome as usize]);
            self.counter(&catalog::WRITE_DROPS, with(&catalog::WRITE_DROP_REASON, outcome.name()), count);
        }
        self.histogram(&catalog::WRITE_BATCH_SIZE, group.to_vec(), &w.bytes_hist, w.bytes_requested as f64);
        self.histogram(&catalog::WRITE_BATCH_RECORDS, group.to_vec(), &w.records_hist, w.records as f64);
        self.histogram(&catalog::WRITE_BATCH_WAIT, group.to_vec(), &w.gap_hist, w.gap_ns_total as f64 * 1e-9);
    }

    /// What the degraded mode knows: all write calls together, and bytes.
    fn write_totals(&mut self, group: &[Attr], w: &WriteStats) {
        let mut own = group.to_vec();
        own.push(attr(&catalog::SYSCALL, "any"));
        self.counter(&catalog::WRITE_CALLS, own, Value::Int(w.total_calls()));
        self.counter(&catalog::WRITE_IO, group.to_vec(), Value::Int(w.bytes_written));
    }

    fn uring(&mut self, u: &UringActivity) {
        self.counter(&catalog::URING_ENTERS, vec![], Value::Int(u.enters.enters));
        for class in [OpClass::Write, OpClass::Read, OpClass::Other] {
            let count = Value::Int(u.ops.sqes_by_class[class as usize]);
            self.counter(&catalog::URING_SQES, vec![attr(&catalog::IO_URING_OP, class.name())], count);
        }
        self.histogram(&catalog::URING_BATCH_SIZE, vec![], &u.enters.submitted_hist, u.enters.submitted as f64);
        self.counter(&catalog::URING_WAKEUPS, vec![], Value::Int(u.enters.sq_wakeups));
        for (reason, count) in [
            ("cq_overflow", u.ops.cq_overflows),
            ("failed", u.ops.failed),
            ("cqe_eagain", u.ops.cqe_eagain),
            ("cqe_error", u.ops.cqe_errors),
            ("short_write", u.ops.short_writes),
        ] {
            self.counter(&catalog::URING_DROPS, vec![attr(&catalog::WRITE_DROP_REASON, reason)], Value::Int(count));
        }
        self.counter(&catalog::URING_SETUPS_DENIED, vec![], Value::Int(u.denied_setups));
    }

    /// The buffer fills, and the un-batched flags of a process (`flags`
    /// says whether it uses io_uring; `other` has no flags).
    pub(super) fn gauges(&mut self, gauges: &Gauges, flags: Option<bool>) {
        for (group, buffers) in &gauges.buffers {
            let own = group.attributes();
            self.gauge(&catalog::WRITE_BUFFER_USAGE, own.clone(), Value::Int(buffers.charged));
            self.gauge(&catalog::WRITE_BUFFER_LIMIT, own.clone(), Value::Int(buffers.capacity));
            self.gauge(&catalog::WRITE_BUFFER_UTILIZATION, own, Value::Float(buffers.fullest));
        }
        if let Some(uses_uring) = flags {
            self.flags(gauges, uses_uring);
        }
        self.queues(gauges);
    }

    /// The un-batched flags: `hot_writer` always, the io_uring ones for
    /// processes that use io_uring; and the round-trip verdict beside them.
    fn flags(&mut self, gauges: &Gauges, uses_uring: bool) {
        let mut reasons = vec![("hot_writer", gauges.hot_writer)];
        if uses_uring {
            reasons
                .extend([("io_uring_unbatched", gauges.io_uring_unbatched), ("sqpoll_trickle", gauges.sqpoll_trickle)]);
        }
        if let Some(flagged) = gauges.sync_per_write {
            reasons.push(("sync_per_write", flagged));
        }
        for (reason, flagged) in reasons {
            let own = vec![attr(&catalog::UNBATCHED_REASON, reason)];
            self.gauge(&catalog::UNBATCHED, own, Value::Int(u64::from(flagged)));
        }
        self.gauge(&catalog::ROUND_TRIP_BOUND, vec![], Value::Int(u64::from(gauges.round_trip_bound)));
    }

    fn queues(&mut self, gauges: &Gauges) {
        let Some(queues) = gauges.queues else { return };
        for (queue, (pending, entries)) in ["sq", "cq"].into_iter().zip(queues) {
            self.gauge(&catalog::URING_QUEUE_USAGE, vec![attr(&catalog::IO_URING_QUEUE, queue)], Value::Int(pending));
            self.gauge(&catalog::URING_QUEUE_LIMIT, vec![attr(&catalog::IO_URING_QUEUE, queue)], Value::Int(entries));
        }
    }

    /// The export path's own batching metrics.
    pub(super) fn health(&mut self, h: &ExportHealth) {
        self.histogram(&catalog::EXPORT_BATCH_SIZE, vec![], &h.batch_size, h.batch_points as f64);
        self.histogram(&catalog::EXPORT_BATCH_WAIT, vec![], &h.batch_wait, h.batch_wait_ns as f64 * 1e-9);
        self.gauge(&catalog::EXPORT_QUEUE_USAGE, vec![], Value::Int(h.queued as u64));
        self.gauge(&catalog::EXPORT_QUEUE_LIMIT, vec![], Value::Int(h.capacity as u64));
        for (reason, count) in [("queue_full", h.dropped_queue_full), ("rejected", h.rejected)] {
            self.counter(&catalog::EXPORT_DROPS, vec![attr(&catalog::WRITE_DROP_REASON, reason)], Value::Int(count));
        }
    }

    /// The Prometheus endpoint's connections and what it refused.
    pub(super) fn endpoint(&mut self, e: &EndpointHealth) {
        self.gauge(&catalog::ENDPOINT_CONNECTION_USAGE, vec![], Value::Int(e.open));
        self.gauge(&catalog::ENDPOINT_CONNECTION_LIMIT, vec![], Value::Int(e.limit));
        for (reason, count) in [
            ("connection_limit", e.connection_limit),
            ("client_limit", e.client_limit),
            ("header_timeout", e.header_timeout),
            ("response_stalled", e.response_stalled),
            ("tls_handshake", e.tls_handshake),
            ("accept_failed", e.accept_failed),
        ] {
            self.counter(&catalog::ENDPOINT_ERRORS, vec![attr(&catalog::ENDPOINT_ERROR, reason)], Value::Int(count));
        }
    }
}
