//! A verdict held over time, over a sliding window of intervals: raised
//! once enough of the last intervals were hot, cleared after a whole window
//! of calm. The rules in `classify` say whether one interval is hot; a
//! [`Flag`] per rule and subject remembers the answers.

/// How many of the last intervals a flag looks at, and how many of them
/// must be hot to raise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Hot intervals needed among the last `of`.
    pub hot: u32,
    /// The intervals looked at, at most [`Window::MAX`].
    pub of: u32,
}

impl Window {
    /// The most intervals a flag remembers (one bit each).
    pub const MAX: u32 = u64::BITS;
}

/// A flag over a sliding window: raised once at least `window.hot` of the
/// last `window.of` intervals were hot, cleared once none of them was. A
/// writer hot one second in three is caught, and neither it nor a bursty
/// writer makes the flag flap: clearing takes a whole window of calm. It
/// keeps the description of its last hot interval as its reason, so a flag
/// held through cool intervals still says what raised it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flag {
    raised: bool,
    /// The verdicts of the last intervals, newest in bit 0.
    history: u64,
    last_hot: Option<String>,
}

impl Flag {
    /// Judges one interval; `describe` tells a hot one in words, given how
    /// many of the last `window.of` intervals (this one included) were hot.
    pub fn update(&mut self, hot: bool, window: Window, describe: impl FnOnce(u32) -> String) {
        let hot_in_window = self.push(hot, window);
        if hot {
            self.last_hot = Some(describe(hot_in_window));
        }
        if hot_in_window >= window.hot {
            self.raised = true;
        } else if hot_in_window == 0 {
            self.raised = false;
        }
    }

    /// Records an interval whose verdict is still pending: it counts in the
    /// window once a later interval is judged, but raises nothing itself.
    pub fn hold(&mut self, hot: bool, window: Window) {
        self.push(hot, window);
    }

    /// Adds an interval to the history; returns the hot ones in the window.
    fn push(&mut self, hot: bool, window: Window) -> u32 {
        let kept = if window.of >= Window::MAX { u64::MAX } else { (1 << window.of) - 1 };
        self.history = ((self.history << 1) | u64::from(hot)) & kept;
        self.history.count_ones()
    }

    pub fn is_raised(&self) -> bool {
        self.raised
    }

    /// Neither raised nor counting a hot interval: another calm interval
    /// leaves it as it is.
    pub fn is_calm(&self) -> bool {
        !self.raised && self.history == 0
    }

    /// Why the flag is raised, if it is.
    pub fn reason(&self) -> Option<&str> {
        self.last_hot.as_deref().filter(|_| self.raised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Window = Window { hot: 3, of: 10 };

    #[test]
    fn flag_rises_at_3_hot_of_the_last_10_and_clears_after_10_calm() {
        let mut flag = Flag::default();
        let mut raised = Vec::new();
        // Hot, hot, cool, hot (3 of 4): raised; then 9 cool keep it, the 10th clears it.
        let steps = [[true, true, false, true].as_slice(), &[false; 10]].concat();
        for hot in steps {
            flag.update(hot, WINDOW, |n| format!("{n} hot"));
            raised.push(flag.is_raised());
        }
        let expected = [[false, false, false, true].as_slice(), &[true; 9], &[false]].concat();
        assert_eq!(raised, expected);
    }

    #[test]
    fn a_writer_hot_one_interval_in_three_is_flagged_and_does_not_flap() {
        let mut flag = Flag::default();
        for (i, hot) in [true, false, false].into_iter().cycle().take(24).enumerate() {
            flag.update(hot, WINDOW, |n| format!("{n} hot"));
            // The third hot interval, at index 6, raises it; it holds from then on.
            assert_eq!(flag.is_raised(), i >= 6, "interval {i}");
        }
        assert_eq!(flag.reason(), Some("4 hot"));
    }

    #[test]
    fn a_held_flag_keeps_the_reason_of_its_last_hot_interval() {
        let mut flag = Flag::default();
        for _ in 0..3 {
            flag.update(true, WINDOW, |n| format!("hot in {n}"));
        }
        assert_eq!(flag.reason(), Some("hot in 3"));
        for _ in 0..9 {
            flag.update(false, WINDOW, |_| unreachable!("cool intervals are not described"));
        }
        assert_eq!(flag.reason(), Some("hot in 3"));
        flag.update(false, WINDOW, |_| unreachable!());
        assert_eq!((flag.is_raised(), flag.reason()), (false, None));
    }

    #[test]
    fn held_intervals_count_once_a_verdict_comes() {
        let mut flag = Flag::default();
        flag.hold(true, WINDOW);
        flag.hold(true, WINDOW);
        assert!(!flag.is_raised());
        flag.update(true, WINDOW, |n| format!("{n} hot"));
        assert_eq!(flag.reason(), Some("3 hot"));
    }

    #[test]
    fn a_window_of_64_keeps_every_bit() {
        let mut flag = Flag::default();
        let window = Window { hot: 64, of: 64 };
        for i in 0..64 {
            flag.update(true, window, |n| n.to_string());
            assert_eq!(flag.is_raised(), i == 63);
        }
    }
}
