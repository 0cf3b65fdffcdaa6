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
	csrs       prometheus.Counter     // citadel_server_csr_count
	issued     prometheus.Counter     // citadel_server_success_cert_issuance_count
	parseErrs  prometheus.Counter     // citadel_server_csr_parsing_err_count
	authnFails prometheus.Counter     // citadel_server_authentication_failure_count
	idErrs     prometheus.Counter     // citadel_server_id_extraction_err_count
	signErrs   *prometheus.CounterVec // citadel_server_csr_sign_err_count{error}
}

// Values of citadel_server_csr_sign_err_count's error label, Istio's CA error types.
const (
	signErrCSR     = "CSR_ERROR"      // the CSR or its key is refused
	signErrCertGen = "CERT_GEN_ERROR" // signing failed
)

// newMetrics creates the CA's metrics for a and registers them with reg (nil: not registered).
func newMetrics(reg prometheus.Registerer, a *Authority) (*Metrics, error) {
	m := &Metrics{
		csrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_csr_count",
			Help: "CSRs received by the CA (CreateCertificate calls).",
		}),
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_success_cert_issuance_count",
			Help: "Workload certificates issued.",
		}),
		parseErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_csr_parsing_err_count",
			Help: "CSRs refused because they could not be parsed (malformed or oversized).",
		}),
		authnFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_authentication_failure_count",
			Help: "CSRs refused because no authenticator proved the caller.",
		}),
		idErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_id_extraction_err_count",
			Help: "CSRs refused because they ask for another identity than the caller proved.",
		}),
		signErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "citadel_server_csr_sign_err_count",
			Help: "CSRs that failed to be signed, by error (CSR_ERROR: the CSR or its key is refused; CERT_GEN_ERROR: signing failed).",
		}, []string{"error"}),
	}
	if reg == nil {
		return m, nil
	}
	rootExpiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "citadel_server_root_cert_expiry_timestamp",
		Help: "Unix time, in seconds, when the root certificate that anchors the signing certificate expires.",
	}, func() float64 { return float64(a.anchor().NotAfter.Unix()) })
	chainExpiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "citadel_server_cert_chain_expiry_timestamp",
		Help: "Unix time, in seconds, when the first certificate of the CA's chain (signing certificate, intermediates, root) expires.",
	}, func() float64 { return float64(a.state.Load().notAfter.Unix()) })
	var errs []error
	for _, c := range []prometheus.Collector{m.csrs, m.issued, m.parseErrs, m.authnFails, m.idErrs, m.signErrs, rootExpiry, chainExpiry} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registering CA metrics: %w", err)
	}
	return m, nil
}

func (m *Metrics) csr() {
	if m != nil {
		m.csrs.Inc()
	}
}

func (m *Metrics) success() {
	if m != nil {
		m.issued.Inc()
	}
}

func (m *Metrics) parseErr() {
	if m != nil {
		m.parseErrs.Inc()
	}
}

func (m *Metrics) authnFailure() {
	if m != nil {
		m.authnFails.Inc()
	}
}

func (m *Metrics) idErr() {
	if m != nil {
		m.idErrs.Inc()
	}
}

func (m *Metrics) signErr(kind string) {
	if m != nil {
		m.signErrs.WithLabelValues(kind).Inc()
	}
}
