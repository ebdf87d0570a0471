//! Typed, lenient views of the `data` part of supergo's answers.
//!
//! Parsed by hand from `serde_json::Value` rather than derived, so that a missing field,
//! a `null`, or a number sent as a string (older or newer daemons, the original supergo)
//! degrades to "unknown" instead of failing the whole command. Only `name` is needed
//! for a status entry to be shown.

use serde_json::Value;

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

impl StatusEntry {
    pub fn from_value(v: &Value) -> Option<StatusEntry> {
        let name = text(v.get("name")?)?;
        let draining = match v.get("draining") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|d| match d {
                    Value::Object(_) => d.get("pid").and_then(number_u64),
                    other => number_u64(other),
                })
                .map(|pid| Draining { pid })
                .collect(),
            _ => Vec::new(),
        };
        Some(StatusEntry {
            name,
            state: field_text(v, "state").unwrap_or_else(|| "?".to_string()),
            pid: v.get("pid").and_then(number_u64).unwrap_or(0),
            start_time: v
                .get("start_time")
                .and_then(number_f64)
                .map(|f| f as i64)
                .unwrap_or(0),
            uptime_secs: v.get("uptime_secs").and_then(number_f64),
            listeners: string_list(v.get("listeners")),
            draining,
            restarts: v.get("restarts").and_then(number_u64).unwrap_or(0),
            handoff_pid: v
                .get("handoff")
                .and_then(|h| h.get("pid"))
                .and_then(number_u64)
                .filter(|pid| *pid > 0),
            last_exit: field_text(v, "last_exit"),
            error: field_text(v, "error"),
            status_text: field_text(v, "status_text"),
        })
    }

    /// All entries of a status answer; entries without a name are skipped.
    pub fn list(data: &Value) -> Vec<StatusEntry> {
        match data {
            Value::Array(items) => items.iter().filter_map(StatusEntry::from_value).collect(),
            // Tolerate a map of name -> entry as well.
            Value::Object(map) => map
                .iter()
                .filter_map(|(name, v)| {
                    let mut v = v.clone();
                    if let Value::Object(fields) = &mut v {
                        fields
                            .entry("name")
                            .or_insert_with(|| Value::String(name.clone()));
                    }
                    StatusEntry::from_value(&v)
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// `GET /reread`: what a config reload would change.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reread {
    pub inserts: Vec<String>,
    pub deletes: Vec<String>,
    pub updates: Vec<String>,
}

impl Reread {
    pub fn from_value(v: &Value) -> Reread {
        Reread {
            inserts: string_list(v.get("inserts")),
            deletes: string_list(v.get("deletes")),
            updates: string_list(v.get("updates")),
        }
    }
}

/// The outcome for one program of `update`, `start all`, `stop all`, `restart all`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ItemResult {
    pub name: String,
    /// `added`, `removed`, `changed` for update; empty otherwise.
    pub action: String,
    /// `None` when the daemon did not say.
    pub ok: Option<bool>,
    pub message: String,
    pub old_pid: u64,
    pub new_pid: u64,
    /// The program's current process (supergo adds it to failures: the one still serving).
    pub pid: u64,
    pub handoff_ms: Option<f64>,
}

impl ItemResult {
    pub fn from_value(v: &Value) -> ItemResult {
        ItemResult {
            name: field_text(v, "name").unwrap_or_default(),
            action: field_text(v, "action").unwrap_or_default(),
            ok: match v.get("ok") {
                Some(Value::Bool(b)) => Some(*b),
                _ => None,
            },
            message: field_text(v, "message").unwrap_or_default(),
            old_pid: v.get("old_pid").and_then(number_u64).unwrap_or(0),
            new_pid: v.get("new_pid").and_then(number_u64).unwrap_or(0),
            pid: v.get("pid").and_then(number_u64).unwrap_or(0),
            handoff_ms: v.get("handoff_ms").and_then(number_f64),
        }
    }

    /// Per-program results, when `data` is an array of objects.
    pub fn list(data: &Value) -> Option<Vec<ItemResult>> {
        match data {
            Value::Array(items) => Some(
                items
                    .iter()
                    .filter(|v| v.is_object())
                    .map(ItemResult::from_value)
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// `GET /log/NAME`: a piece of output and the offset where it ends.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogChunk {
    pub text: String,
    pub offset: Option<u64>,
}

impl LogChunk {
    pub fn from_value(v: &Value) -> LogChunk {
        match v {
            Value::String(s) => LogChunk {
                text: s.clone(),
                offset: None,
            },
            _ => LogChunk {
                text: field_text(v, "text").unwrap_or_default(),
                offset: v.get("offset").and_then(number_u64),
            },
        }
    }
}

/// A string, number or bool as text; `None` for null, empty strings and containers.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn field_text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(text)
}

fn number_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite())
}

fn number_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An array of strings (other scalars stringified), a single string, or nothing.
fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(text).collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn full_status_entry() {
        let v = json!({"name":"web","state":"Running","pid":1234,"generation":3,
            "start_time":1764000000,"stop_time":0,"uptime_secs":12.5,
            "listeners":["127.0.0.1:4041"],
            "draining":[{"pid":1200,"generation":2,"since":1,"kill_at":2}],
            "restarts":2,"last_exit":"exited with status 1","error":null,"status_text":"ok",
            "handoff":{"pid":1300,"generation":4,"since":1.5}});
        let e = StatusEntry::from_value(&v).expect("entry");
        assert_eq!(e.name, "web");
        assert_eq!(e.pid, 1234);
        assert_eq!(e.uptime_secs, Some(12.5));
        assert_eq!(e.listeners, vec!["127.0.0.1:4041"]);
        assert_eq!(e.draining, vec![Draining { pid: 1200 }]);
        assert_eq!(e.restarts, 2);
        assert_eq!(e.handoff_pid, Some(1300));
        assert_eq!(e.last_exit.as_deref(), Some("exited with status 1"));
        assert_eq!(e.error, None);
        assert_eq!(e.status_text.as_deref(), Some("ok"));
    }

    #[test]
    fn minimal_and_odd_status_entries_do_not_fail() {
        let v = json!([{"name":"old","pid":"77","state":2,"listeners":null},
                       {"pid":5},
                       {"name":"bare"}]);
        let list = StatusEntry::list(&v);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].pid, 77);
        assert_eq!(list[0].state, "2");
        assert!(list[0].listeners.is_empty());
        assert_eq!(list[1].state, "?");
        assert_eq!(list[1].uptime_secs, None);
    }

    #[test]
    fn reread_and_items() {
        let r = Reread::from_value(&json!({"inserts":["a"],"updates":null}));
        assert_eq!(r.inserts, vec!["a"]);
        assert!(r.deletes.is_empty() && r.updates.is_empty());
        let items =
            ItemResult::list(&json!([{"name":"w","ok":false,"old_pid":3,"handoff_ms":1.5}]))
                .expect("array");
        assert_eq!(items[0].ok, Some(false));
        assert_eq!(items[0].old_pid, 3);
        assert_eq!(items[0].handoff_ms, Some(1.5));
        assert!(ItemResult::list(&Value::Null).is_none());
    }

    #[test]
    fn log_chunk() {
        let c = LogChunk::from_value(&json!({"text":"hi\n","offset":3}));
        assert_eq!(c.text, "hi\n");
        assert_eq!(c.offset, Some(3));
        assert_eq!(LogChunk::from_value(&json!("x")).text, "x");
    }
}
