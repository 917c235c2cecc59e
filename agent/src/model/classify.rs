//! Judging a descriptor's batching: is it an un-batched hot writer, and does
//! its batcher flush on a timer?

use agent_common::{
    hist::{slot_lower_bound, slot_upper_bound},
    write::WriteStats,
};
use serde::Serialize;

use super::{histogram::Log2Histogram, human::human_ns, io_uring::RingMetrics, metrics::BatchingMetrics};
use crate::config::{HotWriterRule, IoUringRule, TimerFlushRule};

/// Whether one interval of a descriptor looks like an un-batched hot writer:
/// many calls a second, each carrying one small message. What a call carries
/// is judged by its median bytes and records (exact or interpolated, not the
/// log2 bucket's edge): a header and a payload in one `writev` is one
/// message, a call carrying many records is a batch.
pub fn is_hot_unbatched(m: &BatchingMetrics, rule: &HotWriterRule) -> bool {
    let one_message = m.median_records_per_call.is_some_and(|r| r <= rule.max_records_per_call as f64);
    let small = m.median_bytes_per_call.is_some_and(|b| b <= rule.max_bytes_per_call as f64);
    m.calls_per_sec >= rule.min_calls_per_sec && one_message && small
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
    /// The flush period: the exact mean gap when every gap lies in the
    /// peak, else the median gap (exact or interpolated, see `histogram`).
    pub period_ns: u64,
    /// The peak: the log2 bucket or two holding the gaps.
    pub period_min_ns: u64,
    pub period_max_ns: u64,
    /// Share of gaps in that range.
    pub share: f64,
    /// Median batch in bytes, exact or interpolated.
    pub batch_bytes: f64,
    /// Median batch in bytes against the largest seen (both log2 bucket edges).
    pub median_bytes: u64,
    pub largest_bytes: u64,
}

impl TimerFlush {
    /// Looks for a timer in `stats` (accumulated over a long span): most gaps
    /// in one or two neighbouring log2 buckets, at least `min_period` long,
    /// with batches that are not pinned at one exact size. The kernel cannot
    /// see a buffer's capacity, so it is not compared with one: a batcher
    /// flushed by its ticker sends what arrived since the last tick, which
    /// varies with the traffic, even when it is nearly the same every time;
    /// a full buffer sends its capacity, exactly, every time
    /// ([`full_buffer_bytes`]), whatever the gaps.
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
        if full_buffer_bytes(stats).is_some() {
            return None;
        }
        let in_peak: u64 = stats.gap_hist[first..=last].iter().sum();
        let period_ns = if in_peak == gaps.count() {
            stats.gap_ns_total as f64 / gaps.count() as f64
        } else {
            gaps.median(stats.gap_ns_total)?
        };
        let sizes = Log2Histogram::new(&stats.bytes_hist);
        Some(TimerFlush {
            period_ns: period_ns.round() as u64,
            period_min_ns,
            period_max_ns: slot_upper_bound(last),
            share,
            batch_bytes: sizes.median(stats.bytes_requested)?,
            median_bytes: sizes.quantile(0.5)?,
            largest_bytes: sizes.quantile(1.0)?,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "flushes on a timer every {} ({:.0}% of gaps in {}-{}), median batch {:.0} B, which varies with \
             the traffic and never fills a buffer: records wait up to {} before they leave; \
             traffic is too light for the window, or the window too small",
            human_ns(self.period_ns),
            self.share * 100.0,
            human_ns(self.period_min_ns),
            human_ns(self.period_max_ns),
            self.batch_bytes,
            human_ns(self.period_ns),
        )
    }
}

/// The size every call of `stats` wrote when it is one power of two, the
/// mark of a full buffer being flushed (4 KiB for Go's `bufio.Writer`, 8 KiB
/// for Java's `BufferedOutputStream` and Python's buffered files, 16 KiB for
/// a Node stream's high-water mark). The histogram and the exact total prove
/// it: when every call lies in the bucket `(2^(k-1), 2^k]` and the calls
/// average `2^k`, the bucket's largest value, every call was exactly `2^k`.
pub fn full_buffer_bytes(stats: &WriteStats) -> Option<u64> {
    let calls: u64 = stats.bytes_hist.iter().sum();
    let slot = stats.bytes_hist.iter().position(|&n| n > 0)?;
    let size = slot_upper_bound(slot);
    // A buffer of one byte or less is no buffer.
    (stats.bytes_hist[slot] == calls && size > 1 && stats.bytes_requested == calls * size).then_some(size)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agent_common::hist::log2_slot;

    use super::*;
    use crate::model::metrics::Transition;

    const HOT: HotWriterRule = HotWriterRule {
        min_calls_per_sec: 1000.0,
        max_bytes_per_call: 512,
        max_records_per_call: 4,
        sustain_intervals: 3,
        window_intervals: 10,
        batch_target: 64,
    };
    const TIMER: TimerFlushRule =
        TimerFlushRule { min_period: Duration::from_millis(1), min_share: 0.8, min_flushes: 10 };

    fn interval(calls: u64, records: u64, bytes: u64) -> BatchingMetrics {
        let mut s = WriteStats::ZERO;
        s.calls[0] = calls;
        s.records = calls * records;
        s.bytes_requested = calls * bytes;
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

    #[test]
    fn a_framed_message_is_one_message_and_many_are_a_batch() {
        // writev([4 B header, 20 B payload]): 2 records, 24 B.
        assert!(is_hot_unbatched(&interval(200_000, 2, 24), &HOT));
        // 64 such messages in one writev.
        assert!(!is_hot_unbatched(&interval(200_000, 128, 64 * 24), &HOT));
        // Many one-byte records in one call are a batch too, however small.
        assert!(!is_hot_unbatched(&interval(200_000, 64, 64), &HOT));
    }

    #[test]
    fn the_byte_limit_is_the_median_itself_not_its_bucket_edge() {
        // 600 B lies in the bucket (512, 1024], whose lower edge passed for "at most 512 B".
        assert!(!is_hot_unbatched(&interval(5000, 1, 600), &HOT));
        assert!(is_hot_unbatched(&interval(5000, 1, 512), &HOT));
    }

    /// Gaps at `period` ns and batches of the given byte sizes.
    fn flushes(period: u64, gaps: u64, sizes: &[u64]) -> WriteStats {
        let mut s = WriteStats::ZERO;
        s.gap_hist[log2_slot(period, s.gap_hist.len())] = gaps;
        s.gap_ns_total = period * gaps;
        for &b in sizes {
            s.bytes_hist[log2_slot(b, s.bytes_hist.len())] += 1;
            s.bytes_requested += b;
        }
        s
    }

    #[test]
    fn timer_seen_when_gaps_peak_and_batches_vary() {
        let small = [100, 200, 300, 400, 100, 200, 300, 400, 6400];
        let t = TimerFlush::detect(&flushes(20_000_000, 50, &small), &TIMER).unwrap();
        assert_eq!((t.period_ns, t.period_min_ns, t.period_max_ns), (20_000_000, (1 << 24) + 1, 1 << 25));
        assert_eq!((t.median_bytes, t.largest_bytes), (512, 8192));
        assert!(
            t.describe().starts_with("flushes on a timer every 20.0ms (100% of gaps in 16.8ms-33.6ms)"),
            "{}",
            t.describe()
        );
    }

    #[test]
    fn a_ticker_over_a_trickle_is_a_timer_though_its_batches_are_alike() {
        // About 19 records of 50 B each tick: every batch in (512, 1024].
        let trickle = [950, 900, 950, 1000, 950, 950, 900, 950, 950, 1000, 950];
        let t = TimerFlush::detect(&flushes(20_000_000, 50, &trickle), &TIMER).expect("a timer");
        assert_eq!(t.period_ns, 20_000_000);
        assert!((t.batch_bytes - 10_450.0 / 11.0).abs() < 1e-9, "{t:?}");
        assert!(t.describe().contains("records wait up to 20.0ms"), "{}", t.describe());
    }

    #[test]
    fn a_full_buffer_is_no_timer_even_on_steady_gaps() {
        let full = flushes(10_000_000, 50, &[4096; 50]);
        assert_eq!(full_buffer_bytes(&full), Some(4096));
        assert_eq!(TimerFlush::detect(&full, &TIMER), None);
        // Alike but not all 4096: a timer.
        let near = flushes(10_000_000, 50, &[[4096; 49].as_slice(), &[4100]].concat());
        assert_eq!(full_buffer_bytes(&near), None);
        assert!(TimerFlush::detect(&near, &TIMER).is_some());
    }

    #[test]
    fn no_timer_when_gaps_short_or_few() {
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
