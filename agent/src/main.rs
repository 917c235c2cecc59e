//! The `batchwatch` command.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use batchwatch::{
    agent::Agent,
    bpf::probes::AttachMode,
    config::{Config, Settings},
    export::{self, Exporters},
    privileges,
    report::Report,
};
use clap::{Parser, Subcommand, ValueEnum};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing_subscriber::{EnvFilter, filter::LevelFilter};

/// mimalloc rather than the system allocator: each tick allocates and frees
/// one buffer per kernel map entry between the long-lived per-process state,
/// and glibc's allocator let that fragment the heap to about three times the
/// memory in use (measured with 10,000 tracked processes).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (libmimalloc-sys
/// names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Has mimalloc return freed memory to the system at once. By default it
/// keeps it for a while, and kept the buffers of a tick in which 10,000
/// processes first wrote resident for seconds: VmRSS 67 MiB instead of 59,
/// for no CPU measurably saved (0.35% of a core against 0.30%).
fn purge_freed_memory_at_once() {
    // SAFETY: sets an option before any other thread runs.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

/// Keeps the agent's memory in 4 KiB pages. Where transparent huge pages
/// are `always`, each range mimalloc purged came back at its next use as a
/// 2 MiB page zeroed whole: 9% of the agent's CPU while 10,000 processes
/// appeared, and VmRSS 65-67 MiB where 4 KiB pages hold 50
/// (docs/performance.md).
fn no_transparent_huge_pages() {
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!("prctl(PR_SET_THP_DISABLE): {error}; the agent's memory may use huge pages");
    }
}

/// How often a recording checks for SIGTERM and SIGINT.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Shows, for every process on this node, how well it batches its writes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; flags and BATCHWATCH_* variables override it.
    #[arg(long, global = true, env = "BATCHWATCH_CONFIG")]
    config: Option<PathBuf>,

    #[command(flatten)]
    settings: Settings,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Live view in the terminal (the default).
    Live,
    /// Run headless, as the DaemonSet does: export metrics over OTLP (and
    /// Prometheus, with --prometheus) until SIGTERM, then flush and exit.
    Run,
    /// Observe for a while, then print one report.
    Record {
        /// How long to observe.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        duration: Duration,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
}

fn main() -> ExitCode {
    purge_freed_memory_at_once();
    let cli = Cli::parse();
    init_logging(matches!(cli.command, None | Some(Command::Live)));
    no_transparent_huge_pages();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("batchwatch: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, warnings and up unless `BATCHWATCH_LOG` says otherwise;
/// the live view owns the terminal, so there nothing is logged unless asked.
fn init_logging(live_view: bool) {
    let default = if live_view { LevelFilter::OFF } else { LevelFilter::WARN };
    let filter =
        EnvFilter::builder().with_default_directive(default.into()).with_env_var("BATCHWATCH_LOG").from_env_lossy();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let config = Config::resolve(file.overridden_by(cli.settings))?;
    match cli.command.unwrap_or(Command::Live) {
        Command::Live => batchwatch::view::run(&config),
        Command::Record { duration, format: Format::Json } => record(&config, duration),
        Command::Run => run_headless(&config),
    }
}

/// Exports until SIGTERM. The exporters are set up first, so that a bad
/// OTEL_* value or a busy port fails before the probes load.
fn run_headless(config: &Config) -> anyhow::Result<()> {
    let exporters = Exporters::from_config(config).context("setting up the exporters")?;
    let agent = Agent::start(config)?;
    announce(&agent);
    give_up_privileges(&agent);
    export::run(agent, exporters, export::identity::kubernetes_pods()).context("batchwatch run")
}

/// Observes for `duration`, or until SIGTERM or SIGINT, then prints the
/// JSON report.
fn record(config: &Config, duration: Duration) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("handling SIGTERM and SIGINT")?;
    }
    let mut agent = Agent::start(config)?;
    announce(&agent);
    give_up_privileges(&agent);
    let started = Instant::now();
    let mut next_tick = started + config.interval;
    while started.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        // Short naps, so that a signal ends the window within 100 ms.
        std::thread::sleep(SIGNAL_CHECK.min(next_tick.saturating_duration_since(Instant::now())));
        if Instant::now() >= next_tick {
            agent.tick().context("reading the kernel maps")?;
            next_tick += config.interval;
        }
    }
    agent.tick().context("reading the kernel maps")?;
    let report = Report::build(&agent, started.elapsed().as_secs_f64());
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Drops the capabilities `agent` no longer needs, saying which; a failure
/// is said and the agent runs on with what it has.
fn give_up_privileges(agent: &Agent) {
    let names = |caps: &[caps::Capability]| caps.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    match privileges::drop_unneeded(agent) {
        Ok(privileges) => eprintln!(
            "batchwatch: capabilities kept: {}; dropped: {}",
            names(&privileges.kept),
            names(&privileges.dropped)
        ),
        Err(error) => eprintln!("batchwatch: WARNING: running with every capability it started with: {error}"),
    }
}

/// One line per fact a user should know at start-up, on stderr.
fn announce(agent: &Agent) {
    let node = agent.node();
    if let Some(degraded) = &node.degraded {
        eprintln!("batchwatch: DEGRADED MODE: {}", degraded.reason);
        eprintln!(
            "batchwatch: polling /proc/PID/io instead: write calls and bytes per process only, {}; full mode needs {}",
            batchwatch::degraded::CANNOT_SEE,
            degraded.needs
        );
    }
    if node.mounted_tracefs {
        eprintln!("batchwatch: mounted tracefs at /sys/kernel/tracing");
    }
    if let Some(fallback) = &node.attach_fallback {
        eprintln!("batchwatch: {fallback}");
    }
    for failure in &node.failed {
        eprintln!("batchwatch: not attached: {}: {} (the other probes still run)", failure.tracepoint, failure.reason);
    }
    eprintln!(
        "batchwatch: {} probes attached ({}); one kernel transition costs {:.0} ns here ({})",
        node.attached.len(),
        node.attach_mode.map_or("none", AttachMode::name),
        node.transition_cost_ns,
        if node.transition_cost_measured { "measured" } else { "from config" },
    );
}
