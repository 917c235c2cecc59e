//! `batchwatch record --format json` end to end: the real binary observes a
//! `dd` writing a known number of blocks, and its report has every documented
//! field with the exact counts. Root only.

#[path = "support/probes_attached.rs"]
mod probes_attached;

use std::{
    process::{Child, Command, Stdio},
    thread::JoinHandle,
};

use probes_attached::wait_for_probes;

use serde_json::Value;

const BLOCKS: u64 = 30_000;
const BLOCK: u64 = 512;

#[test]
fn report_holds_documented_fields_and_exact_counts() {
    let (agent, stderr) = start_recording();
    let dd = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", &format!("bs={BLOCK}"), &format!("count={BLOCKS}")])
        .stderr(Stdio::null())
        .spawn()
        .expect("start dd");
    let dd_pid = dd.id();
    assert!(dd.wait_with_output().expect("dd").status.success());
    let report = finish_recording(agent, stderr);

    let cost = report["node"]["transition_cost_ns"].as_f64().expect("node.transition_cost_ns");
    assert!(cost > 0.0);
    assert_eq!(report["node"]["io_uring"], "allowed");
    let dd = process(&report, dd_pid);

    assert_eq!(dd["comm"], "dd");
    assert_eq!(dd["exited"], true, "dd exited within the window and is still reported");
    let stdout = dd["fds"].as_array().unwrap().iter().find(|fd| fd["fd"] == 1).expect("fd 1 of dd");
    assert_eq!(stdout["write"]["calls"], BLOCKS);
    assert_eq!(stdout["write"]["bytes"], BLOCKS * BLOCK);
    assert_eq!(stdout["write"]["bytes_per_call"]["p50"], BLOCK);
    assert_eq!(stdout["write"]["bytes_per_call"]["p99"], BLOCK);
    assert_eq!(stdout["write"]["records_per_call"]["p50"], 1);
    assert_eq!(stdout["drops"]["total"], 0);

    // The documented process-level fields, with their types.
    let write = &dd["write"];
    assert!(write["calls"].as_u64().unwrap() >= BLOCKS, "dd also writes its summary on stderr");
    assert!(write["bytes"].as_u64().unwrap() >= BLOCKS * BLOCK);
    for field in ["bytes_per_call", "records_per_call", "gap_ns"] {
        assert!(write[field]["p50"].is_u64(), "write.{field}.p50");
        assert!(write[field]["p99"].is_u64(), "write.{field}.p99");
    }
    for reason in ["short_write", "eagain", "epipe", "enobufs", "other_error", "total"] {
        assert!(dd["drops"][reason].is_u64(), "drops.{reason}");
    }
    assert!(dd["transition_cores"].as_f64().unwrap() > 0.0);
    assert!(dd["unbatched"].is_boolean());
    assert!(dd["reasons"].is_array());
}

#[test]
fn report_holds_the_syncs_of_dd() {
    const SYNCED_BLOCKS: u64 = 1000;
    let (agent, stderr) = start_recording();
    let file = std::env::temp_dir().join(format!("bw-record-dd-sync-{}", std::process::id()));
    // `conv=fdatasync`: one fdatasync of the output once every block is written.
    let dd = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}", file.display()), "bs=512", &format!("count={SYNCED_BLOCKS}")])
        .arg("conv=fdatasync")
        .stderr(Stdio::null())
        .spawn()
        .expect("start dd");
    let dd_pid = dd.id();
    assert!(dd.wait_with_output().expect("dd").status.success());
    std::fs::remove_file(&file).ok();
    let report = finish_recording(agent, stderr);

    let dd = process(&report, dd_pid);
    let out = dd["fds"].as_array().unwrap().iter().find(|fd| fd["fd"] == 1).expect("fd 1 of dd");
    let sync = &out["sync"];
    assert_eq!(sync["calls"], 1);
    assert_eq!(sync["calls_by_syscall"]["fdatasync"], 1);
    assert_eq!(sync["writes"], SYNCED_BLOCKS, "the one sync made every block durable");
    assert_eq!(sync["bytes"], SYNCED_BLOCKS * 512);
    assert_eq!(sync["writes_per_sync"]["p50"], 1024, "1000 lies in the bucket (512, 1024]");
    assert_eq!(sync["writes_per_sync"]["mean"], SYNCED_BLOCKS as f64);
    assert!(sync["latency_ns"]["p50"].as_u64().unwrap() > 0);
    assert_eq!(sync["errors"]["total"], 0);
    assert_eq!(out["sync_per_write"], false);
    assert_eq!(dd["sync"]["calls"], 1);
    assert_eq!(dd["sync_per_write"], false);
    assert!(dd["advice"].is_array());
    assert!(report["node"]["sync_map_full"].is_u64());
}

#[test]
fn report_holds_io_uring_batches_of_fio() {
    let (agent, stderr) = start_recording();
    let file = std::env::temp_dir().join(format!("bw-record-fio-{}", std::process::id()));
    let fio = Command::new("fio")
        .args(["--name=batchwatch", "--size=8M", "--rw=write", "--bs=4k", "--ioengine=io_uring", "--direct=1"])
        .args(["--iodepth=16", "--iodepth_batch_submit=16", "--iodepth_batch_complete_min=16", "--thread"])
        .arg(format!("--filename={}", file.display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("fio runs (apt-get install fio)");
    let fio_pid = fio.id();
    assert!(fio.wait_with_output().expect("fio").status.success());
    std::fs::remove_file(&file).ok();
    let report = finish_recording(agent, stderr);

    let uring = &process(&report, fio_pid)["io_uring"];
    assert_eq!(uring["sqes"], 2048, "8 MiB in 4 KiB writes");
    assert_eq!(uring["sqes_by_class"]["write"], 2048);
    assert_eq!(uring["sqes_per_enter"]["p50"], 16);
    assert!(uring["enters"].as_u64().unwrap() >= 128);
    assert_eq!(uring["sqpoll"], false);
    assert_eq!(uring["wakeups"], 0);
    assert_eq!(uring["cq_overflows"], 0);
    assert_eq!(uring["denied_setups"], 0);
    assert_eq!(uring["rings"][0]["sq_entries"], 16);
}

/// Starts `batchwatch record` for 4 s and waits until its probes are attached.
fn start_recording() -> (Child, JoinHandle<String>) {
    let mut agent = Command::new(env!("CARGO_BIN_EXE_batchwatch"))
        .args(["record", "--duration", "4s", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start batchwatch");
    let (attached, stderr) = wait_for_probes(agent.stderr.take().expect("stderr"));
    assert!(attached, "batchwatch did not start: {}", stderr.join().unwrap_or_default());
    (agent, stderr)
}

fn finish_recording(agent: Child, stderr: JoinHandle<String>) -> Value {
    let output = agent.wait_with_output().expect("batchwatch runs");
    assert!(output.status.success(), "batchwatch failed: {}", stderr.join().expect("stderr"));
    serde_json::from_slice(&output.stdout).expect("the report is JSON")
}

fn process(report: &Value, pid: u32) -> &Value {
    let processes = report["processes"].as_array().expect("processes array");
    processes.iter().find(|p| p["pid"] == pid).unwrap_or_else(|| panic!("pid {pid} missing from {processes:#?}"))
}
