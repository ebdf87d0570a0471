//! How long `GET /status`'s serialization of 1000 programs takes, three ways, on supergo's own
//! `ProgramStatus` (its source file is compiled in as is). Entries look like the bench's
//! realistic shape: a unix-socket listener and a stdout log file each, long temp-dir paths.

#[path = "../../../../supergo/src/status.rs"]
#[allow(dead_code)]
mod status;

use status::{OutputStatus, ProgramStatus, State};
use std::time::Instant;

const PROGRAMS: usize = 1000;
const RUNS: usize = 200;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        bytes = std::hint::black_box(f());
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (median(times), bytes)
}

fn main() {
    let dir = "/tmp/supergo-bench-24937-0-scale-supergo";
    let all: Vec<ProgramStatus> = (0..PROGRAMS)
        .map(|i| {
            let mut s = ProgramStatus::new(&format!("p{i:04}"));
            s.state = State::Running;
            s.pid = 100_000 + i as i32;
            s.generation = 1;
            s.start_time = 1_796_042_272;
            s.uptime_secs = 3.933345079421997;
            s.listeners = vec![format!("unix:{dir}/sockets/p{i:04}.sock")];
            s.output = vec![OutputStatus {
                stream: "stdout".into(),
                path: format!("{dir}/logs/p{i:04}.out"),
                bytes_written: 9,
                bytes_dropped: 0,
            }];
            s
        })
        .collect();
    let envelope = format!("{{\"status\":0,\"message\":\"{PROGRAMS} program(s)\",\"data\":");

    let mut buf: Vec<u8> = Vec::new();
    let (ms, bytes) = time(RUNS, || {
        buf.clear();
        buf.extend_from_slice(envelope.as_bytes());
        serde_json::to_writer(&mut buf, &all).expect("serializes");
        buf.push(b'}');
        buf.len()
    });
    println!("derived structs straight into a reused buffer:        {ms:.3} ms ({bytes} bytes)");

    let (ms, _) = time(RUNS, || {
        let snapshot: Vec<ProgramStatus> = all.iter().map(ProgramStatus::at_now).collect();
        buf.clear();
        buf.extend_from_slice(envelope.as_bytes());
        serde_json::to_writer(&mut buf, &snapshot).expect("serializes");
        buf.push(b'}');
        buf.len()
    });
    println!("the same after cloning every snapshot (at_now):       {ms:.3} ms");

    // Today: one Value tree per status (Supervisor::handle), then Reply::body's json! copies
    // the whole tree into the envelope and renders it to a String.
    let (ms, _) = time(RUNS / 4, || {
        let data: Vec<serde_json::Value> = all
            .iter()
            .map(|s| serde_json::to_value(s.at_now()).unwrap_or(serde_json::Value::Null))
            .collect();
        let data = serde_json::Value::Array(data);
        let body =
            serde_json::json!({ "status": 0, "message": "1000 program(s)", "data": data }).to_string();
        body.len()
    });
    println!("today's path (Value per status, json! copy, String):  {ms:.3} ms");
}
