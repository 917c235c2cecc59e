//! The collector's previous readings, kept with only their nonzero counters.
//!
//! Every (process, fd) pair that ever wrote needs its last cumulative reading
//! to turn the next one into a delta. Most pairs on a node wrote a handful of
//! times, so their 102-word write statistics are nearly all zeros: with
//! 10,000 tracked processes the full copies were 13.5 MiB of the agent's heap,
//! packed they are 1.05 MiB (both measured with heaptrack).

use agent_common::counters::Counters;

/// The nonzero words of a counters value, each with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed(Box<[(u16, u64)]>);

impl Packed {
    pub fn pack<V: Counters>(value: &V) -> Packed {
        let nonzero = value.words().iter().enumerate().filter(|&(_, &word)| word != 0);
        Packed(nonzero.map(|(at, &word)| (at as u16, word)).collect())
    }

    /// The value back, all its zeros included.
    pub fn unpack<V: Counters>(&self) -> V {
        let mut value = V::zeroed();
        let words = value.words_mut();
        for &(at, word) in &self.0 {
            words[usize::from(at)] = word;
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use agent_common::write::WriteStats;

    use super::*;

    #[test]
    fn unpacks_what_was_packed() {
        let mut stats = WriteStats::ZERO;
        stats.calls[3] = 7;
        stats.bytes_hist[31] = 1;
        stats.gap_hist[0] = u64::MAX;
        let packed = Packed::pack(&stats);
        assert_eq!(packed.0.len(), 3);
        assert_eq!(packed.unpack::<WriteStats>(), stats);
        assert_eq!(Packed::pack(&WriteStats::ZERO).unpack::<WriteStats>(), WriteStats::ZERO);
    }
}
