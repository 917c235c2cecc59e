//! io_uring in the model: per ring, how many SQEs each `io_uring_enter`
//! carries, how many syscalls the ring saves, whether an SQPOLL poller keeps
//! falling asleep, and what the ring dropped or failed.

use std::collections::BTreeMap;

use agent_common::{
    counters::Counters as _,
    io_uring::{EnterStats, OpClass, RingOpStats, RingSetup, SETUP_SQPOLL, SetupStats},
};
use serde::Serialize;

use super::{
    flag::Flag,
    metrics::{Quantiles, Transition},
};
use crate::depth::fdinfo::RingFdinfo;

/// One ring of one process. A ring is known by its fd (from
/// `io_uring_enter`), by its kernel context (from its SQEs and CQEs), or by
/// both once its creation was seen.
#[derive(Debug, Clone, Default)]
pub struct RingState {
    pub fd: Option<i32>,
    pub ctx: Option<u64>,
    pub setup: Option<RingSetup>,
    /// The last interval, and since the ring was first seen.
    pub enters: EnterStats,
    pub total_enters: EnterStats,
    pub ops: RingOpStats,
    pub total_ops: RingOpStats,
    pub metrics: RingMetrics,
    /// Un-batched: about one SQE per enter at a high enter rate.
    pub unbatched: Flag,
    /// SQPOLL on a trickle: the poller keeps falling asleep.
    pub trickle: Flag,
    /// Queue occupancy from the last look at its fdinfo.
    pub depth: Option<RingFdinfo>,
}

impl RingState {
    /// Whether an SQPOLL thread submits for this ring.
    pub fn sqpoll(&self) -> bool {
        self.setup.is_some_and(|s| s.flags & SETUP_SQPOLL != 0) || self.depth.is_some_and(|d| d.sqpoll)
    }

    fn add(&mut self, enters: &EnterStats, ops: &RingOpStats) {
        self.enters.add(enters);
        self.total_enters.add(enters);
        self.ops.add(ops);
        self.total_ops.add(ops);
    }

    /// Closes an interval of `seconds`: computes its metrics and clears it.
    pub fn close_interval(&mut self, seconds: f64, transition: &Transition) {
        self.metrics = RingMetrics::of(&self.enters, &self.ops, self.sqpoll(), seconds, transition);
        self.enters = EnterStats::ZERO;
        self.ops = RingOpStats::ZERO;
    }
}

/// All io_uring activity of one process.
#[derive(Debug, Clone, Default)]
pub struct UringState {
    pub rings: Vec<RingState>,
    /// All rings together, over the last interval.
    pub metrics: RingMetrics,
    /// `io_uring_setup` outcomes since first seen.
    pub setups: SetupStats,
    /// Failed completions by errno (EAGAIN counted apart), since first seen.
    pub cqe_errors: BTreeMap<u32, u64>,
}

impl UringState {
    /// Adds an interval's `io_uring_enter` calls on ring `fd`.
    pub fn record_enters(&mut self, fd: i32, delta: &EnterStats) {
        self.ring_by_fd(fd).add(delta, &RingOpStats::ZERO);
    }

    /// Adds an interval's SQEs and CQEs of ring `ctx`, whose creation the
    /// probes may have seen (`setup`).
    pub fn record_ops(&mut self, ctx: u64, setup: Option<&RingSetup>, delta: &RingOpStats) {
        let ring = match setup {
            Some(setup) => {
                let ring = self.ring_by_fd(setup.fd);
                ring.setup = Some(*setup);
                ring
            }
            None => self.ring_by_ctx(ctx),
        };
        ring.ctx = Some(ctx);
        ring.add(&EnterStats::ZERO, delta);
    }

    pub fn record_setups(&mut self, delta: &SetupStats) {
        self.setups.add(delta);
    }

    pub fn record_cqe_error(&mut self, errno: u32, count: u64) {
        *self.cqe_errors.entry(errno).or_default() += count;
    }

    /// Set-ups that seccomp, `kernel.io_uring_disabled` or the kernel refused.
    pub fn denied_setups(&self) -> u64 {
        self.setups.eperm + self.setups.enosys
    }

    fn ring_by_fd(&mut self, fd: i32) -> &mut RingState {
        let at = match self.rings.iter().position(|r| r.fd == Some(fd)) {
            Some(at) => at,
            None => self.push(RingState { fd: Some(fd), ..RingState::default() }),
        };
        &mut self.rings[at]
    }

    /// The ring with context `ctx`. A context whose creation was not seen
    /// (the ring predates the agent) is taken to be the process's only ring
    /// known just by its fd, if there is exactly one.
    fn ring_by_ctx(&mut self, ctx: u64) -> &mut RingState {
        let known = self.rings.iter().position(|r| r.ctx == Some(ctx));
        let fd_only: Vec<usize> = (0..self.rings.len()).filter(|&i| self.rings[i].ctx.is_none()).collect();
        let at = match (known, fd_only.as_slice()) {
            (Some(at), _) => at,
            (None, &[only]) => only,
            (None, _) => self.push(RingState { ctx: Some(ctx), ..RingState::default() }),
        };
        &mut self.rings[at]
    }

    fn push(&mut self, ring: RingState) -> usize {
        self.rings.push(ring);
        self.rings.len() - 1
    }

    /// Closes an interval of `seconds` for every ring, and computes the
    /// process's metrics over all of them.
    pub fn close_interval(&mut self, seconds: f64, transition: &Transition) {
        self.metrics = self.combined(|ring| (&ring.enters, &ring.ops), seconds, transition);
        for ring in &mut self.rings {
            ring.close_interval(seconds, transition);
        }
    }

    /// The process's metrics over everything since its rings were first seen.
    pub fn total_metrics(&self, seconds: f64, transition: &Transition) -> RingMetrics {
        self.combined(|ring| (&ring.total_enters, &ring.total_ops), seconds, transition)
    }

    /// Metrics of all rings together, from the statistics `pick` chooses.
    fn combined(
        &self,
        pick: impl Fn(&RingState) -> (&EnterStats, &RingOpStats),
        seconds: f64,
        transition: &Transition,
    ) -> RingMetrics {
        let (mut enters, mut ops) = (EnterStats::ZERO, RingOpStats::ZERO);
        let mut saving_cores = 0.0;
        for ring in &self.rings {
            let (ring_enters, ring_ops) = pick(ring);
            let mut ring_enters = *ring_enters;
            if ring.sqpoll() {
                // SQPOLL enters only wake the poller: keep them out of the
                // SQEs-per-enter distribution.
                ring_enters.submitted_hist = Default::default();
            } else {
                saving_cores += RingMetrics::of(&ring_enters, ring_ops, false, seconds, transition).saving_cores;
            }
            enters.add(&ring_enters);
            ops.add(ring_ops);
        }
        RingMetrics {
            sqpoll: self.rings.iter().any(RingState::sqpoll),
            saving_cores,
            ..RingMetrics::of(&enters, &ops, false, seconds, transition)
        }
    }
}

/// io_uring metrics over one span of time, for one ring or a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RingMetrics {
    pub enters: u64,
    pub sqes: u64,
    pub enters_per_sec: f64,
    /// Enters that asked to submit (`to_submit > 0`): the only ones a batch
    /// size and the one-SQE-per-enter rule are about.
    pub submitting_enters: u64,
    pub submitting_enters_per_sec: f64,
    /// Enters that only waited for completions (or failed): judged apart.
    pub waiting_enters: u64,
    pub sqes_per_sec: f64,
    /// SQEs submitted per enter; `None` on SQPOLL rings, where an enter only
    /// wakes the poller, and when no enter submitted.
    pub sqes_per_enter: Option<Quantiles>,
    /// SQEs over enters, every ring kind.
    pub mean_sqes_per_enter: f64,
    /// SQEs that needed no syscall of their own: SQEs minus enters.
    pub syscalls_avoided_per_sec: f64,
    pub sqpoll: bool,
    /// Enters that woke a sleeping SQPOLL poller.
    pub wakeups: u64,
    pub wakeups_per_sec: f64,
    pub write_sqes: u64,
    pub read_sqes: u64,
    pub other_sqes: u64,
    pub cq_overflows: u64,
    pub failed: u64,
    pub cqe_eagain: u64,
    pub cqe_errors: u64,
    pub short_writes: u64,
    pub transition_cores: f64,
    pub saving_cores: f64,
}

impl RingMetrics {
    pub fn of(enters: &EnterStats, ops: &RingOpStats, sqpoll: bool, seconds: f64, t: &Transition) -> RingMetrics {
        let per_sec = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
        let class = |c: OpClass| ops.sqes_by_class[c as usize];
        let sqes_per_enter = if sqpoll { None } else { Quantiles::of(&enters.submitted_hist) };
        RingMetrics {
            enters: enters.enters,
            sqes: ops.sqes,
            enters_per_sec: per_sec(enters.enters),
            submitting_enters: enters.submitting,
            submitting_enters_per_sec: per_sec(enters.submitting),
            waiting_enters: enters.enters - enters.submitting,
            sqes_per_sec: per_sec(ops.sqes),
            sqes_per_enter,
            mean_sqes_per_enter: if enters.enters > 0 { ops.sqes as f64 / enters.enters as f64 } else { 0.0 },
            syscalls_avoided_per_sec: per_sec(ops.sqes.saturating_sub(enters.enters)),
            sqpoll,
            wakeups: enters.sq_wakeups,
            wakeups_per_sec: per_sec(enters.sq_wakeups),
            write_sqes: class(OpClass::Write),
            read_sqes: class(OpClass::Read),
            other_sqes: class(OpClass::Other),
            cq_overflows: ops.cq_overflows,
            failed: ops.failed,
            cqe_eagain: ops.cqe_eagain,
            cqe_errors: ops.cqe_errors,
            short_writes: ops.short_writes,
            // Every enter crosses into the kernel; only submitting ones would
            // be fewer if the same SQEs went in bigger batches (an enter
            // that waits for completions waits however they were submitted).
            transition_cores: t.cores(per_sec(enters.enters)),
            saving_cores: if sqpoll { 0.0 } else { t.saving(per_sec(enters.submitting), per_sec(ops.sqes)) },
        }
    }
}

#[cfg(test)]
mod tests {
    use agent_common::{hist::log2_slot, io_uring::SUBMIT_SLOTS};

    use super::*;
    use crate::config::{Config, HotWriterRule, IoUringRule};
    use crate::model::classify::{is_sqpoll_trickle, is_unbatched_ring};

    const T: Transition = Transition { cost_ns: 100.0, batch_target: 64 };

    fn enters(n: u64, per_enter: u64, wakeups: u64) -> EnterStats {
        let mut e = EnterStats {
            enters: n,
            submitting: n,
            submitted: n * per_enter,
            sq_wakeups: wakeups,
            ..Default::default()
        };
        e.submitted_hist[log2_slot(per_enter, SUBMIT_SLOTS)] = n;
        e
    }

    fn ops(sqes: u64) -> RingOpStats {
        RingOpStats { sqes, sqes_by_class: [sqes, 0, 0], ..Default::default() }
    }

    fn setup(fd: i32, flags: u32) -> RingSetup {
        RingSetup { tgid: 1, fd, sq_entries: 32, cq_entries: 64, flags, _pad: 0 }
    }

    #[test]
    fn enters_and_sqes_of_a_ring_created_under_watch_join_by_fd() {
        let mut u = UringState::default();
        u.record_enters(5, &enters(100, 8, 0));
        u.record_ops(0xabc, Some(&setup(5, 0)), &ops(800));
        assert_eq!(u.rings.len(), 1);
        let ring = &u.rings[0];
        assert_eq!((ring.fd, ring.ctx), (Some(5), Some(0xabc)));
        u.close_interval(1.0, &T);
        let m = u.rings[0].metrics;
        assert_eq!((m.enters, m.sqes, m.mean_sqes_per_enter), (100, 800, 8.0));
        assert_eq!(m.sqes_per_enter.map(|q| q.p50), Some(8));
        assert_eq!(m.syscalls_avoided_per_sec, 700.0);
        assert_eq!(u.metrics.sqes, 800);
    }

    #[test]
    fn a_ring_older_than_the_agent_joins_the_only_fd_ring() {
        let mut u = UringState::default();
        u.record_enters(7, &enters(10, 1, 0));
        u.record_ops(0x1, None, &ops(10));
        assert_eq!(u.rings.len(), 1);
        assert_eq!((u.rings[0].fd, u.rings[0].ctx), (Some(7), Some(0x1)));
        // With two candidate fds, the context stays on its own.
        u.record_enters(8, &enters(10, 1, 0));
        u.record_enters(9, &enters(10, 1, 0));
        u.record_ops(0x2, None, &ops(10));
        assert_eq!(u.rings.len(), 4);
        assert_eq!((u.rings[3].fd, u.rings[3].ctx), (None, Some(0x2)));
    }

    #[test]
    fn sqpoll_rings_report_wakeups_not_batch_sizes() {
        let mut u = UringState::default();
        u.record_enters(5, &enters(40, 1, 40));
        u.record_ops(0xabc, Some(&setup(5, agent_common::io_uring::SETUP_SQPOLL)), &ops(40));
        u.close_interval(2.0, &T);
        let m = u.rings[0].metrics;
        assert!(m.sqpoll);
        assert_eq!(m.sqes_per_enter, None);
        assert_eq!(m.wakeups_per_sec, 20.0);
        assert_eq!(m.saving_cores, 0.0);
        assert!(u.metrics.sqpoll && u.metrics.sqes_per_enter.is_none());
        let rule = IoUringRule { min_wakeups_per_sec: 10.0 };
        assert!(is_sqpoll_trickle(&m, &rule));
        assert!(!is_unbatched_ring(&m, &Config::default().hot_writer));
    }

    #[test]
    fn one_sqe_per_enter_at_a_high_rate_is_unbatched() {
        let hot: HotWriterRule = Config::default().hot_writer;
        let judge = |n: u64, per: u64| {
            let mut u = UringState::default();
            u.record_enters(3, &enters(n, per, 0));
            u.record_ops(0x9, Some(&setup(3, 0)), &ops(n * per));
            u.close_interval(1.0, &T);
            is_unbatched_ring(&u.rings[0].metrics, &hot)
        };
        assert!(judge(5000, 1));
        assert!(!judge(500, 1), "too few enters");
        assert!(!judge(5000, 32), "batched");
    }

    #[test]
    fn enters_that_only_wait_are_judged_apart() {
        let hot: HotWriterRule = Config::default().hot_writer;
        // 600 enters/s submitting one SQE each, and 600 more that only wait
        // for its completion: 1200 enters/s, but 600 submitting.
        let mut waiting = enters(600, 1, 0);
        waiting.enters += 600;
        waiting.getevents += 600;
        let mut u = UringState::default();
        u.record_enters(3, &waiting);
        u.record_ops(0x9, Some(&setup(3, 0)), &ops(600));
        u.close_interval(1.0, &T);
        let m = u.rings[0].metrics;
        assert_eq!((m.enters, m.submitting_enters, m.waiting_enters), (1200, 600, 600));
        assert!(hot.min_calls_per_sec > 600.0 && hot.min_calls_per_sec <= 1200.0, "{hot:?}");
        assert!(!is_unbatched_ring(&m, &hot), "waiting enters made it a hot ring");
        // The waiting enters cost crossings, but batching would not save them:
        // 600 SQEs at 64 per enter would take 9.375 submitting enters.
        assert!((m.transition_cores - 1200.0 * 100e-9).abs() < 1e-15);
        assert!((m.saving_cores - (600.0 - 600.0 / 64.0) * 100e-9).abs() < 1e-15, "{}", m.saving_cores);
        // A loop that only waits (a batch of 32 submitted once, reaped one
        // CQE per enter): only its one submitting enter counts, half of one
        // enter of 64 SQEs.
        let mut reaper = enters(1, 32, 0);
        reaper.enters += 5000;
        let mut u = UringState::default();
        u.record_enters(4, &reaper);
        u.record_ops(0xa, Some(&setup(4, 0)), &ops(32));
        u.close_interval(1.0, &T);
        let m = u.rings[0].metrics;
        assert!(!is_unbatched_ring(&m, &hot));
        assert!((m.saving_cores - 0.5 * 100e-9).abs() < 1e-15, "{}", m.saving_cores);
    }

    #[test]
    fn denied_setups_count_eperm_and_enosys() {
        let mut u = UringState::default();
        u.record_setups(&SetupStats { ok: 1, eperm: 2, enosys: 1, other_errors: 4 });
        assert_eq!(u.denied_setups(), 3);
    }
}
