package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
)

// ErrKeyPolicy is wrapped when a public key is of a type or size the CA does not accept.
var ErrKeyPolicy = errors.New("key not accepted")

// checkWorkloadKey applies the policy for keys in workload CSRs: ECDSA on P-256 (Istio's and
// Strait's default) or RSA of 2048, 3072 or 4096 bits with exponent 65537 (RSA 2048 is Istio's
// selectable alternative; pilot-agent's WORKLOAD_RSA_KEY_SIZE may pick a larger size). Every
// other curve, size or algorithm (Ed25519, P-384, RSA 1024, ...) is refused, so that each peer's
// TLS stack and Envoy interoperate with every mesh certificate.
func checkWorkloadKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: ECDSA curve %s, want P-256", ErrKeyPolicy, k.Curve.Params().Name)
		}
		return nil
	case *rsa.PublicKey:
		switch bits := k.N.BitLen(); bits {
		case 2048, 3072, 4096:
		default:
			return fmt.Errorf("%w: RSA key of %d bits, want 2048, 3072 or 4096", ErrKeyPolicy, bits)
		}
		if k.E != 65537 {
			return fmt.Errorf("%w: RSA public exponent %d, want 65537", ErrKeyPolicy, k.E)
		}
		return nil
	default:
		return fmt.Errorf("%w: %T, want ECDSA P-256 or RSA", ErrKeyPolicy, pub)
	}
}

// checkCAKey applies the policy for a plug-in CA's key: ECDSA on P-256, P-384 or P-521, or RSA of
// 2048 to 8192 bits (Istio's sample tooling makes RSA 4096 roots and intermediates).
func checkCAKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("%w: CA key on ECDSA curve %s", ErrKeyPolicy, k.Curve.Params().Name)
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < 2048 || bits > 8192 {
			return fmt.Errorf("%w: CA RSA key of %d bits, want 2048 to 8192", ErrKeyPolicy, bits)
		}
		return nil
	default:
		return fmt.Errorf("%w: CA key type %T, want ECDSA or RSA", ErrKeyPolicy, pub)
	}
}

// newECDSAKey generates an ECDSA P-256 key, the type of every key this package creates (roots,
// straitd's serving key).
func newECDSAKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating ECDSA P-256 key: %w", err)
	}
	return k, nil
}

// publicKeysEqual reports whether two public keys are the same key.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
