//! The core's side of adoption at start (issue 15): a program that a dead supergo left
//! processes of gets a worker that takes them over (`program::launch_adopted`), and the
//! processes of a program no longer in the config are stopped by a worker of their own,
//! kept among the retiring programs (so status shows them draining and shutdown waits for
//! them), as if `update` had removed the program.

use std::sync::Arc;

use super::core::Supervisor;
use crate::adopt::plan::AdoptedProgram;
use crate::config::ProgramConfig;
use crate::error;
use crate::program;

impl Supervisor {
    /// Starts the worker of `program` with what adoption left it. Its listeners come from
    /// the pool, which holds the sockets taken back.
    pub(super) fn add_adopted(&mut self, program: Arc<ProgramConfig>, adopted: AdoptedProgram) {
        let name = program.name.clone();
        let listeners = match adopted.start_after.filter(|_| adopted.serving.is_none()) {
            // Binding now would fail: that process holds the socket.
            Some(pid) => Err(format!(
                "its listening sockets are still held by pid {pid}, which could not be adopted; they are bound once it has exited"
            )),
            None => self
                .ctx
                .pool
                .acquire_all(&program.listen_addrs, program.socket_mode),
        };
        match program::launch_adopted(program, listeners, self.ctx.clone(), adopted) {
            Ok(handle) => {
                self.programs.insert(name, handle);
            }
            Err(e) => error!("{name}: cannot start its worker thread: {e}; the processes adopted for it are not supervised"),
        }
    }

    /// Stops (drains) the processes of programs no longer in the config.
    pub(super) fn retire_removed(&mut self, removed: Vec<AdoptedProgram>) {
        for adopted in removed {
            let name = adopted.name.clone();
            match program::launch_removed(adopted, self.ctx.clone()) {
                Ok(handle) => self.retiring.push(handle),
                Err(e) => error!("{name}: cannot start a worker thread to stop its processes: {e}"),
            }
        }
    }
}
