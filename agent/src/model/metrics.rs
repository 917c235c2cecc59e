//! The four batching metrics, as seen from the kernel, for one fd or one
//! process over one span of time: batch size (bytes and records per call),
//! batch wait time (gap between flushes), drops (what the kernel refused),
//! plus call rates and the cost of the transitions into the kernel. Buffer depth is
//! sampled separately (`depth`).

use agent_common::write::{Outcome, WriteStats};
use serde::Serialize;

use super::histogram::Log2Histogram;

/// p50 and p99 of a log2 histogram, each the upper edge (inclusive) of its
/// bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quantiles {
    pub p50: u64,
    pub p99: u64,
}

impl Quantiles {
    pub fn of(slots: &[u64]) -> Option<Quantiles> {
        let h = Log2Histogram::new(slots);
        Some(Quantiles { p50: h.quantile(0.5)?, p99: h.quantile(0.99)? })
    }
}

/// Calls the kernel did not complete as asked, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Drops {
    pub short_write: u64,
    pub eagain: u64,
    pub epipe: u64,
    pub enobufs: u64,
    pub other_error: u64,
}

impl Drops {
    pub fn of(stats: &WriteStats) -> Drops {
        let n = |outcome: Outcome| stats.outcomes[outcome as usize];
        Drops {
            short_write: n(Outcome::Short),
            eagain: n(Outcome::WouldBlock),
            epipe: n(Outcome::BrokenPipe),
            enobufs: n(Outcome::NoBuffers),
            other_error: n(Outcome::OtherError),
        }
    }

    pub fn total(&self) -> u64 {
        self.short_write + self.eagain + self.epipe + self.enobufs + self.other_error
    }
}

/// What one kernel transition costs on this node, and the batch size used to
/// estimate what batching would save.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    pub cost_ns: f64,
    pub batch_target: u64,
}

impl Transition {
    /// Cores spent crossing into the kernel at `calls_per_sec`.
    pub fn cores(&self, calls_per_sec: f64) -> f64 {
        calls_per_sec * self.cost_ns * 1e-9
    }

    /// Cores saved if the same records went out `batch_target` per call.
    pub fn saving(&self, calls_per_sec: f64, records_per_sec: f64) -> f64 {
        let batched_calls = records_per_sec / self.batch_target as f64;
        self.cores((calls_per_sec - batched_calls).max(0.0))
    }
}

/// Batching metrics over `seconds` of activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BatchingMetrics {
    pub calls: u64,
    pub bytes: u64,
    pub bytes_requested: u64,
    pub records: u64,
    pub calls_per_sec: f64,
    pub bytes_per_sec: f64,
    pub bytes_per_call: Option<Quantiles>,
    pub mean_bytes_per_call: f64,
    /// The median from the histogram and the exact total: exact when the
    /// calls fill one log2 bucket, else interpolated (see `histogram`).
    pub median_bytes_per_call: Option<f64>,
    pub records_per_call: Option<Quantiles>,
    pub mean_records_per_call: f64,
    pub median_records_per_call: Option<f64>,
    pub gap_ns: Option<Quantiles>,
    pub drops: Drops,
    pub transition_cores: f64,
    pub saving_cores: f64,
}

impl BatchingMetrics {
    pub fn of(stats: &WriteStats, seconds: f64, transition: &Transition) -> BatchingMetrics {
        let calls = stats.total_calls();
        let per_sec = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
        // Sizes are of the calls that went through: failed ones moved nothing.
        let through = stats.calls_through();
        let per_call = |n: u64| if through > 0 { n as f64 / through as f64 } else { 0.0 };
        BatchingMetrics {
            calls,
            bytes: stats.bytes_written,
            bytes_requested: stats.bytes_requested,
            records: stats.records,
            calls_per_sec: per_sec(calls),
            bytes_per_sec: per_sec(stats.bytes_written),
            bytes_per_call: Quantiles::of(&stats.bytes_hist),
            mean_bytes_per_call: per_call(stats.bytes_requested),
            median_bytes_per_call: Log2Histogram::new(&stats.bytes_hist).median(stats.bytes_requested),
            records_per_call: Quantiles::of(&stats.records_hist),
            mean_records_per_call: per_call(stats.records),
            median_records_per_call: Log2Histogram::new(&stats.records_hist).median(stats.records),
            gap_ns: Quantiles::of(&stats.gap_hist),
            drops: Drops::of(stats),
            transition_cores: transition.cores(per_sec(calls)),
            saving_cores: transition.saving(per_sec(calls), per_sec(stats.records)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Write;

    /// `calls` calls of `records` records totalling `bytes` each.
    fn writes(calls: u64, records: u64, bytes: u64) -> WriteStats {
        Write { calls, records, bytes, gap_ns: 1000, eagain: 0 }.stats()
    }

    #[test]
    fn rates_sizes_and_costs() {
        let transition = Transition { cost_ns: 200.0, batch_target: 64 };
        let m = BatchingMetrics::of(&writes(10_000, 1, 100), 2.0, &transition);
        assert_eq!(m.calls_per_sec, 5000.0);
        assert_eq!(m.bytes_per_sec, 500_000.0);
        assert_eq!(m.bytes_per_call, Some(Quantiles { p50: 128, p99: 128 }));
        assert_eq!(m.records_per_call, Some(Quantiles { p50: 1, p99: 1 }));
        assert_eq!(m.mean_bytes_per_call, 100.0);
        assert_eq!((m.median_bytes_per_call, m.median_records_per_call), (Some(100.0), Some(1.0)));
        assert!((m.transition_cores - 0.001).abs() < 1e-12);
        // 5000 records/s at 64 per call would be 78.125 calls/s.
        assert!((m.saving_cores - (5000.0 - 78.125) * 200e-9).abs() < 1e-12);
    }

    #[test]
    fn already_batched_saves_nothing() {
        let transition = Transition { cost_ns: 200.0, batch_target: 64 };
        let m = BatchingMetrics::of(&writes(100, 128, 65536), 1.0, &transition);
        assert_eq!(m.saving_cores, 0.0);
        assert_eq!(m.mean_records_per_call, 128.0);
    }

    #[test]
    fn drops_by_reason() {
        let mut s = WriteStats::ZERO;
        s.outcomes = [5, 1, 2, 3, 4, 6];
        let d = Drops::of(&s);
        assert_eq!((d.short_write, d.eagain, d.epipe, d.enobufs, d.other_error), (1, 2, 3, 4, 6));
        assert_eq!(d.total(), 16);
    }
}
