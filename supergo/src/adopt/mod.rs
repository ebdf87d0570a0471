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
//! What adoption does with them (which processes to adopt, replace or stop) belongs to the
//! supervisor; these modules only answer questions about the system, exactly.

pub mod pidfd;
pub mod procfs;
pub mod state_file;
#[cfg(test)]
mod tests;
