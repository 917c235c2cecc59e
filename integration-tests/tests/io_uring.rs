//! The io_uring probes against real rings: SQEs per submit, SQPOLL under
//! load and on a trickle, CQ overflow, set-ups refused by seccomp, and fio.
//! Root only.

mod common;

use agent_common::{hist::log2_slot, io_uring::SUBMIT_SLOTS};
use batchwatch::model::io_uring::{RingState, UringState};
use common::{Observed, observe};

fn uring(observed: &Observed) -> &UringState {
    observed.process().io_uring.as_ref().unwrap_or_else(|| panic!("no io_uring seen for {:?}", observed.report))
}

/// The one ring the pattern used.
fn ring(observed: &Observed) -> &RingState {
    let rings = &uring(observed).rings;
    assert_eq!(rings.len(), 1, "{rings:#?}");
    &rings[0]
}

fn batch(rounds: u64, batch: u32) -> Observed {
    observe(&["uring-batch", "--rounds", &rounds.to_string(), "--batch", &batch.to_string()])
}

#[test]
fn one_sqe_per_submit() {
    let observed = batch(2000, 1);
    let ring = ring(&observed);
    assert_eq!(ring.fd, Some(observed.report.fd));
    assert_eq!(ring.total_enters.enters, 2000);
    assert_eq!(ring.total_ops.sqes, 2000);
    assert_eq!(ring.total_ops.sqes_by_class, [2000, 0, 0], "all writes");
    let mut expected = [0; SUBMIT_SLOTS];
    expected[log2_slot(1, SUBMIT_SLOTS)] = 2000;
    assert_eq!(ring.total_enters.submitted_hist, expected);
    assert!(!ring.sqpoll());
}

#[test]
fn thirty_two_sqes_per_submit() {
    let observed = batch(500, 32);
    let ring = ring(&observed);
    assert_eq!(ring.total_enters.enters, 500);
    assert_eq!(ring.total_ops.sqes, 500 * 32);
    let mut expected = [0; SUBMIT_SLOTS];
    expected[log2_slot(32, SUBMIT_SLOTS)] = 500;
    assert_eq!(ring.total_enters.submitted_hist, expected);
    assert_eq!(ring.setup.map(|s| s.sq_entries), Some(32), "creation seen");
}

#[test]
fn sqpoll_under_load_submits_without_syscalls() {
    let observed = observe(&["uring-batch", "--rounds", "20000", "--batch", "16", "--sqpoll-idle", "2s"]);
    let ring = ring(&observed);
    assert!(ring.sqpoll());
    assert_eq!(ring.total_ops.sqes, 320_000);
    assert_eq!(ring.total_ops.sqpoll_sqes, 320_000, "all submitted by the poller");
    assert_eq!(ring.total_enters.enters, observed.report.enters);
    assert!(observed.report.enters <= 2, "near zero enters: {:?}", observed.report);
}

#[test]
fn sqpoll_on_a_trickle_needs_wakeups() {
    let observed =
        observe(&["uring-batch", "--rounds", "60", "--batch", "1", "--sqpoll-idle", "1ms", "--pause", "20ms"]);
    let ring = ring(&observed);
    assert!(ring.sqpoll());
    assert_eq!(ring.total_ops.sqes, 60);
    assert_eq!(ring.total_enters.sq_wakeups, observed.report.wakeups);
    // The poller idles 1 ms, the pause is 20 ms: it mostly sleeps between
    // submits (a busy machine can keep it from sleeping now and then).
    assert!(observed.report.wakeups >= 30, "the poller slept between submits: {:?}", observed.report);
}

#[test]
fn cq_overflow_counted() {
    let observed = observe(&["uring-overflow", "--rounds", "3"]);
    let ring = ring(&observed);
    assert_eq!(ring.total_ops.sqes, 24);
    assert_eq!(ring.total_ops.cq_overflows, observed.report.cq_overflows);
    assert_eq!(ring.total_ops.cq_overflows, 16);
}

#[test]
fn setup_denied_by_seccomp_is_attributed() {
    let observed = observe(&["uring-denied"]);
    let uring = uring(&observed);
    assert_eq!(uring.denied_setups(), 1);
    assert_eq!(uring.setups.eperm, 1);
    assert_eq!(uring.setups.ok, 0);
    // It fell back to a plain write, which is counted as usual.
    assert_eq!(observed.process().fds[&observed.report.fd].total.total_calls(), 1);
}

#[test]
fn fio_batches_match_its_settings() {
    let fio = common::require_tool("fio", "fio");
    for depth in [1u32, 16] {
        let file = std::env::temp_dir().join(format!("bw-fio-{}-{depth}", std::process::id()));
        let observed = common::observe_fio(&fio, &file, depth);
        std::fs::remove_file(&file).ok();
        let ring = ring(&observed);
        let hist = &ring.total_enters.submitted_hist;
        let median = batchwatch::model::histogram::Log2Histogram::new(hist).quantile(0.5);
        assert_eq!(median, Some(u64::from(depth)), "fio batch {depth}: {hist:?}");
        assert_eq!(ring.total_ops.sqes, 2048, "8 MiB in 4 KiB writes");
    }
}

/// liburing's `io_uring_register_ring_fd`: every enter names the ring by its
/// registered index. The enters still sit on the real ring, with its real
/// descriptor, exactly, and one SQE per enter is flagged there.
#[test]
fn a_registered_ring_is_its_real_ring_and_one_sqe_per_enter_is_flagged() {
    let args = ["uring-batch", "--rounds", "12000", "--batch", "1", "--pause", "250us", "--registered"];
    let [observed] = common::observe_while_ticking([&args[..]]);
    let ring = ring(&observed);
    assert_eq!(ring.fd, Some(observed.report.fd), "{ring:#?}");
    assert_eq!(ring.total_enters.enters, 12_000);
    assert_eq!(ring.total_ops.sqes, 12_000);
    let mut expected = [0; SUBMIT_SLOTS];
    expected[log2_slot(1, SUBMIT_SLOTS)] = 12_000;
    assert_eq!(ring.total_enters.submitted_hist, expected);
    let process = observed.process();
    assert!(process.ever_unbatched, "{:?}", process.last_reasons);
    let reason = process.last_reasons.join("\n");
    assert!(reason.starts_with(&format!("io_uring ring fd {}: ", observed.report.fd)), "{reason}");
}

#[test]
fn enters_that_only_wait_do_not_make_a_ring_unbatched() {
    // About 625 rounds a second of one SQE submitted, then waited for in an
    // enter of its own: 1250 enters/s, above the 1000 calls/s rule, but
    // only 625 of them submit.
    let args = ["uring-batch", "--rounds", "5000", "--batch", "1", "--pause", "1600us", "--wait-apart"];
    let [observed] = common::observe_while_ticking([&args[..]]);
    let ring = ring(&observed);
    let enters = &ring.total_enters;
    assert_eq!((enters.enters, enters.submitting, ring.total_ops.sqes), (10_000, 5000, 5000));
    assert!(!ring.unbatched.is_raised(), "flagged for enters that only wait: {:?}", ring.unbatched);
    assert!(!observed.process().ever_unbatched);
}
