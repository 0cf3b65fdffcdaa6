package ca

import "crypto/x509"

// RootState is a root's role in the trust bundle, as an operator sees it during a rotation.
type RootState string

// The states of Root.
const (
	// RootSigning is the root that anchors the signing certificate (the signing certificate
	// itself in self-signed mode).
	RootSigning RootState = "signing"
	// RootStaged is the root created by StageRoot: trusted, not yet signing.
	RootStaged RootState = "staged"
	// RootTrusted is trusted only: a root retired by ActivateStagedRoot whose certificates may
	// still be in use, or another root of a plug-in root-cert.pem.
	RootTrusted RootState = "trusted"
)

// Root is one root of the trust bundle with its state.
type Root struct {
	Cert  *x509.Certificate // shared: must not be modified
	State RootState
}

// Roots returns the trust bundle in TrustBundle's order (the signing root last), each root with
// its state, all read from one consistent view of the Authority (a concurrent root change is seen
// whole or not at all).
func (a *Authority) Roots() []Root {
	st := a.state.Load()
	out := make([]Root, len(st.roots))
	for i, r := range st.roots {
		state := RootTrusted
		switch {
		case i == len(st.roots)-1:
			state = RootSigning
		case st.staged != nil && r.Equal(st.staged):
			state = RootStaged
		}
		out[i] = Root{Cert: r, State: state}
	}
	return out
}
