package config

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/golang/protobuf/jsonpb" //nolint:staticcheck // the decoder Istio's own types use, as the reference
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"sigs.k8s.io/yaml"
)

// istioDecode decodes a spec the way istio.io/api's generated UnmarshalJSON methods do (with
// golang/protobuf's jsonpb), as the reference Decode must agree with.
func istioDecode(t *testing.T, kind Kind, spec []byte) proto.Message {
	t.Helper()
	m := NewSpec(kind)
	if err := (&jsonpb.Unmarshaler{}).Unmarshal(bytes.NewReader(spec), protoadapt.MessageV1Of(m)); err != nil {
		t.Fatalf("jsonpb: %v\n%s", err, spec)
	}
	return m
}

// kindAndSpec returns the kind and the spec (JSON) of one YAML document, as Istio's decoder gets
// them.
func kindAndSpec(t *testing.T, doc []byte) (Kind, json.RawMessage) {
	t.Helper()
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Kind Kind            `json:"kind"`
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(js, &env); err != nil {
		t.Fatal(err)
	}
	return env.Kind, env.Spec
}

// TestDecodeMatchesIstioDecoder checks that every good document decodes to the same spec as
// Istio's decoder produces from it.
func TestDecodeMatchesIstioDecoder(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range splitDocuments(data) {
			kind, spec := kindAndSpec(t, doc.data)
			if kind == Secret {
				continue // Kubernetes' kind, not Istio's: no spec for Istio's decoder
			}
			objs, errs := Decode(f, doc.data)
			if len(errs) > 0 || len(objs) != 1 {
				t.Fatalf("%s: %v", f, errs)
			}
			if want := istioDecode(t, kind, spec); !proto.Equal(objs[0].Spec, want) {
				t.Errorf("%s %s: Decode and Istio's decoder differ:\n got %v\nwant %v", f, objs[0].Key(), objs[0].Spec, want)
			}
		}
	}
}

func TestDurationForms(t *testing.T) {
	for _, d := range []string{"1s", "1.5s", "30ms", "100us", "250ns", "5m", "1h2m3.5s", "0", "0s", "-1.5s", "1.000000001s", "2562047h"} {
		spec := `{"hosts":["a"],"http":[{"timeout":"` + d + `","route":[{"destination":{"host":"a"}}]}]}`
		objs, errs := Decode("d.yaml", []byte(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"a"},"spec":`+spec+`}`))
		if len(errs) > 0 {
			t.Errorf("%s: %v", d, errs)
			continue
		}
		if want := istioDecode(t, VirtualService, []byte(spec)); !proto.Equal(objs[0].Spec, want) {
			t.Errorf("%s: got %v, want %v", d, objs[0].Spec, want)
		}
	}
	for _, d := range []string{"1", "1d", "s", "", "1e3s", "99999999999h"} {
		doc := `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"a"},"spec":{"hosts":["a"],"http":[{"timeout":"` + d + `","route":[{"destination":{"host":"a"}}]}]}}`
		if _, errs := Decode("d.yaml", []byte(doc)); len(errs) == 0 {
			t.Errorf("%q accepted", d)
		}
	}
}
