package p2p

import (
	"fmt"
	"strings"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Topic names.
const (
	// TopicPrefix starts every opinion topic: TopicPrefix + "<package>/<name>".
	TopicPrefix = "/lebowski/1/opinion/"
	// VanillaOpinion is the opinion name of unmodified Debian builds.
	VanillaOpinion = vocab.Vanilla
)

// TopicFor returns the gossipsub topic of an opinion of a source package.
// An empty opinion name (or "vanilla") means a vanilla build.
func TopicFor(pkg, opinion string) (string, error) {
	if opinion == VanillaOpinion {
		opinion = ""
	}
	if err := vocab.CheckPackage(pkg); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadTopic, err)
	}
	if opinion != "" {
		if err := vocab.CheckOpinionName(opinion); err != nil {
			return "", fmt.Errorf("%w: %w", ErrBadTopic, err)
		}
	}
	return TopicPrefix + vocab.Ref{Package: pkg, Opinion: opinion}.String(), nil
}

// ClaimTopic is the topic a claim is published on.
func ClaimTopic(c *attest.Claim) (string, error) {
	if c == nil || c.Statement == nil {
		return "", fmt.Errorf("%w: claim without statement", ErrBadTopic)
	}
	return TopicFor(c.Statement.Package, c.Statement.Opinion.Name)
}

// ParseTopic splits an opinion topic into package and opinion name.
func ParseTopic(topic string) (pkg, opinion string, err error) {
	rest, ok := strings.CutPrefix(topic, TopicPrefix)
	if !ok {
		return "", "", fmt.Errorf("%w: %q does not start with %s", ErrBadTopic, topic, TopicPrefix)
	}
	pkg, opinion, ok = strings.Cut(rest, "/")
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not %s<package>/<opinion>", ErrBadTopic, topic, TopicPrefix)
	}
	if _, err := TopicFor(pkg, opinion); err != nil || opinion == "" {
		return "", "", fmt.Errorf("%w: %q is not %s<package>/<opinion>", ErrBadTopic, topic, TopicPrefix)
	}
	return pkg, opinion, nil
}

// TopicFromSpec turns a subscription from the config ("hello/o3", or
// "hello" for the vanilla build) or a full topic name into a topic.
func TopicFromSpec(spec string) (string, error) {
	if strings.HasPrefix(spec, "/") {
		if _, _, err := ParseTopic(spec); err != nil {
			return "", err
		}
		return spec, nil
	}
	r, err := vocab.ParseRef(spec)
	if err != nil {
		return "", fmt.Errorf("%w: subscription: %w", ErrBadTopic, err)
	}
	return TopicPrefix + r.String(), nil
}
