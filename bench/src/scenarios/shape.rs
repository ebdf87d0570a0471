//! The programs `footprint` and `scale` run (`--shape`):
//!
//! - `sleep`: `sleep 100000`, nothing else — the supervisor at its cheapest;
//! - `realistic` (issue 17): each program has a unix-socket listener the system binds and
//!   holds, and a stdout log file it writes into; the child (`sh -c 'echo NAME up; exec sleep
//!   100000'`) writes one line and keeps the socket open. `footprint` also restarts a tenth of
//!   them once and reads the status before it measures.

use std::path::Path;

use crate::setup::find_on_path;
use crate::systems::Program;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Shape {
    Sleep,
    Realistic,
}

impl Shape {
    pub fn parse(s: &str) -> Result<Shape, String> {
        match s {
            "sleep" => Ok(Shape::Sleep),
            "realistic" => Ok(Shape::Realistic),
            other => Err(format!("--shape {other}: want sleep or realistic")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Shape::Sleep => "sleep",
            Shape::Realistic => "realistic",
        }
    }

    /// How the programs look, for table titles.
    pub fn describe(self) -> &'static str {
        match self {
            Shape::Sleep => "`sleep` programs",
            Shape::Realistic => "realistic programs (unix-socket listener + stdout log file each)",
        }
    }
}

/// `count` programs `p0000`, `p0001`, … of `shape`, their sockets and logs under `dir`.
pub fn programs(
    shape: Shape,
    count: usize,
    dir: &Path,
    start_secs: f64,
) -> Result<Vec<Program>, String> {
    let sleep = find_on_path("sleep").ok_or("`sleep` is not on PATH")?;
    let sh = find_on_path("sh").ok_or("`sh` is not on PATH")?;
    let (sockets, logs) = (dir.join("sockets"), dir.join("logs"));
    if shape == Shape::Realistic {
        for d in [&sockets, &logs] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
    }
    Ok((0..count)
        .map(|i| {
            let name = format!("p{i:04}");
            let mut p = match shape {
                Shape::Sleep => {
                    let mut p = Program::new(&name, &sleep);
                    p.args = vec!["100000".into()];
                    p
                }
                Shape::Realistic => {
                    let mut p = Program::new(&name, &sh);
                    p.args = vec!["-c".into(), format!("echo {name} up; exec sleep 100000")];
                    p.unix_listen = Some(sockets.join(format!("{name}.sock")));
                    p.stdout_file = Some(logs.join(format!("{name}.out")));
                    p
                }
            };
            p.start_secs = start_secs;
            p.stop_timeout = 5.0;
            p
        })
        .collect())
}

/// The tenth of the programs that `footprint` restarts once: `p0000`, `p0010`, …
pub fn restarted_tenth(count: usize) -> Vec<String> {
    (0..count).step_by(10).map(|i| format!("p{i:04}")).collect()
}

/// Every log file of the realistic shape that holds the child's line (to check the output
/// really went through the system under test).
pub fn logs_written(programs: &[Program]) -> usize {
    programs
        .iter()
        .filter_map(|p| p.stdout_file.as_ref())
        .filter(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains(" up")))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realistic_programs_have_a_socket_and_a_log() {
        let ps = programs(Shape::Realistic, 12, Path::new("/dev/null/d"), 1.0);
        // No directory can be made under a file: a clear error, no panic.
        assert!(ps.is_err_and(|e| e.contains("/dev/null/d")));
        let dir = std::env::temp_dir().join(format!("bench-shape-{}", std::process::id()));
        let ps = programs(Shape::Realistic, 12, &dir, 1.0).expect("programs");
        assert_eq!(ps.len(), 12);
        assert_eq!(ps[3].name, "p0003");
        assert_eq!(ps[3].unix_listen, Some(dir.join("sockets/p0003.sock")));
        assert_eq!(ps[3].stdout_file, Some(dir.join("logs/p0003.out")));
        assert_eq!(ps[3].args[1], "echo p0003 up; exec sleep 100000");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(restarted_tenth(12), vec!["p0000", "p0010"]);
        assert_eq!(restarted_tenth(1000).len(), 100);
    }

    #[test]
    fn sleep_programs_have_neither() {
        let ps = programs(Shape::Sleep, 2, Path::new("/nonexistent"), 1.0).expect("programs");
        assert!(ps[1].unix_listen.is_none() && ps[1].stdout_file.is_none());
        assert_eq!(ps[1].args, vec!["100000"]);
    }
}
