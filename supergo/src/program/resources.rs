//! What a program's processes are given: its config, its listeners (fd 3, 4, …), its
//! `NOTIFY_SOCKET` and its log pipes; and the new config a handoff in progress will adopt.
//!
//! An upgrade would serialize the config (or reread it: the running one is what `reread`
//! compares against), the listeners by address (their fds go across the exec with the
//! listener pool), the notify socket's fd and path, and the log pipes (`outputs`). The
//! shared config is the core's view of `config`, not state of its own.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::outputs::Outputs;
use crate::config::ProgramConfig;
use crate::listener::Listener;
use crate::notify::NotifySocket;

/// A program's effective config: the one its serving process runs with. The worker updates
/// it when a handoff to a new config succeeds, so a failed `update` leaves the old one here
/// and a later `reread` still shows the change.
pub type SharedConfig = Arc<Mutex<Arc<ProgramConfig>>>;

/// The config and listeners that `update` brought, which a handoff adopts when it succeeds.
pub(super) struct Replacement {
    pub config: Arc<ProgramConfig>,
    pub listeners: Vec<Arc<Listener>>,
}

pub(super) struct Resources {
    /// The config of the serving process (the effective config).
    pub config: Arc<ProgramConfig>,
    shared: SharedConfig,
    pub listeners: Vec<Arc<Listener>>,
    /// Why the listeners could not be bound; tried again at the next start.
    pub listen_error: Option<String>,
    /// Boxed: most programs have none (`ready = "notify"` only).
    pub notify: Option<Box<NotifySocket>>,
    pub outputs: Option<Outputs>,
    /// The handoff in progress runs with this config, adopted only if it succeeds.
    pub incoming: Option<Replacement>,
    /// When a notification from a foreign process was last logged (a rate limit, not
    /// serialized).
    pub foreign_warned: Option<Instant>,
}

impl Resources {
    pub fn new(
        config: Arc<ProgramConfig>,
        shared: SharedConfig,
        listeners: Result<Vec<Arc<Listener>>, String>,
    ) -> Resources {
        let (listeners, listen_error) = match listeners {
            Ok(l) => (l, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        Resources {
            config,
            shared,
            listeners,
            listen_error,
            notify: None,
            outputs: None,
            incoming: None,
            foreign_warned: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Takes a new config and its listeners (the old listeners are released: a socket no
    /// other holder keeps is closed) and drops the notify socket, made for the old config.
    pub fn adopt(&mut self, config: Arc<ProgramConfig>, listeners: Vec<Arc<Listener>>) {
        self.set_config(config);
        self.listeners = listeners;
        self.notify = None;
    }

    /// Takes what a handoff was started with; the notify socket stays, since the new
    /// process was given it.
    pub fn take_over(&mut self, replacement: Replacement) {
        self.set_config(replacement.config);
        self.listeners = replacement.listeners;
    }

    fn set_config(&mut self, config: Arc<ProgramConfig>) {
        *self.shared.lock().unwrap_or_else(|p| p.into_inner()) = config.clone();
        self.config = config;
    }
}
