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
        let cell = |row: &[String], i: usize| row.get(i).map(String::as_str).unwrap_or("").to_owned();
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, width) in widths.iter_mut().enumerate() {
                *width = (*width).max(cell(row, i).chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let text = cell(row, i);
                line.push_str(&text);
                if i + 1 < ncols {
                    let pad = width - text.chars().count() + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(w, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&["A", "LONGER", "Z"]);
        t.row(vec!["xyzzy".into(), "b".into(), "end".into()]);
        t.row(vec!["q".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A       LONGER   Z\nxyzzy   b        end\nq\n");
    }
}
