package config

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// The strict decoder checks a generic JSON tree (as produced by encoding/json with UseNumber)
// against a message descriptor before protojson decodes it. protojson rejects the same inputs,
// but its errors do not say where in the document the problem is; this walk names the field path
// of every problem and reports all of them, not just the first.

// maxErrorsPerDocument bounds the errors reported for one document.
const maxErrorsPerDocument = 50

// walker holds the state of one strict walk.
type walker struct {
	errs     []fieldErr
	warns    []fieldErr // accepted, but worth telling the user (a removed field that is dropped)
	maxDepth int
	// anyTypes makes google.protobuf.Any values acceptable: their "@type" is resolved in the
	// global registry and the other fields are checked against that message (Envoy config in
	// an EnvoyFilter patch). Without it an Any is an error, as no Istio kind has one.
	anyTypes bool
}

// warn records a warning at path (bounded as errors are).
func (w *walker) warn(path, format string, args ...any) {
	if len(w.warns) >= maxErrorsPerDocument {
		return
	}
	w.warns = append(w.warns, fieldErr{path: path, msg: fmt.Sprintf(format, args...)})
}

func (w *walker) add(path, format string, args ...any) {
	if len(w.errs) >= maxErrorsPerDocument {
		return
	}
	w.errs = append(w.errs, fieldErr{path: path, msg: fmt.Sprintf(format, args...)})
}

// jsonType names the JSON type of v for error messages.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	}
	return fmt.Sprintf("%T", v)
}

// message checks that v is a JSON object matching md. It returns v, or for a value that needs
// normalizing before protojson decodes it (a Go-style duration), its normalized form; nested
// normalized values are stored in place.
func (w *walker) message(md protoreflect.MessageDescriptor, v any, path string, depth int) any {
	if depth > w.maxDepth {
		w.add(path, "nesting deeper than %d levels", w.maxDepth)
		return v
	}
	if md.FullName() == "google.protobuf.Any" && w.anyTypes {
		return w.anyValue(v, path, depth)
	}
	if wkt := wellKnown(md.FullName()); wkt != nil {
		return wkt(w, md, v, path, depth)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		w.add(path, "expected an object (%s), got %s", md.Name(), jsonType(v))
		return v
	}
	fields := md.Fields()
	seen := make(map[protoreflect.FieldNumber]string, len(obj))
	oneofs := make(map[protoreflect.FullName]string)
	for _, key := range sortedKeys(obj) {
		val := obj[key]
		fp := join(path, key)
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByTextName(key)
		}
		if fd == nil {
			if note, ok := tolerated[md.FullName().Append(protoName(key))]; ok && removed(md, key) {
				// Istio accepts it (Kubernetes prunes it, Istio's decoder drops it): a warning,
				// and the field is dropped.
				w.warn(fp, "field %q of %s is deprecated: Istio removed it from its API and ignores it (%s); delete it", key, md.Name(), note)
				delete(obj, key)
				continue
			}
			if removed(md, key) {
				w.add(fp, "unknown field %q in %s: Istio removed this field from its API (it is reserved in %s); delete it", key, md.Name(), md.FullName())
				continue
			}
			w.add(fp, "unknown field %q in %s%s", key, md.Name(), suggest(md, key))
			continue
		}
		if prev, dup := seen[fd.Number()]; dup {
			w.add(fp, "field set twice (also as %q)", prev)
			continue
		}
		seen[fd.Number()] = key
		if val == nil {
			// protojson treats null as "not set", except for google.protobuf.Value.
			continue
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if other, set := oneofs[od.FullName()]; set {
				w.add(fp, "only one of %q and %q may be set", other, key)
				continue
			}
			oneofs[od.FullName()] = key
		}
		obj[key] = w.field(fd, val, fp, depth+1)
	}
	return obj
}

// field checks one field's value, which is not null, and returns it normalized (see message).
func (w *walker) field(fd protoreflect.FieldDescriptor, v any, path string, depth int) any {
	switch {
	case fd.IsList():
		arr, ok := v.([]any)
		if !ok {
			w.add(path, "expected an array, got %s", jsonType(v))
			return v
		}
		for i, e := range arr {
			ep := fmt.Sprintf("%s[%d]", path, i)
			if e == nil && !isValueMessage(fd) {
				w.add(ep, "null is not allowed in a list")
				continue
			}
			arr[i] = w.singular(fd, e, ep, depth)
		}
		return arr
	case fd.IsMap():
		obj, ok := v.(map[string]any)
		if !ok {
			w.add(path, "expected an object (map), got %s", jsonType(v))
			return v
		}
		kd, vd := fd.MapKey(), fd.MapValue()
		for _, k := range sortedKeys(obj) {
			ep := path + "[" + strconv.Quote(k) + "]"
			w.mapKey(kd, k, ep)
			if obj[k] == nil && !isValueMessage(vd) {
				w.add(ep, "null is not allowed as a map value")
				continue
			}
			obj[k] = w.singular(vd, obj[k], ep, depth)
		}
		return obj
	default:
		return w.singular(fd, v, path, depth)
	}
}

func isValueMessage(fd protoreflect.FieldDescriptor) bool {
	return fd.Message() != nil && fd.Message().FullName() == "google.protobuf.Value"
}

// mapKey checks a map key against the key field's kind.
func (w *walker) mapKey(kd protoreflect.FieldDescriptor, k, path string) {
	switch kd.Kind() {
	case protoreflect.StringKind:
	case protoreflect.BoolKind:
		if k != "true" && k != "false" {
			w.add(path, "map key %q is not a boolean", k)
		}
	default:
		w.scalar(kd, k, path)
	}
}

// singular checks one non-repeated value of fd's type and returns it normalized (see message).
func (w *walker) singular(fd protoreflect.FieldDescriptor, v any, path string, depth int) any {
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		return w.message(fd.Message(), v, path, depth)
	}
	w.scalar(fd, v, path)
	return v
}

// scalar checks a scalar or enum value the way protojson parses it.
func (w *walker) scalar(fd protoreflect.FieldDescriptor, v any, path string) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			w.add(path, "expected a boolean, got %s", jsonType(v))
		}
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			w.add(path, "expected a string, got %s", jsonType(v))
		}
	case protoreflect.BytesKind:
		s, ok := v.(string)
		if !ok {
			w.add(path, "expected a base64 string, got %s", jsonType(v))
			return
		}
		if !validBase64(s) {
			w.add(path, "invalid base64 data")
		}
	case protoreflect.EnumKind:
		w.enum(fd.Enum(), v, path)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		w.integer(v, path, math.MinInt32, math.MaxInt32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		w.integer(v, path, math.MinInt64, math.MaxInt64)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		w.unsigned(v, path, math.MaxUint32)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		w.unsigned(v, path, math.MaxUint64)
	case protoreflect.FloatKind:
		w.float(v, path, 32)
	case protoreflect.DoubleKind:
		w.float(v, path, 64)
	default:
		w.add(path, "unsupported field kind %s", fd.Kind())
	}
}

// numberText returns the text of a JSON number or a quoted number (protojson accepts both).
func numberText(v any) (string, bool) {
	switch n := v.(type) {
	case json.Number:
		return string(n), true
	case string:
		return n, true
	}
	return "", false
}

func (w *walker) integer(v any, path string, lo, hi int64) {
	s, ok := numberText(v)
	if !ok {
		w.add(path, "expected an integer, got %s", jsonType(v))
		return
	}
	if !intRE.MatchString(s) {
		w.add(path, "expected an integer, got %s", quoteShort(s))
		return
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi {
		w.add(path, "integer %s out of range [%d, %d]", quoteShort(s), lo, hi)
	}
}

func (w *walker) unsigned(v any, path string, hi uint64) {
	s, ok := numberText(v)
	if !ok {
		w.add(path, "expected a non-negative integer, got %s", jsonType(v))
		return
	}
	if !intRE.MatchString(s) || strings.HasPrefix(s, "-") {
		w.add(path, "expected a non-negative integer, got %s", quoteShort(s))
		return
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > hi {
		w.add(path, "integer %s out of range [0, %d]", quoteShort(s), hi)
	}
}

func (w *walker) float(v any, path string, bits int) {
	s, ok := numberText(v)
	if !ok {
		w.add(path, "expected a number, got %s", jsonType(v))
		return
	}
	if _, isStr := v.(string); isStr && (s == "NaN" || s == "Infinity" || s == "-Infinity") {
		return
	}
	if !numberRE.MatchString(s) {
		w.add(path, "expected a number, got %s", quoteShort(s))
		return
	}
	f, err := strconv.ParseFloat(s, bits)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		w.add(path, "expected a finite number, got %s", quoteShort(s))
	}
}

func (w *walker) enum(ed protoreflect.EnumDescriptor, v any, path string) {
	switch x := v.(type) {
	case string:
		if ed.Values().ByName(protoreflect.Name(x)) == nil {
			w.add(path, "invalid value %s for %s (valid: %s)", quoteShort(x), ed.Name(), enumNames(ed))
		}
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 32)
		if err != nil || ed.Values().ByNumber(protoreflect.EnumNumber(n)) == nil {
			w.add(path, "invalid value %s for %s (valid: %s)", x, ed.Name(), enumNames(ed))
		}
	default:
		w.add(path, "expected an enum name (%s), got %s", enumNames(ed), jsonType(v))
	}
}

func enumNames(ed protoreflect.EnumDescriptor) string {
	vals := ed.Values()
	names := make([]string, 0, vals.Len())
	for i := 0; i < vals.Len(); i++ {
		names = append(names, string(vals.Get(i).Name()))
	}
	return strings.Join(names, ", ")
}

// wellKnownFunc checks a value of a well-known type and returns it, normalized when needed.
type wellKnownFunc func(w *walker, md protoreflect.MessageDescriptor, v any, path string, depth int) any

// wellKnown returns the checker for a well-known type with a special JSON form, or nil.
func wellKnown(name protoreflect.FullName) wellKnownFunc {
	switch name {
	case "google.protobuf.Duration":
		return jsonString(`a duration string like "1.5s" or "30ms"`, func(w *walker, s, path string) any {
			d, err := parseProtoDuration(s)
			if err != nil {
				w.add(path, "%v", err)
				return s
			}
			return protoDurationJSON(d)
		})
	case "google.protobuf.Timestamp":
		return jsonString("an RFC 3339 timestamp string", func(w *walker, s, path string) any {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil || t.Year() < 1 || t.Year() > 9999 {
				w.add(path, "invalid RFC 3339 timestamp %s", quoteShort(s))
			}
			return s
		})
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		return func(w *walker, md protoreflect.MessageDescriptor, v any, path string, _ int) any {
			w.scalar(md.Fields().ByName("value"), v, path)
			return v
		}
	case "google.protobuf.Struct", "google.protobuf.ListValue", "google.protobuf.Value":
		// A Struct must be a JSON object and a ListValue an array (jsonType's names); a Value
		// may be any JSON.
		want := map[protoreflect.FullName]string{"google.protobuf.Struct": "object", "google.protobuf.ListValue": "array"}[name]
		return func(w *walker, _ protoreflect.MessageDescriptor, v any, path string, depth int) any {
			if got := jsonType(v); want != "" && got != want {
				w.add(path, "expected an %s, got %s", want, got)
				return v
			}
			w.anyJSON(v, path, depth)
			return v
		}
	case "google.protobuf.Empty":
		return func(w *walker, _ protoreflect.MessageDescriptor, v any, path string, _ int) any {
			if m, ok := v.(map[string]any); !ok || len(m) != 0 {
				w.add(path, "expected an empty object")
			}
			return v
		}
	case "google.protobuf.FieldMask":
		return jsonString("a field mask string", func(_ *walker, s, _ string) any { return s })
	case "google.protobuf.Any":
		return func(w *walker, _ protoreflect.MessageDescriptor, v any, path string, _ int) any {
			w.add(path, "google.protobuf.Any is not supported here")
			return v
		}
	}
	return nil
}

// jsonString is the checker of a well-known type written as a JSON string: what describes that
// string in the error for any other JSON value, and check checks s and returns it or its
// normalized form.
func jsonString(what string, check func(w *walker, s, path string) any) wellKnownFunc {
	return func(w *walker, _ protoreflect.MessageDescriptor, v any, path string, _ int) any {
		s, ok := v.(string)
		if !ok {
			w.add(path, "expected %s, got %s", what, jsonType(v))
			return v
		}
		return check(w, s, path)
	}
}

// anyJSON accepts any JSON value, checking only the nesting depth and number syntax.
func (w *walker) anyJSON(v any, path string, depth int) {
	if depth > w.maxDepth {
		w.add(path, "nesting deeper than %d levels", w.maxDepth)
		return
	}
	switch x := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(x) {
			w.anyJSON(x[k], join(path, k), depth+1)
		}
	case []any:
		for i, e := range x {
			w.anyJSON(e, fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
	case json.Number:
		if f, err := strconv.ParseFloat(string(x), 64); err != nil || math.IsInf(f, 0) {
			w.add(path, "number %s out of range", quoteShort(string(x)))
		}
	}
}

// Number syntax accepted where protobuf JSON allows a number or a quoted number.
var (
	intRE    = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)
	numberRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)
)

// parseProtoDuration parses a google.protobuf.Duration as Istio's decoder (golang/protobuf's
// jsonpb) does: any Go duration, such as "1.5s", "30ms", "5m" or "1h30m".
func parseProtoDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %s: want a number with a unit, like \"30ms\", \"1.5s\" or \"5m\"", quoteShort(s))
	}
	return d, nil
}

// validBase64 reports whether s is standard, padded base64 (what encoding/json decodes into
// []byte).
// protoDurationJSON renders d in the JSON form of google.protobuf.Duration that protojson reads
// ("1.500s", "-0.030s"), with the seconds and nanoseconds golang/protobuf's jsonpb (the decoder
// Istio uses) would have produced from the same Go duration.
func protoDurationJSON(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign = "-"
	}
	n := d.Nanoseconds()
	secs, nanos := n/1e9, n%1e9
	if secs < 0 {
		secs = -secs
	}
	if nanos < 0 {
		nanos = -nanos
	}
	return fmt.Sprintf("%s%d.%09ds", sign, secs, nanos)
}

func validBase64(s string) bool {
	_, err := base64.StdEncoding.DecodeString(s)
	return err == nil
}

// tolerated lists the removed fields (see removed) that are accepted with a warning and dropped,
// by full proto name, with why dropping them changes nothing: Istio's own test data still uses
// them, and Istio accepts them. The other removed fields had a meaning that would be lost
// silently, so they stay errors.
var tolerated = map[protoreflect.FullName]string{
	"istio.networking.v1alpha3.HTTPRoute.websocket_upgrade": "WebSocket upgrades are always allowed",
}

// removed reports whether key names a field that Istio's API once had and has since removed (a
// reserved name of md, such as HTTPRoute's "websocket_upgrade"), given in either its proto or its
// JSON (camelCase) spelling. Istio's own decoder drops such fields silently; Strait refuses
// them, saying why, except those in tolerated, which it drops with a warning.
func removed(md protoreflect.MessageDescriptor, key string) bool {
	return md.ReservedNames().Has(protoName(key))
}

// protoName is the proto (snake_case) spelling of a field name given in either spelling.
func protoName(key string) protoreflect.Name {
	var b strings.Builder
	for i, r := range key {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return protoreflect.Name(b.String())
}

// suggest proposes the field name the user probably meant.
func suggest(md protoreflect.MessageDescriptor, key string) string {
	lk := strings.ToLower(strings.ReplaceAll(key, "_", ""))
	best, bestDist := "", 3
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		name := fields.Get(i).JSONName()
		d := editDistance(lk, strings.ToLower(name), bestDist)
		if d < bestDist {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of a and b, or limit when it is at least limit.
func editDistance(a, b string, limit int) int {
	if len(a) > 64 || len(b) > 64 {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= limit {
			return limit
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// join appends a field name to a dotted path.
func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// quoteShort quotes s for an error message, shortening long values.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}
