package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// listenNotify is systemd's side: a unixgram socket at addr (a path or
// an @abstract name).
func listenNotify(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// recvNotify reads one notification (within 20 s).
func recvNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
	n, _, err := c.ReadFromUnix(buf)
	require.NoError(t, err, "no notification")
	return string(buf[:n])
}

func TestNotifySocket(t *testing.T) {
	for _, tc := range []struct {
		desc string
		addr func(t *testing.T) string
	}{
		{"path", func(t *testing.T) string { return filepath.Join(t.TempDir(), "notify") }},
		{"abstract namespace", func(t *testing.T) string {
			return fmt.Sprintf("@lebowski-test-notify-%d-%d", os.Getpid(), time.Now().UnixNano())
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			addr := tc.addr(t)
			sys := listenNotify(t, addr)
			t.Setenv("NOTIFY_SOCKET", addr)
			n := takeNotifySocket(slog.New(slog.DiscardHandler))
			_, set := os.LookupEnv("NOTIFY_SOCKET")
			require.False(t, set, "NOTIFY_SOCKET is not passed on to podman and builds")
			n.send(sdReady, "STATUS=ready")
			require.Equal(t, "READY=1\nSTATUS=ready", recvNotify(t, sys))
			n.send(reloading()...)
			msg := recvNotify(t, sys)
			require.True(t, strings.HasPrefix(msg, "RELOADING=1\nMONOTONIC_USEC="), msg)
			n.send(sdStopping)
			require.Equal(t, "STOPPING=1", recvNotify(t, sys))
		})
	}
}

func TestNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	takeNotifySocket(nil).send(sdReady) // nothing to do, no panic
	var nilNotifier *notifier
	nilNotifier.send(sdReady)
	require.ErrorContains(t, notify("relative/sock", sdReady), "only a socket path or an @abstract name")
	require.Error(t, notify(filepath.Join(t.TempDir(), "absent"), sdReady), "no listener")
}

// TestNotifyDaemonLifecycle runs lebowskid as the unit does (Type=notify)
// and checks what systemd hears: READY=1 once the API socket answers,
// RELOADING=1 and READY=1 around SIGHUP, STOPPING=1 on SIGTERM.
func TestNotifyDaemonLifecycle(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "notify")
	sys := listenNotify(t, addr)
	t.Setenv("NOTIFY_SOCKET", addr)
	dir := t.TempDir()
	done := make(chan int, 1)
	go func() {
		done <- Main([]string{"--data-dir", dir, "--opinions", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0",
			"--no-mdns", "--no-build", "--log-level", "warn"})
	}()

	msg := recvNotify(t, sys)
	require.True(t, strings.HasPrefix(msg, "READY=1\nSTATUS=ready: peer "), msg)
	c, err := net.Dial("unix", filepath.Join(dir, "lebowskid.sock"))
	require.NoError(t, err, "the API socket answers when READY=1 is sent")
	c.Close()

	// Main handles SIGHUP and SIGTERM from before READY=1 on.
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	msg = recvNotify(t, sys)
	require.True(t, strings.HasPrefix(msg, "RELOADING=1\nMONOTONIC_USEC="), msg)
	require.True(t, strings.HasPrefix(recvNotify(t, sys), "READY=1"))

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	require.True(t, strings.HasPrefix(recvNotify(t, sys), "STOPPING=1"))
	select {
	case code := <-done:
		require.Equal(t, 0, code)
	case <-time.After(30 * time.Second):
		t.Fatal("lebowskid did not stop within 30s of SIGTERM")
	}
}
