// listen.go: where go-example's listeners come from: --fd N, supergo's LISTEN_FDS (systemd's
// socket activation), the original supergo's bare fd 3, or --listen.
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

const listenFdsStart = 3

func takeListeners(fd int, listen string) ([]net.Listener, error) {
	if fd >= 0 {
		if !isListening(fd) {
			return nil, fmt.Errorf("--fd %d: not a listening socket", fd)
		}
		l, err := fileListener(fd)
		if err != nil {
			return nil, err
		}
		return []net.Listener{l}, nil
	}
	passed, err := passedListeners()
	if err != nil || len(passed) > 0 {
		return passed, err
	}
	if listen != "" {
		l, err := net.Listen("tcp", listen)
		if err != nil {
			return nil, fmt.Errorf("--listen %s: %w", listen, err)
		}
		return []net.Listener{l}, nil
	}
	return nil, errors.New("no listener: expected one at fd 3 (LISTEN_FDS), or --fd N, or --listen HOST:PORT")
}

// passedListeners reads LISTEN_FDS like sd_listen_fds: the fds are ours only when LISTEN_PID,
// if set, is our pid (otherwise they were meant for a parent). Without LISTEN_FDS, fd 3 is
// taken when it is a listening socket: the original supergo passed it with no variable.
// The variables are removed afterwards: we run no program that could use them.
func passedListeners() ([]net.Listener, error) {
	defer func() {
		for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
			os.Unsetenv(k)
		}
	}()

	fds, ok := os.LookupEnv("LISTEN_FDS")
	if !ok {
		if !isListening(listenFdsStart) {
			return nil, nil
		}
		l, err := fileListener(listenFdsStart)
		if err != nil {
			return nil, err
		}
		return []net.Listener{l}, nil
	}
	if pid, ok := os.LookupEnv("LISTEN_PID"); ok {
		n, err := parseDecimal(pid, 1<<22)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("bad LISTEN_PID=%q", pid)
		}
		if n != os.Getpid() {
			return nil, nil
		}
	}
	n, err := parseDecimal(fds, 1024)
	if err != nil {
		return nil, fmt.Errorf("bad LISTEN_FDS=%q", fds)
	}
	var listeners []net.Listener
	for fd := listenFdsStart; fd < listenFdsStart+n; fd++ {
		l, err := fileListener(fd)
		if err != nil {
			return nil, fmt.Errorf("LISTEN_FDS=%s: %w", fds, err)
		}
		listeners = append(listeners, l)
	}
	return listeners, nil
}

// fileListener wraps fd. net.FileListener works on a dup of fd (close-on-exec), so fd itself
// is closed here. Note that Go puts the dup in non-blocking mode, and O_NONBLOCK belongs to
// the open file description, which is shared with supergo and the other generation.
func fileListener(fd int) (net.Listener, error) {
	f := os.NewFile(uintptr(fd), fmt.Sprintf("fd %d", fd))
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("fd %d: %w", fd, err)
	}
	return l, nil
}

// isListening tells whether fd is a socket in the listening state (SO_ACCEPTCONN), so that a
// stray inherited fd 3 (a pipe, a file) is never taken for a listener.
func isListening(fd int) bool {
	v, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN)
	return err == nil && v == 1
}

// parseDecimal accepts digits only (strconv.Atoi would take "+3" and "-0"), up to max.
func parseDecimal(s string, max int) (int, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("not a decimal number: %q", s)
		}
		n = n*10 + int(c-'0')
		if n > max {
			return 0, fmt.Errorf("larger than %d: %q", max, s)
		}
	}
	return n, nil
}
