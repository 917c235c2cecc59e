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
    snapshot::drops_per_sec,
};
use crate::model::metrics::BatchingMetrics;

/// Buffer depth (% of capacity) is not measured yet: the column stays, and
/// shows this, until the model carries a depth per descriptor.
const NO_DEPTH: &str = NONE;

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
/// filled by [`metric_cells`].
pub const METRIC_COLUMNS: [Column; 6] = [
    column("WRITES/S", 10, true, Some(SortColumn::WritesPerSec)),
    column("BYTES/CALL p50/p99", 20, true, Some(SortColumn::BytesPerCall)),
    column("REC/CALL", 8, true, None),
    column("GAP p50/p99", 16, true, None),
    column("DROPS/S", 9, true, Some(SortColumn::Drops)),
    column("DEPTH%", 6, true, None),
];

pub fn metric_cells(m: &BatchingMetrics) -> [String; 6] {
    [
        format::rate(m.calls_per_sec),
        format::bytes_quantiles(m.bytes_per_call),
        format::records_per_call(m),
        format::gap_quantiles(m.gap_ns),
        format::rate(drops_per_sec(m)),
        NO_DEPTH.to_owned(),
    ]
}

/// How a flagged writer stands out.
pub fn unbatched_flag() -> Span<'static> {
    Span::styled("UNBATCHED", Style::new().red().bold())
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

fn cell<'a>(text: String, column: &Column) -> Cell<'a> {
    let line = Line::from(text);
    Cell::from(if column.numeric { line.right_aligned() } else { line })
}
