//! bpf-linker, which links the kernel programs' LLVM bitcode into BPF objects.
//!
//! No prebuilt bpf-linker can be downloaded here and Debian has no LLVM new
//! enough, but every Rust toolchain ships its own libLLVM
//! (`$(rustc --print sysroot)/lib/libLLVM.so.<version>-rust-<rust version>`).
//! bpf-linker is built against that: a prefix folder whose `lib/` holds two
//! symlinks to it, `libLLVM.so` for the build to link with and one under the
//! file's own name (its soname), which the installed binary finds through its
//! rpath at run time. The prefix therefore has to outlive the build; it lives
//! in `~/.cache/batchwatch`, not in `target/`, so that `cargo clean` cannot
//! break a bpf-linker installed for the whole machine. When the prefix or the
//! toolchain's libLLVM goes away (a `rustup update`), `bpf-linker --version`
//! stops working and the next setup builds it again.
//!
//! The libLLVM is the stable toolchain's, unless the nightly that compiles
//! the kernel programs is on a newer LLVM: bpf-linker cannot read bitcode
//! from a newer LLVM ("ERROR llvm: Invalid record"), so it is then built
//! against the nightly's own libLLVM instead.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::{
    step::{Plan, Step},
    toolchain::NIGHTLY,
};
use crate::cmd;

/// The bpf-linker version that builds with this project's toolchains.
pub const VERSION: &str = "0.13.0";

/// The `llvm-N` features bpf-linker [`VERSION`] offers (`cargo info bpf-linker@0.13.0`).
const LLVM_FEATURES: &[u32] = &[21, 22, 23];

pub const STEP: Step = Step { name: "bpf-linker", plan, by_hand };

/// What `bpf-linker` on `PATH` is.
enum Installed {
    Missing,
    /// It is there but does not run, e.g. its libLLVM is gone.
    Broken(PathBuf, String),
    Version {
        path: PathBuf,
        version: String,
        llvm_major: Option<u32>,
    },
}

/// The libLLVM inside a Rust toolchain.
struct ToolchainLlvm {
    file: PathBuf,
    /// The file's name, which is also its soname.
    name: String,
    major: u32,
}

fn plan() -> anyhow::Result<Plan> {
    let installed = installed(cmd::which("bpf-linker"));
    let nightly_major = nightly_llvm_major();
    let replacing = match &installed {
        Installed::Missing => String::from("none on PATH"),
        Installed::Broken(path, error) => format!("{} does not run: {error}", path.display()),
        Installed::Version { path, version, .. } if version != VERSION => format!("{} is {version}", path.display()),
        Installed::Version { path, llvm_major, .. } => match (llvm_major, nightly_major) {
            (Some(linker), Some(nightly)) if *linker < nightly => {
                format!("{} runs on LLVM {linker}, older than {NIGHTLY}'s LLVM {nightly}", path.display())
            }
            _ => return Ok(Plan::Done(format!("bpf-linker {VERSION} at {}", path.display()))),
        },
    };

    let stable = ToolchainLlvm::find(&mut Command::new("rustc"))?;
    let llvm = match nightly_major {
        Some(nightly) if stable.major < nightly => {
            ToolchainLlvm::find(Command::new("rustup").args(["run", NIGHTLY, "rustc"]))?
        }
        _ => stable,
    };
    if !LLVM_FEATURES.contains(&llvm.major) {
        bail!(
            "the toolchain's libLLVM is LLVM {} ({}), and bpf-linker {VERSION} has no `llvm-{}` feature \
             (it has {}): change VERSION in xtask/src/setup/bpf_linker.rs to a bpf-linker that supports LLVM {}",
            llvm.major,
            llvm.file.display(),
            llvm.major,
            LLVM_FEATURES.iter().map(|major| format!("llvm-{major}")).collect::<Vec<_>>().join(", "),
            llvm.major,
        );
    }
    // `cargo install` keeps an installed 0.13.0 unless forced, even one that no longer runs.
    let force = !matches!(installed, Installed::Missing);
    let what = format!(
        "building bpf-linker {VERSION} against {} ({replacing}); about a minute on 2 cores",
        llvm.file.display()
    );
    Ok(Plan::Do(what, Box::new(move || install(&llvm, force))))
}

fn installed(path: Option<PathBuf>) -> Installed {
    let Some(path) = path else { return Installed::Missing };
    let mut check = Command::new(&path);
    // `cargo run` points LD_LIBRARY_PATH at the toolchain's lib/, where the
    // libLLVM is found even when the binary's own rpath is broken.
    check.arg("--version").env_remove("LD_LIBRARY_PATH");
    cmd::show_check(&check);
    let output = match check.output() {
        Ok(output) => output,
        Err(error) => return Installed::Broken(path, error.to_string()),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let error = stderr.lines().next().unwrap_or("no output");
        // The loader repeats the path: `/x/bpf-linker: error while loading ...`.
        let error = error.strip_prefix(&format!("{}: ", path.display())).unwrap_or(error).to_owned();
        return Installed::Broken(path, error);
    }
    // It prints `bpf-linker 0.13.0`.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let version = stdout.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let llvm_major = linked_llvm_major(&path);
    Installed::Version { path, version, llvm_major }
}

impl ToolchainLlvm {
    /// The libLLVM in the sysroot of `rustc` (a command that runs rustc).
    fn find(rustc: &mut Command) -> anyhow::Result<Self> {
        let sysroot = cmd::read(rustc.args(["--print", "sysroot"]))?;
        let lib = Path::new(sysroot.trim()).join("lib");
        let mut names: Vec<String> = std::fs::read_dir(&lib)
            .with_context(|| format!("listing {}", lib.display()))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("libLLVM.so."))
            .collect();
        names.sort();
        let Some(name) = names.pop() else {
            bail!("no libLLVM.so.* in {}: this Rust toolchain ships no shared libLLVM", lib.display());
        };
        let major = llvm_major(&name).with_context(|| format!("reading the LLVM version from {name}"))?;
        Ok(Self { file: lib.join(&name), name, major })
    }
}

/// `libLLVM.so.22.1-rust-1.95.0-stable` → 22.
fn llvm_major(name: &str) -> anyhow::Result<u32> {
    let version = name.strip_prefix("libLLVM.so.").context("not a libLLVM.so.* name")?;
    let major = version.split(['.', '-']).next().unwrap_or_default();
    major.parse().with_context(|| format!("{major:?} is not a number"))
}

/// The LLVM major an installed bpf-linker runs with, read from the libLLVM
/// it links; `None` when that cannot be told.
fn linked_llvm_major(bpf_linker: &Path) -> Option<u32> {
    let ldd = cmd::probe(Command::new("ldd").arg(bpf_linker).env_remove("LD_LIBRARY_PATH"))?;
    let name = ldd.split_whitespace().find(|word| word.starts_with("libLLVM.so."))?;
    llvm_major(name).ok()
}

/// The LLVM major of the nightly that compiles the kernel programs; `None`
/// when there is no nightly (the nightly step comes first and would have failed).
fn nightly_llvm_major() -> Option<u32> {
    let verbose = cmd::probe(Command::new("rustup").args(["run", NIGHTLY, "rustc", "-vV"]))?;
    let version = verbose.lines().find_map(|line| line.strip_prefix("LLVM version: "))?;
    version.split('.').next()?.parse().ok()
}

/// Where bpf-linker gets built against `llvm`: `~/.cache/batchwatch/llvm-prefix/<soname>`.
fn prefix(llvm: &ToolchainLlvm) -> anyhow::Result<PathBuf> {
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => home()?.join(".cache"),
    };
    Ok(cache.join("batchwatch").join("llvm-prefix").join(&llvm.name))
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from).context("HOME is not set")
}

/// Where `cargo install` puts binaries: `$CARGO_INSTALL_ROOT/bin`, else `$CARGO_HOME/bin`.
fn install_bin_dir() -> anyhow::Result<PathBuf> {
    let root = match (std::env::var_os("CARGO_INSTALL_ROOT"), std::env::var_os("CARGO_HOME")) {
        (Some(root), _) => PathBuf::from(root),
        (None, Some(cargo_home)) => PathBuf::from(cargo_home),
        (None, None) => home()?.join(".cargo"),
    };
    Ok(root.join("bin"))
}

fn install(llvm: &ToolchainLlvm, force: bool) -> anyhow::Result<()> {
    let prefix = prefix(llvm)?;
    let lib = prefix.join("lib");
    eprintln!("  $ mkdir -p {}", lib.display());
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    for link in ["libLLVM.so", &llvm.name] {
        symlink(&llvm.file, &lib.join(link))?;
    }
    let mut cargo_install = Command::new("cargo");
    cargo_install
        .env("LLVM_PREFIX", &prefix)
        .args(["install", "bpf-linker", "--version", VERSION, "--locked", "--no-default-features"])
        .args(["--features", &format!("llvm-{}", llvm.major)]);
    if force {
        cargo_install.arg("--force");
    }
    cmd::run(&mut cargo_install).context("building bpf-linker")?;

    let bin_dir = install_bin_dir()?;
    let built = bin_dir.join("bpf-linker");
    match installed(Some(built.clone())) {
        Installed::Version { version, .. } if version == VERSION => {}
        Installed::Version { version, .. } => bail!("{} reports version {version}, not {VERSION}", built.display()),
        Installed::Missing => unreachable!("a path was given"),
        Installed::Broken(_, error) => bail!("the new {} does not run: {error}", built.display()),
    }
    if cmd::which("bpf-linker").as_deref() != Some(built.as_path()) {
        bail!(
            "bpf-linker {VERSION} is installed at {}, but that folder is not first on PATH for `bpf-linker`: \
             add it to PATH (e.g. `export PATH={}:$PATH`)",
            built.display(),
            bin_dir.display(),
        );
    }
    Ok(())
}

/// Makes `link` a symlink to `target`, replacing whatever was there.
fn symlink(target: &Path, link: &Path) -> anyhow::Result<()> {
    eprintln!("  $ ln -sfn {} {}", target.display(), link.display());
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link).with_context(|| format!("removing the old {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

fn by_hand() -> String {
    format!(
        "  P=~/.cache/batchwatch/llvm-prefix; mkdir -p $P/lib\n  \
         LIB=$(ls $(rustc --print sysroot)/lib/libLLVM.so.* | head -n1)   # e.g. libLLVM.so.22.1-rust-1.95.0-stable\n  \
         ln -sfn $LIB $P/lib/libLLVM.so; ln -sfn $LIB $P/lib/$(basename $LIB)\n  \
         LLVM_PREFIX=$P cargo install bpf-linker --version {VERSION} --locked --no-default-features --features llvm-N\n  \
         (N: the LLVM major in the file name; add --force to replace an installed one. If \
         `rustup run {NIGHTLY} rustc -vV` shows a newer LLVM, take LIB from `rustup run {NIGHTLY} rustc --print sysroot`.\n  \
         `bpf-linker --version` must then print {VERSION})"
    )
}
