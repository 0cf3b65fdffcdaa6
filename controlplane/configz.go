package controlplane

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-mesh/strait/controlplane/analysis"
)

// configzObject is one accepted object in /debug/configz.
type configzObject struct {
	Kind            string `json:"kind"`
	Namespace       string `json:"namespace"`
	Name            string `json:"name"`
	Origin          string `json:"origin"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// configz is the body of /debug/configz: what serves, and what was rejected and why.
type configz struct {
	Version uint64          `json:"version"`
	Objects []configzObject `json:"objects"`
	Errors  []string        `json:"errors"`
	// Untranslated lists objects (or fields) that were accepted but could not be translated for
	// some proxy; their effect is left out of that proxy's configuration.
	Untranslated []string `json:"untranslated"`
	// Analysis holds the messages of Istio's analyzers over the snapshot (what `strait analyze`
	// prints for the live mesh).
	Analysis []analysis.Message `json:"analysis"`
}

func (b *builder) serveConfigz(w http.ResponseWriter, _ *http.Request) {
	out := configz{Objects: []configzObject{}, Errors: []string{}, Untranslated: b.problems.current(), Analysis: []analysis.Message{}}
	if out.Untranslated == nil {
		out.Untranslated = []string{}
	}
	if snap := b.current.Load(); snap != nil {
		out.Version = snap.Version
		for _, list := range snap.Configs {
			for _, o := range list {
				out.Objects = append(out.Objects, configzObject{
					Kind: string(o.Kind), Namespace: o.Namespace, Name: o.Name, Origin: o.Origin, ResourceVersion: o.ResourceVersion,
				})
			}
		}
		if msgs := analysis.Analyze(snap, analysis.Options{Locator: &analysis.FileLocator{Read: readConfigFile}}); msgs != nil {
			out.Analysis = msgs
		}
	}
	if errs := b.errs.Load(); errs != nil {
		for _, e := range *errs {
			out.Errors = append(out.Errors, e.Error())
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

// readConfigFile reads the file an object came from, for the lines of analysis messages. Only
// YAML and JSON files are read (an origin such as "store" or "kubernetes" is not a file).
func readConfigFile(origin string) ([]byte, error) {
	switch filepath.Ext(origin) {
	case ".yaml", ".yml", ".json":
		return os.ReadFile(origin)
	}
	return nil, os.ErrNotExist
}

// collector exports the snapshot version and the number of current config errors.
func (b *builder) collector() prometheus.Collector {
	return &builderCollector{b: b,
		version: prometheus.NewDesc("strait_mesh_snapshot_version", "Version of the current mesh snapshot.", nil, nil),
		errors:  prometheus.NewDesc("strait_config_rejected", "Config documents or objects currently rejected (see /debug/configz).", nil, nil),
	}
}

type builderCollector struct {
	b               *builder
	version, errors *prometheus.Desc
}

func (c *builderCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.version; ch <- c.errors }

func (c *builderCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.version, prometheus.GaugeValue, float64(c.b.version.Load()))
	n := 0
	if errs := c.b.errs.Load(); errs != nil {
		n = len(*errs)
	}
	ch <- prometheus.MustNewConstMetric(c.errors, prometheus.GaugeValue, float64(n))
}
