//! Durability: the sync family (`fsync`, `fdatasync`, `sync_file_range`,
//! `msync`, `syncfs`, `sync`, and io_uring's `FSYNC` and `SYNC_FILE_RANGE`
//! requests), how their results are classified, and the per-(process, fd)
//! statistics the probes aggregate.
//!
//! Syncs are rare and slow next to writes, so their statistics live in one
//! map shared by all CPUs, updated with atomic adds: its memory does not grow
//! with the number of CPUs.

/// Slots of the latency and between-syncs histograms, in nanoseconds: the
/// last slot takes every one above `2^37` ns (about 2.3 minutes).
pub const NS_SLOTS: usize = 40;
/// Slots of the writes-per-sync histogram: the last takes every batch above
/// `2^18` (262,144 writes).
pub const WRITES_SLOTS: usize = 21;
/// Slots of the bytes-per-sync histogram: the last takes every batch above
/// `2^37` B (128 GiB).
pub const BYTES_SLOTS: usize = 40;

/// The pseudo-descriptor under which a process's `sync` and `syncfs` calls
/// are counted: they make a whole filesystem (or all of them) durable, not
/// one descriptor.
pub const PROCESS_WIDE_FD: i32 = -1;
/// The pseudo-descriptor of `msync`, which names a memory range: finding
/// the file behind it would cost a walk of the process's mappings.
pub const MAPPED_MEMORY_FD: i32 = -2;
/// The pseudo-descriptor of io_uring sync requests: the submission
/// tracepoint names the ring, not the file.
pub const IO_URING_FD: i32 = -3;

indexed_enum! {
    /// The traced sync calls. The discriminant indexes [`SyncStats::calls`];
    /// the name is the syscall's, or the io_uring opcode's.
    pub enum SyncCall {
        Fsync = 0 => "fsync",
        Fdatasync = 1 => "fdatasync",
        SyncFileRange = 2 => "sync_file_range",
        Msync = 3 => "msync",
        Syncfs = 4 => "syncfs",
        Sync = 5 => "sync",
        /// `IORING_OP_FSYNC` (with or without `IORING_FSYNC_DATASYNC`).
        UringFsync = 6 => "io_uring_fsync",
        /// `IORING_OP_SYNC_FILE_RANGE`.
        UringSyncFileRange = 7 => "io_uring_sync_file_range",
        /// A write to a descriptor opened `O_SYNC` or `O_DSYNC`, which the
        /// kernel makes durable before it returns: counted by the agent (from
        /// the descriptor's flags), never by the probes.
        DsyncWrite = 8 => "o_dsync_write",
    }
}

impl SyncCall {
    /// `IORING_OP_FSYNC` and `IORING_OP_SYNC_FILE_RANGE` in `io_uring.h`.
    pub const URING_OP_FSYNC: u8 = 3;
    pub const URING_OP_SYNC_FILE_RANGE: u8 = 8;

    /// The sync call an io_uring opcode makes, if it makes one.
    #[inline(always)]
    pub const fn of_uring_op(opcode: u8) -> Option<SyncCall> {
        match opcode {
            Self::URING_OP_FSYNC => Some(Self::UringFsync),
            Self::URING_OP_SYNC_FILE_RANGE => Some(Self::UringSyncFileRange),
            _ => None,
        }
    }
}

indexed_enum! {
    /// How a sync call ended. The discriminant indexes [`SyncStats::outcomes`].
    /// Every failure is a drop of the worst kind: data the caller believes
    /// durable may not be.
    pub enum SyncOutcome {
        Ok = 0 => "ok",
        /// `EIO`: the device failed to write back; the dirty pages may be lost.
        Eio = 1 => "eio",
        /// `EINVAL`: the descriptor cannot be synced (a pipe, a socket).
        Einval = 2 => "einval",
        /// `ENOSPC` or `EDQUOT`: no room to write back.
        NoSpace = 3 => "enospc",
        /// Any other error.
        OtherError = 4 => "other_error",
    }
}

impl SyncOutcome {
    const EIO: i64 = 5;
    const EINVAL: i64 = 22;
    const ENOSPC: i64 = 28;
    const EDQUOT: i64 = 122;

    #[inline(always)]
    pub const fn classify(ret: i64) -> SyncOutcome {
        if ret >= 0 {
            return Self::Ok;
        }
        match -ret {
            Self::EIO => Self::Eio,
            Self::EINVAL => Self::Einval,
            Self::ENOSPC | Self::EDQUOT => Self::NoSpace,
            _ => Self::OtherError,
        }
    }
}

/// What the probes aggregate per (process, fd), shared by all CPUs and
/// updated with atomic adds. All counters are cumulative since the entry
/// was created; the agent turns them into deltas.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncStats {
    /// Calls per sync call, indexed by [`SyncCall`].
    pub calls: [u64; SyncCall::COUNT],
    /// Calls per outcome, indexed by [`SyncOutcome`].
    pub outcomes: [u64; SyncOutcome::COUNT],
    /// Calls whose duration is known (their entry was seen), and the sum
    /// of those durations.
    pub timed: u64,
    pub latency_ns_total: u64,
    /// Log2 histogram of each sync's duration, entry to exit, in ns.
    pub latency_hist: [u64; NS_SLOTS],
    /// Write-family calls and bytes written on the descriptor since its
    /// previous sync, summed over syncs: what the syncs made durable.
    pub writes: u64,
    pub bytes: u64,
    /// Log2 histograms of the same per sync.
    pub writes_hist: [u64; WRITES_SLOTS],
    pub bytes_hist: [u64; BYTES_SLOTS],
    /// Sum of the gaps in `gap_hist`, in ns.
    pub gap_ns_total: u64,
    /// Log2 histogram of the time since the previous sync of the descriptor.
    pub gap_hist: [u64; NS_SLOTS],
}

impl SyncStats {
    pub const ZERO: SyncStats = SyncStats {
        calls: [0; SyncCall::COUNT],
        outcomes: [0; SyncOutcome::COUNT],
        timed: 0,
        latency_ns_total: 0,
        latency_hist: [0; NS_SLOTS],
        writes: 0,
        bytes: 0,
        writes_hist: [0; WRITES_SLOTS],
        bytes_hist: [0; BYTES_SLOTS],
        gap_ns_total: 0,
        gap_hist: [0; NS_SLOTS],
    };

    /// All calls, whatever the call.
    pub fn total_calls(&self) -> u64 {
        self.calls.iter().sum()
    }

    /// Calls that failed (io_uring requests have no outcome here: their
    /// failures are the ring's failed completions).
    pub fn errors(&self) -> u64 {
        self.outcomes[SyncOutcome::Ok as usize + 1..].iter().sum()
    }
}

// Not derived: arrays of more than 32 words have no `Default`.
impl Default for SyncStats {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Where a descriptor's previous sync left it: not counters, so kept apart
/// from [`SyncStats`], under the same keys.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncMark {
    /// When the previous sync ended (kernel monotonic ns).
    pub at_ns: u64,
    /// The descriptor's write calls and bytes written (its
    /// [`crate::write::WriteStats`]) at that sync.
    pub writes: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
mod user {
    use super::{SyncMark, SyncStats};

    // SAFETY: `#[repr(C)]`, `Copy`, made of `u64`s, valid for any bit pattern.
    unsafe impl aya::Pod for SyncStats {}
    unsafe impl aya::Pod for SyncMark {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_from_results() {
        assert_eq!(SyncOutcome::classify(0), SyncOutcome::Ok);
        assert_eq!(SyncOutcome::classify(-5), SyncOutcome::Eio);
        assert_eq!(SyncOutcome::classify(-22), SyncOutcome::Einval);
        assert_eq!(SyncOutcome::classify(-122), SyncOutcome::NoSpace);
        assert_eq!(SyncOutcome::classify(-9), SyncOutcome::OtherError);
    }

    #[test]
    fn uring_opcodes() {
        assert_eq!(SyncCall::of_uring_op(3), Some(SyncCall::UringFsync));
        assert_eq!(SyncCall::of_uring_op(8), Some(SyncCall::UringSyncFileRange));
        assert_eq!(SyncCall::of_uring_op(23), None);
    }
}
