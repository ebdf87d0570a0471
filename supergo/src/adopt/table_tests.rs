//! The process table's text (`table`), merging a program recorded twice (`startup`), and the
//! config fingerprint, against real config files.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::startup::merge;
use super::table::{config_hash, ListenerEntry, ProcessEntry, ProgramEntry, Role, Table};

fn process(pid: i32, role: Role) -> ProcessEntry {
    ProcessEntry {
        pid,
        pgid: pid,
        generation: 3,
        start_ticks: 98_765,
        role,
        piped: true,
        stop_signal: Signal::SIGINT,
        stop_timeout: Duration::from_millis(2500),
        stop_as_group: false,
    }
}

fn table() -> Table {
    Table {
        pid: 4242,
        start_ticks: 1234,
        boot_id: None,
        control: "127.0.0.1:22106".into(),
        programs: vec![
            ProgramEntry {
                name: "web api".into(),
                generation: 3,
                config_hash: 0x9f0c_0000_0000_0001,
                listeners: vec![
                    ListenerEntry {
                        addr: "127.0.0.1:4041".into(),
                        inode: 81234,
                    },
                    ListenerEntry {
                        addr: "unix:/run/web=1.sock".into(),
                        inode: 81235,
                    },
                ],
                processes: vec![process(5012, Role::Serving), process(4990, Role::Draining)],
            },
            ProgramEntry {
                name: "idle".into(),
                generation: 7,
                config_hash: 1,
                listeners: Vec::new(),
                processes: Vec::new(),
            },
        ],
    }
}

#[test]
fn the_table_reads_back_as_written_and_programs_without_processes_are_left_out() {
    let written = table();
    let text = written.to_text();
    assert!(text.starts_with("supergo-state 1."), "{text}");
    assert!(!text.contains("[program idle]"), "{text}");
    let read = Table::parse(&text).unwrap();
    assert_eq!(read.pid, 4242);
    assert_eq!(read.start_ticks, 1234);
    assert_eq!(read.control, "127.0.0.1:22106");
    assert_eq!(read.programs, written.programs[..1].to_vec());
    // The format's writer adds this boot's id.
    assert_eq!(read.boot_id, super::procfs::boot_id().ok());
    assert!(!read.is_empty());
}

#[test]
fn a_bad_state_names_its_line_and_missing_keys_take_safe_defaults() {
    let text = table().to_text().replace("role=draining", "role=zombie");
    let error = Table::parse(&text).unwrap_err();
    assert!(
        error.contains("line ") && error.contains("unknown role \"zombie\""),
        "{error}"
    );
    let error = Table::parse("supergo-state 1.0\n\n[program web]\n").unwrap_err();
    assert!(error.contains("no [supergo] section"), "{error}");
    let error = Table::parse("hello\n").unwrap_err();
    assert!(
        error.contains("line 1") && error.contains("not a supergo state"),
        "{error}"
    );
    // A process without start_ticks gets 0, which no process has: it is never adopted.
    // One without `piped` counts as piped: it is replaced rather than left unable to log.
    let bare =
        "supergo-state 1.3\n[supergo]\npid=9\n[program web]\n[.process 12]\npid=12\nfuture_key=x\n";
    let read = Table::parse(bare).unwrap();
    let p = &read.programs[0].processes[0];
    assert_eq!(
        (p.pid, p.pgid, p.start_ticks, p.role),
        (12, 12, 0, Role::Serving)
    );
    assert!(p.piped && p.stop_as_group);
    assert_eq!(p.stop_signal, Signal::SIGTERM);
}

#[test]
fn a_program_recorded_twice_is_merged_into_one() {
    let mut t = table();
    let mut second = t.programs[0].clone();
    second.generation = 5;
    second.config_hash = 77;
    second.processes = vec![process(6000, Role::Serving)];
    t.programs[0].processes = vec![process(4990, Role::Draining)];
    t.programs.push(second);
    let merged = merge(t.programs);
    let web = merged.iter().find(|p| p.name == "web api").unwrap();
    assert_eq!(web.generation, 5);
    assert_eq!(web.config_hash, 77, "the serving process's config counts");
    let pids: Vec<i32> = web.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids, [4990, 6000]);
}

#[test]
fn the_config_hash_changes_with_the_config_but_not_with_its_place() {
    let dir = std::env::temp_dir().join(format!("supergo-table-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let load = |file: &str, text: &str| {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        crate::config::load(&path).unwrap().programs["web"].clone()
    };
    let base = "[program.web]\ncommand = \"/bin/true\"\nstop_timeout = 3\n";
    let a = load("a.toml", base);
    let moved = load("b.toml", &format!("\n\n{base}"));
    let changed = load("c.toml", &base.replace("3", "4"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(a.origin, moved.origin);
    assert_eq!(config_hash(&a), config_hash(&moved));
    assert_ne!(config_hash(&a), config_hash(&changed));
}
