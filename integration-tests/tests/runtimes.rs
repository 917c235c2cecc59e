//! Real runtimes, each running the same tiny program two ways: one write()
//! per record, and through its runtime's batching primitive
//! (integration-tests/runtimes/). batchwatch must name the runtime, flag
//! only the first, and advise the primitive.
//!
//! Root only; needs nodejs, a JDK (default-jdk-headless, for `java
//! File.java`), python3 and golang-go, which `cargo xtask setup` installs.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use batchwatch::runtime::RuntimeName;
use common::{WORKLOAD, require_tool, start_agent};

/// Records each program writes: 4.5 s at 5,000 a second.
const RECORDS: &str = "22500";

fn programs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runtimes")
}

/// One program run: what it is, how it runs, what batchwatch must say.
struct Run {
    runtime: RuntimeName,
    /// Flagged, with advice naming this; or not flagged at all.
    flagged_with: Option<&'static str>,
    child: Child,
}

fn spawn(command: &mut Command) -> Child {
    command.stdout(Stdio::null()).spawn().unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

/// Builds writer.go once, into the target directory.
fn go_writer() -> PathBuf {
    let go = require_tool("go", "golang-go");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-writer");
    let status = Command::new(go)
        .args(["build", "-o"])
        .arg(&out)
        .arg(programs().join("writer.go"))
        .env("GOCACHE", Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache"))
        .env("GOFLAGS", "-mod=mod")
        .status()
        .expect("go build runs");
    assert!(status.success(), "go build failed");
    out
}

#[test]
fn each_runtime_is_named_and_only_its_unbuffered_writer_is_flagged_with_its_primitive() {
    let node = require_tool("node", "nodejs");
    let java = require_tool("java", "default-jdk-headless");
    let python = require_tool("python3", "python3");
    let go = go_writer();
    let mut agent = start_agent();
    let dir = programs();
    let mut runs = Vec::new();
    let mut run = |runtime, flagged_with, command: &mut Command| {
        runs.push(Run { runtime, flagged_with, child: spawn(command) });
    };
    let args = |mode: &str| [mode.to_owned(), RECORDS.to_owned()];
    run(RuntimeName::Nodejs, Some("cork()"), Command::new(&node).arg(dir.join("writer.js")).args(args("unbuffered")));
    run(RuntimeName::Nodejs, None, Command::new(&node).arg(dir.join("writer.js")).args(args("corked")));
    let java_file = dir.join("Writer.java");
    run(RuntimeName::Java, Some("BufferedOutputStream"), Command::new(&java).arg(&java_file).args(args("unbuffered")));
    run(RuntimeName::Java, None, Command::new(&java).arg(&java_file).args(args("buffered")));
    let py = dir.join("writer.py");
    run(RuntimeName::Python, Some("buffered file object"), Command::new(&python).arg(&py).args(args("unbuffered")));
    run(RuntimeName::Python, None, Command::new(&python).arg(&py).args(args("buffered")));
    run(RuntimeName::Go, Some("bufio.Writer"), Command::new(&go).args(args("unbuffered")));
    run(RuntimeName::Go, None, Command::new(&go).args(args("buffered")));
    let rust = ["--count", RECORDS, "--size", "20", "--rate", "5000"];
    run(RuntimeName::Rust, Some("BufWriter"), Command::new(WORKLOAD).arg("write").args(rust));
    run(RuntimeName::Rust, None, Command::new(WORKLOAD).arg("buffered").args(rust));

    while runs.iter_mut().any(|run| run.child.try_wait().expect("wait").is_none()) {
        thread::sleep(Duration::from_secs(1));
        agent.tick().expect("reading the maps");
    }
    agent.tick().expect("reading the maps");
    let mut failures = Vec::new();
    for run in &mut runs {
        let status = run.child.wait().expect("exit");
        let pid = run.child.id();
        let Some(process) = agent.model().process(pid) else {
            failures.push(format!("{:?} pid {pid} ({status}): never seen", run.runtime));
            continue;
        };
        let runtime = process.identity.runtime.as_ref().map(|r| r.name);
        let advice = process.last_advice.join("\n");
        let flagged = process.ever_unbatched;
        let right = status.success()
            && runtime == Some(run.runtime)
            && match run.flagged_with {
                Some(primitive) => flagged && advice.contains(primitive),
                None => !flagged,
            };
        eprintln!(
            "{:?} {}: runtime {:?}, {} calls, flagged {flagged}, advice: {advice}",
            run.runtime,
            if run.flagged_with.is_some() { "unbuffered" } else { "with its primitive" },
            process.identity.runtime,
            process.total().total_calls(),
        );
        if !right {
            failures.push(format!(
                "{:?} pid {pid} ({status}, {}): runtime {runtime:?}, flagged {flagged}, advice {advice:?}, reasons {:?}",
                run.runtime,
                process.identity.command,
                process.last_reasons
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
