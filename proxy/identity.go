package proxy

import (
	"context"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/proxy/agent"
	"github.com/strait-mesh/strait/proxy/stats"
	adminv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/admin/v3"
)

// DefaultCertWait is how long Run waits for the agent's first certificate before it connects to
// the control plane anyway: Envoy's default initial_fetch_timeout of an SDS subscription (15 s).
const DefaultCertWait = 15 * time.Second

// agentOwned reports whether the agent serves the SDS secret of that name (Istio's "default"
// and "ROOTCA"); the proxy then neither subscribes to it over xDS nor uses an xDS copy of it.
func (p *Proxy) agentOwned(name string) bool {
	return p.agent != nil && (name == agent.SecretDefault || name == agent.SecretRootCA)
}

// Agent returns the workload-identity agent, or nil when the proxy runs without one.
func (p *Proxy) Agent() *agent.Agent { return p.agent }

// newAgent creates the agent from Options.Agent and registers its metrics: Istio's
// istio_agent_cert_expiry_seconds{resource_name="default"} (Envoy-style name
// sds.default.cert_expiry_seconds), omitted until the first certificate.
func (p *Proxy) newAgent() error {
	if p.opts.Agent == nil {
		return nil
	}
	o := *p.opts.Agent
	if o.Logger == nil {
		o.Logger = p.log
	}
	a, err := agent.New(o)
	if err != nil {
		return err
	}
	p.agent = a
	p.stats.GaugeFunc("sds.default.cert_expiry_seconds", "istio_agent_cert_expiry_seconds", func() (int64, bool) {
		s, ok := a.CertExpirySeconds()
		return int64(math.Floor(s)), ok
	}, stats.Tag{Name: "resource_name", Value: agent.SecretDefault})
	return nil
}

// startAgent runs the agent until the returned stop function is called, and waits up to
// Options.CertWait for its first certificate. Not getting one in time is logged, not fatal: the
// proxy goes on to connect to the control plane and serve, the agent keeps retrying with backoff,
// and a listener or cluster that names "default" fails its handshakes until the certificate
// arrives (as Envoy's would while its SDS secret is missing). ctx ending stops the wait only.
func (p *Proxy) startAgent(ctx context.Context) (stop func()) {
	actx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.agent.Run(actx); err != nil {
			p.log.Error("identity agent stopped", "error", err)
		}
	}()
	stop = func() { cancel(); <-done }
	if p.opts.CertWait < 0 {
		return stop
	}
	wctx, wcancel := context.WithTimeout(ctx, p.opts.CertWait)
	defer wcancel()
	if err := p.agent.WaitReady(wctx); err != nil {
		if ctx.Err() == nil {
			p.log.Warn("no workload certificate yet; connecting to the control plane without it (the agent keeps retrying)",
				"waited", p.opts.CertWait, "error", err)
		}
		return stop
	}
	st := p.agent.Status()
	p.log.Info("workload certificate ready", "identity", st.Identity, "serial", st.Serial, "notAfter", st.NotAfter)
	return stop
}

// agentSecrets renders the agent's secrets for /config_dump's dynamic_active_secrets, redacted
// as the xDS ones are (never the private key). The version of "default" is its serial number.
func (p *Proxy) agentSecrets() ([]*adminv3.SecretsConfigDump_DynamicSecret, error) {
	if p.agent == nil {
		return nil, nil
	}
	st := p.agent.Status()
	var out []*adminv3.SecretsConfigDump_DynamicSecret
	for _, name := range []string{agent.SecretDefault, agent.SecretRootCA} {
		s := p.agent.Secret(name)
		if s == nil {
			continue
		}
		red, err := anypb.New(redactSecret(s))
		if err != nil {
			return nil, fmt.Errorf("packing secret %q: %w", name, err)
		}
		d := &adminv3.SecretsConfigDump_DynamicSecret{Name: name, Secret: red}
		if name == agent.SecretDefault {
			d.VersionInfo = st.Serial
			d.LastUpdated = timestamppb.New(st.NotBefore)
		}
		out = append(out, d)
	}
	return out, nil
}
