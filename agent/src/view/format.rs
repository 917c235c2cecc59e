//! How the live view writes numbers: short and in fixed units, so that a
//! column reads at a glance. Byte sizes and durations reuse the model's own
//! wording ([`human_bytes`], [`human_ns`]).

use crate::model::{
    classify::{human_bytes, human_ns},
    metrics::{BatchingMetrics, Quantiles},
};

/// What a cell shows when there is nothing to show.
pub const NONE: &str = "-";

/// A rate per second: `999`, `12.3k`, `1.2M`.
pub fn rate(per_sec: f64) -> String {
    // The thresholds sit where rounding to one decimal would carry over, so
    // 999.7 reads `1.0k` rather than `1000`.
    match per_sec {
        r if r >= 999_950.0 => format!("{:.1}M", r / 1e6),
        r if r >= 999.5 => format!("{:.1}k", r / 1e3),
        r => format!("{r:.0}"),
    }
}

/// Cores, to a thousandth: a tenth of a core and a millicore both matter.
pub fn cores(cores: f64) -> String {
    format!("{cores:.3}")
}

/// Bytes per call as `p50/p99`.
pub fn bytes_quantiles(q: Option<Quantiles>) -> String {
    quantiles(q, human_bytes)
}

/// Time between calls as `p50/p99`.
pub fn gap_quantiles(q: Option<Quantiles>) -> String {
    quantiles(q, human_ns)
}

fn quantiles(q: Option<Quantiles>, unit: fn(u64) -> String) -> String {
    q.map_or_else(|| NONE.to_owned(), |q| format!("{}/{}", unit(q.p50), unit(q.p99)))
}

/// Records per call: the exact mean, since the log2 median of a batcher
/// that sends 40 records a call would read 32.
pub fn records_per_call(m: &BatchingMetrics) -> String {
    if m.calls == 0 { NONE.to_owned() } else { format!("{:.1}", m.mean_records_per_call) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_carry_k_and_m_suffixes() {
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(999.4), "999");
        assert_eq!(rate(999.7), "1.0k");
        assert_eq!(rate(12_345.0), "12.3k");
        assert_eq!(rate(999_949.0), "999.9k");
        assert_eq!(rate(1_234_567.0), "1.2M");
    }

    #[test]
    fn quantiles_in_their_units() {
        assert_eq!(bytes_quantiles(Some(Quantiles { p50: 64, p99: 4096 })), "64 B/4 KiB");
        assert_eq!(gap_quantiles(Some(Quantiles { p50: 512, p99: 16_384 })), "512ns/16.4µs");
        assert_eq!(bytes_quantiles(None), "-");
    }

    #[test]
    fn cores_and_records() {
        assert_eq!(cores(0.0504), "0.050");
        let m = BatchingMetrics { calls: 4, mean_records_per_call: 40.0, ..Default::default() };
        assert_eq!(records_per_call(&m), "40.0");
        assert_eq!(records_per_call(&BatchingMetrics::default()), "-");
    }
}
