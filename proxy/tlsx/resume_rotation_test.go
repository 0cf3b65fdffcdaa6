package tlsx

import (
	"crypto/tls"
	"testing"
)

// TestResumptionAfterClientRotation: after the client's certificate rotated to a new root and the
// server dropped the old root, the client makes a full handshake with its new certificate instead
// of resuming the session of its old one (which the server re-verifies and refuses).
func TestResumptionAfterClientRotation(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		m := newMesh(t)
		next := newCA(t, "cluster.local-next")
		m.serverS.set(caSecret("ROOTCA", append(append([]byte{}, m.ca.pem...), next.pem...)))
		srv, cli := m.istioConfigs(t)
		cli.MaxVersion = version
		for i := 0; i < 2; i++ {
			if serr, cerr, _, _ := handshake(t, srv, cli); serr != nil || cerr != nil {
				t.Fatalf("%x: handshake %d: %v %v", version, i, serr, cerr)
			}
		}
		cc, ck, _ := next.issue(t, []string{clientID})
		m.client.set(certSecret("default", cc, ck))
		m.serverS.set(caSecret("ROOTCA", next.pem))
		serr, cerr, ss, _ := handshake(t, srv, cli)
		if serr != nil || cerr != nil {
			t.Fatalf("%x: after the rotation: resumed=%v server %v, client %v", version, ss.DidResume, serr, cerr)
		}
		if ss.DidResume {
			t.Errorf("%x: the session of the old certificate was resumed", version)
		}
	}
}
