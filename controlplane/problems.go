package controlplane

import (
	"log/slog"
	"sort"
	"sync"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate"
)

// problems collects translation problems (a VirtualService field or DestinationRule policy that
// cannot be translated) for /debug/configz: the problems of each connected proxy's latest
// generation, one entry per message however many proxies report it. A generation replaces the
// proxy's previous problems, so a snapshot without them clears them; a disconnected proxy's go
// with it. Each message is logged once per snapshot version it appears in.
type problems struct {
	log *slog.Logger

	mu      sync.Mutex
	byProxy map[string]*proxyProblems // proxy ID → its latest generation's problems
	logged  map[string]uint64         // message → last snapshot version it was logged for
}

// proxyProblems are the problems of one generation for one proxy.
type proxyProblems struct {
	version uint64
	msgs    map[string]bool
}

func newProblems(log *slog.Logger) *problems {
	return &problems{log: log, byProxy: map[string]*proxyProblems{}, logged: map[string]uint64{}}
}

// generator wraps g so that each generation starts the proxy's problems afresh; g must report
// to p.report.
func (p *problems) generator(g translate.Generator) translate.Generator {
	return problemsGenerator{p: p, g: g}
}

type problemsGenerator struct {
	p *problems
	g translate.Generator
}

func (pg problemsGenerator) Generate(snap *mesh.Snapshot, px *translate.Proxy) (translate.Resources, error) {
	pg.p.begin(px, snap.Version)
	return pg.g.Generate(snap, px)
}

// begin starts px's generation for snapshot version v: its earlier problems are dropped. A
// generation for an older version than the one recorded (a late concurrent one) changes nothing.
func (p *problems) begin(px *translate.Proxy, v uint64) {
	key := px.ID.String()
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur := p.byProxy[key]; cur != nil && cur.version > v {
		return
	}
	p.byProxy[key] = &proxyProblems{version: v, msgs: map[string]bool{}}
}

// report is a translate.Options.Report. A joined error is recorded as its separate messages.
func (p *problems) report(px *translate.Proxy, err error) {
	key := px.ID.String()
	for _, e := range config.Errors(err) {
		msg := e.Error()
		p.mu.Lock()
		pp := p.byProxy[key]
		if pp == nil { // reported outside a generation begun here
			pp = &proxyProblems{msgs: map[string]bool{}}
			p.byProxy[key] = pp
		}
		pp.msgs[msg] = true
		last, ok := p.logged[msg]
		p.logged[msg] = pp.version
		p.mu.Unlock()
		if !ok || last != pp.version {
			p.log.Warn("config not translated", "error", msg, "proxy", px.ID.String(), "version", pp.version)
		}
	}
}

// forget drops the problems of a proxy that disconnected.
func (p *problems) forget(px *translate.Proxy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.byProxy, px.ID.String())
}

// current returns the distinct messages of every proxy's latest generation, sorted.
func (p *problems) current() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := map[string]bool{}
	for _, pp := range p.byProxy {
		for m := range pp.msgs {
			set[m] = true
		}
	}
	for m := range p.logged {
		if !set[m] {
			delete(p.logged, m) // logged again if it comes back
		}
	}
	out := make([]string, 0, len(set))
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
