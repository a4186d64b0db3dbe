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
    /// No format, an empty one, or `table` alone on a list: the command's
    /// own output (its table; an indented JSON array for `inspect`).
    Default,
    /// `json` on a list: each item as one line of compact JSON.
    JsonLines,
    /// `json` on `inspect`: the items as one compact JSON array, as
    /// Docker's JSON inspector prints them.
    JsonArray,
    /// `table TEMPLATE`: a header row, then a row per item, aligned at tabs.
    TableOf {
        /// The template with Docker's functions, for the items.
        row: Template,
        /// The same template with Docker's header functions, run over the
        /// column names for the header row.
        header: Template,
    },
    /// Any other text: the template once per item, each followed by a newline.
    Each(Template),
}

impl Format {
    /// `--format` of a list (`network ls`, `sandbox ls`): `table`, `json`,
    /// `table TEMPLATE` or a template, after Docker's rewriting (the part
    /// after `table` trimmed of spaces, a literal `\t` or `\n` made a tab or
    /// a newline).
    pub(crate) fn for_list(spec: &str) -> Result<Self, String> {
        if spec == "json" {
            return Ok(Self::JsonLines);
        }
        let rewrite = |t: &str| t.trim_matches(' ').replace(r"\t", "\t").replace(r"\n", "\n");
        match spec.strip_prefix("table") {
            _ if spec.is_empty() => Ok(Self::Default),
            Some(rest) if rest.trim().is_empty() => Ok(Self::Default),
            Some(rest) => {
                Ok(Self::TableOf { row: parse(&rewrite(rest), false)?, header: parse(&rewrite(rest), true)? })
            }
            None => Ok(Self::Each(parse(&rewrite(spec), false)?)),
        }
    }

    /// `--format` of `inspect`: `json` or a template, taken as written (as
    /// Docker's inspect takes it).
    pub(crate) fn for_inspect(spec: &str) -> Result<Self, String> {
        match spec {
            "" => Ok(Self::Default),
            "json" => Ok(Self::JsonArray),
            _ => Ok(Self::Each(parse(spec, false)?)),
        }
    }

    /// `--format` of a stream (`events`): `json` (each item as one line of
    /// JSON) or a template, taken as written, as Docker's `events` takes it.
    pub(crate) fn for_stream(spec: &str) -> Result<Self, String> {
        match spec {
            "" => Ok(Self::Default),
            "json" => Ok(Self::JsonLines),
            _ => Ok(Self::Each(parse(spec, false)?)),
        }
    }

    /// Writes `items` in this format; `header` names each field a row has
    /// (the header row of `table TEMPLATE`). Nothing is written unless
    /// every item renders. [`Format::Default`] writes nothing: the caller
    /// prints its own output.
    pub(crate) fn write(&self, w: &mut dyn Write, items: &[Json], header: &Json) -> anyhow::Result<()> {
        let mut text = String::new();
        match self {
            Self::Default => {}
            Self::JsonLines => {
                for item in items {
                    text.push_str(&serde_json::to_string(item)?);
                    text.push('\n');
                }
            }
            Self::JsonArray => {
                text = serde_json::to_string(items)?;
                text.push('\n');
            }
            Self::Each(template) => {
                for item in items {
                    text.push_str(&execute(template, item)?);
                    text.push('\n');
                }
            }
            Self::TableOf { row, header: header_template } => {
                // As Docker: a header template that fails (a comparison or
                // `range` over the column names) keeps what it wrote.
                if let Ok(data) = gotmpl::to_value(header) {
                    let _ = header_template.execute_fmt(&mut text, &data);
                }
                text.push('\n');
                for item in items {
                    text.push_str(&execute(row, item)?);
                    text.push('\n');
                }
                text = table::align_tabs(&text, DOCKER_MIN_WIDTH);
            }
        }
        w.write_all(text.as_bytes())?;
        Ok(())
    }
}

/// The narrowest column of `table TEMPLATE`, padding included: Docker's
/// tabwriter's `minwidth`.
const DOCKER_MIN_WIDTH: usize = 10;

/// Checks a list's `--format` on its own (clap's value parser).
pub(crate) fn check_list(spec: &str) -> Result<String, String> {
    Format::for_list(spec).map(|_| spec.to_owned())
}

/// Checks a stream's `--format` on its own (clap's value parser).
pub(crate) fn check_stream(spec: &str) -> Result<String, String> {
    Format::for_stream(spec).map(|_| spec.to_owned())
}

/// Checks an inspect `--format` on its own (clap's value parser).
pub(crate) fn check_inspect(spec: &str) -> Result<String, String> {
    Format::for_inspect(spec).map(|_| spec.to_owned())
}

/// Parses a template with Docker's functions (`header`: its header-row
/// forms, which pass the column name through, but `pad`, which pads the
/// header as it pads the cells).
fn parse(source: &str, header: bool) -> Result<Template, String> {
    let mut template = Template::new("format");
    for (name, arity, f) in FUNCTIONS {
        let pass_through = header && name != "pad";
        template = template.func(name, move |args| {
            check_arity(name, arity, args)?;
            if pass_through {
                return Ok(args[0].clone());
            }
            // Errors name the function, as Go's do.
            f(args).map_err(|e| TemplateError::Exec(format!("error calling {name}: {e}")))
        });
    }
    template.parse(source).map_err(|e| format!("template parsing error: {e}"))
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
    ("split", 2, |a| {
        let (whole, separator) = (string(&a[0]), string(&a[1]));
        // Go splits at every character when the separator is empty.
        let parts: Vec<Value> = if separator.is_empty() {
            whole.chars().map(|c| text(c.to_string())).collect()
        } else {
            whole.split(separator.as_str()).map(text).collect()
        };
        Ok(Value::List(parts.into()))
    }),
    ("join", 2, |a| {
        let Value::List(items) = &a[0] else { return Err(mismatch("list", &a[0])) };
        Ok(text(items.iter().map(string).collect::<Vec<_>>().join(&string(&a[1]))))
    }),
    ("title", 1, |a| Ok(text(title(&string(&a[0]))))),
    ("lower", 1, |a| Ok(text(string(&a[0]).to_lowercase()))),
    ("upper", 1, |a| Ok(text(string(&a[0]).to_uppercase()))),
    ("pad", 3, |a| {
        let (before, after) = (count(&a[1])?, count(&a[2])?);
        // An empty value stays empty, as Docker's `padWithSpace` leaves it.
        let value = string(&a[0]);
        if value.is_empty() {
            return Ok(text(value));
        }
        Ok(text(format!("{}{value}{}", " ".repeat(before), " ".repeat(after))))
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
    fn a_stream_takes_json_lines_or_a_template_as_written() {
        let (rows, header) = networks();
        let f = Format::for_stream("json").unwrap();
        assert_eq!(render(&f, &rows[..1], &header).lines().count(), 1, "one line per item");
        // Neither `table` nor a literal `\t` means anything to a stream.
        let f = Format::for_stream(r"table {{.Name}}\t").unwrap();
        assert_eq!(render(&f, &rows[..1], &header), "table web\\t\n");
        assert!(matches!(Format::for_stream(""), Ok(Format::Default)));
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
        assert!(matches!(Format::for_list("table").unwrap(), Format::Default));
        assert!(matches!(Format::for_list("").unwrap(), Format::Default));
        assert!(matches!(Format::for_inspect("").unwrap(), Format::Default));
        // A header template that fails on the column names (they are all
        // strings: `range` over one fails) keeps what it wrote, as Docker's
        // does; the rows are whole.
        let f =
            Format::for_list(r#"table {{.Name}}\t{{if .IPv6}}v6{{end}}\t{{range split .Labels ","}}[{{.}}]{{end}}"#)
                .unwrap();
        assert_eq!(
            render(&f, &rows, &header),
            "NAME           v6\nweb                      [a=1][b=]\nbackend-long   v6        []\n"
        );
        // `pad` pads the header as it pads the cells.
        let f = Format::for_list(r"table {{pad .Name 2 0}}\t{{.Driver}}").unwrap();
        assert_eq!(render(&f, &rows[..1], &header), "  NAME    DRIVER\n  web     bridge\n");
        assert!(matches!(Format::for_list(" table ").unwrap(), Format::Each(_)), "Docker takes only a `table` prefix");
    }

    #[test]
    fn json_is_one_compact_line_per_item() {
        let (rows, header) = networks();
        let out = render(&Format::for_list("json").unwrap(), &rows, &header);
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines, rows);
        // inspect's `json` is one array, as Docker's JSON inspector prints it.
        let out = render(&Format::for_inspect("json").unwrap(), &rows, &serde_json::Value::Null);
        assert_eq!(out.lines().count(), 1);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap(), serde_json::Value::Array(rows.clone()));
        // Nothing of a list is printed unless every item renders.
        let f = Format::for_list("{{if .IPv6}}{{pad .Name}}{{else}}{{.Name}}{{end}}").unwrap();
        let mut written = Vec::new();
        assert!(f.write(&mut written, &rows, &header).is_err());
        assert!(written.is_empty(), "{written:?}");
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
        assert_eq!(run("[{{pad .Id 1 2}}]|[{{pad \"\" 1 2}}]"), "[ 0123456789  ]|[]\n");
        assert_eq!(run("{{range split \"abc\" \"\"}}<{{.}}>{{end}}"), "<a><b><c>\n");
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
        let f = Format::for_inspect("{{join .Name \",\"}}").unwrap();
        let err = f.write(&mut Vec::new(), &[json!({"Name": "x"})], &json!(null)).unwrap_err();
        assert!(err.to_string().contains("error calling join"), "{err}");
        let f = Format::for_inspect("{{truncate .Name -1}}").unwrap();
        assert!(f.write(&mut Vec::new(), &[json!({"Name": "x"})], &json!(null)).is_err());
    }
}
