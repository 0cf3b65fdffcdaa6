package ca

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the CA's Prometheus metrics, named and typed as Istio's CA server (citadel_server_*)
// names them. Counters are counted by the Service; the expiry gauges are read from the Authority
// when scraped. A nil *Metrics counts nothing.
type Metrics struct {
	counters [numCounters]prometheus.Counter
	signErrs *prometheus.CounterVec // citadel_server_csr_sign_err_count{error}
}

// counter is one of the CA's unlabelled counters, an index into Metrics.counters.
type counter int

// The counters.
const (
	csrCount counter = iota
	issuedCount
	parseErrCount
	authnFailCount
	idErrCount
	numCounters
)

// counterOpts name and describe each counter.
var counterOpts = [numCounters]prometheus.CounterOpts{
	csrCount:       {Name: "citadel_server_csr_count", Help: "CSRs received by the CA (CreateCertificate calls)."},
	issuedCount:    {Name: "citadel_server_success_cert_issuance_count", Help: "Workload certificates issued."},
	parseErrCount:  {Name: "citadel_server_csr_parsing_err_count", Help: "CSRs refused because they could not be parsed (malformed or oversized)."},
	authnFailCount: {Name: "citadel_server_authentication_failure_count", Help: "CSRs refused because no authenticator proved the caller."},
	idErrCount:     {Name: "citadel_server_id_extraction_err_count", Help: "CSRs refused because they ask for another identity than the caller proved."},
}

// Values of citadel_server_csr_sign_err_count's error label, Istio's CA error types.
const (
	signErrCSR     = "CSR_ERROR"      // the CSR or its key is refused
	signErrCertGen = "CERT_GEN_ERROR" // signing failed
)

// newMetrics creates the CA's metrics for a and registers them with reg (nil: not registered).
func newMetrics(reg prometheus.Registerer, a *Authority) (*Metrics, error) {
	m := &Metrics{signErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "citadel_server_csr_sign_err_count",
		Help: "CSRs that failed to be signed, by error (CSR_ERROR: the CSR or its key is refused; CERT_GEN_ERROR: signing failed).",
	}, []string{"error"})}
	var collectors []prometheus.Collector
	for i, opts := range counterOpts {
		m.counters[i] = prometheus.NewCounter(opts)
		collectors = append(collectors, m.counters[i])
	}
	collectors = append(collectors, m.signErrs)
	if reg == nil {
		return m, nil
	}
	collectors = append(collectors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "citadel_server_root_cert_expiry_timestamp",
			Help: "Unix time, in seconds, when the root certificate that anchors the signing certificate expires.",
		}, func() float64 { return float64(a.anchor().NotAfter.Unix()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "citadel_server_cert_chain_expiry_timestamp",
			Help: "Unix time, in seconds, when the first certificate of the CA's chain (signing certificate, intermediates, root) expires.",
		}, func() float64 { return float64(a.state.Load().notAfter.Unix()) }))
	var errs []error
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registering CA metrics: %w", err)
	}
	return m, nil
}

// inc counts one on c; nothing on a nil *Metrics.
func (m *Metrics) inc(c counter) {
	if m != nil {
		m.counters[c].Inc()
	}
}

func (m *Metrics) csr()          { m.inc(csrCount) }
func (m *Metrics) success()      { m.inc(issuedCount) }
func (m *Metrics) parseErr()     { m.inc(parseErrCount) }
func (m *Metrics) authnFailure() { m.inc(authnFailCount) }
func (m *Metrics) idErr()        { m.inc(idErrCount) }

func (m *Metrics) signErr(kind string) {
	if m != nil {
		m.signErrs.WithLabelValues(kind).Inc()
	}
}
