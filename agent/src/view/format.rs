//! How the live view writes numbers: short and in fixed units, so that a
//! column reads at a glance. Byte sizes and durations reuse the model's own
//! wording ([`human_bytes`], [`human_ns`]).

use crate::model::{
    human::{human_bytes, human_ns},
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

/// A share of a buffer's capacity, rounded down: `79%` is still under the
/// 80% alert threshold, and `100%` means full, not nearly full.
pub fn percent(percent: f64) -> String {
    format!("{:.0}%", percent.floor())
}

/// A buffer size, to a tenth below 10 of its unit: `768B`, `3.6MiB`, `208KiB`.
/// [`human_bytes`] rounds down to the unit, which would read a 3.6 MiB
/// queue in a 4 MiB buffer as 3 MiB of 4.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{}{}", amount(value), UNITS[unit])
}

/// How many, on average: `1`, `1.5`, `32`; whole numbers without a decimal,
/// so that one per call reads `1`.
pub fn amount(value: f64) -> String {
    let tenths = format!("{value:.1}");
    match tenths.strip_suffix(".0") {
        Some(whole) => whole.to_owned(),
        None if value >= 10.0 => format!("{value:.0}"),
        None => tenths,
    }
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

    #[test]
    fn depths_in_percent_and_sizes() {
        assert_eq!(percent(79.9), "79%", "under the alert threshold reads under it");
        assert_eq!(percent(100.0), "100%");
        assert_eq!(percent(104.2), "104%", "a socket can pass its limit by one write");
        assert_eq!(size(768), "768B");
        assert_eq!(size(3_774_874), "3.6MiB");
        assert_eq!(size(4 << 20), "4MiB");
        assert_eq!(size(212_992), "208KiB");
        assert_eq!(size(10_700), "10KiB");
    }

    #[test]
    fn amounts_drop_a_needless_decimal() {
        assert_eq!(amount(1.0), "1");
        assert_eq!(amount(1.04), "1");
        assert_eq!(amount(1.5), "1.5");
        assert_eq!(amount(32.0), "32");
        assert_eq!(amount(12.4), "12");
        assert_eq!(amount(0.0), "0");
    }
}
