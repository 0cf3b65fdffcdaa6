package admin

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	gcplistenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/strait-mesh/strait/proxy/xdspb"
	adminv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/admin/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
)

// TestDumpResolver: a dump's Anys resolve to strait-proxy's trimmed types first (so the dump
// shows the fields the proxy reads, and not one it does not), and to the global registry for a
// type that is not an xDS one.
func TestDumpResolver(t *testing.T) {
	const name = "envoy.config.listener.v3.Listener"
	mt, err := dumpResolver{}.FindMessageByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mt.Zero().Interface().(*listenerv3.Listener); !ok {
		t.Errorf("%s resolves to %T, want the trimmed type", name, mt.Zero().Interface())
	}
	if _, err := (dumpResolver{}).FindMessageByURL("type.googleapis.com/" + string((&descriptorpb.FileDescriptorProto{}).ProtoReflect().Descriptor().FullName())); err != nil {
		t.Errorf("a non-xDS type does not resolve: %v", err)
	}
	if _, err := (dumpResolver{}).FindMessageByName(protoreflect.FullName("no.such.Type")); err == nil {
		t.Error("an unknown type resolved")
	}

	// tcp_backlog_size is not read by strait-proxy: a listener that carries it dumps without it.
	l := xdspb.MustFrom[*listenerv3.Listener](&gcplistenerv3.Listener{Name: "l", TcpBacklogSize: wrapperspb.UInt32(5)})
	a, err := anypb.New(l)
	if err != nil {
		t.Fatal(err)
	}
	dump := &adminv3.ListenersConfigDump{DynamicListeners: []*adminv3.ListenersConfigDump_DynamicListener{{
		Name: "l", ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{Listener: a}}}}
	b, err := dumpJSON.Marshal(dump)
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(strings.Fields(string(b)), ""); !strings.Contains(s, `"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"l"`) ||
		strings.Contains(s, "tcp_backlog_size") {
		t.Errorf("dump:\n%s", s)
	}
}
