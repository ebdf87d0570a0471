// notify.go: READY=1 to supergo (or systemd) through NOTIFY_SOCKET.
package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

// notifyReady sends "READY=1" as one datagram to NOTIFY_SOCKET; nothing when it is unset.
// The receiver learns our pid from the kernel (SO_PASSCRED), so nothing else is sent.
func notifyReady() error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] != '/' && path[0] != '@' {
		return fmt.Errorf("NOTIFY_SOCKET=%q: want a path or @abstract name", path)
	}
	// Go's net package maps a leading '@' to the abstract namespace, as systemd does.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	// A stalled supervisor with a full queue must not hang us.
	conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err = conn.Write([]byte("READY=1"))
	return err
}
