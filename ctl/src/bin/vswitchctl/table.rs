//! Column-aligned plain-text tables in the style of `docker network ls`.

use std::io::{self, Write};

/// A table with a header row; columns are separated by at least three spaces.
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        Self { headers: headers.to_vec(), rows: Vec::new() }
    }

    /// Appends a row; missing cells print empty, extra cells are ignored.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the header and rows, padding every column but the last to its widest cell.
    pub(crate) fn write(&self, w: &mut dyn Write) -> io::Result<()> {
        let ncols = self.headers.len();
        let mut text = self.headers.join("\t");
        text.push('\n');
        for row in &self.rows {
            // A tab inside a cell would start a column.
            let cells = (0..ncols).map(|i| row.get(i).map_or(String::new(), |c| c.replace('\t', " ")));
            text.push_str(&cells.collect::<Vec<_>>().join("\t"));
            text.push('\n');
        }
        w.write_all(align_tabs(&text, 0).as_bytes())
    }
}

/// Aligns tab-separated cells into columns, as Go's `text/tabwriter` does
/// for `docker … --format 'table …'` (padding 3): every cell that a tab ends
/// is padded to its column's widest such cell plus three spaces, and to at
/// least `min_width` in all; the text after a line's last tab is not a
/// column. Lines lose trailing spaces.
pub(crate) fn align_tabs(text: &str, min_width: usize) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &lines {
        for (i, cell) in cells[..cells.len() - 1].iter().enumerate() {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::with_capacity(text.len());
    for cells in &lines {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < cells.len() {
                let width = (widths[i] + 3).max(min_width);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Table, align_tabs};

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&["A", "LONGER", "Z"]);
        t.row(vec!["xyzzy".into(), "b".into(), "end".into()]);
        t.row(vec!["q".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A       LONGER   Z\nxyzzy   b        end\nq\n");
    }

    #[test]
    fn aligns_tab_separated_lines_of_any_width() {
        assert_eq!(align_tabs("N\tDRIVER\tX\nlonger\tb\nz\n", 0), "N        DRIVER   X\nlonger   b\nz\n");
        assert_eq!(align_tabs("a\t\t\nbb\tc\t\n", 0), "a\nbb   c\n");
        assert_eq!(align_tabs("", 0), "");
        // Docker's minimum width: 10 with the padding.
        assert_eq!(align_tabs("N\tDRIVER\tX\nlonger\tb\n", 10), "N         DRIVER    X\nlonger    b\n");
    }
}
