//! shim-c: the C side of supergo's child protocol, and a C example child.
//!
//! `supergo.h` / `supergo.c` are a drop-in for C programs, shaped like systemd's
//! `sd-daemon.h`: copy the two files into a project, compile them as C99 against libc. They
//! implement what a child of supergo sees (DESIGN.md, "Child protocol"):
//!
//! - [`supergo_listen_fds`]: the listeners at fd 3, 4, … from `LISTEN_FDS`, counted only
//!   when `LISTEN_PID` is the caller's pid, exactly as `sd_listen_fds`. **Where it departs from
//!   systemd:** when `LISTEN_FDS` is not set at all and fd 3 is a listening socket, it returns
//!   1, because the original supergo passed fd 3 without any variable.
//! - [`supergo_listen_fd_by_name`]: the fd carrying a `LISTEN_FDNAMES` name.
//! - [`supergo_notify`]: one datagram of `KEY=VALUE` lines to `NOTIFY_SOCKET` (a path, or
//!   `@name` in the abstract namespace), e.g. `READY=1`.
//! - [`supergo_drain_fd`]: a self-pipe that turns readable on SIGTERM/SIGINT, to `poll()` next
//!   to the listener, and [`supergo_drain_requested`].
//!
//! Every function returns a negative errno on error, 0 when it does not apply, and a positive
//! value on success. This crate builds them (see `build.rs`) and declares them for Rust; its
//! tests call them over FFI.
//!
//! The `hello-c` binary is the C example child: an HTTP/1.1 server written in C on the shim
//! (`hello.c`, `hello_http.c`), started by a Rust `main` that calls [`hello_c_main`].

use std::ffi::{c_char, c_int};

/// The first passed listener; the next ones follow at 4, 5, …
pub const SUPERGO_LISTEN_FDS_START: c_int = 3;

extern "C" {
    /// How many listeners were passed (at fd 3 …); 0 when none; negative errno when the
    /// environment is malformed. Non-zero `unset_environment` removes `LISTEN_PID`,
    /// `LISTEN_FDS` and `LISTEN_FDNAMES` (not thread-safe: `unsetenv`).
    pub fn supergo_listen_fds(unset_environment: c_int) -> c_int;

    /// The fd whose `LISTEN_FDNAMES` entry is `name`; `-ENOENT` when no fd has that name,
    /// `-ENXIO` when no listener was passed, `-EINVAL` for a malformed `LISTEN_FDNAMES`.
    pub fn supergo_listen_fd_by_name(name: *const c_char) -> c_int;

    /// Sends `state` as one datagram to `NOTIFY_SOCKET`: 1 when sent, 0 when the variable is
    /// unset, negative errno on failure.
    pub fn supergo_notify(state: *const c_char) -> c_int;

    /// `supergo_notify("READY=1")`.
    pub fn supergo_notify_ready() -> c_int;

    /// Installs the SIGTERM/SIGINT handlers (once) and returns the read end of the drain
    /// self-pipe, or a negative errno.
    pub fn supergo_drain_fd() -> c_int;

    /// The first stop signal received, or 0.
    pub fn supergo_drain_requested() -> c_int;

    /// The whole hello-c server: `main(argc, argv)` in C. Returns the exit status.
    pub fn hello_c_main(argc: c_int, argv: *mut *mut c_char) -> c_int;
}

#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod support;

#[cfg(test)]
mod tests;
