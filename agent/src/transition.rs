//! Measuring what one kernel transition (user to kernel mode and back)
//! costs on this node.
//!
//! The cheapest syscall (`getppid`) timed in a tight loop is the price of the
//! transition alone: every write-family call pays at least that on top of its
//! own work. Measured before the probes attach, so they do not inflate it.

use std::time::Instant;

/// Calls per round: long enough to dwarf the clock reads, short enough that
/// five rounds take well under a second.
const CALLS_PER_ROUND: u32 = 200_000;
const ROUNDS: usize = 5;

/// Median over rounds of the nanoseconds one `getppid` takes.
pub fn measure_transition_ns() -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS).map(|_| one_round()).collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn one_round() -> f64 {
    let start = Instant::now();
    for _ in 0..CALLS_PER_ROUND {
        // SAFETY: getppid has no arguments and cannot fail. `libc::syscall`
        // rather than `libc::getppid` so that no library cache can answer.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    start.elapsed().as_nanos() as f64 / f64::from(CALLS_PER_ROUND)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_transition_costs_something_plausible() {
        let ns = super::measure_transition_ns();
        // Anything from a fast bare-metal core to a slow emulated one.
        assert!((10.0..100_000.0).contains(&ns), "{ns} ns");
    }
}
