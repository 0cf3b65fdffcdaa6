package agent

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Istio's CSR API (istio.io/api security/v1alpha1/ca.proto, package istio.v1.auth), encoded by
// hand with protowire. The generated package istio.io/api/security/v1alpha1 also holds the
// service's grpc-go stubs, so importing it links grpc-go into strait-proxy; and a trimmed
// generated copy would carry a file descriptor, its registration and google.protobuf.Struct for
// two messages of which the agent writes two fields and reads one. The hand encoding is the
// smaller of the two: about eighty lines, no init-time work.
//
//	message IstioCertificateRequest {
//	  string csr = 1;
//	  int64 validity_duration = 3;
//	  google.protobuf.Struct metadata = 4; // not sent: straitd's CA reads none of it
//	}
//	message IstioCertificateResponse {
//	  repeated string cert_chain = 1;
//	}

// createCertificateMethod is the gRPC method of IstioCertificateService.CreateCertificate.
const createCertificateMethod = "/istio.v1.auth.IstioCertificateService/CreateCertificate"

// Field numbers of ca.proto.
const (
	fieldCSR              protowire.Number = 1
	fieldValidityDuration protowire.Number = 3
	fieldCertChain        protowire.Number = 1
)

// maxCertChainEntries bounds IstioCertificateResponse.cert_chain: each entry holds at least one
// certificate, and a chain longer than a bundle is refused later anyway.
const maxCertChainEntries = MaxBundleCertificates

// encodeCSRRequest encodes IstioCertificateRequest{csr, validity_duration}; proto3 omits a
// field with its default value.
func encodeCSRRequest(csrPEM []byte, validitySeconds int64) []byte {
	b := make([]byte, 0, len(csrPEM)+16)
	if len(csrPEM) > 0 {
		b = protowire.AppendTag(b, fieldCSR, protowire.BytesType)
		b = protowire.AppendBytes(b, csrPEM)
	}
	if validitySeconds != 0 {
		b = protowire.AppendTag(b, fieldValidityDuration, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(validitySeconds))
	}
	return b
}

// decodeCSRResponse decodes IstioCertificateResponse.cert_chain from the CA's untrusted reply
// (bounded in size by the call's receive limit), as proto3 decoding does: unknown fields and a
// cert_chain entry of another wire type are skipped; a truncated message, a field number out of
// range or an entry that is not UTF-8 (a proto3 string) is an error wrapping ErrMalformed.
// More than maxCertChainEntries entries is an error too.
func decodeCSRResponse(b []byte) ([]string, error) {
	var chain []string
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("%w: IstioCertificateResponse: %w", ErrMalformed, protowire.ParseError(n))
		}
		if num > protowire.MaxValidNumber { // ConsumeTag checks only the lower bound
			return nil, fmt.Errorf("%w: IstioCertificateResponse: field number %d out of range", ErrMalformed, num)
		}
		b = b[n:]
		if num == fieldCertChain && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, fmt.Errorf("%w: IstioCertificateResponse: cert_chain[%d]: %w", ErrMalformed, len(chain), protowire.ParseError(n))
			}
			if !utf8.Valid(v) {
				return nil, fmt.Errorf("%w: IstioCertificateResponse: cert_chain[%d] is not UTF-8", ErrMalformed, len(chain))
			}
			if len(chain) == maxCertChainEntries {
				return nil, fmt.Errorf("%w: IstioCertificateResponse: more than %d cert_chain entries", ErrMalformed, maxCertChainEntries)
			}
			chain = append(chain, string(v))
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, fmt.Errorf("%w: IstioCertificateResponse: field %d: %w", ErrMalformed, num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return chain, nil
}
