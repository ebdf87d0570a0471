/* hello_http.c: HTTP/1.1 on one connection of hello-c: read a request, route it, answer,
 * until the connection should close. Owns the HTTP contract of the example children
 * (DESIGN.md, "Child protocol"):
 *   GET /               -> 200 "pid: <pid>"
 *   GET /hello?name=X   -> 200 "hello, X"  ("Jack" when name is absent or empty)
 *   GET /sleep?ms=N     -> 200 "slept N ms", sent N ms later
 *   anything else       -> 404
 * HEAD works too. Keep-alive is the HTTP/1.1 default, "Connection: close" is honoured, and
 * every answer carries Content-Length. Request bodies are read and thrown away.
 *
 * Draining (the shim's drain fd is readable): the request in progress is finished and
 * answered with "Connection: close"; an idle keep-alive connection is closed. */

#define _GNU_SOURCE

#include "hello.h"
#include "supergo.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 16384                   /* request line + headers */
#define BODY_MAX (1024UL * 1024UL)       /* larger request bodies get 413 */
#define IDLE_TIMEOUT_MS 60000            /* keep-alive connection without a request */
#define READ_TIMEOUT_MS 10000            /* silence in the middle of a request */
#define DRAIN_GRACE_MS 500               /* see read_head() */
#define LINGER_MS 1000                   /* see linger_close() */
#define SEND_TIMEOUT_S 30
#define SLEEP_MAX_MS 3600000UL

/* Strict decimal: digits only, at most max. Returns 0, or -1. */
int hello_parse_ulong(const char *s, size_t n, unsigned long max, unsigned long *out) {
        unsigned long v = 0;
        size_t i;

        if (n == 0)
                return -1;
        for (i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                if (v > (max - (unsigned long) (s[i] - '0')) / 10)
                        return -1;
                v = v * 10 + (unsigned long) (s[i] - '0');
        }
        *out = v;
        return 0;
}

static void sleep_ms(unsigned long ms) {
        struct timespec t;

        t.tv_sec = (time_t) (ms / 1000);
        t.tv_nsec = (long) (ms % 1000) * 1000000L;
        /* nanosleep leaves the time still to sleep in t when a signal cuts it short. */
        while (nanosleep(&t, &t) < 0 && errno == EINTR)
                ;
}

static int send_all(int fd, const char *p, size_t len) {
        ssize_t n;

        while (len > 0) {
                /* MSG_NOSIGNAL: a client that went away is an error here, not a SIGPIPE. */
                n = send(fd, p, len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -1;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

/* Waits until fd is readable (or closed by the peer). Returns 1 then, 0 on timeout or error,
 * -1 when drain_fd (unless -1) turned readable first: a stop signal came. Data wins over the
 * stop signal: a request that has already arrived is served. */
static int wait_readable(int fd, int drain_fd, int timeout_ms) {
        struct pollfd p[2];
        int r;

        p[0].fd = fd;
        p[0].events = POLLIN;
        p[1].fd = drain_fd;
        p[1].events = POLLIN;
        do
                r = poll(p, drain_fd >= 0 ? 2 : 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r <= 0)
                return 0;
        if (p[0].revents)
                return 1;
        return -1;
}

/* Closes a connection without losing the answer just sent. close() with unread input (a
 * request the client pipelined, or sent as we decided to close) makes the kernel send a RST,
 * which can discard our answer before the client reads it. So: FIN first, then read and drop
 * what arrives until the client closes too, for at most LINGER_MS. */
static void linger_close(int fd) {
        char scratch[4096];
        struct timespec start, now;
        long left = LINGER_MS;

        shutdown(fd, SHUT_WR);
        clock_gettime(CLOCK_MONOTONIC, &start);
        while (left > 0 && wait_readable(fd, -1, (int) left) > 0) {
                if (recv(fd, scratch, sizeof(scratch), 0) <= 0)
                        break;
                clock_gettime(CLOCK_MONOTONIC, &now);
                left = LINGER_MS - ((now.tv_sec - start.tv_sec) * 1000L + (now.tv_nsec - start.tv_nsec) / 1000000L);
        }
        close(fd);
}

/* ---- one connection ---- */

struct conn {
        int fd;
        int drain_fd;
        size_t len; /* bytes in buf: the current request head, maybe more pipelined after it */
        char buf[HEAD_MAX];
        char body[HEAD_MAX + 64];  /* our answer's body: at most "hello, " + a decoded name */
        char out[HEAD_MAX + 512];  /* our whole answer: head + body, sent with one send() */
};

struct request {
        const char *method, *path, *query;
        size_t method_len, path_len, query_len;
        int http10;
        int keep_alive;
        unsigned long content_length;
};

static ssize_t find_head_end(const char *buf, size_t len) {
        size_t i;

        for (i = 0; i + 1 < len; i++) {
                if (buf[i] != '\n')
                        continue;
                if (buf[i + 1] == '\n')
                        return (ssize_t) (i + 2);
                if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
                        return (ssize_t) (i + 3);
        }
        return -1;
}

/* Reads until c->buf starts with a whole request head, and returns its length. Returns 0 to
 * close quietly: the client closed, or stayed idle past IDLE_TIMEOUT_MS, or past
 * DRAIN_GRACE_MS after a stop signal. -1 on an error or a client that fell silent or closed
 * in the middle of a request; -2 when the head does not fit in HEAD_MAX.
 *
 * Why a grace after the stop signal, and not an immediate close: a client may have sent its
 * next request already (a keep-alive client sends it as soon as it has read an answer), or
 * connected just before we closed the listener. Closing then would fail a request that is in
 * flight; with the grace it is answered, with "Connection: close". The grace is short so that
 * a truly idle connection (a browser's preconnect) does not hold the drain for long. */
static ssize_t read_head(struct conn *c) {
        ssize_t end, n;
        size_t skip;
        int r;

        for (;;) {
                /* RFC 9112 2.2: ignore empty lines before a request line. */
                for (skip = 0; skip < c->len && (c->buf[skip] == '\r' || c->buf[skip] == '\n'); skip++)
                        ;
                if (skip > 0) {
                        memmove(c->buf, c->buf + skip, c->len - skip);
                        c->len -= skip;
                }
                end = find_head_end(c->buf, c->len);
                if (end > 0)
                        return end;
                if (c->len == sizeof(c->buf))
                        return -2;

                if (c->len == 0) {
                        r = wait_readable(c->fd, c->drain_fd, IDLE_TIMEOUT_MS);
                        if (r < 0)
                                r = wait_readable(c->fd, -1, DRAIN_GRACE_MS);
                        if (r <= 0)
                                return 0;
                } else if (wait_readable(c->fd, -1, READ_TIMEOUT_MS) <= 0)
                        return -1;

                n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return c->len == 0 && n == 0 ? 0 : -1;
                c->len += (size_t) n;
        }
}

/* Exact match of s[0..n) against want; token_equal ignores ASCII case (header names, tokens). */
static int is(const char *s, size_t n, const char *want) {
        return strlen(want) == n && memcmp(s, want, n) == 0;
}

static int token_equal(const char *s, size_t n, const char *want) {
        return strlen(want) == n && strncasecmp(s, want, n) == 0;
}

static void trim(const char **s, size_t *n) {
        while (*n > 0 && (**s == ' ' || **s == '\t')) {
                (*s)++;
                (*n)--;
        }
        while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
                (*n)--;
}

/* "Connection: keep-alive, Upgrade": a comma-separated list of case-insensitive tokens. */
static void parse_connection(const char *v, size_t n, struct request *rq) {
        const char *end = v + n, *comma;
        size_t len;

        while (v < end) {
                comma = memchr(v, ',', (size_t) (end - v));
                len = (size_t) ((comma ? comma : end) - v);
                trim(&v, &len);
                if (token_equal(v, len, "close"))
                        rq->keep_alive = 0;
                else if (token_equal(v, len, "keep-alive"))
                        rq->keep_alive = 1;
                v = comma ? comma + 1 : end;
        }
}

/* Parses the head (the first head_len bytes of buf). Returns 0, or the HTTP status to fail
 * with. */
static int parse_head(const char *buf, size_t head_len, struct request *rq) {
        const char *p = buf, *end = buf + head_len, *eol, *sp1, *sp2, *q, *colon, *v;
        size_t line_len, n;
        int have_length = 0;
        unsigned long length;

        memset(rq, 0, sizeof(*rq));

        /* Request line: METHOD SP TARGET SP VERSION */
        eol = memchr(p, '\n', (size_t) (end - p));
        line_len = (size_t) (eol - p);
        if (line_len > 0 && p[line_len - 1] == '\r')
                line_len--;
        sp1 = memchr(p, ' ', line_len);
        if (!sp1)
                return 400;
        sp2 = memchr(sp1 + 1, ' ', line_len - (size_t) (sp1 + 1 - p));
        if (!sp2 || sp1 == p || sp2 == sp1 + 1 || sp1[1] != '/')
                return 400;
        rq->method = p;
        rq->method_len = (size_t) (sp1 - p);
        rq->path = sp1 + 1;
        rq->path_len = (size_t) (sp2 - rq->path);
        q = memchr(rq->path, '?', rq->path_len);
        if (q) {
                rq->query = q + 1;
                rq->query_len = rq->path_len - (size_t) (q + 1 - rq->path);
                rq->path_len = (size_t) (q - rq->path);
        }
        v = sp2 + 1;
        n = line_len - (size_t) (v - p);
        if (is(v, n, "HTTP/1.1"))
                rq->keep_alive = 1;
        else if (is(v, n, "HTTP/1.0"))
                rq->http10 = 1;
        else
                return n > 5 && strncmp(v, "HTTP/", 5) == 0 ? 505 : 400;

        /* Header lines up to the empty one. */
        for (p = eol + 1; p < end; p = eol + 1) {
                eol = memchr(p, '\n', (size_t) (end - p));
                line_len = (size_t) (eol - p);
                if (line_len > 0 && p[line_len - 1] == '\r')
                        line_len--;
                if (line_len == 0)
                        break;
                colon = memchr(p, ':', line_len);
                if (!colon || colon == p || memchr(p, ' ', (size_t) (colon - p)) || memchr(p, '\t', (size_t) (colon - p)))
                        return 400;
                v = colon + 1;
                n = line_len - (size_t) (v - p);
                trim(&v, &n);
                if (token_equal(p, (size_t) (colon - p), "Connection"))
                        parse_connection(v, n, rq);
                else if (token_equal(p, (size_t) (colon - p), "Content-Length")) {
                        if (hello_parse_ulong(v, n, ULONG_MAX / 2, &length) < 0)
                                return 400;
                        /* Two different lengths: a smuggling attempt or a broken client. */
                        if (have_length && length != rq->content_length)
                                return 400;
                        have_length = 1;
                        rq->content_length = length;
                } else if (token_equal(p, (size_t) (colon - p), "Transfer-Encoding"))
                        return 501; /* chunked request bodies: not needed by any route */
        }
        if (rq->content_length > BODY_MAX)
                return 413;
        return 0;
}

/* Reads and drops the request body: the part already in c->buf after the head, then the
 * rest from the socket. Returns 0, or -1 when the client fails to send it. */
static int skip_body(struct conn *c, size_t head_len, unsigned long length) {
        size_t here = c->len - head_len;
        ssize_t n;

        if (here >= length) {
                memmove(c->buf + head_len, c->buf + head_len + length, here - length);
                c->len -= length;
                return 0;
        }
        length -= here;
        c->len = head_len;
        while (length > 0) {
                if (wait_readable(c->fd, -1, READ_TIMEOUT_MS) <= 0)
                        return -1;
                n = recv(c->fd, c->body, length < sizeof(c->body) ? length : sizeof(c->body), 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                length -= (unsigned long) n;
        }
        return 0;
}

static int hex_value(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/* Finds key in a query string and URL-decodes its first value ('+' is a space) into out.
 * Returns 1 when found, 0 when absent, -1 on a bad %-escape or a value longer than cap. */
static int query_value(const char *q, size_t qlen, const char *key, char *out, size_t cap, size_t *out_len) {
        const char *end = q + qlen, *amp, *eq, *v;
        size_t key_len = strlen(key), n = 0;
        int hi, lo;

        for (; q && q < end; q = amp + 1) {
                amp = memchr(q, '&', (size_t) (end - q));
                if (!amp)
                        amp = end;
                eq = memchr(q, '=', (size_t) (amp - q));
                if ((size_t) ((eq ? eq : amp) - q) != key_len || memcmp(q, key, key_len) != 0)
                        continue;
                for (v = eq ? eq + 1 : amp; v < amp; v++) {
                        if (n == cap)
                                return -1;
                        if (*v == '+')
                                out[n++] = ' ';
                        else if (*v == '%') {
                                if (amp - v < 3 || (hi = hex_value(v[1])) < 0 || (lo = hex_value(v[2])) < 0)
                                        return -1;
                                out[n++] = (char) (hi * 16 + lo);
                                v += 2;
                        } else
                                out[n++] = *v;
                }
                *out_len = n;
                return 1;
        }
        return 0;
}

/* Routes one request: fills c->body and returns the status; sets *allow for a 405. */
static int route(struct conn *c, const struct request *rq, size_t *body_len, const char **allow) {
        static const char hello[] = "hello, ";
        const size_t hello_len = sizeof(hello) - 1;
        char ms_text[16];
        unsigned long ms;
        size_t n = 0;
        int r;

        if (!is(rq->path, rq->path_len, "/") && !is(rq->path, rq->path_len, "/hello") &&
            !is(rq->path, rq->path_len, "/sleep")) {
                *body_len = (size_t) snprintf(c->body, sizeof(c->body), "not found");
                return 404;
        }
        /* Methods are case-sensitive (RFC 9110 9.1): "get" is not GET. */
        if (!is(rq->method, rq->method_len, "GET") && !is(rq->method, rq->method_len, "HEAD")) {
                *allow = "GET, HEAD";
                *body_len = (size_t) snprintf(c->body, sizeof(c->body), "method not allowed");
                return 405;
        }

        if (is(rq->path, rq->path_len, "/")) {
                *body_len = (size_t) snprintf(c->body, sizeof(c->body), "pid: %ld", (long) getpid());
                return 200;
        }

        if (is(rq->path, rq->path_len, "/hello")) {
                memcpy(c->body, hello, hello_len);
                r = query_value(rq->query, rq->query_len, "name", c->body + hello_len,
                                sizeof(c->body) - hello_len, &n);
                if (r < 0) {
                        *body_len = (size_t) snprintf(c->body, sizeof(c->body), "bad name: invalid %%-escape");
                        return 400;
                }
                if (r == 0 || n == 0) {
                        memcpy(c->body + hello_len, "Jack", 4);
                        n = 4;
                }
                *body_len = hello_len + n;
                return 200;
        }

        /* /sleep: the request's thread just sleeps; other connections go on being served. */
        r = query_value(rq->query, rq->query_len, "ms", ms_text, sizeof(ms_text), &n);
        if (r <= 0 || hello_parse_ulong(ms_text, n, SLEEP_MAX_MS, &ms) < 0) {
                *body_len = (size_t) snprintf(c->body, sizeof(c->body),
                                              "sleep wants ms=N, N milliseconds up to %lu", SLEEP_MAX_MS);
                return 400;
        }
        sleep_ms(ms);
        *body_len = (size_t) snprintf(c->body, sizeof(c->body), "slept %lu ms", ms);
        return 200;
}

static const char *reason(int status) {
        switch (status) {
        case 200: return "OK";
        case 400: return "Bad Request";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 413: return "Content Too Large";
        case 431: return "Request Header Fields Too Large";
        case 501: return "Not Implemented";
        case 505: return "HTTP Version Not Supported";
        default: return "Unknown";
        }
}

/* Sends head and body in one send(): two small writes would meet Nagle's algorithm and the
 * client's delayed ACK, and cost 40 ms per answer on a keep-alive connection. */
static int respond(struct conn *c, int status, size_t body_len, const char *allow, int head_only,
                   int keep_alive, int http10) {
        int n;

        n = snprintf(c->out, sizeof(c->out),
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "%s%s%s"
                     "%s"
                     "\r\n",
                     status, reason(status), body_len,
                     allow ? "Allow: " : "", allow ? allow : "", allow ? "\r\n" : "",
                     !keep_alive ? "Connection: close\r\n" : http10 ? "Connection: keep-alive\r\n" : "");
        if (n < 0 || (size_t) n + body_len > sizeof(c->out))
                return -1;
        if (!head_only) {
                memcpy(c->out + n, c->body, body_len);
                n += (int) body_len;
        }
        return send_all(c->fd, c->out, (size_t) n);
}

/* Answers an unreadable request with status, and says the connection closes. */
static void fail(struct conn *c, int status) {
        size_t len = (size_t) snprintf(c->body, sizeof(c->body), "%s", reason(status));

        (void) respond(c, status, len, NULL, 0, 0, 0);
}

/* Serves requests on one connection until it should close. Returns 1 when the close should
 * linger (we said "Connection: close" or failed a request), 0 for a quiet close. */
static int serve(struct conn *c) {
        struct request rq;
        const char *allow;
        size_t body_len;
        ssize_t head_len;
        int status, keep_alive;

        for (;;) {
                head_len = read_head(c);
                if (head_len == 0)
                        return 0;
                if (head_len == -2) {
                        fail(c, 431);
                        return 1;
                }
                if (head_len < 0)
                        return 0;

                status = parse_head(c->buf, (size_t) head_len, &rq);
                if (status != 0) {
                        fail(c, status);
                        return 1;
                }
                if (skip_body(c, (size_t) head_len, rq.content_length) < 0)
                        return 0;

                allow = NULL;
                body_len = 0;
                status = route(c, &rq, &body_len, &allow);

                /* Asked after the work (a /sleep may have been cut by a stop signal): while
                 * draining, every answer closes its connection. */
                keep_alive = rq.keep_alive && !supergo_drain_requested();
                if (respond(c, status, body_len, allow, is(rq.method, rq.method_len, "HEAD"), keep_alive,
                            rq.http10) < 0)
                        return 0;
                if (!keep_alive)
                        return 1;

                /* Keep what the client pipelined after this request. */
                c->len -= (size_t) head_len;
                memmove(c->buf, c->buf + head_len, c->len);
        }
}

void hello_http_serve(int fd, int drain_fd) {
        struct timeval send_timeout = { SEND_TIMEOUT_S, 0 };
        struct conn *c;

        /* A client that stops reading must not hold its thread, and so the drain, forever. */
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));

        /* ~50 KiB of buffers: on the heap, so that connection threads can have small stacks. */
        c = malloc(sizeof(*c));
        if (!c) {
                close(fd);
                return;
        }
        c->fd = fd;
        c->drain_fd = drain_fd;
        c->len = 0;
        if (serve(c))
                linger_close(fd);
        else
                close(fd);
        free(c);
}
