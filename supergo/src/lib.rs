//! supergo: a process supervisor whose reason to exist is zero-downtime restart.
//!
//! Threads and channels, no async runtime (see DESIGN.md, "Architecture"):
//! - `signals`: the only place that reaps children (`reaper`) and turns supergo's own
//!   signals into requests to the core;
//! - `supervisor`: the core thread, owner of the program table and the loaded config;
//! - `control`: the HTTP control API;
//! - `program`: one worker thread per program, a state machine over its processes;
//! - `spawn`: fork/exec with everything allocated before the fork;
//! - `listener`: binding the sockets that children receive at fd 3, 4, …;
//! - `notify`: `NOTIFY_SOCKET` readiness;
//! - `manager_notify`: supergo's own `NOTIFY_SOCKET` (READY/RELOADING/STOPPING to systemd);
//! - `descendants`: processes of a program that left its process group (setsid, daemons);
//! - `essential`: supergo's exit status when an `essential` program ends for good;
//! - `memory`: how supergo uses malloc (one arena, no per-thread cache, trimming);
//! - `handover`: the state format, and carrying it across an exec (upgrade in place);
//! - `adopt`: state file, /proc and pidfd primitives for adopting children after a crash.

pub mod adopt;
pub mod config;
pub mod control;
pub mod descendants;
pub mod essential;
pub mod handover;
pub mod http;
pub mod listener;
pub mod log;
pub mod logs;
pub mod manager_notify;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod program;
pub mod reaper;
pub mod reply;
pub mod signals;
pub mod spawn;
pub mod status;
pub mod supervisor;
