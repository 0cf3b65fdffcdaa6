package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
)

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
		for _, err := range errs {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not *config.Error: %v", err, err)
			}
			_ = err.Error()
		}
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
