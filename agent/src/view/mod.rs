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
#[cfg(test)]
mod testing;

use std::{
    io::IsTerminal as _,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use crossterm::event::{self, Event, KeyEventKind};
use ratatui::DefaultTerminal;

use self::{
    app::{Action, ViewState},
    snapshot::{NodeFacts, Snapshot},
};
use crate::{agent::Agent, config::Config};

/// How long an exited process stays on screen, dimmed, before it goes.
const LINGER: Duration = Duration::from_secs(5);

/// Runs the live view until the user quits.
pub fn run(config: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        std::io::stdout().is_terminal(),
        "the live view needs a terminal on stdout; for a report to a file or a pipe, run `batchwatch record`"
    );
    // Started before the screen is taken, so its errors read as plain text.
    let agent = Agent::start(config)?;
    let mut view = LiveView::new(agent, config.interval);
    // `try_init` also installs a panic hook that restores the terminal.
    let result =
        ratatui::try_init().context("setting up the terminal").and_then(|mut terminal| view.run(&mut terminal));
    ratatui::restore();
    result
}

struct LiveView {
    agent: Agent,
    interval: Duration,
    state: ViewState,
    /// Taken at the last tick.
    latest: Snapshot,
    /// What the screen shows while paused.
    frozen: Option<Snapshot>,
}

impl LiveView {
    fn new(agent: Agent, interval: Duration) -> LiveView {
        let latest = Snapshot::empty(NodeFacts::of(&agent, interval));
        LiveView { agent, interval, state: ViewState::default(), latest, frozen: None }
    }

    /// Draws, then waits for a key until the next tick is due: keys get an
    /// answer at once, and the maps are read once per interval.
    fn run(&mut self, terminal: &mut DefaultTerminal) -> anyhow::Result<()> {
        let mut next_tick = Instant::now() + self.interval;
        loop {
            let shown = self.frozen.as_ref().unwrap_or(&self.latest);
            terminal.draw(|frame| render::draw(frame, shown, &self.state)).context("drawing")?;
            if event::poll(next_tick.saturating_duration_since(Instant::now())).context("reading keys")?
                && let Event::Key(key) = event::read().context("reading keys")?
                && key.kind == KeyEventKind::Press
            {
                match self.state.on_key(key, shown) {
                    Action::Continue => {}
                    Action::Quit => return Ok(()),
                    Action::Pause => self.frozen = Some(self.latest.clone()),
                    Action::Resume => self.frozen = None,
                }
            }
            if Instant::now() >= next_tick {
                self.tick()?;
                next_tick = Instant::now() + self.interval;
            }
        }
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
