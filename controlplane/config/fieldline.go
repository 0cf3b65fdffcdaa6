package config

import (
	"regexp"
	"strconv"
	"strings"
)

// YAMLDoc indexes the significant lines of one block-style YAML document, to find the line of
// a field path in it (flow-style values are found on the line of their key).
type YAMLDoc struct {
	start int
	lines []yamlLine
}

// yamlLine is one significant line of a block-style YAML document, as a list item marker ("-")
// or a "key: value" entry (the content after "- " becomes an entry of its own, two columns in).
type yamlLine struct {
	line   int // 1-based, in the file
	indent int
	item   bool
	key    string // "" when the line is not "key:" or "key: value"
	flow   bool   // the value is written inline in flow style ({...} or [...])
}

var keyRE = regexp.MustCompile(`^("[^"]*"|'[^']*'|[^\s:#{}\[\],"'][^:#]*?)\s*:(\s|$)`)

// ParseYAMLDoc indexes the significant lines of a document (its lines, the first of which is
// line first of its file).
func ParseYAMLDoc(lines []string, first int) *YAMLDoc {
	doc := &YAMLDoc{start: first}
	started := false
	for i, raw := range lines {
		text := strings.TrimRight(raw, "\r")
		trimmed := strings.TrimLeft(text, " ")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if !started {
			doc.start = first + i
			started = true
		}
		indent := len(text) - len(trimmed)
		for {
			if trimmed == "-" || strings.HasPrefix(trimmed, "- ") {
				doc.lines = append(doc.lines, yamlLine{line: first + i, indent: indent, item: true})
				rest := strings.TrimLeft(trimmed[1:], " ")
				if rest == "" || rest[0] == '#' {
					break
				}
				indent += len(trimmed) - len(rest)
				trimmed = rest
				continue
			}
			yl := yamlLine{line: first + i, indent: indent}
			if m := keyRE.FindStringSubmatch(trimmed); m != nil {
				yl.key = strings.Trim(m[1], `"'`)
				v := strings.TrimSpace(trimmed[len(m[0]):])
				yl.flow = strings.HasPrefix(v, "{") || strings.HasPrefix(v, "[")
			}
			doc.lines = append(doc.lines, yl)
			break
		}
	}
	return doc
}

// pathRE splits a field path into keys and indexes: "spec.http[0].route" → spec, http, [0], route.
var pathRE = regexp.MustCompile(`[^.\[\]]+|\[\d+\]`)

// Find returns the line of the deepest part of path ("spec.http[0].route") found in the
// document, or the line the document starts on when none is.
func (d *YAMLDoc) Find(path string) int {
	best := d.start
	lo, hi := 0, len(d.lines) // the current node's lines
	for _, seg := range pathRE.FindAllString(path, -1) {
		if lo >= hi {
			break
		}
		if strings.HasPrefix(seg, "[") {
			n, err := strconv.Atoi(seg[1 : len(seg)-1])
			if err != nil {
				break
			}
			i, ok := d.item(lo, hi, n)
			if !ok {
				break
			}
			best = d.lines[i].line
			lo, hi = i+1, d.end(i, hi)
			continue
		}
		i, ok := d.key(lo, hi, seg)
		if !ok {
			break
		}
		best = d.lines[i].line
		if d.lines[i].flow {
			break // the rest of the path is on this line
		}
		lo, hi = i+1, d.end(i, hi)
	}
	return best
}

// minIndent returns the smallest indent among lines[lo:hi].
func (d *YAMLDoc) minIndent(lo, hi int) int {
	m := -1
	for _, l := range d.lines[lo:hi] {
		if m < 0 || l.indent < m {
			m = l.indent
		}
	}
	return m
}

// key finds the entry named k at the top level of lines[lo:hi].
func (d *YAMLDoc) key(lo, hi int, k string) (int, bool) {
	top := d.minIndent(lo, hi)
	for i := lo; i < hi; i++ {
		if l := d.lines[i]; l.indent == top && !l.item && l.key == k {
			return i, true
		}
	}
	return 0, false
}

// item finds the n-th list item marker at the top level of lines[lo:hi].
func (d *YAMLDoc) item(lo, hi, n int) (int, bool) {
	top := d.minIndent(lo, hi)
	for i := lo; i < hi; i++ {
		if l := d.lines[i]; l.indent == top && l.item {
			if n == 0 {
				return i, true
			}
			n--
		}
	}
	return 0, false
}

// end returns the end of the node that starts at line i: the lines after it that are indented
// more, and for a key, the list items at its own indent (a block sequence may sit at the indent
// of its key).
func (d *YAMLDoc) end(i, hi int) int {
	at := d.lines[i]
	j := i + 1
	for ; j < hi; j++ {
		l := d.lines[j]
		if l.indent > at.indent {
			continue
		}
		if !at.item && l.item && l.indent == at.indent {
			continue
		}
		break
	}
	return j
}
