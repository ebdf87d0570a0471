/* supergo.h: the child side of supergo's protocol, for C programs.
 *
 * A drop-in in the style of systemd's sd-daemon.h: copy supergo.h and supergo.c into your
 * tree, compile them as C99 against libc (Linux), and call:
 *
 *   supergo_listen_fds()         how many listeners were passed at fd 3, 4, ...
 *   supergo_listen_fd_by_name()  which of them carries a LISTEN_FDNAMES name
 *   supergo_notify()             tell the supervisor READY=1 (and friends)
 *   supergo_drain_fd()           a fd that becomes readable on SIGTERM/SIGINT, for poll()
 *
 * Every function returns a negative errno on error, 0 when it does not apply (nothing was
 * passed, no supervisor to notify, no stop signal yet), and a positive value on success.
 *
 * The protocol is systemd's socket activation (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) and
 * notification (NOTIFY_SOCKET), so a child built on this shim also runs under systemd. The one
 * extension is the original supergo's contract, which passed fd 3 with no variables at all:
 * see supergo_listen_fds(). */

#ifndef SUPERGO_H
#define SUPERGO_H

#ifdef __cplusplus
extern "C" {
#endif

/* The first passed listener; the next ones follow at 4, 5, ... */
#define SUPERGO_LISTEN_FDS_START 3

/* Returns how many listeners were passed, at fds SUPERGO_LISTEN_FDS_START ..
 * SUPERGO_LISTEN_FDS_START + n - 1; 0 when none were passed to this process; a negative errno
 * when the environment is malformed (-EINVAL) or a passed fd is not open (-EBADF).
 *
 * Like sd_listen_fds(): LISTEN_FDS counts for this process only when LISTEN_PID equals
 * getpid() (otherwise the variables were inherited from a parent, and 0 is returned); every
 * passed fd gets FD_CLOEXEC, so it does not leak into programs this process runs.
 *
 * Extension: when LISTEN_FDS is not set at all and fd 3 is a listening socket (SO_ACCEPTCONN),
 * returns 1 (the original supergo passed fd 3 without variables).
 *
 * When unset_environment is non-zero, LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES are removed
 * from the environment before returning, whatever the result (call it before starting
 * threads: unsetenv is not thread-safe). */
int supergo_listen_fds(int unset_environment);

/* Returns the passed listener (>= SUPERGO_LISTEN_FDS_START) whose LISTEN_FDNAMES entry equals
 * name; -ENOENT when listeners were passed but none has that name; -ENXIO when no listener was
 * passed to this process; -EINVAL when name is NULL or empty, or LISTEN_FDNAMES is malformed
 * (not one valid name per fd: printable ASCII without ':', 1..255 characters); or another
 * negative errno from supergo_listen_fds().
 *
 * When LISTEN_FDNAMES is not set, every passed fd is named "unknown", as in systemd. Reads the
 * environment: call it before supergo_listen_fds(1) removes the variables. */
int supergo_listen_fd_by_name(const char *name);

/* Sends state, newline-separated KEY=VALUE lines such as "READY=1\nSTATUS=serving", as one
 * datagram to the unix socket named by NOTIFY_SOCKET (a path, or "@name" for the abstract
 * namespace). Returns 1 when sent; 0 when NOTIFY_SOCKET is not set (no supervisor is
 * listening: not an error); a negative errno on failure: -EINVAL for a NULL state or a name too
 * long for a socket address, -EAFNOSUPPORT for a name that starts with neither '/' nor '@',
 * -EAGAIN when the supervisor's queue stayed full for 2 s, else the error of socket()/sendto().
 *
 * The receiver learns our pid from the kernel (SO_PASSCRED), so nothing else is sent. */
int supergo_notify(const char *state);

/* supergo_notify("READY=1"): same return rule. */
int supergo_notify_ready(void);

/* Installs handlers for SIGTERM and SIGINT, and returns the read end of a self-pipe
 * (O_CLOEXEC|O_NONBLOCK) that becomes readable when one of them arrives, and stays readable:
 * poll() it next to the listener, and do not read it if other threads poll it too. A negative
 * errno when pipe2() or sigaction() fails. Later calls return the same fd.
 *
 * The handlers are installed without SA_RESTART, so a blocking call (accept, poll, read) in
 * the thread that takes the signal fails with EINTR instead of sleeping on. Call it from the
 * main thread before starting other threads; block the two signals in threads that must not
 * be interrupted. */
int supergo_drain_fd(void);

/* Returns the number of the first stop signal received (SIGTERM or SIGINT, > 0), or 0 while
 * none has arrived (or supergo_drain_fd() was never called). Async-signal-safe. */
int supergo_drain_requested(void);

#ifdef __cplusplus
}
#endif

#endif /* SUPERGO_H */
