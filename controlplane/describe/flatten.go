package describe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// maxFlatten bounds the pairs flatten returns for one message (Istio's settings are small; a
// hostile spec with huge lists is cut short rather than printed whole).
const maxFlatten = 64

// flatten renders the set fields of m as "path=value" pairs in Istio's JSON spelling, sorted by
// path ("tcp.maxConnections=100", "consecutive5xxErrors=5", "headers.end-user.exact=jason").
// Lists of scalars are joined with commas; lists of objects are indexed ("[0]"). prefix is
// prepended to every path. It never fails: what cannot be rendered is left out.
func flatten(prefix string, m proto.Message) []string {
	if m == nil || !m.ProtoReflect().IsValid() {
		return nil
	}
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	var out []string
	walkJSON(prefix, v, 0, &out)
	sort.Strings(out)
	if len(out) > maxFlatten {
		out = append(out[:maxFlatten], fmt.Sprintf("... (%d more)", len(out)-maxFlatten))
	}
	return out
}

func walkJSON(path string, v any, depth int, out *[]string) {
	if depth > 32 || len(*out) > maxFlatten {
		return
	}
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 && path != "" {
			*out = append(*out, path+"={}")
			return
		}
		for k, e := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			walkJSON(p, e, depth+1, out)
		}
	case []any:
		scalars := make([]string, 0, len(x))
		for _, e := range x {
			if _, nested := e.(map[string]any); nested {
				scalars = nil
				break
			}
			if _, nested := e.([]any); nested {
				scalars = nil
				break
			}
			scalars = append(scalars, fmt.Sprint(e))
		}
		if scalars != nil {
			*out = append(*out, path+"="+strings.Join(scalars, ","))
			return
		}
		for i, e := range x {
			walkJSON(fmt.Sprintf("%s[%d]", path, i), e, depth+1, out)
		}
	default:
		*out = append(*out, path+"="+fmt.Sprint(x))
	}
}
