//! The upgrade's groundwork through real binaries: `supergo --check-upgrade` (the pre-flight
//! a running supergo asks of a new binary), and the exec that hands a state, fds and a
//! pending SIGTERM to a new image, shown by `upgrade_probe` (supergo/examples), which uses
//! supergo's `handover` module without the supervisor.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use crate::util::{built, run_captured, test_dir, Supergo, TIMEOUT};

/// `key=value` fields of each `phase=…` line the probe printed, in order.
fn phases(output: &Output) -> Vec<BTreeMap<String, String>> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with("phase="))
        .map(|line| {
            let mut fields = BTreeMap::new();
            // Values are single words or Rust-quoted strings (`{:?}`), which hold no `" k=`.
            let mut rest = line;
            while let Some((key, after)) = rest.split_once('=') {
                let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
                    let end = quoted
                        .find("\" ")
                        .map_or(quoted.len().saturating_sub(1), |i| i);
                    (&quoted[..end], quoted.get(end + 2..).unwrap_or(""))
                } else {
                    after.split_once(' ').unwrap_or((after, ""))
                };
                fields.insert(key.trim().to_string(), value.to_string());
                rest = next;
            }
            fields
        })
        .collect()
}

/// Two copies of the probe, `old` and `new`, so that each image can tell which binary runs.
fn probe_copies(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let probe = built("examples/upgrade_probe");
    let (old, new) = (dir.join("old"), dir.join("new"));
    std::fs::copy(&probe, &old).expect("copy the probe");
    std::fs::copy(&probe, &new).expect("copy the probe");
    (old, new)
}

fn run_probe(dir: &std::path::Path, old: &PathBuf, target: &PathBuf, fail_restore: bool) -> Output {
    let mut cmd = Command::new(old);
    cmd.arg(target)
        .env_remove("SUPERGO_UPGRADE_STATE")
        .env_remove("SUPERGO_UPGRADE_FALLBACK");
    if fail_restore {
        cmd.env("PROBE_FAIL_RESTORE", "1")
            .env("PROBE_DELETE_OLD", old);
    } else {
        cmd.env_remove("PROBE_FAIL_RESTORE")
            .env_remove("PROBE_DELETE_OLD");
    }
    run_captured(&mut cmd, dir, "probe", TIMEOUT)
}

fn assert_restored(restored: &BTreeMap<String, String>, output: &Output) {
    for (key, value) in [
        ("pipe", "carried"),
        ("same_socket", "true"),
        ("accepts", "true"),
        ("odd", "true"),
        ("deadline", "true"),
        ("skipped", "0"),
        ("cloexec", "true"),
        ("term_pending", "true"),
        ("leftovers", "[]"),
        ("private_closed", "true"),
    ] {
        assert_eq!(
            restored.get(key).map(String::as_str),
            Some(value),
            "{key} in {restored:?}\n{output:?}"
        );
    }
    // The pending SIGTERM ended the new image once it unblocked it.
    assert_eq!(output.status.signal(), Some(15), "{output:?}");
}

#[test]
fn an_exec_hands_over_the_state_its_fds_and_a_pending_sigterm_and_nothing_else() {
    let dir = test_dir("handover_exec");
    let (old, new) = probe_copies(&dir);
    let output = run_probe(&dir, &old, &new, false);
    let phases = phases(&output);
    assert_eq!(phases.len(), 2, "{output:?}");
    let (first, restored) = (&phases[0], &phases[1]);
    assert_eq!(first["phase"], "first");
    assert_eq!(first["exe"], old.display().to_string());
    assert_eq!(restored["phase"], "restored", "{output:?}");
    assert_eq!(restored["exe"], new.display().to_string());
    assert_eq!(restored["pid"], first["pid"], "an exec keeps the pid");
    assert_eq!(restored["fallback"], "");
    assert_restored(restored, &output);
}

#[test]
fn a_new_image_that_cannot_restore_goes_back_to_the_old_binary_with_everything() {
    let dir = test_dir("handover_fallback");
    let (old, new) = probe_copies(&dir);
    // The new image deletes the old binary before it falls back, as `install` replaces it:
    // the fallback runs the binary that was running, from the fd kept open since its start.
    let output = run_probe(&dir, &old, &new, true);
    let phases = phases(&output);
    assert_eq!(
        phases
            .iter()
            .map(|p| p["phase"].as_str())
            .collect::<Vec<_>>(),
        ["first", "refusing", "restored"],
        "{output:?}"
    );
    assert_eq!(phases[1]["exe"], new.display().to_string());
    assert!(!old.exists());
    assert_eq!(phases[2]["exe"], format!("{} (deleted)", old.display()));
    assert!(
        phases.iter().all(|p| p["pid"] == phases[0]["pid"]),
        "{phases:?}"
    );
    assert_eq!(phases[2]["fallback"], "test: restore refused");
    assert_restored(&phases[2], &output);
}

#[test]
fn an_exec_that_fails_changes_nothing() {
    let dir = test_dir("handover_exec_fails");
    let (old, _) = probe_copies(&dir);
    // A script passes every check but cannot be executed by fd.
    let script = dir.join("script");
    std::fs::write(&script, "#!/bin/sh\necho should-not-run\n").expect("write");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let output = run_probe(&dir, &old, &script, false);
    let phases = phases(&output);
    assert_eq!(phases.len(), 2, "{output:?}");
    let carried_on = &phases[1];
    assert_eq!(carried_on["phase"], "carried-on");
    assert_eq!(carried_on["exe"], old.display().to_string());
    assert_eq!(
        carried_on["cloexec"], "true",
        "the handed fds get FD_CLOEXEC back"
    );
    assert_eq!(
        carried_on["mask_restored"], "true",
        "the signal mask is put back"
    );
    assert!(
        carried_on["error"].contains("cannot execute") && carried_on["error"].contains("script"),
        "{carried_on:?}"
    );
    assert!(output.status.success(), "{output:?}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("should-not-run"));
}

#[test]
fn check_upgrade_answers_for_a_loadable_config_and_this_state_format() {
    let sg = Supergo::new("check_upgrade");
    sg.write_config("[program.web]\ncommand = \"{probe} sleep\"\n\n[program.api]\ncommand = \"{probe} sleep\"\n");
    let config = sg.config_path.display().to_string();
    let ok = sg.run(&[
        "--check-upgrade",
        "--state-version",
        "1.0",
        "--config",
        &config,
    ]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{ok:?}{}", sg.dump());
    assert_eq!(
        stdout.trim(),
        format!(
            "supergo {}: state format 1.0, config ok (2 programs)",
            env!("CARGO_PKG_VERSION")
        )
    );
    // A newer minor version of the same format is fine; no version at all too.
    assert!(sg
        .run(&[
            "--check-upgrade",
            "--state-version",
            "1.7",
            "--config",
            &config
        ])
        .status
        .success());
    assert!(sg
        .run(&["--check-upgrade", "--config", &config])
        .status
        .success());
}

#[test]
fn check_upgrade_refuses_another_state_format_and_a_bad_config_with_the_reason() {
    let sg = Supergo::new("check_upgrade_refuses");
    sg.write_config("[program.web]\ncommand = \"{probe} sleep\"\nstart_secs = \"soon\"\n");
    let config = sg.config_path.display().to_string();
    let cases: [(&str, &[&str]); 2] = [
        (
            "2.0",
            &[
                "reads state format 1.x",
                "writes 2.0",
                "cannot take over in place",
            ],
        ),
        (
            "1.0",
            &["cannot load the config", "supergo.toml:3", "start_secs"],
        ),
    ];
    for (version, fragments) in cases {
        let out = sg.run(&[
            "--check-upgrade",
            "--state-version",
            version,
            "--config",
            &config,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        for fragment in fragments {
            assert!(stderr.contains(fragment), "{fragment:?} not in: {stderr}");
        }
    }
}
