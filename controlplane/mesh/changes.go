package mesh

import (
	"sync"

	"github.com/strait-mesh/strait/controlplane/config"
)

// The change set (issue 13, item 4): what changed between two snapshots of one control plane,
// computed once per snapshot from the content hashes of fingerprint.go, so that translation
// revisits only the output a change touches instead of fingerprinting every part again.

// ObjectRef names a config object: kind, namespace and name.
type ObjectRef struct {
	Kind      config.Kind
	Namespace string
	Name      string
}

// ObjectChange is one config object added (Old nil), removed (New nil) or changed.
type ObjectChange struct {
	Old, New *config.Object
}

// ChangeSet is what differs between snapshot From and snapshot To. Everything not named in it
// has equal content in both (equal content hashes). A nil *ChangeSet means "unknown": treat
// everything as changed.
type ChangeSet struct {
	// From and To are the versions of the two snapshots.
	From, To uint64
	// FromConfigHash is snapshot From's ConfigHash: output memoized on it is valid for To when
	// it reads nothing the change set names.
	FromConfigHash uint64
	// Mesh reports that MeshConfig changed.
	Mesh bool
	// Services are the services added, removed or changed (content, not endpoints).
	Services map[ServiceKey]bool
	// Endpoints are the services whose endpoints changed (including added and removed services).
	Endpoints map[ServiceKey]bool
	// Hosts are the hostnames of Services.
	Hosts map[string]bool
	// Objects are the config objects (of every kind) added, removed or changed.
	Objects map[ObjectRef]ObjectChange
	// Kinds are the kinds of Objects.
	Kinds map[config.Kind]bool
}

// Object reports whether the object of kind named namespace/name changed (or was added or
// removed).
func (c *ChangeSet) Object(kind config.Kind, namespace, name string) bool {
	_, ok := c.Objects[ObjectRef{kind, namespace, name}]
	return ok
}

// OnlyKinds reports whether the change set has no change but to config objects of the given
// kinds (and endpoints, which it does not consult: outbound listeners and routes do not read
// them; a ServiceEntry whose endpoints moved is still a changed ServiceEntry object).
func (c *ChangeSet) OnlyKinds(kinds ...config.Kind) bool {
	if c == nil || c.Mesh || len(c.Services) > 0 {
		return false
	}
	for ref := range c.Objects {
		ok := false
		for _, k := range kinds {
			ok = ok || ref.Kind == k
		}
		if !ok {
			return false
		}
	}
	return true
}

// changes memoizes a snapshot's change set against one predecessor. It holds the
// predecessor's version, not the snapshot, so that a snapshot does not keep the chain of
// all earlier ones alive.
type changes struct {
	mu  sync.Mutex
	set *ChangeSet
}

// ChangesSince returns what changed from prev to s, computed once per pair (translation asks
// for every proxy). prev nil, or not older than s, gives nil ("unknown"). Versions identify
// snapshots: prev must be the snapshot of its version that s follows.
func (s *Snapshot) ChangesSince(prev *Snapshot) *ChangeSet {
	if prev == nil || prev.Version >= s.Version {
		return nil
	}
	c := &s.changes
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set == nil || c.set.From != prev.Version {
		c.set = Diff(prev, s)
	}
	return c.set
}

// Diff compares two snapshots by content hash.
func Diff(prev, next *Snapshot) *ChangeSet {
	c := &ChangeSet{From: prev.Version, To: next.Version, FromConfigHash: prev.ConfigHash(), Mesh: prev.MeshHash() != next.MeshHash(),
		Services: map[ServiceKey]bool{}, Endpoints: map[ServiceKey]bool{}, Objects: map[ObjectRef]ObjectChange{},
		Hosts: map[string]bool{}, Kinds: map[config.Kind]bool{}}
	pf, nf := prev.fingerprints(), next.fingerprints()
	for k, h := range nf.services {
		if old, ok := pf.services[k]; !ok || old != h {
			c.Services[k] = true
		}
		if old, ok := pf.endpoints[k]; !ok || old != nf.endpoints[k] {
			c.Endpoints[k] = true
		}
	}
	for k := range pf.services {
		if _, ok := nf.services[k]; !ok {
			c.Services[k] = true
			c.Endpoints[k] = true
		}
	}
	olds := map[ObjectRef]*config.Object{}
	for _, list := range prev.Configs {
		for _, o := range list {
			olds[ObjectRef{o.Kind, o.Namespace, o.Name}] = o
		}
	}
	for _, list := range next.Configs {
		for _, o := range list {
			ref := ObjectRef{o.Kind, o.Namespace, o.Name}
			old := olds[ref]
			delete(olds, ref)
			if old == nil || prev.ObjectHash(old) != next.ObjectHash(o) {
				c.Objects[ref] = ObjectChange{Old: old, New: o}
			}
		}
	}
	for ref, old := range olds {
		c.Objects[ref] = ObjectChange{Old: old}
	}
	for k := range c.Services {
		c.Hosts[k.Hostname] = true
	}
	for ref := range c.Objects {
		c.Kinds[ref.Kind] = true
	}
	return c
}
