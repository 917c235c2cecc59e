//! The series set: at every collection, the model becomes the data points
//! both exporters send, each metric as [`catalog`](super::catalog) defines it.
//!
//! # Cumulative, from differences
//! Counters and histograms are cumulative, with a start time, so a lost
//! export loses resolution and never counts (the next one holds them), and
//! p50/p99 can be computed downstream from the buckets. They are built from
//! what changed since the last collection: each process's totals in the
//! model are differenced (a descriptor that now names another file starts
//! afresh, as in the model), and the differences are added to the series
//! they belong to. A series therefore only ever grows, even when a process
//! moves between its own series and `other`.
//!
//! # Cardinality
//! A process gets series of its own once it does at least
//! `export.min_ops_per_sec` write calls plus io_uring SQEs per second over a
//! collection (a tick when `/metrics` is served), or is flagged un-batched; it keeps them until it exits. The
//! rest is summed into one `other` series per node. Series go per kind of
//! descriptor, or per descriptor with `export.per_fd`. At most
//! `export.max_series` points are exported: when they would be more, the
//! flagged processes and then the busiest keep their series, and the others
//! are folded into `other` (their own series restart if they come back).
//!
//! # Groups of metrics
//! A group of metrics with an attribute selection of its own
//! (`export.attributes_select`) groups processes by its own subjects: it
//! has a part of its own, which differences the processes, keeps series
//! and folds into an `other` of its own for its metrics alone, so that
//! each of its series stays cumulative whatever the other groups keep.
//! The parts share `export.max_series`, in order: the default selection's
//! part (with the node's points) first.

mod activity;
mod emit;
pub mod level;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use self::{
    activity::{Activity, FdGroup, Gauges, Seen},
    emit::Emit,
    level::Selection,
};
use super::{
    attributes::{Attr, attr},
    catalog::{self, Metric},
    endpoint::EndpointHealth,
    identity::{self, PodLookup},
    queue::ExportHealth,
};
use crate::{
    agent::Agent,
    bpf::collector::ProbeErrors,
    config::{Aggregation, ExportConfig},
    model::Model,
};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
    /// Counts per log2 slot, as the metric's buckets, and their exact sum:
    /// one count for every slot of the metric, empty or not, so that every
    /// point of a metric has the same bounds. Bucket `k` has the metric's
    /// bound `k`, the last (open-ended, +Inf) one none.
    Histogram {
        counts: Vec<u64>,
        sum: f64,
    },
}

/// One data point: one series' value at the collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Whose series: the process attributes, or `batchwatch.folded`; empty
    /// for the node. Shared by all points of a process.
    pub subject: Arc<[Attr]>,
    /// The point's own attributes.
    pub own: Vec<Attr>,
    /// Start of a cumulative series; `None` for gauges.
    pub start: Option<SystemTime>,
    pub value: Value,
}

impl Point {
    pub fn attributes(&self) -> impl Iterator<Item = &Attr> {
        self.subject.iter().chain(&self.own)
    }
}

/// Every point of one collection, by metric in catalog order.
#[derive(Debug)]
pub struct Collection {
    pub time: SystemTime,
    pub families: Vec<(&'static Metric, Vec<Point>)>,
}

impl Collection {
    pub fn points(&self) -> usize {
        self.families.iter().map(|(_, points)| points.len()).sum()
    }
}

/// What a collection reads.
pub struct Observation<'a> {
    pub model: &'a Model,
    pub transition_cost_ns: f64,
    /// When it was last measured; `None` when configured.
    pub transition_measured_at: Option<SystemTime>,
    pub probe_errors: ProbeErrors,
    pub tracked_fds: usize,
    pub evicted_fds: usize,
    pub max_fds: u32,
    /// The Prometheus endpoint's connections, when it is on.
    pub endpoint: Option<EndpointHealth>,
    /// The last collection, at exit: nothing is held back for the next.
    pub last: bool,
}

impl<'a> Observation<'a> {
    pub fn of(agent: &'a Agent, max_fds: u32) -> Observation<'a> {
        Observation {
            model: agent.model(),
            transition_cost_ns: agent.node().transition_cost_ns,
            transition_measured_at: agent.node().transition_measured_at,
            probe_errors: agent.probe_errors(),
            tracked_fds: agent.tracked_fds(),
            evicted_fds: agent.evicted_fds(),
            max_fds,
            endpoint: None,
            last: false,
        }
    }
}

/// The cardinality settings.
#[derive(Debug, Clone)]
pub struct Limits {
    pub min_ops_per_sec: f64,
    pub max_series: usize,
    pub per_fd: bool,
    pub aggregation: Aggregation,
    /// How long a group of descriptors may write nothing before its series go.
    pub idle_after: Duration,
    /// The selection of every metric no group of `groups` takes.
    pub attributes: Selection,
    /// Metric-name patterns with selections of their own.
    pub groups: Vec<(String, Selection)>,
}

impl Limits {
    pub fn of(config: &ExportConfig) -> Limits {
        Limits {
            min_ops_per_sec: config.min_ops_per_sec,
            max_series: config.max_series as usize,
            per_fd: config.per_fd,
            aggregation: config.aggregation,
            idle_after: config.series_idle_after,
            attributes: Selection::of(&config.attributes_include, &config.attributes_exclude),
            groups: (config.attributes_select.iter())
                .map(|group| (group.metrics.clone(), Selection::of(&group.include, &group.exclude)))
                .collect(),
        }
    }
}

/// Whose series: the attributes a group of processes shares at the
/// aggregation level (a process's own, with its pid, at `process`).
type Subject = Arc<[Attr]>;

/// The series of every metric, from one collection to the next: a part
/// per attribute selection in use.
pub struct SeriesSet {
    max_series: usize,
    parts: Vec<Part>,
}

impl SeriesSet {
    pub fn new(limits: Limits, started: SystemTime) -> SeriesSet {
        // Without groups, the one part serves every metric.
        let whole = limits.groups.is_empty();
        let parts = level::by_metric(&limits.attributes, &limits.groups)
            .into_iter()
            .enumerate()
            .map(|(i, (attributes, metrics))| {
                let limits = Limits { attributes, groups: Vec::new(), ..limits.clone() };
                Part::new(limits, (!whole).then_some(metrics), i == 0, started)
            })
            .collect();
        SeriesSet { max_series: limits.max_series, parts }
    }

    /// Builds the points of everything since the last collection, at `now`.
    /// `health` is the OTLP queue's, when it exports over OTLP.
    pub fn collect(
        &mut self,
        observation: &Observation,
        health: Option<&ExportHealth>,
        pods: Option<&dyn PodLookup>,
        now: SystemTime,
    ) -> Collection {
        let mut points = Vec::new();
        let mut folded = 0;
        for part in &mut self.parts {
            let cap = self.max_series.saturating_sub(points.len());
            let (part_points, part_folded) = part.collect(observation, health, pods, now, cap);
            points.extend(part_points);
            // A process folded by one part may keep its series in another.
            folded = folded.max(part_folded);
        }
        set_gauge(&mut points, &catalog::EXPORT_FOLDED, folded as u64);
        let total = points.len();
        set_gauge(&mut points, &catalog::EXPORT_SERIES, total as u64);
        Collection { time: now, families: by_metric(points) }
    }
}

/// The series of the metrics of one attribute selection: of the groups of
/// processes and of `other`.
struct Part {
    limits: Limits,
    /// The metrics it emits, by name; `None` for all.
    metrics: Option<Vec<&'static str>>,
    /// It emits the node's and the agent's own points.
    node: bool,
    /// The model knows only calls and bytes (the degraded mode).
    averages_only: bool,
    started: SystemTime,
    last: SystemTime,
    processes: HashMap<ProcessKey, Tracked>,
    /// The series of each group that has them, while one of its processes
    /// is in the model.
    groups: HashMap<Subject, Series>,
    other: Option<Series>,
}

/// A process: its pid, and its start time, which tells it from a later
/// process given the same pid.
type ProcessKey = (u32, u64);

#[derive(Default)]
struct Tracked {
    seen: Seen,
    /// The group whose series it feeds, once it has them.
    group: Option<Subject>,
}

/// A cumulative series: what happened since `start`.
struct Series {
    start: SystemTime,
    total: Activity,
    /// Per group of descriptors written to: when its series started, and
    /// when it last wrote.
    writes: BTreeMap<FdGroup, (SystemTime, SystemTime)>,
}

impl Series {
    fn new(start: SystemTime) -> Series {
        Series { start, total: Activity::default(), writes: BTreeMap::new() }
    }

    /// Adds what happened from `since` to `now`, and forgets the groups of
    /// descriptors that wrote nothing for `idle_after` (closed, or idle):
    /// their series stop, and restart if they write again.
    fn advance(&mut self, delta: &Activity, since: SystemTime, now: SystemTime, idle_after: Duration) {
        self.total.add(delta);
        for group in delta.writes.keys() {
            self.writes.entry(group.clone()).or_insert((since, now)).1 = now;
        }
        let idle = |last: &SystemTime| now.duration_since(*last).unwrap_or_default() >= idle_after;
        let gone: Vec<FdGroup> =
            (self.writes.iter()).filter(|(_, (_, last))| idle(last)).map(|(g, _)| g.clone()).collect();
        for group in gone {
            self.writes.remove(&group);
            self.total.writes.remove(&group);
        }
    }
}

/// A group of processes that may get series this time: what they did
/// since the last collection, together.
struct Candidate {
    subject: Subject,
    processes: Vec<ProcessKey>,
    unbatched: bool,
    rate: f64,
    delta: Activity,
    gauges: Gauges,
}

/// A candidate that got them, with its points.
struct Accepted {
    candidate: Candidate,
    points: Vec<(&'static Metric, Point)>,
}

impl Part {
    fn new(limits: Limits, metrics: Option<Vec<&'static str>>, node: bool, started: SystemTime) -> Part {
        Part {
            limits,
            metrics,
            node,
            averages_only: false,
            started,
            last: started,
            processes: HashMap::new(),
            groups: HashMap::new(),
            other: None,
        }
    }

    /// The points of its metrics since the last collection, at `now`, at
    /// most `cap` of them, and how many processes it folded into `other`.
    fn collect(
        &mut self,
        observation: &Observation,
        health: Option<&ExportHealth>,
        pods: Option<&dyn PodLookup>,
        now: SystemTime,
        cap: usize,
    ) -> (Vec<(&'static Metric, Point)>, usize) {
        self.averages_only = observation.model.rules().degraded;
        let since = std::mem::replace(&mut self.last, now);
        let seconds = now.duration_since(since).unwrap_or_default().as_secs_f64();
        let node = if self.node { self.node_points(observation, health, pods) } else { Vec::new() };
        let mut folded = Folded::default();
        let mut candidates = self.candidates(observation, seconds, pods, &mut folded);
        // Flagged first, then the busiest: they keep their series under the cap.
        candidates.sort_by(|a, b| {
            b.unbatched.cmp(&a.unbatched).then(b.rate.total_cmp(&a.rate)).then(a.processes.cmp(&b.processes))
        });

        self.apply_folded(&mut folded);
        let budget = cap.saturating_sub(node.len() + self.other_points(&folded.gauges).len());
        let mut accepted = self.admit_all(candidates, budget, since, &mut folded);
        let other = self.fit_under_cap(&mut accepted, &mut folded, node.len(), cap);

        let mut points: Vec<(&'static Metric, Point)> = accepted.into_iter().flat_map(|a| a.points).collect();
        points.extend(other);
        points.extend(node);
        (points, folded.processes)
    }

    /// Differences every process in the model, and gathers those that may
    /// have series by group; the others are added to `folded`. Forgets the
    /// processes the model forgot, and the groups left without processes.
    fn candidates(
        &mut self,
        observation: &Observation,
        seconds: f64,
        pods: Option<&dyn PodLookup>,
        folded: &mut Folded,
    ) -> Vec<Candidate> {
        let model = observation.model;
        let transition = model.rules().transition;
        let level = self.limits.aggregation;
        let shared = level != Aggregation::Process || !self.limits.attributes.keeps_all();
        // Buffers of descriptors idle longer than their series are left out with them.
        let active_since = Instant::now().checked_sub(self.limits.idle_after);
        let mut present = HashSet::new();
        let mut groups: HashMap<Subject, Candidate> = HashMap::new();
        for process in model.processes() {
            let key = (process.identity.pid, process.identity.start_ticks);
            present.insert(key);
            let tracked = self.processes.entry(key).or_default();
            let delta = tracked.seen.advance(process, self.limits.per_fd, &transition, !observation.last);
            let rate = if seconds > 0.0 { delta.ops() as f64 / seconds } else { 0.0 };
            let gauges = Gauges::of(process, self.limits.per_fd, active_since);
            let wanted = tracked.group.is_some() || process.unbatched || rate >= self.limits.min_ops_per_sec;
            // Where processes share series (above the process level, or
            // without the pid), a process joins its group's series whatever
            // its own rate: that is what keeps them in place.
            let subject = (wanted || shared)
                .then(|| {
                    let attributes = identity::process_attributes(&process.identity, pods);
                    level::subject(level, &self.limits.attributes, &attributes)
                })
                .filter(|subject| wanted || self.groups.contains_key(subject));
            let Some(subject) = subject else {
                folded.add(delta, gauges, 1);
                continue;
            };
            let group = groups.entry(subject.clone()).or_insert_with(|| Candidate {
                subject,
                processes: Vec::new(),
                unbatched: false,
                rate: 0.0,
                delta: Activity::default(),
                gauges: Gauges::default(),
            });
            group.processes.push(key);
            group.unbatched |= process.unbatched;
            group.rate += rate;
            group.delta.add(&delta);
            group.gauges.add(&gauges);
        }
        self.processes.retain(|key, _| present.contains(key));
        self.groups.retain(|subject, _| groups.contains_key(subject));
        groups.into_values().collect()
    }

    /// Gives candidates, in order, series of their own while their points
    /// fit in `budget`; the others are folded.
    fn admit_all(
        &mut self,
        candidates: Vec<Candidate>,
        mut budget: usize,
        since: SystemTime,
        folded: &mut Folded,
    ) -> Vec<Accepted> {
        let mut accepted = Vec::new();
        for candidate in candidates {
            match self.admit(&candidate, budget, since) {
                Some(points) => {
                    budget -= points.len();
                    accepted.push(Accepted { candidate, points });
                }
                None => self.refuse(candidate, folded),
            }
        }
        accepted
    }

    /// The points of `candidate`'s series, if they fit in `budget`. New
    /// series start `since` the last collection: their first values are
    /// what happened after it.
    fn admit(
        &mut self,
        candidate: &Candidate,
        budget: usize,
        since: SystemTime,
    ) -> Option<Vec<(&'static Metric, Point)>> {
        let mut series = self.groups.remove(&candidate.subject).unwrap_or_else(|| Series::new(since));
        series.advance(&candidate.delta, since, self.last, self.limits.idle_after);
        let mut points = Vec::new();
        let mut emit = Emit {
            out: &mut points,
            subject: candidate.subject.clone(),
            start: series.start,
            write_starts: Some(&series.writes),
            averages_only: self.averages_only,
            only: self.metrics.as_deref(),
        };
        emit.activity(&series.total);
        emit.gauges(&candidate.gauges, Some(series.total.uring.is_some()));
        (points.len() <= budget).then(|| {
            self.groups.insert(candidate.subject.clone(), series);
            for key in &candidate.processes {
                self.processes.get_mut(key).expect("tracked").group = Some(candidate.subject.clone());
            }
            points
        })
    }

    /// Folds a group refused: it loses its series; if its processes come
    /// back, they restart.
    fn refuse(&mut self, candidate: Candidate, folded: &mut Folded) {
        self.groups.remove(&candidate.subject);
        for key in &candidate.processes {
            self.processes.get_mut(key).expect("tracked").group = None;
        }
        folded.add(candidate.delta, candidate.gauges, candidate.processes.len());
    }

    /// Folding the refused may have given `other` more points than were
    /// left for it: refuses the least wanted of the `accepted` until all
    /// fits. Returns the points of `other`.
    fn fit_under_cap(
        &mut self,
        accepted: &mut Vec<Accepted>,
        folded: &mut Folded,
        node: usize,
        cap: usize,
    ) -> Vec<(&'static Metric, Point)> {
        loop {
            self.apply_folded(folded);
            let other = self.other_points(&folded.gauges);
            let used = accepted.iter().map(|a| a.points.len()).sum::<usize>() + other.len() + node;
            let Some(last) = accepted.pop_if(|_| used > cap) else { return other };
            self.refuse(last.candidate, folded);
        }
    }

    /// Adds what `folded` gathered so far to `other`.
    fn apply_folded(&mut self, folded: &mut Folded) {
        if let Some(delta) = folded.pending.take() {
            self.other.get_or_insert_with(|| Series::new(self.started)).total.add(&delta);
        }
    }

    fn other_points(&self, gauges: &Gauges) -> Vec<(&'static Metric, Point)> {
        let mut points = Vec::new();
        if let Some(other) = &self.other {
            let subject: Arc<[Attr]> = Arc::new([attr(&catalog::FOLDED, true)]);
            let mut emit = Emit {
                out: &mut points,
                subject,
                start: other.start,
                write_starts: None,
                averages_only: self.averages_only,
                only: self.metrics.as_deref(),
            };
            emit.activity(&other.total);
            emit.gauges(gauges, None);
        }
        points
    }

    /// The node's and the agent's own points; the series and folded counts
    /// are filled in last.
    fn node_points(
        &self,
        observation: &Observation,
        health: Option<&ExportHealth>,
        pods: Option<&dyn PodLookup>,
    ) -> Vec<(&'static Metric, Point)> {
        let mut points = Vec::new();
        let mut emit = Emit {
            out: &mut points,
            subject: Arc::new([]),
            start: self.started,
            write_starts: None,
            averages_only: self.averages_only,
            only: None,
        };
        emit.gauge(&catalog::NODE_TRANSITION_COST, vec![], Value::Float(observation.transition_cost_ns * 1e-9));
        if let Some(at) = observation.transition_measured_at {
            let unix_s = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            emit.gauge(&catalog::NODE_TRANSITION_MEASURED, vec![], Value::Float(unix_s));
        }
        emit.gauge(&catalog::AGENT_DEGRADED, vec![], Value::Int(u64::from(self.averages_only)));
        emit.gauge(&catalog::FD_MAP_USAGE, vec![], Value::Int(observation.tracked_fds as u64));
        emit.gauge(&catalog::FD_MAP_LIMIT, vec![], Value::Int(u64::from(observation.max_fds)));
        emit.counter(&catalog::FD_MAP_EVICTIONS, vec![], Value::Int(observation.evicted_fds as u64));
        for (kind, count) in observation.probe_errors.by_kind() {
            emit.counter(&catalog::PROBE_ERRORS, vec![attr(&catalog::PROBE_ERROR, kind.name())], Value::Int(count));
        }
        if let Some(failures) = pods.map(PodLookup::failures) {
            for (request, count) in [("pod_list", failures.pod_lists), ("job_read", failures.job_reads)] {
                let request = vec![attr(&catalog::KUBERNETES_REQUEST, request)];
                emit.counter(&catalog::KUBERNETES_ERRORS, request, Value::Int(count));
            }
        }
        emit.gauge(&catalog::EXPORT_SERIES, vec![], Value::Int(0));
        emit.gauge(&catalog::EXPORT_FOLDED, vec![], Value::Int(0));
        if let Some(health) = health {
            emit.health(health);
        }
        if let Some(endpoint) = &observation.endpoint {
            emit.endpoint(endpoint);
        }
        points
    }
}

/// What is folded into `other` during one collection.
#[derive(Default)]
struct Folded {
    pending: Option<Activity>,
    gauges: Gauges,
    processes: usize,
}

impl Folded {
    /// Adds what `processes` processes did.
    fn add(&mut self, delta: Activity, gauges: Gauges, processes: usize) {
        self.pending.get_or_insert_with(Activity::default).add_by_kind(&delta);
        self.gauges.add_folded(&gauges);
        self.processes += processes;
    }
}

/// Sets the value of `metric`'s one point in `points`.
fn set_gauge(points: &mut [(&'static Metric, Point)], metric: &Metric, value: u64) {
    if let Some((_, point)) = points.iter_mut().find(|(m, _)| m.name == metric.name) {
        point.value = Value::Int(value);
    }
}

/// Groups `points` by metric, in catalog order.
fn by_metric(points: Vec<(&'static Metric, Point)>) -> Vec<(&'static Metric, Vec<Point>)> {
    let mut groups: HashMap<&str, Vec<Point>> = HashMap::new();
    for (metric, point) in points {
        groups.entry(metric.name).or_default().push(point);
    }
    catalog::ALL.into_iter().filter_map(|metric| Some((metric, groups.remove(metric.name)?))).collect()
}

#[cfg(test)]
mod tests;
