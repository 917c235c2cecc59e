//! Measuring what one kernel transition (user to kernel mode and back)
//! costs on this node.
//!
//! The cheapest syscall (`getppid`) timed in a tight loop is the price of the
//! transition alone: every write-family call pays at least that on top of its
//! own work. Measured before the probes attach, so they do not inflate it.
//!
//! On a busy node (a DaemonSet rolling out next to everything else) a wall
//! clock counts the time the loop waited for a CPU, and one start-up
//! measurement would inflate every derived figure for the agent's life. So
//! rounds are timed in the thread's own CPU time, the estimate is the mean
//! of the lowest rounds (noise only ever adds), and the agent measures
//! again while the node is idle, keeping the lowest estimate it has seen.

use std::time::{Duration, SystemTime};

/// Calls per round: long enough to dwarf the clock reads, short enough that
/// all rounds take well under a second.
const CALLS_PER_ROUND: u32 = 100_000;
const ROUNDS: usize = 9;
/// The estimate is the mean of this many lowest rounds.
const LOWEST: usize = 3;

/// The agent measures again at most this often, and only while idle.
pub const REMEASURE_EVERY: Duration = Duration::from_secs(300);
/// Idle: the node's CPUs were busy less than this share of the time since
/// the last look (`/proc/stat`).
const IDLE_BELOW: f64 = 0.25;

/// A measured cost, and when it was measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    pub cost_ns: f64,
    pub at: SystemTime,
}

/// Measures the nanoseconds one `getppid` takes: the mean of the lowest
/// rounds, each timed in this thread's CPU time.
pub fn measure_transition_ns() -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS).map(|_| one_round()).collect();
    lowest_mean(&mut rounds, LOWEST)
}

/// Measures now.
pub fn measure() -> Measurement {
    Measurement { cost_ns: measure_transition_ns(), at: SystemTime::now() }
}

/// The mean of the `lowest` smallest values of `rounds`.
fn lowest_mean(rounds: &mut [f64], lowest: usize) -> f64 {
    rounds.sort_by(f64::total_cmp);
    let lowest = &rounds[..lowest.min(rounds.len())];
    lowest.iter().sum::<f64>() / lowest.len() as f64
}

fn one_round() -> f64 {
    let start = thread_cpu_ns();
    for _ in 0..CALLS_PER_ROUND {
        // SAFETY: getppid has no arguments and cannot fail. `libc::syscall`
        // rather than `libc::getppid` so that no library cache can answer.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    (thread_cpu_ns() - start) as f64 / f64::from(CALLS_PER_ROUND)
}

/// CPU time this thread has used, user and kernel, in nanoseconds: time
/// spent waiting for a CPU is not in it.
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Tells whether the node was idle since the last look, from the CPU time
/// counters of `/proc/stat`.
#[derive(Debug, Default)]
pub struct IdleWatch {
    /// (busy, total) jiffies at the last look.
    last: Option<(u64, u64)>,
}

impl IdleWatch {
    /// Whether the CPUs were busy less than [`IDLE_BELOW`] of the time since
    /// the last call (`false` at the first call, or if `/proc/stat` is unreadable).
    pub fn idle_since_last(&mut self) -> bool {
        let Some(now) = std::fs::read_to_string("/proc/stat").ok().as_deref().and_then(cpu_times) else {
            return false;
        };
        let before = self.last.replace(now);
        before.is_some_and(|(busy, total)| {
            let (busy, total) = (now.0.saturating_sub(busy), now.1.saturating_sub(total));
            total > 0 && (busy as f64) < IDLE_BELOW * total as f64
        })
    }
}

/// (busy, total) jiffies of all CPUs from the `cpu` line of `/proc/stat`:
/// idle and iowait are not busy.
fn cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transition_costs_something_plausible() {
        let ns = measure_transition_ns();
        // Anything from a fast bare-metal core to a slow emulated one.
        assert!((10.0..100_000.0).contains(&ns), "{ns} ns");
    }

    #[test]
    fn the_estimate_is_the_mean_of_the_lowest_rounds() {
        // Rounds preempted or interrupted are slower, never faster.
        let mut rounds = [190.0, 900.0, 185.0, 2400.0, 180.0, 640.0, 181.0, 5000.0, 700.0];
        assert_eq!(lowest_mean(&mut rounds, 3), (180.0 + 181.0 + 185.0) / 3.0);
        assert_eq!(lowest_mean(&mut [200.0], 3), 200.0);
    }

    #[test]
    fn busy_and_total_cpu_time_from_proc_stat() {
        let stat = "cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 50 2 25 400 10 1 1 5 0 0\nintr 1\n";
        assert_eq!(cpu_times(stat), Some((100 + 5 + 50 + 3 + 2 + 10, 990)));
        assert_eq!(cpu_times("intr 1\n"), None);
    }

    #[test]
    fn thread_cpu_time_leaves_out_sleep() {
        let start = thread_cpu_ns();
        std::thread::sleep(Duration::from_millis(50));
        assert!(thread_cpu_ns() - start < 20_000_000, "a sleeping thread used its CPU time");
    }
}
