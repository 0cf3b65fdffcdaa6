package ratelimit

import (
	"errors"
	"fmt"
	"maps"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/strait-mesh/strait/controlplane/config"
	trl "github.com/strait-mesh/strait/controlplane/translate/ratelimit"
)

// Domain is the domain of the RateLimit kind's Global rules (SetRateLimits): it belongs to the
// RateLimit objects, and a configuration file's document for it is ignored.
const Domain = trl.Domain

// units are the windows a Global rule's limit.per may name (config.RateLimitGlobalPers).
var units = map[time.Duration]rlsv3.RateLimitResponse_RateLimit_Unit{
	time.Second:    rlsv3.RateLimitResponse_RateLimit_SECOND,
	time.Minute:    rlsv3.RateLimitResponse_RateLimit_MINUTE,
	time.Hour:      rlsv3.RateLimitResponse_RateLimit_HOUR,
	24 * time.Hour: rlsv3.RateLimitResponse_RateLimit_DAY,
}

// RulesConfig compiles Global rules (translate/ratelimit.GlobalRules) into the descriptor tree
// of Domain: each rule is the descriptor [ratelimit_rule=ID, ratelimit_match=1 × Width] that
// its filters send, followed by the keys of each of its ByShapes (key-only nodes: a counter per
// distinct value), with Requests per Per, named by its ID. A rule whose per is not a unit of
// the service or whose descriptor is too long (validation refuses both), or whose ID was seen
// before, is left out and named in the error; the others are in the returned Config.
func RulesConfig(rules []trl.GlobalRule) (*Config, error) {
	lv := &level{exact: map[string]*node{}, keyOnly: map[string]*node{}}
	var errs []error
	for _, r := range rules {
		unit, ok := units[r.Per]
		if !ok {
			errs = append(errs, fmt.Errorf("RateLimit rule %s: per %s is not 1s, 1m, 1h or 24h", r.ID, r.Per))
			continue
		}
		by := 0
		for _, s := range r.ByShapes {
			by = max(by, len(s))
		}
		if r.Width < 1 || r.Width+by >= MaxEntries {
			errs = append(errs, fmt.Errorf("RateLimit rule %s: %d match and %d by entries, want 1 to %d in all", r.ID, r.Width, by, MaxEntries-1))
			continue
		}
		k := trl.RuleKey + "\x00" + r.ID
		if _, dup := lv.exact[k]; dup {
			errs = append(errs, fmt.Errorf("RateLimit rule %s: configured twice", r.ID))
			continue
		}
		id := Domain + "\x00" + k
		n := &node{}
		lv.exact[k] = n
		for range r.Width {
			child := &node{}
			id += "\x00" + trl.MatchKey + "\x00" + matchValue
			n.children = &level{exact: map[string]*node{trl.MatchKey + "\x00" + matchValue: child}}
			n = child
		}
		shapes := r.ByShapes
		if len(shapes) == 0 {
			shapes = [][]string{nil}
		}
		for _, shape := range shapes {
			m, mid := n, id
			for _, k := range shape {
				if m.children == nil {
					m.children = &level{exact: map[string]*node{}, keyOnly: map[string]*node{}}
				}
				child := m.children.keyOnly[k]
				if child == nil {
					child = &node{}
					m.children.keyOnly[k] = child
				}
				m, mid = child, mid+"\x00"+k
			}
			m.limit = &Limit{RequestsPerUnit: r.Requests, Unit: unit, Seconds: int64(r.Per / time.Second), Name: r.ID, id: mid}
		}
	}
	return &Config{domains: map[string]*level{Domain: lv}}, errors.Join(errs...)
}

// matchValue is the value of the ratelimit_match entries.
const matchValue = "1"

// SetRateLimits replaces the limits of Domain with the Global rules of objs (RateLimit
// objects, validated), keeping the configuration file's other domains and every counter: a
// rule whose limit changed keeps counting its current window. straitd calls it with each new
// mesh snapshot, before the proxies get the filters that send these descriptors. The error
// names the rules left out (see RulesConfig); the others apply.
func (s *Service) SetRateLimits(objs []*config.Object) error {
	c, err := RulesConfig(trl.GlobalRules(objs))
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	s.rules = c
	s.publish()
	return err
}

// setFile replaces the configuration file's domains.
func (s *Service) setFile(c *Config) {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	s.file = c
	s.publish()
}

// publish stores the configuration the service answers from: the file's domains and, when
// RateLimits were set, Domain from them. Callers hold s.cfgMu.
func (s *Service) publish() {
	merged := &Config{domains: map[string]*level{}}
	if s.file != nil {
		maps.Copy(merged.domains, s.file.domains)
	}
	if s.rules != nil {
		if _, clash := merged.domains[Domain]; clash {
			s.log.Warn("rate limit config: domain " + Domain + " belongs to the RateLimit objects' Global rules; the file's is ignored")
		}
		maps.Copy(merged.domains, s.rules.domains)
	}
	s.cfg.Store(merged)
}
