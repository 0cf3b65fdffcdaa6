package appprobe

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/strait-mesh/strait/internal/grpclite"
)

// The gRPC health-checking protocol (grpc.health.v1, gRPC's doc/health-checking.md), encoded
// here with protowire rather than by grpc-go's generated package: that package registers the
// Health service's grpc-go stubs, which would link grpc-go into strait-proxy for two
// one-field messages.

// healthCheckMethod is the unary method a Kubernetes gRPC probe calls.
const healthCheckMethod = "/grpc.health.v1.Health/Check"

// maxHealthResponse bounds the reply of a health check: the real message is 2 bytes; unknown
// fields may make it larger, but not without limit.
const maxHealthResponse = 16 << 10

// servingStatus is grpc.health.v1.HealthCheckResponse.ServingStatus.
type servingStatus int32

// The serving statuses of grpc.health.v1.
const (
	statusUnknown        servingStatus = 0
	statusServing        servingStatus = 1
	statusNotServing     servingStatus = 2
	statusServiceUnknown servingStatus = 3 // only sent by Watch
)

func (s servingStatus) String() string {
	switch s {
	case statusUnknown:
		return "UNKNOWN"
	case statusServing:
		return "SERVING"
	case statusNotServing:
		return "NOT_SERVING"
	case statusServiceUnknown:
		return "SERVICE_UNKNOWN"
	}
	return strconv.FormatInt(int64(s), 10)
}

// encodeHealthCheckRequest encodes HealthCheckRequest{service = 1}; an empty service (the
// server's overall health) is the empty message, as proto3 omits default values.
func encodeHealthCheckRequest(service string) []byte {
	if service == "" {
		return nil
	}
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendString(b, service)
}

// decodeHealthCheckResponse decodes HealthCheckResponse{status = 1 (enum)} from untrusted
// bytes, as proto3 decoding does: the last status wins, unknown fields and a status sent with
// another wire type are skipped, a truncated or malformed message is an error.
func decodeHealthCheckResponse(b []byte) (servingStatus, error) {
	var st servingStatus
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, fmt.Errorf("decoding the HealthCheckResponse: %w", protowire.ParseError(n))
		}
		if num > protowire.MaxValidNumber { // ConsumeTag checks only the lower bound
			return 0, fmt.Errorf("decoding the HealthCheckResponse: field number %d out of range", num)
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, fmt.Errorf("decoding the HealthCheckResponse status: %w", protowire.ParseError(n))
			}
			st = servingStatus(int32(v)) // an enum is an int32; a longer varint is truncated
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, fmt.Errorf("decoding the HealthCheckResponse field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return st, nil
}

// run calls grpc.health.v1.Health/Check on host:port over h2c, as the kubelet's gRPC probe
// does (no TLS), and succeeds only on SERVING.
func (g *GRPC) run(ctx context.Context, host string) error {
	conn, err := grpclite.Dial(net.JoinHostPort(host, strconv.Itoa(g.Port)), grpclite.Options{
		UserAgent:  "kube-probe/strait",
		MaxReceive: maxHealthResponse,
	})
	if err != nil {
		return fmt.Errorf("gRPC health: %w", err)
	}
	defer conn.Close()
	service := ""
	if g.Service != nil {
		service = *g.Service
	}
	b, err := conn.InvokeRaw(ctx, healthCheckMethod, nil, encodeHealthCheckRequest(service))
	if err != nil {
		return fmt.Errorf("gRPC health: %w", err)
	}
	st, err := decodeHealthCheckResponse(b)
	if err != nil {
		return fmt.Errorf("gRPC health: %w", err)
	}
	if st != statusServing {
		return fmt.Errorf("gRPC health: %s", st)
	}
	return nil
}
