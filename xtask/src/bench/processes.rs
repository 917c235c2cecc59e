//! The processes the benchmark starts: the tracer of each variant (batchwatch
//! with one attach type, the bpftrace one-liner, or empty programs on
//! batchwatch's hooks), the timed loops, the writers that load the agent, and
//! the holders of many idle processes. Each is stopped by its own pid.

use std::{
    io::{BufRead as _, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::cmd;

/// What runs while a syscall loop is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// No probes at all (the baseline).
    None,
    /// batchwatch, classic `syscalls:sys_exit_*` tracepoints.
    Tracepoint,
    /// batchwatch, one BTF tracepoint on every syscall's exit.
    RawTracepoint,
    /// The bpftrace one-liner on the `sys_enter_*` tracepoints.
    Bpftrace,
    /// Empty programs on every tracepoint `batchwatch --attach tracepoint`
    /// attaches to (see [`Floor`]): what the hooks cost by themselves.
    Floor,
    /// batchwatch, fexit on the syscall functions (timed only where the
    /// kernel accepts it).
    Fexit,
}

impl Variant {
    /// What every run compares; fexit joins where the kernel accepts it.
    pub const ALWAYS: [Variant; 5] =
        [Variant::None, Variant::Floor, Variant::Tracepoint, Variant::RawTracepoint, Variant::Bpftrace];

    pub fn label(self) -> &'static str {
        match self {
            Variant::None => "no probes",
            Variant::Tracepoint => "batchwatch --attach tracepoint",
            Variant::RawTracepoint => "batchwatch --attach raw-tracepoint",
            Variant::Bpftrace => "bpftrace one-liner",
            Variant::Floor => "empty programs on the same hooks (floor)",
            Variant::Fexit => "batchwatch --attach fexit",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Variant::None => "none",
            Variant::Tracepoint => "batchwatch tracepoint",
            Variant::RawTracepoint => "batchwatch raw-tracepoint",
            Variant::Bpftrace => "bpftrace",
            Variant::Floor => "floor",
            Variant::Fexit => "batchwatch fexit",
        }
    }
}

/// The bpftrace one-liner, once per timed syscall: calls per pid and a
/// histogram of bytes (write), iovecs (writev) or SQEs (io_uring_enter) per call.
pub const BPFTRACE_SCRIPT: &str = "\
tracepoint:syscalls:sys_enter_write { @c[pid] = count(); @h[pid] = hist(args->count); }
tracepoint:syscalls:sys_enter_writev { @c[pid] = count(); @h[pid] = hist(args->vlen); }
tracepoint:syscalls:sys_enter_sendto { @c[pid] = count(); @h[pid] = hist(args->len); }
tracepoint:syscalls:sys_enter_io_uring_enter { @c[pid] = count(); @h[pid] = hist(args->to_submit); }";

/// Probes in [`BPFTRACE_SCRIPT`].
const BPFTRACE_PROBES: usize = 4;

/// The floor: a program that does nothing (bpftrace compiles an empty body
/// to two instructions, `r0 = 0; exit`) on each classic tracepoint that
/// batchwatch attaches to. bpftrace attaches a tracepoint program exactly as
/// aya does (a perf event of the tracepoint, the program set on it), so the
/// kernel runs the same path up to the program: the syscall slow path,
/// building the tracepoint record, `trace_call_bpf`. Whatever batchwatch
/// adds above this is its programs' own work.
pub struct Floor {
    /// `tracepoint:category:name` of each hook.
    pub hooks: Vec<String>,
}

impl Floor {
    /// Asks batchwatch which tracepoints it attaches (a short `record`, whose
    /// report lists them), and writes the empty programs for those.
    pub fn of(agent: &Path) -> anyhow::Result<Floor> {
        let mut record = Command::new(agent);
        record.args(["--attach", "tracepoint", "record", "--duration", "2s", "--format", "json"]);
        let report = cmd::read(&mut record)?;
        let start = report.find('{').with_context(|| format!("no JSON report from batchwatch: {report}"))?;
        let report: serde_json::Value =
            serde_json::from_str(&report[start..]).context("reading batchwatch's report")?;
        let attached = report["node"]["probes_attached"].as_array().context("no node.probes_attached in the report")?;
        // `category:name` for tracepoints; `fexit:` and `tp_btf:` are other attach types.
        let hooks: Vec<String> = attached
            .iter()
            .filter_map(|hook| hook.as_str())
            .filter(|hook| !hook.starts_with("fexit:") && !hook.starts_with("tp_btf:"))
            .map(|hook| format!("tracepoint:{hook}"))
            .collect();
        if hooks.is_empty() {
            bail!("batchwatch --attach tracepoint attached no tracepoint: {attached:?}");
        }
        Ok(Floor { hooks })
    }

    /// One empty program on every hook.
    fn script(&self) -> String {
        format!("{} {{}}", self.hooks.join(",\n"))
    }
}

/// What starts the tracers: the batchwatch binary, and the floor's script.
pub struct Tracers {
    pub agent: PathBuf,
    pub floor: Floor,
    /// The CPUs a tracer runs on while loops are timed (`taskset` list): all
    /// but the loops' own, so that the tracer's own work in user space (the
    /// agent reading its maps every second, bpftrace's) does not run on the
    /// timed CPU and count as a cost per syscall. The agent's own CPU is
    /// measured apart ("The agent under load"). None on a single CPU.
    pub away_from_loops: Option<String>,
}

/// Where a tracer may run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Off the CPU of the timed loops.
    AwayFromLoops,
    /// On any CPU, as it would on a node.
    Anywhere,
}

/// How long a tracer may take to attach (bpftrace compiles its script first).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running tracer, and every line it has printed on stdout and stderr.
pub struct Tracer {
    child: Child,
    lines: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    seen: Vec<String>,
}

impl Tracer {
    /// Starts the tracer of `variant` (none for [`Variant::None`]) and
    /// returns once its probes are attached.
    pub fn start(variant: Variant, tracers: &Tracers, placement: Placement) -> anyhow::Result<Option<Tracer>> {
        let agent = &tracers.agent;
        let (command, ready, probes) = match variant {
            Variant::None => return Ok(None),
            Variant::Tracepoint => (agent_command(agent, "tracepoint"), "probes attached", None),
            Variant::RawTracepoint => (agent_command(agent, "raw-tracepoint"), "probes attached", None),
            Variant::Fexit => (agent_command(agent, "fexit"), "probes attached", None),
            Variant::Bpftrace => (bpftrace(BPFTRACE_SCRIPT), "Attaching", Some(BPFTRACE_PROBES)),
            Variant::Floor => (bpftrace(&tracers.floor.script()), "Attaching", Some(tracers.floor.hooks.len())),
        };
        let command = match (&tracers.away_from_loops, placement) {
            (Some(cpus), Placement::AwayFromLoops) => pinned(command, cpus),
            _ => command,
        };
        let mut tracer = Tracer::spawn(command)?;
        tracer.wait_for(ready).with_context(|| format!("starting {}", variant.label()))?;
        if let Some(probes) = probes {
            // bpftrace prints "Attaching N probes..." before it attaches them.
            tracer.wait_for_fds("anon_inode:[perf_event]", probes)?;
        }
        Ok(Some(tracer))
    }

    fn spawn(mut command: Command) -> anyhow::Result<Tracer> {
        let line = cmd::display(&command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start `{line}`"))?;
        let (send, lines) = mpsc::channel();
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("piped"));
        let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("piped"));
        let readers = [stdout, stderr]
            .into_iter()
            .map(|stream| {
                let send = send.clone();
                thread::spawn(move || {
                    for line in BufReader::new(stream).lines() {
                        let Ok(line) = line else { break };
                        if send.send(line).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Ok(Tracer { child, lines, readers, seen: Vec::new() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line containing `marker`; fails if the tracer exits first.
    fn wait_for(&mut self, marker: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let found = line.contains(marker);
                    self.seen.push(line);
                    if found {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Both streams closed: only its exit is left to see.
                Err(RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(50)),
            }
            if let Some(status) = self.child.try_wait()? {
                // Collect what it said on the way out.
                thread::sleep(Duration::from_millis(100));
                self.seen.extend(self.lines.try_iter());
                bail!("it exited ({status}) before printing {marker:?}; it printed:\n{}", self.seen.join("\n"));
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("no {marker:?} after {START_TIMEOUT:?}; it printed:\n{}", self.seen.join("\n"));
            }
        }
    }

    /// Waits until the tracer holds at least `count` descriptors to `target`
    /// and their number has not changed for 300 ms, then 300 ms more.
    fn wait_for_fds(&mut self, target: &str, count: usize) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last = (0, Instant::now());
        loop {
            let now = fds_to(self.pid(), target);
            if now != last.0 {
                last = (now, Instant::now());
            } else if now >= count && last.1.elapsed() > Duration::from_millis(300) {
                thread::sleep(Duration::from_millis(300));
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("the tracer holds {now} descriptors to {target}, not {count}, after {START_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then SIGKILL after 10 s; returns every line it printed.
    pub fn stop(mut self) -> anyhow::Result<Vec<String>> {
        terminate(&mut self.child)?;
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.seen.extend(self.lines.try_iter());
        Ok(self.seen)
    }
}

/// `command` run by `taskset` on `cpus`; taskset execs it, so its pid is the tracer's.
fn pinned(command: Command, cpus: &str) -> Command {
    let mut taskset = Command::new("taskset");
    taskset.args(["--cpu-list", cpus]).arg(command.get_program()).args(command.get_args());
    taskset
}

fn bpftrace(script: &str) -> Command {
    let mut bpftrace = Command::new("bpftrace");
    bpftrace.args(["-e", script]);
    bpftrace
}

fn agent_command(agent: &Path, attach: &str) -> Command {
    let mut batchwatch = Command::new(agent);
    // No eviction during a run: the idle processes' pairs stay in the kernel
    // map, the worst case for the agent, and the report can count them.
    batchwatch.args(["--attach", attach, "--evict-idle-after", "1day"]);
    batchwatch.args(["record", "--duration", "1h", "--format", "json"]);
    batchwatch
}

/// How many of `pid`'s descriptors point at `target`.
fn fds_to(pid: u32, target: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|link| link.as_os_str() == target)
        .count()
}

/// SIGTERM to `child` (by its pid), SIGKILL if it is still there after 10 s.
pub fn terminate(child: &mut Child) -> anyhow::Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let asked = Instant::now();
    while asked.elapsed() < Duration::from_secs(10) {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.kill().context("SIGKILL")?;
    child.wait()?;
    Ok(())
}

/// The release build of `bench-loop`.
pub struct Loops {
    pub binary: PathBuf,
    /// The CPU the timed loops are pinned to.
    pub cpu: usize,
}

/// One workload's timing from one run of the loop.
pub struct Timing {
    pub workload: String,
    pub median_ns: f64,
    /// Calls made, with the untimed warm-up.
    pub all_calls: u64,
}

impl Loops {
    /// Times `workloads` (names `bench-loop measure` knows), pinned to one
    /// CPU; returns the timings and the loop's pid.
    pub fn measure(&self, calls: u64, workloads: &[&str]) -> anyhow::Result<(Vec<Timing>, u32)> {
        let mut taskset = Command::new("taskset");
        taskset
            .args(["--cpu-list", &self.cpu.to_string()])
            .arg(&self.binary)
            .args(["measure", "--calls", &calls.to_string()])
            .args(workloads)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        let line = cmd::display(&taskset);
        // taskset execs the loop: the child's pid is the loop's.
        let child = taskset.stdout(Stdio::piped()).spawn().with_context(|| format!("could not start `{line}`"))?;
        let pid = child.id();
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!("`{line}` failed ({})", output.status);
        }
        let mut timings = Vec::new();
        for text in String::from_utf8_lossy(&output.stdout).lines() {
            let words: Vec<&str> = text.split_whitespace().collect();
            let [workload, median, _min, _timed, all] = words[..] else { bail!("`{line}` printed {text:?}") };
            timings.push(Timing { workload: workload.to_owned(), median_ns: median.parse()?, all_calls: all.parse()? });
        }
        Ok((timings, pid))
    }

    /// Starts a writer of 1-byte writes for `seconds`, paced at `rate`/s (0: flat out).
    pub fn writer(&self, seconds: f64, rate: u64) -> anyhow::Result<Child> {
        let mut writer = Command::new(&self.binary);
        writer.args(["sustain", "--seconds", &seconds.to_string(), "--rate", &rate.to_string()]);
        Ok(writer.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?)
    }

    /// Starts `processes` idle processes that wrote once each; returns once all have.
    pub fn hold(&self, processes: u32) -> anyhow::Result<Holder> {
        let mut holder = Command::new(&self.binary);
        holder.args(["hold", &processes.to_string()]);
        let mut child = holder.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        if line.trim() != format!("ready {processes}") {
            terminate(&mut child)?;
            bail!("`bench-loop hold {processes}` printed {line:?}, not `ready {processes}`");
        }
        let stdin = child.stdin.take();
        Ok(Holder { child, stdin })
    }
}

/// Writes per second a finished writer reached: it prints `CALLS SECONDS`.
pub fn writer_rate(writer: Child) -> anyhow::Result<f64> {
    let output = writer.wait_with_output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let [calls, seconds] = words[..] else { bail!("a writer printed {text:?}") };
    Ok(calls.parse::<f64>()? / seconds.parse::<f64>()?)
}

/// Idle processes held alive by one `bench-loop hold`; they exit with it.
pub struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Holder {
    /// Closes the holder's stdin: it lets its children go, reaps them and exits.
    pub fn release(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        terminate(&mut self.child)
    }
}
