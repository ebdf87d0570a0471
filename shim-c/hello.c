/* hello.c: the process side of hello-c, the C example child (an HTTP/1.1 server on the
 * shim): arguments, listeners, the accept loop, a thread per connection, and the drain.
 * HTTP itself lives in hello_http.c.
 *
 * Usage: hello-c [--fd N | --listen HOST:PORT]. The listeners are, in this order: fd N; the
 * fds from LISTEN_FDS (or fd 3 when it is a listening socket and LISTEN_FDS is unset); a
 * socket bound to --listen (port 0 picks a free one). "hello-c: listening on ADDR" goes to
 * stderr for each; READY=1 goes to NOTIFY_SOCKET when it is set.
 *
 * Shape: the main thread poll()s the listeners and the shim's drain fd, and accepts; each
 * connection gets a detached thread with the stop signals blocked. On SIGTERM/SIGINT the main
 * thread closes its listeners (the kernel keeps queueing connections on supergo's copy, for
 * the next generation), waits until every connection thread has finished (hello_http.c
 * finishes requests in progress and closes idle connections), and hello_c_main returns 0. */

#define _GNU_SOURCE

#include "hello.h"
#include "supergo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_LISTENERS 16
#define THREAD_STACK (256 * 1024)

static int drain_fd = -1;

/* Connection threads still running; the main thread waits for none before returning. */
static pthread_mutex_t active_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t active_done = PTHREAD_COND_INITIALIZER;
static int active;

static int is_listening(int fd) {
        int on = 0;
        socklen_t len = sizeof(on);

        return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

/* ---- a thread per connection ---- */

static void *connection_main(void *arg) {
        hello_http_serve((int) (intptr_t) arg, drain_fd);

        pthread_mutex_lock(&active_lock);
        if (--active == 0)
                pthread_cond_broadcast(&active_done);
        pthread_mutex_unlock(&active_lock);
        return NULL;
}

/* Starts a detached thread for connection fd; on failure closes fd. */
static void start_connection(int fd) {
        pthread_attr_t attr;
        sigset_t block, old;
        pthread_t thread;
        int r;

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* A thread per connection: small stacks (the buffers are on the heap) keep a few
         * thousand connections cheap. */
        pthread_attr_setstacksize(&attr, THREAD_STACK);

        /* The new thread inherits the creator's signal mask. With the stop signals (and the
         * accept guard's SIGALRM) blocked there, the kernel delivers them to the main thread
         * only, where they must interrupt accept(), and never cuts a request short. */
        sigemptyset(&block);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGALRM);
        pthread_sigmask(SIG_BLOCK, &block, &old);

        pthread_mutex_lock(&active_lock);
        active++;
        pthread_mutex_unlock(&active_lock);
        r = pthread_create(&thread, &attr, connection_main, (void *) (intptr_t) fd);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);

        if (r != 0) {
                pthread_mutex_lock(&active_lock);
                active--;
                pthread_mutex_unlock(&active_lock);
                fprintf(stderr, HELLO_PROG ": cannot start a thread for a connection: %s\n", strerror(r));
                close(fd);
        }
}

/* ---- listeners ---- */

/* Writes "127.0.0.1:8080", "[::1]:8080" or "unix:/path" for the socket fd. */
static void describe(int fd, char *out, size_t cap) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        char host[INET6_ADDRSTRLEN];

        memset(&ss, 0, sizeof(ss));
        if (getsockname(fd, (struct sockaddr *) &ss, &len) < 0) {
                snprintf(out, cap, "fd %d", fd);
                return;
        }
        if (ss.ss_family == AF_INET) {
                struct sockaddr_in *sin = (struct sockaddr_in *) &ss;
                inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
                snprintf(out, cap, "%s:%u", host, ntohs(sin->sin_port));
        } else if (ss.ss_family == AF_INET6) {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;
                inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
                snprintf(out, cap, "[%s]:%u", host, ntohs(sin6->sin6_port));
        } else if (ss.ss_family == AF_UNIX) {
                struct sockaddr_un *su = (struct sockaddr_un *) &ss;
                snprintf(out, cap, "unix:%s", su->sun_path[0] ? su->sun_path : "(abstract)");
        } else
                snprintf(out, cap, "fd %d", fd);
}

/* Binds and listens on "HOST:PORT", "[V6]:PORT" or ":PORT" (all interfaces). Returns the fd,
 * or -1 after printing why. */
static int listen_on(const char *addr) {
        char host[256];
        const char *colon = strrchr(addr, ':'), *h = addr;
        struct addrinfo hints, *res = NULL, *ai;
        size_t host_len;
        int fd = -1, on = 1, r, err = 0;

        if (!colon || !colon[1]) {
                fprintf(stderr, HELLO_PROG ": --listen %s: want HOST:PORT\n", addr);
                return -1;
        }
        host_len = (size_t) (colon - addr);
        if (host_len >= 2 && addr[0] == '[' && colon[-1] == ']') {
                h = addr + 1;
                host_len -= 2;
        }
        if (host_len >= sizeof(host)) {
                fprintf(stderr, HELLO_PROG ": --listen %s: host name too long\n", addr);
                return -1;
        }
        memcpy(host, h, host_len);
        host[host_len] = '\0';

        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        r = getaddrinfo(host_len ? host : NULL, colon + 1, &hints, &res);
        if (r != 0) {
                fprintf(stderr, HELLO_PROG ": --listen %s: %s\n", addr, gai_strerror(r));
                return -1;
        }
        for (ai = res; ai; ai = ai->ai_next) {
                /* SOCK_CLOEXEC in the same call: nothing we might run inherits it. */
                fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
                if (fd < 0) {
                        err = errno;
                        continue;
                }
                /* SO_REUSEADDR: a restart by hand must not wait for TIME_WAIT to expire. */
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
                        break;
                err = errno;
                close(fd);
                fd = -1;
        }
        freeaddrinfo(res);
        if (fd < 0)
                fprintf(stderr, HELLO_PROG ": --listen %s: %s\n", addr, strerror(err));
        return fd;
}

/* Fills fds with the listeners to serve on; returns how many, or -1 after printing why. */
static int take_listeners(const char *fd_arg, const char *listen_arg, int *fds) {
        unsigned long fd;
        int n, i;

        if (fd_arg) {
                if (hello_parse_ulong(fd_arg, strlen(fd_arg), 65535, &fd) < 0) {
                        fprintf(stderr, HELLO_PROG ": --fd %s: want a file descriptor number\n", fd_arg);
                        return -1;
                }
                if (!is_listening((int) fd)) {
                        fprintf(stderr, HELLO_PROG ": --fd %lu: not a listening socket\n", fd);
                        return -1;
                }
                /* Ours alone: nothing we might run should hold it open. */
                fcntl((int) fd, F_SETFD, FD_CLOEXEC);
                fds[0] = (int) fd;
                return 1;
        }

        /* 1: we run no other program, so the variables are of no further use to anyone. */
        n = supergo_listen_fds(1);
        if (n < 0) {
                fprintf(stderr, HELLO_PROG ": bad LISTEN_FDS/LISTEN_PID: %s\n", strerror(-n));
                return -1;
        }
        if (n > MAX_LISTENERS) {
                fprintf(stderr, HELLO_PROG ": LISTEN_FDS=%d: at most %d listeners\n", n, MAX_LISTENERS);
                return -1;
        }
        for (i = 0; i < n; i++) {
                fds[i] = SUPERGO_LISTEN_FDS_START + i;
                if (!is_listening(fds[i])) {
                        fprintf(stderr, HELLO_PROG ": fd %d from LISTEN_FDS: not a listening socket\n", fds[i]);
                        return -1;
                }
        }
        if (n > 0)
                return n;

        if (listen_arg) {
                fds[0] = listen_on(listen_arg);
                return fds[0] < 0 ? -1 : 1;
        }
        fprintf(stderr, HELLO_PROG ": no listener: expected one at fd 3 (LISTEN_FDS), or --fd N, or --listen HOST:PORT\n");
        return -1;
}

/* ---- accepting, and the drain ---- */

static void on_alarm(int sig) {
        (void) sig;
}

/* Accepts until a stop signal. Returns the exit status: 0, or 1 when accepting failed. */
static int accept_loop(const int *fds, int n) {
        struct pollfd p[MAX_LISTENERS + 1];
        int i, r, fd, err;

        for (i = 0; i < n; i++) {
                p[i].fd = fds[i];
                p[i].events = POLLIN;
        }
        p[n].fd = drain_fd;
        p[n].events = POLLIN;

        for (;;) {
                r = poll(p, (nfds_t) n + 1, -1);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, HELLO_PROG ": poll: %s\n", strerror(errno));
                        return 1;
                }
                if (p[n].revents || supergo_drain_requested())
                        return 0;

                for (i = 0; i < n; i++) {
                        if (p[i].revents & (POLLERR | POLLHUP | POLLNVAL)) {
                                fprintf(stderr, HELLO_PROG ": listener fd %d failed (poll revents 0x%x)\n", fds[i], p[i].revents);
                                return 1;
                        }
                        if (!(p[i].revents & POLLIN))
                                continue;

                        /* The listener stays blocking: its open file description is shared
                         * with supergo and with the other generation, and O_NONBLOCK there
                         * would change accept() for them too. So when the other process wins
                         * the race for this connection, accept() sleeps until the next one. A
                         * stop signal interrupts it (no SA_RESTART), and should one land just
                         * before accept() is entered, the alarm does so within a second. */
                        alarm(1);
                        fd = accept4(fds[i], NULL, NULL, SOCK_CLOEXEC);
                        err = errno;
                        alarm(0);
                        if (fd >= 0) {
                                start_connection(fd);
                                continue;
                        }
                        switch (err) {
                        case EINTR:
                        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
                        case EWOULDBLOCK:
#endif
                        case ECONNABORTED:
                        case EPROTO:
                        case ENETDOWN:
                        case ENOPROTOOPT:
                        case EHOSTDOWN:
                        case ENONET:
                        case EHOSTUNREACH:
                        case EOPNOTSUPP:
                        case ENETUNREACH:
                                /* accept(2): errors of the new connection, not the listener. */
                                break;
                        case EMFILE:
                        case ENFILE:
                        case ENOBUFS:
                        case ENOMEM:
                                /* Out of fds or memory: the connection waits in the backlog.
                                 * Pause instead of spinning on a listener that stays
                                 * readable. */
                                fprintf(stderr, HELLO_PROG ": accept on fd %d: %s\n", fds[i], strerror(err));
                                (void) poll(&p[n], 1, 100);
                                break;
                        default:
                                fprintf(stderr, HELLO_PROG ": accept on fd %d: %s\n", fds[i], strerror(err));
                                return 1;
                        }
                }
        }
}

static int usage(FILE *to, int status) {
        fprintf(to, "usage: " HELLO_PROG " [--fd N | --listen HOST:PORT]\n"
                    "Serves GET /, /hello?name=X and /sleep?ms=N on the listener passed at fd 3\n"
                    "(LISTEN_FDS), at fd N, or bound to HOST:PORT; drains on SIGTERM.\n");
        return status;
}

int hello_c_main(int argc, char **argv) {
        const char *fd_arg = NULL, *listen_arg = NULL;
        int fds[MAX_LISTENERS], n, i, status, r;
        struct sigaction sa;
        char where[160];

        for (i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
                        return usage(stdout, 0);
                if (strcmp(a, "--fd") == 0 || strcmp(a, "--listen") == 0) {
                        if (i + 1 == argc) {
                                fprintf(stderr, HELLO_PROG ": %s needs a value\n", a);
                                return usage(stderr, 2);
                        }
                        *(a[2] == 'f' ? &fd_arg : &listen_arg) = argv[++i];
                } else if (strncmp(a, "--fd=", 5) == 0)
                        fd_arg = a + 5;
                else if (strncmp(a, "--listen=", 9) == 0)
                        listen_arg = a + 9;
                else {
                        fprintf(stderr, HELLO_PROG ": unknown argument '%s'\n", a);
                        return usage(stderr, 2);
                }
        }

        /* First of all, so that a stop signal during start-up also ends in a clean drain. */
        drain_fd = supergo_drain_fd();
        if (drain_fd < 0) {
                fprintf(stderr, HELLO_PROG ": cannot install the SIGTERM handler: %s\n", strerror(-drain_fd));
                return 1;
        }
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_alarm; /* no SA_RESTART: its whole point is to interrupt accept() */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGALRM, &sa, NULL);

        n = take_listeners(fd_arg, listen_arg, fds);
        if (n < 0)
                return 1;
        for (i = 0; i < n; i++) {
                describe(fds[i], where, sizeof(where));
                fprintf(stderr, HELLO_PROG ": listening on %s\n", where);
        }

        /* The listeners already queue connections, so we are ready now. */
        r = supergo_notify_ready();
        if (r < 0)
                fprintf(stderr, HELLO_PROG ": cannot send READY=1 to NOTIFY_SOCKET=%s: %s\n", getenv("NOTIFY_SOCKET"),
                        strerror(-r));

        status = accept_loop(fds, n);

        /* Stop accepting: our copies go away, supergo's (and the next generation's) stay, and
         * with them every connection still in the backlog. */
        for (i = 0; i < n; i++)
                close(fds[i]);
        pthread_mutex_lock(&active_lock);
        if (supergo_drain_requested())
                fprintf(stderr, HELLO_PROG ": signal %d: listener closed, draining %d connection(s)\n",
                        supergo_drain_requested(), active);
        while (active > 0)
                pthread_cond_wait(&active_done, &active_lock);
        pthread_mutex_unlock(&active_lock);
        fprintf(stderr, HELLO_PROG ": drained, exiting with status %d\n", status);
        return status;
}
