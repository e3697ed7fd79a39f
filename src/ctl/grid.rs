//! Borderless, aligned columns (comfy-table) for byokctl's tables and the tables inside a
//! describe-style record, fitted to the terminal's width when standard output is one.
//!
//! It owns the column layout only; what the cells say is the caller's.

/// Headings and cells as borderless columns (comfy-table), fitted to the terminal's width
/// less `indent` when standard output is a terminal, else as long as their content.
pub fn grid(heads: &[String], cells: &[Vec<String>], indent: usize) -> String {
    use comfy_table::{ContentArrangement, Table, presets::NOTHING};
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(heads.to_vec());
    for row in cells {
        t.add_row(row.clone());
    }
    if let Some(w) = t.width() {
        t.set_width(w.saturating_sub(indent as u16).max(20));
    }
    let last = heads.len().saturating_sub(1);
    for (i, c) in t.column_iter_mut().enumerate() {
        c.set_padding((0, if i == last { 0 } else { 2 }));
    }
    t.lines()
        .map(|l| l.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}
