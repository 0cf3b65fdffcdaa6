package analysis

import (
	"errors"
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
	docs map[config.Key]*config.YAMLDoc
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
	return doc.Find(field)
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
	idx := &fileIndex{docs: map[config.Key]*config.YAMLDoc{}}
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
		doc := config.ParseYAMLDoc(lines[start:end], start+1)
		for _, o := range objs {
			if _, dup := idx.docs[o.Key()]; !dup {
				idx.docs[o.Key()] = doc
			}
		}
	}
	for i, line := range lines {
		if config.IsDocumentSeparator(strings.TrimRight(line, "\r")) {
			flush(i)
			start = i + 1
		}
	}
	flush(len(lines))
	return idx
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
