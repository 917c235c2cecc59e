//! What the dashboards' and alerts' PromQL may name: the metric and label
//! names of docs/metrics.md's catalog, and a small scanner that finds the
//! metric and label names an expression uses.

use std::{collections::BTreeSet, path::PathBuf};

/// Labels that Prometheus, not the agent, puts on series: histogram
/// buckets, the scrape's job and instance, and the `cluster` label a
/// deployment adds (docs/dashboards.md).
pub const SCRAPE_LABELS: [&str; 5] = ["le", "job", "instance", "cluster", "__name__"];

/// The repository's root (the agent crate's parent).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Names from docs/metrics.md's catalog tables.
pub struct Catalog {
    /// Prometheus metric names (`batchwatch_write_calls_total`, ...).
    pub metrics: BTreeSet<String>,
    /// Of those, the histograms (named with `_bucket`, `_sum`, `_count`).
    pub histograms: BTreeSet<String>,
    /// Prometheus label names of the attributes.
    pub labels: BTreeSet<String>,
}

impl Catalog {
    pub fn from_docs() -> Catalog {
        let text = std::fs::read_to_string(repo_root().join("docs/metrics.md")).expect("docs/metrics.md");
        let mut catalog = Catalog { metrics: BTreeSet::new(), histograms: BTreeSet::new(), labels: BTreeSet::new() };
        for line in text.lines().filter(|line| line.starts_with('|')) {
            let cells: Vec<&str> =
                line.trim_matches('|').split('|').map(|cell| cell.trim().trim_matches('`')).collect();
            match cells.as_slice() {
                // | Name | Instrument | Unit | Attributes | Meaning | Prometheus name |
                [_, instrument, _, _, _, name] if name.starts_with("batchwatch_") => {
                    catalog.metrics.insert((*name).to_owned());
                    if *instrument == "Histogram" {
                        catalog.histograms.insert((*name).to_owned());
                    }
                }
                // | Attribute | Prometheus label | Meaning |
                [attribute, label, _] if attribute.contains('.') && !label.is_empty() && !label.contains(' ') => {
                    catalog.labels.insert((*label).to_owned());
                }
                _ => {}
            }
        }
        assert!(catalog.metrics.len() >= 30 && catalog.labels.len() >= 15, "docs/metrics.md's tables were not found");
        catalog
    }

    /// Why `name` (as written in a query) is not a catalog metric, if it is not.
    pub fn check_metric(&self, name: &str) -> Result<(), String> {
        if self.metrics.contains(name) {
            return Ok(());
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && self.histograms.contains(base)
            {
                return Ok(());
            }
        }
        Err(format!("metric {name} is not in docs/metrics.md"))
    }

    /// Why `label` is neither a catalog label nor one Prometheus adds, if it is neither.
    pub fn check_label(&self, label: &str) -> Result<(), String> {
        if self.labels.contains(label) || SCRAPE_LABELS.contains(&label) {
            Ok(())
        } else {
            Err(format!("label {label} is not in docs/metrics.md"))
        }
    }
}

/// The names an expression uses.
#[derive(Debug, Default)]
pub struct Names {
    pub metrics: Vec<String>,
    pub labels: Vec<String>,
}

/// Operators and keywords: never metric names (aggregations may be followed by `by`, not `(`).
const KEYWORDS: [&str; 23] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
const LABEL_LISTS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];

/// Metric and label names in `expr`: metric names are the identifiers
/// that are not functions, keywords or Grafana variables; label names are
/// those in `{...}` matchers and in `by`/`on`/... lists.
pub fn names(expr: &str) -> Names {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Names::default();
    let mut i = 0;
    let mut in_braces = false;
    let mut in_brackets = false;
    let mut label_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' => {
                in_braces = true;
                i += 1;
            }
            '}' => {
                in_braces = false;
                i += 1;
            }
            '[' => {
                in_brackets = true;
                i += 1;
            }
            ']' => {
                in_brackets = false;
                i += 1;
            }
            ')' => {
                label_list = false;
                i += 1;
            }
            '$' => {
                // A Grafana variable, $name or ${name}.
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || "_{}".contains(chars[i])) {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number or a duration (5m, 1e-9, 0.99).
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
                if in_brackets {
                    continue;
                }
                if in_braces || label_list {
                    names.labels.push(word);
                } else if LABEL_LISTS.contains(&word.as_str()) && next == Some('(') {
                    label_list = true;
                    // Skip to the opening parenthesis.
                    while chars[i] != '(' {
                        i += 1;
                    }
                    i += 1;
                } else if next == Some('(') || KEYWORDS.contains(&word.as_str()) {
                    // A function, or a keyword.
                } else {
                    names.metrics.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_finds_metrics_and_labels() {
        let found = names(
            r#"histogram_quantile(0.99, sum by (process_pid, le) (rate(batchwatch_write_batch_size_bytes_bucket{cluster=~"$cluster", x="a{b}"}[$__rate_interval]))) and on (instance) up offset 5m"#,
        );
        assert_eq!(found.metrics, ["batchwatch_write_batch_size_bytes_bucket", "up"]);
        assert_eq!(found.labels, ["process_pid", "le", "cluster", "x", "instance"]);
    }
}
