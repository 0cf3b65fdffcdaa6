package vocab

import "strconv"

// grpcStatusNames are gRPC's status code names, indexed by code.
var grpcStatusNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
	"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// GRPCStatus returns the code of a gRPC status as Istio's fault.abort.grpcStatus spells it: a code
// name ("UNAVAILABLE") or its number ("14").
func GRPCStatus(s string) (code uint32, ok bool) {
	for i, n := range grpcStatusNames {
		if n == s {
			return uint32(i), true
		}
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil && n < uint64(len(grpcStatusNames)) {
		return uint32(n), true
	}
	return 0, false
}
