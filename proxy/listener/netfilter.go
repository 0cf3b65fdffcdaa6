package listener

import (
	"net"

	"google.golang.org/protobuf/types/known/structpb"
)

// netFilter is a compiled network filter that runs before the chain's terminal (RBAC, rate limits,
// external authorization, ...). The serving goroutine calls onConnection once per
// connection, in the chain's order, after TLS termination; false means the filter refused the
// connection, which is then closed and reaches no later filter. A netFilter is immutable and
// safe for concurrent use.
type netFilter interface {
	onConnection(cs *connState) bool
}

// connState is one connection as the chain's network filters see and change it. It is used
// by the connection's serving goroutine only.
type connState struct {
	// conn is what the terminal will be handed; a filter that read from the connection replaces
	// it with a wrapper that replays what it read.
	conn net.Conn
	info *ConnInfo
	rbac rbacConn
	md   connMetadata
}

func newConnState(c net.Conn, info *ConnInfo) *connState {
	cs := &connState{conn: c, info: info}
	cs.rbac = newRBACConn(info, &cs.md)
	return cs
}

// connMetadata is a connection's dynamic metadata (Envoy's connection-level StreamInfo dynamic
// metadata): a Struct per namespace that the chain's network filters write and read. The zero
// value is empty.
type connMetadata struct{ ns map[string]*structpb.Struct }

// get returns the namespace's Struct, nil when unset. Callers must not modify it.
func (m *connMetadata) get(namespace string) *structpb.Struct { return m.ns[namespace] }

// set merges s into the namespace as Envoy's setDynamicMetadata does: each top-level field of
// s replaces the field of that name. s is not retained; values are shared and never modified.
func (m *connMetadata) set(namespace string, s *structpb.Struct) {
	if m.ns == nil {
		m.ns = make(map[string]*structpb.Struct, 2)
	}
	cur := m.ns[namespace]
	if cur == nil {
		cur = &structpb.Struct{Fields: make(map[string]*structpb.Value, len(s.GetFields()))}
		m.ns[namespace] = cur
	}
	for k, v := range s.GetFields() {
		cur.Fields[k] = v
	}
}
