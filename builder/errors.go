package builder

import "errors"

var (
	// ErrEnvironment: a host tool (podman, runc, mmdebstrap, diffoscope)
	// is missing or the podman service does not work. The CLI maps it to
	// exit 3.
	ErrEnvironment = errors.New("builder: environment")
	// ErrUnsafeOpinion: the opinion asks for something the builder will
	// not apply (shell metacharacters in a flag, an option word that is
	// not allow-listed, a patch outside the opinion directory or with a
	// wrong sha256, configure args it cannot apply safely). Refused
	// before any container starts.
	ErrUnsafeOpinion = errors.New("builder: opinion refused")
	// ErrNotApplicable: the opinion could not be applied to the source
	// (a patch does not apply, debian/rules already overrides
	// dh_auto_configure). Found inside the build container; the Result
	// returned beside it carries the log.
	ErrNotApplicable = errors.New("builder: opinion does not apply")
	// ErrImage: the build image could not be made or imported.
	ErrImage = errors.New("builder: build image")
	// ErrInvalidRequest: the request names no package, or has a malformed
	// name, version, suite or arch.
	ErrInvalidRequest = errors.New("builder: invalid request")
)
