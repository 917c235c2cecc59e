//! The live view's state between frames (sort order, filter, selection,
//! which panes are open) and what each key does to it. Which rows to show,
//! and in which order, is decided here; drawing them is `render`'s job.

use std::{cmp::Ordering, time::Duration};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::snapshot::{ProcessKey, Snapshot, process_drops_per_sec};
use crate::model::ProcessState;

/// The columns the process table sorts by, in the order `s` cycles them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortColumn {
    #[default]
    Cores,
    WritesPerSec,
    BytesPerCall,
    Drops,
    Pid,
}

impl SortColumn {
    pub fn name(self) -> &'static str {
        match self {
            SortColumn::Cores => "cores",
            SortColumn::WritesPerSec => "writes/s",
            SortColumn::BytesPerCall => "bytes/call",
            SortColumn::Drops => "drops",
            SortColumn::Pid => "pid",
        }
    }

    fn next(self) -> SortColumn {
        match self {
            SortColumn::Cores => SortColumn::WritesPerSec,
            SortColumn::WritesPerSec => SortColumn::BytesPerCall,
            SortColumn::BytesPerCall => SortColumn::Drops,
            SortColumn::Drops => SortColumn::Pid,
            SortColumn::Pid => SortColumn::Cores,
        }
    }

    /// `a` against `b` in the column's natural order: pids ascending, every
    /// measure biggest first, since the biggest is what needs attention.
    /// `interval` is the length of the interval the metrics describe.
    fn compare(self, a: &ProcessState, b: &ProcessState, interval: Duration) -> Ordering {
        let (ma, mb) = (&a.metrics, &b.metrics);
        match self {
            SortColumn::Cores => b.transition_cores().total_cmp(&a.transition_cores()),
            SortColumn::WritesPerSec => mb.calls_per_sec.total_cmp(&ma.calls_per_sec),
            // The median bucket, as shown; the exact mean orders a tie.
            SortColumn::BytesPerCall => (mb.bytes_per_call.map(|q| q.p50).cmp(&ma.bytes_per_call.map(|q| q.p50)))
                .then(mb.mean_bytes_per_call.total_cmp(&ma.mean_bytes_per_call)),
            SortColumn::Drops => process_drops_per_sec(b, interval).total_cmp(&process_drops_per_sec(a, interval)),
            SortColumn::Pid => a.identity.pid.cmp(&b.identity.pid),
        }
    }
}

/// What the main loop does after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Quit,
    /// Freeze the screen; the agent goes on reading.
    Pause,
    Resume,
}

#[derive(Debug, Default)]
pub struct ViewState {
    pub sort: SortColumn,
    pub reversed: bool,
    /// Shows only processes whose pid, name or command line contains it.
    pub filter: String,
    /// Typed keys go into the filter, until Enter or Esc.
    pub editing_filter: bool,
    pub only_unbatched: bool,
    pub paused: bool,
    /// Whether the detail pane of the selected process is open.
    pub detail: bool,
    selection: Selection,
    /// The descriptor whose histograms the detail pane draws, rather than
    /// the whole process's.
    focus: Option<(ProcessKey, i32)>,
}

/// The selected process, followed wherever the sort moves it.
#[derive(Debug, Default)]
struct Selection {
    /// `None` until a key moves the selection: then the top row is selected,
    /// whichever process that is.
    key: Option<ProcessKey>,
    /// The row the selection was on at the last key, kept when the process
    /// leaves the table (it exited, or the filter hides it).
    row: usize,
}

impl ViewState {
    /// The processes to show, filtered and sorted.
    pub fn rows<'a>(&self, snapshot: &'a Snapshot) -> Vec<&'a ProcessState> {
        let mut rows: Vec<_> = snapshot.processes.iter().filter(|p| self.shows(p)).collect();
        rows.sort_by(|a, b| self.order(a, b, snapshot.node.interval));
        rows
    }

    fn shows(&self, process: &ProcessState) -> bool {
        (process.unbatched || !self.only_unbatched) && matches_filter(&self.filter, process)
    }

    fn order(&self, a: &ProcessState, b: &ProcessState, interval: Duration) -> Ordering {
        let order = self.sort.compare(a, b, interval);
        let order = if self.reversed { order.reverse() } else { order };
        // Ties in pid order, so equal rows do not swap places between frames.
        order.then(ProcessKey::of(a).cmp(&ProcessKey::of(b)))
    }

    /// The index in `rows` of the selected process.
    pub fn selected(&self, rows: &[&ProcessState]) -> Option<usize> {
        let last = rows.len().checked_sub(1)?;
        let found = self.selection.key.and_then(|key| rows.iter().position(|p| ProcessKey::of(p) == key));
        Some(found.unwrap_or(self.selection.row.min(last)))
    }

    /// The descriptor of `process` the detail pane focuses on, if any.
    pub fn focus_fd(&self, process: &ProcessState) -> Option<i32> {
        self.focus
            .filter(|&(key, fd)| key == ProcessKey::of(process) && process.fds.contains_key(&fd))
            .map(|(_, fd)| fd)
    }

    pub fn on_key(&mut self, key: KeyEvent, snapshot: &Snapshot) -> Action {
        // Raw mode turns Ctrl-C into a key: it must quit whatever else is going on.
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            return Action::Quit;
        }
        let rows = self.rows(snapshot);
        if let Some(row) = self.selected(&rows) {
            self.selection.row = row;
        }
        match key.code {
            KeyCode::Up => self.move_selection(&rows, -1),
            KeyCode::Down => self.move_selection(&rows, 1),
            _ if self.editing_filter => self.edit_filter(key.code),
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('k') => self.move_selection(&rows, -1),
            KeyCode::Char('j') => self.move_selection(&rows, 1),
            KeyCode::Enter => self.detail = !self.detail,
            KeyCode::Tab => self.cycle_focus(&rows, 1),
            KeyCode::BackTab => self.cycle_focus(&rows, -1),
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('r') => self.reversed = !self.reversed,
            KeyCode::Char('/') => self.editing_filter = true,
            KeyCode::Char('u') => self.only_unbatched = !self.only_unbatched,
            KeyCode::Char('p') => {
                self.paused = !self.paused;
                return if self.paused { Action::Pause } else { Action::Resume };
            }
            _ => {}
        }
        Action::Continue
    }

    fn edit_filter(&mut self, code: KeyCode) {
        match code {
            KeyCode::Char(c) => self.filter.push(c),
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Enter => self.editing_filter = false,
            KeyCode::Esc => {
                self.filter.clear();
                self.editing_filter = false;
            }
            _ => {}
        }
    }

    fn move_selection(&mut self, rows: &[&ProcessState], by: isize) {
        if let Some(current) = self.selected(rows) {
            let row = current.saturating_add_signed(by).min(rows.len() - 1);
            self.selection = Selection { key: Some(ProcessKey::of(rows[row])), row };
        }
    }

    /// Steps the focus through the whole process, then each descriptor.
    fn cycle_focus(&mut self, rows: &[&ProcessState], by: isize) {
        let Some(process) = self.selected(rows).map(|row| rows[row]) else { return };
        let stops: Vec<Option<i32>> = std::iter::once(None).chain(process.fds.keys().map(|&fd| Some(fd))).collect();
        let at = stops.iter().position(|&stop| stop == self.focus_fd(process)).unwrap_or(0);
        let next = (at as isize + by).rem_euclid(stops.len() as isize) as usize;
        self.focus = stops[next].map(|fd| (ProcessKey::of(process), fd));
    }
}

/// Whether `filter` is in the pid, the name or the command line; letters in
/// any case.
fn matches_filter(filter: &str, process: &ProcessState) -> bool {
    let filter = filter.to_lowercase();
    let identity = &process.identity;
    identity.pid.to_string().contains(&filter)
        || identity.comm.to_lowercase().contains(&filter)
        || identity.command.to_lowercase().contains(&filter)
}

#[cfg(test)]
mod tests {
    use crossterm::event::KeyEvent;

    use super::*;
    use crate::view::testing;

    fn press(state: &mut ViewState, snapshot: &Snapshot, keys: &str) -> Action {
        keys.chars().map(|c| state.on_key(KeyEvent::from(KeyCode::Char(c)), snapshot)).last().unwrap()
    }

    fn key(state: &mut ViewState, snapshot: &Snapshot, code: KeyCode) -> Action {
        state.on_key(KeyEvent::from(code), snapshot)
    }

    fn names(state: &ViewState, snapshot: &Snapshot) -> Vec<String> {
        state.rows(snapshot).iter().map(|p| p.identity.comm.clone()).collect()
    }

    fn selected_name(state: &ViewState, snapshot: &Snapshot) -> String {
        let rows = state.rows(snapshot);
        rows[state.selected(&rows).unwrap()].identity.comm.clone()
    }

    #[test]
    fn sorts_by_cores_then_cycles_columns_and_reverses() {
        let (_, shown) = testing::three_writers();
        let mut state = ViewState::default();
        assert_eq!(names(&state, &shown), ["logger", "batcher", "dropper"], "by cores");
        press(&mut state, &shown, "s");
        assert_eq!(
            (state.sort, names(&state, &shown)),
            (SortColumn::WritesPerSec, vec!["logger".into(), "batcher".into(), "dropper".into()])
        );
        press(&mut state, &shown, "s");
        assert_eq!(names(&state, &shown), ["batcher", "dropper", "logger"], "8 KiB, 4 KiB, 64 B per call");
        press(&mut state, &shown, "s");
        assert_eq!(names(&state, &shown), ["dropper", "logger", "batcher"], "300 drops/s, then pids");
        press(&mut state, &shown, "s");
        assert_eq!(names(&state, &shown), ["logger", "batcher", "dropper"], "pids 100, 200, 300");
        press(&mut state, &shown, "r");
        assert_eq!(names(&state, &shown), ["dropper", "batcher", "logger"], "pids reversed");
        press(&mut state, &shown, "s");
        assert_eq!(state.sort, SortColumn::Cores);
        assert_eq!(names(&state, &shown), ["dropper", "batcher", "logger"], "fewest cores first");
    }

    #[test]
    fn filters_by_name_command_or_pid() {
        let (_, shown) = testing::three_writers();
        let mut state = ViewState::default();
        press(&mut state, &shown, "/BATCH");
        assert!(state.editing_filter);
        assert_eq!(names(&state, &shown), ["batcher"], "any case");
        // While editing, letters are text: `q` does not quit, `j` does not move.
        key(&mut state, &shown, KeyCode::Backspace);
        assert_eq!(press(&mut state, &shown, "q"), Action::Continue);
        assert_eq!(state.filter, "BATCq");
        assert_eq!(key(&mut state, &shown, KeyCode::Esc), Action::Continue);
        assert_eq!((state.filter.as_str(), state.editing_filter), ("", false), "Esc clears the filter");
        assert_eq!(names(&state, &shown).len(), 3);

        press(&mut state, &shown, "/30");
        key(&mut state, &shown, KeyCode::Enter);
        assert_eq!(names(&state, &shown), ["dropper"], "pid 300");
        assert!(!state.editing_filter, "Enter keeps the filter and ends editing");
        state.filter = "--run".into();
        assert_eq!(names(&state, &shown).len(), 3, "the command line matches too");
    }

    #[test]
    fn only_unbatched() {
        let (_, shown) = testing::three_writers();
        let mut state = ViewState::default();
        press(&mut state, &shown, "u");
        assert_eq!(names(&state, &shown), ["logger"]);
        press(&mut state, &shown, "u");
        assert_eq!(names(&state, &shown).len(), 3);
    }

    #[test]
    fn selection_follows_the_process_through_sorts_and_stays_in_bounds() {
        let (_, shown) = testing::three_writers();
        let mut state = ViewState::default();
        assert_eq!(selected_name(&state, &shown), "logger", "the top row at first");
        press(&mut state, &shown, "j");
        assert_eq!(selected_name(&state, &shown), "batcher");
        press(&mut state, &shown, "ss");
        assert_eq!(state.selected(&state.rows(&shown)), Some(0), "batcher sorts first by bytes/call");
        assert_eq!(selected_name(&state, &shown), "batcher");
        for _ in 0..5 {
            key(&mut state, &shown, KeyCode::Down);
        }
        assert_eq!(selected_name(&state, &shown), "logger", "stops at the last row");
        press(&mut state, &shown, "kkkkk");
        assert_eq!(selected_name(&state, &shown), "batcher", "stops at the first row");

        // The selected process leaves the table: the selection stays on its row.
        press(&mut state, &shown, "ss");
        assert_eq!(names(&state, &shown), ["logger", "batcher", "dropper"]);
        assert_eq!(selected_name(&state, &shown), "batcher");
        press(&mut state, &shown, "/o");
        assert_eq!(names(&state, &shown), ["logger", "dropper"]);
        assert_eq!(selected_name(&state, &shown), "dropper");
        state.filter = "nobody".into();
        assert_eq!(state.selected(&state.rows(&shown)), None);
    }

    #[test]
    fn tab_steps_through_the_descriptors_of_the_selected_process() {
        let (mut model, _) = testing::three_writers();
        let logger = testing::identity(100, "logger");
        model.record(&logger, 9, Some(&testing::socket(70)), &testing::Write::HOT.stats());
        model.close_interval(1.0);
        let shown = Snapshot::capture(&model, testing::node(), &Snapshot::empty(testing::node()));
        let mut state = ViewState::default();
        let logger = shown.processes.iter().find(|p| p.identity.pid == 100).unwrap();
        let batcher = shown.processes.iter().find(|p| p.identity.pid == 200).unwrap();
        assert_eq!(state.focus_fd(logger), None, "the whole process at first");
        key(&mut state, &shown, KeyCode::Tab);
        assert_eq!(state.focus_fd(logger), Some(3));
        assert_eq!(state.focus_fd(batcher), None, "the focus belongs to one process");
        key(&mut state, &shown, KeyCode::Tab);
        assert_eq!(state.focus_fd(logger), Some(9));
        key(&mut state, &shown, KeyCode::Tab);
        assert_eq!(state.focus_fd(logger), None, "then back to the whole process");
        key(&mut state, &shown, KeyCode::BackTab);
        assert_eq!(state.focus_fd(logger), Some(9));
    }

    #[test]
    fn quit_pause_and_panes() {
        let (_, shown) = testing::three_writers();
        let mut state = ViewState::default();
        assert_eq!(press(&mut state, &shown, "q"), Action::Quit);
        assert_eq!(key(&mut state, &shown, KeyCode::Esc), Action::Quit);
        state.editing_filter = true;
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(state.on_key(ctrl_c, &shown), Action::Quit, "even while editing the filter");
        state.editing_filter = false;
        assert_eq!(press(&mut state, &shown, "p"), Action::Pause);
        assert_eq!(press(&mut state, &shown, "p"), Action::Resume);
        key(&mut state, &shown, KeyCode::Enter);
        assert!(state.detail);
        key(&mut state, &shown, KeyCode::Enter);
        assert!(!state.detail);
    }
}
