//! Tables and the JSON result file.
//!
//! A table has one column per system, supergo first; each number of a peer is followed by its
//! ratio to supergo's (`44.5 (11.1×)`: the peer's figure is 11.1 times supergo's). Every figure
//! in these tables is lower-is-better, so a ratio above 1 is supergo ahead. Tables print as
//! Markdown, which reads as well in a terminal as in BENCHMARKS.md.

use std::path::Path;

/// One line of a table.
#[derive(Clone, Debug, PartialEq)]
pub enum Row {
    /// Numbers (one per system; `None`: not measured), with a unit for the metric's name.
    Num {
        metric: String,
        unit: String,
        values: Vec<Option<f64>>,
    },
    /// Free text, no ratio.
    Text { metric: String, values: Vec<String> },
}

impl Row {
    pub fn num(metric: &str, unit: &str, values: Vec<Option<f64>>) -> Row {
        Row::Num {
            metric: metric.to_string(),
            unit: unit.to_string(),
            values,
        }
    }

    pub fn text(metric: &str, values: Vec<String>) -> Row {
        Row::Text {
            metric: metric.to_string(),
            values,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Table {
    pub title: String,
    pub systems: Vec<String>,
    pub rows: Vec<Row>,
}

impl Table {
    pub fn new(title: &str, systems: Vec<String>) -> Table {
        Table {
            title: title.to_string(),
            systems,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// The table as Markdown, column widths aligned.
    pub fn render(&self) -> String {
        let mut grid: Vec<Vec<String>> = Vec::new();
        let mut head = vec!["metric".to_string()];
        head.extend(self.systems.iter().cloned());
        grid.push(head);
        for row in &self.rows {
            let mut line = Vec::new();
            match row {
                Row::Num {
                    metric,
                    unit,
                    values,
                } => {
                    line.push(if unit.is_empty() {
                        metric.clone()
                    } else {
                        format!("{metric} ({unit})")
                    });
                    let base = values.first().copied().flatten();
                    for (i, v) in values.iter().enumerate() {
                        line.push(match v {
                            None => "–".to_string(),
                            Some(v) if i == 0 => fmt_num(*v),
                            Some(v) => with_ratio(*v, base),
                        });
                    }
                }
                Row::Text { metric, values } => {
                    line.push(metric.clone());
                    line.extend(values.iter().cloned());
                }
            }
            line.resize(self.systems.len() + 1, "–".to_string());
            grid.push(line);
        }
        let cols = self.systems.len() + 1;
        let widths: Vec<usize> = (0..cols)
            .map(|c| grid.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = format!("### {}\n\n", self.title);
        out.push_str(&line(&grid[0]));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        for r in &grid[1..] {
            out.push_str(&line(r));
        }
        out
    }
}

/// A number as people read it: integers plain, else 2 significant-ish decimals.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if (v.fract() == 0.0 && a < 1e12) || a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A peer's figure with its ratio to supergo's.
pub fn with_ratio(v: f64, base: Option<f64>) -> String {
    match base {
        Some(b) if b > 0.0 => {
            let r = v / b;
            let r = if r >= 10.0 {
                format!("{r:.0}")
            } else if r >= 0.1 {
                format!("{r:.1}")
            } else {
                format!("{r:.2}")
            };
            format!("{} ({r}×)", fmt_num(v))
        }
        Some(_) if v == 0.0 => fmt_num(v),
        Some(_) => format!("{} (supergo: 0)", fmt_num(v)),
        None => fmt_num(v),
    }
}

/// Writes `value` as pretty JSON, creating the directory.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| format!("JSON: {e}"))?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// MiB from KiB, for the footprint tables.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(375.0), "375");
        assert_eq!(fmt_num(1.234), "1.23");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(123.4), "123");
    }

    #[test]
    fn ratios_against_supergo() {
        assert_eq!(with_ratio(44.5, Some(4.0)), "44.5 (11×)");
        assert_eq!(with_ratio(6.0, Some(4.0)), "6 (1.5×)");
        assert_eq!(with_ratio(0.0, Some(0.0)), "0");
        assert_eq!(with_ratio(375.0, Some(0.0)), "375 (supergo: 0)");
        assert_eq!(with_ratio(3.0, None), "3");
    }

    #[test]
    fn table_is_aligned_markdown() {
        let mut t = Table::new("restart", vec!["supergo".into(), "supervisord".into()]);
        t.push(Row::num("failed", "", vec![Some(0.0), Some(375.0)]));
        t.push(Row::num("hole", "ms", vec![Some(2.0), None]));
        t.push(Row::text("child", vec!["rust".into()]));
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "### restart");
        assert_eq!(lines[2], "| metric    | supergo | supervisord      |");
        assert_eq!(lines[3], "|-----------|---------|------------------|");
        assert_eq!(lines[4], "| failed    | 0       | 375 (supergo: 0) |");
        assert_eq!(lines[5], "| hole (ms) | 2       | –                |");
        assert_eq!(lines[6], "| child     | rust    | –                |");
    }
}
