/* hello.h: the interface between the two halves of hello-c, the C example child:
 * hello.c (the process: arguments, listeners, accepting, a thread per connection, the drain)
 * and hello_http.c (HTTP/1.1 on one connection). Not part of the shim. */

#ifndef HELLO_H
#define HELLO_H

#include <stddef.h>

#define HELLO_PROG "hello-c"

/* Serves HTTP/1.1 on the connected socket fd until the connection should close, then closes
 * it. drain_fd is supergo_drain_fd(): once it is readable, an idle connection is closed and
 * the answer in progress says "Connection: close". Call it with SIGTERM/SIGINT blocked. */
void hello_http_serve(int fd, int drain_fd);

/* Strict decimal: s[0..n) is all digits and at most max. Returns 0, or -1. */
int hello_parse_ulong(const char *s, size_t n, unsigned long max, unsigned long *out);

#endif /* HELLO_H */
