//! supergo's memory settings (issue 17, `supergo::memory`): it execs itself once with
//! glibc tunables of its own, and neither its children nor its name show it.

use crate::util::{fail, Supergo, TIMEOUT};

const PROGRAM: &str = r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.2
environment = { PROBE_REPORT = "{dir}/web.json" }
"#;

fn child_env(sg: &Supergo) -> serde_json::Value {
    sg.wait_state("web", "Running", TIMEOUT);
    sg.read_report("web.json")["env"].clone()
}

/// Its own tunables and the mark of its exec stay inside supergo.
#[test]
fn a_child_sees_no_tunables_of_supergos_own() {
    let sg = Supergo::start("memory_no_tunables", PROGRAM);
    let env = child_env(&sg);
    let names: Vec<&String> = env
        .as_object()
        .unwrap_or_else(|| fail(format!("no env in the report: {env}")))
        .keys()
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("GLIBC_TUNABLES") || n.starts_with("SUPERGO_MALLOC")),
        "{names:?}"
    );
}

/// An operator's `GLIBC_TUNABLES` reaches the children as the operator wrote it.
#[test]
fn a_child_sees_the_operators_tunables_unchanged() {
    let sg = Supergo::new("memory_operator_tunables");
    sg.write_config(PROGRAM);
    sg.spawn_with_env(&[], &[("GLIBC_TUNABLES", "glibc.malloc.check=0")]);
    sg.wait_ready();
    let env = child_env(&sg);
    assert_eq!(env["GLIBC_TUNABLES"], "glibc.malloc.check=0", "{env}");
    assert!(env.get("SUPERGO_MALLOC_TUNED").is_none(), "{env}");
}

/// The exec through /proc/self/exe does not rename supergo to "exe": `ps`, `pgrep supergo`
/// and a service manager's logs still see its name.
#[test]
fn supergo_keeps_its_name_after_its_own_exec() {
    let sg = Supergo::start("memory_name", PROGRAM);
    sg.wait_state("web", "Running", TIMEOUT);
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", sg.pid()))
        .unwrap_or_else(|e| fail(format!("cannot read supergo's name: {e}")));
    assert_eq!(comm.trim(), "supergo");
}
