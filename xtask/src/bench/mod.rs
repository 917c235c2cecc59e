//! `cargo xtask bench`: what batchwatch costs the processes it watches and
//! the node it runs on, next to the bpftrace one-liner that counts the same
//! syscalls. One run measures every variant, so that the ratios hold on a
//! noisy machine, and prints one markdown report (also written to
//! `target/bench/`). docs/performance.md explains the method and the
//! numbers.
//!
//! 1. Cost per syscall: in each round, each variant once, in an order that
//!    rotates from round to round: no probes; batchwatch with classic
//!    tracepoints; batchwatch with the BTF tracepoint on every syscall exit;
//!    the bpftrace one-liner (and batchwatch with fexit, where the kernel
//!    accepts it). For each, `bench-loop` (see `bench/syscall_loop.rs`)
//!    times a million calls of each syscall on one pinned CPU. "Added" is the
//!    variant minus "no probes" of the same round; the report gives the
//!    median over the rounds and their range.
//! 2. Where the time goes: with `kernel.bpf_stats_enabled` on for a moment,
//!    the run time per run of each program, per syscall timed.
//! 3. The agent under load: its CPU (utime + stime, % of one core) and
//!    memory while writers write flat out or at 500k writes/s, with 0, 1,000
//!    and 10,000 other processes alive that each wrote once; its kernel maps
//!    (definitions, and what the kernel charges for them).
//!
//! Other people's tracing programs would be timed too: before and after each
//! timing it looks for BPF tracing programs it did not start, waits for them
//! to go, and times again; what it could not time cleanly is counted in the
//! report.

mod processes;
mod procfs;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use processes::{Loops, Tracer, Variant};
use procfs::{CpuReading, MapInfo, Memory};

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
    /// Whether batchwatch and the bpftrace one-liner hook it.
    traced: bool,
}

const WORKLOADS: [Workload; 5] = [
    Workload { name: "write", label: "`write()` 1 B to /dev/null", traced: true },
    Workload { name: "writev", label: "`writev()` 4 × 1 B to /dev/null", traced: true },
    Workload { name: "uring-nop", label: "`io_uring_enter()` submitting 1 NOP", traced: true },
    Workload { name: "uring-empty", label: "`io_uring_enter()` with 0 SQEs", traced: true },
    Workload { name: "getppid", label: "`getppid()` (untraced)", traced: false },
];

/// The goals of the performance issue.
const GOAL_WRITE_RATIO: f64 = 0.75;
const GOAL_UNTRACED_MARGIN_NS: f64 = 10.0;
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
    let mut bench = Bench {
        args,
        agent,
        // The timed loops get the last CPU; the tracers' own threads run anywhere.
        loops: Loops { binary: target_dir().join("release").join("bench-loop"), cpu: cpus - 1 },
        cpus,
        wait_budget: Duration::from_secs(args.max_wait),
        timings: 0,
        unclean: 0,
        warnings: Vec::new(),
    };
    let mut machine = Machine::read(&bench.agent)?;
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
    agent: PathBuf,
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
        match Tracer::start(Variant::Fexit, &self.agent) {
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
        let traced: Vec<&str> = WORKLOADS.iter().filter(|w| w.traced).map(|w| w.name).collect();
        let mut rounds = Vec::new();
        for round in 0..self.args.rounds as usize {
            let mut order = variants.to_vec();
            order.rotate_left(round % variants.len());
            let mut ns = Round::new();
            for variant in order {
                let tracer = Tracer::start(variant, &self.agent)?;
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
            let Some(tracer) = Tracer::start(variant, &self.agent)? else { continue };
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
        let agent = Tracer::start(Variant::Tracepoint, &self.agent)?.context("the agent")?;
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

struct Report<'a> {
    machine: Machine,
    bench: &'a Bench<'a>,
    variants: Vec<Variant>,
    rounds: Vec<Round>,
    fexit: Result<(), String>,
    profile: Vec<ProfileRow>,
    load: Load,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) { (values[mid - 1] + values[mid]) / 2.0 } else { values[mid] })
}

/// `lowest to highest` of `values`: ratios with 2 decimals, else signed ns.
fn range(values: &[f64], ratios: bool) -> String {
    let lowest = values.iter().copied().reduce(f64::min).unwrap_or(f64::NAN);
    let highest = values.iter().copied().reduce(f64::max).unwrap_or(f64::NAN);
    if ratios { format!("{lowest:.2} to {highest:.2}") } else { format!("{lowest:+.0} to {highest:+.0}") }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn bytes_mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

fn verdict(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

impl Report<'_> {
    /// ns per call of `variant` in each round.
    fn absolute(&self, variant: Variant, workload: &str) -> Vec<f64> {
        self.rounds.iter().filter_map(|round| round.get(&(variant, workload)).copied()).collect()
    }

    /// What `variant` added to `workload` in each round, against that round's baseline.
    fn added(&self, variant: Variant, workload: &str) -> Vec<f64> {
        self.rounds
            .iter()
            .filter_map(|round| Some(round.get(&(variant, workload))? - round.get(&(Variant::None, workload))?))
            .collect()
    }

    fn median_added(&self, variant: Variant, workload: &str) -> f64 {
        median(self.added(variant, workload)).unwrap_or(f64::NAN)
    }

    fn added_cell(&self, variant: Variant, workload: &str) -> String {
        let added = self.added(variant, workload);
        let (Some(min), Some(max)) = (added.iter().copied().reduce(f64::min), added.iter().copied().reduce(f64::max))
        else {
            return String::from("-");
        };
        format!("{:+.0} ({:+.0} to {:+.0})", median(added).unwrap_or(f64::NAN), min, max)
    }

    fn render(&self) -> String {
        let mut out = String::new();
        self.render_machine(&mut out);
        self.render_goals(&mut out);
        self.render_per_call(&mut out);
        self.render_attach(&mut out);
        self.render_profile(&mut out);
        self.render_load(&mut out);
        self.render_maps(&mut out);
        out
    }

    fn render_machine(&self, out: &mut String) {
        let m = &self.machine;
        let b = self.bench;
        let _ = writeln!(out, "# batchwatch overhead: `cargo xtask bench`\n");
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| date | {} (took {:.0} s) |", m.date, m.took.as_secs_f64());
        let _ = writeln!(out, "| kernel | {} |", m.kernel);
        let _ = writeln!(
            out,
            "| CPU | {}, {} CPUs{} |",
            m.cpu_model,
            m.cpus,
            if m.hypervisor { ", virtual machine (hypervisor flag)" } else { "" }
        );
        let _ = writeln!(out, "| memory | {} |", m.memory);
        let _ = writeln!(out, "| load average (1, 5, 15 min ...) | at start {}; at end {} |", m.load_start, m.load_end);
        let _ = writeln!(out, "| batchwatch | {}, tree at {} |", m.agent, m.git);
        let _ = writeln!(out, "| bpftrace | {} |", m.bpftrace);
        let _ = writeln!(
            out,
            "| timings | {} rounds × {} calls per syscall and variant, loop pinned to CPU {}; {} of {} timings had \
             other tracing programs loaded |",
            self.rounds.len(),
            b.args.calls,
            b.loops.cpu,
            b.unclean,
            b.timings
        );
        for warning in &b.warnings {
            let _ = writeln!(out, "| warning | {warning} |");
        }
        out.push('\n');
    }

    fn render_goals(&self, out: &mut String) {
        let tp = Variant::Tracepoint;
        let bt = Variant::Bpftrace;
        let _ = writeln!(out, "## Goals (batchwatch with classic tracepoints, which `--attach auto` picks here)\n");
        let _ = writeln!(out, "| goal | target | measured | met |\n|---|---|---|---|");
        let (w_tp, w_bt) = (self.median_added(tp, "write"), self.median_added(bt, "write"));
        let ratio = w_tp / w_bt;
        let ratios: Vec<f64> =
            self.added(tp, "write").iter().zip(self.added(bt, "write")).map(|(tp, bt)| tp / bt).collect();
        let _ = writeln!(
            out,
            "| added per traced `write()`, batchwatch ÷ bpftrace | ≤ {GOAL_WRITE_RATIO} | {ratio:.2} ({w_tp:+.0} ns vs \
             {w_bt:+.0} ns; rounds {}) | {} |",
            range(&ratios, true),
            verdict(ratio <= GOAL_WRITE_RATIO)
        );
        let (g_tp, g_bt) = (self.median_added(tp, "getppid"), self.median_added(bt, "getppid"));
        let differences: Vec<f64> =
            self.added(tp, "getppid").iter().zip(self.added(bt, "getppid")).map(|(tp, bt)| tp - bt).collect();
        let _ = writeln!(
            out,
            "| added per untraced syscall (`getppid`), batchwatch − bpftrace | ≤ {GOAL_UNTRACED_MARGIN_NS} ns | \
             {:+.0} ns ({g_tp:+.0} ns vs {g_bt:+.0} ns; rounds {} ns) | {} |",
            g_tp - g_bt,
            range(&differences, false),
            verdict(g_tp - g_bt <= GOAL_UNTRACED_MARGIN_NS)
        );
        let paced: Vec<&Scenario> = self.load.scenarios.iter().filter(|s| s.target_rate == Some(GOAL_RATE)).collect();
        if !paced.is_empty() {
            let measured: Vec<String> = paced
                .iter()
                .map(|s| format!("{:.2}% at {:.0}/s with {} idle processes", s.cpu_percent, s.rate, s.population))
                .collect();
            let unreached = paced.iter().any(|s| s.rate < 0.95 * GOAL_RATE as f64);
            let over: Vec<String> = paced
                .iter()
                .filter(|s| s.cpu_percent > GOAL_CPU_PERCENT)
                .map(|s| format!("{} processes", s.population))
                .collect();
            let met = match (unreached, over.is_empty()) {
                (true, _) => String::from("**not shown**: the writers did not reach the rate"),
                (false, true) => String::from("yes"),
                (false, false) => format!("**no** with {}", over.join(", ")),
            };
            let _ = writeln!(
                out,
                "| agent CPU at {GOAL_RATE} traced writes/s | ≤ {GOAL_CPU_PERCENT}% of one core | {} | {met} |",
                measured.join("; ")
            );
        }
        let max_population = POPULATIONS[POPULATIONS.len() - 1];
        let rss = self
            .load
            .scenarios
            .iter()
            .filter(|s| s.population == max_population)
            .map(|s| s.memory)
            .max_by_key(|m| m.rss_kib)
            .unwrap_or_default();
        if let Some(tracking) = self.load.tracking.iter().find(|t| t.population == max_population) {
            let within = mib(rss.hwm_kib) <= GOAL_RSS_MIB;
            // Each of the processes made its first write on a new fd: it is
            // tracked if WRITE_STATS took that pair.
            let all_tracked = tracking.misses * 100 <= u64::from(max_population);
            let met = match (within, all_tracked) {
                (false, _) => String::from("**no**"),
                (true, true) => String::from("yes"),
                (true, false) => format!(
                    "**not shown**: within {GOAL_RSS_MIB} MiB, but the kernel map missed {} of the \
                     {max_population} processes",
                    tracking.misses
                ),
            };
            let _ = writeln!(
                out,
                "| agent RSS with {max_population} tracked processes | ≤ {GOAL_RSS_MIB} MiB | VmRSS {:.1} MiB (peak VmHWM \
                 {:.1} MiB) with {max_population} processes started; WRITE_STATS holds {} (process, fd) pairs, {} \
                 first writes missed | {met} |",
                mib(rss.rss_kib),
                mib(rss.hwm_kib),
                tracking.entries,
                tracking.misses,
            );
        }
        let bound: u64 = self.load.maps_full.iter().map(|m| m.payload_bound(self.load.possible_cpus)).sum();
        let charged: u64 = self.load.maps_full.iter().map(|m| m.memlock).sum();
        let unbounded = self.load.maps_full.iter().filter(|m| m.max_entries == 0).count();
        let _ = writeln!(
            out,
            "| kernel maps bounded and documented | every map has max_entries | {} maps, keys + values at most \
             {:.1} MiB; kernel charges {:.1} MiB with {max_population} processes (table below) | {} |",
            self.load.maps_full.len(),
            bytes_mib(bound),
            bytes_mib(charged),
            verdict(unbounded == 0)
        );
        out.push('\n');
    }

    fn render_per_call(&self, out: &mut String) {
        let timed: Vec<Variant> = self.variants.iter().copied().filter(|v| *v != Variant::None).collect();
        let _ = writeln!(
            out,
            "## Added ns per call: median over {} rounds (lowest to highest round)\n\nEach round's variant minus the \
             same round's run with no probes.\n",
            self.rounds.len()
        );
        let mut header = String::from("| syscall | no probes, ns/call |");
        let mut rule = String::from("|---|---|");
        for v in &timed {
            let _ = write!(header, " {} |", v.label());
            rule.push_str("---|");
        }
        header.push_str(" batchwatch tracepoint ÷ bpftrace |");
        rule.push_str("---|");
        let _ = writeln!(out, "{header}\n{rule}");
        for w in &WORKLOADS {
            let base = median(self.absolute(Variant::None, w.name)).unwrap_or(f64::NAN);
            let mut row = format!("| {} | {base:.0} |", w.label);
            for v in &timed {
                let _ = write!(row, " {} |", self.added_cell(*v, w.name));
            }
            let ratio = self.median_added(Variant::Tracepoint, w.name) / self.median_added(Variant::Bpftrace, w.name);
            if w.traced {
                let _ = write!(row, " {ratio:.2} |");
            } else {
                row.push_str(" (not a ratio: see goals) |");
            }
            let _ = writeln!(out, "{row}");
        }
        let _ = writeln!(out, "\nMedian ns per call of each variant:\n");
        let mut header = String::from("| syscall |");
        let mut rule = String::from("|---|");
        for v in &self.variants {
            let _ = write!(header, " {} |", v.short());
            rule.push_str("---|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for w in &WORKLOADS {
            let mut row = format!("| {} |", w.label);
            for v in &self.variants {
                let _ = write!(row, " {:.0} |", median(self.absolute(*v, w.name)).unwrap_or(f64::NAN));
            }
            let _ = writeln!(out, "{row}");
        }
        out.push('\n');
    }

    fn render_attach(&self, out: &mut String) {
        let _ = writeln!(out, "## Attach types side by side (batchwatch; added ns per call, medians)\n");
        let _ = writeln!(
            out,
            "| attach type | per `write()` | per `writev()` | per `io_uring_enter()` (1 NOP) | per untraced `getppid()` \
             |\n|---|---|---|---|---|"
        );
        for v in [Variant::Tracepoint, Variant::RawTracepoint, Variant::Fexit] {
            if self.variants.contains(&v) {
                let _ = writeln!(
                    out,
                    "| {} | {:+.0} | {:+.0} | {:+.0} | {:+.0} |",
                    v.label(),
                    self.median_added(v, "write"),
                    self.median_added(v, "writev"),
                    self.median_added(v, "uring-nop"),
                    self.median_added(v, "getppid"),
                );
            }
        }
        if let Err(reason) = &self.fexit {
            let _ = writeln!(out, "| batchwatch --attach fexit | refused: {reason} | | | |");
        }
        out.push('\n');
    }

    fn render_profile(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "## Where the time goes: BPF program run time (`kernel.bpf_stats_enabled=1`, which itself adds a little \
             per run)\n"
        );
        let _ = writeln!(
            out,
            "| variant | syscall | program | runs per call | ns per run | program ns per call |\n|---|---|---|---|---|---|"
        );
        for row in &self.profile {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {:.0} | {:.0} |",
                row.variant.short(),
                row.workload,
                row.program,
                row.runs_per_call,
                row.ns_per_run,
                row.ns_per_call
            );
        }
        out.push('\n');
    }

    fn render_load(&self, out: &mut String) {
        let load = &self.load;
        let _ = writeln!(
            out,
            "## The agent under load (`--attach tracepoint`; {} writer processes of 1-byte writes to /dev/null)\n",
            self.bench.cpus
        );
        let _ = writeln!(
            out,
            "Idle processes each wrote once and stay alive. 3 s after attaching: VmRSS {:.1} MiB.\n",
            mib(load.started.rss_kib)
        );
        let _ = writeln!(
            out,
            "The agent watches the whole machine, and `record` keeps every process that wrote and then exited until \
             it prints its report: processes others started meanwhile count too. While it ran here, the machine \
             started {} processes, {} of them the benchmark's (besides a few short commands).\n",
            load.machine_started, load.ours
        );
        let _ = writeln!(
            out,
            "| idle processes | writers | traced writes/s reached | agent CPU, % of one core | VmRSS MiB | VmHWM MiB \
             | processes others started in the window |\n|---|---|---|---|---|---|---|"
        );
        for s in &load.scenarios {
            let writers = match s.target_rate {
                None => String::from("none"),
                Some(0) => String::from("flat out"),
                Some(rate) => format!("paced at {rate}/s"),
            };
            let _ = writeln!(
                out,
                "| {} | {writers} | {:.0} | {:.2} | {:.1} | {:.1} | {} |",
                s.population,
                s.rate,
                s.cpu_percent,
                mib(s.memory.rss_kib),
                mib(s.memory.hwm_kib),
                s.others_started
            );
        }
        let _ = writeln!(
            out,
            "\nWhat the kernel side holds after each population's windows (counted from the agent's start; every \
             process above made one write, a (process, fd) pair of its own):\n"
        );
        let _ = writeln!(
            out,
            "| idle processes | WRITE_STATS entries ((process, fd) pairs) | new pairs not taken (PROBE_ERRORS \
             StatsMapFull) | WRITE_STATS charged |\n|---|---|---|---|"
        );
        for t in &load.tracking {
            let _ =
                writeln!(out, "| {} | {} | {} | {:.2} MiB |", t.population, t.entries, t.misses, bytes_mib(t.charged));
        }
        out.push('\n');
    }

    fn render_maps(&self, out: &mut String) {
        let load = &self.load;
        let max_population = POPULATIONS[POPULATIONS.len() - 1];
        let _ = writeln!(
            out,
            "## Kernel maps ({} possible CPUs; bound = (key + value × copies) × max_entries, one copy per possible \
             CPU for per-CPU maps; charged = fdinfo `memlock`)\n",
            load.possible_cpus
        );
        let _ = writeln!(
            out,
            "| map | type | key B | value B | max_entries | flags | bound, keys + values | charged, idle | charged, \
             {max_population} processes |\n|---|---|---|---|---|---|---|---|---|"
        );
        let (mut bound, mut idle, mut full) = (0, 0, 0);
        for map in &load.maps_full {
            let at_idle = load.maps_idle.iter().find(|m| m.id == map.id).map_or(0, |m| m.memlock);
            let b = map.payload_bound(load.possible_cpus);
            bound += b;
            idle += at_idle;
            full += map.memlock;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:#x}{} | {:.2} MiB | {:.2} MiB | {:.2} MiB |",
                map.name,
                map.kind,
                map.key_size,
                map.value_size,
                map.max_entries,
                map.flags,
                if map.grows() { " (no prealloc: grows with entries)" } else { "" },
                bytes_mib(b),
                bytes_mib(at_idle),
                bytes_mib(map.memlock)
            );
        }
        let _ = writeln!(
            out,
            "| **total** | | | | | | {:.2} MiB | {:.2} MiB | {:.2} MiB |\n",
            bytes_mib(bound),
            bytes_mib(idle),
            bytes_mib(full)
        );
        // The maps allocated per entry: what one entry costs, and so what a full map would.
        let (Some(first), Some(last)) = (load.tracking.first(), load.tracking.last()) else { return };
        for map in load.maps_full.iter().filter(|map| map.grows() && map.name == "WRITE_STATS") {
            if last.entries <= first.entries {
                continue;
            }
            let per_entry = last.charged.saturating_sub(first.charged) as f64 / (last.entries - first.entries) as f64;
            let at_max = first.charged as f64 + per_entry * map.max_entries.saturating_sub(first.entries) as f64;
            let others: u64 = load.maps_full.iter().filter(|other| other.id != map.id).map(|other| other.memlock).sum();
            let _ = writeln!(
                out,
                "{} is allocated as entries come: from {} to {} entries the kernel's charge grew by {:.0} bytes per \
                 entry, so at its max_entries ({}) it would be charged about {:.1} MiB, and all maps together about \
                 {:.1} MiB.\n",
                map.name,
                first.entries,
                last.entries,
                per_entry,
                map.max_entries,
                at_max / 1024.0 / 1024.0,
                (at_max + others as f64) / 1024.0 / 1024.0
            );
        }
    }
}
