package analysis

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/strait-mesh/strait/controlplane/config"
)

// Locator finds the line of a field of a config object in the file the object came from.
type Locator interface {
	// Line returns the 1-based line of field (a path such as "spec.http[0].route[0].destination")
	// in the object key of origin: the line of the deepest part of the path that it finds, the
	// line where the object's document starts when it finds none, or 0 when origin is not a
	// file it can read or does not hold the object.
	Line(origin string, key config.Key, field string) int
}

// FileLocator is a Locator over files read with Read (os.ReadFile, or the contents of the files
// given to `strait analyze`). Each file is read and indexed once. It is safe for concurrent use.
type FileLocator struct {
	// Read returns the contents of the file named origin.
	Read func(origin string) ([]byte, error)

	mu    sync.Mutex
	files map[string]*fileIndex
}

var _ Locator = (*FileLocator)(nil)

// fileIndex holds the documents of one file by object key.
type fileIndex struct {
	docs map[config.Key]*yamlDoc
}

// yamlDoc is one document: its first line and its significant lines.
type yamlDoc struct {
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

// Line implements Locator.
func (l *FileLocator) Line(origin string, key config.Key, field string) int {
	if l == nil || l.Read == nil || origin == "" {
		return 0
	}
	idx := l.index(origin)
	if idx == nil {
		return 0
	}
	doc := idx.docs[key]
	if doc == nil {
		return 0
	}
	return doc.find(field)
}

func (l *FileLocator) index(origin string) *fileIndex {
	l.mu.Lock()
	defer l.mu.Unlock()
	if idx, ok := l.files[origin]; ok {
		return idx
	}
	if l.files == nil {
		l.files = map[string]*fileIndex{}
	}
	var idx *fileIndex
	if data, err := l.Read(origin); err == nil {
		idx = indexFile(origin, data)
	}
	l.files[origin] = idx
	return idx
}

// indexFile splits data into YAML documents and decodes each (with config.Decode, so that
// names and namespaces default as they do for straitd) to learn which objects it holds.
func indexFile(origin string, data []byte) *fileIndex {
	idx := &fileIndex{docs: map[config.Key]*yamlDoc{}}
	lines := strings.Split(string(data), "\n")
	start := 0
	flush := func(end int) {
		if start >= end {
			return
		}
		text := strings.Join(lines[start:end], "\n")
		objs, _ := config.Decode(origin, []byte(text))
		if len(objs) == 0 {
			return
		}
		doc := parseDoc(lines[start:end], start+1)
		for _, o := range objs {
			if _, dup := idx.docs[o.Key()]; !dup {
				idx.docs[o.Key()] = doc
			}
		}
	}
	for i, line := range lines {
		if isSeparator(strings.TrimRight(line, "\r")) {
			flush(i)
			start = i + 1
		}
	}
	flush(len(lines))
	return idx
}

// isSeparator reports whether line is a YAML document separator ("---", maybe with a comment).
func isSeparator(line string) bool {
	if !strings.HasPrefix(line, "---") {
		return false
	}
	rest := strings.TrimSpace(line[3:])
	return (len(line) == 3 || line[3] == ' ' || line[3] == '\t') && (rest == "" || rest[0] == '#')
}

var keyRE = regexp.MustCompile(`^("[^"]*"|'[^']*'|[^\s:#{}\[\],"'][^:#]*?)\s*:(\s|$)`)

// parseDoc indexes the significant lines of a document whose first line is first.
func parseDoc(lines []string, first int) *yamlDoc {
	doc := &yamlDoc{start: first}
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

// find returns the line of the deepest part of path found in the document (its start when none).
func (d *yamlDoc) find(path string) int {
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
func (d *yamlDoc) minIndent(lo, hi int) int {
	m := -1
	for _, l := range d.lines[lo:hi] {
		if m < 0 || l.indent < m {
			m = l.indent
		}
	}
	return m
}

// key finds the entry named k at the top level of lines[lo:hi].
func (d *yamlDoc) key(lo, hi int, k string) (int, bool) {
	top := d.minIndent(lo, hi)
	for i := lo; i < hi; i++ {
		if l := d.lines[i]; l.indent == top && !l.item && l.key == k {
			return i, true
		}
	}
	return 0, false
}

// item finds the n-th list item marker at the top level of lines[lo:hi].
func (d *yamlDoc) item(lo, hi, n int) (int, bool) {
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
func (d *yamlDoc) end(i, hi int) int {
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

// LocatorFor returns a FileLocator over in-memory files (name → contents), as `strait analyze`
// reads them.
func LocatorFor(files map[string][]byte) *FileLocator {
	return &FileLocator{Read: func(origin string) ([]byte, error) {
		if b, ok := files[origin]; ok {
			return b, nil
		}
		return nil, errNoFile
	}}
}

// errNoFile is returned by LocatorFor's Read for a file it was not given.
var errNoFile = errors.New("file not given")
