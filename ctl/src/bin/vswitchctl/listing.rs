//! A list verb's rows as named columns: one source for its human table and
//! for what a `--format` template sees, so the two cannot drift apart.
//!
//! A column has the field name a template uses (Docker's, where Docker
//! lists the same thing: `.ID`, `.Name`, `.Driver`) and the header the table
//! and `table TEMPLATE` print. Some columns are template-only (more than a
//! terminal's width wants, as Docker's `network ls` keeps `.Labels` or
//! `.CreatedAt` out of its default table); some show in the table only when
//! a row has them (`fdb show`'s REMOTE).

use std::io::{self, Write};

use serde_json::{Map, Value};

use crate::format::Format;
use crate::table::Table;

/// Where a column shows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    /// In the table and to templates.
    Always,
    /// In the table when any row has a value (not empty); always to templates.
    WhenAnySet,
    /// To templates only.
    TemplateOnly,
}

/// One column: its template field, its header, where it shows.
pub(crate) struct Column {
    /// The field a template names (`{{.Name}}`).
    pub(crate) key: &'static str,
    /// The header of the table and of `table TEMPLATE`.
    pub(crate) header: &'static str,
    /// Where it shows.
    pub(crate) shown: Shown,
}

/// A column shown everywhere.
pub(crate) const fn col(key: &'static str, header: &'static str) -> Column {
    Column { key, header, shown: Shown::Always }
}

/// A column for templates only.
pub(crate) const fn extra(key: &'static str, header: &'static str) -> Column {
    Column { key, header, shown: Shown::TemplateOnly }
}

/// A column the table shows only when some row has a value in it.
pub(crate) const fn sparse(key: &'static str, header: &'static str) -> Column {
    Column { key, header, shown: Shown::WhenAnySet }
}

/// The rows of one list of `N` columns, each a cell per column (in the
/// columns' order; a row of another length does not compile). Cells are
/// JSON values: strings as Docker's columns are, numbers where a script
/// compares them (`{{if gt .Endpoints 0}}`), a map where a template ranges
/// over one (`stats`' `.DropReasons`).
pub(crate) struct Listing<const N: usize> {
    columns: &'static [Column; N],
    rows: Vec<[Value; N]>,
}

impl<const N: usize> Listing<N> {
    /// An empty listing of these columns.
    pub(crate) fn new(columns: &'static [Column; N]) -> Self {
        Self { columns, rows: Vec::new() }
    }

    /// Appends a row: one cell per column, in order.
    pub(crate) fn push(&mut self, cells: [Value; N]) {
        self.rows.push(cells);
    }

    /// Prints the list: its table with no format (or `table` alone),
    /// otherwise through the format.
    pub(crate) fn print(&self, w: &mut dyn Write, format: Option<&Format>) -> anyhow::Result<()> {
        match format {
            None | Some(Format::Default) => Ok(self.write_table(w)?),
            Some(format) => format.write(w, &self.template_rows(), &self.template_header()),
        }
    }

    /// Writes the table: the shown columns, an empty cell as `-`.
    pub(crate) fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        let shown: Vec<usize> = (0..self.columns.len()).filter(|&i| self.in_table(i)).collect();
        let headers: Vec<&'static str> = shown.iter().map(|&i| self.columns[i].header).collect();
        let mut table = Table::new(&headers);
        for row in &self.rows {
            table.row(shown.iter().map(|&i| cell_text(&row[i])).collect());
        }
        table.write(w)
    }

    /// Whether column `i` shows in the table.
    fn in_table(&self, i: usize) -> bool {
        match self.columns[i].shown {
            Shown::Always => true,
            Shown::TemplateOnly => false,
            Shown::WhenAnySet => self.rows.iter().any(|row| !is_empty(&row[i])),
        }
    }

    /// Each row as a template sees it: an object of every column's field.
    pub(crate) fn template_rows(&self) -> Vec<Value> {
        let object = |row: &[Value; N]| {
            let fields = self.columns.iter().zip(row).map(|(c, v)| (c.key.to_owned(), v.clone()));
            Value::Object(fields.collect::<Map<_, _>>())
        };
        self.rows.iter().map(object).collect()
    }

    /// The header row's data for `table TEMPLATE`: each field's header.
    pub(crate) fn template_header(&self) -> Value {
        Value::Object(self.columns.iter().map(|c| (c.key.to_owned(), Value::from(c.header))).collect())
    }
}

/// A cell as the table prints it: text as it is, `-` when empty; numbers
/// and booleans as JSON writes them; a map as `key=value` pairs.
fn cell_text(cell: &Value) -> String {
    match cell {
        _ if is_empty(cell) => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Object(map) => map.iter().map(|(k, v)| format!("{k}={}", cell_text(v))).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Whether a cell has nothing to show: null, an empty text or map.
fn is_empty(cell: &Value) -> bool {
    match cell {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Column, Listing, col, extra, sparse};
    use crate::format::Format;

    const COLUMNS: [Column; 4] =
        [col("Name", "NAME"), col("Count", "COUNT"), sparse("Remote", "REMOTE"), extra("Note", "NOTE")];

    fn listing(remote: &str) -> Listing<4> {
        let mut l = Listing::new(&COLUMNS);
        l.push([json!("a"), json!(3), json!(""), json!("x")]);
        l.push([json!("bb"), json!(0), json!(remote), json!("")]);
        l
    }

    fn printed<const N: usize>(l: &Listing<N>, format: Option<&str>) -> String {
        let format = format.map(|f| Format::for_list(f).unwrap());
        let mut out = Vec::new();
        l.print(&mut out, format.as_ref()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_table_shows_its_columns_and_dashes_empty_cells() {
        assert_eq!(printed(&listing(""), None), "NAME   COUNT\na      3\nbb     0\n");
        // A sparse column shows once a row has it; the other rows get `-`.
        assert_eq!(printed(&listing("h:1"), None), "NAME   COUNT   REMOTE\na      3       -\nbb     0       h:1\n");
        assert_eq!(printed(&listing(""), Some("table")), printed(&listing(""), None));
        // A map shows as its pairs, an empty one as `-`.
        const MAP: [Column; 2] = [col("Port", "PORT"), col("Reasons", "REASONS")];
        let mut l = Listing::new(&MAP);
        l.push([json!("p1"), json!({"no_route": 3, "mtu": 1})]);
        l.push([json!("p2"), json!({})]);
        assert_eq!(printed(&l, None), "PORT   REASONS\np1     mtu=1,no_route=3\np2     -\n");
    }

    #[test]
    fn templates_see_every_column_as_the_daemon_values_are() {
        assert_eq!(printed(&listing(""), Some("{{.Name}}:{{.Note}}:{{.Remote}}")), "a:x:\nbb::\n");
        assert_eq!(printed(&listing(""), Some("{{if gt .Count 0}}{{.Name}}{{end}}")), "a\n\n");
        assert_eq!(
            printed(&listing(""), Some("json")),
            "{\"Count\":3,\"Name\":\"a\",\"Note\":\"x\",\"Remote\":\"\"}\n{\"Count\":0,\"Name\":\"bb\",\"Note\":\"\",\"Remote\":\"\"}\n"
        );
        assert_eq!(printed(&listing(""), Some(r"table {{.Name}}\t{{.Note}}")), "NAME      NOTE\na         x\nbb\n");
    }
}
