//! A log2 histogram drawn as horizontal bars: one line per bucket that holds
//! samples, labelled with the bucket's upper edge (inclusive; the last, open
//! bucket with its least value), with its share of all samples.

use std::cmp::Reverse;

use ratatui::{style::Stylize as _, text::Line};

use crate::model::histogram::Log2Histogram;

/// Names a bucket by its edge, in the histogram's unit.
pub type Label = fn(u64) -> String;

/// Lines for `slots` in `width` columns and at most `height` lines; `empty`
/// says why there is nothing to draw when no bucket holds a sample. When
/// more buckets hold samples than fit, the fullest are kept, still in bucket
/// order.
pub fn bars(slots: &[u64], label: Label, width: usize, height: usize, empty: &str) -> Vec<Line<'static>> {
    let histogram = Log2Histogram::new(slots);
    let total = histogram.count();
    if total == 0 {
        return vec![Line::from(empty.to_owned()).dim()];
    }
    let mut shown: Vec<(u64, u64)> = histogram
        .buckets()
        .filter(|&(_, _, count)| count > 0)
        .map(|(lower, upper, count)| (upper.unwrap_or(lower), count))
        .collect();
    if shown.len() > height {
        let mut counts: Vec<u64> = shown.iter().map(|&(_, count)| count).collect();
        counts.sort_unstable_by_key(|&count| Reverse(count));
        let least_kept = counts[height.saturating_sub(1)];
        shown.retain(|&(_, count)| count >= least_kept);
        shown.truncate(height);
    }
    let labels: Vec<String> = shown.iter().map(|&(edge, _)| label(edge)).collect();
    let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    // Label, space, bar, space, "100%".
    let bar_width = width.saturating_sub(label_width + 6).max(1);
    let fullest = shown.iter().map(|&(_, count)| count).max().unwrap_or(1);
    shown
        .iter()
        .zip(labels)
        .map(|(&(_, count), label)| {
            // Every non-empty bucket gets at least one cell, so it stays visible.
            let cells = ((count as f64 / fullest as f64) * bar_width as f64).ceil().max(1.0) as usize;
            Line::from(vec![
                format!("{label:>label_width$} ").into(),
                "█".repeat(cells).cyan(),
                format!("{:w$} {:>4}", "", percent(count, total), w = bar_width - cells).into(),
            ])
        })
        .collect()
}

/// `count`'s share of `total`; a sample or a few are not 0%.
fn percent(count: u64, total: u64) -> String {
    let share = count as f64 / total as f64 * 100.0;
    if share < 0.5 { "<1%".to_owned() } else { format!("{share:.0}%") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn one_line_per_bucket_with_samples() {
        let mut slots = [0; 16];
        slots[7] = 300; // 33-64
        slots[13] = 100; // 2049-4096
        let lines = text(&bars(&slots, |lower| lower.to_string(), 20, 10, ""));
        assert_eq!(lines, ["  64 ██████████  75%", "4096 ████        25%"]);
    }

    #[test]
    fn keeps_the_fullest_buckets_in_order_when_short_of_lines() {
        let slots = [0, 5, 1, 9, 2, 7];
        let lines = text(&bars(&slots, |lower| lower.to_string(), 12, 3, ""));
        let labels: Vec<&str> = lines.iter().map(|l| l.split_whitespace().next().unwrap()).collect();
        // The last bucket, open, is named by its least value, 2^3 + 1.
        assert_eq!(labels, ["1", "4", "9"], "buckets of 5, 9 and 7 samples");
    }

    #[test]
    fn a_sliver_is_not_zero_percent() {
        let mut slots = [0; 4];
        (slots[1], slots[3]) = (1000, 1);
        let lines = text(&bars(&slots, |lower| lower.to_string(), 12, 5, ""));
        assert_eq!(lines, ["1 █████ 100%", "3 █      <1%"]);
    }

    #[test]
    fn says_so_when_empty() {
        assert_eq!(text(&bars(&[0; 8], |l| l.to_string(), 30, 5, "nothing here")), ["nothing here"]);
    }
}
