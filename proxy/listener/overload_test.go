package listener

import (
	"bufio"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/overload"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
)

// admissionEnv is a testEnv whose listeners are subject to an overload manager.
type admissionEnv struct {
	*testEnv
	m *overload.Manager
}

func (e admissionEnv) Admission() Admission { return e.m }

var _ AdmissionEnv = admissionEnv{}

// echoConn dials addr, reads the backend's greeting and checks that an echo round trip works.
func echoConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c := testenv.Dial(t, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if line, _ := r.ReadString('\n'); line != "ECHO\n" {
		t.Fatalf("greeting %q", line)
	}
	checkEcho(t, c, r)
	return c
}

func checkEcho(t *testing.T, c net.Conn, r *bufio.Reader) {
	t.Helper()
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	if line, err := r.ReadString('\n'); line != "ping\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
}

// refused reports whether a new connection to addr is closed without the backend's greeting.
func refused(t *testing.T, addr string) bool {
	t.Helper()
	return readLine(t, nil, addr) == ""
}

func TestGlobalConnectionLimitAcrossListeners(t *testing.T) {
	env := admissionEnv{newEnv(), overload.New(overload.Config{MaxConnections: 2})}
	env.tcp["echo"] = tcpBackend(t, "ECHO")
	_, a := start(t, &listenerv3.Listener{Name: "a", StatPrefix: "a", FilterChains: []*listenerv3.FilterChain{tcpChain(t, "a", "echo", nil)}}, env)
	_, b := start(t, &listenerv3.Listener{Name: "b", StatPrefix: "b", FilterChains: []*listenerv3.FilterChain{tcpChain(t, "b", "echo", nil)}}, env)
	free, err := Compile(&listenerv3.Listener{Name: "free", StatPrefix: "free", IgnoreGlobalConnLimit: true,
		Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{tcpChain(t, "free", "echo", nil)}}, env)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := free.Listen(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	go free.Serve(ln)
	t.Cleanup(func() { free.Close() })

	first := echoConn(t, a)
	echoConn(t, b)
	if !refused(t, a) {
		t.Fatal("third connection (on listener a) admitted over a global limit of 2")
	}
	if !refused(t, b) {
		t.Fatal("third connection (on listener b) admitted over a global limit of 2")
	}
	if n := env.counter("listener.a.downstream_global_cx_overflow"); n != 1 {
		t.Errorf("a: downstream_global_cx_overflow = %d", n)
	}
	if n := env.counter("listener.b.downstream_global_cx_overflow"); n != 1 {
		t.Errorf("b: downstream_global_cx_overflow = %d", n)
	}
	if n := env.counter("listener.a.downstream_cx_overflow"); n != 0 {
		t.Errorf("the listener's own overflow counted a global refusal: %d", n)
	}
	// Open connections keep working.
	checkEcho(t, first, bufio.NewReader(first))
	// A listener with ignore_global_conn_limit is not counted.
	echoConn(t, ln.Addr().String())
	if env.m.Connections() != 2 {
		t.Errorf("global connections = %d, want 2", env.m.Connections())
	}
	// A closed connection frees its slot.
	first.Close()
	waitFor(t, "slot released", func() bool { return env.m.Connections() == 1 })
	echoConn(t, a)
}

func TestListenerLimitReleasesGlobalSlot(t *testing.T) {
	env := admissionEnv{newEnv(), overload.New(overload.Config{MaxConnections: 10})}
	env.tcp["echo"] = tcpBackend(t, "ECHO")
	l, addr := start(t, &listenerv3.Listener{Name: "a", StatPrefix: "a", FilterChains: []*listenerv3.FilterChain{tcpChain(t, "a", "echo", nil)}}, env)
	l.SetMaxConnections(1)
	echoConn(t, addr)
	if !refused(t, addr) {
		t.Fatal("admitted over the listener's limit")
	}
	if n := env.counter("listener.a.downstream_cx_overflow"); n != 1 {
		t.Errorf("downstream_cx_overflow = %d", n)
	}
	if n := env.m.Connections(); n != 1 {
		t.Errorf("global connections = %d after a listener-limit refusal, want 1", n)
	}
}

func TestStopAcceptingConnections(t *testing.T) {
	var used atomic.Uint64
	m := overload.New(overload.Config{MemoryLimit: 100, MaxConnections: -1,
		ReadMemory: func() (uint64, error) { return used.Load(), nil }, FreeOSMemory: func() {}})
	env := admissionEnv{newEnv(), m}
	env.tcp["echo"] = tcpBackend(t, "ECHO")
	_, addr := start(t, &listenerv3.Listener{Name: "a", StatPrefix: "a", FilterChains: []*listenerv3.FilterChain{tcpChain(t, "a", "echo", nil)}}, env)
	open := echoConn(t, addr)

	used.Store(96) // above stop_accepting_connections' 95 %
	m.Sample()
	if !refused(t, addr) {
		t.Fatal("new connection admitted while stop_accepting_connections is active")
	}
	if n := env.counter("listener.a.downstream_cx_overload_reject"); n != 1 {
		t.Errorf("downstream_cx_overload_reject = %d", n)
	}
	checkEcho(t, open, bufio.NewReader(open))

	used.Store(50)
	m.Sample()
	echoConn(t, addr)
}
