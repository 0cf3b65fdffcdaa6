package authz

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// uriTemplate is a compiled envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig
// path_template, Envoy's UriTemplateMatcher: the path, without query and fragment, must match the
// whole template. Envoy converts the template to an RE2 expression (uri_template_lib); this
// matcher walks the template instead and accepts exactly the same paths (templateRegex builds
// Envoy's expression, and the fuzz target FuzzURITemplate compares the two).
//
// Template syntax (after a leading "/", segments separated by "/"):
//   - a literal segment of RFC 3986 pchar characters other than "*" and "=": matched exactly;
//   - "*": one non-empty segment of those characters;
//   - "**": zero or more characters of those and "/"; no operator may follow it;
//   - "{name}", "{name=*}", "{name=**}", "{name=a/*/b}": a variable, matched as its pattern;
//   - a literal suffix right after the last segment ("/*.m4s", "/**.mpd");
//   - a trailing "/", which the path must have too.
type uriTemplate struct {
	src    string
	comps  []tmplComp
	suffix string
	text   int // index of the "**" component, -1 when there is none
}

type tmplKind uint8

const (
	tmplLit  tmplKind = iota // literal segment (may be "" for a trailing "/")
	tmplSeg                  // "*": [pchar]+
	tmplText                 // "**": [pchar/]*
)

type tmplComp struct {
	kind tmplKind
	lit  string
}

// Envoy's uri_template_lib limits.
const (
	maxTemplateVariables  = 5
	maxTemplateVarNameLen = 16
)

// litChars are Envoy's kLiteral: RFC 3986 pchar less "*" and "=" (unreserved, "%",
// sub-delims except "*" and "=", ":" and "@").
var litChars = func() (t [256]bool) {
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()+,;:@") {
		t[c] = true
	}
	return t
}()

var errTemplate = errors.New("invalid uri template")

func templateErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errTemplate}, args...)...)
}

// parsedSegment is one "/"-separated element of a template before flattening.
type parsedSegment struct {
	op       tmplKind // tmplLit, tmplSeg, tmplText for a bare literal or operator
	lit      string
	isVar    bool
	varName  string
	varMatch []tmplComp // empty: implicit "*"
}

// parseURITemplate parses a path template with Envoy's rules (parseURLPatternSyntax), returning
// an error for any template Envoy would refuse.
func parseURITemplate(tmpl string) (*uriTemplate, error) {
	if len(tmpl) == 0 || tmpl[0] != '/' {
		return nil, templateErr("%q does not start with /", tmpl)
	}
	for i := 1; i < len(tmpl); i++ {
		if tmpl[i] < 0x21 || tmpl[i] > 0x7e {
			return nil, templateErr("%q has a character that is not printable ASCII", tmpl)
		}
	}
	var segs []parsedSegment
	suffix := ""
	p := tmpl[1:]
	for p != "" {
		var seg parsedSegment
		var err error
		switch p[0] {
		case '*':
			seg.op, p = consumeOperator(p)
		case '{':
			seg, p, err = consumeVariable(p)
		default:
			seg.op = tmplLit
			seg.lit, p, err = consumeLiteral(p)
		}
		if err != nil {
			return nil, fmt.Errorf("%w in %q", err, tmpl)
		}
		segs = append(segs, seg)
		if p == "" {
			break
		}
		if p == "/" { // a single trailing "/": an empty last segment
			segs = append(segs, parsedSegment{op: tmplLit})
			break
		}
		if p[0] == '/' {
			p = p[1:]
			continue
		}
		// Not followed by "/": a suffix, which must be the rest of the template.
		suffix, p, err = consumeLiteral(p)
		if err != nil {
			return nil, fmt.Errorf("%w in %q", err, tmpl)
		}
		if p != "" {
			return nil, templateErr("%q: a suffix must end the template", tmpl)
		}
	}
	// Variables: at most 5, names of 1 to 16 characters, no name twice.
	seen := map[string]bool{}
	for _, s := range segs {
		if !s.isVar {
			continue
		}
		if len(seen) >= maxTemplateVariables {
			return nil, templateErr("%q has more than %d variables", tmpl, maxTemplateVariables)
		}
		if len(s.varName) > maxTemplateVarNameLen {
			return nil, templateErr("%q: variable name %q is longer than %d", tmpl, s.varName, maxTemplateVarNameLen)
		}
		if seen[s.varName] {
			return nil, templateErr("%q repeats variable %q", tmpl, s.varName)
		}
		seen[s.varName] = true
	}
	// Flatten, checking that no operator follows "**".
	t := &uriTemplate{src: tmpl, suffix: suffix, text: -1}
	add := func(c tmplComp) error {
		if c.kind != tmplLit && t.text >= 0 {
			return templateErr("%q has an operator after **", tmpl)
		}
		if c.kind == tmplText {
			t.text = len(t.comps)
		}
		t.comps = append(t.comps, c)
		return nil
	}
	for _, s := range segs {
		var err error
		switch {
		case !s.isVar:
			err = add(tmplComp{kind: s.op, lit: s.lit})
		case len(s.varMatch) == 0:
			err = add(tmplComp{kind: tmplSeg})
		default:
			for _, c := range s.varMatch {
				if err = add(c); err != nil {
					break
				}
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

func consumeOperator(p string) (tmplKind, string) {
	if strings.HasPrefix(p, "**") {
		return tmplText, p[2:]
	}
	return tmplSeg, p[1:]
}

// consumeLiteral takes the literal up to the next "/" (Envoy's consumeLiteral).
func consumeLiteral(p string) (lit, rest string, err error) {
	lit = p
	if i := strings.IndexByte(p, '/'); i >= 0 {
		lit = p[:i]
	}
	if lit == "" {
		return "", "", templateErr("empty literal")
	}
	for i := 0; i < len(lit); i++ {
		if !litChars[lit[i]] {
			return "", "", templateErr("invalid literal %q", lit)
		}
	}
	return lit, p[len(lit):], nil
}

// consumeVariable parses "{name}" or "{name=pattern}" at the start of p.
func consumeVariable(p string) (parsedSegment, string, error) {
	if len(p) < 2 || p[0] != '{' {
		return parsedSegment{}, "", templateErr("invalid variable")
	}
	body, rest, ok := strings.Cut(p[1:], "}")
	if !ok {
		return parsedSegment{}, "", templateErr("unmatched variable bracket")
	}
	name, patt, hasPatt := strings.Cut(body, "=")
	if !validVarName(name) {
		return parsedSegment{}, "", templateErr("invalid variable name %q", name)
	}
	seg := parsedSegment{isVar: true, varName: name}
	if !hasPatt {
		return seg, rest, nil
	}
	if patt == "" {
		return parsedSegment{}, "", templateErr("empty variable match in {%s}", body)
	}
	for patt != "" {
		if patt[0] == '*' {
			var k tmplKind
			k, patt = consumeOperator(patt)
			seg.varMatch = append(seg.varMatch, tmplComp{kind: k})
		} else {
			lit, r, err := consumeLiteral(patt)
			if err != nil {
				return parsedSegment{}, "", err
			}
			patt = r
			seg.varMatch = append(seg.varMatch, tmplComp{kind: tmplLit, lit: lit})
		}
		if patt != "" {
			if patt[0] != '/' || len(patt) == 1 {
				return parsedSegment{}, "", templateErr("invalid variable match in {%s}", body)
			}
			patt = patt[1:]
		}
	}
	return seg, rest, nil
}

// validVarName reports whether s matches ^[a-zA-Z][a-zA-Z0-9_]*$.
func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !alpha && (i == 0 || !('0' <= c && c <= '9' || c == '_')) {
			return false
		}
	}
	return true
}

// stripQueryAndFragment is Envoy's PathUtil::removeQueryAndFragment: the path up to the first
// "?" or "#".
func stripQueryAndFragment(p string) string {
	for i := 0; i < len(p); i++ {
		if p[i] == '?' || p[i] == '#' {
			return p[:i]
		}
	}
	return p
}

// match reports whether the path (query and fragment already stripped) matches. It does not
// allocate.
func (t *uriTemplate) match(path string) bool {
	if path == "" || path[0] != '/' {
		return false
	}
	rest := path[1:]
	n := len(t.comps)
	if n == 0 {
		return rest == ""
	}
	end := n
	if t.text >= 0 {
		end = t.text
	}
	// Components before "**" (or all of them) each take one segment.
	for i := 0; i < end; i++ {
		seg := rest
		j := strings.IndexByte(rest, '/')
		if j >= 0 {
			seg, rest = rest[:j], rest[j+1:]
		} else {
			rest = ""
		}
		last := i == n-1
		if last != (j < 0) {
			// The last component must take the last segment, the others must not.
			return false
		}
		if !last {
			if !t.comps[i].matchSegment(seg) {
				return false
			}
			continue
		}
		// Last component: it and the suffix make up the final segment.
		if len(seg) < len(t.suffix) || seg[len(seg)-len(t.suffix):] != t.suffix {
			return false
		}
		return t.comps[i].matchSegment(seg[:len(seg)-len(t.suffix)])
	}
	// "**" then a fixed tail: "/lit" for each literal after it, then the suffix.
	tailLen := len(t.suffix)
	for _, c := range t.comps[t.text+1:] {
		tailLen += 1 + len(c.lit)
	}
	if len(rest) < tailLen {
		return false
	}
	glob, tail := rest[:len(rest)-tailLen], rest[len(rest)-tailLen:]
	for i := 0; i < len(glob); i++ {
		if c := glob[i]; c != '/' && !litChars[c] {
			return false
		}
	}
	for _, c := range t.comps[t.text+1:] {
		if tail[0] != '/' || tail[1:1+len(c.lit)] != c.lit {
			return false
		}
		tail = tail[1+len(c.lit):]
	}
	return tail == t.suffix
}

// matchSegment matches one path segment (no "/") against a component other than "**".
func (c *tmplComp) matchSegment(s string) bool {
	if c.kind == tmplLit {
		return s == c.lit
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !litChars[s[i]] {
			return false
		}
	}
	return true
}

// templateRegex returns Envoy's RE2 expression for a template (uri_template_lib's
// toRegexPattern), anchored for a full match. Tests compare it with match.
func templateRegex(tmpl string) (*regexp.Regexp, error) {
	if _, err := parseURITemplate(tmpl); err != nil {
		return nil, err
	}
	const lit = `a-zA-Z0-9\-._~%!$&'()+,;:@`
	esc := strings.NewReplacer("$", `\$`, "(", `\(`, ")", `\)`, "+", `\+`, ".", `\.`)
	var b strings.Builder
	b.WriteString("^/")
	p := tmpl[1:]
	// Re-walk the template textually: the same lexing as parseURITemplate, emitting regex.
	emit := func(c tmplComp) {
		switch c.kind {
		case tmplLit:
			b.WriteString(esc.Replace(c.lit))
		case tmplSeg:
			b.WriteString("[" + lit + "]+")
		case tmplText:
			b.WriteString("[" + lit + "/]*")
		}
	}
	for p != "" {
		switch p[0] {
		case '*':
			var k tmplKind
			k, p = consumeOperator(p)
			emit(tmplComp{kind: k})
		case '{':
			seg, r, _ := consumeVariable(p)
			p = r
			b.WriteString("(?P<" + seg.varName + ">")
			if len(seg.varMatch) == 0 {
				emit(tmplComp{kind: tmplSeg})
			}
			for i, c := range seg.varMatch {
				if i > 0 {
					b.WriteByte('/')
				}
				emit(c)
			}
			b.WriteByte(')')
		default:
			l, r, _ := consumeLiteral(p)
			p = r
			emit(tmplComp{kind: tmplLit, lit: l})
		}
		if p == "" {
			break
		}
		if p == "/" {
			b.WriteByte('/')
			break
		}
		if p[0] == '/' {
			b.WriteByte('/')
			p = p[1:]
			continue
		}
		l, _, _ := consumeLiteral(p)
		b.WriteString(esc.Replace(l))
		break
	}
	b.WriteByte('$')
	return regexp.Compile(b.String())
}
