//! The integration tests: the real `supergo`, `supergoctl` and children over real sockets,
//! compiled as one test binary (`integration`) that shares the `util` harness.

mod adoption;
mod api;
mod child_contract;
mod children;
mod combined;
mod config_check;
mod container;
mod container_output;
mod control_hardening;
mod control_plane;
mod escaped_helpers;
mod exit_status;
mod handover;
mod lifecycle;
mod logs;
mod memory_settings;
mod notify_hardening;
mod readiness;
mod regressions;
mod restart;
mod service_manager;
mod settings;
mod spawn_fd_table;
mod spawn_hardening;
mod update;
mod upgrade;
mod util;
mod util_selftest;
mod waiters;
