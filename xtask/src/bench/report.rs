//! The benchmark's markdown report: the machine, the goals met or not, the
//! cost per call of each variant, where the time goes, and the agent under
//! load with its kernel maps. Only formats what `bench` measured.

use std::fmt::Write as _;

use super::{
    Bench, GOAL_BPFTRACE_RATIO, GOAL_CPU_PERCENT, GOAL_FLOOR_RATIO, GOAL_MAPS_CPUS, GOAL_MAPS_MIB, GOAL_RATE,
    GOAL_RSS_MIB, GOAL_SYNC_PERCENT, GOAL_UNTRACED_OVER_FLOOR_NS, Kind, Load, MAP_BOUND_CPUS, Machine, POPULATIONS,
    ProfileRow, Round, Scenario, WORKLOADS, Workload, processes::Variant,
};

/// Everything one run measured.
pub(super) struct Report<'a> {
    pub(super) machine: Machine,
    pub(super) bench: &'a Bench<'a>,
    pub(super) variants: Vec<Variant>,
    pub(super) rounds: Vec<Round>,
    pub(super) fexit: Result<(), String>,
    pub(super) profile: Vec<ProfileRow>,
    pub(super) load: Load,
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

    /// Median added by `variant` ÷ median added by `other`, and the same
    /// ratio in each round.
    fn ratio(&self, variant: Variant, other: Variant, workload: &str) -> (f64, Vec<f64>) {
        let rounds =
            self.added(variant, workload).iter().zip(self.added(other, workload)).map(|(a, b)| a / b).collect();
        (self.median_added(variant, workload) / self.median_added(other, workload), rounds)
    }

    fn added_cell(&self, variant: Variant, workload: &str) -> String {
        let added = self.added(variant, workload);
        let (Some(min), Some(max)) = (added.iter().copied().reduce(f64::min), added.iter().copied().reduce(f64::max))
        else {
            return String::from("-");
        };
        format!("{:+.0} ({:+.0} to {:+.0})", median(added).unwrap_or(f64::NAN), min, max)
    }

    /// The markdown report.
    pub(super) fn render(&self) -> String {
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
            "| timings | {} rounds × {} calls per syscall and variant, loop pinned to CPU {}, tracers to CPUs {}; {} of \
             {} timings had other tracing programs loaded |",
            self.rounds.len(),
            b.args.calls,
            b.loops.cpu,
            b.tracers.away_from_loops.as_deref().unwrap_or("any"),
            b.unclean,
            b.timings
        );
        let _ = writeln!(out, "| floor | empty bpftrace programs on {} |", b.tracers.floor.hooks.join(", "));
        for warning in &b.warnings {
            let _ = writeln!(out, "| warning | {warning} |");
        }
        out.push('\n');
    }

    fn render_goals(&self, out: &mut String) {
        let tp = Variant::Tracepoint;
        let _ = writeln!(out, "## Goals (batchwatch with classic tracepoints, which `--attach auto` picks here)\n");
        let _ = writeln!(out, "| goal | target | measured | met |\n|---|---|---|---|");
        for w in WORKLOADS.iter().filter(|w| w.kind == Kind::Traced) {
            for (other, goal) in [(Variant::Floor, GOAL_FLOOR_RATIO), (Variant::Bpftrace, GOAL_BPFTRACE_RATIO)] {
                let (ratio, rounds) = self.ratio(tp, other, w.name);
                let _ = writeln!(
                    out,
                    "| added per {}, batchwatch ÷ {} | ≤ {goal} | {ratio:.2} ({:+.0} ns vs {:+.0} ns; rounds {}) | {} |",
                    w.label,
                    other.short(),
                    self.median_added(tp, w.name),
                    self.median_added(other, w.name),
                    range(&rounds, true),
                    verdict(ratio <= goal)
                );
            }
        }
        for w in WORKLOADS.iter().filter(|w| w.kind == Kind::Sync) {
            self.render_sync_goal(w, out);
        }
        for w in WORKLOADS.iter().filter(|w| w.kind == Kind::Untraced) {
            let over: Vec<f64> =
                self.added(tp, w.name).iter().zip(self.added(Variant::Floor, w.name)).map(|(tp, fl)| tp - fl).collect();
            let worst = over.iter().copied().reduce(f64::max).unwrap_or(f64::NAN);
            let _ = writeln!(
                out,
                "| added per untraced {}, batchwatch − floor, in every round | ≤ {GOAL_UNTRACED_OVER_FLOOR_NS} ns | \
                 median {:+.0} ns ({:+.0} ns vs {:+.0} ns; rounds {} ns) | {} |",
                w.label,
                median(over.clone()).unwrap_or(f64::NAN),
                self.median_added(tp, w.name),
                self.median_added(Variant::Floor, w.name),
                range(&over, false),
                verdict(worst <= GOAL_UNTRACED_OVER_FLOOR_NS)
            );
        }
        let at_goal = bytes_mib(self.load.maps_full.iter().map(|m| m.payload_bound(GOAL_MAPS_CPUS)).sum());
        let _ = writeln!(
            out,
            "| kernel maps' bound on a node of {GOAL_MAPS_CPUS} possible CPUs (this run's max_entries) | ≤ \
             {GOAL_MAPS_MIB} MiB | {at_goal:.1} MiB | {} |",
            verdict(at_goal <= GOAL_MAPS_MIB)
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

    /// The cost per durable write: what batchwatch's programs run per call
    /// (bpf_stats: timing a ~1% difference on a call that waits for the
    /// disk is within its noise) against the call without probes.
    fn render_sync_goal(&self, w: &Workload, out: &mut String) {
        let programs_ns: f64 = self
            .profile
            .iter()
            .filter(|row| row.variant == Variant::Tracepoint && row.workload == w.label)
            .map(|row| row.ns_per_call)
            .sum();
        let base = median(self.absolute(Variant::None, w.name)).unwrap_or(f64::NAN);
        let percent = 100.0 * programs_ns / base;
        let _ = writeln!(
            out,
            "| batchwatch's programs per {}, ÷ the call without probes | ≤ {GOAL_SYNC_PERCENT}% | {percent:.2}% \
             ({programs_ns:.0} ns of programs, bpf_stats, against {base:.0} ns; timed, batchwatch added {} ns) | {} |",
            w.label,
            self.added_cell(Variant::Tracepoint, w.name),
            verdict(percent <= GOAL_SYNC_PERCENT)
        );
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
        header.push_str(" batchwatch tracepoint ÷ floor | batchwatch tracepoint ÷ bpftrace |");
        rule.push_str("---|---|");
        let _ = writeln!(out, "{header}\n{rule}");
        for w in &WORKLOADS {
            let base = median(self.absolute(Variant::None, w.name)).unwrap_or(f64::NAN);
            let mut row = format!("| {} | {base:.0} |", w.label);
            for v in &timed {
                let _ = write!(row, " {} |", self.added_cell(*v, w.name));
            }
            if w.kind == Kind::Traced {
                for other in [Variant::Floor, Variant::Bpftrace] {
                    let _ = write!(row, " {:.2} |", self.ratio(Variant::Tracepoint, other, w.name).0);
                }
            } else {
                row.push_str(" (not a ratio: see goals) | |");
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
        for v in [Variant::Floor, Variant::Tracepoint, Variant::RawTracepoint, Variant::Fexit] {
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
        let _ = writeln!(
            out,
            "The same maps (this run's max_entries) on larger nodes: per-CPU maps hold one copy of each value per \
             possible CPU, the others one.\n\n| possible CPUs | bound, keys + values | of it, per-CPU maps |\n|---|---|---|"
        );
        for cpus in MAP_BOUND_CPUS {
            let per_cpu: u64 = load.maps_full.iter().filter(|m| m.per_cpu()).map(|m| m.payload_bound(cpus)).sum();
            let all: u64 = load.maps_full.iter().map(|m| m.payload_bound(cpus)).sum();
            let _ = writeln!(out, "| {cpus} | {:.2} MiB | {:.2} MiB |", bytes_mib(all), bytes_mib(per_cpu));
        }
        out.push('\n');
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
