//! The scenarios, and what they share: which systems take part, a one-shot `GET /`, and the
//! result file's envelope.

mod bad_deploy;
mod by_cause;
mod churn;
mod footprint;
mod restart;
mod scale;
mod shape;
mod upgrade;

pub use shape::Shape;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::load::{parse_response, Parsed};
use crate::report::{self, Table};
use crate::setup;
use crate::systems::Peer;
use crate::Ctx;

pub fn run(ctx: &Ctx) -> Result<(), String> {
    let machine = setup::machine();
    let provenance = setup::provenance(&ctx.paths);
    println!(
        "# supergo {}{}\n",
        provenance["commit"].as_str().unwrap_or("(unknown commit)"),
        if provenance["dirty"].as_bool().unwrap_or(false) {
            " (work tree with uncommitted changes)"
        } else {
            ""
        }
    );
    println!(
        "# bench {}: {} CPU(s), {}, kernel {}, load average {}\n",
        ctx.opts.scenario,
        machine["nproc"],
        machine["cpu_model"],
        machine["kernel"],
        machine["loadavg_at_start"]
    );
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (tables, results) = match ctx.opts.scenario.as_str() {
        "restart" => restart::run(ctx)?,
        "footprint" => footprint::run(ctx)?,
        "scale" => scale::run(ctx)?,
        "churn" => churn::run(ctx)?,
        "bad-deploy" => bad_deploy::run(ctx)?,
        "upgrade" => upgrade::run(ctx)?,
        other => return Err(format!("unknown scenario `{other}`")),
    };
    let rendered: Vec<String> = tables.iter().map(Table::render).collect();
    println!("\n{}", rendered.join("\n"));
    let value = json!({
        "scenario": ctx.opts.scenario,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "started_unix": started,
        "machine": machine,
        "measured": provenance,
        "tables_markdown": rendered,
        "results": results,
    });
    report::write_json(&ctx.opts.json, &value)?;
    println!("results: {}", ctx.opts.json.display());
    Ok(())
}

/// The systems of `wanted` that can run here, in order; every missing peer is said loudly.
pub fn systems(ctx: &Ctx, wanted: &[Peer]) -> Vec<Peer> {
    let mut out = Vec::new();
    for &peer in &ctx.opts.systems {
        if !wanted.contains(&peer) || out.contains(&peer) {
            continue;
        }
        let missing = match peer {
            Peer::Supergo => None,
            Peer::Supervisord => ctx.installed.supervisord.as_ref().err(),
            Peer::CircusRestart | Peer::CircusReload => ctx.installed.circus.as_ref().err(),
        };
        match missing {
            None => out.push(peer),
            Some(why) => eprintln!(
                "\n!!!!! SKIPPING {}: {why} !!!!!\n",
                peer.label().to_uppercase()
            ),
        }
    }
    out
}

/// Column names for a table over `peers`.
pub fn labels(peers: &[Peer]) -> Vec<String> {
    peers.iter().map(|p| p.label().to_string()).collect()
}

/// One `GET /` on a fresh connection: the answering pid.
pub fn get_pid(addr: SocketAddr, timeout: Duration) -> Result<u32, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|_| s.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("{addr}: {e}"))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        match parse_response(&buf) {
            Parsed::Complete(r) if r.status == 200 => {
                return r.pid.ok_or_else(|| format!("{addr}: no pid in the answer"))
            }
            Parsed::Complete(r) => return Err(format!("{addr}: HTTP {}", r.status)),
            Parsed::Invalid => return Err(format!("{addr}: not an HTTP answer")),
            Parsed::Incomplete => {}
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err(format!("{addr}: closed before the answer")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{addr}: {e}")),
        }
    }
}

/// Waits until `addr` answers `GET /`.
pub fn wait_serving(addr: SocketAddr, timeout: Duration) -> Result<u32, String> {
    let t = Instant::now();
    loop {
        match get_pid(addr, Duration::from_secs(2)) {
            Ok(pid) => return Ok(pid),
            Err(e) if t.elapsed() >= timeout => {
                return Err(format!(
                    "{addr} not serving after {:.0} s: {e}",
                    timeout.as_secs_f64()
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// `Some(x)` as JSON, `None` as null.
pub fn opt(v: Option<f64>) -> Value {
    v.map_or(Value::Null, Value::from)
}
