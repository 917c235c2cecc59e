//! The write family: `write`, `writev`, `pwrite64`, `pwritev`, `pwritev2`,
//! `sendto`, `sendmsg` and `sendmmsg`.
//!
//! Called at each call's exit (see `syscalls`), with its arguments and its
//! result, so each call costs one probe.

use agent_common::{
    key::FdKey,
    maps::ProbeErrorKind,
    write::{LastWrite, MAX_BYTES_PER_CALL, MAX_RECORDS_PER_CALL, Outcome, WriteStats, WriteSyscall},
};
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, HashMap, PerCpuHashMap},
};

use crate::{
    aggregate::{add, count_probe_error, entry, hist_add},
    syscall_args::{Args, iovec_bytes, mmsghdr_sent_bytes, msghdr_iov},
    tracepoint::traced_tgid,
};

/// Default capacity of the maps keyed per (tgid, fd); the agent sets the
/// configured one at load time.
const MAX_FDS: u32 = 16384;

/// Preallocated: an insert in the probe never allocates, so a burst of new
/// writers cannot make it fail. (Without preallocation the per-CPU values are
/// allocated on insert, and 178 of 10,000 writers forked in a row found the
/// allocator dry: measured here.) The agent sizes it to a memory budget.
#[map(name = "WRITE_STATS")]
static WRITE_STATS: PerCpuHashMap<FdKey, WriteStats> = PerCpuHashMap::with_max_entries(MAX_FDS, 0);

/// When each tracked (process, fd) last wrote, shared by all CPUs so the gap
/// is right when a writer moves between CPUs. It has the keys of
/// WRITE_STATS and no more (the agent deletes both together), so it never
/// fills up, and it tells the agent which statistics changed since it last
/// read them without copying every entry once per CPU. Its running call and
/// byte counts tell a sync how many writes it made durable (see `sync`).
#[map(name = "LAST_WRITE")]
static LAST_WRITE: HashMap<FdKey, LastWrite> = HashMap::with_max_entries(MAX_FDS, 0);

/// Never written: the zeroed value a new entry starts from (too big for the stack).
#[map(name = "ZERO_STATS")]
static ZERO_STATS: Array<WriteStats> = Array::with_max_entries(1, 0);

/// What one call asked for: bytes (or, for `sendmmsg`, messages) to compare
/// the result with, bytes for the size histogram, and records. Bytes and
/// records are clamped to what the kernel would ever accept of one call.
struct Request {
    wanted: u64,
    bytes: u64,
    records: u64,
}

/// Aggregates one finished write-family call: its arguments and result.
#[inline(always)]
pub fn record_write(syscall: WriteSyscall, args: &Args, ret: i64) {
    let Some(tgid) = traced_tgid() else { return };
    let key = FdKey { tgid, fd: args.arg0 as i32 };
    let request = request(syscall, args, ret);
    let outcome = Outcome::classify(ret, request.wanted);

    let Some(zero) = ZERO_STATS.get_ptr(0) else { return };
    // SAFETY: `zero` points at a map value of the right type.
    let Some(stats) = entry(&WRITE_STATS, &key, unsafe { &*zero }, tgid, ProbeErrorKind::StatsMapFull) else {
        return;
    };
    // sendmmsg returns messages sent; its bytes were summed from msg_len.
    let written = match ret {
        ..=0 => 0,
        _ if syscall == WriteSyscall::Sendmmsg => request.bytes,
        _ => ret as u64,
    };
    // Only for tracked pairs, so LAST_WRITE's keys are WRITE_STATS's.
    let gap = stamp_last_write(&key, written);
    // SAFETY: this CPU's copy, a valid map value; updated with `add`.
    let stats = unsafe { &mut *stats };
    add(&mut stats.calls[syscall as usize], 1);
    add(&mut stats.outcomes[outcome as usize], 1);
    if ret < 0 {
        // A refused call moved nothing: its request is kept apart from the
        // batch sizes of the calls that went through.
        add(&mut stats.failed_bytes_requested, request.bytes);
        add(&mut stats.failed_records, request.records);
    } else {
        add(&mut stats.bytes_requested, request.bytes);
        add(&mut stats.records, request.records);
        hist_add(&mut stats.bytes_hist, request.bytes);
        hist_add(&mut stats.records_hist, request.records);
        add(&mut stats.bytes_written, written);
    }
    if let Some(gap) = gap {
        add(&mut stats.gap_ns_total, gap);
        hist_add(&mut stats.gap_hist, gap);
    }
}

#[inline(always)]
fn request(syscall: WriteSyscall, args: &Args, ret: i64) -> Request {
    match syscall {
        WriteSyscall::Write | WriteSyscall::Pwrite64 | WriteSyscall::Sendto => {
            // Compared unclamped: a call cut to MAX_RW_COUNT is a short write.
            Request { wanted: args.arg2, bytes: clamped(args.arg2, MAX_BYTES_PER_CALL), records: 1 }
        }
        WriteSyscall::Writev | WriteSyscall::Pwritev | WriteSyscall::Pwritev2 => vectored(args.arg1, args.arg2, ret),
        WriteSyscall::Sendmsg => match msghdr_iov(args.arg1) {
            Some((iov, iovlen)) => vectored(iov, iovlen, ret),
            None => unreadable(ret, 1),
        },
        WriteSyscall::Sendmmsg => {
            // The kernel cuts vlen to UIO_MAXIOV; the result counts messages
            // sent, and only those are records.
            let asked = clamped(args.arg2, MAX_RECORDS_PER_CALL);
            let sent = if ret > 0 { ret as u64 } else { 0 };
            let bytes = match mmsghdr_sent_bytes(args.arg1, sent) {
                Some(bytes) => bytes,
                None => {
                    count_probe_error(ProbeErrorKind::ArgsUnreadable);
                    0
                }
            };
            let records = if ret < 0 { asked } else { sent };
            Request { wanted: asked, bytes: clamped(bytes, MAX_BYTES_PER_CALL), records }
        }
    }
}

#[inline(always)]
fn vectored(iov: u64, count: u64, ret: i64) -> Request {
    // More than UIO_MAXIOV iovecs fail with EINVAL: count what could have gone.
    let count = clamped(count, MAX_RECORDS_PER_CALL);
    match iovec_bytes(iov, count) {
        // Compared unclamped (the sum saturates rather than wraps).
        Some(total) => Request { wanted: total, bytes: clamped(total, MAX_BYTES_PER_CALL), records: count },
        None => unreadable(ret, count),
    }
}

/// `value`, or `limit` if it is larger: the most the kernel takes of one
/// call. A clamp is counted, so that a request cut here is never silent.
#[inline(always)]
fn clamped(value: u64, limit: u64) -> u64 {
    if value > limit {
        count_probe_error(ProbeErrorKind::ArgsClamped);
        limit
    } else {
        value
    }
}

/// The user memory holding the request could not be read (paged out): take
/// the result as the request, so the call counts as complete.
#[inline(always)]
fn unreadable(ret: i64, records: u64) -> Request {
    count_probe_error(ProbeErrorKind::ArgsUnreadable);
    let bytes = if ret > 0 { ret as u64 } else { 0 };
    Request { wanted: bytes, bytes, records }
}

/// Nanoseconds since the previous call on the same fd, and records this
/// one, which wrote `written` bytes.
#[inline(always)]
fn stamp_last_write(key: &FdKey, written: u64) -> Option<u64> {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    match LAST_WRITE.get_ptr_mut(key) {
        Some(last) => {
            // SAFETY: a valid map value; a racing writer on another CPU can
            // at worst shift one gap sample; the counts are atomic.
            let last = unsafe { &mut *last };
            let gap = now.saturating_sub(last.at_ns);
            last.at_ns = now;
            add(&mut last.calls, 1);
            add(&mut last.bytes, written);
            Some(gap)
        }
        None => {
            let _ = LAST_WRITE.insert(key, LastWrite { at_ns: now, calls: 1, bytes: written }, 0);
            None
        }
    }
}

/// The write calls and bytes of `key` so far, as a sync compares them with
/// those at its previous sync; `None` while it has not written (or its entry
/// was evicted as idle).
#[inline(always)]
pub fn write_totals(key: &FdKey) -> Option<(u64, u64)> {
    // SAFETY: a valid map value, read word by word.
    let last = unsafe { &*LAST_WRITE.get_ptr(key)? };
    Some((last.calls, last.bytes))
}
