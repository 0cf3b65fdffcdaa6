package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/strait-mesh/strait/proxy/agent"
)

// agentFlags are the flags of the workload-identity agent (package agent). Without --ca-address
// the proxy runs no agent and takes every secret from the control plane, as before.
type agentFlags struct {
	caAddress, caRootCert, caServerName string
	tokenFile, trustDomain              string
	lifetime                            time.Duration
}

func (a *agentFlags) register(f *pflag.FlagSet) {
	f.StringVar(&a.caAddress, "ca-address", env("", "CA_ADDR", "STRAIT_CA_ADDRESS"), "straitd's CA (its TLS mesh port, e.g. 127.0.0.1:15012): run the identity agent, which obtains the workload certificate and serves the SDS secrets default and ROOTCA; empty: no agent")
	f.StringVar(&a.caRootCert, "ca-root-cert", env("", "CA_ROOT_CERT", "STRAIT_CA_ROOT_CERT"), "PEM file with the mesh's root certificates (the initial trust bundle; also verifies straitd's CA)")
	f.StringVar(&a.caServerName, "ca-server-name", env(agent.DefaultCAServerName, "CA_SERVER_NAME", "STRAIT_CA_SERVER_NAME"), "name verified in the CA's serving certificate")
	f.StringVar(&a.tokenFile, "bootstrap-token-file", env("", "STRAIT_BOOTSTRAP_TOKEN_FILE"), "file with the bootstrap token minted by straitd for this namespace and service account (read at each use)")
	f.StringVar(&a.trustDomain, "trust-domain", env(agent.DefaultTrustDomain, "TRUST_DOMAIN"), "trust domain of the workload's SPIFFE ID")
	f.DurationVar(&a.lifetime, "cert-lifetime", agent.DefaultLifetime, "requested workload certificate lifetime (the CA may cap it)")
}

// options returns the agent's options for the workload's identity, nil without --ca-address.
func (a *agentFlags) options(namespace, serviceAccount string) (*agent.Options, error) {
	if a.caAddress == "" {
		if a.tokenFile != "" || a.caRootCert != "" {
			return nil, errors.New("--bootstrap-token-file and --ca-root-cert need --ca-address")
		}
		return nil, nil
	}
	if a.caRootCert == "" {
		return nil, errors.New("--ca-address needs --ca-root-cert (the mesh's root certificates)")
	}
	if a.tokenFile == "" {
		return nil, errors.New("--ca-address needs --bootstrap-token-file (or STRAIT_BOOTSTRAP_TOKEN_FILE) for the first certificate")
	}
	if a.lifetime < time.Second {
		return nil, fmt.Errorf("--cert-lifetime %v: want at least 1s", a.lifetime)
	}
	return &agent.Options{
		CAAddress:          a.caAddress,
		CAServerName:       a.caServerName,
		RootsFile:          a.caRootCert,
		BootstrapTokenFile: a.tokenFile,
		TrustDomain:        a.trustDomain,
		Namespace:          namespace,
		ServiceAccount:     serviceAccount,
		Lifetime:           a.lifetime,
	}, nil
}
