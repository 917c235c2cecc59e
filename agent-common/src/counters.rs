//! Structs made only of `u64` counters, added and differenced word by word:
//! merging CPUs, descriptors or intervals, and turning cumulative readings
//! into deltas, is the same loop for every one of them.

use core::{mem, slice};

/// A struct of `u64` counters.
///
/// # Safety
/// Implementors are `#[repr(C)]` and contain only `u64`s (fields or arrays),
/// so they are exactly a `[u64; size_of::<Self>() / 8]` with no padding.
pub unsafe trait Counters: Copy {
    /// Every counter zero.
    fn zeroed() -> Self {
        // SAFETY: all zero bytes are a valid struct of `u64`s (the trait's contract).
        unsafe { mem::zeroed() }
    }

    fn words(&self) -> &[u64] {
        // SAFETY: guaranteed by the trait's contract.
        unsafe { slice::from_raw_parts((self as *const Self).cast(), mem::size_of::<Self>() / 8) }
    }

    fn words_mut(&mut self) -> &mut [u64] {
        // SAFETY: guaranteed by the trait's contract.
        unsafe { slice::from_raw_parts_mut((self as *mut Self).cast(), mem::size_of::<Self>() / 8) }
    }

    /// Adds `other` into `self`.
    fn add(&mut self, other: &Self) {
        for (a, b) in self.words_mut().iter_mut().zip(other.words()) {
            *a = a.wrapping_add(*b);
        }
    }

    /// What happened between an earlier reading `before` and `self`.
    fn since(&self, before: &Self) -> Self {
        let mut delta = *self;
        for (a, b) in delta.words_mut().iter_mut().zip(before.words()) {
            *a = a.wrapping_sub(*b);
        }
        delta
    }

    /// Whether every counter is zero.
    fn is_zero(&self) -> bool {
        self.words().iter().all(|&w| w == 0)
    }
}

/// A map value the agent turns into deltas: its counters, and whatever
/// else the probes keep beside them for themselves (such as a clock).
pub trait MapValue: Copy {
    type Counters: Counters;

    fn counters(&self) -> Self::Counters;
}

/// Declares `Counters` for structs of `u64`s, checking their size and
/// alignment; such a map value is its counters.
macro_rules! counters {
    ($($t:ty),*) => {$(
        const _: () = assert!(mem::size_of::<$t>() % 8 == 0 && mem::align_of::<$t>() == 8);
        // SAFETY: every field of these types is a u64 or an array of u64.
        unsafe impl Counters for $t {}

        impl MapValue for $t {
            type Counters = $t;

            fn counters(&self) -> $t {
                *self
            }
        }
    )*};
}

impl MapValue for crate::write::WriteEntry {
    type Counters = crate::write::WriteStats;

    fn counters(&self) -> crate::write::WriteStats {
        self.stats
    }
}

counters!(
    u64,
    crate::write::WriteStats,
    crate::io_uring::EnterStats,
    crate::io_uring::RingOpStats,
    crate::io_uring::SetupStats,
    crate::sync::SyncStats
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::WriteStats;

    #[test]
    fn adds_and_differences_every_field() {
        let mut a = WriteStats::ZERO;
        a.calls[7] = 5;
        a.gap_hist[39] = 2;
        a.records = 9;
        let mut b = a;
        b.add(&a);
        assert_eq!((b.calls[7], b.gap_hist[39], b.records), (10, 4, 18));
        let d = b.since(&a);
        assert_eq!(d, a);
        assert!(a.since(&a).is_zero());
    }
}
