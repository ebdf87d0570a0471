//! supergo's answer envelope, `{"status": 0, "message": "...", "data": ...}`, read leniently.
//!
//! The original supergo answered every request with HTTP 200, errors included
//! (`{"status":1,"message":"program not found"}`), and may leave out `data`. An answer is a
//! failure when *either* the HTTP status is not 2xx *or* the envelope's `status` is non-zero.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// One answer of supergo, parsed from its envelope. `T` is what `data` is read into: a
/// `Value` for the small answers, a typed list for `status`, read in the same pass as the
/// envelope (with 1000 programs, a second pass over the data costs as much as the first).
#[derive(Debug, Clone)]
pub struct Answer<T = Value> {
    /// The HTTP status code.
    pub http: i32,
    /// The envelope's `status` (0 = success); 0 when absent and the HTTP status is 2xx.
    pub status: i64,
    /// The envelope's `message` ("" when absent).
    pub message: String,
    /// The envelope's `data` (`T::default()`, e.g. `Null`, when absent).
    pub data: T,
    /// The body exactly as received, for `--json`.
    pub raw: String,
}

impl<T> Answer<T> {
    /// Success means a 2xx HTTP status and a zero envelope status.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.http) && self.status == 0
    }

    /// The daemon's message, or a description of the HTTP status when it gave none.
    pub fn reason(&self) -> String {
        if !self.message.trim().is_empty() {
            self.message.trim().to_string()
        } else if self.ok() {
            "ok".to_string()
        } else {
            format!("failed (HTTP {}, status {})", self.http, self.status)
        }
    }
}

impl<T: DeserializeOwned + Default> Answer<T> {
    /// Parses an envelope; gives `raw` back when the body is not a JSON object (or its
    /// `data` is not JSON at all).
    pub fn parse(http: i32, raw: String) -> Result<Answer<T>, String> {
        let envelope: Envelope<T> = match serde_json::from_str(&raw) {
            Ok(envelope) => envelope,
            Err(_) => return Err(raw),
        };
        let status = match envelope.status {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .unwrap_or(1),
            Some(Value::Bool(b)) => i64::from(!b),
            Some(Value::String(s)) => s.trim().parse().unwrap_or(1),
            // No status at all: trust the HTTP status.
            _ => i64::from(!(200..300).contains(&http)),
        };
        let message = match envelope.message {
            Some(Value::String(s)) => s,
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        Ok(Answer {
            http,
            status,
            message,
            data: envelope.data.unwrap_or_default(),
            raw,
        })
    }
}

/// The envelope's fields as written. Read as a map only: serde would take an array for a
/// struct too (`[0, "ok"]`), which is not supergo's envelope. A field given twice counts
/// once, the last time, as in a `Value`.
struct Envelope<T> {
    status: Option<Value>,
    message: Option<Value>,
    data: Option<T>,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Envelope<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor(PhantomData))
    }
}

struct EnvelopeVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for EnvelopeVisitor<T> {
    type Value = Envelope<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("supergo's answer envelope")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut envelope = Envelope {
            status: None,
            message: None,
            data: None,
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<str>>()? {
            match key.as_ref() {
                "status" => envelope.status = Some(map.next_value()?),
                "message" => envelope.message = Some(map.next_value()?),
                "data" => envelope.data = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_lenient() {
        let a: Answer = Answer::parse(200, r#"{"status":1,"message":"program not found"}"#.into())
            .expect("object");
        assert!(!a.ok());
        assert_eq!(a.data, Value::Null);
        assert_eq!(a.reason(), "program not found");

        let a: Answer = Answer::parse(200, r#"{"data":[]}"#.into()).expect("object");
        assert!(a.ok());
        let a: Answer = Answer::parse(404, r#"{"data":[]}"#.into()).expect("object");
        assert!(!a.ok());
        assert_eq!(a.reason(), "failed (HTTP 404, status 1)");
        let parse = |raw: &str| Answer::<Value>::parse(200, raw.to_string());
        assert_eq!(parse("not json").err().as_deref(), Some("not json"));
        assert!(parse("[1]").is_err());
        assert!(parse("  [0, \"ok\"]").is_err());
    }

    #[test]
    fn data_is_read_into_the_type_asked_for() {
        let raw = r#"{"data":[1,2],"status":"0","message":{"a":1},"extra":{"data":3}}"#;
        let a: Answer<Vec<u32>> = Answer::parse(200, raw.into()).expect("object");
        assert!(a.ok());
        assert_eq!(a.message, r#"{"a":1}"#);
        assert_eq!(a.data, vec![1, 2]);
        assert_eq!(a.raw, raw);
        let a: Answer<Vec<u32>> = Answer::parse(200, r#"{"status":true}"#.into()).expect("object");
        assert_eq!((a.status, a.data), (0, vec![]));
        let twice: Answer = Answer::parse(200, r#"{"data":1,"data":2}"#.into()).expect("object");
        assert_eq!(twice.data, 2);
    }
}
