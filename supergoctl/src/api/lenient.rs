//! The leniency rules for one JSON value, in one place: what counts as text, as a count, as
//! a number. A field that breaks them reads as "unknown" (`None`), never as an error.
//!
//! - text: a non-blank string, or a number or bool written out; not null or a container;
//! - an unsigned count or pid: a non-negative number (a fraction is cut), or a string
//!   holding one;
//! - a number: any finite number, or a string holding one.
//!
//! [`Scalar`] is read either from a `serde_json::Value` (the small answers) or straight
//! from the JSON text (the status of 1000 programs, where building a `Value` tree first
//! costs more than everything else supergoctl does).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One JSON value, reduced to what the rules above look at.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// `null`, an array or an object.
    Nothing,
    Bool(bool),
    PosInt(u64),
    NegInt(i64),
    Float(f64),
    Str(Cow<'a, str>),
}

impl Scalar<'_> {
    pub fn text(&self) -> Option<String> {
        match self {
            Scalar::Str(s) if !s.trim().is_empty() => Some(s.to_string()),
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::PosInt(n) => Some(n.to_string()),
            Scalar::NegInt(n) => Some(n.to_string()),
            // Written as serde_json writes it (`1.5`, `1e300`), as the raw answer shows it.
            Scalar::Float(f) => serde_json::Number::from_f64(*f).map(|n| n.to_string()),
            _ => None,
        }
    }

    pub fn u64(&self) -> Option<u64> {
        match self {
            Scalar::PosInt(n) => Some(*n),
            Scalar::Float(f) if *f >= 0.0 => Some(*f as u64),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn f64(&self) -> Option<f64> {
        match self {
            Scalar::PosInt(n) => Some(*n as f64),
            Scalar::NegInt(n) => Some(*n as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|f: &f64| f.is_finite())
    }
}

impl<'a> From<&'a Value> for Scalar<'a> {
    fn from(v: &'a Value) -> Scalar<'a> {
        match v {
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Scalar::PosInt(u),
                (None, Some(i), _) => Scalar::NegInt(i),
                (None, None, Some(f)) => Scalar::Float(f),
                (None, None, None) => Scalar::Nothing,
            },
            Value::String(s) => Scalar::Str(Cow::Borrowed(s.as_str())),
            Value::Null | Value::Array(_) | Value::Object(_) => Scalar::Nothing,
        }
    }
}

/// A string, number or bool as text; `None` for null, blank strings and containers.
pub fn text(v: &Value) -> Option<String> {
    Scalar::from(v).text()
}

pub fn field_text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(text)
}

pub fn number_f64(v: &Value) -> Option<f64> {
    Scalar::from(v).f64()
}

pub fn number_u64(v: &Value) -> Option<u64> {
    Scalar::from(v).u64()
}

/// An array of texts, a single non-empty string, or nothing.
pub fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(text).collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Reads any JSON value; the contents of arrays and objects are skipped, not kept.
impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::PosInt(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(match u64::try_from(v) {
            Ok(u) => Scalar::PosInt(u),
            Err(_) => Scalar::NegInt(v),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_string())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Nothing)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Nothing)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Nothing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The same rules whether read from a `Value` or from the text.
    fn both(v: Value) -> (Option<String>, Option<u64>, Option<f64>) {
        let text = v.to_string();
        let streamed: Scalar = serde_json::from_str(&text).expect("valid JSON");
        let tree = Scalar::from(&v);
        assert_eq!(streamed, tree, "{text}");
        (tree.text(), tree.u64(), tree.f64())
    }

    #[test]
    fn rules() {
        assert_eq!(both(json!("77")), (Some("77".into()), Some(77), Some(77.0)));
        assert_eq!(both(json!(" ")), (None, None, None));
        assert_eq!(
            both(json!(12.5)),
            (Some("12.5".into()), Some(12), Some(12.5))
        );
        assert_eq!(both(json!(-3)), (Some("-3".into()), None, Some(-3.0)));
        assert_eq!(both(json!(true)), (Some("true".into()), None, None));
        assert_eq!(both(json!(null)), (None, None, None));
        assert_eq!(both(json!([1, {"a": [2]}])), (None, None, None));
        assert_eq!(both(json!({"pid": 1})), (None, None, None));
        assert_eq!(both(json!("NaN")).2, None);
    }
}
