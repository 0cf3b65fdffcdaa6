package authz

import (
	"strings"

	"github.com/strait-mesh/strait/proxy/matcher"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

// hdrSource says where a header matcher reads its value from.
type hdrSource uint8

const (
	hdrRegular   hdrSource = iota // Request.Header(name)
	hdrMethod                     // :method
	hdrPath                       // :path
	hdrAuthority                  // :authority, and "host", which Envoy's header map folds into it
	hdrScheme                     // :scheme
)

// headerMatcher is a compiled envoy.config.route.v3.HeaderMatcher and where in the Request its
// header is.
type headerMatcher struct {
	name string // lower case
	src  hdrSource
	matcher.Header
}

func compileHeaderMatcher(field string, h *routev3.HeaderMatcher) (*headerMatcher, error) {
	m, err := matcher.CompileHeader(field, h, matchOptions)
	if err != nil {
		return nil, err
	}
	hm := &headerMatcher{name: matcher.LowerASCII(m.Name()), Header: m}
	switch hm.name {
	case ":method":
		hm.src = hdrMethod
	case ":path":
		hm.src = hdrPath
	case ":authority", "host":
		hm.src = hdrAuthority
	case ":scheme":
		hm.src = hdrScheme
	}
	return hm, nil
}

// value returns the header's value and whether it is present. r is nil on the network filter,
// which Envoy evaluates against an empty header map. Only a repeated header allocates.
func (hm *headerMatcher) value(r Request) (string, bool) {
	if r == nil {
		return "", false
	}
	var v string
	switch hm.src {
	case hdrMethod:
		v = r.Method()
	case hdrPath:
		v = r.Path()
	case hdrAuthority:
		v = r.Host()
	case hdrScheme:
		v = r.Scheme()
	default:
		vs := r.Header(hm.name)
		switch len(vs) {
		case 0:
			return "", false
		case 1:
			return vs[0], true
		}
		return strings.Join(vs, ","), true
	}
	return v, v != ""
}
