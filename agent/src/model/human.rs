//! Durations and byte sizes in words, as the verdicts' reasons and the views
//! print them.

/// `1500000` → `1.5ms`.
pub fn human_ns(ns: u64) -> String {
    let ns = ns as f64;
    match ns {
        n if n >= 1e9 => format!("{:.3}s", n / 1e9),
        n if n >= 1e6 => format!("{:.1}ms", n / 1e6),
        n if n >= 1e3 => format!("{:.1}µs", n / 1e3),
        n => format!("{n:.0}ns"),
    }
}

/// `65536` → `64 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}
