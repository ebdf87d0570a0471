//! A TOML document as a tree whose keys and values know where they stand in the source.
//!
//! `toml::Table` forgets positions, and `toml::Spanned<T>` cannot describe the tables TOML
//! creates implicitly: `[program.web]` makes a `program` table that has no span of its own,
//! and `Spanned` then fails with "expected a borrowed string". So this module speaks the same
//! span protocol as `serde_spanned` (a struct with three magic field names, which the `toml`
//! 0.8 deserializer answers with `start`, `end` and the value) but accepts a value that comes
//! without a span. Keys come with spans too (`[program.web]`: the span of `web`), which gives
//! the line of a table header and of every `key = value`.
//!
//! Deviation to know about: the magic names below are `serde_spanned`'s (0.6) private
//! protocol, copied because `toml` does not re-export them. Should a future `toml` change them,
//! every value simply arrives without a span: loading still works, only line numbers go (and
//! the tests that check lines fail loudly).

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];
/// `toml_datetime` hands a date-time over as a one-entry map under this key.
const DATETIME_FIELD: &str = "$__toml_private_datetime";

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
    let root: Node = toml::from_str(text).map_err(|err| SyntaxError {
        offset: err.span().map(|span| span.start),
        message: clean_message(err.message()),
    })?;
    match root.value {
        Value::Table(table) => Ok(table),
        // The toml deserializer only ever hands a document over as a table.
        _ => Err(SyntaxError {
            offset: None,
            message: "not a TOML document".into(),
        }),
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

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, NodeVisitor)
    }
}

/// Deserializes the value inside a span wrapper. It must not ask for a span again: the
/// deserializer would wrap the same value once more, forever.
struct Bare;

impl<'de> DeserializeSeed<'de> for Bare {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

fn bare(value: Value) -> Node {
    Node { span: None, value }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(bare(Value::Boolean(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(bare(Value::Integer(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v)
            .map(|v| bare(Value::Integer(v)))
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(bare(Value::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(bare(Value::String(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(bare(Value::String(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(bare(Value::Array(items)))
    }

    /// A map is one of three things: a span wrapper, a date-time, or a real table. The first
    /// key tells which.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let Some(first) = map.next_key::<Key>()? else {
            return Ok(bare(Value::Table(Table::default())));
        };
        match first.name.as_str() {
            SPANNED_START => read_spanned(map),
            DATETIME_FIELD => Ok(bare(Value::Datetime(map.next_value::<String>()?))),
            _ => read_table(first, map),
        }
    }
}

fn read_spanned<'de, A: MapAccess<'de>>(mut map: A) -> Result<Node, A::Error> {
    let start: usize = map.next_value()?;
    expect_key(&mut map, SPANNED_END)?;
    let end: usize = map.next_value()?;
    expect_key(&mut map, SPANNED_VALUE)?;
    let inner = map.next_value_seed(Bare)?;
    Ok(Node {
        span: Some(start..end),
        value: inner.value,
    })
}

fn expect_key<'de, A: MapAccess<'de>>(map: &mut A, name: &str) -> Result<(), A::Error> {
    match map.next_key::<Key>()? {
        Some(key) if key.name == name => Ok(()),
        _ => Err(de::Error::custom(format!(
            "span protocol: expected `{name}`"
        ))),
    }
}

fn read_table<'de, A: MapAccess<'de>>(first: Key, mut map: A) -> Result<Node, A::Error> {
    let mut entries = Vec::new();
    let mut key = Some(first);
    while let Some(Key { name, span }) = key {
        let node: Node = map.next_value()?;
        entries.push(Entry {
            key: name,
            key_span: span,
            node,
        });
        key = map.next_key::<Key>()?;
    }
    Ok(bare(Value::Table(Table { entries })))
}

/// A table key, with its span when the deserializer gives one.
struct Key {
    name: String,
    span: Option<Range<usize>>,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key {
            name: v.to_string(),
            span: None,
        })
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Key, E> {
        Ok(Key {
            name: v,
            span: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        expect_key(&mut map, SPANNED_START)?;
        let start: usize = map.next_value()?;
        expect_key(&mut map, SPANNED_END)?;
        let end: usize = map.next_value()?;
        expect_key(&mut map, SPANNED_VALUE)?;
        let name: String = map.next_value()?;
        Ok(Key {
            name,
            span: Some(start..end),
        })
    }
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
