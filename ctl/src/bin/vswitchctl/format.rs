//! `--format`, as Docker's: a Go template (`text/template`, through
//! gotmpl) run over each item a command lists or inspects, with Docker's
//! own template functions (`json`, `join`, `split`, `lower`, `upper`,
//! `title`, `pad`, `truncate`) and its keywords: `json` (each item as one
//! line of JSON) and, for lists, `table` (alone: the command's own table;
//! `table TEMPLATE`: a header row, then a row per item, cells split at tabs
//! and aligned). As in Docker, a literal `\t` or `\n` in the format is a tab
//! or a newline, so `--format 'table {{.Name}}\t{{.Driver}}'` works from a
//! shell.
//!
//! What a template sees: for `ls`, the table's columns under Docker's
//! field names (`network ls`: `.ID`, `.Name`, `.Driver`, …); for `inspect`,
//! the JSON document the command prints, keys as they are
//! (`network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}'`). A
//! field the item lacks prints `<no value>`, as a missing map key does in Go.

use std::io::Write;
use std::sync::Arc;

use gotmpl::{Template, TemplateError, Value};
use serde_json::Value as Json;

use crate::table;

/// A parsed `--format`.
pub(crate) enum Format {
    /// `table` alone: the command's own table.
    Table,
    /// `json`: each item as one line of compact JSON.
    Json,
    /// `table TEMPLATE`: a header row, then a row per item, aligned at tabs.
    TableOf {
        /// The template with Docker's functions, for the items.
        row: Template,
        /// The same template with functions that pass their first argument
        /// through, run over the column names for the header row.
        header: Template,
    },
    /// Any other text: the template once per item, each followed by a newline.
    Each(Template),
}

impl Format {
    /// `--format` of a list (`network ls`, `sandbox ls`): `table`, `json`,
    /// `table TEMPLATE` or a template.
    pub(crate) fn for_list(spec: &str) -> Result<Self, String> {
        if spec == "json" {
            return Ok(Self::Json);
        }
        let Some(rest) = spec.strip_prefix("table") else { return Ok(Self::Each(parse(spec, false)?)) };
        if rest.trim().is_empty() {
            return Ok(Self::Table);
        }
        Ok(Self::TableOf { row: parse(rest, false)?, header: parse(rest, true)? })
    }

    /// `--format` of `inspect`: `json` or a template.
    pub(crate) fn for_inspect(spec: &str) -> Result<Self, String> {
        if spec == "json" { Ok(Self::Json) } else { Ok(Self::Each(parse(spec, false)?)) }
    }

    /// Writes `items` in this format; `header` names each field a row has
    /// (the header row of `table TEMPLATE`). [`Format::Table`] writes
    /// nothing: the caller prints its own table.
    pub(crate) fn write(&self, w: &mut dyn Write, items: &[Json], header: &Json) -> anyhow::Result<()> {
        match self {
            Self::Table => {}
            Self::Json => {
                for item in items {
                    serde_json::to_writer(&mut *w, item)?;
                    writeln!(w)?;
                }
            }
            Self::Each(template) => {
                for item in items {
                    writeln!(w, "{}", execute(template, item)?)?;
                }
            }
            Self::TableOf { row, header: header_template } => {
                let mut text = execute(header_template, header)?;
                text.push('\n');
                for item in items {
                    text.push_str(&execute(row, item)?);
                    text.push('\n');
                }
                w.write_all(table::align_tabs(&text).as_bytes())?;
            }
        }
        Ok(())
    }
}

/// Checks a list's `--format` on its own (clap's value parser).
pub(crate) fn check_list(spec: &str) -> Result<String, String> {
    Format::for_list(spec).map(|_| spec.to_owned())
}

/// Checks an inspect `--format` on its own (clap's value parser).
pub(crate) fn check_inspect(spec: &str) -> Result<String, String> {
    Format::for_inspect(spec).map(|_| spec.to_owned())
}

/// Parses a template with Docker's functions (`header`: their header-row
/// forms), after Docker's rewriting: surrounding spaces trimmed, literal
/// `\t` and `\n` made a tab and a newline.
fn parse(source: &str, header: bool) -> Result<Template, String> {
    let source = source.trim_matches(' ').replace(r"\t", "\t").replace(r"\n", "\n");
    let mut template = Template::new("format");
    for (name, arity, f) in FUNCTIONS {
        template = if header {
            template.func(name, move |args| {
                check_arity(name, arity, args)?;
                Ok(args[0].clone())
            })
        } else {
            template.func(name, move |args| {
                check_arity(name, arity, args)?;
                f(args)
            })
        };
    }
    template.parse(&source).map_err(|e| format!("template parsing error: {e}"))
}

/// Runs `template` over one JSON item.
fn execute(template: &Template, item: &Json) -> anyhow::Result<String> {
    let data = gotmpl::to_value(item).map_err(|e| anyhow::anyhow!("--format: {e}"))?;
    template.execute_to_string(&data).map_err(|e| anyhow::anyhow!("--format: {e}"))
}

/// A template function: its name, its number of arguments and what it does.
type Function = (&'static str, usize, fn(&[Value]) -> gotmpl::Result<Value>);

/// Docker's template functions (its `templates.basicFunctions`).
const FUNCTIONS: [Function; 8] = [
    ("json", 1, |a| Ok(text(serde_json::to_string(&to_json(&a[0])).unwrap_or_default()))),
    ("split", 2, |a| Ok(Value::List(string(&a[0]).split(string(&a[1]).as_str()).map(text).collect()))),
    ("join", 2, |a| {
        let Value::List(items) = &a[0] else { return Err(mismatch("list", &a[0])) };
        Ok(text(items.iter().map(string).collect::<Vec<_>>().join(&string(&a[1]))))
    }),
    ("title", 1, |a| Ok(text(title(&string(&a[0]))))),
    ("lower", 1, |a| Ok(text(string(&a[0]).to_lowercase()))),
    ("upper", 1, |a| Ok(text(string(&a[0]).to_uppercase()))),
    ("pad", 3, |a| {
        let (before, after) = (count(&a[1])?, count(&a[2])?);
        Ok(text(format!("{}{}{}", " ".repeat(before), string(&a[0]), " ".repeat(after))))
    }),
    ("truncate", 2, |a| Ok(text(string(&a[0]).chars().take(count(&a[1])?).collect::<String>()))),
];

/// Refuses a call with the wrong number of arguments, as Go does.
fn check_arity(name: &str, arity: usize, args: &[Value]) -> gotmpl::Result<()> {
    if args.len() == arity {
        Ok(())
    } else {
        Err(TemplateError::Exec(format!("wrong number of args for {name}: want {arity} got {}", args.len())))
    }
}

fn mismatch(expected: &'static str, got: &Value) -> TemplateError {
    TemplateError::TypeMismatch { expected, got: got.type_name() }
}

/// A value as the template prints it (a string without quotes).
fn string(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        other => other.to_string(),
    }
}

fn text(s: impl Into<Arc<str>>) -> Value {
    Value::String(s.into())
}

/// A non-negative integer argument (`pad`'s widths, `truncate`'s length).
fn count(v: &Value) -> gotmpl::Result<usize> {
    v.as_int().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| mismatch("non-negative int", v))
}

/// Go's `strings.Title`: each letter that follows a separator (anything
/// but a letter, a digit or `_`) upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut after_separator = true;
    for c in s.chars() {
        if after_separator {
            out.extend(c.to_uppercase())
        } else {
            out.push(c)
        }
        after_separator = !(c.is_alphanumeric() || c == '_');
    }
    out
}

/// A template value as JSON (for `json`).
fn to_json(v: &Value) -> Json {
    match v {
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(n) => Json::from(*n),
        Value::Uint(n) => Json::from(*n),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.to_string()),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(map) => Json::Object(map.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect()),
        Value::Nil | Value::Function(_) => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Format;

    fn render(format: &Format, items: &[serde_json::Value], header: &serde_json::Value) -> String {
        let mut out = Vec::new();
        format.write(&mut out, items, header).expect("renders");
        String::from_utf8(out).expect("utf-8")
    }

    fn networks() -> (Vec<serde_json::Value>, serde_json::Value) {
        let rows = vec![
            json!({"ID": "0123456789ab", "Name": "web", "Driver": "bridge", "IPv6": false, "Labels": "a=1,b="}),
            json!({"ID": "ba9876543210", "Name": "backend-long", "Driver": "overlay", "IPv6": true, "Labels": ""}),
        ];
        let header =
            json!({"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "IPv6": "IPV6", "Labels": "LABELS"});
        (rows, header)
    }

    #[test]
    fn a_template_runs_once_per_item() {
        let (rows, header) = networks();
        let f = Format::for_list("{{.Name}}: {{.Driver}}").unwrap();
        assert_eq!(render(&f, &rows, &header), "web: bridge\nbackend-long: overlay\n");
        // A missing field prints as Go prints a missing map key.
        let f = Format::for_list("{{.Name}} {{.Colour}}").unwrap();
        assert_eq!(render(&f, &rows[..1], &header), "web <no value>\n");
        let f = Format::for_list(r"{{.Name}}\t{{if .IPv6}}v6{{end}}").unwrap();
        assert_eq!(render(&f, &rows, &header), "web\t\nbackend-long\tv6\n");
    }

    #[test]
    fn table_aligns_cells_under_a_header_from_the_same_template() {
        let (rows, header) = networks();
        let f = Format::for_list(r"table {{.Name}}\t{{.Driver | upper}}\t{{.IPv6}}").unwrap();
        assert_eq!(
            render(&f, &rows, &header),
            "NAME           DRIVER    IPV6\nweb            BRIDGE    false\nbackend-long   OVERLAY   true\n"
        );
        // `table` alone is the command's own table: the caller prints it.
        assert!(matches!(Format::for_list("table").unwrap(), Format::Table));
        assert!(matches!(Format::for_list(" table ").unwrap(), Format::Each(_)), "Docker takes only a `table` prefix");
    }

    #[test]
    fn json_is_one_compact_line_per_item() {
        let (rows, header) = networks();
        let out = render(&Format::for_list("json").unwrap(), &rows, &header);
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines, rows);
        let f = Format::for_inspect("{{json .Labels}} {{json .}}").unwrap();
        let out = render(&f, &rows[1..], &serde_json::Value::Null);
        let (labels, whole) = out.trim_end().split_once(' ').unwrap();
        assert_eq!(labels, r#""""#);
        assert_eq!(serde_json::from_str::<serde_json::Value>(whole).unwrap(), rows[1]);
    }

    #[test]
    fn dockers_functions() {
        let item = json!({"Name": "hello world_x-y", "Labels": "a=1,b=2", "List": ["p", "q"], "Id": "0123456789"});
        let run = |t: &str| render(&Format::for_inspect(t).unwrap(), std::slice::from_ref(&item), &json!(null));
        assert_eq!(run("{{title .Name}}"), "Hello World_x-Y\n");
        assert_eq!(run("{{upper .Name}}|{{lower \"AbC\"}}"), "HELLO WORLD_X-Y|abc\n");
        assert_eq!(run("{{range split .Labels \",\"}}<{{.}}>{{end}}"), "<a=1><b=2>\n");
        assert_eq!(run("{{join .List \"+\"}}"), "p+q\n");
        assert_eq!(run("[{{pad .Id 1 2}}]"), "[ 0123456789  ]\n");
        assert_eq!(run("{{truncate .Id 4}}|{{truncate .Id 40}}"), "0123|0123456789\n");
        assert_eq!(run("{{len .List}} {{index .List 1}} {{printf \"%5s\" .Id}}"), "2 q 0123456789\n");
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        let err = Format::for_list("{{.Name").err().expect("unclosed action");
        assert!(err.starts_with("template parsing error:"), "{err}");
        // Wrong use shows at execution (an unknown function too: Go would
        // refuse it at parse time).
        let f = Format::for_inspect("{{nosuch .Name}}").unwrap();
        let err = f.write(&mut Vec::new(), &[json!({"Name": "x"})], &json!(null)).unwrap_err();
        assert!(err.to_string().contains("nosuch"), "{err}");
        let f = Format::for_inspect("{{pad .Name 1}}").unwrap();
        let err = f.write(&mut Vec::new(), &[json!({"Name": "x"})], &json!(null)).unwrap_err();
        assert!(err.to_string().contains("wrong number of args for pad: want 3 got 2"), "{err}");
        let f = Format::for_inspect("{{truncate .Name -1}}").unwrap();
        assert!(f.write(&mut Vec::new(), &[json!({"Name": "x"})], &json!(null)).is_err());
        let f = Format::for_inspect("{{join .Name \",\"}}").unwrap();
        assert!(f.write(&mut Vec::new(), &[json!({"Name": "x"})], &json!(null)).is_err());
    }
}
