package dns

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/strait-mesh/strait/internal/nametable"
	"github.com/strait-mesh/strait/internal/testenv"
)

func testTable(t testing.TB) *Table {
	t.Helper()
	tb, err := Compile(nametable.Table{
		"reviews.default.svc.cluster.local": {IPs: []string{"240.240.1.7"}, AltHosts: []string{"reviews", "reviews.default", "reviews.default.svc"}},
		"ratings.prod.svc.cluster.local":    {IPs: []string{"10.96.0.11", "2001:db8::11"}, AltHosts: []string{"ratings.prod", "ratings.prod.svc"}},
		"many.example.com":                  {IPs: manyIPs(60)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func manyIPs(n int) []string {
	var out []string
	for i := range n {
		out = append(out, netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)}).String())
	}
	return out
}

// fakeUpstream is a resolver on loopback answering every A query with 198.18.9.9, over UDP and
// TCP, and counting queries.
type fakeUpstream struct {
	udp     net.PacketConn
	tcp     net.Listener
	queries chan string
}

func startUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	udp, tcp, err := listenPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &fakeUpstream{udp: udp, tcp: tcp, queries: make(chan string, 100)}
	t.Cleanup(func() { udp.Close(); tcp.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, addr, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := u.answer(buf[:n]); resp != nil {
				_, _ = udp.WriteTo(resp, addr)
			}
		}
	}()
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				msg, err := readTCP(c)
				if err != nil {
					return
				}
				if resp := u.answer(msg); resp != nil {
					_ = writeTCP(c, resp)
				}
			}()
		}
	}()
	return u
}

func (u *fakeUpstream) answer(msg []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	u.queries <- q.Name.String()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RecursionAvailable: true})
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	if q.Type == dnsmessage.TypeA {
		_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: [4]byte{198, 18, 9, 9}})
	}
	out, _ := b.Finish()
	return out
}

func (u *fakeUpstream) addr() string { return u.udp.LocalAddr().String() }

func startServer(t *testing.T, upstream ...string) *Server {
	t.Helper()
	table := testTable(t)
	s, err := Listen(Options{Address: "127.0.0.1:0", Table: func() *Table { return table },
		Search:   []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"},
		Upstream: &Forwarder{Servers: upstream, Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	testenv.ServeUntilEnd(t, s.Serve, s.Close)
	return s
}

func buildQuery(t testing.TB, id uint16, name string, qt dnsmessage.Type, edns bool) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	_ = b.StartQuestions()
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: qt, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	if edns {
		_ = b.StartAdditionals()
		var rh dnsmessage.ResourceHeader
		_ = rh.SetEDNS0(4096, dnsmessage.RCodeSuccess, false)
		_ = b.OPTResource(rh, dnsmessage.OPTResource{})
	}
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// exchange sends one query over UDP or TCP and parses the response.
func exchange(t *testing.T, s *Server, network string, query []byte) *dnsmessage.Message {
	t.Helper()
	c, err := net.Dial(network, s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	var raw []byte
	if network == "tcp" {
		if err := writeTCP(c, query); err != nil {
			t.Fatal(err)
		}
		if raw, err = readTCP(c); err != nil {
			t.Fatal(err)
		}
	} else {
		if _, err := c.Write(query); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, MaxMessageSize)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		raw = buf[:n]
	}
	var m dnsmessage.Message
	if err := m.Unpack(raw); err != nil {
		t.Fatalf("unpacking response: %v", err)
	}
	return &m
}

func answers(m *dnsmessage.Message) []string {
	var out []string
	for _, a := range m.Answers {
		switch b := a.Body.(type) {
		case *dnsmessage.AResource:
			out = append(out, a.Header.Name.String()+" A "+netip.AddrFrom4(b.A).String())
		case *dnsmessage.AAAAResource:
			out = append(out, a.Header.Name.String()+" AAAA "+netip.AddrFrom16(b.AAAA).String())
		case *dnsmessage.CNAMEResource:
			out = append(out, a.Header.Name.String()+" CNAME "+b.CNAME.String())
		}
	}
	return out
}

func TestMeshAnswers(t *testing.T) {
	up := startUpstream(t)
	s := startServer(t, up.addr())
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range []struct {
			name  string
			qtype dnsmessage.Type
			rcode dnsmessage.RCode
			want  []string
		}{
			{"reviews.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"reviews. A 240.240.1.7"}},
			{"Reviews.Default.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"Reviews.Default. A 240.240.1.7"}},
			{"reviews.default.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"reviews.default.svc.cluster.local. A 240.240.1.7"}},
			{"reviews.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, nil}, // NODATA
			{"reviews.", dnsmessage.TypeMX, dnsmessage.RCodeSuccess, nil},   // NODATA
			{"ratings.prod.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, []string{"ratings.prod. AAAA 2001:db8::11"}},
			{"ratings.prod.svc.cluster.local.", dnsmessage.TypeALL, dnsmessage.RCodeSuccess,
				[]string{"ratings.prod.svc.cluster.local. A 10.96.0.11", "ratings.prod.svc.cluster.local. AAAA 2001:db8::11"}},
			// A search-list expansion of a mesh name: CNAME to the name and its address.
			{"reviews.default.svc.cluster.local.default.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess,
				[]string{"reviews.default.svc.cluster.local.default.svc.cluster.local. CNAME reviews.default.svc.cluster.local.",
					"reviews.default.svc.cluster.local. A 240.240.1.7"}},
		} {
			m := exchange(t, s, network, buildQuery(t, 0x1234, tc.name, tc.qtype, false))
			if m.ID != 0x1234 || !m.Response || !m.Authoritative || !m.RecursionDesired || m.RCode != tc.rcode {
				t.Errorf("%s %s %v: header %+v", network, tc.name, tc.qtype, m.Header)
			}
			if len(m.Questions) != 1 || m.Questions[0].Name.String() != tc.name {
				t.Errorf("%s %s: questions %v", network, tc.name, m.Questions)
			}
			if got := answers(m); !slices.Equal(got, tc.want) {
				t.Errorf("%s %s %v: answers %q, want %q", network, tc.name, tc.qtype, got, tc.want)
			}
		}
	}
	select {
	case q := <-up.queries:
		t.Fatalf("a mesh name was forwarded: %s", q)
	default:
	}
}

func TestForwarding(t *testing.T) {
	up := startUpstream(t)
	s := startServer(t, up.addr())
	for _, network := range []string{"udp", "tcp"} {
		m := exchange(t, s, network, buildQuery(t, 7, "example.org.", dnsmessage.TypeA, false))
		if m.RCode != dnsmessage.RCodeSuccess || m.Authoritative {
			t.Fatalf("%s: header %+v", network, m.Header)
		}
		if got := answers(m); !slices.Equal(got, []string{"example.org. A 198.18.9.9"}) {
			t.Fatalf("%s: answers %q", network, got)
		}
		if q := <-up.queries; q != "example.org." {
			t.Fatalf("upstream got %q", q)
		}
	}
	// A name that merely ends like a mesh name is forwarded too.
	m := exchange(t, s, "udp", buildQuery(t, 8, "xreviews.default.", dnsmessage.TypeA, false))
	if got := answers(m); len(got) != 1 || <-up.queries != "xreviews.default." {
		t.Fatalf("answers %q", got)
	}
}

func TestUpstreamFailure(t *testing.T) {
	// A loopback port nobody listens on: the upstream exchange fails (refused or timed out).
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.LocalAddr().String()
	l.Close()
	table := testTable(t)
	var requests, upstream, failures counter
	s, err := Listen(Options{Address: "127.0.0.1:0", Table: func() *Table { return table },
		Upstream: &Forwarder{Servers: []string{dead}, Timeout: time.Second},
		Metrics:  Metrics{Requests: &requests, UpstreamRequests: &upstream, UpstreamFailures: &failures}})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer s.Close()
	for _, network := range []string{"udp", "tcp"} {
		m := exchange(t, s, network, buildQuery(t, 9, "example.org.", dnsmessage.TypeA, false))
		if m.RCode != dnsmessage.RCodeServerFailure || m.ID != 9 || len(m.Questions) != 1 {
			t.Fatalf("%s: header %+v questions %v, want SERVFAIL", network, m.Header, m.Questions)
		}
	}
	// Mesh names still answer.
	if got := answers(exchange(t, s, "udp", buildQuery(t, 10, "reviews.", dnsmessage.TypeA, false))); len(got) != 1 {
		t.Fatalf("answers %q", got)
	}
	if requests.n.Load() != 3 || upstream.n.Load() != 2 || failures.n.Load() != 2 {
		t.Fatalf("metrics: requests %d upstream %d failures %d, want 3 2 2", requests.n.Load(), upstream.n.Load(), failures.n.Load())
	}
}

// counter is a Counter for tests.
type counter struct{ n atomic.Int64 }

func (c *counter) Inc() { c.n.Add(1) }

func TestTruncationAndEDNS(t *testing.T) {
	s := startServer(t)
	m := exchange(t, s, "udp", buildQuery(t, 1, "many.example.com.", dnsmessage.TypeA, false))
	if !m.Truncated || len(m.Answers) != 0 {
		t.Fatalf("60 A records over plain UDP: truncated=%v answers=%d", m.Truncated, len(m.Answers))
	}
	m = exchange(t, s, "udp", buildQuery(t, 2, "many.example.com.", dnsmessage.TypeA, true))
	if m.Truncated || len(m.Answers) != 60 || len(m.Additionals) != 1 || m.Additionals[0].Header.Type != dnsmessage.TypeOPT {
		t.Fatalf("with EDNS(0): truncated=%v answers=%d additionals=%v", m.Truncated, len(m.Answers), m.Additionals)
	}
	m = exchange(t, s, "tcp", buildQuery(t, 3, "many.example.com.", dnsmessage.TypeA, false))
	if m.Truncated || len(m.Answers) != 60 {
		t.Fatalf("over TCP: truncated=%v answers=%d", m.Truncated, len(m.Answers))
	}
}

func TestMalformed(t *testing.T) {
	s := startServer(t)
	// Two questions: FORMERR.
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 5})
	_ = b.StartQuestions()
	for range 2 {
		_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("reviews."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	}
	two, _ := b.Finish()
	if m := exchange(t, s, "udp", two); m.RCode != dnsmessage.RCodeFormatError || m.ID != 5 {
		t.Fatalf("two questions: %+v", m.Header)
	}
	// No question: FORMERR.
	nb := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 6})
	none, _ := nb.Finish()
	if m := exchange(t, s, "tcp", none); m.RCode != dnsmessage.RCodeFormatError {
		t.Fatalf("no question: %+v", m.Header)
	}
	// Not a query (opcode STATUS): NOTIMP.
	q := buildQuery(t, 7, "reviews.", dnsmessage.TypeA, false)
	q[2] |= 2 << 3
	if m := exchange(t, s, "udp", q); m.RCode != dnsmessage.RCodeNotImplemented {
		t.Fatalf("opcode 2: %+v", m.Header)
	}
	// Garbage and responses get no answer; the server keeps serving.
	h := &handler{table: func() *Table { return nil }}
	for _, msg := range [][]byte{nil, {1, 2, 3}, append(buildQuery(t, 1, "a.", dnsmessage.TypeA, false)[:2], 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0)} {
		if resp := h.respond(context.Background(), msg, false); resp != nil {
			t.Fatalf("respond(%x) = %x, want nothing", msg, resp)
		}
	}
	if got := answers(exchange(t, s, "udp", buildQuery(t, 8, "reviews.", dnsmessage.TypeA, false))); len(got) != 1 {
		t.Fatalf("answers %q", got)
	}
}

// TestGoResolver resolves mesh and other names with Go's own resolver pointed at the proxy.
func TestGoResolver(t *testing.T) {
	up := startUpstream(t)
	s := startServer(t, up.addr())
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addr().String())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, "reviews")
	if err != nil || !slices.Equal(addrs, []string{"240.240.1.7"}) {
		t.Fatalf("LookupHost(reviews) = %v, %v", addrs, err)
	}
	addrs, err = r.LookupHost(ctx, "ratings.prod.svc.cluster.local")
	slices.Sort(addrs)
	if err != nil || !slices.Equal(addrs, []string{"10.96.0.11", "2001:db8::11"}) {
		t.Fatalf("LookupHost(ratings) = %v, %v", addrs, err)
	}
	addrs, err = r.LookupHost(ctx, "example.org")
	if err != nil || !slices.Equal(addrs, []string{"198.18.9.9"}) {
		t.Fatalf("LookupHost(example.org) = %v, %v", addrs, err)
	}
}

func TestResolvConf(t *testing.T) {
	rc, err := parseResolvConf(strings.NewReader(`# comment
nameserver 10.0.0.2
nameserver fe80::1%eth0
nameserver bogus
domain first.example
search Default.svc.cluster.local. svc.cluster.local cluster.local
options ndots:5
nameserver 10.0.0.3
nameserver 10.0.0.4
`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rc.Servers, []string{"10.0.0.2:53", "[fe80::1%eth0]:53", "10.0.0.3:53"}) {
		t.Fatalf("servers %q", rc.Servers)
	}
	if !slices.Equal(rc.Search, []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}) {
		t.Fatalf("search %q", rc.Search)
	}
	if rc, err := ReadResolvConf("/nonexistent/resolv.conf"); err != nil || len(rc.Servers) != 0 {
		t.Fatalf("missing file: %v %v", rc, err)
	}
}

func TestCompile(t *testing.T) {
	tb := testTable(t)
	v4, v6, ok := tb.Resolve("RATINGS.prod.svc.")
	if !ok || len(v4) != 1 || len(v6) != 1 {
		t.Fatalf("Resolve = %v %v %v", v4, v6, ok)
	}
	if _, _, ok := tb.Resolve("reviews.prod"); ok {
		t.Fatal("reviews.prod resolved")
	}
	if _, err := Compile(nametable.Table{"a.example.com": {IPs: []string{"not-an-ip"}}}); err == nil {
		t.Fatal("bad address compiled")
	}
	var nilTable *Table
	if _, _, ok := nilTable.Resolve("reviews"); ok || nilTable.Len() != 0 {
		t.Fatal("nil table resolved")
	}
}
