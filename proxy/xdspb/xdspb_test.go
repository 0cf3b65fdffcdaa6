package xdspb_test

import (
	"testing"

	gcplistenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	"github.com/strait-mesh/strait/proxy/xdspb"
	_ "github.com/strait-mesh/strait/proxy/xdspb/all"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
)

// TestRegistryIsolation: this binary links go-control-plane's listener package and the whole
// trimmed tree, which declare the same proto names; both initialise, each in its own registry.
func TestRegistryIsolation(t *testing.T) {
	const name = "envoy.config.listener.v3.Listener"
	gmt, err := protoregistry.GlobalTypes.FindMessageByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := gmt.Zero().Interface().(*gcplistenerv3.Listener); !ok {
		t.Errorf("global registry's %s is %T, want go-control-plane's", name, gmt.Zero().Interface())
	}
	tmt, err := xdspb.Types.FindMessageByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tmt.Zero().Interface().(*listenerv3.Listener); !ok {
		t.Errorf("xdspb.Types' %s is %T, want the trimmed type", name, tmt.Zero().Interface())
	}
	if _, err := xdspb.Files.FindFileByPath("envoy/config/listener/v3/listener.proto"); err != nil {
		t.Errorf("xdspb.Files: %v", err)
	}
	// Dependencies kept unchanged resolve within the private registries too.
	if _, err := xdspb.Types.FindMessageByURL("type.googleapis.com/google.protobuf.Duration"); err != nil {
		t.Errorf("xdspb.Types: well-known type: %v", err)
	}
	// Every trimmed message type found by name is the one registered by its file.
	n := 0
	xdspb.Types.RangeMessages(func(mt protoreflect.MessageType) bool {
		n++
		if mt.Descriptor().ParentFile() == nil {
			t.Errorf("%s: no file", mt.Descriptor().FullName())
		}
		return true
	})
	if n < 100 {
		t.Errorf("xdspb.Types holds %d messages, want the whole trimmed tree", n)
	}
}

// TestPrunedFieldIsUnknownAndNamed: a field the trimmed types leave out decodes as an unknown
// field, which xdsfield.Check refuses, and PrunedField names it.
func TestPrunedFieldIsUnknownAndNamed(t *testing.T) {
	full := &gcplistenerv3.Listener{Name: "l", TcpBacklogSize: wrapperspb.UInt32(7)}
	b, err := proto.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	var l listenerv3.Listener
	if err := (proto.UnmarshalOptions{Resolver: xdspb.Resolver}).Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	if l.GetName() != "l" {
		t.Errorf("name = %q", l.GetName())
	}
	if len(l.ProtoReflect().GetUnknown()) == 0 {
		t.Fatal("tcp_backlog_size decoded as a known field; the test needs a pruned field")
	}
	if err := xdsfield.Check(&l, "", "name"); err == nil {
		t.Error("xdsfield.Check accepted a listener carrying a pruned field")
	}
	if name, num, ok := xdspb.UnknownField(l.ProtoReflect()); !ok || name != "tcp_backlog_size" || num != 24 {
		t.Errorf("UnknownField = %q, %d, %v; want tcp_backlog_size, 24", name, num, ok)
	}
	if _, _, ok := xdspb.UnknownField((&listenerv3.Listener{}).ProtoReflect()); ok {
		t.Error("UnknownField of a message without unknown fields")
	}
	if got, ok := xdspb.PrunedField("envoy.config.listener.v3.Listener", 24); !ok || got != "tcp_backlog_size" {
		t.Errorf("PrunedField(Listener, 24) = %q, %v; want tcp_backlog_size", got, ok)
	}
	if got, ok := xdspb.PrunedField("envoy.config.listener.v3.Listener", 1); ok {
		t.Errorf("PrunedField(Listener, 1) = %q; name is kept", got)
	}
	if _, ok := xdspb.PrunedField("no.such.Message", 1); ok {
		t.Error("PrunedField of an unknown message")
	}
}

// TestAnyResolves: an Any packing a go-control-plane message unpacks into the trimmed type
// through the private registry.
func TestAnyResolves(t *testing.T) {
	a, err := anypb.New(&gcplistenerv3.Listener{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{Resolver: xdspb.Resolver})
	if err != nil {
		t.Fatal(err)
	}
	l, ok := m.(*listenerv3.Listener)
	if !ok || l.GetName() != "x" {
		t.Fatalf("UnmarshalNew = %T %v", m, m)
	}
}

// TestFrom: From converts a go-control-plane message into its trimmed type (a field the
// trimmed type leaves out travels as an unknown field), a nil message into a nil one, and
// refuses a message of another proto.
func TestFrom(t *testing.T) {
	g := &gcplistenerv3.Listener{Name: "l", TcpBacklogSize: wrapperspb.UInt32(5)}
	l, err := xdspb.From[*listenerv3.Listener](g)
	if err != nil || l.GetName() != "l" {
		t.Fatalf("From = %v, %v", l, err)
	}
	if name, _, ok := xdspb.UnknownField(l.ProtoReflect()); !ok || name != "tcp_backlog_size" {
		t.Errorf("unknown field %q, %v; want tcp_backlog_size", name, ok)
	}
	back := xdspb.MustFrom[*gcplistenerv3.Listener](l)
	if !proto.Equal(back, g) {
		t.Errorf("round trip: %v, want %v", back, g)
	}
	if n, err := xdspb.From[*listenerv3.Listener](nil); n != nil || err != nil {
		t.Errorf("From(nil) = %v, %v", n, err)
	}
	if n, err := xdspb.From[*listenerv3.Listener]((*gcplistenerv3.Listener)(nil)); n != nil || err != nil {
		t.Errorf("From(typed nil) = %v, %v", n, err)
	}
	if _, err := xdspb.From[*listenerv3.Listener](&gcplistenerv3.Filter{Name: "f"}); err == nil {
		t.Error("From converted a Filter into a Listener")
	}
}
