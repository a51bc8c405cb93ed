package daemon

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/store"
)

// The config imports no transport, store or consensus package, so it holds
// copies of the defaults it shows (lebowskid init, flags, docs): each must
// stay its owner's.
func TestConfigDefaultsAreTheOwners(t *testing.T) {
	assert.Equal(t, p2p.DefaultListenAddrs, config.DefaultListenAddrs)
	assert.Equal(t, p2p.DefaultSyncInterval, config.DefaultSyncInterval)
	assert.Equal(t, p2p.DefaultKeyAnnounceInterval, config.DefaultKeyAnnounceInterval)
	assert.Equal(t, consensus.DefaultThreshold, config.DefaultThreshold)
	assert.Equal(t, consensus.DefaultMinTrusted, config.DefaultMinTrusted)

	c := &config.Config{DataDir: t.TempDir()}
	c.Defaults()
	assert.Equal(t, p2p.DefaultListenAddrs, c.Listen)
	assert.Equal(t, p2p.DefaultSyncInterval, c.SyncEvery)
	assert.Equal(t, p2p.DefaultKeyAnnounceInterval, c.KeyAnnounceInterval)
	assert.Equal(t, consensus.DefaultThreshold, c.Threshold)
	assert.Equal(t, consensus.DefaultMinTrusted, c.MinTrusted)
	// The config leaves limits and budget zero: the network and the store
	// fill in their own defaults.
	assert.Equal(t, p2p.Limits{}, p2pLimits(c.Limits))
	assert.Equal(t, store.Budget{}, store.Budget(c.Budget))
}

// The conversions compile only while the config's sections have the same
// fields and types in the same order as the owners' types; the YAML keys
// (which a conversion ignores) must be the same too, or a key documented
// for the owner would be unknown (an error) in config.yaml.
func TestConfigSectionsAreTheOwners(t *testing.T) {
	for _, tc := range []struct{ config, owner reflect.Type }{
		{reflect.TypeFor[config.Limits](), reflect.TypeFor[p2p.Limits]()},
		{reflect.TypeFor[config.Budget](), reflect.TypeFor[store.Budget]()},
	} {
		if !assert.Equal(t, tc.owner.NumField(), tc.config.NumField(), "%s fields", tc.config) {
			continue
		}
		for i := range tc.config.NumField() {
			c, o := tc.config.Field(i), tc.owner.Field(i)
			assert.Equal(t, o.Name, c.Name, "%s field %d", tc.config, i)
			assert.Equal(t, o.Tag.Get("yaml"), c.Tag.Get("yaml"), "%s.%s yaml key", tc.config, c.Name)
		}
	}
	// Every field arrives, in its place.
	l := config.Limits{GossipPerSecond: 1, GossipBurst: 2, KeysPerSecond: 3, KeysBurst: 4, IntentsPerSecond: 5, IntentsBurst: 6,
		IntentsPerSigner: 7, IntentsSignerBurst: 8, SyncSessionsPerMinute: 9, SyncSessionTimeout: 10, SyncRequestsPerSession: 11,
		BlobsPerPeer: 12, BlobRequestsPerMinute: 13}
	assert.Equal(t, p2p.Limits{GossipPerSecond: 1, GossipBurst: 2, KeysPerSecond: 3, KeysBurst: 4, IntentsPerSecond: 5, IntentsBurst: 6,
		IntentsPerSigner: 7, IntentsSignerBurst: 8, SyncSessionsPerMinute: 9, SyncSessionTimeout: 10, SyncRequestsPerSession: 11,
		BlobsPerPeer: 12, BlobRequestsPerMinute: 13}, p2pLimits(l))
}
