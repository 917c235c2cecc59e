//! Log2 histogram slots, the one bucketing rule both sides agree on.
//!
//! Slot 0 holds the value 0; slot `k >= 1` holds values in `[2^(k-1), 2^k)`.
//! The last slot of a histogram also takes every larger value.

/// Slot of `value` in a log2 histogram with `slots` slots.
#[inline(always)]
pub const fn log2_slot(value: u64, slots: usize) -> usize {
    let slot = (u64::BITS - value.leading_zeros()) as usize;
    if slot < slots { slot } else { slots - 1 }
}

/// Smallest value that lands in `slot`.
pub const fn slot_lower_bound(slot: usize) -> u64 {
    if slot == 0 { 0 } else { 1 << (slot - 1) }
}

/// Largest value that lands in `slot` (for every slot but a histogram's last).
pub const fn slot_upper_bound(slot: usize) -> u64 {
    if slot == 0 { 0 } else { (1 << slot) - 1 }
}
