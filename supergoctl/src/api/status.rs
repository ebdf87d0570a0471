//! `GET /status` read straight from the JSON text into [`StatusEntry`]s, with the leniency
//! rules of `lenient`.
//!
//! With 1000 programs the answer is ~300 kB; reading it into a `serde_json::Value` tree
//! first (a map and a string per field) cost more than the rest of `supergoctl status`
//! together. Here each entry is read field by field: the fields a row shows are kept, every
//! other field is skipped without being built.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::lenient::{number_u64, string_list, Scalar};

/// One process still draining after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Draining {
    pub pid: u64,
}

/// One row of `GET /status`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusEntry {
    pub name: String,
    pub state: String,
    /// 0 when no process runs.
    pub pid: u64,
    pub start_time: i64,
    pub uptime_secs: Option<f64>,
    pub listeners: Vec<String>,
    pub draining: Vec<Draining>,
    pub restarts: u64,
    /// A new process a restart is starting beside the serving one, not ready yet.
    pub handoff_pid: Option<u64>,
    pub last_exit: Option<String>,
    pub error: Option<String>,
    pub status_text: Option<String>,
}

/// All entries of a status answer's `data`: an array of entries, or a map of name -> entry.
/// Entries without a name are skipped; `data` that is neither gives none.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusList(pub Vec<StatusEntry>);

impl<'de> de::Deserialize<'de> for StatusList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ListVisitor).map(StatusList)
    }
}

struct ListVisitor;

/// The scalar visits of a visitor for which a value of the wrong kind means `$value`.
macro_rules! scalars_give {
    ($value:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

impl<'de> Visitor<'de> for ListVisitor {
    type Value = Vec<StatusEntry>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of status entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(entry) = seq.next_element_seed(EntrySeed { name: None })? {
            entries.extend(entry);
        }
        Ok(entries)
    }

    /// Tolerated as well: a map of name -> entry. A `Value` map is sorted by key, and so
    /// was this list when it was read through one.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            entries.extend(map.next_value_seed(EntrySeed { name: Some(name) })?);
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    // Anything else (null, a string, a number): no entries.
    scalars_give!(Vec::new());
}

/// One entry; `name` is the map key it stands under, used when it has no `name` field.
struct EntrySeed {
    name: Option<String>,
}

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = Option<StatusEntry>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = Option<StatusEntry>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a status entry")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut name = self.name;
        let mut state = None;
        let mut e = StatusEntry::default();
        while let Some(field) = map.next_key::<Field>()? {
            // Scalars are read without a `Value`; the few small compound fields (a
            // listener or two, draining pids, a handoff) through one.
            match field {
                Field::Name => name = map.next_value::<Scalar>()?.text(),
                Field::State => state = map.next_value::<Scalar>()?.text(),
                Field::Pid => e.pid = map.next_value::<Scalar>()?.u64().unwrap_or(0),
                Field::StartTime => {
                    let secs = map.next_value::<Scalar>()?.f64();
                    e.start_time = secs.map_or(0, |f| f as i64);
                }
                Field::UptimeSecs => e.uptime_secs = map.next_value::<Scalar>()?.f64(),
                Field::Listeners => e.listeners = string_list(Some(&map.next_value()?)),
                Field::Draining => e.draining = draining(&map.next_value()?),
                Field::Restarts => e.restarts = map.next_value::<Scalar>()?.u64().unwrap_or(0),
                Field::Handoff => {
                    let handoff: Value = map.next_value()?;
                    e.handoff_pid = handoff
                        .get("pid")
                        .and_then(number_u64)
                        .filter(|pid| *pid > 0);
                }
                Field::LastExit => e.last_exit = map.next_value::<Scalar>()?.text(),
                Field::Error => e.error = map.next_value::<Scalar>()?.text(),
                Field::StatusText => e.status_text = map.next_value::<Scalar>()?.text(),
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(name.map(|name| StatusEntry {
            name,
            state: state.unwrap_or_else(|| "?".to_string()),
            ..e
        }))
    }

    // An entry that is not an object has no name: skipped.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    scalars_give!(None);
}

/// `draining`: an array whose items are `{"pid": N, …}` or a bare pid.
fn draining(v: &Value) -> Vec<Draining> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|d| match d {
                Value::Object(_) => d.get("pid").and_then(number_u64),
                other => number_u64(other),
            })
            .map(|pid| Draining { pid })
            .collect(),
        _ => Vec::new(),
    }
}

/// The fields a status row uses; a name is matched without being copied.
enum Field {
    Name,
    State,
    Pid,
    StartTime,
    UptimeSecs,
    Listeners,
    Draining,
    Restarts,
    Handoff,
    LastExit,
    Error,
    StatusText,
    Other,
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

struct FieldVisitor;

impl Visitor<'_> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(match v {
            "name" => Field::Name,
            "state" => Field::State,
            "pid" => Field::Pid,
            "start_time" => Field::StartTime,
            "uptime_secs" => Field::UptimeSecs,
            "listeners" => Field::Listeners,
            "draining" => Field::Draining,
            "restarts" => Field::Restarts,
            "handoff" => Field::Handoff,
            "last_exit" => Field::LastExit,
            "error" => Field::Error,
            "status_text" => Field::StatusText,
            _ => Field::Other,
        })
    }
}
