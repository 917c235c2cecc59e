//! Judging a descriptor's batching: is it an un-batched hot writer, and does
//! its batcher flush on a timer?

use agent_common::{
    hist::{slot_lower_bound, slot_upper_bound},
    write::WriteStats,
};
use serde::Serialize;

use super::{
    histogram::Log2Histogram,
    human::{human_bytes, human_ns},
    io_uring::RingMetrics,
    metrics::BatchingMetrics,
};
use crate::config::{HotWriterRule, IoUringRule, TimerFlushRule};

/// Whether one interval of a descriptor looks like an un-batched hot writer:
/// many calls a second, each carrying one small record.
pub fn is_hot_unbatched(m: &BatchingMetrics, rule: &HotWriterRule) -> bool {
    let one_record = m.records_per_call.is_some_and(|r| r.p50 == 1);
    let small = m.bytes_per_call.is_some_and(|b| b.p50 <= rule.max_bytes_per_call);
    m.calls_per_sec >= rule.min_calls_per_sec && one_record && small
}

/// The degraded mode's rule, from averages alone (no histograms, no records
/// per call): many calls a second carrying few bytes each on average.
pub fn is_hot_by_averages(m: &BatchingMetrics, rule: &HotWriterRule) -> bool {
    m.calls_per_sec >= rule.min_calls_per_sec && m.mean_bytes_per_call <= rule.max_bytes_per_call as f64
}

/// Whether one interval of a ring looks un-batched: many submitting
/// `io_uring_enter` calls a second, each submitting one SQE. Enters that
/// only wait for completions do not count toward the rate; SQPOLL rings
/// are judged apart.
pub fn is_unbatched_ring(m: &RingMetrics, rule: &HotWriterRule) -> bool {
    !m.sqpoll && m.submitting_enters_per_sec >= rule.min_calls_per_sec && m.sqes_per_enter.is_some_and(|q| q.p50 == 1)
}

/// Whether one interval of an SQPOLL ring is a trickle: the application
/// keeps having to wake the poller, so submissions cost syscalls anyway.
pub fn is_sqpoll_trickle(m: &RingMetrics, rule: &IoUringRule) -> bool {
    m.sqpoll && m.wakeups_per_sec >= rule.min_wakeups_per_sec
}

/// A batcher seen flushing on a timer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TimerFlush {
    /// The flush period lies in `[period_min_ns, period_max_ns]`.
    pub period_min_ns: u64,
    pub period_max_ns: u64,
    /// Share of gaps in that range.
    pub share: f64,
    /// Median batch in bytes against the largest seen (both log2 bucket edges).
    pub median_bytes: u64,
    pub largest_bytes: u64,
}

impl TimerFlush {
    /// Looks for a timer in `stats` (accumulated over a long span): most gaps
    /// in one or two neighbouring log2 buckets, at least `min_period` long,
    /// while the median batch is at most a quarter of the largest.
    pub fn detect(stats: &WriteStats, rule: &TimerFlushRule) -> Option<TimerFlush> {
        let gaps = Log2Histogram::new(&stats.gap_hist);
        if gaps.count() < rule.min_flushes {
            return None;
        }
        let mode = gaps.mode_slot()?;
        // A period near a bucket edge splits between two buckets: take the
        // mode with its fuller neighbour.
        let neighbour = [mode.wrapping_sub(1), mode + 1]
            .into_iter()
            .filter(|&s| s < stats.gap_hist.len() && stats.gap_hist[s] > 0)
            .max_by_key(|&s| stats.gap_hist[s]);
        let (first, last) = neighbour.map_or((mode, mode), |n| (mode.min(n), mode.max(n)));
        let share: f64 = (first..=last).map(|slot| gaps.share(slot)).sum();
        let period_min_ns = slot_lower_bound(first);
        if share < rule.min_share || period_min_ns < rule.min_period.as_nanos() as u64 {
            return None;
        }
        let sizes = Log2Histogram::new(&stats.bytes_hist);
        let (median, largest) = (sizes.quantile_slot(0.5)?, sizes.max_slot()?);
        // Two log2 buckets apart: the median batch is at most 1/4 of the largest.
        if median + 2 > largest {
            return None;
        }
        Some(TimerFlush {
            period_min_ns,
            period_max_ns: slot_upper_bound(last),
            share,
            median_bytes: slot_lower_bound(median),
            largest_bytes: slot_lower_bound(largest),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "flushes on a timer of {}-{} ({:.0}% of gaps) with median batches of {} against a largest of {}: \
             traffic is too light for the window, or the window too small",
            human_ns(self.period_min_ns),
            human_ns(self.period_max_ns),
            self.share * 100.0,
            human_bytes(self.median_bytes),
            human_bytes(self.largest_bytes),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agent_common::hist::log2_slot;

    use super::*;
    use crate::model::metrics::Transition;

    const HOT: HotWriterRule =
        HotWriterRule { min_calls_per_sec: 1000.0, max_bytes_per_call: 512, sustain_intervals: 3, batch_target: 64 };
    const TIMER: TimerFlushRule =
        TimerFlushRule { min_period: Duration::from_millis(1), min_share: 0.8, min_flushes: 10 };

    fn interval(calls: u64, records: u64, bytes: u64) -> BatchingMetrics {
        let mut s = WriteStats::ZERO;
        s.calls[0] = calls;
        s.records = calls * records;
        s.bytes_hist[log2_slot(bytes, s.bytes_hist.len())] = calls;
        s.records_hist[log2_slot(records, s.records_hist.len())] = calls;
        BatchingMetrics::of(&s, 1.0, &Transition { cost_ns: 100.0, batch_target: 64 })
    }

    #[test]
    fn hot_means_fast_one_record_and_small() {
        assert!(is_hot_unbatched(&interval(5000, 1, 1), &HOT));
        assert!(!is_hot_unbatched(&interval(999, 1, 1), &HOT), "too slow");
        assert!(!is_hot_unbatched(&interval(5000, 64, 65536), &HOT), "batched");
        assert!(!is_hot_unbatched(&interval(5000, 1, 65536), &HOT), "one big record per call");
    }

    /// Gaps at `period` ns and batches of the given byte sizes.
    fn flushes(period: u64, gaps: u64, sizes: &[u64]) -> WriteStats {
        let mut s = WriteStats::ZERO;
        s.gap_hist[log2_slot(period, s.gap_hist.len())] = gaps;
        for &b in sizes {
            s.bytes_hist[log2_slot(b, s.bytes_hist.len())] += 1;
        }
        s
    }

    #[test]
    fn timer_seen_when_gaps_peak_and_batches_are_small() {
        let small = [100, 200, 300, 400, 100, 200, 300, 400, 6400];
        let t = TimerFlush::detect(&flushes(20_000_000, 50, &small), &TIMER).unwrap();
        assert_eq!((t.period_min_ns, t.period_max_ns), (1 << 24, (1 << 25) - 1));
        assert_eq!((t.median_bytes, t.largest_bytes), (256, 4096));
        assert!(t.describe().starts_with("flushes on a timer of 16.8ms-33.6ms (100% of gaps)"), "{}", t.describe());
    }

    #[test]
    fn no_timer_when_batches_are_full_or_gaps_short_or_few() {
        let full = [6400; 9];
        assert_eq!(TimerFlush::detect(&flushes(20_000_000, 50, &full), &TIMER), None);
        let small = [100, 100, 100, 6400];
        assert_eq!(TimerFlush::detect(&flushes(500, 50, &small), &TIMER), None, "back-to-back");
        assert_eq!(TimerFlush::detect(&flushes(20_000_000, 5, &small), &TIMER), None, "too few");
    }

    #[test]
    fn spread_gaps_are_no_timer() {
        let mut s = flushes(20_000_000, 10, &[100, 100, 6400]);
        s.gap_hist[10] = 10;
        s.gap_hist[30] = 10;
        assert_eq!(TimerFlush::detect(&s, &TIMER), None);
    }
}
