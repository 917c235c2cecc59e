//! Waiting for a `batchwatch` child to attach its probes.

use std::{
    io::{BufRead as _, BufReader},
    process::ChildStderr,
    thread::{self, JoinHandle},
};

/// Reads the agent's stderr until it says its probes are attached. Returns
/// what it said so far, whether it got there, and a thread that collects the
/// rest of its stderr (so the agent never blocks on a full pipe).
pub fn wait_for_probes(stderr: ChildStderr) -> (bool, JoinHandle<String>) {
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    let mut attached = false;
    for line in lines.by_ref() {
        let line = line.expect("stderr is text");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("probes attached") {
            attached = true;
            break;
        }
    }
    (attached, thread::spawn(move || seen + &lines.map_while(Result::ok).collect::<Vec<_>>().join("\n")))
}
