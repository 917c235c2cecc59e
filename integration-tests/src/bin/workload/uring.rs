//! io_uring patterns: batches of S SQEs per submit, with and without SQPOLL,
//! a CQ left to overflow, and a set-up refused by seccomp.

use std::{
    collections::BTreeMap,
    os::fd::AsRawFd as _,
    thread,
    time::{Duration, Instant},
};

use integration_tests::WorkloadReport;
use io_uring::{IoUring, opcode, types};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use crate::open_devnull;

/// How `batch` submits.
pub struct Batches {
    pub rounds: u64,
    pub batch: u32,
    /// SQPOLL with this idle time before the poller sleeps.
    pub sqpoll_idle: Option<Duration>,
    /// Wait between rounds.
    pub pause: Duration,
    /// Enter through the registered ring index, not the fd.
    pub registered: bool,
    /// Submit, then wait for the batch in a second enter that only waits.
    pub wait_apart: bool,
}

/// `rounds` rounds of `batch` 64-byte writes to /dev/null, each round
/// submitted at once and reaped before the next.
pub fn batches(how: &Batches) -> WorkloadReport {
    let mut builder = IoUring::builder();
    if let Some(idle) = how.sqpoll_idle {
        builder.setup_sqpoll(idle.as_millis() as u32);
    }
    let mut ring = builder.build(how.batch.next_power_of_two().max(8)).expect("io_uring set-up");
    let registered = how.registered.then(|| register_ring_fd(&ring));
    let devnull = open_devnull();
    let buf = [b'u'; 64];
    let write = opcode::Write::new(types::Fd(devnull.as_raw_fd()), buf.as_ptr(), 64).build();
    let mut report = WorkloadReport { fd: ring.as_raw_fd(), ..Default::default() };
    let start = Instant::now();
    for round in 0..how.rounds {
        if let Some(wait) = (start + how.pause * round as u32).checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        // An SQPOLL poller may post the last round's completions a moment
        // before it moves the SQ head past their SQEs.
        while !ring.submission().is_empty() {
            std::hint::spin_loop();
        }
        for _ in 0..how.batch {
            // SAFETY: `buf` and `devnull` outlive the ring's use of them.
            unsafe { ring.submission().push(&write) }.expect("an empty SQ has room for a batch");
        }
        report.sqes += u64::from(how.batch);
        if how.sqpoll_idle.is_some() {
            submit_sqpoll(&mut ring, &mut report);
        } else if how.wait_apart {
            ring.submit().expect("io_uring_enter submitting");
            // The SQ is empty now: this enter has nothing to submit.
            ring.submit_and_wait(how.batch as usize).expect("io_uring_enter waiting");
            report.enters += 2;
        } else {
            match registered {
                Some(index) => enter_registered(index, how.batch),
                None => {
                    ring.submit_and_wait(how.batch as usize).expect("io_uring_enter");
                }
            }
            report.enters += 1;
        }
        reap(&mut ring, how.batch as usize);
    }
    report
}

/// Registers the ring's own fd (`IORING_REGISTER_RING_FDS`, as liburing's
/// `io_uring_register_ring_fd` does) and returns its index. Raw syscalls:
/// the io-uring crate keeps the index in a `Submitter` that each
/// `IoUring::submitter()` call makes afresh.
fn register_ring_fd(ring: &IoUring) -> u32 {
    const IORING_REGISTER_RING_FDS: libc::c_long = 20;
    // struct io_uring_rsrc_update: offset (u32::MAX: any free slot), resv, data (the fd).
    let mut update: [u32; 4] = [u32::MAX, 0, ring.as_raw_fd() as u32, 0];
    // SAFETY: one io_uring_rsrc_update, which the kernel fills with the index.
    let rc = unsafe {
        libc::syscall(libc::SYS_io_uring_register, ring.as_raw_fd(), IORING_REGISTER_RING_FDS, update.as_mut_ptr(), 1)
    };
    assert_eq!(rc, 1, "IORING_REGISTER_RING_FDS: {}", std::io::Error::last_os_error());
    update[0]
}

/// Submits `count` SQEs and waits for them, naming the ring by its
/// registered `index` (`IORING_ENTER_REGISTERED_RING`).
fn enter_registered(index: u32, count: u32) {
    const IORING_ENTER_GETEVENTS: libc::c_long = 1;
    const IORING_ENTER_REGISTERED_RING: libc::c_long = 1 << 4;
    let flags = IORING_ENTER_GETEVENTS | IORING_ENTER_REGISTERED_RING;
    // SAFETY: no argument pointer; the SQEs are in the ring already.
    let rc = unsafe { libc::syscall(libc::SYS_io_uring_enter, index, count, count, flags, std::ptr::null::<u8>(), 0) };
    assert_eq!(rc, i64::from(count), "io_uring_enter: {}", std::io::Error::last_os_error());
}

/// Hands the batch to the poller, waking it (one syscall) only if it sleeps.
fn submit_sqpoll(ring: &mut IoUring, report: &mut WorkloadReport) {
    ring.submission().sync();
    if ring.submission().need_wakeup() {
        ring.submit().expect("io_uring_enter to wake the poller");
        report.enters += 1;
        report.wakeups += 1;
    }
}

/// Busy-waits, without syscalls, for `count` completions.
fn reap(ring: &mut IoUring, count: usize) {
    let mut reaped = 0;
    while reaped < count {
        let mut cq = ring.completion();
        cq.sync();
        for cqe in &mut cq {
            assert!(cqe.result() >= 0, "write failed: {}", cqe.result());
            reaped += 1;
        }
    }
}

/// Submits `rounds` batches of NOPs that fill a small CQ without reaping it,
/// so all but the first CQ-full of completions overflow.
pub fn overflow(rounds: u64) -> WorkloadReport {
    const ENTRIES: u32 = 8;
    let mut ring: IoUring = IoUring::builder().setup_cqsize(ENTRIES).build(ENTRIES).expect("io_uring set-up");
    let mut report = WorkloadReport { fd: ring.as_raw_fd(), ..Default::default() };
    for _ in 0..rounds {
        for _ in 0..ENTRIES {
            // SAFETY: a NOP refers to no memory.
            unsafe { ring.submission().push(&opcode::Nop::new().build()) }.expect("SQ has room");
        }
        ring.submit().expect("io_uring_enter");
        report.sqes += u64::from(ENTRIES);
        report.enters += 1;
    }
    report.cq_overflows = report.sqes - u64::from(ENTRIES);
    report
}

/// Installs a seccomp filter that makes `io_uring_setup` fail with EPERM, as
/// containerd's default profile does, then tries to set up a ring and falls
/// back to one plain write.
pub fn denied() -> WorkloadReport {
    let rules = BTreeMap::from([(libc::SYS_io_uring_setup, vec![])]);
    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), TargetArch::x86_64)
            .expect("a valid filter");
    let program: BpfProgram = filter.try_into().expect("the filter compiles");
    seccompiler::apply_filter(&program).expect("seccomp filter applied");
    let Err(error) = IoUring::new(8) else { panic!("io_uring_setup must be refused") };
    assert_eq!(error.raw_os_error(), Some(libc::EPERM), "{error}");
    let devnull = open_devnull();
    assert_eq!(crate::write(devnull.as_raw_fd(), b"fallback"), 8);
    WorkloadReport { fd: devnull.as_raw_fd(), calls: 1, bytes_written: 8, denied_setups: 1, ..Default::default() }
}
