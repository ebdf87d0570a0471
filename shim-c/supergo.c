/* supergo.c: implementation of supergo.h (listeners, readiness, draining) on libc alone.
 * Shaped like systemd's sd-daemon.c; see supergo.h for the contract of each function. */

/* pipe2(), SOCK_CLOEXEC and friends are Linux/glibc extensions to C99 + POSIX. */
#define _GNU_SOURCE

#include "supergo.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* systemd's limit for one LISTEN_FDNAMES entry. */
#define NAME_MAX_LEN 255

/* Parses a whole string of decimal digits no larger than max. Strict on purpose: no sign, no
 * whitespace, no trailing garbage (strtol would take " +12x" as 12). Returns 0 or -EINVAL. */
static int parse_decimal(const char *s, unsigned long max, unsigned long *out) {
        unsigned long v = 0;

        if (!s || !*s)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                if (v > (max - (unsigned long) (*s - '0')) / 10)
                        return -EINVAL;
                v = v * 10 + (unsigned long) (*s - '0');
        }
        *out = v;
        return 0;
}

static int set_cloexec(int fd) {
        int flags = fcntl(fd, F_GETFD);

        if (flags < 0)
                return -errno;
        if (flags & FD_CLOEXEC)
                return 0;
        if (fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
                return -errno;
        return 0;
}

/* 1 when fd is a socket in the listening state, else 0 (closed, not a socket, not listening). */
static int is_listening_socket(int fd) {
        int accepting = 0;
        socklen_t len = sizeof(accepting);

        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0)
                return 0;
        return accepting != 0;
}

int supergo_listen_fds(int unset_environment) {
        const char *e;
        unsigned long pid, n, i;
        int r;

        e = getenv("LISTEN_FDS");
        if (!e) {
                /* The original supergo's contract: fd 3, no variables. Only a socket that is
                 * listening counts, so a stray inherited fd 3 (a pipe, a file) is not taken. */
                r = 0;
                if (is_listening_socket(SUPERGO_LISTEN_FDS_START)) {
                        r = set_cloexec(SUPERGO_LISTEN_FDS_START);
                        if (r == 0)
                                r = 1;
                }
                goto finish;
        }

        /* As sd_listen_fds: without LISTEN_PID the variables cannot be proven to be ours. */
        e = getenv("LISTEN_PID");
        if (!e) {
                r = 0;
                goto finish;
        }
        r = parse_decimal(e, (unsigned long) INT_MAX, &pid);
        if (r < 0)
                goto finish;
        if (pid == 0) {
                r = -EINVAL;
                goto finish;
        }
        /* Inherited from a parent that was given the fds: they are not ours. */
        if (pid != (unsigned long) getpid()) {
                r = 0;
                goto finish;
        }

        r = parse_decimal(getenv("LISTEN_FDS"), (unsigned long) (INT_MAX - SUPERGO_LISTEN_FDS_START), &n);
        if (r < 0)
                goto finish;

        /* CLOEXEC, as sd_listen_fds does: the fds are for this process, not for what it runs.
         * This also proves each fd is open (EBADF otherwise). */
        for (i = 0; i < n; i++) {
                r = set_cloexec(SUPERGO_LISTEN_FDS_START + (int) i);
                if (r < 0)
                        goto finish;
        }
        r = (int) n;

finish:
        if (unset_environment) {
                unsetenv("LISTEN_PID");
                unsetenv("LISTEN_FDS");
                unsetenv("LISTEN_FDNAMES");
        }
        return r;
}

/* systemd's fdname_is_valid(): 1..255 printable ASCII characters, no ':'. */
static int name_is_valid(const char *s, size_t len) {
        size_t i;

        if (len == 0 || len > NAME_MAX_LEN)
                return 0;
        for (i = 0; i < len; i++)
                if (s[i] < ' ' || s[i] > '~' || s[i] == ':')
                        return 0;
        return 1;
}

int supergo_listen_fd_by_name(const char *name) {
        const char *names, *p, *end;
        size_t want;
        int n, i, r;

        if (!name || !*name)
                return -EINVAL;
        want = strlen(name);

        n = supergo_listen_fds(0);
        if (n < 0)
                return n;
        if (n == 0)
                return -ENXIO;

        names = getenv("LISTEN_FDNAMES");
        if (!names) {
                /* systemd names every fd "unknown" when no names were given. */
                return strcmp(name, "unknown") == 0 ? SUPERGO_LISTEN_FDS_START : -ENOENT;
        }

        /* Walk the colon-separated list without copying it. The whole list is validated
         * before answering, so a malformed environment is reported whatever name is asked. */
        r = -ENOENT;
        p = names;
        for (i = 0; i < n; i++) {
                end = strchr(p, ':');
                if (!end)
                        end = p + strlen(p);
                if (!name_is_valid(p, (size_t) (end - p)))
                        return -EINVAL;
                if (r == -ENOENT && (size_t) (end - p) == want && memcmp(p, name, want) == 0)
                        r = SUPERGO_LISTEN_FDS_START + i;
                if (*end == '\0') {
                        if (i != n - 1)
                                return -EINVAL; /* fewer names than fds */
                        break;
                }
                p = end + 1;
                if (i == n - 1)
                        return -EINVAL; /* more names than fds */
        }
        return r;
}

int supergo_notify(const char *state) {
        struct sockaddr_un sa;
        struct timeval timeout;
        const char *e;
        socklen_t sa_len;
        size_t len;
        ssize_t sent;
        int fd = -1, r;

        if (!state)
                return -EINVAL;

        e = getenv("NOTIFY_SOCKET");
        if (!e || !*e)
                return 0;
        if (e[0] != '/' && e[0] != '@')
                return -EAFNOSUPPORT;

        len = strlen(e);
        if (len > sizeof(sa.sun_path) - (e[0] == '/' ? 1 : 0))
                return -EINVAL;

        memset(&sa, 0, sizeof(sa));
        sa.sun_family = AF_UNIX;
        memcpy(sa.sun_path, e, len);
        if (e[0] == '@') {
                /* Abstract namespace: a leading NUL, and the length counts exactly the name
                 * bytes (a trailing NUL would become part of the name). */
                sa.sun_path[0] = '\0';
                sa_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len);
        } else
                sa_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len + 1);

        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                r = -errno;
                goto finish;
        }

        /* A unix datagram send blocks while the receiver's queue is full. Bound the wait: a
         * serving process must not hang on a stalled supervisor (EAGAIN after the timeout). */
        timeout.tv_sec = 2;
        timeout.tv_usec = 0;
        if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) < 0) {
                r = -errno;
                goto finish;
        }

        len = strlen(state);
        /* MSG_NOSIGNAL: a vanished peer is an error to return, not a SIGPIPE to die of.
         * EINTR means nothing was sent (a drain handler has no SA_RESTART): send again. */
        do
                sent = sendto(fd, state, len, MSG_NOSIGNAL, (const struct sockaddr *) &sa, sa_len);
        while (sent < 0 && errno == EINTR);
        if (sent < 0) {
                r = errno == EWOULDBLOCK ? -EAGAIN : -errno;
                goto finish;
        }
        /* A datagram goes whole or not at all, so sent == len here. */
        r = 1;

finish:
        if (fd >= 0)
                close(fd);
        return r;
}

int supergo_notify_ready(void) {
        return supergo_notify("READY=1");
}

static volatile sig_atomic_t drain_signal = 0;
static int drain_pipe[2] = { -1, -1 };

static void drain_handler(int sig) {
        int saved_errno = errno;
        ssize_t ignored;

        if (drain_signal == 0)
                drain_signal = sig;
        /* The write end is non-blocking: when the pipe is already full of earlier signals the
         * write fails with EAGAIN, which is fine, it is readable anyway. */
        ignored = write(drain_pipe[1], "", 1);
        (void) ignored;
        errno = saved_errno;
}

int supergo_drain_fd(void) {
        static const int stop_signals[] = { SIGTERM, SIGINT };
        struct sigaction sa;
        size_t i;
        int r;

        if (drain_pipe[0] >= 0)
                return drain_pipe[0];

        /* O_CLOEXEC: programs we run must not hold our pipe. O_NONBLOCK: the handler must
         * never block, and a reader that drains the pipe must not either. */
        if (pipe2(drain_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
                r = -errno;
                drain_pipe[0] = drain_pipe[1] = -1;
                return r;
        }

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = drain_handler;
        /* No SA_RESTART: a blocking accept()/poll() in the thread that takes the signal must
         * return EINTR so its loop can see the request, instead of sleeping on. Each handler
         * blocks the other stop signal while it runs. */
        sa.sa_flags = 0;
        sigemptyset(&sa.sa_mask);
        for (i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
                sigaddset(&sa.sa_mask, stop_signals[i]);

        for (i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++) {
                if (sigaction(stop_signals[i], &sa, NULL) < 0) {
                        r = -errno;
                        goto fail;
                }
        }
        return drain_pipe[0];

fail:
        /* Put the signals back to their default before closing the pipe the handler uses. */
        sa.sa_handler = SIG_DFL;
        for (i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
                (void) sigaction(stop_signals[i], &sa, NULL);
        close(drain_pipe[0]);
        close(drain_pipe[1]);
        drain_pipe[0] = drain_pipe[1] = -1;
        return r;
}

int supergo_drain_requested(void) {
        return (int) drain_signal;
}
