package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// sd_notify(3) states the daemon sends.
const (
	sdReady     = "READY=1"
	sdStopping  = "STOPPING=1"
	sdReloading = "RELOADING=1"
)

// notifier tells systemd (a Type=notify unit) what the daemon is doing:
// READY=1 once the network and the API socket are up, RELOADING=1 then
// READY=1 around a SIGHUP reload, STOPPING=1 when it shuts down. It writes
// one datagram per notification to $NOTIFY_SOCKET (a path, or '@' for the
// abstract namespace); a nil notifier or one with no socket does nothing.
// This is the whole protocol, so no library is needed for it.
type notifier struct {
	addr string
	log  *slog.Logger
}

// takeNotifySocket returns a notifier for $NOTIFY_SOCKET and removes the
// variable from the environment, so the processes the daemon starts
// (podman, conmon, build containers) do not notify systemd in its name.
func takeNotifySocket(log *slog.Logger) *notifier {
	addr := os.Getenv("NOTIFY_SOCKET")
	_ = os.Unsetenv("NOTIFY_SOCKET")
	return &notifier{addr: addr, log: log}
}

// send writes the states (joined by newlines) as one datagram. Failures
// are logged, never fatal: the daemon works the same without systemd.
func (n *notifier) send(states ...string) {
	if n == nil || n.addr == "" {
		return
	}
	if err := notify(n.addr, strings.Join(states, "\n")); err != nil && n.log != nil {
		n.log.Warn("could not notify systemd (NOTIFY_SOCKET); the unit may time out waiting for READY=1", "socket", n.addr, "state", states[0], "err", err)
	}
}

// notify writes msg to the notification socket addr.
func notify(addr, msg string) error {
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return fmt.Errorf("NOTIFY_SOCKET=%q: only a socket path or an @abstract name is supported", addr)
	}
	// net maps a leading '@' to the abstract namespace (a leading NUL).
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Write([]byte(msg))
	return err
}

// monotonicUsec is the MONOTONIC_USEC= field sd_notify(3) asks to send
// with RELOADING=1 (CLOCK_MONOTONIC, microseconds); "" if unavailable.
func monotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return ""
	}
	return "MONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}

// reloading is the RELOADING=1 notification with its timestamp.
func reloading() []string {
	if m := monotonicUsec(); m != "" {
		return []string{sdReloading, m}
	}
	return []string{sdReloading}
}
