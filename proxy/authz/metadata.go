package authz

import (
	"fmt"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/matcher"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// maxValueDepth bounds the nesting of list_match / or_match value matchers (hostile config).
const maxValueDepth = 32

// metadataMatcher is a compiled envoy.type.matcher.v3.MetadataMatcher on dynamic metadata:
// the value at filter/path (Envoy's Config::Metadata::metadataValue: each path key selects a
// field of the struct reached so far) is matched by value, and the result XORed with invert. A
// missing value is a Value with no kind, which only an inverted matcher accepts.
type metadataMatcher struct {
	filter string
	path   []string
	value  valueMatcher
	invert bool
}

type valueKind uint8

const (
	valNull valueKind = iota
	valDouble
	valDoubleRange
	valString
	valBool
	valPresent
	valList
	valOr
)

// valueMatcher is a compiled envoy.type.matcher.v3.ValueMatcher.
type valueMatcher struct {
	kind  valueKind
	b     bool    // bool_match, present_match
	d, d2 float64 // double exact, or range [d, d2)
	sm    matcher.String
	sub   []valueMatcher // list_match.one_of (one), or_match.value_matchers
}

func compileMetadataMatcher(field string, m *matcherv3.MetadataMatcher) (*metadataMatcher, error) {
	if m == nil {
		return nil, fmt.Errorf("%s: missing metadata matcher", field)
	}
	if err := xdsfield.Check(m, field, "filter", "path", "value", "invert"); err != nil {
		return nil, err
	}
	if m.GetFilter() == "" {
		return nil, fmt.Errorf("%s.filter: empty", field)
	}
	if len(m.GetPath()) == 0 {
		return nil, fmt.Errorf("%s.path: empty", field)
	}
	mm := &metadataMatcher{filter: m.GetFilter(), invert: m.GetInvert()}
	for i, seg := range m.GetPath() {
		f := fmt.Sprintf("%s.path[%d]", field, i)
		if err := xdsfield.Check(seg, f, "key"); err != nil {
			return nil, err
		}
		if seg.GetKey() == "" {
			return nil, fmt.Errorf("%s.key: empty", f)
		}
		mm.path = append(mm.path, seg.GetKey())
	}
	v, err := compileValueMatcher(field+".value", m.GetValue(), 0)
	if err != nil {
		return nil, err
	}
	mm.value = v
	return mm, nil
}

func compileValueMatcher(field string, v *matcherv3.ValueMatcher, depth int) (valueMatcher, error) {
	if v == nil {
		return valueMatcher{}, fmt.Errorf("%s: missing value matcher", field)
	}
	if depth > maxValueDepth {
		return valueMatcher{}, fmt.Errorf("%s: value matchers nested deeper than %d", field, maxValueDepth)
	}
	if err := xdsfield.Check(v, field, "null_match", "double_match", "string_match", "bool_match",
		"present_match", "list_match", "or_match"); err != nil {
		return valueMatcher{}, err
	}
	switch p := v.GetMatchPattern().(type) {
	case *matcherv3.ValueMatcher_NullMatch_:
		if err := xdsfield.Check(p.NullMatch, field+".null_match"); err != nil {
			return valueMatcher{}, err
		}
		return valueMatcher{kind: valNull}, nil
	case *matcherv3.ValueMatcher_DoubleMatch:
		f := field + ".double_match"
		if err := xdsfield.Check(p.DoubleMatch, f, "range", "exact"); err != nil {
			return valueMatcher{}, err
		}
		switch d := p.DoubleMatch.GetMatchPattern().(type) {
		case *matcherv3.DoubleMatcher_Exact:
			return valueMatcher{kind: valDouble, d: d.Exact}, nil
		case *matcherv3.DoubleMatcher_Range:
			if err := xdsfield.Check(d.Range, f+".range", "start", "end"); err != nil {
				return valueMatcher{}, err
			}
			return valueMatcher{kind: valDoubleRange, d: d.Range.GetStart(), d2: d.Range.GetEnd()}, nil
		}
		return valueMatcher{}, fmt.Errorf("%s: no match_pattern set", f)
	case *matcherv3.ValueMatcher_StringMatch:
		sm, err := matcher.CompileString(field+".string_match", p.StringMatch, matchOptions)
		if err != nil {
			return valueMatcher{}, err
		}
		return valueMatcher{kind: valString, sm: sm}, nil
	case *matcherv3.ValueMatcher_BoolMatch:
		return valueMatcher{kind: valBool, b: p.BoolMatch}, nil
	case *matcherv3.ValueMatcher_PresentMatch:
		return valueMatcher{kind: valPresent, b: p.PresentMatch}, nil
	case *matcherv3.ValueMatcher_ListMatch:
		f := field + ".list_match"
		if err := xdsfield.Check(p.ListMatch, f, "one_of"); err != nil {
			return valueMatcher{}, err
		}
		sub, err := compileValueMatcher(f+".one_of", p.ListMatch.GetOneOf(), depth+1)
		if err != nil {
			return valueMatcher{}, err
		}
		return valueMatcher{kind: valList, sub: []valueMatcher{sub}}, nil
	case *matcherv3.ValueMatcher_OrMatch:
		f := field + ".or_match"
		if err := xdsfield.Check(p.OrMatch, f, "value_matchers"); err != nil {
			return valueMatcher{}, err
		}
		vm := valueMatcher{kind: valOr}
		for i, s := range p.OrMatch.GetValueMatchers() {
			sub, err := compileValueMatcher(fmt.Sprintf("%s.value_matchers[%d]", f, i), s, depth+1)
			if err != nil {
				return valueMatcher{}, err
			}
			vm.sub = append(vm.sub, sub)
		}
		return vm, nil
	}
	return valueMatcher{}, fmt.Errorf("%s: no match_pattern set", field)
}

// match implements Envoy's ValueMatcher on v; a nil v is a Value with no kind set.
func (vm *valueMatcher) match(v *structpb.Value) bool {
	switch vm.kind {
	case valNull:
		_, ok := v.GetKind().(*structpb.Value_NullValue)
		return ok
	case valDouble:
		n, ok := v.GetKind().(*structpb.Value_NumberValue)
		return ok && n.NumberValue == vm.d
	case valDoubleRange:
		n, ok := v.GetKind().(*structpb.Value_NumberValue)
		return ok && vm.d <= n.NumberValue && n.NumberValue < vm.d2
	case valString:
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		return ok && vm.sm.Match(s.StringValue)
	case valBool:
		b, ok := v.GetKind().(*structpb.Value_BoolValue)
		return ok && b.BoolValue == vm.b
	case valPresent:
		return vm.b && v.GetKind() != nil
	case valList:
		l, ok := v.GetKind().(*structpb.Value_ListValue)
		if !ok {
			return false
		}
		for _, e := range l.ListValue.GetValues() {
			if vm.sub[0].match(e) {
				return true
			}
		}
		return false
	case valOr:
		for i := range vm.sub {
			if vm.sub[i].match(v) {
				return true
			}
		}
		return false
	}
	return false
}

// lookup returns the value at mm.path in the filter's namespace, or nil.
func (mm *metadataMatcher) lookup(c Connection) *structpb.Value {
	s := c.Metadata(mm.filter)
	var v *structpb.Value
	for _, k := range mm.path {
		if s == nil {
			return nil
		}
		v = s.GetFields()[k]
		if v == nil {
			return nil
		}
		s = v.GetStructValue()
	}
	return v
}

func (mm *metadataMatcher) match(c Connection) bool {
	return mm.value.match(mm.lookup(c)) != mm.invert
}
