//! The columns the process table and the descriptor table share: the
//! batching metrics, how their cells are written and aligned, and the flag.

use ratatui::{
    layout::Constraint,
    style::{Modifier, Style},
    text::{Line, Span},
    widgets::{Cell, Row, Table},
};

use super::{
    app::SortColumn,
    format::{self, NONE},
};
use crate::model::metrics::BatchingMetrics;

/// A table column.
pub struct Column {
    title: &'static str,
    /// Width in cells; 0 takes what is left.
    width: u16,
    /// Numbers are right-aligned, so their digits line up.
    numeric: bool,
    /// What the process table sorts by when sorted by this column.
    sort: Option<SortColumn>,
}

pub const fn column(title: &'static str, width: u16, numeric: bool, sort: Option<SortColumn>) -> Column {
    Column { title, width, numeric, sort }
}

/// The batching columns the process table and the descriptor table share,
/// filled by [`metric_cells`]. Buffer depth follows them, in a column of
/// each table's own: a percentage in the process table, the bytes too in
/// the descriptor table.
pub const METRIC_COLUMNS: [Column; 5] = [
    column("WRITES/S", 10, true, Some(SortColumn::WritesPerSec)),
    column("BYTES/CALL p50/p99", 20, true, Some(SortColumn::BytesPerCall)),
    column("REC/CALL", 8, true, None),
    column("GAP p50/p99", 16, true, None),
    column("DROPS/S", 9, true, Some(SortColumn::Drops)),
];

/// The cells of [`METRIC_COLUMNS`]; drops are passed apart, since a process
/// counts its io_uring drops with its write calls'.
pub fn metric_cells(m: &BatchingMetrics, drops_per_sec: f64) -> [String; 5] {
    [
        format::rate(m.calls_per_sec),
        format::bytes_quantiles(m.bytes_per_call),
        format::records_per_call(m),
        format::gap_quantiles(m.gap_ns),
        format::rate(drops_per_sec),
    ]
}

/// Buffer depth from which a buffer stands out: the alert threshold of the
/// product, past which backpressure is building.
pub const DEPTH_ALERT_PERCENT: f64 = 80.0;

/// How a buffer `percent` full is drawn: yellow from the alert threshold,
/// red once full (the writer blocks or gets `EAGAIN`).
pub fn depth_style(percent: f64) -> Style {
    match percent {
        p if p >= 100.0 => Style::new().red().bold(),
        p if p >= DEPTH_ALERT_PERCENT => Style::new().yellow().bold(),
        _ => Style::new(),
    }
}

/// A depth cell: the text of a buffer `percent` full, styled by it; `-`
/// when not sampled.
pub fn depth_cell<'a>(depth: Option<(f64, String)>, column: &Column) -> Cell<'a> {
    match depth {
        Some((percent, text)) => cell(text, column).style(depth_style(percent)),
        None => cell(NONE, column),
    }
}

/// How a flagged writer stands out.
pub fn unbatched_flag() -> Span<'static> {
    Span::styled("UNBATCHED", Style::new().red().bold())
}

/// The tag of a round-trip bound descriptor: hot, but the peer must batch.
pub fn round_trip_flag() -> Span<'static> {
    Span::styled("ROUND TRIP", Style::new().cyan().bold())
}

/// A table of `columns`, the selected row in reverse video; with `sort`, the
/// title of the column it is sorted by carries an arrow.
pub fn table<'a>(
    rows: impl IntoIterator<Item = Row<'a>>,
    columns: &[&Column],
    sort: Option<(SortColumn, bool)>,
) -> Table<'a> {
    let widths = columns.iter().map(|c| if c.width == 0 { Constraint::Fill(1) } else { Constraint::Length(c.width) });
    Table::new(rows, widths)
        .header(header_row(columns, sort))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
}

/// Column titles; `sort` is the column the table is sorted by, and whether
/// reversed.
fn header_row<'a>(columns: &[&Column], sort: Option<(SortColumn, bool)>) -> Row<'a> {
    let titles = columns.iter().map(|c| {
        let arrow = sort.filter(|&(by, _)| c.sort == Some(by)).map(|(_, reversed)| if reversed { " ▲" } else { " ▼" });
        let style = if arrow.is_some() { Style::new().bold().underlined() } else { Style::new().bold() };
        cell(format!("{}{}", c.title, arrow.unwrap_or_default()), c).style(style)
    });
    Row::new(titles)
}

/// Cells of `texts`, one per column from the first, aligned as the column says.
pub fn text_cells<'a>(texts: Vec<String>, columns: &[&Column]) -> Vec<Cell<'a>> {
    texts.into_iter().zip(columns).map(|(text, column)| cell(text, column)).collect()
}

/// A cell of `line`, aligned as `column` says.
pub fn cell<'a>(line: impl Into<Line<'a>>, column: &Column) -> Cell<'a> {
    let line = line.into();
    Cell::from(if column.numeric { line.right_aligned() } else { line })
}
