//! Log2 histogram slots, the one bucketing rule both sides agree on.
//!
//! Slot 0 holds the value 0, slot 1 the value 1, and slot `k >= 2` the values
//! in `(2^(k-2), 2^(k-1)]`, upper bound inclusive: the buckets of a base-2
//! exponential histogram at scale 0 with a zero bucket. OpenTelemetry's
//! `ExponentialHistogram` numbers bucket `i` as `(2^i, 2^(i+1)]`, so slot `k`
//! is its bucket `k - 2`; Prometheus's native histograms (schema 0) number
//! it by its upper edge, `(2^(i-1), 2^i]`, so slot `k` is their bucket
//! `k - 1`. A power of two is the largest value of its slot. The last slot
//! of a histogram also takes every larger value.

/// Slot of `value` in a log2 histogram with `slots` slots.
///
/// It runs in the probes on every write: BPF has no count-leading-zeros
/// instruction, so this stays one subtraction away from the bit length.
#[inline(always)]
pub const fn log2_slot(value: u64, slots: usize) -> usize {
    let slot = if value == 0 { 0 } else { (u64::BITS - (value - 1).leading_zeros()) as usize + 1 };
    if slot < slots { slot } else { slots - 1 }
}

/// Bucket index of slot `slot >= 1` in a base-2 exponential histogram at
/// scale 0, whose bucket `i` holds `(2^i, 2^(i+1)]`: slot 1 (the value 1) is
/// bucket -1, slot `k` bucket `k - 2`.
pub const fn exponential_index(slot: usize) -> i32 {
    slot as i32 - 2
}

/// Smallest value that lands in `slot`.
pub const fn slot_lower_bound(slot: usize) -> u64 {
    if slot < 2 { slot as u64 } else { (1 << (slot - 2)) + 1 }
}

/// Largest value that lands in `slot` (for every slot but a histogram's
/// last): its upper bound, inclusive, a power of two from slot 1 on.
pub const fn slot_upper_bound(slot: usize) -> u64 {
    if slot < 2 { slot as u64 } else { 1 << (slot - 1) }
}
