//! The live view end to end: the real binary in a tmux pane watches a `dd`
//! that writes one byte per call, flags it, and quits on `q`; killed by
//! SIGTERM or SIGHUP, it leaves the terminal as it found it. Root only;
//! needs tmux.

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
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
    // Start-up measures the transition cost and loads the probes.
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
fn sigterm_and_sighup_restore_the_terminal() {
    let tmux = Tmux::start();
    let files = Files::new();
    // A shell in the pane, which outlives the view, to look at the terminal
    // after it.
    tmux.ok(&["new-session", "-d", "-s", "live", "-x", "200", "-y", "50", "sh"]);
    let before = tmux.stty(&files);
    let words: Vec<&str> = before.split(&[' ', ';', '\n'][..]).collect();
    assert!(words.contains(&"icanon") && words.contains(&"echo"), "a cooked terminal to start with: {before}");

    for (signal, status) in [("TERM", 128 + 15), ("HUP", 128 + 1)] {
        files.clear();
        // `exec`, so that the pid written is batchwatch's.
        let command = format!(
            "sh -c 'echo $$ >{}; exec {BINARY}' 2>{}; echo $? >{}",
            files.pid.display(),
            files.stderr.display(),
            files.status.display()
        );
        tmux.ok(&["send-keys", "-t", "live", &command, "Enter"]);
        tmux.wait_for("the view to start", Duration::from_secs(30), &files, |screen| {
            screen.contains("write batching per process")
        });
        assert_eq!(tmux.format("#{alternate_on}"), "1", "the view draws on the alternate screen");
        let pid = files.read(&files.pid).trim().to_owned();
        let killed = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("run kill");
        assert!(killed.success(), "kill -{signal} {pid}");

        let deadline = Instant::now() + Duration::from_secs(10);
        while files.read(&files.status).is_empty() {
            assert!(Instant::now() < deadline, "still running 10 s after SIG{signal}:\n{}", tmux.capture());
            thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            files.read(&files.status).trim(),
            status.to_string(),
            "ended by SIG{signal} itself, once the terminal was restored; stderr: {}",
            files.read(&files.stderr)
        );
        assert_eq!(tmux.format("#{alternate_on}"), "0", "back on the normal screen after SIG{signal}");
        assert_eq!(tmux.format("#{cursor_flag}"), "1", "the cursor shown again after SIG{signal}");
        assert_eq!(tmux.stty(&files), before, "terminal settings after SIG{signal}: echo, icanon, and the rest");
    }
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
        // A server per test: the tests of this file run at once.
        static SERVERS: AtomicUsize = AtomicUsize::new(0);
        let server = SERVERS.fetch_add(1, Ordering::Relaxed);
        Tmux { socket: format!("batchwatch-test-{}-{server}", std::process::id()) }
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

    /// A tmux format, such as `#{alternate_on}`, for the pane.
    fn format(&self, format: &str) -> String {
        let output = self.run(&["display-message", "-p", "-t", "live", format]);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `stty -a` run by the pane's shell, on the pane's terminal.
    fn stty(&self, files: &Files) -> String {
        let _ = std::fs::remove_file(&files.stty);
        let partial = files.stty.with_extension("partial");
        let command = format!("stty -a >{} && mv {} {}", partial.display(), partial.display(), files.stty.display());
        self.ok(&["send-keys", "-t", "live", &command, "Enter"]);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(text) = std::fs::read_to_string(&files.stty) {
                return text;
            }
            assert!(Instant::now() < deadline, "no stty output after 5 s:\n{}", self.capture());
            thread::sleep(Duration::from_millis(50));
        }
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

/// Where the pane's commands leave batchwatch's stderr, exit status and pid,
/// and the terminal settings.
struct Files {
    stderr: PathBuf,
    status: PathBuf,
    pid: PathBuf,
    stty: PathBuf,
}

impl Files {
    /// Names of this test's own: the tests of this file run at once.
    fn new() -> Files {
        static TESTS: AtomicUsize = AtomicUsize::new(0);
        let test = TESTS.fetch_add(1, Ordering::Relaxed);
        let name =
            |what: &str| std::env::temp_dir().join(format!("batchwatch-live-{}-{test}.{what}", std::process::id()));
        Files { stderr: name("stderr"), status: name("status"), pid: name("pid"), stty: name("stty") }
    }

    fn read(&self, path: &PathBuf) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn clear(&self) {
        for path in [&self.stderr, &self.status, &self.pid, &self.stty] {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        self.clear();
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
