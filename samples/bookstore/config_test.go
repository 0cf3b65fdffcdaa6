package bookstore_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
)

// yamlFiles returns every YAML file of the sample: config/, register/ and scenarios/.
func yamlFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{"config", "register", "scenarios"} {
		m, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(m) == 0 {
			t.Fatalf("no YAML files in %s", dir)
		}
		files = append(files, m...)
	}
	return files
}

// loadFile loads one file with config.Load, as straitd and `strait apply` do, and fails the test
// on any error.
func loadFile(t *testing.T, path string) ([]*config.Object, string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, errs := config.Load(path, data)
	for _, err := range errs {
		t.Errorf("%v", err)
	}
	if len(objs) == 0 && len(errs) == 0 {
		t.Errorf("%s: no objects", path)
	}
	return objs, string(data)
}

// TestYAMLLoads loads every YAML file of the sample with Strait's strict decoding and
// validation, and checks that each starts with a one-line comment saying what it shows.
func TestYAMLLoads(t *testing.T) {
	for _, path := range yamlFiles(t) {
		t.Run(path, func(t *testing.T) {
			_, data := loadFile(t, path)
			if first, _, _ := strings.Cut(data, "\n"); !strings.HasPrefix(first, "# ") || len(first) < 20 {
				t.Errorf("%s: first line %q: want a comment saying what the file shows", path, first)
			}
		})
	}
}

// TestYAMLReferences checks what validation of single objects cannot: every host the
// VirtualServices and DestinationRules name is a registered bookstore service, every subset a
// route names is defined by config/destination-rules.yaml, and everything is in namespace
// default.
func TestYAMLReferences(t *testing.T) {
	services := map[string]bool{}
	subsets := map[string][]string{} // short host → subset names
	var routes []*config.Object
	for _, path := range yamlFiles(t) {
		objs, _ := loadFile(t, path)
		for _, o := range objs {
			// The mesh-wide PeerAuthentication lives in the root namespace, as Istio's does.
			if o.Namespace != "default" && !(o.Kind == config.PeerAuthentication && o.Namespace == "istio-system") {
				t.Errorf("%s: %s is in namespace %q, want default", path, o.Key(), o.Namespace)
			}
			switch spec := o.Spec.(type) {
			case *networking.ServiceEntry:
				for _, h := range spec.Hosts {
					services[strings.TrimSuffix(h, ".default.svc.cluster.local")] = true
				}
			case *networking.DestinationRule:
				for _, s := range spec.Subsets {
					subsets[spec.Host] = append(subsets[spec.Host], s.Name)
				}
			case *networking.VirtualService:
				routes = append(routes, o)
			}
		}
	}
	for _, s := range []string{"web", "details", "reviews", "ratings"} {
		if !services[s] {
			t.Errorf("service %s is not registered by register/services.yaml", s)
		}
		if !slices.Contains(subsets[s], "v1") {
			t.Errorf("service %s has no subset v1", s)
		}
	}
	for _, o := range routes {
		for _, h := range o.Spec.(*networking.VirtualService).Http {
			for _, d := range h.Route {
				host := d.Destination.Host
				if !services[host] {
					t.Errorf("%s routes to %q, not a bookstore service", o.Key(), host)
				}
				if s := d.Destination.Subset; s != "" && !slices.Contains(subsets[host], s) {
					t.Errorf("%s routes to subset %s of %s, not defined by a DestinationRule", o.Key(), s, host)
				}
			}
		}
	}
}
