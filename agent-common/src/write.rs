//! The write family: which syscalls, how their results are classified, and
//! the per-(process, fd) statistics the probes aggregate.

/// Number of slots of the bytes-per-call histogram: a single write moves at
/// most `0x7ffff000` bytes, which lands in slot 32, `(2^30, 2^31]`, so 33
/// slots never saturate.
pub const BYTES_SLOTS: usize = 33;
/// Number of slots of the records-per-call histogram: `IOV_MAX` and
/// `UIO_MAXIOV` are 1024, which lands in slot 11.
pub const RECORDS_SLOTS: usize = 12;
/// Number of slots of the gap histogram, in nanoseconds: the last slot takes
/// every gap above `2^37` ns (about 2.3 minutes).
pub const GAP_SLOTS: usize = 40;

/// The most iovecs (or mmsghdrs) one call may carry, and so the most the
/// probes read per call: the kernel's `UIO_MAXIOV`. A larger `iovcnt` fails
/// with `EINVAL`; a larger `sendmmsg` `vlen` is cut to it.
pub const MAX_RECORDS_PER_CALL: u64 = 1024;

/// The most bytes one call may move: the kernel's `MAX_RW_COUNT`
/// (`INT_MAX & PAGE_MASK` with 4 KiB pages). The kernel cuts larger
/// requests to it, so a count above it (say `SIZE_MAX` from a buggy caller)
/// is clamped here before it is added to a cumulative counter.
pub const MAX_BYTES_PER_CALL: u64 = 0x7fff_f000;

indexed_enum! {
    /// The traced write-family syscalls. The discriminant indexes
    /// [`WriteStats::calls`]; the name is the syscall's, as in its
    /// tracepoint `sys_exit_<name>`.
    pub enum WriteSyscall {
        Write = 0 => "write",
        Writev = 1 => "writev",
        Pwrite64 = 2 => "pwrite64",
        Pwritev = 3 => "pwritev",
        Pwritev2 = 4 => "pwritev2",
        Sendto = 5 => "sendto",
        Sendmsg = 6 => "sendmsg",
        Sendmmsg = 7 => "sendmmsg",
    }
}

indexed_enum! {
    /// How a write call ended. The discriminant indexes [`WriteStats::outcomes`].
    pub enum Outcome {
        /// Everything requested was written.
        Complete = 0 => "complete",
        /// Fewer bytes (or, for `sendmmsg`, fewer messages) than requested.
        Short = 1 => "short_write",
        /// `EAGAIN`/`EWOULDBLOCK`: a non-blocking writer must drop or retry.
        WouldBlock = 2 => "eagain",
        /// `EPIPE` or `ECONNRESET`: the reader is gone.
        BrokenPipe = 3 => "epipe",
        /// `ENOBUFS`: the kernel had no buffer space.
        NoBuffers = 4 => "enobufs",
        /// Any other error.
        OtherError = 5 => "other_error",
    }
}

impl Outcome {
    const EAGAIN: i64 = 11;
    const EPIPE: i64 = 32;
    const ECONNRESET: i64 = 104;
    const ENOBUFS: i64 = 105;

    /// Classifies a call from its return value and what it asked for:
    /// `done` and `wanted` are in bytes, or in messages for `sendmmsg`.
    #[inline(always)]
    pub const fn classify(ret: i64, wanted: u64) -> Outcome {
        if ret >= 0 {
            if (ret as u64) < wanted { Self::Short } else { Self::Complete }
        } else {
            match -ret {
                Self::EAGAIN => Self::WouldBlock,
                Self::EPIPE | Self::ECONNRESET => Self::BrokenPipe,
                Self::ENOBUFS => Self::NoBuffers,
                _ => Self::OtherError,
            }
        }
    }
}

/// What the probes aggregate per (process, fd), in one entry shared by all
/// CPUs (every counter added to atomically). All counters are
/// cumulative since the entry was created; the agent turns them into rates.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteStats {
    /// Calls per syscall, indexed by [`WriteSyscall`].
    pub calls: [u64; WriteSyscall::COUNT],
    /// Calls per outcome, indexed by [`Outcome`].
    pub outcomes: [u64; Outcome::COUNT],
    /// Bytes the calls that did not fail asked to write (for `sendmmsg`: the
    /// bytes it sent), each call's request clamped to
    /// [`MAX_BYTES_PER_CALL`].
    pub bytes_requested: u64,
    /// Bytes the calls did write.
    pub bytes_written: u64,
    /// Records the calls that did not fail carried: 1 per plain write,
    /// iovecs per vectored write, messages sent per `sendmmsg`.
    pub records: u64,
    /// Bytes the failed calls (a negative result) asked to write, clamped as
    /// `bytes_requested` is. Apart, so that a call the kernel refused (even
    /// `write(fd, NULL, SIZE_MAX)`) moves neither the batch sizes nor the
    /// bytes asked of calls that went through. `sendmmsg` adds 0: its byte
    /// counts are only known for messages sent.
    pub failed_bytes_requested: u64,
    /// Records the failed calls carried (requested `iovcnt`, or `vlen` for
    /// `sendmmsg`), at most [`MAX_RECORDS_PER_CALL`] each.
    pub failed_records: u64,
    /// Sum of the gaps in `gap_hist`, in nanoseconds.
    pub gap_ns_total: u64,
    /// Log2 histogram of bytes requested per call that did not fail.
    pub bytes_hist: [u64; BYTES_SLOTS],
    /// Log2 histogram of records per call that did not fail.
    pub records_hist: [u64; RECORDS_SLOTS],
    /// Log2 histogram of nanoseconds since the previous call on the same fd.
    pub gap_hist: [u64; GAP_SLOTS],
}

impl WriteStats {
    pub const ZERO: WriteStats = WriteStats {
        calls: [0; WriteSyscall::COUNT],
        outcomes: [0; Outcome::COUNT],
        bytes_requested: 0,
        bytes_written: 0,
        records: 0,
        failed_bytes_requested: 0,
        failed_records: 0,
        gap_ns_total: 0,
        bytes_hist: [0; BYTES_SLOTS],
        records_hist: [0; RECORDS_SLOTS],
        gap_hist: [0; GAP_SLOTS],
    };
}

/// A `WRITE_STATS` value: a pair's statistics and the probe's clock for
/// it, in the one entry a call looks up (a second map for the clock cost a
/// second hash lookup per call: 22 ns of the 244 a `write()`'s program ran,
/// measured with bpf_stats).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteEntry {
    pub stats: WriteStats,
    /// When the pair's last call ended (kernel monotonic ns; 0 before the
    /// first), swapped atomically so that each gap goes to one call.
    pub last_ns: u64,
    /// When a call last marked the pair in `LAST_WRITE` (kernel monotonic ns).
    pub marked_ns: u64,
}

impl WriteEntry {
    pub const ZERO: WriteEntry = WriteEntry { stats: WriteStats::ZERO, last_ns: 0, marked_ns: 0 };
}

/// How long a call may leave the pair's `LAST_WRITE` mark as it is: a call
/// marks the pair only when the mark is at least this old, so that most
/// calls skip that map. A mark is thus at most this much older than the
/// pair's last call, and the agent reads back that far.
pub const MARK_EVERY_NS: u64 = 50_000_000;

#[cfg(feature = "user")]
mod user {
    use super::{Outcome, WriteEntry, WriteStats};

    // SAFETY: `#[repr(C)]`, `Copy`, and valid for any bit pattern.
    unsafe impl aya::Pod for WriteStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for WriteEntry {}

    impl WriteStats {
        /// All calls, whatever the syscall.
        pub fn total_calls(&self) -> u64 {
            self.calls.iter().sum()
        }

        /// Calls that did not fail (complete or short): the calls the batch
        /// sizes, `bytes_requested` and `records` describe.
        pub fn calls_through(&self) -> u64 {
            self.outcomes[Outcome::Complete as usize] + self.outcomes[Outcome::Short as usize]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist::log2_slot;

    #[test]
    fn the_largest_call_has_a_slot_of_its_own() {
        assert_eq!(log2_slot(MAX_BYTES_PER_CALL, BYTES_SLOTS), BYTES_SLOTS - 1);
        assert_eq!(log2_slot(1 << 30, BYTES_SLOTS), BYTES_SLOTS - 2);
        assert_eq!(log2_slot(MAX_RECORDS_PER_CALL, RECORDS_SLOTS), RECORDS_SLOTS - 1);
        assert_eq!(log2_slot(MAX_RECORDS_PER_CALL / 2, RECORDS_SLOTS), RECORDS_SLOTS - 2);
    }
}
