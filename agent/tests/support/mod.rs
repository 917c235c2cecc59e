//! What the export tests share: the `batchwatch run` process and a `dd`
//! workload. Root only: the agent loads its probes.

mod probes_attached;

pub use probes_attached::wait_for_probes;

use std::{
    io::Write as _,
    net::TcpListener,
    process::{Child, Command, ExitStatus, Stdio},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

/// `dd` blocks: 512 bytes each, to /dev/null, in plain write()s.
pub const BLOCKS: u64 = 30_000;
pub const BLOCK: u64 = 512;

/// Runs `dd` copying BLOCKS blocks of BLOCK bytes from a pipe to /dev/null,
/// one write() each; returns its pid. It is kept alive (waiting for more
/// input) for over a tick after its last write, so the agent sees its
/// descriptors while it runs: a process that exits first is only known
/// by name, its descriptors as `unknown`.
pub fn dd_blocks() -> u32 {
    let mut dd = Command::new("dd")
        .args(["of=/dev/null", &format!("bs={BLOCK}"), "iflag=fullblock", "status=none"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start dd");
    let pid = dd.id();
    let mut input = dd.stdin.take().unwrap();
    input.write_all(&vec![0; (BLOCKS * BLOCK) as usize]).expect("feed dd");
    thread::sleep(Duration::from_millis(1500));
    drop(input);
    assert!(dd.wait().expect("dd").success());
    pid
}

/// The writes [`mixed_writes`] makes to /dev/null: (bytes, how many).
pub const MIXED_WRITES: [(u64, u64); 5] = [(0, 10), (1, 400), (100, 1200), (4096, 300), (5000, 90)];

/// A python3 that has written [`MIXED_WRITES`] to /dev/null, one
/// `os.write` (one write()) each, in five log2 buckets: the zero bucket, 1,
/// (64, 128], (2048, 4096] and (4096, 8192]. It stays alive, its series
/// with it, until dropped.
pub struct MixedWriter {
    python: Child,
}

impl MixedWriter {
    /// Starts it and waits until it has written everything.
    pub fn start() -> MixedWriter {
        let script = format!(
            "import os, sys\nfd = os.open('/dev/null', os.O_WRONLY)\nfor size, n in {MIXED_WRITES:?}:\n    \
             block = b'x' * size\n    for _ in range(n):\n        os.write(fd, block)\n\
             print('done', flush=True)\nsys.stdin.read()\n"
        );
        let mut python = Command::new("python3")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let mut done = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(python.stdout.as_mut().unwrap()), &mut done)
            .expect("python3's output");
        assert_eq!(done, "done\n");
        MixedWriter { python }
    }

    pub fn pid(&self) -> u32 {
        self.python.id()
    }
}

impl Drop for MixedWriter {
    fn drop(&mut self) {
        // Its stdin closed, it reads the end and exits.
        drop(self.python.stdin.take());
        let _ = self.python.wait();
    }
}

/// A free port on the loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `batchwatch run`, with its stderr collected.
pub struct Agent {
    pub child: Child,
    stderr: Option<JoinHandle<String>>,
}

impl Agent {
    /// Starts `batchwatch run ARGS` with `env` and waits until its probes are attached.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Agent {
        let mut child = run_command(args, env).stderr(Stdio::piped()).spawn().expect("start batchwatch run");
        let (attached, stderr) = wait_for_probes(child.stderr.take().unwrap());
        assert!(attached, "batchwatch run did not start:\n{}", stderr.join().unwrap_or_default());
        Agent { child, stderr: Some(stderr) }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// Sends SIGTERM and waits (at most 20 s) for the exit; returns its status and stderr.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "batchwatch did not exit within 20 s of SIGTERM");
            thread::sleep(Duration::from_millis(50));
        };
        (status, self.stderr.take().unwrap().join().unwrap())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // A failed test must not leave its agent running.
        if self.stderr.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `batchwatch run ARGS` with only `env` from the OTEL_/BATCHWATCH_/K8S_ families.
pub fn run_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_batchwatch"));
    command.arg("run").args(args).stdout(Stdio::null());
    for (name, _) in std::env::vars() {
        if ["OTEL_", "BATCHWATCH_", "K8S_"].iter().any(|prefix| name.starts_with(prefix)) {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command
}
