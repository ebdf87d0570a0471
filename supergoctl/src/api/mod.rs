//! Typed, lenient views of the `data` part of supergo's answers.
//!
//! Read by hand rather than derived, so that a missing field, a `null`, or a number sent as
//! a string (older or newer daemons, the original supergo) degrades to "unknown" instead of
//! failing the whole command; the rules are in `lenient`. Only `name` is needed for a status
//! entry to be shown. `status` reads the one large answer straight from its text; the small
//! ones here are read from a `serde_json::Value`.

mod lenient;
mod status;

use serde_json::Value;

use lenient::{field_text, number_f64, number_u64, string_list};
pub use status::{StatusEntry, StatusList};
// Named by the status table's tests only; rows reach it inside `StatusEntry::draining`.
#[cfg(test)]
pub use status::Draining;

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Status entries read the way `supergoctl status` reads them: from the JSON text.
    fn status_list(data: Value) -> Vec<StatusEntry> {
        let list: StatusList = serde_json::from_str(&data.to_string()).expect("JSON");
        list.0
    }

    #[test]
    fn full_status_entry() {
        let v = json!({"name":"web","state":"Running","pid":1234,"generation":3,
            "start_time":1764000000,"stop_time":0,"uptime_secs":12.5,
            "listeners":["127.0.0.1:4041"],
            "draining":[{"pid":1200,"generation":2,"since":1,"kill_at":2}],
            "restarts":2,"last_exit":"exited with status 1","error":null,"status_text":"ok",
            "handoff":{"pid":1300,"generation":4,"since":1.5}});
        let list = status_list(json!([v]));
        assert_eq!(list.len(), 1);
        let e = &list[0];
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
        let list = status_list(v);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].pid, 77);
        assert_eq!(list[0].state, "2");
        assert!(list[0].listeners.is_empty());
        assert_eq!(list[1].state, "?");
        assert_eq!(list[1].uptime_secs, None);
    }

    #[test]
    fn status_as_a_map_of_name_to_entry_and_odd_data() {
        let v = json!({"web":{"pid":1},"api":{"name":"api2"},"x":{"name":null},"y":3});
        let list = status_list(v);
        let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["api2", "web"]);
        assert!(status_list(Value::Null).is_empty());
        assert!(status_list(json!("text")).is_empty());
        assert!(status_list(json!([1, [2], "x", null])).is_empty());
        let odd = json!([{"name":"w","listeners":"unix:/s","draining":[7,{"pid":"8"},{"x":1}],
                          "handoff":5,"uptime_secs":"NaN","start_time":-1.5}]);
        let e = &status_list(odd)[0];
        assert_eq!(e.listeners, vec!["unix:/s"]);
        assert_eq!(e.draining, vec![Draining { pid: 7 }, Draining { pid: 8 }]);
        assert_eq!(
            (e.handoff_pid, e.uptime_secs, e.start_time),
            (None, None, -1)
        );
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
