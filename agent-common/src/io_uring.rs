//! io_uring: rings, submissions and completions, aggregated per ring.
//!
//! Three views of a ring, joined by the agent:
//! - `io_uring_enter` calls, keyed by (tgid, ring fd): what the syscall sees;
//! - SQEs and CQEs, keyed by (tgid, ring context): what the ring sees, even
//!   when the SQPOLL thread submits with no syscall at all;
//! - the ring's set-up, keyed by its context, which ties the two together.

/// Slots of the SQEs-per-enter histogram: a ring has at most 32768 SQ
/// entries, which lands in slot 17, `(2^14, 2^15]`.
pub const SUBMIT_SLOTS: usize = 18;

/// `IORING_SETUP_SQPOLL`.
pub const SETUP_SQPOLL: u32 = 1 << 1;
/// `io_uring_enter` flags.
pub const ENTER_GETEVENTS: u64 = 1 << 0;
pub const ENTER_SQ_WAKEUP: u64 = 1 << 1;
/// `IORING_ENTER_REGISTERED_RING`: the first argument is the index of a ring
/// registered with `IORING_REGISTER_RING_FDS`, not a descriptor.
pub const ENTER_REGISTERED_RING: u64 = 1 << 4;

/// What `io_uring_enter` calls on one ring fd did (one entry shared by all CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnterStats {
    pub enters: u64,
    /// Enters that asked to wait for completions (`IORING_ENTER_GETEVENTS`).
    pub getevents: u64,
    /// Enters that woke the SQPOLL thread (`IORING_ENTER_SQ_WAKEUP`).
    pub sq_wakeups: u64,
    /// Enters that failed.
    pub errors: u64,
    /// Enters that asked to submit (`to_submit > 0`); the others only wait.
    pub submitting: u64,
    /// Sum of their non-negative results: SQEs submitted, except on SQPOLL
    /// rings, where the kernel returns what was asked to submit.
    pub submitted: u64,
    /// Log2 histogram of SQEs submitted per submitting enter: the batch size.
    pub submitted_hist: [u64; SUBMIT_SLOTS],
}

impl EnterStats {
    pub const ZERO: EnterStats = EnterStats {
        enters: 0,
        getevents: 0,
        sq_wakeups: 0,
        errors: 0,
        submitting: 0,
        submitted: 0,
        submitted_hist: [0; SUBMIT_SLOTS],
    };
}

/// A ring context seen from one process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RingKey {
    pub tgid: u32,
    pub _pad: u32,
    /// The kernel's `struct io_ring_ctx` address: an opaque ring id.
    pub ctx: u64,
}

indexed_enum! {
    /// Opcode classes of submitted SQEs; the discriminant indexes
    /// [`RingOpStats::sqes_by_class`].
    pub enum OpClass {
        Write = 0 => "write",
        Read = 1 => "read",
        Other = 2 => "other",
    }
}

impl OpClass {
    /// The class of an `IORING_OP_*` opcode (numbers from `io_uring.h`).
    #[inline(always)]
    pub const fn of(opcode: u8) -> OpClass {
        match opcode {
            // WRITEV, WRITE_FIXED, SENDMSG, WRITE, SEND, SEND_ZC, SENDMSG_ZC, WRITEV_FIXED
            2 | 5 | 9 | 23 | 26 | 47 | 48 | 61 => OpClass::Write,
            // READV, READ_FIXED, RECVMSG, READ, RECV, READ_MULTISHOT, RECV_ZC, READV_FIXED
            1 | 4 | 10 | 22 | 27 | 49 | 58 | 60 => OpClass::Read,
            _ => OpClass::Other,
        }
    }
}

/// What one ring's submission and completion queues saw (one entry shared by all CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingOpStats {
    /// SQEs submitted, by whoever submitted them.
    pub sqes: u64,
    pub sqes_by_class: [u64; OpClass::COUNT],
    /// SQEs the SQPOLL thread submitted (no syscall).
    pub sqpoll_sqes: u64,
    /// Completions with `-EAGAIN`.
    pub cqe_eagain: u64,
    /// Completions with any other negative result (see the per-errno map).
    pub cqe_errors: u64,
    /// Requests the kernel failed (`io_uring_req_failed`).
    pub failed: u64,
    /// Completions that overflowed a full CQ (`io_uring_cqe_overflow`).
    pub cq_overflows: u64,
    /// Writes that wrote less than asked (`io_uring_short_write`).
    pub short_writes: u64,
}

impl RingOpStats {
    pub const ZERO: RingOpStats = RingOpStats {
        sqes: 0,
        sqes_by_class: [0; OpClass::COUNT],
        sqpoll_sqes: 0,
        cqe_eagain: 0,
        cqe_errors: 0,
        failed: 0,
        cq_overflows: 0,
        short_writes: 0,
    };
}

/// A ring as `io_uring_create` announced it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingSetup {
    pub tgid: u32,
    pub fd: i32,
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
    pub _pad: u32,
}

/// Failed completions of one ring by errno.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CqeErrorKey {
    pub ring: RingKey,
    /// The positive errno.
    pub errno: u32,
    pub _pad: u32,
}

/// `io_uring_setup` calls of one process, by outcome.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetupStats {
    pub ok: u64,
    /// `EPERM`: seccomp or `kernel.io_uring_disabled` refused it.
    pub eperm: u64,
    /// `ENOSYS`: the kernel lacks io_uring, or seccomp hides it.
    pub enosys: u64,
    pub other_errors: u64,
}

#[cfg(feature = "user")]
mod user {
    use super::*;

    // SAFETY: all `#[repr(C)]`, `Copy`, padded explicitly, valid for any bits.
    unsafe impl aya::Pod for EnterStats {}
    unsafe impl aya::Pod for RingKey {}
    unsafe impl aya::Pod for RingOpStats {}
    unsafe impl aya::Pod for RingSetup {}
    unsafe impl aya::Pod for CqeErrorKey {}
    unsafe impl aya::Pod for SetupStats {}
}
