package builder

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/bindings/images"
	"github.com/containers/podman/v5/pkg/specgen"
	spec "github.com/opencontainers/runtime-spec/specs-go"
)

//go:embed containers.conf
var containersConf []byte

// ContainersConf returns the containers.conf the builder's own podman
// service runs with (runc, fixed ulimits).
func ContainersConf() []byte { return append([]byte(nil), containersConf...) }

const installHint = "install it with `apt-get install podman runc`"

// Podman is a connection to a podman API service: either one given by URL
// or one this process started (and stops on Close).
type Podman struct {
	conn    context.Context // bindings connection (carries the client)
	cmd     *exec.Cmd       // the service we started, if any
	waitErr chan error
	sock    string
	log     *slog.Logger
}

type podmanConfig struct {
	dataDir string
	log     *slog.Logger
	timeout time.Duration
}

// ConnectOption configures Connect.
type ConnectOption func(*podmanConfig)

// WithServiceDir sets the directory for the socket, containers.conf and
// service log of a podman service started by Connect (default
// $TMPDIR/lebowski-podman).
func WithServiceDir(dir string) ConnectOption { return func(c *podmanConfig) { c.dataDir = dir } }

// WithConnectLogger sets the logger.
func WithConnectLogger(l *slog.Logger) ConnectOption {
	return func(c *podmanConfig) {
		if l != nil {
			c.log = l
		}
	}
}

// WithStartTimeout bounds how long Connect waits for a started service's
// socket (default 30s).
func WithStartTimeout(d time.Duration) ConnectOption {
	return func(c *podmanConfig) { c.timeout = d }
}

// Connect connects to the podman API at url (e.g.
// unix:///run/podman/podman.sock). With an empty url it starts `podman
// system service --time=0 unix://<dir>/podman.sock` with CONTAINERS_CONF
// pointing at the embedded containers.conf, waits for the socket and stops
// the service on Close. A missing podman or runc is an ErrEnvironment.
func Connect(ctx context.Context, url string, opts ...ConnectOption) (*Podman, error) {
	c := podmanConfig{
		dataDir: filepath.Join(os.TempDir(), "lebowski-podman"),
		log:     slog.New(slog.DiscardHandler),
		timeout: 30 * time.Second,
	}
	for _, o := range opts {
		o(&c)
	}
	p := &Podman{log: c.log}
	if url != "" {
		conn, err := bindings.NewConnection(ctx, url)
		if err != nil {
			return nil, fmt.Errorf("podman connect %s: %w: %v", url, ErrEnvironment, err)
		}
		p.conn = conn
		return p, nil
	}
	bin, err := exec.LookPath("podman")
	if err != nil {
		return nil, fmt.Errorf("podman connect: %w: podman not found: %s", ErrEnvironment, installHint)
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return nil, fmt.Errorf("podman connect: %w: runc not found: %s", ErrEnvironment, installHint)
	}
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("podman connect: %w: %v", ErrEnvironment, err)
	}
	confPath := filepath.Join(c.dataDir, "containers.conf")
	if err := os.WriteFile(confPath, containersConf, 0o644); err != nil {
		return nil, fmt.Errorf("podman connect: write %s: %w: %v", confPath, ErrEnvironment, err)
	}
	p.sock = filepath.Join(c.dataDir, "podman.sock")
	_ = os.Remove(p.sock) // stale socket of a previous run
	logf, err := os.OpenFile(filepath.Join(c.dataDir, "podman-service.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("podman connect: %w: %v", ErrEnvironment, err)
	}
	cmd := exec.Command(bin, "system", "service", "--time=0", "unix://"+p.sock)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("podman connect: start %s system service: %w: %v", bin, ErrEnvironment, err)
	}
	p.cmd = cmd
	p.waitErr = make(chan error, 1)
	go func() { p.waitErr <- cmd.Wait(); logf.Close() }()
	c.log.Info("started podman service", "pid", cmd.Process.Pid, "socket", p.sock, "containers_conf", confPath)

	deadline := time.Now().Add(c.timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-p.waitErr:
			p.cmd = nil
			return nil, fmt.Errorf("podman connect: service exited (%v), see %s: %w", err, filepath.Join(c.dataDir, "podman-service.log"), ErrEnvironment)
		case <-ctx.Done():
			p.Close()
			return nil, fmt.Errorf("podman connect: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := os.Stat(p.sock); err != nil {
			last = err
			continue
		}
		conn, err := bindings.NewConnection(context.Background(), "unix://"+p.sock)
		if err != nil {
			last = err
			continue
		}
		p.conn = conn
		return p, nil
	}
	p.Close()
	return nil, fmt.Errorf("podman connect: service socket %s not ready after %s (%v): %w", p.sock, c.timeout, last, ErrEnvironment)
}

// Close stops the service Connect started, if any.
func (p *Podman) Close() error {
	if p == nil || p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.waitErr:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.waitErr
	}
	p.cmd = nil
	_ = os.Remove(p.sock)
	return nil
}

// callCtx derives a context for one API call from the connection context,
// cancelled when ctx is.
func (p *Podman) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(p.conn)
	stop := context.AfterFunc(ctx, cancel)
	return c, func() { stop(); cancel() }
}

// ImageExists reports whether ref is in the podman store.
func (p *Podman) ImageExists(ctx context.Context, ref string) (bool, error) {
	c, cancel := p.callCtx(ctx)
	defer cancel()
	ok, err := images.Exists(c, ref, nil)
	if err != nil {
		return false, fmt.Errorf("podman image exists %s: %w", ref, err)
	}
	return ok, nil
}

// ImportImage imports a rootfs tar as image ref and returns the diff IDs of
// its layers (one for an imported tar: sha256 of the tar).
func (p *Podman) ImportImage(ctx context.Context, tar io.Reader, ref string) ([]string, error) {
	c, cancel := p.callCtx(ctx)
	defer cancel()
	if _, err := images.Import(c, tar, &images.ImportOptions{Reference: &ref}); err != nil {
		return nil, fmt.Errorf("podman import %s: %w", ref, err)
	}
	return p.ImageLayers(ctx, ref)
}

// ImageLayers returns the layer diff IDs of image ref.
func (p *Podman) ImageLayers(ctx context.Context, ref string) ([]string, error) {
	c, cancel := p.callCtx(ctx)
	defer cancel()
	rep, err := images.GetImage(c, ref, nil)
	if err != nil {
		return nil, fmt.Errorf("podman image inspect %s: %w", ref, err)
	}
	var out []string
	if rep.RootFS != nil {
		for _, l := range rep.RootFS.Layers {
			out = append(out, l.String())
		}
	}
	return out, nil
}

// RunSpec is one sandboxed container run.
type RunSpec struct {
	Image   string
	Command []string
	Env     map[string]string
	// HostDir is bind-mounted read-write at MountAt (default /build).
	HostDir string
	MountAt string
	WorkDir string
	Memory  int64 // bytes; 0 = no limit
	Pids    int64 // 0 = no limit
	Timeout time.Duration
	Labels  map[string]string
}

// RunResult is how a container run ended.
type RunResult struct {
	ExitCode int32
	TimedOut bool
}

// LabelKey marks every container the builder creates.
const LabelKey = "org.lebowski.build"

// Run creates, starts and waits for one container: no network, all
// capabilities dropped, no new privileges, memory and pids limits, umask
// 0022, hostname "lebowski". A timeout kills it. The container is removed
// afterwards.
func (p *Podman) Run(ctx context.Context, rs RunSpec) (RunResult, error) {
	s := specgen.NewSpecGenerator(rs.Image, false)
	s.Command = rs.Command
	s.Env = rs.Env
	s.NetNS = specgen.Namespace{NSMode: specgen.NoNetwork}
	s.CapDrop = []string{"ALL"}
	yes := true
	s.NoNewPrivileges = &yes
	s.Umask = "0022"
	s.Hostname = "lebowski"
	s.Labels = map[string]string{LabelKey: "1"}
	for k, v := range rs.Labels {
		s.Labels[k] = v
	}
	s.WorkDir = rs.WorkDir
	if rs.HostDir != "" {
		at := rs.MountAt
		if at == "" {
			at = "/build"
		}
		s.Mounts = []spec.Mount{{Type: "bind", Source: rs.HostDir, Destination: at, Options: []string{"rbind", "rw"}}}
	}
	if rs.Memory > 0 || rs.Pids > 0 {
		s.ResourceLimits = &spec.LinuxResources{}
		if rs.Memory > 0 {
			m := rs.Memory
			s.ResourceLimits.Memory = &spec.LinuxMemory{Limit: &m}
		}
		if rs.Pids > 0 {
			s.ResourceLimits.Pids = &spec.LinuxPids{Limit: rs.Pids}
		}
	}
	c, cancel := p.callCtx(ctx)
	defer cancel()
	created, err := containers.CreateWithSpec(c, s, nil)
	if err != nil {
		return RunResult{}, fmt.Errorf("podman create: %w", err)
	}
	id := created.ID
	defer func() {
		rc, rcancel := context.WithTimeout(p.conn, 60*time.Second)
		defer rcancel()
		force, vols := true, true
		if _, err := containers.Remove(rc, id, &containers.RemoveOptions{Force: &force, Volumes: &vols}); err != nil {
			p.log.Warn("podman remove failed", "container", id, "err", err)
		}
	}()
	if err := containers.Start(c, id, nil); err != nil {
		return RunResult{}, fmt.Errorf("podman start %s: %w", id[:12], err)
	}
	wctx, wcancel := c, context.CancelFunc(func() {})
	if rs.Timeout > 0 {
		wctx, wcancel = context.WithTimeout(c, rs.Timeout)
	}
	defer wcancel()
	code, err := containers.Wait(wctx, id, &containers.WaitOptions{Conditions: []string{"exited", "stopped"}})
	if err != nil {
		kctx, kcancel := context.WithTimeout(p.conn, 30*time.Second)
		defer kcancel()
		sig := "KILL"
		_ = containers.Kill(kctx, id, &containers.KillOptions{Signal: &sig})
		if errors.Is(wctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			return RunResult{ExitCode: -1, TimedOut: true}, nil
		}
		if ctx.Err() != nil {
			return RunResult{}, fmt.Errorf("podman wait %s: %w", id[:12], ctx.Err())
		}
		return RunResult{}, fmt.Errorf("podman wait %s: %w", id[:12], err)
	}
	return RunResult{ExitCode: code}, nil
}

// CountContainers returns how many containers (running or not) carry the
// builder's label.
func (p *Podman) CountContainers(ctx context.Context) (int, error) {
	c, cancel := p.callCtx(ctx)
	defer cancel()
	all := true
	list, err := containers.List(c, &containers.ListOptions{All: &all, Filters: map[string][]string{"label": {LabelKey}}})
	if err != nil {
		return 0, fmt.Errorf("podman ps: %w", err)
	}
	return len(list), nil
}
