package daemon

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/lebowski-dist/lebowski/cmd/node/core/rpc"
)

// listenAPI opens the local API socket (the node's owner only, 0600).
func (d *Daemon) listenAPI() (*http.Server, net.Listener, error) {
	sock := d.cfg.Socket()
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return nil, nil, fmt.Errorf("api: another lebowskid answers on %s", sock)
	}
	_ = os.Remove(sock)
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return nil, nil, fmt.Errorf("api: %w", err)
	}
	old := umask(0o177)
	ln, err := net.Listen("unix", sock)
	umask(old)
	if err != nil {
		return nil, nil, fmt.Errorf("api: listen %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("api: %w", err)
	}
	// Imports upload up to a few MiB; the event stream writes forever.
	return newHTTPServer(rpc.Handler(d.node), 5*time.Minute, 0), limitListener(ln), nil
}

// listenPublic opens the read-only socket for the members of
// public_socket_group: owned root:<group>, mode 0660. Its directory is
// created 0755 when missing (systemd's RuntimeDirectory makes it for the
// unit).
func (d *Daemon) listenPublic() (*http.Server, net.Listener, error) {
	sock, group := d.cfg.PublicSocket, d.cfg.PublicSocketGroup
	gid, err := lookupGID(group)
	if err != nil {
		return nil, nil, fmt.Errorf("public api: %w", err)
	}
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return nil, nil, fmt.Errorf("public api: another lebowskid answers on %s", sock)
	}
	_ = os.Remove(sock)
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		return nil, nil, fmt.Errorf("public api: %w", err)
	}
	old := umask(0o177) // no window in which others could connect
	ln, err := net.Listen("unix", sock)
	umask(old)
	if err != nil {
		return nil, nil, fmt.Errorf("public api: listen %s: %w", sock, err)
	}
	if err := os.Chown(sock, -1, gid); err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("public api: give %s to group %s: %w", sock, group, err)
	}
	if err := os.Chmod(sock, 0o660); err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("public api: %w", err)
	}
	d.log.Info("public read-only api", "socket", sock, "group", group)
	return newHTTPServer(rpc.ReadOnly(rpc.Handler(d.node)), time.Minute, 0), limitListener(ln), nil
}

// lookupGID resolves a group name or numeric GID.
func lookupGID(group string) (int, error) {
	if n, err := strconv.Atoi(group); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w (create it with `groupadd --system %s`, or set public_socket_group)", group, err, group)
	}
	return strconv.Atoi(g.Gid)
}
