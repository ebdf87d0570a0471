//! supergo's answer envelope, `{"status": 0, "message": "...", "data": ...}`, read leniently.
//!
//! The original supergo answered every request with HTTP 200, errors included
//! (`{"status":1,"message":"program not found"}`), and may leave out `data`. An answer is a
//! failure when *either* the HTTP status is not 2xx *or* the envelope's `status` is non-zero.

use serde_json::Value;

/// One answer of supergo, parsed from its envelope.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status code.
    pub http: i32,
    /// The envelope's `status` (0 = success); 0 when absent and the HTTP status is 2xx.
    pub status: i64,
    /// The envelope's `message` ("" when absent).
    pub message: String,
    /// The envelope's `data` (`Null` when absent).
    pub data: Value,
    /// The body exactly as received, for `--json`.
    pub raw: String,
}

impl Answer {
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

    /// Parses an envelope; `None` when the body is not a JSON object.
    pub fn parse(http: i32, raw: String) -> Option<Answer> {
        let value: Value = serde_json::from_str(&raw).ok()?;
        let obj = value.as_object()?;
        let status = match obj.get("status") {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .unwrap_or(1),
            Some(Value::Bool(b)) => i64::from(!*b),
            Some(Value::String(s)) => s.trim().parse().unwrap_or(1),
            // No status at all: trust the HTTP status.
            _ => i64::from(!(200..300).contains(&http)),
        };
        let message = match obj.get("message") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let data = obj.get("data").cloned().unwrap_or(Value::Null);
        Some(Answer {
            http,
            status,
            message,
            data,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_lenient() {
        let a = Answer::parse(200, r#"{"status":1,"message":"program not found"}"#.into())
            .expect("object");
        assert!(!a.ok());
        assert_eq!(a.data, Value::Null);
        assert_eq!(a.reason(), "program not found");

        let a = Answer::parse(200, r#"{"data":[]}"#.into()).expect("object");
        assert!(a.ok());
        let a = Answer::parse(404, r#"{"data":[]}"#.into()).expect("object");
        assert!(!a.ok());
        assert_eq!(a.reason(), "failed (HTTP 404, status 1)");
        assert!(Answer::parse(200, "not json".into()).is_none());
        assert!(Answer::parse(200, "[1]".into()).is_none());
    }
}
