//! A syscall's arguments, read at its exit.
//!
//! Exit tracepoints only carry the result. The arguments are still in the
//! user registers the kernel saved on entry, so one probe at exit sees both
//! and a call never pays for a second probe.

use core::{ffi::c_void, slice};

use agent_common::write::{MAX_BYTES_PER_CALL, MAX_RECORDS_PER_CALL};
use aya_ebpf::{
    bindings::pt_regs,
    helpers::{
        bpf_get_current_task_btf, bpf_probe_read_user, bpf_probe_read_user_buf, bpf_task_pt_regs, generated::bpf_loop,
    },
    macros::map,
    maps::PerCpuArray,
};

/// `TS_COMPAT` in x86's `thread_info.status`: the syscall under way is a
/// 32-bit one (what the kernel's `in_ia32_syscall()` reads).
const TS_COMPAT: u32 = 0x0002;
/// Offset of `status` in `struct task_struct`: `thread_info` is its first
/// member, and `status` follows two longs (checked in the BTF of 6.18; the
/// verifier checks the load against the running kernel's BTF).
const THREAD_INFO_STATUS_OFFSET: usize = 16;

/// Whether the current task is in a 32-bit (ia32 compat) syscall, whose
/// number and argument registers are not the 64-bit ones.
#[inline(always)]
pub fn in_compat_syscall() -> bool {
    // SAFETY: a BTF-typed task pointer; the verifier checks the load.
    let status = unsafe {
        let task = bpf_get_current_task_btf() as *const u8;
        *task.add(THREAD_INFO_STATUS_OFFSET).cast::<u32>()
    };
    status & TS_COMPAT != 0
}

/// The first four arguments of the current task's syscall.
pub struct Args {
    pub arg0: u64,
    pub arg1: u64,
    pub arg2: u64,
    pub arg3: u64,
}

impl Args {
    /// The arguments of the current task's syscall, from the user registers
    /// the kernel saved on entry.
    #[inline(always)]
    pub fn current() -> Args {
        // SAFETY: both helpers return BTF-typed pointers that the verifier checks.
        Args::from_regs(unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const pt_regs)
    }

    /// The arguments in a saved user register frame: a BTF-typed pointer,
    /// which the verifier lets the program read directly.
    #[inline(always)]
    pub fn from_regs(regs: *const pt_regs) -> Args {
        // SAFETY: `pt_regs` is the x86-64 user register frame; the verifier
        // checks every load against its BTF type.
        unsafe {
            Args {
                arg0: (*regs).rdi,
                arg1: (*regs).rsi,
                arg2: (*regs).rdx,
                // The syscall ABI passes the fourth argument in r10, not rcx.
                arg3: (*regs).r10,
            }
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Iovec {
    base: u64,
    len: u64,
}

/// `struct msghdr` up to the fields the probes need.
#[repr(C)]
#[derive(Clone, Copy)]
struct MsgIov {
    iov: u64,
    iovlen: u64,
}
const IOVEC_SIZE: u64 = 16;
const MSGHDR_IOV_OFFSET: u64 = 16;
const MMSGHDR_SIZE: u64 = 64;
const MMSGHDR_LEN_OFFSET: u64 = 56;

/// Iovecs read per helper call: one read of 8 iovecs costs about what one of
/// a single iovec does.
const IOV_CHUNK: usize = 8;

/// Total length of `count` iovecs at user address `iov`: one read per 8
/// iovecs, the last (partial) group too.
///
/// A caller can put any length in an iovec, and 1024 of them can wrap a
/// `u64`: the lengths are summed as 4 KiB pages and the bytes below a page
/// apart, which cannot wrap, and a total that does not fit is returned as
/// `u64::MAX` (the caller clamps it to what one call can move). Summing
/// without a branch per iovec keeps the verifier's work linear.
#[inline(always)]
pub fn iovec_bytes(iov: u64, count: u64) -> Option<u64> {
    const CHUNK: u64 = IOV_CHUNK as u64;
    let count = if count > MAX_RECORDS_PER_CALL { MAX_RECORDS_PER_CALL } else { count };
    let full_chunks = count / CHUNK;
    let mut total = IovSum { pages: 0, rest: 0 };
    for chunk in 0..MAX_RECORDS_PER_CALL / CHUNK {
        if chunk >= full_chunks {
            break;
        }
        let at = (iov + chunk * CHUNK * IOVEC_SIZE) as *const [Iovec; IOV_CHUNK];
        // SAFETY: the helper checks the user address.
        for one in unsafe { bpf_probe_read_user(at) }.ok()? {
            total.add(one.len);
        }
    }
    // The masked count is what the verifier needs to bound the read's size.
    let rest = (count & (CHUNK - 1)) as usize;
    if rest > 0 {
        let mut group = [Iovec { base: 0, len: 0 }; IOV_CHUNK];
        // SAFETY: `group` has room for IOV_CHUNK iovecs; `rest` is fewer.
        let bytes = unsafe { slice::from_raw_parts_mut(group.as_mut_ptr().cast::<u8>(), rest * IOVEC_SIZE as usize) };
        let at = (iov + full_chunks * CHUNK * IOVEC_SIZE) as *const u8;
        // SAFETY: the helper checks the user address.
        unsafe { bpf_probe_read_user_buf(at, bytes) }.ok()?;
        // The iovecs not read are still zero.
        for one in group {
            total.add(one.len);
        }
    }
    Some(total.bytes())
}

/// A sum of up to 1024 lengths of any size, that cannot wrap.
struct IovSum {
    /// Whole 4 KiB pages: at most 1024 × 2^52.
    pages: u64,
    /// The bytes below a page: at most 1024 × 4095.
    rest: u64,
}

impl IovSum {
    const PAGE_SHIFT: u32 = 12;

    #[inline(always)]
    fn add(&mut self, len: u64) {
        self.pages += len >> Self::PAGE_SHIFT;
        self.rest += len & ((1 << Self::PAGE_SHIFT) - 1);
    }

    /// The sum, or `u64::MAX` when it is far above what one call may move.
    #[inline(always)]
    fn bytes(&self) -> u64 {
        if self.pages > MAX_BYTES_PER_CALL >> Self::PAGE_SHIFT {
            u64::MAX
        } else {
            (self.pages << Self::PAGE_SHIFT) + self.rest
        }
    }
}

/// The iovec array and its length of the `struct msghdr` at `msg`.
#[inline(always)]
pub fn msghdr_iov(msg: u64) -> Option<(u64, u64)> {
    // SAFETY: the helper checks the user address.
    let m = unsafe { bpf_probe_read_user((msg + MSGHDR_IOV_OFFSET) as *const MsgIov) }.ok()?;
    Some((m.iov, m.iovlen))
}

/// Bytes sent by the first `sent` messages of the `struct mmsghdr` array at
/// `msgs`: the kernel stores each message's byte count in its `msg_len`.
///
/// Up to 1024 reads, in `bpf_loop` so that the verifier checks the body once.
/// The running total lives in a map value: the verifier does not track the
/// range of what it loads from there, so every iteration looks the same to it
/// and the loop's verification converges.
#[inline(always)]
pub fn mmsghdr_sent_bytes(msgs: u64, sent: u64) -> Option<u64> {
    let total = MMSG_BYTES.get_ptr_mut(0)?;
    let sent = if sent > MAX_RECORDS_PER_CALL { MAX_RECORDS_PER_CALL } else { sent };
    // SAFETY: this CPU's slot; only this program uses it, and the kernel
    // never runs a program twice at once on one CPU.
    unsafe { *total = 0 };
    let mut sum = MsgLenSum { msgs, total, unreadable: false };
    // SAFETY: the callback only uses `sum` during the call.
    unsafe {
        bpf_loop(sent as u32, add_msg_len as *mut c_void, (&raw mut sum).cast(), 0);
    }
    // SAFETY: as above.
    if sum.unreadable { None } else { Some(unsafe { *total }) }
}

/// Scratch for [`mmsghdr_sent_bytes`].
#[map(name = "MMSG_BYTES")]
static MMSG_BYTES: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

struct MsgLenSum {
    msgs: u64,
    total: *mut u64,
    unreadable: bool,
}

extern "C" fn add_msg_len(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `MsgLenSum` that `mmsghdr_sent_bytes` passed.
    let sum = unsafe { &mut *ctx.cast::<MsgLenSum>() };
    let len = (sum.msgs + index * MMSGHDR_SIZE + MMSGHDR_LEN_OFFSET) as *const u32;
    // SAFETY: the helper checks the user address; `total` is a map value.
    match unsafe { bpf_probe_read_user(len) } {
        Ok(len) => {
            unsafe { *sum.total += u64::from(len) };
            0
        }
        Err(_) => {
            sum.unreadable = true;
            1
        }
    }
}
