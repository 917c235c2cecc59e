//! `cargo xtask bench`: what batchwatch costs the processes it watches and
//! the node it runs on, next to the bpftrace one-liner that counts the same
//! syscalls. One run measures every variant, so that the ratios hold on a
//! noisy machine, and prints one markdown report (also written to
//! `target/bench/`). docs/performance.md explains the method and the
//! numbers.
//!
//! 1. Cost per syscall: in each round, each variant once, in an order that
//!    rotates from round to round: no probes; empty programs on the
//!    tracepoints batchwatch hooks (the floor: what the hooks cost by
//!    themselves); batchwatch with classic tracepoints; batchwatch with the
//!    BTF tracepoint on every syscall exit; the bpftrace one-liner (and
//!    batchwatch with fexit, where the kernel accepts it). For each,
//!    `bench-loop` (see `bench/syscall_loop.rs`) times a million calls of
//!    each syscall on one pinned CPU. "Added" is the variant minus "no
//!    probes" of the same round; the report gives the median over the rounds
//!    and their range, and batchwatch's added cost as a multiple of the
//!    floor's and of bpftrace's.
//! 2. Where the time goes: with `kernel.bpf_stats_enabled` on for a moment,
//!    the run time per run of each program, per syscall timed.
//! 3. The agent under load: its CPU (utime + stime, % of one core) and
//!    memory while writers write flat out or at 500k writes/s, with 0, 1,000
//!    and 10,000 other processes alive that each wrote once; its kernel maps
//!    (definitions, what the kernel charges for them, and their bound on
//!    nodes of 2, 64 and 192 possible CPUs).
//!
//! Other people's tracing programs would be timed too: before and after each
//! timing it looks for BPF tracing programs it did not start, waits for them
//! to go, and times again; what it could not time cleanly is counted in the
//! report.

mod processes;
mod procfs;
mod report;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use processes::{Floor, Loops, Placement, Tracer, Tracers, Variant};
use procfs::{CpuReading, MapInfo, Memory};
use report::Report;

use crate::{cmd, setup, target_dir, workspace_root};

#[derive(clap::Args)]
pub struct Args {
    /// Rounds of timings; each times every variant once (at least 5).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(5..))]
    rounds: u32,
    /// Calls per syscall in each timing (split in 5 batches; the median batch counts).
    #[arg(long, default_value_t = 1_000_000)]
    calls: u64,
    /// Seconds over which the agent's CPU is read in each load scenario.
    #[arg(long, default_value_t = 20)]
    window: u64,
    /// Benchmark this batchwatch binary instead of building target/release/batchwatch.
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Longest total wait, in seconds, for other people's tracing programs to go away.
    #[arg(long, default_value_t = 900)]
    max_wait: u64,
}

/// A syscall the loops time.
struct Workload {
    /// The name `bench-loop measure` knows it by.
    name: &'static str,
    label: &'static str,
    /// What it is measured against.
    kind: Kind,
}

/// What a workload's cost is measured against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A traced call: against the floor and the bpftrace one-liner.
    Traced,
    /// A syscall no probe watches: against the floor, in every round.
    Untraced,
    /// A write made durable (issue 12): against the call itself, which
    /// waits for the disk; bpftrace's one-liner sees only its write.
    Sync,
}

impl Workload {
    /// Whether batchwatch (and the one-liner, but for a sync) hooks it.
    fn traced(&self) -> bool {
        self.kind != Kind::Untraced
    }
}

const WORKLOADS: [Workload; 8] = [
    Workload { name: "write", label: "`write()` 1 B to /dev/null", kind: Kind::Traced },
    Workload { name: "writev", label: "`writev()` 4 × 1 B to /dev/null", kind: Kind::Traced },
    Workload { name: "sendto", label: "`sendto()` 1 B on a connected UDP socket", kind: Kind::Traced },
    Workload { name: "uring-nop", label: "`io_uring_enter()` submitting 1 NOP", kind: Kind::Traced },
    Workload { name: "uring-nop16", label: "`io_uring_enter()` submitting 16 NOPs", kind: Kind::Traced },
    Workload { name: "uring-empty", label: "`io_uring_enter()` with 0 SQEs", kind: Kind::Traced },
    Workload { name: "getppid", label: "`getppid()` (untraced)", kind: Kind::Untraced },
    Workload { name: "write-fsync", label: "`write()` 1 B + `fsync()` of a file in $TMPDIR", kind: Kind::Sync },
];

/// The goals of the performance issues (11, and 10 before it).
/// Added per traced call, batchwatch ÷ the floor (empty programs on the same hooks).
const GOAL_FLOOR_RATIO: f64 = 1.5;
/// Added per traced call, batchwatch ÷ the bpftrace one-liner.
const GOAL_BPFTRACE_RATIO: f64 = 0.5;
/// Added per untraced syscall, batchwatch − the floor, in every round.
const GOAL_UNTRACED_OVER_FLOOR_NS: f64 = 5.0;
/// batchwatch's programs' run time per `write` + `fsync` ÷ the call
/// without probes, in % (issue 12: negligible against the sync).
const GOAL_SYNC_PERCENT: f64 = 5.0;
/// The kernel maps' bound on a node of this many possible CPUs ...
const GOAL_MAPS_CPUS: u64 = 192;
/// ... at most this many MiB.
const GOAL_MAPS_MIB: f64 = 64.0;
/// Node sizes the maps' bound is given for.
const MAP_BOUND_CPUS: [u64; 3] = [2, 64, GOAL_MAPS_CPUS];
const GOAL_CPU_PERCENT: f64 = 2.0;
const GOAL_RATE: u64 = 500_000;
const GOAL_RSS_MIB: f64 = 64.0;

/// Process populations of the load scenarios: idle processes that each wrote once.
const POPULATIONS: [u32; 3] = [0, 1_000, 10_000];

pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    setup::run()?;
    let agent = match &args.agent {
        Some(agent) => agent.clone(),
        None => {
            cargo_build(&["build", "--release", "-p", "batchwatch"]).context("building batchwatch")?;
            target_dir().join("release").join("batchwatch")
        }
    };
    cargo_build(&["build", "--release", "-p", "xtask", "--bin", "bench-loop"]).context("building bench-loop")?;
    for tool in ["bpftrace", "bpftool", "taskset", "getconf"] {
        if cmd::which(tool).is_none() {
            bail!("`{tool}` is not on PATH (cargo xtask setup installs bpftrace and bpftool)");
        }
    }
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    eprintln!("bench: asking batchwatch which tracepoints it attaches, for the floor");
    let floor = Floor::of(&agent).context("finding batchwatch's hooks for the floor")?;
    let mut bench = Bench {
        args,
        tracers: Tracers {
            agent,
            floor,
            away_from_loops: (cpus > 1).then(|| if cpus == 2 { String::from("0") } else { format!("0-{}", cpus - 2) }),
        },
        // The timed loops get the last CPU; the tracers' own threads run anywhere.
        loops: Loops { binary: target_dir().join("release").join("bench-loop"), cpu: cpus - 1 },
        cpus,
        wait_budget: Duration::from_secs(args.max_wait),
        timings: 0,
        unclean: 0,
        warnings: Vec::new(),
    };
    let mut machine = Machine::read(&bench.tracers.agent)?;
    eprintln!(
        "bench: {} rounds of {} calls per syscall, then bpf_stats, then the agent under load ({} s windows); \
         about 10 minutes on 2 cores",
        args.rounds, args.calls, args.window
    );

    let fexit = bench.try_fexit()?;
    let mut variants = Variant::ALWAYS.to_vec();
    if fexit.is_ok() {
        variants.push(Variant::Fexit);
    }
    let rounds = bench.time_rounds(&variants)?;
    let profile = bench.profile(&variants)?;
    let load = bench.load()?;
    machine.load_end = procfs::line_after("/proc/loadavg", "").unwrap_or_default();
    machine.took = started.elapsed();

    let report = Report { machine, bench: &bench, variants, rounds, fexit, profile, load }.render();
    print!("{report}");
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp = cmd::read(Command::new("date").args(["-u", "+%Y%m%d-%H%M%S"]))?;
    for name in [format!("bench-{}.md", stamp.trim()), String::from("latest.md")] {
        let path = dir.join(name);
        std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}

fn cargo_build(args: &[&str]) -> anyhow::Result<()> {
    cmd::run(Command::new("cargo").current_dir(workspace_root()).args(args))
}

struct Bench<'a> {
    args: &'a Args,
    tracers: Tracers,
    loops: Loops,
    cpus: usize,
    /// What is left of `--max-wait`.
    wait_budget: Duration,
    /// Timings taken, and how many of them had other tracing programs loaded.
    timings: u32,
    unclean: u32,
    warnings: Vec<String>,
}

/// One round: ns per call of each (variant, workload).
type Round = BTreeMap<(Variant, &'static str), f64>;

impl Bench<'_> {
    /// Whether the kernel accepts batchwatch's fexit probes; the refusal as
    /// batchwatch words it.
    fn try_fexit(&mut self) -> anyhow::Result<Result<(), String>> {
        eprintln!("bench: trying batchwatch --attach fexit");
        match Tracer::start(Variant::Fexit, &self.tracers, Placement::AwayFromLoops) {
            Ok(tracer) => {
                if let Some(tracer) = tracer {
                    tracer.stop()?;
                }
                eprintln!("bench: fexit accepted: it is timed too");
                Ok(Ok(()))
            }
            Err(error) => {
                let text = format!("{error:#}");
                let reason = text
                    .lines()
                    .find(|line| line.starts_with("batchwatch:"))
                    .unwrap_or(text.lines().next().unwrap_or_default())
                    .to_owned();
                eprintln!("bench: fexit refused: {reason}");
                Ok(Err(reason))
            }
        }
    }

    fn time_rounds(&mut self, variants: &[Variant]) -> anyhow::Result<Vec<Round>> {
        let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
        let traced: Vec<&str> = WORKLOADS.iter().filter(|w| w.traced()).map(|w| w.name).collect();
        let mut rounds = Vec::new();
        for round in 0..self.args.rounds as usize {
            let mut order = variants.to_vec();
            order.rotate_left(round % variants.len());
            let mut ns = Round::new();
            for variant in order {
                let tracer = Tracer::start(variant, &self.tracers, Placement::AwayFromLoops)?;
                let ours: Vec<u32> = tracer.iter().map(Tracer::pid).collect();
                let (timings, loop_pid) = self.measure_cleanly(&ours, self.args.calls, &names)?;
                let output = tracer.map(Tracer::stop).transpose()?;
                if variant == Variant::Bpftrace {
                    // bpftrace prints its maps as it exits: it must have counted the loop's calls.
                    let expected: u64 =
                        timings.iter().filter(|t| traced.contains(&t.workload.as_str())).map(|t| t.all_calls).sum();
                    self.check_bpftrace_count(&output.unwrap_or_default(), loop_pid, expected);
                }
                let summary: Vec<String> =
                    timings.iter().map(|t| format!("{} {:.0}", t.workload, t.median_ns)).collect();
                eprintln!(
                    "bench: round {}/{} {:<26} ns/call: {}",
                    round + 1,
                    self.args.rounds,
                    variant.short(),
                    summary.join(", ")
                );
                for timing in timings {
                    let name = WORKLOADS.iter().find(|w| w.name == timing.workload).context("unknown workload")?.name;
                    ns.insert((variant, name), timing.median_ns);
                }
            }
            rounds.push(ns);
        }
        Ok(rounds)
    }

    /// Times `workloads` with no tracing programs but those of `ours` loaded,
    /// waiting for others to go and timing again if one came meanwhile.
    fn measure_cleanly(
        &mut self,
        ours: &[u32],
        calls: u64,
        workloads: &[&str],
    ) -> anyhow::Result<(Vec<processes::Timing>, u32)> {
        const ATTEMPTS: u32 = 3;
        for attempt in 1.. {
            let quiet_before = self.wait_quiet(ours)?;
            let (timings, pid) = self.loops.measure(calls, workloads)?;
            let foreign = procfs::foreign_tracing_programs(ours)?;
            let clean = quiet_before && foreign.is_empty();
            if clean || attempt == ATTEMPTS || self.wait_budget.is_zero() {
                self.timings += 1;
                if !clean {
                    self.unclean += 1;
                }
                return Ok((timings, pid));
            }
            eprintln!(
                "bench: other tracing programs appeared during the timing ({}); timing again",
                foreign.join(", ")
            );
        }
        unreachable!("the last attempt returns")
    }

    /// Waits until no tracing program but those of `ours` is loaded, within
    /// what is left of the budget; returns whether that happened.
    fn wait_quiet(&mut self, ours: &[u32]) -> anyhow::Result<bool> {
        let started = Instant::now();
        let mut said: Option<Instant> = None;
        loop {
            let foreign = procfs::foreign_tracing_programs(ours)?;
            let waited = started.elapsed();
            if foreign.is_empty() {
                self.wait_budget = self.wait_budget.saturating_sub(waited);
                return Ok(true);
            }
            if waited >= self.wait_budget {
                if !self.wait_budget.is_zero() {
                    eprintln!(
                        "bench: WARNING: --max-wait used up; from now on timing with other tracing programs loaded"
                    );
                }
                self.wait_budget = Duration::ZERO;
                return Ok(false);
            }
            if said.is_none_or(|at| at.elapsed() > Duration::from_secs(30)) {
                let shown: Vec<&str> = foreign.iter().take(4).map(String::as_str).collect();
                eprintln!(
                    "bench: waiting for other tracing programs to go: {} loaded ({}{}); {:.0?} of waiting left",
                    foreign.len(),
                    shown.join(", "),
                    if foreign.len() > shown.len() { ", ..." } else { "" },
                    self.wait_budget.saturating_sub(waited),
                );
                said = Some(Instant::now());
            }
            thread::sleep(Duration::from_secs(2));
        }
    }

    fn check_bpftrace_count(&mut self, output: &[String], pid: u32, expected: u64) {
        let key = format!("@c[{pid}]:");
        let counted = output.iter().find_map(|line| line.strip_prefix(&key)?.trim().parse::<u64>().ok());
        // The loop's own report lines are writes too.
        if counted.is_none_or(|counted| counted < expected) {
            let entries = output.iter().filter(|line| line.starts_with("@c[")).count();
            let warning = format!(
                "bpftrace counted {} calls of the loop (pid {pid}), expected at least {expected}; its @c map printed \
                 {entries} pids (it holds 4096 by default, so other processes writing meanwhile can fill it)",
                counted.map_or_else(|| String::from("no"), |counted| counted.to_string())
            );
            eprintln!("bench: WARNING: {warning}");
            self.warnings.push(warning);
        }
    }

    /// Runs each syscall under each tracer with `kernel.bpf_stats_enabled`
    /// on, and reads each program's run count and run time.
    fn profile(&mut self, variants: &[Variant]) -> anyhow::Result<Vec<ProfileRow>> {
        let stats = BpfStats::enable()?;
        let calls = self.args.calls / 2;
        let mut rows = Vec::new();
        for &variant in variants.iter().filter(|v| **v != Variant::None) {
            eprintln!("bench: bpf_stats: {}", variant.label());
            let Some(tracer) = Tracer::start(variant, &self.tracers, Placement::AwayFromLoops)? else { continue };
            let ours = [tracer.pid()];
            for workload in &WORKLOADS {
                let before = procfs::progs_of(tracer.pid())?;
                let (timings, _) = self.measure_cleanly(&ours, calls, &[workload.name])?;
                let after = procfs::progs_of(tracer.pid())?;
                let all_calls = timings.first().context("no timing")?.all_calls as f64;
                let rows_before = rows.len();
                for prog in &after {
                    let Some(old) = before.iter().find(|old| old.id == prog.id) else { continue };
                    let runs = prog.run_cnt.saturating_sub(old.run_cnt);
                    // Programs that ran for other reasons now and then (the
                    // loop's own output, its ring's set-up) are left out.
                    if (runs as f64) < 0.05 * all_calls {
                        continue;
                    }
                    let ns = prog.run_time_ns.saturating_sub(old.run_time_ns) as f64;
                    rows.push(ProfileRow {
                        variant,
                        workload: workload.label,
                        program: prog.name.clone(),
                        runs_per_call: runs as f64 / all_calls,
                        ns_per_run: ns / runs as f64,
                        ns_per_call: ns / all_calls,
                    });
                }
                if rows.len() == rows_before {
                    rows.push(ProfileRow {
                        variant,
                        workload: workload.label,
                        program: String::from("(none ran)"),
                        runs_per_call: 0.0,
                        ns_per_run: 0.0,
                        ns_per_call: 0.0,
                    });
                }
            }
            tracer.stop()?;
        }
        drop(stats);
        Ok(rows)
    }

    /// The agent's CPU and memory while writers load it, with more and more
    /// idle processes that each wrote once; its maps idle and at the end.
    fn load(&mut self) -> anyhow::Result<Load> {
        let ticks = procfs::ticks_per_second()?;
        let possible_cpus = procfs::possible_cpus()?;
        let agent = Tracer::start(Variant::Tracepoint, &self.tracers, Placement::Anywhere)?.context("the agent")?;
        let pid = agent.pid();
        let machine_started = procfs::processes_started()?;
        thread::sleep(Duration::from_secs(3));
        let started = Memory::of(pid)?;
        let maps_idle = procfs::maps_of(pid)?;
        let window = Duration::from_secs(self.args.window);
        let mut scenarios = Vec::new();
        let mut tracking = Vec::new();
        let mut holders = Vec::new();
        let mut held = 0;
        let mut holders_started = 0;
        let mut maps_full = maps_idle.clone();
        for population in POPULATIONS {
            if population > held {
                eprintln!("bench: load: starting {} idle processes that each write once", population - held);
                holders.push(self.loops.hold(population - held)?);
                holders_started += 1;
                held = population;
                // The agent meets them at its next reads.
                thread::sleep(Duration::from_secs(3));
            }
            let idle_window = window / 2;
            eprintln!("bench: load: {population} processes, no writers, {idle_window:?}");
            let (cpu_percent, others_started) = watch(pid, idle_window, ticks)?;
            scenarios.push(Scenario {
                population,
                target_rate: None,
                rate: 0.0,
                cpu_percent,
                others_started,
                memory: Memory::of(pid)?,
            });
            for target in [0, GOAL_RATE] {
                eprintln!(
                    "bench: load: {population} processes, {} writers {}, {window:?}",
                    self.cpus,
                    if target == 0 { String::from("flat out") } else { format!("at {target}/s in all") }
                );
                scenarios.push(self.loaded(pid, population, target, window, ticks)?);
            }
            maps_full = procfs::maps_of(pid)?;
            tracking.push(Tracking::read(population, &maps_full)?);
        }
        let machine_started = procfs::processes_started()?.saturating_sub(machine_started);
        for holder in holders {
            holder.release()?;
        }
        agent.stop()?;
        // Ours: the idle processes and their holders, the writers of each loaded window.
        let ours =
            u64::from(held) + holders_started + (scenarios.len() as u64 - POPULATIONS.len() as u64) * self.cpus as u64;
        Ok(Load { scenarios, tracking, started, maps_idle, maps_full, possible_cpus, machine_started, ours })
    }

    /// One window with writers running, flat out (`target` 0) or paced.
    fn loaded(&self, pid: u32, population: u32, target: u64, window: Duration, ticks: f64) -> anyhow::Result<Scenario> {
        let margin = Duration::from_secs(2);
        let seconds = (window + 2 * margin).as_secs_f64();
        let writers: Vec<_> =
            (0..self.cpus).map(|_| self.loops.writer(seconds, target / self.cpus as u64)).collect::<Result<_, _>>()?;
        thread::sleep(margin);
        let (cpu_percent, others_started) = watch(pid, window, ticks)?;
        let memory = Memory::of(pid)?;
        let mut rate = 0.0;
        for writer in writers {
            rate += processes::writer_rate(writer)?;
        }
        Ok(Scenario { population, target_rate: Some(target), rate, cpu_percent, others_started, memory })
    }
}

/// Watches the agent `pid` for `window`: its CPU in % of one core, and how
/// many processes the machine started meanwhile (none of them the
/// benchmark's, which starts its own before a window).
fn watch(pid: u32, window: Duration, ticks: f64) -> anyhow::Result<(f64, u64)> {
    let (cpu, started) = (CpuReading::of(pid)?, procfs::processes_started()?);
    thread::sleep(window);
    let cpu_percent = CpuReading::of(pid)?.percent_since(&cpu, ticks);
    Ok((cpu_percent, procfs::processes_started()?.saturating_sub(started)))
}

/// `kernel.bpf_stats_enabled` on while this lives, as it was afterwards.
struct BpfStats {
    previous: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> anyhow::Result<BpfStats> {
        let previous = std::fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        std::fs::write(BPF_STATS, "1").with_context(|| format!("writing 1 to {BPF_STATS}"))?;
        Ok(BpfStats { previous: previous.trim().to_owned() })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(error) = std::fs::write(BPF_STATS, &self.previous) {
            eprintln!("bench: WARNING: could not set {BPF_STATS} back to {}: {error}", self.previous);
        }
    }
}

struct ProfileRow {
    variant: Variant,
    workload: &'static str,
    program: String,
    runs_per_call: f64,
    ns_per_run: f64,
    ns_per_call: f64,
}

struct Scenario {
    population: u32,
    /// None: no writers; Some(0): flat out; Some(rate): paced.
    target_rate: Option<u64>,
    rate: f64,
    cpu_percent: f64,
    /// Processes started on the machine during the window (by others).
    others_started: u64,
    memory: Memory,
}

/// What the kernel side holds once a population has written.
struct Tracking {
    population: u32,
    /// Entries in WRITE_STATS: (process, fd) pairs tracked.
    entries: u64,
    /// PROBE_ERRORS[StatsMapFull]: new (process, fd) pairs WRITE_STATS did not take.
    misses: u64,
    /// What the kernel charges for WRITE_STATS.
    charged: u64,
}

impl Tracking {
    /// Map names as in agent-common's `maps`; `StatsMapFull` is index 0 of PROBE_ERRORS.
    fn read(population: u32, maps: &[MapInfo]) -> anyhow::Result<Tracking> {
        let find = |name: &str| maps.iter().find(|map| map.name == name).with_context(|| format!("no map {name}"));
        let stats = find("WRITE_STATS")?;
        Ok(Tracking {
            population,
            entries: procfs::map_entries(stats.id)?,
            misses: procfs::per_cpu_sum(find("PROBE_ERRORS")?.id, 0)?,
            charged: stats.memlock,
        })
    }
}

struct Load {
    scenarios: Vec<Scenario>,
    tracking: Vec<Tracking>,
    /// The agent's memory 3 s after its probes were attached.
    started: Memory,
    maps_idle: Vec<MapInfo>,
    /// With the largest population still alive.
    maps_full: Vec<MapInfo>,
    possible_cpus: u64,
    /// Processes the machine started while the agent was watching, and how
    /// many of them the benchmark started (besides a few short commands).
    machine_started: u64,
    ours: u64,
}

/// The machine the numbers come from.
struct Machine {
    date: String,
    kernel: String,
    cpu_model: String,
    cpus: String,
    memory: String,
    hypervisor: bool,
    git: String,
    bpftrace: String,
    agent: String,
    load_start: String,
    load_end: String,
    took: Duration,
}

impl Machine {
    fn read(agent: &std::path::Path) -> anyhow::Result<Machine> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").context("reading /proc/cpuinfo")?;
        let first = |key: &str| {
            cpuinfo.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_owned())
            })
        };
        let processors = cpuinfo.lines().filter(|line| line.starts_with("processor")).count();
        let mem_kib: f64 = procfs::line_after("/proc/meminfo", "MemTotal")?.trim_end_matches("kB").trim().parse()?;
        let head = cmd::probe(Command::new("git").current_dir(workspace_root()).args(["rev-parse", "--short", "HEAD"]))
            .unwrap_or_default();
        let dirty = cmd::probe(Command::new("git").current_dir(workspace_root()).args(["status", "--porcelain"]))
            .is_some_and(|status| !status.trim().is_empty());
        Ok(Machine {
            date: cmd::read(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?.trim().to_owned(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim().to_owned(),
            cpu_model: first("model name").unwrap_or_else(|| String::from("unknown")),
            cpus: format!(
                "{processors} ({})",
                std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default().trim()
            ),
            memory: format!("{:.1} GiB", mem_kib / 1024.0 / 1024.0),
            hypervisor: first("flags").is_some_and(|flags| flags.split_whitespace().any(|f| f == "hypervisor")),
            git: format!("{}{}", head.trim(), if dirty { " with uncommitted changes in the tree" } else { "" }),
            bpftrace: cmd::probe(Command::new("bpftrace").arg("--version")).unwrap_or_default().trim().to_owned(),
            agent: agent.display().to_string(),
            load_start: procfs::line_after("/proc/loadavg", "").unwrap_or_default(),
            load_end: String::new(),
            took: Duration::ZERO,
        })
    }
}
