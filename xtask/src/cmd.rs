//! Running other programs: every command that changes something is printed
//! before it runs; read-only checks are printed only with `--verbose`.
//! xtask's own messages go to stderr.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context as _, bail};

static VERBOSE: AtomicBool = AtomicBool::new(false);

pub fn set_verbose(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
}

/// `cmd` as a shell line: the variables it sets, the program, its arguments.
pub fn display(cmd: &Command) -> String {
    let envs = cmd.get_envs().filter_map(|(key, value)| Some(format!("{}={}", key.to_string_lossy(), quote(value?))));
    let program = std::iter::once(quote(cmd.get_program()));
    let args = cmd.get_args().map(quote);
    envs.chain(program).chain(args).collect::<Vec<_>>().join(" ")
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain { word.into_owned() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

/// Prints `cmd`, runs it with the terminal, and fails unless it succeeds.
/// What it prints goes to stderr, like everything xtask says itself, so that
/// `cargo xtask run -- record > report.json` keeps only the agent's output.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let line = display(cmd);
    eprintln!("  $ {line}");
    let status = cmd
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("could not start `{line}` (is it installed and on PATH?)"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Prints `cmd` and runs it with the terminal; returns whether it succeeded.
pub fn run_status(cmd: &mut Command) -> anyhow::Result<bool> {
    let line = display(cmd);
    eprintln!("  $ {line}");
    let status = cmd.status().with_context(|| format!("could not start `{line}` (is it installed and on PATH?)"))?;
    Ok(status.success())
}

/// Runs a read-only check and returns its stdout, or `None` when the
/// program is missing or fails (the answer is then "not there").
pub fn probe(cmd: &mut Command) -> Option<String> {
    show_check(cmd);
    let output = cmd.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Like [`probe`], but a missing program or a failure is an error that
/// shows the command and what it printed.
pub fn read(cmd: &mut Command) -> anyhow::Result<String> {
    show_check(cmd);
    let line = display(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{line}` (is it installed and on PATH?)"))?;
    if !output.status.success() {
        bail!("`{line}` failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Prints a read-only check with `--verbose`.
pub fn show_check(cmd: &Command) {
    if VERBOSE.load(Ordering::Relaxed) {
        eprintln!("  (check) $ {}", display(cmd));
    }
}

/// The first `program` in the folders of `PATH`, as the shell would find it.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|file| is_executable(file))
}

fn is_executable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    file.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
