//! The targets a scenario is held to (issue 17: RSS, status latency, start-up time), each with
//! its verdict, and the same figure from an earlier result file (`--baseline PATH`) beside it,
//! so a change is shown against the figures before it.

use std::path::Path;

use serde_json::Value;

use crate::report::{fmt_num, Row, Table};

/// One figure held to a target (lower is better).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Target {
    pub metric: String,
    pub unit: String,
    /// At most this.
    pub target: f64,
    pub now: Option<f64>,
    /// The same figure in the baseline result, when one was given.
    pub before: Option<f64>,
}

impl Target {
    pub fn new(metric: &str, unit: &str, target: f64, now: Option<f64>) -> Target {
        Target {
            metric: metric.to_string(),
            unit: unit.to_string(),
            target,
            now,
            before: None,
        }
    }

    /// "met", or "missed by 2.4 MiB (1.6× the target)", or "not measured".
    pub fn verdict(&self) -> String {
        match self.now {
            None => "not measured".into(),
            Some(v) if v <= self.target => "**met**".into(),
            Some(v) => format!(
                "**missed** by {} {} ({:.1}× the target)",
                fmt_num(v - self.target),
                self.unit,
                v / self.target
            ),
        }
    }
}

/// An earlier result file of the same scenario.
pub struct Baseline {
    pub label: String,
    pub value: Value,
}

impl Baseline {
    pub fn load(path: &Path, scenario: &str) -> Result<Baseline, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--baseline {}: {e}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format!("--baseline {}: not JSON ({e})", path.display()))?;
        let theirs = value.get("scenario").and_then(Value::as_str).unwrap_or("");
        if theirs != scenario {
            return Err(format!(
                "--baseline {}: a `{theirs}` result, not `{scenario}`",
                path.display()
            ));
        }
        let commit = value
            .pointer("/measured/commit")
            .and_then(Value::as_str)
            .unwrap_or("?");
        Ok(Baseline {
            label: format!("before ({commit})"),
            value,
        })
    }

    /// supergo's point (in `results.points`) that `matches`.
    pub fn supergo_point(&self, matches: impl Fn(&Value) -> bool) -> Option<&Value> {
        self.value
            .pointer("/results/points")?
            .as_array()?
            .iter()
            .find(|p| p.get("system").and_then(Value::as_str) == Some("supergo") && matches(p))
    }
}

/// The targets as a table: target, supergo's figure, verdict, and the baseline's figure.
pub fn table(title: &str, targets: &[Target], baseline: Option<&Baseline>) -> Table {
    let mut columns = vec!["target".to_string(), "supergo".into(), "verdict".into()];
    if let Some(b) = baseline {
        columns.push(b.label.clone());
    }
    let mut t = Table::new(title, columns);
    let show = |v: Option<f64>| v.map_or("–".to_string(), fmt_num);
    for target in targets {
        let mut cells = vec![
            format!("≤ {}", fmt_num(target.target)),
            show(target.now),
            target.verdict(),
        ];
        if baseline.is_some() {
            cells.push(show(target.before));
        }
        let metric = if target.unit.is_empty() {
            target.metric.clone()
        } else {
            format!("{} ({})", target.metric, target.unit)
        };
        t.push(Row::text(&metric, cells));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_say_by_how_much() {
        assert_eq!(
            Target::new("rss", "MiB", 4.0, Some(3.5)).verdict(),
            "**met**"
        );
        assert_eq!(
            Target::new("rss", "MiB", 4.0, Some(6.8)).verdict(),
            "**missed** by 2.80 MiB (1.7× the target)"
        );
        assert_eq!(
            Target::new("rss", "MiB", 4.0, None).verdict(),
            "not measured"
        );
        assert_eq!(Target::new("x", "", 1.0, Some(1.0)).verdict(), "**met**");
    }

    #[test]
    fn table_has_a_before_column_with_a_baseline() {
        let b = Baseline {
            label: "before (abc)".into(),
            value: Value::Null,
        };
        let mut t = Target::new("status", "ms", 0.5, Some(0.4));
        t.before = Some(8.2);
        let out = table("targets", &[t], Some(&b)).render();
        assert!(
            out.contains("| status (ms) | ≤ 0.50 | 0.40    | **met** | 8.20"),
            "{out}"
        );
    }
}
