//! Adoption (issue 15): the primitives a supergo started after its predecessor died needs to
//! take that predecessor's running children back instead of fighting them for their ports.
//!
//! - `state_file`: `[supergo] state_dir`, its safety checks, and one state file per control
//!   address, written atomically in the handover format (`handover`), without fds;
//! - `procfs`: a process's start time and process group (/proc/PID/stat, whose field 22 with
//!   the pid names one process even after pid reuse), the fd of a process that is a given
//!   socket (/proc/PID/fd), its `SUPERGO_PROGRAM` (/proc/PID/environ), a socket's inode;
//! - `pidfd`: pidfd_open, pidfd_getfd (the same listening socket, taken back from the
//!   process), pidfd_send_signal, and waiting for an exit through a pidfd.
//!
//! And what is built on them:
//! - `table`: the process table as the state file holds it; `record`: keeping the state
//!   file current as workers report their processes;
//! - `startup`: reading the state file at start and deciding, for each process it names,
//!   adopt, replace or stop (`verify` checks one process and takes a socket back from it);
//!   `plan`: those decisions, as handed to each program's worker;
//! - `watch`: seeing adopted processes exit (they are not supergo's children) through their
//!   pidfds.
//!
//! What a worker does with an adopted process lives with the worker (`program::adopted`).

pub mod pidfd;
pub mod plan;
pub mod procfs;
pub mod record;
pub mod startup;
pub mod state_file;
pub mod table;
#[cfg(test)]
mod table_tests;
#[cfg(test)]
mod tests;
pub mod verify;
pub mod watch;
