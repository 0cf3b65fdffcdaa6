package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// errFieldRE matches the "_err: ..." line with which Istio's fixtures state the expected error.
var errFieldRE = regexp.MustCompile(`(?m)^_err: *(.*)\n`)

// TestIstioValidationFixtures checks that Strait accepts every document Istio's CRD validation
// fixtures for AuthorizationPolicy and RequestAuthentication accept, and rejects every document
// they reject, each with errors that name the file and the object.
func TestIstioValidationFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/istio-validation/*.yaml")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		valid := strings.HasSuffix(f, "-valid.yaml")
		for i, doc := range splitDocuments(data) {
			want := ""
			if m := errFieldRE.FindSubmatch(doc.data); m != nil {
				want = string(m[1])
			}
			body := errFieldRE.ReplaceAll(doc.data, nil)
			objs, errs := Load(f, body)
			switch {
			case valid && (len(errs) > 0 || len(objs) != 1):
				t.Errorf("%s document %d: Istio accepts it, Strait: %v", f, i+1, errors.Join(errs...))
			case !valid && (len(errs) == 0 || len(objs) != 0):
				t.Errorf("%s document %d: Istio rejects it (%s), Strait accepts it", f, i+1, want)
			case !valid:
				for _, e := range errs {
					var ce *Error
					if !errors.As(e, &ce) || ce.Origin != f || (ce.Name == "" && ce.Doc == 0) {
						t.Errorf("%s document %d: error does not name the file and object: %v", f, i+1, e)
					}
				}
				t.Logf("%s document %d: Istio: %s; Strait: %v", f, i+1, want, errs[0])
			}
		}
	}
}
