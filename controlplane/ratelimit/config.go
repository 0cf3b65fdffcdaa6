package ratelimit

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"sigs.k8s.io/yaml"
)

// Limits of a configuration.
const (
	// MaxDepth is the deepest nesting of descriptors.
	MaxDepth = 16
	// maxConfigBytes bounds the configuration file.
	maxConfigBytes = 4 << 20
)

// fileDomain is one YAML document of the configuration, the reference service's format.
type fileDomain struct {
	Domain      string           `json:"domain"`
	Descriptors []fileDescriptor `json:"descriptors"`
}

type fileDescriptor struct {
	Key         string           `json:"key"`
	Value       string           `json:"value"`
	RateLimit   *fileLimit       `json:"rate_limit"`
	ShadowMode  bool             `json:"shadow_mode"`
	Descriptors []fileDescriptor `json:"descriptors"`
}

type fileLimit struct {
	Unit            string  `json:"unit"`
	RequestsPerUnit *uint32 `json:"requests_per_unit"`
	Unlimited       bool    `json:"unlimited"`
	Name            string  `json:"name"`
}

// Limit is a compiled rate_limit.
type Limit struct {
	// RequestsPerUnit requests are allowed per window of Unit.
	RequestsPerUnit uint32
	Unit            rlsv3.RateLimitResponse_RateLimit_Unit
	// Seconds is the window's length.
	Seconds int64
	// Name is the limit's name, reported in current_limit.
	Name string
	// Unlimited never limits and never counts.
	Unlimited bool
	// ShadowMode counts but always reports OK.
	ShadowMode bool
	// id identifies the limit's node (its path in the tree), part of counter keys.
	id string
}

// node is one level's entry of a domain's descriptor tree.
type node struct {
	limit    *Limit
	children *level
}

// level is the set of descriptors at one depth under one parent.
type level struct {
	exact    map[string]*node // "key\x00value"
	prefixes []prefixNode     // value wildcards, in file order
	keyOnly  map[string]*node // key alone
}

type prefixNode struct {
	key, prefix string
	n           *node
}

// Config is a compiled configuration: the descriptor trees by domain. It is immutable.
type Config struct {
	domains map[string]*level
}

// LoadConfig reads and compiles the configuration file path.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the rate limit config: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(&limitedReader{f: f, n: maxConfigBytes + 1}); err != nil {
		return nil, fmt.Errorf("reading the rate limit config %s: %w", path, err)
	}
	if buf.Len() > maxConfigBytes {
		return nil, fmt.Errorf("rate limit config %s: larger than %d bytes", path, maxConfigBytes)
	}
	c, err := ParseConfig(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("rate limit config %s: %w", path, err)
	}
	return c, nil
}

type limitedReader struct {
	f *os.File
	n int64
}

func (r *limitedReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, fmt.Errorf("more than %d bytes", maxConfigBytes)
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	n, err := r.f.Read(p)
	r.n -= int64(n)
	return n, err
}

// ParseConfig compiles a configuration: YAML documents separated by "---" lines, one domain
// each. Errors name the document and the descriptor path.
func ParseConfig(data []byte) (*Config, error) {
	c := &Config{domains: map[string]*level{}}
	for i, doc := range splitDocuments(data) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var fd fileDomain
		if err := yaml.UnmarshalStrict(doc, &fd); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if fd.Domain == "" {
			return nil, fmt.Errorf("document %d: domain: empty", i)
		}
		if _, dup := c.domains[fd.Domain]; dup {
			return nil, fmt.Errorf("document %d: domain %q: configured twice", i, fd.Domain)
		}
		lv, err := compileLevel("domain "+fd.Domain+": descriptors", fd.Domain, fd.Descriptors, 1)
		if err != nil {
			return nil, err
		}
		c.domains[fd.Domain] = lv
	}
	return c, nil
}

// splitDocuments splits YAML at "---" document separator lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if t := bytes.TrimRight(line, " \t\r\n"); bytes.Equal(t, []byte("---")) {
			docs = append(docs, cur)
			cur = nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}

func compileLevel(field, id string, ds []fileDescriptor, depth int) (*level, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("%s: nested deeper than %d", field, MaxDepth)
	}
	lv := &level{exact: map[string]*node{}, keyOnly: map[string]*node{}}
	for i, d := range ds {
		f := fmt.Sprintf("%s[%d]", field, i)
		if d.Key == "" {
			return nil, fmt.Errorf("%s.key: empty", f)
		}
		nid := id + "\x00" + d.Key + "\x00" + d.Value
		n := &node{}
		if d.RateLimit != nil {
			l, err := compileLimit(f+".rate_limit", d.RateLimit)
			if err != nil {
				return nil, err
			}
			l.ShadowMode, l.id = d.ShadowMode, nid
			n.limit = l
		} else if d.ShadowMode {
			return nil, fmt.Errorf("%s.shadow_mode: set without a rate_limit", f)
		}
		if len(d.Descriptors) > 0 {
			var err error
			if n.children, err = compileLevel(f+".descriptors", nid, d.Descriptors, depth+1); err != nil {
				return nil, err
			}
		}
		switch {
		case d.Value == "":
			if _, dup := lv.keyOnly[d.Key]; dup {
				return nil, fmt.Errorf("%s: key %q without a value configured twice", f, d.Key)
			}
			lv.keyOnly[d.Key] = n
		case strings.HasSuffix(d.Value, "*"):
			p := strings.TrimSuffix(d.Value, "*")
			for _, x := range lv.prefixes {
				if x.key == d.Key && x.prefix == p {
					return nil, fmt.Errorf("%s: key %q value %q configured twice", f, d.Key, d.Value)
				}
			}
			lv.prefixes = append(lv.prefixes, prefixNode{key: d.Key, prefix: p, n: n})
		default:
			k := d.Key + "\x00" + d.Value
			if _, dup := lv.exact[k]; dup {
				return nil, fmt.Errorf("%s: key %q value %q configured twice", f, d.Key, d.Value)
			}
			lv.exact[k] = n
		}
	}
	return lv, nil
}

func compileLimit(field string, fl *fileLimit) (*Limit, error) {
	if fl.Unlimited {
		if fl.Unit != "" || fl.RequestsPerUnit != nil {
			return nil, fmt.Errorf("%s: unlimited with a unit or requests_per_unit", field)
		}
		return &Limit{Unlimited: true, Name: fl.Name}, nil
	}
	l := &Limit{Name: fl.Name}
	switch strings.ToLower(fl.Unit) {
	case "second":
		l.Unit, l.Seconds = rlsv3.RateLimitResponse_RateLimit_SECOND, 1
	case "minute":
		l.Unit, l.Seconds = rlsv3.RateLimitResponse_RateLimit_MINUTE, 60
	case "hour":
		l.Unit, l.Seconds = rlsv3.RateLimitResponse_RateLimit_HOUR, 3600
	case "day":
		l.Unit, l.Seconds = rlsv3.RateLimitResponse_RateLimit_DAY, 86400
	case "week":
		l.Unit, l.Seconds = rlsv3.RateLimitResponse_RateLimit_WEEK, 7*86400
	case "month":
		l.Unit, l.Seconds = rlsv3.RateLimitResponse_RateLimit_MONTH, 30*86400
	case "year":
		l.Unit, l.Seconds = rlsv3.RateLimitResponse_RateLimit_YEAR, 365*86400
	default:
		return nil, fmt.Errorf("%s.unit: %q is not second, minute, hour, day, week, month or year", field, fl.Unit)
	}
	if fl.RequestsPerUnit == nil {
		return nil, fmt.Errorf("%s.requests_per_unit: missing", field)
	}
	l.RequestsPerUnit = *fl.RequestsPerUnit
	return l, nil
}

// find returns the limit of a descriptor's entries in domain, nil for none.
func (c *Config) find(domain string, entries []entry) *Limit {
	lv := c.domains[domain]
	for i, e := range entries {
		if lv == nil {
			return nil
		}
		n := lv.exact[e.key+"\x00"+e.value]
		if n == nil {
			for _, p := range lv.prefixes {
				if p.key == e.key && strings.HasPrefix(e.value, p.prefix) {
					n = p.n
					break
				}
			}
		}
		if n == nil {
			n = lv.keyOnly[e.key]
		}
		if n == nil {
			return nil
		}
		if i == len(entries)-1 {
			return n.limit
		}
		lv = n.children
	}
	return nil
}

// entry is one key/value of a request descriptor.
type entry struct{ key, value string }
