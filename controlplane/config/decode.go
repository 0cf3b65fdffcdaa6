package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// Limits on untrusted input accepted by Decode.
const (
	// MaxInputSize is the largest input Decode reads.
	MaxInputSize = 16 << 20
	// MaxDocumentSize is the largest single YAML or JSON document.
	MaxDocumentSize = 1 << 20
	// MaxDocuments is the largest number of documents in one input.
	MaxDocuments = 1000
	// MaxDepth is the deepest nesting of objects and arrays in a document.
	MaxDepth = 64
)

// Decode strictly decodes the YAML or JSON in data. data may hold several documents separated by
// "---" lines, and a document may be a Kubernetes List ("kind: List", "items: [...]"). origin
// names the input (a file path) in errors.
//
// Each document must be one of Kinds with one of its kind's apiVersions (APIVersionsFor). Its
// spec is decoded into the kind's istio.io/api message (networking/v1alpha3, or security/v1beta1
// for the security.istio.io kinds) with the rules of Istio's own decoder (camelCase or proto
// field names, durations as "1.5s" or "30ms", enums by name), except that unknown fields, values of the wrong
// type, invalid enum values and out-of-range numbers are errors. A Kubernetes "v1" Secret is
// decoded as Kubernetes does (type, data in base64, stringData) into a *corev1.Secret; its errors
// never quote its data. A document of another kind is refused with one error that says whether
// it is an Istio (or Gateway API) kind Strait does not support yet or not an Istio object at all
// (a Kubernetes Service, say). Every error is an *Error
// that names origin, the document and the field path. A document with errors produces no Object;
// the other documents still decode. Decode does not run Validate (see Load). It never panics. It
// is safe for concurrent use.
func Decode(origin string, data []byte) (objs []*Object, errs []error) {
	defer func() {
		if r := recover(); r != nil {
			objs = nil
			errs = append(errs, &Error{Origin: origin, Msg: fmt.Sprintf("internal error decoding input: %v", r)})
		}
	}()
	if len(data) > MaxInputSize {
		return nil, []error{&Error{Origin: origin, Msg: fmt.Sprintf("input is %d bytes, more than the limit of %d", len(data), MaxInputSize)}}
	}
	docs := splitDocuments(data)
	if len(docs) > MaxDocuments {
		return nil, []error{&Error{Origin: origin, Msg: fmt.Sprintf("input has %d documents, more than the limit of %d", len(docs), MaxDocuments)}}
	}
	for i, doc := range docs {
		o, derrs := decodeDocument(origin, i+1, doc.line, doc.data)
		objs = append(objs, o...)
		errs = append(errs, derrs...)
	}
	return objs, errs
}

// Load decodes data with Decode and validates each decoded object with Validate. It returns the
// objects that pass both and every error from both steps, so that a caller such as `strait apply`
// can report all problems at once. Errors about an object that decoded but did not validate carry
// its kind, namespace and name (see (*Error).Key) and, when the document holds that one object,
// the document and the line of the field.
func Load(origin string, data []byte) ([]*Object, []error) {
	if len(data) > MaxInputSize || len(splitDocuments(data)) > MaxDocuments {
		return Decode(origin, data) // refused as a whole
	}
	var valid []*Object
	var errs []error
	for i, doc := range splitDocuments(data) {
		objs, derrs := decodeDocumentSafe(origin, i+1, doc)
		errs = append(errs, derrs...)
		for _, o := range objs {
			err := Validate(o)
			if err == nil {
				valid = append(valid, o)
				continue
			}
			for _, e := range Errors(err) {
				if ce, ok := e.(*Error); ok && len(objs) == 1 && ce.Line == 0 && ce.Origin == origin {
					d := &docErr{origin: origin, doc: i + 1, line: doc.line, text: doc.data}
					ce.Doc, ce.Line = i+1, d.err(ce.Field, "").Line
				}
				errs = append(errs, e)
			}
		}
	}
	return valid, errs
}

// decodeDocumentSafe is decodeDocument for Load, recovering from a panic as Decode does.
func decodeDocumentSafe(origin string, index int, doc document) (objs []*Object, errs []error) {
	defer func() {
		if r := recover(); r != nil {
			objs = nil
			errs = []error{&Error{Origin: origin, Doc: index, Line: doc.line, Msg: fmt.Sprintf("internal error decoding input: %v", r)}}
		}
	}()
	return decodeDocument(origin, index, doc.line, doc.data)
}

// document is one YAML document of an input and the line it starts on.
type document struct {
	data []byte
	line int // 1-based
}

// splitDocuments splits a YAML stream on "---" separator lines and drops documents that hold
// only whitespace and comments.
func splitDocuments(data []byte) []document {
	var docs []document
	start, startLine, line := 0, 1, 1
	flush := func(end int) {
		if doc := data[start:end]; !blankYAML(doc) {
			docs = append(docs, document{data: doc, line: startLine + leadingBlankLines(doc)})
		}
	}
	for pos := 0; pos < len(data); line++ {
		end := bytes.IndexByte(data[pos:], '\n')
		next := len(data)
		if end >= 0 {
			next = pos + end + 1
		}
		if isSeparator(bytes.TrimRight(data[pos:next], "\r\n")) {
			flush(pos)
			start, startLine = next, line+1
		}
		pos = next
	}
	flush(len(data))
	return docs
}

// leadingBlankLines counts the blank and comment lines at the start of doc.
func leadingBlankLines(doc []byte) int {
	n := 0
	for len(doc) > 0 {
		i := bytes.IndexByte(doc, '\n')
		if i < 0 {
			return n
		}
		l := bytes.TrimSpace(doc[:i])
		if len(l) > 0 && l[0] != '#' {
			return n
		}
		n++
		doc = doc[i+1:]
	}
	return n
}

// IsDocumentSeparator reports whether line is a YAML document separator: "---", optionally
// followed by a space and a comment.
func IsDocumentSeparator(line string) bool { return isSeparator([]byte(line)) }

// isSeparator is IsDocumentSeparator on bytes.
func isSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	rest := line[3:]
	if len(rest) == 0 {
		return true
	}
	if rest[0] != ' ' && rest[0] != '\t' {
		return false
	}
	rest = bytes.TrimSpace(rest)
	return len(rest) == 0 || rest[0] == '#'
}

// blankYAML reports whether doc holds nothing but whitespace, comments and document end markers.
func blankYAML(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		l := bytes.TrimSpace(line)
		if len(l) == 0 || l[0] == '#' || bytes.Equal(l, []byte("...")) {
			continue
		}
		return false
	}
	return true
}

// docErr builds errors about one document while its identity becomes known.
type docErr struct {
	origin string
	doc    int
	line   int
	kind   Kind
	ns     string
	name   string
	prefix string // path prefix for documents inside a List, e.g. "items[2]"
	text   []byte // the document, to find the line of an error's field
	lines  *YAMLDoc
}

func (d *docErr) err(field, format string, args ...any) *Error {
	if d.prefix != "" {
		if field == "" {
			field = d.prefix
		} else {
			field = d.prefix + "." + field
		}
	}
	line := d.line
	if field != "" && d.text != nil && d.line > 0 {
		if d.lines == nil {
			d.lines = ParseYAMLDoc(strings.Split(string(d.text), "\n"), d.line-leadingBlankLines(d.text))
		}
		line = d.lines.Find(field)
	}
	return &Error{Origin: d.origin, Doc: d.doc, Line: line, Kind: d.kind, Namespace: d.ns, Name: d.name, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// decodeDocument decodes one YAML or JSON document; index is its 1-based position and line the
// line it starts on.
func decodeDocument(origin string, index, line int, doc []byte) ([]*Object, []error) {
	d := &docErr{origin: origin, doc: index, line: line, text: doc}
	if len(doc) > MaxDocumentSize {
		return nil, []error{d.err("", "document is %d bytes, more than the limit of %d", len(doc), MaxDocumentSize)}
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, []error{d.err("", "parsing YAML: %v", err)}
	}
	if len(js) > 4*MaxDocumentSize {
		// YAML aliases can expand a small document into a large one.
		return nil, []error{d.err("", "document expands to %d bytes, more than the limit of %d", len(js), 4*MaxDocumentSize)}
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, []error{d.err("", "parsing document: %v", err)}
	}
	if tree == nil {
		return nil, nil // empty document
	}
	if depth := treeDepth(tree, 0); depth > MaxDepth {
		return nil, []error{d.err("", "document nests deeper than %d levels", MaxDepth)}
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		return nil, []error{d.err("", "expected an object with apiVersion, kind, metadata and spec, got %s", jsonType(tree))}
	}
	if kind, _ := obj["kind"].(string); kind == "List" {
		return decodeList(d, obj)
	}
	o, errs := decodeObject(d, obj)
	if o == nil {
		return nil, errs
	}
	return []*Object{o}, errs
}

// decodeList decodes the items of a Kubernetes List (as `kubectl get -o yaml` prints).
func decodeList(d *docErr, obj map[string]any) ([]*Object, []error) {
	var errs []error
	for _, k := range sortedKeys(obj) {
		switch k {
		case "apiVersion", "kind", "items", "metadata":
		default:
			errs = append(errs, d.err(k, "unknown field %q in List", k))
		}
	}
	items, ok := obj["items"].([]any)
	if !ok && obj["items"] != nil {
		return nil, append(errs, d.err("items", "expected an array, got %s", jsonType(obj["items"])))
	}
	if len(items) > MaxDocuments {
		return nil, append(errs, d.err("items", "list has %d items, more than the limit of %d", len(items), MaxDocuments))
	}
	var objs []*Object
	for i, it := range items {
		id := &docErr{origin: d.origin, doc: d.doc, line: d.line, prefix: "items[" + strconv.Itoa(i) + "]", text: d.text, lines: d.lines}
		m, ok := it.(map[string]any)
		if !ok {
			errs = append(errs, id.err("", "expected an object, got %s", jsonType(it)))
			continue
		}
		o, oerrs := decodeObject(id, m)
		errs = append(errs, oerrs...)
		if o != nil {
			objs = append(objs, o)
		}
	}
	return objs, errs
}

// decodeObject decodes one object envelope and its spec. It returns a nil Object when there are
// errors.
func decodeObject(d *docErr, obj map[string]any) (*Object, []error) {
	var errs []error
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	if msg := refuseKind(apiVersion, kind); msg != "" {
		// Not a kind Strait decodes: one error for the whole document, naming it.
		_, _ = decodeMeta(d, obj["metadata"])
		return nil, []error{d.err("", "%s", msg)}
	}
	// Identify the document first, so that every error can name it.
	if kind != "" && knownKind(Kind(kind)) {
		d.kind = Kind(kind)
	}
	meta, merrs := decodeMeta(d, obj["metadata"])
	// The apiVersions of the document's kind or, when the kind is not known, of any kind.
	versions, validVersion := APIVersions, validAPIVersion(apiVersion)
	if d.kind != "" {
		versions, validVersion = APIVersionsFor(d.kind), validAPIVersionFor(d.kind, apiVersion)
	}
	switch {
	case obj["apiVersion"] == nil:
		errs = append(errs, d.err("apiVersion", "apiVersion is required (one of %s)", strings.Join(versions, ", ")))
	case !validVersion:
		errs = append(errs, d.err("apiVersion", "unsupported apiVersion %s (want one of %s)", quoteShort(fmt.Sprint(obj["apiVersion"])), strings.Join(versions, ", ")))
	}
	switch {
	case obj["kind"] == nil:
		errs = append(errs, d.err("kind", "kind is required"))
	case d.kind == "":
		errs = append(errs, d.err("kind", "unsupported kind %s (want one of %s)", quoteShort(fmt.Sprint(obj["kind"])), kindList()))
	}
	errs = append(errs, merrs...)
	if d.kind == Secret {
		// A Kubernetes Secret has no spec: type, data and stringData sit beside metadata.
		spec, serrs := decodeSecret(d, obj)
		if errs = append(errs, serrs...); len(errs) > 0 {
			return nil, errs
		}
		return &Object{Kind: d.kind, APIVersion: apiVersion, Meta: meta, Spec: spec, Origin: d.origin}, nil
	}
	for _, k := range sortedKeys(obj) {
		switch k {
		case "apiVersion", "kind", "metadata", "spec":
		case "status":
			// Written by controllers, not part of the desired config: accepted so that the output
			// of `kubectl get -o yaml` can be applied, and dropped.
		default:
			errs = append(errs, d.err(k, "unknown field %q (want apiVersion, kind, metadata, spec)", k))
		}
	}
	if d.kind == "" {
		return nil, errs
	}
	spec := NewSpec(d.kind)
	var warns []*Error
	if raw, ok := obj["spec"]; ok && raw != nil {
		var serrs []error
		if serrs, warns = decodeSpec(d, raw, spec); len(serrs) > 0 {
			errs = append(errs, serrs...)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &Object{Kind: d.kind, APIVersion: apiVersion, Meta: meta, Spec: spec, Origin: d.origin, Warnings: warns}, nil
}

// decodeSpec checks raw against msg's descriptor and then decodes it into msg. warns are what
// was accepted with a warning (see Object.Warnings).
func decodeSpec(d *docErr, raw any, msg proto.Message) (errs []error, warns []*Error) {
	w := &walker{maxDepth: MaxDepth}
	raw = w.message(msg.ProtoReflect().Descriptor(), raw, "spec", 1)
	for _, e := range w.warns {
		warns = append(warns, d.err(e.path, "%s", e.msg))
	}
	if len(w.errs) > 0 {
		errs := make([]error, 0, len(w.errs))
		for _, e := range w.errs {
			errs = append(errs, d.err(e.path, "%s", e.msg))
		}
		return errs, warns
	}
	js, err := json.Marshal(raw)
	if err != nil {
		return []error{d.err("spec", "encoding spec: %v", err)}, warns
	}
	if err := protojson.Unmarshal(js, msg); err != nil {
		// The walk above should have caught everything protojson rejects.
		return []error{d.err("spec", "decoding spec: %v", err)}, warns
	}
	return nil, warns
}

func kindList() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// metaFields lists the Kubernetes ObjectMeta fields accepted in metadata. Only name, namespace,
// labels, annotations, resourceVersion, generation and creationTimestamp are kept; the others are
// set by the API server and accepted so that `kubectl get -o yaml` output can be used as is.
var metaFields = map[string]bool{
	"name": true, "namespace": true, "labels": true, "annotations": true, "resourceVersion": true,
	"generation": true, "creationTimestamp": true, "uid": true, "generateName": true, "selfLink": true,
	"managedFields": true, "ownerReferences": true, "finalizers": true, "deletionTimestamp": true,
	"deletionGracePeriodSeconds": true,
}

// decodeMeta decodes metadata, setting d's namespace and name as soon as they are known.
func decodeMeta(d *docErr, raw any) (Meta, []error) {
	var m Meta
	var errs []error
	if raw == nil {
		return m, []error{d.err("metadata", "metadata with a name is required")}
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return m, []error{d.err("metadata", "expected an object, got %s", jsonType(raw))}
	}
	str := func(k string) string {
		v, ok := obj[k]
		if !ok || v == nil {
			return ""
		}
		s, ok := v.(string)
		if !ok {
			errs = append(errs, d.err("metadata."+k, "expected a string, got %s", jsonType(v)))
		}
		return s
	}
	m.Name = str("name")
	m.Namespace = str("namespace")
	if m.Namespace == "" {
		m.Namespace = "default"
	}
	nameOK := m.Name != "" && isDNS1123Subdomain(m.Name)
	nsOK := isDNS1123Label(m.Namespace)
	if nameOK && nsOK {
		d.name, d.ns = m.Name, m.Namespace
	}
	if m.Name == "" {
		errs = append(errs, d.err("metadata.name", "name is required"))
	} else if !nameOK {
		errs = append(errs, d.err("metadata.name", "invalid name %s: %s", quoteShort(m.Name), dns1123SubdomainMsg))
	}
	if !nsOK {
		errs = append(errs, d.err("metadata.namespace", "invalid namespace %s: %s", quoteShort(m.Namespace), dns1123LabelMsg))
	}
	m.ResourceVersion = str("resourceVersion")
	if ts := str("creationTimestamp"); ts != "" {
		t, err := time.Parse(time.RFC3339, ts)
		if err != nil {
			errs = append(errs, d.err("metadata.creationTimestamp", "invalid timestamp %s", quoteShort(ts)))
		}
		m.CreationTimestamp = t
	}
	if g, ok := obj["generation"]; ok && g != nil {
		n, isNum := g.(json.Number)
		v, err := n.Int64()
		if !isNum || err != nil || v < 0 {
			errs = append(errs, d.err("metadata.generation", "expected a non-negative integer, got %s", jsonType(g)))
		}
		m.Generation = v
	}
	var lerrs, aerrs []error
	m.Labels, lerrs = stringMap(d, "metadata.labels", obj["labels"])
	m.Annotations, aerrs = stringMap(d, "metadata.annotations", obj["annotations"])
	errs = append(errs, lerrs...)
	errs = append(errs, aerrs...)
	var fe fieldErrs
	validateLabels(&fe, "metadata.labels", m.Labels)
	validateAnnotations(&fe, "metadata.annotations", m.Annotations)
	for _, e := range fe.errs {
		errs = append(errs, d.err(e.path, "%s", e.msg))
	}
	for _, k := range sortedKeys(obj) {
		if !metaFields[k] {
			errs = append(errs, d.err("metadata."+k, "unknown field %q in metadata", k))
		}
	}
	return m, errs
}

// stringMap decodes a map of strings (labels, annotations).
func stringMap(d *docErr, path string, raw any) (map[string]string, []error) {
	if raw == nil {
		return nil, nil
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, []error{d.err(path, "expected an object, got %s", jsonType(raw))}
	}
	var errs []error
	out := make(map[string]string, len(obj))
	for _, k := range sortedKeys(obj) {
		s, ok := obj[k].(string)
		if !ok {
			errs = append(errs, d.err(path+"["+strconv.Quote(k)+"]", "expected a string, got %s", jsonType(obj[k])))
			continue
		}
		out[k] = s
	}
	return out, errs
}

// treeDepth returns the nesting depth of a decoded JSON tree, stopping early past MaxDepth.
func treeDepth(v any, depth int) int {
	if depth > MaxDepth {
		return depth
	}
	deepest := depth
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			deepest = max(deepest, treeDepth(e, depth+1))
		}
	case []any:
		for _, e := range x {
			deepest = max(deepest, treeDepth(e, depth+1))
		}
	}
	return deepest
}
