//! The table of a daemon's resident memory by cause (`smaps`) at each program count, with the
//! cost per program between the smallest and the largest count (`footprint`, supergo only).

use super::shape::Shape;
use crate::report::{fmt_num, Row, Table};
use crate::smaps::{Breakdown, Cause};
use crate::stats::median;

/// What was read at one program count.
pub struct Measured<'a> {
    pub programs: usize,
    pub smaps: &'a Breakdown,
    pub rss_kib: u64,
    pub threads: u64,
}

/// The table, or `None` when nothing was measured.
pub fn table(shape: Shape, measured: &[Measured]) -> Option<Table> {
    let (first, last) = (measured.first()?, measured.last()?);
    let mut columns: Vec<String> = measured
        .iter()
        .map(|m| format!("{} programs (KiB)", m.programs))
        .collect();
    let per_program = last.programs > first.programs;
    if per_program {
        columns.push(format!(
            "per program, {} → {} (KiB)",
            first.programs, last.programs
        ));
    }
    let mut t = Table::new(
        &format!(
            "footprint: supergo's resident memory by cause (/proc/PID/smaps, {} shape)",
            shape.name()
        ),
        columns,
    );
    let row = |label: &str, f: &dyn Fn(&Measured) -> f64| {
        let mut cells: Vec<String> = measured.iter().map(|m| fmt_num(f(m))).collect();
        if per_program {
            let per = (f(last) - f(first)) / (last.programs - first.programs) as f64;
            cells.push(fmt_num(per));
        }
        Row::text(label, cells)
    };
    for cause in Cause::ALL {
        t.push(row(cause.label(), &|m| m.smaps.of(cause) as f64));
    }
    t.push(row("total of the mappings", &|m| m.smaps.total_kib as f64));
    t.push(row("VmRSS", &|m| m.rss_kib as f64));
    t.push(row("threads", &|m| m.threads as f64));
    t.push(row("thread-stack mappings", &|m| {
        m.smaps.stack_rss_kib.len() as f64
    }));
    t.push(row("resident KiB of one thread stack, median", &|m| {
        median(
            &m.smaps
                .stack_rss_kib
                .iter()
                .map(|&k| k as f64)
                .collect::<Vec<_>>(),
        )
        .unwrap_or(0.0)
    }));
    t.push(row("resident KiB of one thread stack, max", &|m| {
        m.smaps.stack_rss_kib.last().copied().unwrap_or(0) as f64
    }));
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_program_is_the_slope_between_the_counts() {
        let small = crate::smaps::classify(&crate::smaps::parse(
            "7f0000000000-7f0000001000 ---p 00000000 00:00 0\nRss: 0 kB\n\
             7f0000001000-7f0000021000 rw-p 00000000 00:00 0\nRss: 12 kB\n",
        ));
        let mut large = small.clone();
        large.rss_kib.insert(Cause::ThreadStacks, 1212);
        let measured = [
            Measured {
                programs: 1,
                smaps: &small,
                rss_kib: 3000,
                threads: 5,
            },
            Measured {
                programs: 101,
                smaps: &large,
                rss_kib: 4200,
                threads: 105,
            },
        ];
        let out = table(Shape::Realistic, &measured)
            .expect("a table")
            .render();
        assert!(out.contains("per program, 1 → 101 (KiB)"), "{out}");
        let cells = |name: &str| -> Vec<String> {
            let line = out.lines().find(|l| l.starts_with(name)).expect("row");
            line.split('|')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        };
        assert_eq!(cells("| thread stacks")[1..], ["12", "1212", "12"]);
        assert_eq!(cells("| VmRSS")[1..], ["3000", "4200", "12"]);
        assert_eq!(cells("| threads")[1..], ["5", "105", "1"]);
        assert!(table(Shape::Sleep, &[]).is_none());
    }
}
