//! The live view (`batchwatch` with no subcommand): every process that
//! writes, sorted by the cores it spends crossing into the kernel, with its
//! batching metrics and flags, refreshed at each interval.
//!
//! The agent ticks here; each tick is copied into a `snapshot`, which
//! `render` draws (`detail` the selected process's pane) according to the
//! `app` state that keys change.

mod app;
mod bars;
mod columns;
mod detail;
mod format;
mod render;
mod snapshot;
mod sync;
#[cfg(test)]
mod testing;
mod uring;

use std::{
    io::IsTerminal as _,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use crossterm::event::{self, Event, KeyEventKind};
use ratatui::DefaultTerminal;
use signal_hook::{
    SigId,
    consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM},
    low_level,
};

use self::{
    app::{Action, ViewState},
    snapshot::{NodeFacts, Snapshot},
};
use crate::{agent::Agent, config::Config};

/// How long an exited process stays on screen, dimmed, before it goes.
const LINGER: Duration = Duration::from_secs(5);

/// Signals that would end the process with the terminal left raw, in the
/// alternate screen and without a cursor: `kill`, a closed terminal, and
/// `kill -INT`/`-QUIT` (from the keyboard these are keys in raw mode).
const ENDING_SIGNALS: [i32; 4] = [SIGTERM, SIGHUP, SIGINT, SIGQUIT];

/// Longest wait for a key: how soon a signal is noticed, since crossterm
/// goes back to waiting when a signal interrupts it.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Runs the live view until the user quits, or a signal ends it.
pub fn run(config: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        std::io::stdout().is_terminal(),
        "the live view needs a terminal on stdout; for a report to a file or a pipe, run `batchwatch record`"
    );
    // Started before the screen is taken, so its errors read as plain text.
    let agent = Agent::start(config)?;
    if let Err(error) = crate::privileges::drop_unneeded(&agent) {
        tracing::warn!("running with every capability it started with: {error}");
    }
    let signals = Signals::catch()?;
    let mut view = LiveView::new(agent, config.interval, &signals);
    // `try_init` also installs a panic hook that restores the terminal.
    let result =
        ratatui::try_init().context("setting up the terminal").and_then(|mut terminal| view.run(&mut terminal));
    ratatui::restore();
    // The probes are detached before the process goes.
    drop(view);
    signals.end_as_caught();
    result
}

/// The [`ENDING_SIGNALS`], caught while the view holds the terminal: the
/// loop ends at the next check, the terminal is restored, and the process
/// then ends by the same signal, as its parent expects.
struct Signals {
    /// The signal caught, or 0.
    caught: Arc<AtomicUsize>,
    hooks: Vec<SigId>,
}

impl Signals {
    fn catch() -> anyhow::Result<Signals> {
        let caught = Arc::new(AtomicUsize::new(0));
        let hooks = ENDING_SIGNALS
            .iter()
            .map(|&signal| signal_hook::flag::register_usize(signal, Arc::clone(&caught), signal as usize))
            .collect::<Result<_, _>>()
            .context("catching SIGTERM, SIGHUP, SIGINT and SIGQUIT")?;
        Ok(Signals { caught, hooks })
    }

    fn caught(&self) -> Option<i32> {
        match self.caught.load(Ordering::Relaxed) {
            0 => None,
            signal => Some(signal as i32),
        }
    }

    /// Stops catching; if a signal was caught, ends the process by it,
    /// which does not return.
    fn end_as_caught(self) {
        let caught = self.caught();
        for hook in self.hooks {
            low_level::unregister(hook);
        }
        if let Some(signal) = caught {
            // Only fails for a signal it does not know, and these it knows.
            let _ = low_level::emulate_default_handler(signal);
        }
    }
}

struct LiveView<'a> {
    agent: Agent,
    signals: &'a Signals,
    interval: Duration,
    state: ViewState,
    /// Taken at the last tick.
    latest: Snapshot,
    /// What the screen shows while paused.
    frozen: Option<Snapshot>,
}

impl<'a> LiveView<'a> {
    fn new(agent: Agent, interval: Duration, signals: &'a Signals) -> LiveView<'a> {
        let latest = Snapshot::empty(NodeFacts::of(&agent, interval));
        LiveView { agent, signals, interval, state: ViewState::default(), latest, frozen: None }
    }

    /// Draws, then waits for a key until the next tick is due: keys get an
    /// answer at once, and the maps are read once per interval. Redraws
    /// after a tick or any event (a key, a resize). Ends on `q` or a caught
    /// signal.
    fn run(&mut self, terminal: &mut DefaultTerminal) -> anyhow::Result<()> {
        let mut next_tick = Instant::now() + self.interval;
        let mut redraw = true;
        while self.signals.caught().is_none() {
            let shown = self.frozen.as_ref().unwrap_or(&self.latest);
            if redraw {
                terminal.draw(|frame| render::draw(frame, shown, &self.state)).context("drawing")?;
                redraw = false;
            }
            let wait = next_tick.saturating_duration_since(Instant::now()).min(SIGNAL_CHECK);
            if event::poll(wait).context("reading keys")? {
                redraw = true;
                if let Event::Key(key) = event::read().context("reading keys")?
                    && key.kind == KeyEventKind::Press
                {
                    match self.state.on_key(key, shown) {
                        Action::Continue => {}
                        Action::Quit => return Ok(()),
                        Action::Pause => self.frozen = Some(self.latest.clone()),
                        Action::Resume => self.frozen = None,
                    }
                }
            }
            if Instant::now() >= next_tick {
                self.tick()?;
                next_tick = Instant::now() + self.interval;
                redraw = true;
            }
        }
        Ok(())
    }

    fn tick(&mut self) -> anyhow::Result<()> {
        self.agent.tick().context("reading the kernel maps")?;
        if let Some(before) = Instant::now().checked_sub(LINGER) {
            self.agent.model_mut().prune_exited(before);
        }
        let node = NodeFacts::of(&self.agent, self.interval);
        self.latest = Snapshot::capture(self.agent.model(), node, &self.latest);
        Ok(())
    }
}
