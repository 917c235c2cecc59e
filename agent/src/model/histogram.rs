//! Reading the kernel's log2 histograms: counts, percentiles, bucket bounds.
//!
//! A percentile is reported as the upper edge of the log2 bucket that holds
//! it, the bucket's `le` in Prometheus's words: the true value lies in
//! `(p/2, p]` (exactly `p` for 0 and 1), and a writer of one power-of-two
//! size (4096 B) reads as exactly that size. Exact
//! means come from the separate byte and record totals. The verdicts use
//! [`Log2Histogram::median`], which uses those totals to be exact where it
//! can and interpolates where it cannot.

use agent_common::hist::{exponential_index, slot_lower_bound, slot_upper_bound};

/// A log2 histogram borrowed from a `WriteStats`.
#[derive(Debug, Clone, Copy)]
pub struct Log2Histogram<'a> {
    slots: &'a [u64],
}

impl<'a> Log2Histogram<'a> {
    pub fn new(slots: &'a [u64]) -> Self {
        Log2Histogram { slots }
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.slots.iter().sum()
    }

    /// Slot holding the `q`-quantile (0 < q <= 1), or `None` when empty.
    pub fn quantile_slot(&self, q: f64) -> Option<usize> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        // The rank of the q-quantile, 1-based: the smallest sample with at
        // least q of all samples at or below it.
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        self.slots.iter().position(|&n| {
            seen += n;
            seen >= rank
        })
    }

    /// Upper edge, inclusive, of the bucket holding the `q`-quantile (for the
    /// last, open bucket: its least value).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let last = self.slots.len() - 1;
        self.quantile_slot(q).map(|slot| if slot == last { slot_lower_bound(slot) } else { slot_upper_bound(slot) })
    }

    /// The median value, given `sum`, the exact total of all samples. When
    /// every sample lies in one bucket it is the exact mean: the true value
    /// when the samples are all one size (a writer's usual case), and inside
    /// that bucket whatever they are. Otherwise it is interpolated linearly
    /// inside the median's bucket, assuming its samples spread evenly.
    pub fn median(&self, sum: u64) -> Option<f64> {
        let count = self.count();
        let slot = self.quantile_slot(0.5)?;
        if self.slots[slot] == count {
            // Clamped to the bucket: the map is read while probes on other
            // CPUs update it, so an interval's sum and its slots can be one
            // call apart, and the mean of 1-record calls read as 1.00001.
            let mean = sum as f64 / count as f64;
            let upper = if slot == self.slots.len() - 1 { f64::INFINITY } else { slot_upper_bound(slot) as f64 };
            return Some(mean.clamp(slot_lower_bound(slot) as f64, upper));
        }
        let below: u64 = self.slots[..slot].iter().sum();
        if slot < 2 || slot == self.slots.len() - 1 {
            // One value (0 or 1), or an open end with no upper edge to reach for.
            return Some(slot_lower_bound(slot) as f64);
        }
        // The median's rank, 0.5-based, within its bucket of `n` samples
        // that spread evenly over `(lower - 1, upper]`.
        let rank = count as f64 / 2.0 - below as f64;
        let open_lower = (slot_lower_bound(slot) - 1) as f64;
        let width = slot_upper_bound(slot) as f64 - open_lower;
        Some(open_lower + width * (rank / self.slots[slot] as f64))
    }

    /// Slot with the most samples (the lowest one on a tie).
    pub fn mode_slot(&self) -> Option<usize> {
        let max = *self.slots.iter().max()?;
        (max > 0).then(|| self.slots.iter().position(|&n| n == max)).flatten()
    }

    /// Share of samples in `slot`.
    pub fn share(&self, slot: usize) -> f64 {
        let count = self.count();
        if count == 0 { 0.0 } else { self.slots[slot] as f64 / count as f64 }
    }

    /// Highest slot with a sample.
    pub fn max_slot(&self) -> Option<usize> {
        self.slots.iter().rposition(|&n| n > 0)
    }

    /// The slots from 1 on as the positive buckets of a base-2 exponential
    /// histogram at scale 0 (`agent_common::hist`): the bucket index of the
    /// first slot that holds samples, and the counts from it to the last
    /// that does; `(0, [])` when none does. Slot 0 is the zero bucket.
    pub fn exponential_buckets(&self) -> (i32, &'a [u64]) {
        let positive = &self.slots[1..];
        match (positive.iter().position(|&n| n > 0), positive.iter().rposition(|&n| n > 0)) {
            (Some(first), Some(last)) => (exponential_index(first + 1), &positive[first..=last]),
            _ => (0, &[]),
        }
    }

    /// `(lower, upper, count)` for every slot; `upper` is `None` for the last,
    /// open-ended slot.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, Option<u64>, u64)> + 'a {
        let last = self.slots.len() - 1;
        self.slots
            .iter()
            .enumerate()
            .map(move |(slot, &n)| (slot_lower_bound(slot), (slot < last).then(|| slot_upper_bound(slot)), n))
    }
}

#[cfg(test)]
mod tests {
    use agent_common::hist::log2_slot;

    use super::*;

    fn hist_of(values: &[u64]) -> [u64; 16] {
        let mut slots = [0; 16];
        for &v in values {
            slots[log2_slot(v, 16)] += 1;
        }
        slots
    }

    #[test]
    fn slots_are_log2_buckets() {
        assert_eq!(log2_slot(0, 16), 0);
        assert_eq!(log2_slot(1, 16), 1);
        assert_eq!(log2_slot(2, 16), 2);
        assert_eq!(log2_slot(3, 16), 3);
        assert_eq!(log2_slot(4, 16), 3);
        assert_eq!(log2_slot(5, 16), 4);
        assert_eq!(log2_slot(4096, 16), 13);
        assert_eq!(log2_slot(4097, 16), 14);
        assert_eq!(log2_slot(8192, 16), 14);
        assert_eq!(log2_slot(u64::MAX, 16), 15);
        assert_eq!(log2_slot(u64::MAX, 66), 65);
        assert_eq!(log2_slot(1 << 63, 66), 64);
        for slot in 0..15 {
            assert_eq!(log2_slot(slot_lower_bound(slot), 16), slot);
            assert_eq!(log2_slot(slot_upper_bound(slot), 16), slot);
        }
    }

    #[test]
    fn quantiles_pick_the_bucket_of_the_rank() {
        let slots = hist_of(&[1, 1, 1, 100, 100, 100, 100, 4096, 5000, 9000]);
        let h = Log2Histogram::new(&slots);
        assert_eq!(h.count(), 10);
        assert_eq!(h.quantile(0.3), Some(1));
        assert_eq!(h.quantile(0.5), Some(128));
        assert_eq!(h.quantile(0.7), Some(128));
        assert_eq!(h.quantile(0.8), Some(4096));
        assert_eq!(h.quantile(0.9), Some(8192));
        // The last, open bucket has no upper edge: its least value.
        assert_eq!(h.quantile(0.99), Some(8193));
        assert_eq!(h.mode_slot(), Some(8));
        assert_eq!(h.max_slot(), Some(15));
        assert!((h.share(8) - 0.4).abs() < 1e-9);
    }

    #[test]
    fn a_median_in_one_bucket_is_the_exact_mean() {
        // writev([4 B header, 20 B payload]): 24 B, in the bucket (16, 32].
        let slots = hist_of(&[24; 1000]);
        assert_eq!(Log2Histogram::new(&slots).median(24_000), Some(24.0));
        // 600 B calls sit in (512, 1024]: the median is 600, not 1024.
        let slots = hist_of(&[600; 10]);
        assert_eq!(Log2Histogram::new(&slots).median(6000), Some(600.0));
        // A sum read one call ahead of the slots stays inside the bucket.
        let mut ones = [0; 16];
        ones[1] = 100_000;
        assert_eq!(Log2Histogram::new(&ones).median(100_001), Some(1.0));
    }

    #[test]
    fn a_median_across_buckets_is_interpolated_in_its_bucket() {
        // 4 samples of 1, 6 in (64, 128]: the median (rank 5 of 10) is the
        // first sixth of the way into (64, 128].
        let slots = hist_of(&[1, 1, 1, 1, 100, 100, 100, 100, 100, 100]);
        let median = Log2Histogram::new(&slots).median(604).unwrap();
        assert!((median - (64.0 + 64.0 / 6.0)).abs() < 1e-9, "{median}");
        assert_eq!(Log2Histogram::new(&[0; 16]).median(0), None);
    }

    #[test]
    fn empty_has_no_quantile() {
        let slots = [0; 16];
        let h = Log2Histogram::new(&slots);
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.mode_slot(), None);
        assert_eq!(h.share(3), 0.0);
    }

    #[test]
    fn exponential_buckets_run_from_the_first_to_the_last_filled_slot() {
        let slots = hist_of(&[0, 3, 4, 100]);
        // 3 and 4 in (2, 4], index 1; 100 in (64, 128], index 6.
        assert_eq!(Log2Histogram::new(&slots).exponential_buckets(), (1, &[2, 0, 0, 0, 0, 1][..]));
        assert_eq!(Log2Histogram::new(&hist_of(&[1])).exponential_buckets(), (-1, &[1][..]));
        assert_eq!(Log2Histogram::new(&hist_of(&[0, 0])).exponential_buckets(), (0, &[][..]));
    }

    #[test]
    fn buckets_have_bounds_and_an_open_end() {
        let slots = hist_of(&[0, 3, 1 << 40]);
        let buckets: Vec<_> = Log2Histogram::new(&slots).buckets().collect();
        assert_eq!(buckets[0], (0, Some(0), 1));
        assert_eq!(buckets[3], (3, Some(4), 1));
        assert_eq!(buckets[15], ((1 << 13) + 1, None, 1));
    }
}
