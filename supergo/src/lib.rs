//! supergo: a process supervisor whose reason to exist is zero-downtime restart.
//!
//! Threads and channels, no async runtime (see DESIGN.md, "Architecture"):
//! - `signals`: the only place that reaps children; routes each exit to its program's worker;
//! - `supervisor`: the core thread, owner of the program table and the loaded config;
//! - `control`: the HTTP control API;
//! - `program`: one worker thread per program, a state machine over its processes.

pub mod config;
pub mod listener;
