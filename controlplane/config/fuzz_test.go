package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang/protobuf/jsonpb" //nolint:staticcheck // Istio's decoder, as the reference
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"sigs.k8s.io/yaml"
)

// checkDecodeErrors fails the test unless every error of Decode is a *config.Error from the
// strict walk: the walk must catch everything the decoder rejects, so that every error has a
// field path; "decoding spec" means they disagree.
func checkDecodeErrors(t *testing.T, errs []error) {
	t.Helper()
	for _, err := range errs {
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("error %T is not *config.Error: %v", err, err)
		}
		if strings.Contains(ce.Msg, "decoding spec") || strings.Contains(ce.Msg, "internal error") {
			t.Fatalf("walk and decoder disagree: %v", err)
		}
	}
}

// FuzzDecode checks that Decode never panics, that every error is a *config.Error, and that every
// decoded object validates or fails with *config.Error values and round-trips through MarshalJSON.
// The seed corpus in testdata/fuzz/FuzzDecode and the good documents run in every `go test`.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/good/*")
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, errs := Decode("fuzz.yaml", data)
		checkDecodeErrors(t, errs)
		for _, o := range objs {
			if err := Validate(o); err != nil {
				for _, e := range Errors(err) {
					var ce *Error
					if !errors.As(e, &ce) {
						t.Fatalf("validation error %T is not *config.Error: %v", e, e)
					}
				}
				continue
			}
			out, err := MarshalJSON(o)
			if err != nil {
				t.Fatalf("marshal %s: %v", o.Key(), err)
			}
			if o.Kind == Secret {
				checkSecretRedacted(t, o, out, MarshalJSON) // a Secret renders redacted: no round trip
				continue
			}
			back, berrs := Decode("roundtrip", out)
			if len(berrs) > 0 || len(back) != 1 {
				t.Fatalf("re-decoding %s: %v\n%s", o.Key(), berrs, out)
			}
			if !proto.Equal(back[0].Spec, o.Spec) {
				t.Fatalf("%s changed in round trip:\n%s", o.Key(), out)
			}
		}
		_ = ValidateSet(objs)
	})
}

// FuzzSpec fuzzes the spec of a document of each kind, to exercise the strict walk and the
// validators more directly than FuzzDecode: the envelope is always valid. The seed specs are in
// the order of Kinds, one per kind with a spec (a Secret has none: its documents are refused).
func FuzzSpec(f *testing.F) {
	for i, spec := range []string{
		`{"hosts":["a"],"http":[{"route":[{"destination":{"host":"a","subset":"v1"},"weight":50}],"timeout":"1.5s"}]}`,
		`{"host":"a","trafficPolicy":{"loadBalancer":{"consistentHash":{"httpCookie":{"name":"c","ttl":"0s"}}},"tls":{"mode":"MUTUAL"}}}`,
		`{"hosts":["a.com"],"ports":[{"number":80,"name":"http","protocol":"HTTP"}],"resolution":"DNS","endpoints":[{"address":"b.com"}]}`,
		`{"address":"1.2.3.4","ports":{"http":8080},"labels":{"app":"a"},"weight":"3"}`,
		`{"template":{"ports":{"http":80}},"probe":{"httpGet":{"port":80}}}`,
		`{"egress":[{"hosts":["./*"],"port":{"number":80,"name":"http","protocol":"HTTP"}}],"outboundTrafficPolicy":{"mode":"REGISTRY_ONLY"}}`,
		`{"servers":[{"port":{"number":443,"name":"https","protocol":"HTTPS"},"hosts":["*/a.com"],"tls":{"mode":"SIMPLE","credentialName":"c"}}]}`,
		`{"selector":{"matchLabels":{"app":"a"}},"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"DISABLE"},"9090":{}}}`,
		`{"action":"DENY","rules":[{"from":[{"source":{"principals":["a*"],"ipBlocks":["10.0.0.0/8"]}}],"to":[{"operation":{"ports":["80"],"paths":["/a/{*}/{**}"]}}],"when":[{"key":"request.auth.claims[a][b]","values":["x"]}]}]}`,
		`{"selector":{"matchLabels":{"app":"a"}},"jwtRules":[{"issuer":"i","jwksUri":"https://k/j","fromHeaders":[{"name":"x","prefix":"B "}],"outputClaimToHeaders":[{"claim":"sub","header":"x-sub"}],"timeout":"2s"}]}`,
	} {
		f.Add(uint8(i), spec)
	}
	f.Fuzz(func(t *testing.T, kind uint8, spec string) {
		k := Kinds[int(kind)%len(Kinds)]
		doc := "apiVersion: " + DefaultAPIVersionFor(k) + "\nkind: " + string(k) + "\nmetadata: {name: f, namespace: ns}\nspec: " + spec + "\n"
		objs, errs := Decode("spec.yaml", []byte(doc))
		checkDecodeErrors(t, errs)
		for _, o := range objs {
			// Whatever Decode accepts, Istio's decoder accepts too, with the same result.
			if js, err := yaml.YAMLToJSON([]byte(doc)); err == nil {
				var env struct {
					Spec json.RawMessage `json:"spec"`
				}
				if json.Unmarshal(js, &env) == nil && len(env.Spec) > 0 && string(env.Spec) != "null" {
					want := NewSpec(k)
					if err := (&jsonpb.Unmarshaler{}).Unmarshal(bytes.NewReader(env.Spec), protoadapt.MessageV1Of(want)); err != nil {
						t.Fatalf("accepted, but Istio's decoder rejects it: %v\n%s", err, env.Spec)
					}
					if !proto.Equal(want, o.Spec) {
						t.Fatalf("decoded differently from Istio's decoder:\n got %v\nwant %v", o.Spec, want)
					}
				}
			}
			if err := Validate(o); err != nil {
				if strings.Contains(err.Error(), "internal error") {
					t.Fatal(err)
				}
				continue
			}
			if _, err := MarshalYAML(o); err != nil {
				t.Fatal(err)
			}
		}
	})
}
