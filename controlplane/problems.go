package controlplane

import (
	"log/slog"
	"sort"
	"sync"

	"github.com/strait-mesh/strait/controlplane/translate"
)

// problems collects translation problems reported per proxy (a VirtualService field or
// DestinationRule policy that cannot be translated), deduplicated across proxies: each message is
// logged once per snapshot version it appears in and listed at /debug/configz.
type problems struct {
	log     *slog.Logger
	version func() uint64

	mu   sync.Mutex
	seen map[string]uint64 // message → last snapshot version it was reported for
}

func newProblems(log *slog.Logger, version func() uint64) *problems {
	return &problems{log: log, version: version, seen: map[string]uint64{}}
}

// report is a translate.Options.Report.
func (p *problems) report(px *translate.Proxy, err error) {
	v := p.version()
	msg := err.Error()
	p.mu.Lock()
	last, ok := p.seen[msg]
	p.seen[msg] = v
	p.mu.Unlock()
	if !ok || last != v {
		p.log.Warn("config not translated", "error", msg, "proxy", px.ID.String(), "version", v)
	}
}

// current returns the messages reported for the newest version that had any reports.
func (p *problems) current() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var newest uint64
	for _, v := range p.seen {
		if v > newest {
			newest = v
		}
	}
	var out []string
	for m, v := range p.seen {
		if v == newest {
			out = append(out, m)
		} else {
			delete(p.seen, m) // superseded by a newer snapshot
		}
	}
	sort.Strings(out)
	return out
}
