//! io_uring: ring set-up, `io_uring_enter` calls (hooked in `syscalls`), and
//! every SQE and failed CQE, aggregated per ring. The record fields read are
//! named in `agent_common::tracepoints`, with the `format` lines they come
//! from; a test checks them against the running kernel's tracefs.
//!
//! SQEs are counted where the kernel submits them (`io_uring_submit_req`),
//! so SQPOLL submissions, which make no syscall, count too. The SQPOLL
//! thread belongs to the ring owner's thread group, so the current tgid is
//! the owner's.
//!
//! An enter with `IORING_ENTER_REGISTERED_RING` names its ring by an index
//! into the thread's registered rings, not by a descriptor. The index is
//! resolved without reading kernel structures: `io_uring_submit_req` fires
//! in the submitting thread during its enter, so the ring context that
//! thread last submitted to (`URING_SUBMITTING`) is the ring of its
//! registered enters, and `URING_RINGS` gives that ring's descriptor.

use agent_common::{
    io_uring::{
        CqeErrorKey, ENTER_GETEVENTS, ENTER_REGISTERED_RING, ENTER_SQ_WAKEUP, EnterStats, OpClass, RingKey,
        RingOpStats, RingSetup, SetupStats,
    },
    key::FdKey,
    maps::ProbeErrorKind,
    sync::SyncCall,
    tracepoints::{
        COMPLETE_RES, CREATE_CQ_ENTRIES, CREATE_CTX, CREATE_FD, CREATE_FLAGS, CREATE_SQ_ENTRIES, RING_CTX,
        SUBMIT_OPCODE, SUBMIT_SQ_THREAD,
    },
};
use aya_ebpf::{
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap},
    programs::TracePointContext,
};

use super::sync::record_uring_sync;
use crate::{
    aggregate::{add, count_probe_error, entry, hist_add},
    syscall_args::Args,
    tracepoint::{Thread, traced_tgid, traced_thread},
};

/// Rings tracked at once (by fd and by context); the agent sets it at load.
const MAX_RINGS: u32 = 1024;

#[map(name = "URING_ENTERS")]
static URING_ENTERS: HashMap<FdKey, EnterStats> = HashMap::with_max_entries(MAX_RINGS, 0);

#[map(name = "URING_OPS")]
static URING_OPS: HashMap<RingKey, RingOpStats> = HashMap::with_max_entries(MAX_RINGS, 0);

/// Ring context → set-up; LRU so that rings closed unseen age out.
#[map(name = "URING_RINGS")]
static URING_RINGS: LruHashMap<u64, RingSetup> = LruHashMap::with_max_entries(MAX_RINGS, 0);

#[map(name = "URING_CQE_ERRORS")]
static URING_CQE_ERRORS: HashMap<CqeErrorKey, u64> = HashMap::with_max_entries(MAX_RINGS, 0);

/// Thread id → the ring context it last submitted an SQE to; LRU, so
/// threads that are gone age out.
#[map(name = "URING_SUBMITTING")]
static URING_SUBMITTING: LruHashMap<u32, u64> = LruHashMap::with_max_entries(MAX_RINGS, 0);

#[map(name = "URING_SETUPS")]
static URING_SETUPS: HashMap<u32, SetupStats> = HashMap::with_max_entries(MAX_RINGS, 0);

const EAGAIN: i32 = 11;
const EPERM: i64 = 1;
const ENOSYS: i64 = 38;

#[tracepoint(category = "io_uring", name = "io_uring_create")]
pub fn io_uring_create(ctx: TracePointContext) -> u32 {
    let Some(tgid) = traced_tgid() else { return 0 };
    let setup = RingSetup {
        tgid,
        fd: read_field!(&ctx, CREATE_FD as i32),
        sq_entries: read_field!(&ctx, CREATE_SQ_ENTRIES as u32),
        cq_entries: read_field!(&ctx, CREATE_CQ_ENTRIES as u32),
        flags: read_field!(&ctx, CREATE_FLAGS as u32),
        _pad: 0,
    };
    let ring = read_field!(&ctx, CREATE_CTX as u64);
    let _ = URING_RINGS.insert(ring, setup, 0);
    0
}

/// Aggregates one finished `io_uring_enter` (see `syscalls`).
#[inline(always)]
pub fn record_enter(args: &Args, ret: i64) {
    let Some(Thread { tgid, tid }) = traced_thread() else { return };
    let flags = args.arg3;
    let fd = if flags & ENTER_REGISTERED_RING == 0 {
        args.arg0 as i32
    } else {
        match registered_ring_fd(tid) {
            Some(fd) => fd,
            None => {
                count_probe_error(ProbeErrorKind::RingIndexUnresolved);
                return;
            }
        }
    };
    let key = FdKey { tgid, fd };
    let Some(stats) = entry(&URING_ENTERS, &key, &EnterStats::ZERO, tgid, ProbeErrorKind::UringMapFull) else {
        return;
    };
    // SAFETY: a valid map value, shared by all CPUs; updated with `add`.
    let stats = unsafe { &mut *stats };
    add(&mut stats.enters, 1);
    // Each atomic add costs, even of 0: only the flags that are set are counted.
    if flags & ENTER_GETEVENTS != 0 {
        add(&mut stats.getevents, 1);
    }
    if flags & ENTER_SQ_WAKEUP != 0 {
        add(&mut stats.sq_wakeups, 1);
    }
    if ret < 0 {
        add(&mut stats.errors, 1);
    } else if args.arg1 > 0 {
        // Only enters that submit make a batch; the rest just wait.
        add(&mut stats.submitting, 1);
        add(&mut stats.submitted, ret as u64);
        hist_add(&mut stats.submitted_hist, ret as u64);
    }
}

/// The descriptor of the ring thread `tid` last submitted to, if the
/// probes saw that ring set up.
#[inline(always)]
fn registered_ring_fd(tid: u32) -> Option<i32> {
    // SAFETY: plain values, copied out at once.
    let ring = unsafe { *URING_SUBMITTING.get(tid)? };
    // SAFETY: as above.
    Some(unsafe { URING_RINGS.get(ring)? }.fd)
}

/// Remembers `ring` as the one the current thread submits to. Every SQE
/// of an enter comes here, nearly always with the ring of the SQE before,
/// so the entry is only written when the ring changed: with an LRU insert
/// (a lock, and a fresh element from the free list) for every SQE this
/// program ran 368 ns a run, with this 159 (bpf_stats, docs/performance.md).
#[inline(always)]
fn note_submitting(tid: u32, ring: u64) {
    match URING_SUBMITTING.get_ptr_mut(tid) {
        // SAFETY: a valid map value; only this thread's programs write it.
        Some(last) => unsafe {
            if *last != ring {
                *last = ring;
            }
        },
        None => {
            let _ = URING_SUBMITTING.insert(tid, ring, 0);
        }
    }
}

#[tracepoint(category = "io_uring", name = "io_uring_submit_req")]
pub fn io_uring_submit_req(ctx: TracePointContext) -> u32 {
    let opcode = read_field!(&ctx, SUBMIT_OPCODE as u8);
    let by_sqpoll = read_field!(&ctx, SUBMIT_SQ_THREAD as u8);
    let Some(thread) = traced_thread() else { return 0 };
    if by_sqpoll == 0 {
        note_submitting(thread.tid, read_field!(&ctx, RING_CTX as u64));
    }
    ring_ops_of(thread.tgid, &ctx, |ops| {
        add(&mut ops.sqes, 1);
        if let Some(class) = ops.sqes_by_class.get_mut(OpClass::of(opcode) as usize) {
            add(class, 1);
        }
        if by_sqpoll != 0 {
            add(&mut ops.sqpoll_sqes, 1);
        }
    });
    if let Some(call) = SyncCall::of_uring_op(opcode) {
        record_uring_sync(call, thread.tgid);
    }
    0
}

#[tracepoint(category = "io_uring", name = "io_uring_complete")]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    let res = read_field!(&ctx, COMPLETE_RES as i32);
    if res >= 0 {
        return 0;
    }
    if res == -EAGAIN {
        with_ring_ops(&ctx, |ops| add(&mut ops.cqe_eagain, 1));
    } else {
        with_ring_ops(&ctx, |ops| add(&mut ops.cqe_errors, 1));
        count_cqe_error(&ctx, -res as u32);
    }
    0
}

#[tracepoint(category = "io_uring", name = "io_uring_cqe_overflow")]
pub fn io_uring_cqe_overflow(ctx: TracePointContext) -> u32 {
    with_ring_ops(&ctx, |ops| add(&mut ops.cq_overflows, 1));
    0
}

#[tracepoint(category = "io_uring", name = "io_uring_req_failed")]
pub fn io_uring_req_failed(ctx: TracePointContext) -> u32 {
    with_ring_ops(&ctx, |ops| add(&mut ops.failed, 1));
    0
}

#[tracepoint(category = "io_uring", name = "io_uring_short_write")]
pub fn io_uring_short_write(ctx: TracePointContext) -> u32 {
    with_ring_ops(&ctx, |ops| add(&mut ops.short_writes, 1));
    0
}

/// Aggregates one finished `io_uring_setup` (see `syscalls`).
#[inline(always)]
pub fn record_setup(ret: i64) {
    let Some(tgid) = traced_tgid() else { return };
    let zero = SetupStats::default();
    let Some(stats) = entry(&URING_SETUPS, &tgid, &zero, tgid, ProbeErrorKind::UringMapFull) else { return };
    // SAFETY: a valid map value, shared by all CPUs; updated with `add`.
    let stats = unsafe { &mut *stats };
    match ret {
        0.. => add(&mut stats.ok, 1),
        _ if ret == -EPERM => add(&mut stats.eperm, 1),
        _ if ret == -ENOSYS => add(&mut stats.enosys, 1),
        _ => add(&mut stats.other_errors, 1),
    }
}

/// The ring of `tgid` in a record whose first field is `void *ctx`.
#[inline(always)]
fn ring_key(tgid: u32, ctx: &TracePointContext) -> RingKey {
    RingKey { tgid, _pad: 0, ctx: read_field!(ctx, RING_CTX as u64) }
}

/// Applies `update` to the statistics of the record's ring, if the current
/// process is traced.
#[inline(always)]
fn with_ring_ops(ctx: &TracePointContext, update: impl FnOnce(&mut RingOpStats)) {
    if let Some(tgid) = traced_tgid() {
        ring_ops_of(tgid, ctx, update);
    }
}

/// Applies `update` to the statistics of `tgid`'s ring in the record.
#[inline(always)]
fn ring_ops_of(tgid: u32, ctx: &TracePointContext, update: impl FnOnce(&mut RingOpStats)) {
    let key = ring_key(tgid, ctx);
    if let Some(ops) = entry(&URING_OPS, &key, &RingOpStats::ZERO, key.tgid, ProbeErrorKind::UringMapFull) {
        // SAFETY: a valid map value, shared by all CPUs; updated with `add`.
        update(unsafe { &mut *ops });
    }
}

#[inline(always)]
fn count_cqe_error(ctx: &TracePointContext, errno: u32) {
    let Some(tgid) = traced_tgid() else { return };
    let ring = ring_key(tgid, ctx);
    let key = CqeErrorKey { ring, errno, _pad: 0 };
    if let Some(count) = entry(&URING_CQE_ERRORS, &key, &0, ring.tgid, ProbeErrorKind::UringMapFull) {
        // SAFETY: as above.
        add(unsafe { &mut *count }, 1);
    }
}
