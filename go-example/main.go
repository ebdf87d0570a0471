// Command go-example is supergo's Go example child: an HTTP server on the standard library
// alone that takes its listeners from supergo, says READY=1, and drains on SIGTERM.
//
// Usage:
//
//	go-example [--fd N | --listen HOST:PORT]
//
// The listeners are, in this order: fd N; the fds from LISTEN_FDS (fd 3, 4, …; or fd 3 alone
// when LISTEN_FDS is unset and fd 3 is a listening socket, as the original supergo passed
// it); a socket bound to --listen (port 0 picks a free one). "go-example: listening on ADDR"
// goes to stderr for each. The routes are in routes.go.
//
// On SIGTERM or SIGINT it stops accepting, finishes the requests in progress (idle
// keep-alive connections get a short grace, see drain), and exits 0.
//
// This file owns the process lifecycle; listen.go, notify.go and routes.go the rest.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const prog = "go-example"

// drainGrace is how long idle keep-alive connections may still bring one request after a
// stop signal (answered with "Connection: close"), before Shutdown closes them.
const drainGrace = 500 * time.Millisecond

func logf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, prog+": "+format+"\n", args...)
}

func main() {
	fd := flag.Int("fd", -1, "serve on the listening socket at this fd")
	listen := flag.String("listen", "", "bind HOST:PORT when no listener was passed")
	flag.Parse()
	if flag.NArg() > 0 {
		logf("unexpected argument %q", flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}

	// Before anything else: a stop signal during start-up must not kill us half-way.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)

	listeners, err := takeListeners(*fd, *listen)
	if err != nil {
		logf("%v", err)
		os.Exit(1)
	}

	s := newServer()
	served := make(chan error, len(listeners))
	for _, l := range listeners {
		logf("listening on %s", l.Addr())
		go func(l net.Listener) { served <- s.srv.Serve(l) }(l)
	}

	// The listeners already queue connections, so we are ready now.
	if err := notifyReady(); err != nil {
		logf("cannot send READY=1: %v", err)
	}

	select {
	case sig := <-stop:
		logf("%v: listener closed, draining", sig)
		s.drain(listeners)
		logf("drained, exiting with status 0")
	case err := <-served:
		logf("serving stopped: %v", err)
		os.Exit(1)
	}
}

// draining is set on the stop signal: from then on every answer closes its connection
// (see reply in routes.go).
var draining atomic.Bool

// server is the http.Server plus the connections still open, which the drain waits for.
type server struct {
	srv  *http.Server
	mu   sync.Mutex
	open map[net.Conn]struct{}
}

func newServer() *server {
	s := &server{open: make(map[net.Conn]struct{})}
	s.srv = &http.Server{
		Handler:           routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ConnState:         s.track,
	}
	return s
}

func (s *server) track(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateClosed, http.StateHijacked:
		delete(s.open, c)
	default:
		s.open[c] = struct{}{}
	}
}

func (s *server) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// drain stops accepting, then lets the open connections finish.
//
// Shutdown alone would close idle keep-alive connections at once, and a client whose next
// request is already on its way on such a connection would see it closed without an answer.
// So: close the listeners first (the kernel keeps queueing on supergo's copy, for the next
// generation), give idle connections drainGrace to bring a request (answered with
// "Connection: close"), and only then Shutdown, which waits for the requests in progress.
func (s *server) drain(listeners []net.Listener) {
	draining.Store(true)
	for _, l := range listeners {
		l.Close()
	}
	for deadline := time.Now().Add(drainGrace); time.Now().Before(deadline) && s.openConns() > 0; {
		time.Sleep(10 * time.Millisecond)
	}
	// No deadline: supergo's stop_timeout is the one that counts.
	if err := s.srv.Shutdown(context.Background()); err != nil {
		logf("shutdown: %v", err)
	}
}
