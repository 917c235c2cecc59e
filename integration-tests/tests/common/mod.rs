//! Shared by the integration tests: start the agent, run workloads, find
//! what the agent saw of them.
#![allow(dead_code, reason = "each test file uses its own subset")]

use std::{
    process::{Command, Stdio},
    rc::Rc,
    thread,
    time::Duration,
};

use batchwatch::{agent::Agent, config::Config, model::ProcessState};
use integration_tests::WorkloadReport;

pub const WORKLOAD: &str = env!("CARGO_BIN_EXE_workload");

/// A workload that ran while the agent watched.
pub struct Observed {
    pub report: WorkloadReport,
    pub agent: Rc<Agent>,
}

impl Observed {
    /// What the agent knows of the workload's process.
    pub fn process(&self) -> &ProcessState {
        self.agent
            .model()
            .process(self.report.pid)
            .unwrap_or_else(|| panic!("the agent never saw pid {} ({:?})", self.report.pid, self.report))
    }
}

/// Starts the agent with the default configuration, or fails saying why.
pub fn start_agent() -> Agent {
    start_agent_with(&Config::default())
}

pub fn start_agent_with(config: &Config) -> Agent {
    Agent::start_with_probes(config).unwrap_or_else(|e| panic!("starting the agent (these tests need root): {e}"))
}

/// Runs the workload helper with `args` under the agent.
pub fn observe(args: &[&str]) -> Observed {
    observe_command(Command::new(WORKLOAD).args(args))
}

/// Runs the workload helper with `args` under an agent started with `config`.
pub fn observe_with(config: &Config, args: &[&str]) -> Observed {
    let (agent, output, _) = run_under(start_agent_with(config), Command::new(WORKLOAD).args(args));
    Observed { report: parse_report(&output.stdout), agent: Rc::new(agent) }
}

/// Runs `command` (which runs the workload helper) under the agent, then
/// reads the maps once.
pub fn observe_command(command: &mut Command) -> Observed {
    let (agent, output, _) = run_under_agent(command);
    Observed { report: parse_report(&output.stdout), agent: Rc::new(agent) }
}

/// Runs fio writing 8 MiB with direct I/O through io_uring, submitting and
/// reaping `batch` at a time, in one process (`--thread`).
pub fn observe_fio(fio: &str, file: &std::path::Path, batch: u32) -> Observed {
    let (agent, _, pid) = run_under_agent(
        Command::new(fio)
            .args(["--name=batchwatch", "--size=8M", "--rw=write", "--bs=4k", "--ioengine=io_uring"])
            .args(["--direct=1", "--iodepth=16", "--thread", "--output=/dev/null"])
            .arg(format!("--filename={}", file.display()))
            .arg(format!("--iodepth_batch_submit={batch}"))
            .arg(format!("--iodepth_batch_complete_min={batch}")),
    );
    Observed { report: WorkloadReport { pid, ..WorkloadReport::default() }, agent: Rc::new(agent) }
}

/// Runs `command` to its end under a fresh agent, then reads the maps once.
fn run_under_agent(command: &mut Command) -> (Agent, std::process::Output, u32) {
    run_under(start_agent(), command)
}

fn run_under(mut agent: Agent, command: &mut Command) -> (Agent, std::process::Output, u32) {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("the workload starts");
    let pid = child.id();
    let output = child.wait_with_output().expect("the workload runs");
    assert!(output.status.success(), "workload failed: {output:?}");
    agent.tick().expect("reading the maps");
    (agent, output, pid)
}

/// Runs several workloads at once, ticking every interval as the live agent
/// would, until they are all done.
pub fn observe_while_ticking<const N: usize>(workloads: [&[&str]; N]) -> [Observed; N] {
    observe_while_ticking_with(&Config::default(), workloads)
}

/// As [`observe_while_ticking`], under an agent started with `config`.
pub fn observe_while_ticking_with<const N: usize>(config: &Config, workloads: [&[&str]; N]) -> [Observed; N] {
    let mut agent = start_agent_with(config);
    let mut children =
        workloads.map(|args| Command::new(WORKLOAD).args(args).stdout(Stdio::piped()).spawn().expect("spawn workload"));
    // Read each report as it comes: a long one would fill the pipe and
    // block its writer.
    let reports = children.each_mut().map(|child| {
        let mut stdout = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut text).expect("workload stdout");
            text
        })
    });
    while children.iter_mut().any(|c| c.try_wait().expect("wait").is_none()) {
        thread::sleep(Duration::from_secs(1));
        agent.tick().expect("reading the maps");
    }
    agent.tick().expect("reading the maps");
    let agent = Rc::new(agent);
    let mut reports = reports.into_iter();
    children.map(|mut child| {
        let status = child.wait().expect("workload exit");
        assert!(status.success(), "workload failed: {status}");
        let stdout = reports.next().expect("one report per child").join().expect("reader thread");
        Observed { report: parse_report(&stdout), agent: Rc::clone(&agent) }
    })
}

/// The report the workload printed last on its stdout.
pub fn parse_report(stdout: &[u8]) -> WorkloadReport {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().unwrap_or_else(|| panic!("no report from the workload: {text:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad report {line:?}: {e}"))
}

/// The path of `tool`, or a failure that says how to install it.
pub fn require_tool(tool: &str, package: &str) -> String {
    let found = Command::new("which").arg(tool).output().expect("which runs");
    assert!(found.status.success(), "{tool} is missing: `apt-get install {package}` (`cargo xtask setup` installs it)");
    String::from_utf8_lossy(&found.stdout).trim().to_owned()
}

/// Calls of `syscall` in an `strace -c` summary table.
pub fn strace_calls(summary: &str, syscall: &str) -> u64 {
    summary
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.last() == Some(&syscall))
        .and_then(|fields| fields.get(3)?.parse().ok())
        .unwrap_or_else(|| panic!("no {syscall} row in:\n{summary}"))
}
