//! The write family: which syscalls, how their results are classified, and
//! the per-(process, fd) statistics the probes aggregate.

/// Number of slots of the bytes-per-call histogram: a single write moves at
/// most `0x7ffff000` bytes, below `2^31`, so 32 slots never saturate.
pub const BYTES_SLOTS: usize = 32;
/// Number of slots of the records-per-call histogram: `IOV_MAX` and
/// `UIO_MAXIOV` are 1024, which lands in slot 11.
pub const RECORDS_SLOTS: usize = 12;
/// Number of slots of the gap histogram, in nanoseconds: the last slot starts
/// at `2^38` ns (about 4.6 minutes) and takes every longer gap.
pub const GAP_SLOTS: usize = 40;

/// The most iovecs (or mmsghdrs) one call may carry, and so the most the
/// probes read per call.
pub const MAX_RECORDS_PER_CALL: u64 = 1024;

/// The traced write-family syscalls. The discriminant indexes
/// [`WriteStats::calls`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteSyscall {
    Write = 0,
    Writev = 1,
    Pwrite64 = 2,
    Pwritev = 3,
    Pwritev2 = 4,
    Sendto = 5,
    Sendmsg = 6,
    Sendmmsg = 7,
}

impl WriteSyscall {
    pub const COUNT: usize = 8;
    pub const ALL: [WriteSyscall; Self::COUNT] = [
        Self::Write,
        Self::Writev,
        Self::Pwrite64,
        Self::Pwritev,
        Self::Pwritev2,
        Self::Sendto,
        Self::Sendmsg,
        Self::Sendmmsg,
    ];

    /// The syscall's name, as in its tracepoints `sys_exit_<name>`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Writev => "writev",
            Self::Pwrite64 => "pwrite64",
            Self::Pwritev => "pwritev",
            Self::Pwritev2 => "pwritev2",
            Self::Sendto => "sendto",
            Self::Sendmsg => "sendmsg",
            Self::Sendmmsg => "sendmmsg",
        }
    }
}

/// How a write call ended. The discriminant indexes [`WriteStats::outcomes`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything requested was written.
    Complete = 0,
    /// Fewer bytes (or, for `sendmmsg`, fewer messages) than requested.
    Short = 1,
    /// `EAGAIN`/`EWOULDBLOCK`: a non-blocking writer must drop or retry.
    WouldBlock = 2,
    /// `EPIPE` or `ECONNRESET`: the reader is gone.
    BrokenPipe = 3,
    /// `ENOBUFS`: the kernel had no buffer space.
    NoBuffers = 4,
    /// Any other error.
    OtherError = 5,
}

impl Outcome {
    pub const COUNT: usize = 6;
    pub const ALL: [Outcome; Self::COUNT] =
        [Self::Complete, Self::Short, Self::WouldBlock, Self::BrokenPipe, Self::NoBuffers, Self::OtherError];

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

    /// Name used in reports and metric attributes.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Short => "short_write",
            Self::WouldBlock => "eagain",
            Self::BrokenPipe => "epipe",
            Self::NoBuffers => "enobufs",
            Self::OtherError => "other_error",
        }
    }
}

/// What the probes aggregate per (process, fd), per CPU. All counters are
/// cumulative since the entry was created; the agent turns them into rates.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteStats {
    /// Calls per syscall, indexed by [`WriteSyscall`].
    pub calls: [u64; WriteSyscall::COUNT],
    /// Calls per outcome, indexed by [`Outcome`].
    pub outcomes: [u64; Outcome::COUNT],
    /// Bytes the calls asked to write (for `sendmmsg`: the bytes it sent).
    pub bytes_requested: u64,
    /// Bytes the calls did write.
    pub bytes_written: u64,
    /// Records the calls carried: 1 per plain write, iovecs per vectored
    /// write, messages per `sendmmsg`.
    pub records: u64,
    /// Sum of the gaps in `gap_hist`, in nanoseconds.
    pub gap_ns_total: u64,
    /// Log2 histogram of bytes requested per call.
    pub bytes_hist: [u64; BYTES_SLOTS],
    /// Log2 histogram of records per call.
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
        gap_ns_total: 0,
        bytes_hist: [0; BYTES_SLOTS],
        records_hist: [0; RECORDS_SLOTS],
        gap_hist: [0; GAP_SLOTS],
    };
}

#[cfg(feature = "user")]
mod user {
    use super::WriteStats;

    // SAFETY: `#[repr(C)]`, `Copy`, and valid for any bit pattern.
    unsafe impl aya::Pod for WriteStats {}

    impl WriteStats {
        /// All calls, whatever the syscall.
        pub fn total_calls(&self) -> u64 {
            self.calls.iter().sum()
        }
    }
}
