//! Typed reading of one TOML table (`[supergo]`, `[include]`, `[program.NAME]`), so that each
//! error names the file, the line, the section and the key, and says what was expected and
//! what was found instead: "program `web`: `start_secs` must be a number of seconds (like 1
//! or 0.5), not the string \"abc\"".
//!
//! Every getter returns `Ok(None)` for an absent key: defaults belong to the caller.

use std::fmt::Display;
use std::time::Duration;

use super::source::SourceFile;
use super::suggest;
use super::tree::{Node, Table, Value};
use super::ConfigError;

/// The longest duration a key may hold.
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

pub const SECONDS: &str = "a number of seconds (like 1 or 0.5)";

pub struct Section<'a> {
    pub file: &'a SourceFile,
    /// How messages name the section: "program `web`", "[supergo]".
    label: String,
    table: &'a Table,
    /// Line of the header (`[program.web]`), when known.
    line: Option<usize>,
}

impl<'a> Section<'a> {
    pub fn new(file: &'a SourceFile, label: String, table: &'a Table, line: Option<usize>) -> Self {
        Section {
            file,
            label,
            table,
            line,
        }
    }

    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// An error about the section as a whole, at its header.
    pub fn error(&self, message: impl Display) -> ConfigError {
        self.file
            .error(self.line, format!("{}: {message}", self.label))
    }

    /// An error about `key`, at the line of the key (the header when the key is absent).
    pub fn key_error(&self, key: &str, message: impl Display) -> ConfigError {
        self.file.error(
            self.key_line(key),
            format!("{}: `{key}` {message}", self.label),
        )
    }

    /// An error at the line of `key` whose message names the key by itself ("unknown user
    /// `x`").
    pub fn at_key(&self, key: &str, message: impl Display) -> ConfigError {
        self.file
            .error(self.key_line(key), format!("{}: {message}", self.label))
    }

    /// An error about one element of `key` (an array item, a sub-table entry), at its line.
    pub fn item_error(&self, key: &str, node: &Node, message: impl Display) -> ConfigError {
        let line = self
            .file
            .line_of(node.span.as_ref().map(|s| s.start))
            .or(self.key_line(key));
        self.file
            .error(line, format!("{}: `{key}` {message}", self.label))
    }

    /// "must be X, not Y": the type error for `key`.
    pub fn wrong_type(&self, key: &str, node: &Node, expected: &str) -> ConfigError {
        self.item_error(
            key,
            node,
            format!("must be {expected}, not {}", describe(&node.value)),
        )
    }

    pub fn key_line(&self, key: &str) -> Option<usize> {
        self.table
            .get(key)
            .and_then(|entry| self.file.line_of(entry.offset()))
            .or(self.line)
    }

    /// Every key must be one of `known`; the first other one is an error, with the known
    /// key it most likely misspells.
    pub fn check_keys(&self, known: &[&str]) -> Result<(), ConfigError> {
        match self
            .table
            .entries
            .iter()
            .find(|entry| !known.contains(&entry.key.as_str()))
        {
            None => Ok(()),
            Some(entry) => Err(self.file.error(
                self.file.line_of(entry.offset()).or(self.line),
                format!(
                    "unknown key `{}` in {}{}",
                    entry.key,
                    self.label,
                    suggest::did_you_mean(&entry.key, known)
                ),
            )),
        }
    }

    pub fn node(&self, key: &str) -> Option<&'a Node> {
        self.table.get(key).map(|entry| &entry.node)
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        self.node(key)
            .map(|node| self.as_string(key, node, "a string"))
            .transpose()
    }

    /// A string with no NUL in it: it ends up in a C string (argv, envp, a path).
    pub fn as_string(&self, key: &str, node: &Node, expected: &str) -> Result<String, ConfigError> {
        match &node.value {
            Value::String(text) if text.contains('\0') => {
                Err(self.item_error(key, node, "must not contain a NUL character"))
            }
            Value::String(text) => Ok(text.clone()),
            _ => Err(self.wrong_type(key, node, expected)),
        }
    }

    pub fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.node(key)
            .map(|node| match node.value {
                Value::Boolean(value) => Ok(value),
                _ => Err(self.wrong_type(key, node, "true or false")),
            })
            .transpose()
    }

    /// A whole number in `min..=max`.
    pub fn integer(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, ConfigError> {
        self.node(key)
            .map(|node| self.as_integer(key, node, min, max))
            .transpose()
    }

    pub fn as_integer(
        &self,
        key: &str,
        node: &Node,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        match node.value {
            Value::Integer(value) if (min..=max).contains(&value) => Ok(value),
            Value::Integer(value) => Err(self.item_error(key, node, out_of_range(value, min, max))),
            _ => Err(self.wrong_type(key, node, "a whole number")),
        }
    }

    /// A duration in seconds, integer or fractional, at least 0 (`positive`: more than 0).
    pub fn seconds(&self, key: &str, positive: bool) -> Result<Option<Duration>, ConfigError> {
        let Some(node) = self.node(key) else {
            return Ok(None);
        };
        let secs = match node.value {
            Value::Integer(value) => value as f64,
            Value::Float(value) => value,
            _ => return Err(self.wrong_type(key, node, SECONDS)),
        };
        if positive && secs <= 0.0 {
            return Err(self.item_error(
                key,
                node,
                format!("must be more than 0 seconds, not {secs}"),
            ));
        }
        if secs < 0.0 {
            return Err(self.item_error(key, node, format!("must not be negative, not {secs}")));
        }
        // A year is longer than any sane timeout, and keeps every deadline supergo computes
        // from it (now + timeout, doubling backoffs) far from overflowing.
        if secs > MAX_SECONDS {
            return Err(self.item_error(
                key,
                node,
                format!("must be at most {MAX_SECONDS} seconds (one year), not {secs}"),
            ));
        }
        // What is left to fail: nan, inf, and more seconds than a Duration holds.
        Duration::try_from_secs_f64(secs)
            .map(Some)
            .map_err(|_| self.item_error(key, node, format!("must be {SECONDS}, not {secs}")))
    }

    /// A permission mode (`socket_mode`, `umask`): an octal string ("0660") or a TOML integer
    /// written in octal (0o660). A decimal integer is refused: `660` is almost certainly meant
    /// as octal, and taking it as 0o1224 would silently set the wrong bits.
    pub fn mode(&self, key: &str) -> Result<Option<u32>, ConfigError> {
        let Some(node) = self.node(key) else {
            return Ok(None);
        };
        let hint = format!(
            "write it in octal, as \"0660\" or 0o660, not {}",
            describe(&node.value)
        );
        let value = match &node.value {
            Value::String(text) => u32::from_str_radix(text.trim_start_matches("0o"), 8).ok(),
            Value::Integer(value) if *value == 0 || self.written_in_octal(node) => {
                u32::try_from(*value).ok()
            }
            _ => None,
        };
        match value {
            Some(mode) if mode <= 0o777 => Ok(Some(mode)),
            Some(mode) => {
                Err(self.item_error(key, node, format!("{mode:o} is not a mode (at most 777)")))
            }
            None => Err(self.item_error(key, node, format!("must be a mode: {hint}"))),
        }
    }

    fn written_in_octal(&self, node: &Node) -> bool {
        let text = node.span.as_ref().and_then(|span| self.file.text_of(span));
        text.is_some_and(|text| text.trim_start_matches('+').starts_with("0o"))
    }

    /// An array of strings.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        self.array(key, "an array of strings", |node| {
            self.as_string(key, node, "a string")
        })
    }

    /// An array whose items `item` converts; `expected` describes the whole array.
    pub fn array<T>(
        &self,
        key: &str,
        expected: &str,
        item: impl Fn(&Node) -> Result<T, ConfigError>,
    ) -> Result<Option<Vec<T>>, ConfigError> {
        let Some(node) = self.node(key) else {
            return Ok(None);
        };
        match &node.value {
            Value::Array(items) => items.iter().map(item).collect::<Result<_, _>>().map(Some),
            _ => Err(self.wrong_type(key, node, expected)),
        }
    }

    /// A sub-table (`environment`, `rlimits`).
    pub fn table(&self, key: &str) -> Result<Option<&'a Table>, ConfigError> {
        let Some(node) = self.node(key) else {
            return Ok(None);
        };
        match &node.value {
            Value::Table(table) => Ok(Some(table)),
            _ => Err(self.wrong_type(key, node, "a table, like { NAME = \"value\" }")),
        }
    }
}

/// The range checks of `integer` make these conversions lossless.
pub fn as_u32(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

pub fn as_i32(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn out_of_range(value: i64, min: i64, max: i64) -> String {
    // A cap like u32::MAX is a storage limit, not advice: say only the bound that was hit.
    if value < min && max >= i64::from(u32::MAX) {
        format!("must be at least {min}, not {value}")
    } else {
        format!("must be between {min} and {max}, not {value}")
    }
}

/// What a value is, for "must be X, not Y".
pub fn describe(value: &Value) -> String {
    match value {
        Value::String(text) => format!("the string {text:?}"),
        Value::Integer(value) => format!("the integer {value}"),
        Value::Float(value) => format!("the number {value}"),
        Value::Boolean(value) => format!("`{value}`"),
        Value::Datetime(value) => format!("the date-time {value}"),
        Value::Array(_) => "an array".into(),
        Value::Table(_) => "a table".into(),
    }
}
