//! Pure statistics over what the load generator and the scenarios record: percentiles,
//! medians, and holes in service.
//!
//! A *hole in service* is a stretch of time in which no request completed successfully. It is
//! computed from the completion times of the successful fast requests only: a slow `/sleep`
//! answered by a draining process says nothing about whether new clients are being served.
//! The edges of the window count, so a service that never answers has a hole as long as the
//! window.

/// Percentile by the nearest-rank method over **sorted** values: the smallest value such
/// that at least `p` percent of the values are at or below it. `None` for no values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median (p50, nearest rank) of unsorted values.
pub fn median(values: &[f64]) -> Option<f64> {
    percentile(&sorted(values), 50.0)
}

/// A sorted copy; NaN never occurs in what we measure, and sorts last if it did.
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// p50, p99 and max of a set of values (milliseconds, usually).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

pub fn summarize(values: &[f64]) -> Summary {
    let s = sorted(values);
    Summary {
        count: s.len(),
        p50: percentile(&s, 50.0),
        p99: percentile(&s, 99.0),
        max: s.last().copied(),
    }
}

/// The longest stretch without a successful completion inside a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Hole {
    /// Where it starts (the last success before it, or the window's start), microseconds.
    pub start_us: u64,
    pub length_us: u64,
}

impl Hole {
    pub fn ms(&self) -> f64 {
        self.length_us as f64 / 1000.0
    }
}

/// The longest hole in `[from_us, to_us]` given the **sorted** completion times of successes.
/// Completions outside the window are ignored; an empty window is a zero-length hole.
pub fn longest_hole(sorted_successes: &[u64], from_us: u64, to_us: u64) -> Hole {
    if to_us <= from_us {
        return Hole {
            start_us: from_us,
            length_us: 0,
        };
    }
    let first = sorted_successes.partition_point(|&t| t < from_us);
    let last = sorted_successes.partition_point(|&t| t <= to_us);
    let mut best = Hole {
        start_us: from_us,
        length_us: 0,
    };
    let mut prev = from_us;
    for &t in sorted_successes[first..last]
        .iter()
        .chain(std::iter::once(&to_us))
    {
        if t - prev > best.length_us {
            best = Hole {
                start_us: prev,
                length_us: t - prev,
            };
        }
        prev = t;
    }
    best
}

/// The longest hole inside each of consecutive windows `[marks[i], marks[i+1])`, the last one
/// ending at `end_us`: one hole per restart, when `marks` are the times restarts were issued.
pub fn holes_between(sorted_successes: &[u64], marks: &[u64], end_us: u64) -> Vec<Hole> {
    marks
        .iter()
        .enumerate()
        .map(|(i, &from)| {
            let to = marks.get(i + 1).copied().unwrap_or(end_us).max(from);
            longest_hole(sorted_successes, from, to)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_uses_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn median_of_unsorted_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.0));
    }

    #[test]
    fn summary_has_max_and_count() {
        let s = summarize(&[5.0, 1.0, 9.0, 2.0]);
        assert_eq!(s.count, 4);
        assert_eq!(s.max, Some(9.0));
        assert_eq!(s.p50, Some(2.0));
        assert_eq!(summarize(&[]).max, None);
    }

    #[test]
    fn hole_between_successes() {
        let t = [10, 20, 25, 80, 90];
        assert_eq!(
            longest_hole(&t, 0, 100),
            Hole {
                start_us: 25,
                length_us: 55
            }
        );
    }

    #[test]
    fn hole_at_the_edges_counts() {
        assert_eq!(longest_hole(&[90], 0, 100).length_us, 90);
        assert_eq!(
            longest_hole(&[5], 0, 100),
            Hole {
                start_us: 5,
                length_us: 95
            }
        );
        // Nothing answered: the whole window is a hole.
        assert_eq!(longest_hole(&[], 10, 60).length_us, 50);
    }

    #[test]
    fn hole_ignores_completions_outside_the_window() {
        let t = [1, 2, 50, 51, 200, 300];
        assert_eq!(longest_hole(&t, 40, 100).length_us, 49);
        assert_eq!(longest_hole(&t, 100, 100).length_us, 0);
    }

    #[test]
    fn one_hole_per_window() {
        let t = [0, 10, 40, 45, 100, 101, 180];
        let holes = holes_between(&t, &[0, 50, 150], 200);
        let lengths: Vec<u64> = holes.iter().map(|h| h.length_us).collect();
        assert_eq!(lengths, vec![30, 50, 30]);
    }
}
