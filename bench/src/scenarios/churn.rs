//! `churn` (supergo): programs that exit at once, restarted as fast as the policy allows
//! (`backoff_secs` = `backoff_max_secs` = `--backoff-secs`, `max_retry` huge, `start_secs` 1 so
//! each exit is a failed start).
//!
//! Each process first appends its `SUPERGO_GENERATION` to a file of its program, so the
//! processes that really ran can be counted. When the churn ends the bench creates a flag
//! file; the next process of each program sees it and execs `sleep` instead of exiting, so
//! every program settles in `Running` without a stop racing a process that has not written its
//! line yet. Then supergo's counters (`generation` = processes started, `restarts`) must match
//! the lines exactly: a lost exit would leave a program stuck and a zombie behind; a
//! double-counted one would show as more processes than lines.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cleanup::TempDir;
use crate::report::{Row, Table};
use crate::systems::{wait_for, Supergo, System};
use crate::{procfs, Ctx};

pub fn run(ctx: &Ctx) -> Result<(Vec<Table>, Value), String> {
    let n = ctx.opts.programs.unwrap_or(10);
    let secs = ctx.opts.secs;
    let backoff = ctx.opts.backoff_secs;
    let dir = TempDir::new("churn")?;
    let flag = dir.path().join("settle");
    let sh = crate::setup::find_on_path("sh").ok_or("`sh` is not on PATH")?;
    let mut config = String::from("# churn: every process exits at once\n");
    for i in 0..n {
        let log = dir.path().join(format!("c{i:03}.lines"));
        let script = format!(
            "echo \"$SUPERGO_GENERATION\" >> '{}'; [ -e '{}' ] && exec sleep 100000; exit 1",
            log.display(),
            flag.display()
        );
        config.push_str(&format!(
            "\n[program.c{i:03}]\ncommand = {}\nargs = [\"-c\", {}]\nstart_secs = 1\n\
             backoff_secs = {backoff}\nbackoff_max_secs = {backoff}\nmax_retry = 4000000000\nstop_timeout = 5\n",
            serde_json::to_string(&sh.to_string_lossy()).unwrap_or_default(),
            serde_json::to_string(&script).unwrap_or_default(),
        ));
    }
    eprintln!("-- churn: {n} programs, backoff {backoff} s, {secs} s");
    let mut sg = Supergo::launch_text(&config, dir.path(), &ctx.paths)?;
    let pid = sg.pid();
    let fds_before = procfs::fd_count(pid)?;
    let rss_before = procfs::rss_kib(pid)?;
    let cpu0 = procfs::cpu_ticks(pid)?;
    let t0 = Instant::now();
    let mut max_zombies = 0;
    let mut zombie_samples = 0;
    while t0.elapsed() < Duration::from_secs_f64(secs) {
        std::thread::sleep(Duration::from_millis(250));
        max_zombies = max_zombies.max(procfs::zombie_children(pid));
        zombie_samples += 1;
    }
    let generations_at_flag: u64 = sum_of(&sg.status()?, "generation");
    std::fs::write(&flag, b"").map_err(|e| format!("{}: {e}", flag.display()))?;
    let churn_secs = t0.elapsed().as_secs_f64();
    let cpu_ticks = procfs::cpu_ticks(pid)?.saturating_sub(cpu0);
    // start_secs 1 + one backoff + spawn: every program Running soon after.
    let settled = wait_for(
        "every churn program Running after the flag",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || sg.running().ok().filter(|&r| r >= n),
    );
    std::thread::sleep(Duration::from_millis(300));
    let status = sg.status()?;
    let mut per_program = Vec::new();
    let (mut started, mut lines, mut restarts, mut mismatched) = (0u64, 0u64, 0u64, 0usize);
    for i in 0..n {
        let name = format!("c{i:03}");
        let entry = status
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(&name));
        let generation = entry
            .and_then(|p| p.get("generation"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let restarted = entry
            .and_then(|p| p.get("restarts"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let text =
            std::fs::read_to_string(dir.path().join(format!("{name}.lines"))).unwrap_or_default();
        let written: Vec<&str> = text.lines().collect();
        let distinct: BTreeSet<&str> = written.iter().copied().collect();
        let ok = written.len() as u64 == generation && distinct.len() == written.len();
        mismatched += usize::from(!ok);
        started += generation;
        lines += written.len() as u64;
        restarts += restarted;
        per_program.push(json!({
            "name": name, "generation": generation, "restarts": restarted,
            "lines": written.len(), "distinct_generations": distinct.len(), "match": ok,
        }));
    }
    let zombies_after = procfs::zombie_children(pid);
    let fds_after = procfs::fd_count(pid)?;
    let rss_after = procfs::rss_kib(pid)?;
    sg.shutdown(Duration::from_secs(30));

    let mut t = Table::new(
        &format!("churn: {n} programs exiting at once, backoff {backoff} s, {churn_secs:.1} s"),
        vec!["supergo".into()],
    );
    let one = |v: f64| vec![Some(v)];
    t.push(Row::num(
        "processes started (supergo's generations)",
        "",
        one(started as f64),
    ));
    t.push(Row::num(
        "processes that ran (lines written)",
        "",
        one(lines as f64),
    ));
    t.push(Row::num(
        "programs whose count does not match",
        "",
        one(mismatched as f64),
    ));
    t.push(Row::num(
        "`restarts` in supergo's status (every retry: processes started − programs)",
        "",
        one(restarts as f64),
    ));
    t.push(Row::num(
        "exits reaped and restarted per second",
        "/s",
        one(generations_at_flag as f64 / churn_secs),
    ));
    t.push(Row::num(
        "supergo CPU during the churn",
        "ticks",
        one(cpu_ticks as f64),
    ));
    t.push(Row::num(
        "zombies, max seen during the churn",
        "",
        one(max_zombies as f64),
    ));
    t.push(Row::num("zombies after", "", one(zombies_after as f64)));
    t.push(Row::text(
        "supergo fds before → after",
        vec![format!("{fds_before} → {fds_after}")],
    ));
    t.push(Row::text(
        "supergo RSS before → after (KiB)",
        vec![format!("{rss_before} → {rss_after}")],
    ));
    t.push(Row::text(
        "all programs Running after the churn",
        vec![match &settled {
            Ok(_) => "yes".to_string(),
            Err(e) => format!("NO: {e}"),
        }],
    ));
    let results = json!({
        "programs": n,
        "backoff_secs": backoff,
        "churn_secs": churn_secs,
        "generations_at_flag": generations_at_flag,
        "started": started,
        "lines": lines,
        "restarts": restarts,
        "mismatched_programs": mismatched,
        "exits_per_second": generations_at_flag as f64 / churn_secs,
        "cpu_ticks": cpu_ticks,
        "ticks_per_second": procfs::ticks_per_second(),
        "max_zombies": max_zombies,
        "zombie_samples": zombie_samples,
        "zombies_after": zombies_after,
        "fds": [fds_before, fds_after],
        "rss_kib": [rss_before, rss_after],
        "settled": settled.is_ok(),
        "per_program": per_program,
    });
    Ok((vec![t], results))
}

fn sum_of(status: &[Value], key: &str) -> u64 {
    status
        .iter()
        .filter_map(|p| p.get(key).and_then(Value::as_u64))
        .sum()
}
