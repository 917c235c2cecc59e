//! The live view end to end: the real binary in a tmux pane watches a `dd`
//! that writes one byte per call, flags it, and quits on `q`. Root only;
//! needs tmux.

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

const BINARY: &str = env!("CARGO_BIN_EXE_batchwatch");

#[test]
fn flags_a_one_byte_writer_and_quits_on_q() {
    let tmux = Tmux::start();
    let files = Files::new();
    // The exit status goes to a file: tmux does not keep it.
    let command = format!("{BINARY} 2>{}; echo $? >{}", files.stderr.display(), files.status.display());
    tmux.ok(&["new-session", "-d", "-s", "live", "-x", "200", "-y", "50", &command]);
    // Start-up measures the crossing cost and loads the probes.
    tmux.wait_for("the view to start", Duration::from_secs(30), &files, |screen| {
        screen.contains("write batching per process")
    });

    let dd = Running(
        Command::new("dd")
            .args(["if=/dev/zero", "of=/dev/null", "bs=1", "count=200000000"])
            .stderr(Stdio::null())
            .spawn()
            .expect("start dd"),
    );
    let pid = dd.0.id().to_string();
    // Flagged after 3 hot one-second intervals; allow for a slow machine.
    let screen = tmux.wait_for("dd to be flagged", Duration::from_secs(20), &files, |screen| {
        row(screen, &pid).is_some_and(|row| row.contains("UNBATCHED"))
    });
    println!("{screen}");

    let row = row(&screen, &pid).expect("the dd row");
    let words: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(words[1], "dd", "{row}");
    assert!(words[2].ends_with('k') || words[2].ends_with('M'), "thousands of writes/s: {row}");
    assert_eq!(&words[3..5], ["1", "B/1"], "one byte per call: {row}");
    let flag = words.iter().position(|&w| w == "UNBATCHED").expect("the flag");
    let cores: f64 = words[flag - 1].parse().unwrap_or_else(|_| panic!("est. cores before the flag: {row}"));
    assert!(cores > 0.0, "{row}");
    let header = screen.lines().find(|line| line.contains("COMMAND")).expect("the column titles");
    assert!(header.contains("EST.CORES ▼"), "sorted by est. cores: {header}");

    tmux.ok(&["send-keys", "-t", "live", "q"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.has_session() {
        assert!(Instant::now() < deadline, "still running 5 s after q:\n{}", tmux.capture());
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(files.read(&files.status).trim(), "0", "exit status; stderr: {}", files.read(&files.stderr));
}

#[test]
fn without_a_terminal_it_says_to_use_record() {
    let output = Command::new(BINARY).stdin(Stdio::null()).output().expect("run batchwatch");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("needs a terminal") && stderr.contains("batchwatch record"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing drawn on a pipe");
}

/// The process table row of `pid`, if on screen.
fn row<'a>(screen: &'a str, pid: &str) -> Option<&'a str> {
    screen.lines().find(|line| line.split_whitespace().next() == Some(pid))
}

/// A tmux server of the test's own, without the user's configuration, so
/// that it neither sees nor disturbs another.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start() -> Tmux {
        match Command::new("tmux").arg("-V").output() {
            Ok(output) if output.status.success() => {}
            _ => panic!("tmux is missing: apt-get install tmux"),
        }
        Tmux { socket: format!("batchwatch-test-{}", std::process::id()) }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux").args(["-L", &self.socket, "-f", "/dev/null"]).args(args).output().expect("run tmux")
    }

    fn ok(&self, args: &[&str]) {
        let output = self.run(args);
        assert!(output.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn has_session(&self) -> bool {
        self.run(&["has-session", "-t", "live"]).status.success()
    }

    fn capture(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "live"]).stdout).into_owned()
    }

    /// The screen once `ready` holds; fails after `limit`, or at once if
    /// batchwatch exited.
    fn wait_for(&self, what: &str, limit: Duration, files: &Files, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.capture();
            if ready(&screen) {
                return screen;
            }
            assert!(
                self.has_session(),
                "batchwatch exited waiting for {what} (needs root): {}",
                files.read(&files.stderr)
            );
            assert!(Instant::now() < deadline, "no {what} after {limit:?}:\n{screen}");
            thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// Where the pane's command leaves its stderr and exit status.
struct Files {
    stderr: PathBuf,
    status: PathBuf,
}

impl Files {
    fn new() -> Files {
        let name = |what: &str| std::env::temp_dir().join(format!("batchwatch-live-{}.{what}", std::process::id()));
        Files { stderr: name("stderr"), status: name("status") }
    }

    fn read(&self, path: &PathBuf) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.stderr);
        let _ = std::fs::remove_file(&self.status);
    }
}

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
