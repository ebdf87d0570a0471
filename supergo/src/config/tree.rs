//! A TOML document as a tree whose keys and values know where they stand in the source.
//!
//! `toml_edit` parses a file into an `ImDocument` that keeps the byte range of every key, value
//! and table header through its public API (`Key::span`, `Item::span`, `Value::span`). This
//! module copies that document into a small owned tree — values with their span, table entries
//! in document order with the span of their key — so that the rest of `config` reads plain
//! values and turns spans into "file:line" without knowing toml_edit's types.
//!
//! Where spans come from: a key's span is where it is written (`[program.web]`: the `web` in
//! the header; `program.web = {…}`: the `web` of the dotted key), which gives the line of a
//! table header and of every `key = value`. A table that TOML creates implicitly (`program`
//! in `[program.web]`) has no span of its own; its key still has one.

use std::ops::Range;

use toml_edit::{ImDocument, Item, TableLike};

/// One value and, when the parser knows it, its byte range in the source.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Option<Range<usize>>,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    /// Kept as text: no supergo key takes a date.
    Datetime(String),
    Array(Vec<Node>),
    Table(Table),
}

/// A table's entries in document order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    /// Where the key is written: for `[program.web]`, the `web` in the header.
    pub key_span: Option<Range<usize>>,
    pub node: Node,
}

impl Entry {
    /// The start of the key, else of the value: the place to point an operator at.
    pub fn offset(&self) -> Option<usize> {
        self.key_span
            .as_ref()
            .or(self.node.span.as_ref())
            .map(|span| span.start)
    }
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.key == key)
    }
}

/// A syntax error: where (byte offset, when known) and what, without toml's source excerpt.
#[derive(Debug, PartialEq)]
pub struct SyntaxError {
    pub offset: Option<usize>,
    pub message: String,
}

/// Parses a whole document into its root table.
pub fn parse(text: &str) -> Result<Table, SyntaxError> {
    // The parser checks all of TOML (duplicate keys, tables defined twice, integer range), so
    // what comes back is a valid document; only its shape is left to convert.
    let document = ImDocument::parse(text).map_err(|err| SyntaxError {
        offset: err.span().map(|span| span.start),
        message: clean_message(err.message()),
    })?;
    Ok(table(document.as_table()))
}

/// A table's entries in the parser's order, which is the order of the document (a key's
/// first appearance, for tables that several headers extend).
fn table(source: &dyn TableLike) -> Table {
    // `iter` yields names only; `get_key_value` gives the `Key` itself, which holds the span.
    let entries = source
        .iter()
        .filter_map(|(name, _)| source.get_key_value(name))
        .map(|(key, item)| Entry {
            key: key.get().to_string(),
            key_span: key.span(),
            node: node(item),
        })
        .collect();
    Table { entries }
}

fn node(item: &Item) -> Node {
    match item {
        Item::Value(value) => value_node(value),
        Item::Table(inner) => Node {
            span: inner.span(),
            value: Value::Table(table(inner)),
        },
        // `[[name]]`: an array whose elements are the tables, each with its header's span.
        Item::ArrayOfTables(tables) => Node {
            span: tables.span(),
            value: Value::Array(
                tables
                    .iter()
                    .map(|inner| Node {
                        span: inner.span(),
                        value: Value::Table(table(inner)),
                    })
                    .collect(),
            ),
        },
        // Only a document being edited holds `None` items, and `TableLike::iter` skips them.
        Item::None => Node {
            span: None,
            value: Value::Table(Table::default()),
        },
    }
}

fn value_node(source: &toml_edit::Value) -> Node {
    use toml_edit::Value as V;
    let value = match source {
        V::String(text) => Value::String(text.value().clone()),
        V::Integer(number) => Value::Integer(*number.value()),
        V::Float(number) => Value::Float(*number.value()),
        V::Boolean(flag) => Value::Boolean(*flag.value()),
        V::Datetime(when) => Value::Datetime(when.value().to_string()),
        V::Array(items) => Value::Array(items.iter().map(value_node).collect()),
        V::InlineTable(inner) => Value::Table(table(inner)),
    };
    Node {
        span: source.span(),
        value,
    }
}

/// toml's messages come on several lines ("invalid table header\nexpected `.`, `]`"); make
/// them one, to fit after "file:line: ".
fn clean_message(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    if lines.is_empty() {
        return "invalid TOML".into();
    }
    lines.join(": ")
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, entry: &Entry) -> usize {
        line_of(text, entry.offset().expect("a span"))
    }

    fn table(node: &Node) -> &Table {
        match &node.value {
            Value::Table(table) => table,
            other => panic!("not a table: {other:?}"),
        }
    }

    #[test]
    fn keys_of_implicit_tables_know_their_header_line() {
        let text = "# c\n\n[program.web]\ncommand = \"x\"\n\n[program.api]\nstart_secs = 0.5\n";
        let root = parse(text).unwrap();
        let program = root.get("program").unwrap();
        let programs = table(&program.node);
        let web = programs.get("web").unwrap();
        assert_eq!(line(text, web), 3);
        let command = table(&web.node).get("command").unwrap();
        assert_eq!(line(text, command), 4);
        assert_eq!(command.node.value, Value::String("x".into()));
        let api = programs.get("api").unwrap();
        assert_eq!(line(text, api), 6);
        let secs = table(&api.node).get("start_secs").unwrap();
        assert_eq!(
            (line(text, secs), &secs.node.value),
            (7, &Value::Float(0.5))
        );
    }

    #[test]
    fn inline_and_dotted_forms_have_lines() {
        let text = "a = 1\nprogram.web = { command = \"x\", env = { A = 1 } }\n";
        let root = parse(text).unwrap();
        let programs = table(&root.get("program").unwrap().node);
        assert_eq!(line(text, programs.get("web").unwrap()), 2);

        let text = "a = 1\n[program]\napi.command = \"y\"\n";
        let root = parse(text).unwrap();
        let programs = table(&root.get("program").unwrap().node);
        let api = programs.get("api").unwrap();
        assert_eq!(line(text, api), 3);
        assert_eq!(line(text, table(&api.node).get("command").unwrap()), 3);
    }

    #[test]
    fn arrays_and_datetimes() {
        let text = "list = [1,\n  \"two\", true]\nwhen = 1979-05-27\n";
        let root = parse(text).unwrap();
        let Value::Array(items) = &root.get("list").unwrap().node.value else {
            panic!("not an array")
        };
        assert_eq!(items[1].value, Value::String("two".into()));
        assert_eq!(line_of(text, items[1].span.clone().unwrap().start), 2);
        assert_eq!(
            root.get("when").unwrap().node.value,
            Value::Datetime("1979-05-27".into())
        );
    }

    #[test]
    fn syntax_error_has_offset_and_a_one_line_message() {
        let text = "[program.web]\ncommand = \"x\nstart_secs = 1\n";
        let err = parse(text).unwrap_err();
        assert_eq!(line_of(text, err.offset.unwrap()), 2);
        assert_eq!(err.message, "invalid basic string");
        let err = parse("[program.web\n").unwrap_err();
        assert_eq!(err.message, "invalid table header: expected `.`, `]`");
    }
}
