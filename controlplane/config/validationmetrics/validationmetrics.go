// Package validationmetrics counts config validations as Istio's validation webhook (galley)
// does: galley_validation_passed{group,version,resource} and
// galley_validation_failed{group,version,resource,reason}. straitd counts what its config
// sources validate: each document of a changed file in the config directory, and each document
// of a `strait apply` request (dry runs included, as the webhook sees them).
package validationmetrics

import (
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-mesh/strait/controlplane/config"
)

// Values of galley_validation_failed's reason label, Istio's webhook reasons.
const (
	// ReasonInvalidResource: a document of a known kind that does not decode strictly or does
	// not validate.
	ReasonInvalidResource = "invalid_resource"
	// ReasonDecodeError: a document that names no known kind (unreadable YAML, an unknown kind,
	// a document without kind).
	ReasonDecodeError = "yaml_decode_error"
)

// Counters are the validation counters. A nil *Counters counts nothing. Safe for concurrent use.
type Counters struct {
	passed *prometheus.CounterVec
	failed *prometheus.CounterVec
}

// New returns the counters, registered with reg when it is not nil.
func New(reg prometheus.Registerer) (*Counters, error) {
	c := &Counters{
		passed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "galley_validation_passed",
			Help: "Config objects that passed validation (config directory and strait apply).",
		}, []string{"group", "version", "resource"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "galley_validation_failed",
			Help: "Config documents that failed validation, by reason (invalid_resource, yaml_decode_error).",
		}, []string{"group", "version", "resource", "reason"}),
	}
	if reg != nil {
		if err := errors.Join(reg.Register(c.passed), reg.Register(c.failed)); err != nil {
			return nil, fmt.Errorf("registering validation metrics: %w", err)
		}
	}
	return c, nil
}

// Record counts one validation pass: objs passed, errs failed (config.Load's results). An
// object with several errors is counted once per error, as config.Load reports them.
func (c *Counters) Record(objs []*config.Object, errs []error) {
	if c == nil {
		return
	}
	for _, o := range objs {
		group, version := splitAPIVersion(o.APIVersion, o.Kind)
		c.passed.WithLabelValues(group, version, Resource(o.Kind)).Inc()
	}
	for _, err := range errs {
		var ce *config.Error
		if errors.As(err, &ce) && ce.Kind != "" {
			group, version := splitAPIVersion("", ce.Kind)
			c.failed.WithLabelValues(group, version, Resource(ce.Kind), ReasonInvalidResource).Inc()
			continue
		}
		c.failed.WithLabelValues("unknown", "unknown", "unknown", ReasonDecodeError).Inc()
	}
}

// splitAPIVersion returns the group and version of apiVersion ("networking.istio.io/v1"; "v1"
// for the core group, whose group is ""), or of kind's default apiVersion when it is empty.
func splitAPIVersion(apiVersion string, kind config.Kind) (group, version string) {
	if apiVersion == "" {
		apiVersion = config.DefaultAPIVersionFor(kind)
	}
	if i := strings.LastIndexByte(apiVersion, '/'); i >= 0 {
		return apiVersion[:i], apiVersion[i+1:]
	}
	return "", apiVersion
}

// Resource returns the Kubernetes resource name of a kind: its plural in lower case
// (virtualservices, serviceentries, authorizationpolicies, gateways).
func Resource(k config.Kind) string {
	s := strings.ToLower(string(k))
	if n := len(s); n >= 2 && s[n-1] == 'y' && !strings.ContainsRune("aeiou", rune(s[n-2])) {
		return s[:n-1] + "ies"
	}
	return s + "s"
}
