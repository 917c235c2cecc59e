//! A verdict held over time: raised after enough hot intervals in a row,
//! cleared after as many cool ones. The rules in `classify` say whether one
//! interval is hot; a [`Flag`] per rule and subject remembers the answers.

/// A flag that is raised after `sustain` hot intervals in a row and cleared
/// after `sustain` cool ones, so it does not flap on a bursty writer. It
/// keeps the description of its last hot interval as its reason, so a flag
/// held through cool intervals still says what raised it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flag {
    raised: bool,
    /// Intervals in a row that disagreed with `raised`.
    against: u32,
    /// Intervals in a row that were hot.
    hot_for: u32,
    last_hot: Option<String>,
}

impl Flag {
    /// Judges one interval; `describe` tells a hot one in words, given how
    /// many hot intervals in a row it ends.
    pub fn update(&mut self, hot: bool, sustain: u32, describe: impl FnOnce(u32) -> String) {
        self.hot_for = if hot { self.hot_for + 1 } else { 0 };
        if hot {
            self.last_hot = Some(describe(self.hot_for));
        }
        if hot == self.raised {
            self.against = 0;
        } else {
            self.against += 1;
            if self.against >= sustain {
                self.raised = hot;
                self.against = 0;
            }
        }
    }

    pub fn is_raised(&self) -> bool {
        self.raised
    }

    /// Why the flag is raised, if it is.
    pub fn reason(&self) -> Option<&str> {
        self.last_hot.as_deref().filter(|_| self.raised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_needs_sustain_intervals_both_ways() {
        let mut flag = Flag::default();
        let steps = [
            (true, false),
            (true, false),
            (true, true),
            (false, true),
            (true, true),
            (false, true),
            (false, true),
            (false, false),
        ];
        for (hot, raised) in steps {
            flag.update(hot, 3, |n| format!("hot for {n}"));
            assert_eq!(flag.is_raised(), raised, "{flag:?}");
        }
    }

    #[test]
    fn a_held_flag_keeps_the_reason_of_its_last_hot_interval() {
        let mut flag = Flag::default();
        for _ in 0..3 {
            flag.update(true, 3, |n| format!("hot for {n}"));
        }
        assert_eq!(flag.reason(), Some("hot for 3"));
        flag.update(false, 3, |_| unreachable!("cool intervals are not described"));
        assert_eq!(flag.reason(), Some("hot for 3"));
        flag.update(false, 3, |_| unreachable!());
        flag.update(false, 3, |_| unreachable!());
        assert_eq!((flag.is_raised(), flag.reason()), (false, None));
    }
}
