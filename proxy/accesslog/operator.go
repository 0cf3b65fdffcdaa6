package accesslog

import (
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/attributes"
	"github.com/strait-mesh/strait/proxy/xdsfield"
)

// opKind is one command operator.
type opKind uint8

const (
	opStartTime opKind = iota
	opReqHeader
	opRespHeader
	opTrailer
	opString // a string field of the Entry (op.str)
	opNumber // an integer field of the Entry (op.num)
	opResponseFlags
	opUpstreamHost
	opAddr    // an address field of the Entry (op.addr), printed as op.part says
	opURISAN  // the URI SANs of a certificate of the Entry (op.cert)
	opSubject // the subject of a certificate of the Entry (op.cert)
	opDynamicMetadata
	opGRPCStatus
	opConstant // HOSTNAME, ENVIRONMENT(X): resolved when the format is compiled
)

// addrPart selects what an address operator prints.
type addrPart uint8

const (
	addrFull   addrPart = iota // ip:port
	addrNoPort                 // ip
	addrPort                   // port (a number)
)

// valKind is the type of an operator's value, for typed JSON.
type valKind uint8

const (
	vMissing valKind = iota // not set or empty: "-" in text, null in JSON
	vString
	vNumber
	vJSON // a JSON value (dynamic metadata struct or list)
)

// op is one compiled command operator.
type op struct {
	kind   opKind
	part   addrPart
	keys   []string // header names (main, alternative), metadata namespace and path
	maxLen int      // :Z truncation; 0 none
	tf     *timeFormat
	grpc   uint8                          // GRPC_STATUS: 0 CAMEL_STRING, 1 SNAKE_STRING, 2 NUMBER
	value  string                         // opConstant
	str    func(*Entry) string            // opString
	num    func(*Entry) int64             // opNumber
	addr   func(*Entry) netip.AddrPort    // opAddr
	cert   func(*Entry) *x509.Certificate // opURISAN, opSubject
}

// simpleOps are the operators without arguments; init adds the address operators.
var simpleOps = map[string]op{
	"PROTOCOL":                          strOp(func(e *Entry) string { return e.Protocol }),
	"RESPONSE_CODE":                     numOp(func(e *Entry) int64 { return int64(e.ResponseCode) }),
	"RESPONSE_FLAGS":                    {kind: opResponseFlags},
	"RESPONSE_CODE_DETAILS":             strOp(func(e *Entry) string { return e.ResponseCodeDetails }),
	"CONNECTION_TERMINATION_DETAILS":    strOp(func(e *Entry) string { return e.ConnectionTerminationDetails }),
	"UPSTREAM_TRANSPORT_FAILURE_REASON": strOp(func(e *Entry) string { return e.UpstreamTransportFailureReason }),
	"BYTES_RECEIVED":                    numOp(func(e *Entry) int64 { return e.BytesReceived }),
	"BYTES_SENT":                        numOp(func(e *Entry) int64 { return e.BytesSent }),
	"DURATION":                          numOp(func(e *Entry) int64 { return e.Duration.Milliseconds() }),
	"UPSTREAM_HOST":                     {kind: opUpstreamHost},
	"UPSTREAM_CLUSTER":                  strOp(func(e *Entry) string { return e.UpstreamCluster }),
	"UPSTREAM_CLUSTER_RAW":              strOp(func(e *Entry) string { return e.UpstreamCluster }),
	"DOWNSTREAM_PEER_URI_SAN":           {kind: opURISAN, cert: peerCertificate},
	"DOWNSTREAM_LOCAL_URI_SAN":          {kind: opURISAN, cert: localCertificate},
	"DOWNSTREAM_PEER_SUBJECT":           {kind: opSubject, cert: peerCertificate},
	"DOWNSTREAM_LOCAL_SUBJECT":          {kind: opSubject, cert: localCertificate},
	"REQUESTED_SERVER_NAME":             strOp(func(e *Entry) string { return e.RequestedServerName }),
	"ROUTE_NAME":                        strOp(func(e *Entry) string { return e.RouteName }),
	"UPSTREAM_REQUEST_ATTEMPT_COUNT":    numOp(func(e *Entry) int64 { return int64(e.Attempts) }),
	"GRPC_STATUS_NUMBER":                {kind: opGRPCStatus, grpc: 2},
}

// addrOps are the address operators by name prefix: each prefix P gives P_ADDRESS,
// P_ADDRESS_WITHOUT_PORT and P_PORT.
var addrOps = map[string]op{
	"UPSTREAM_REMOTE":          {kind: opUpstreamHost},
	"UPSTREAM_LOCAL":           {kind: opAddr, addr: func(e *Entry) netip.AddrPort { return e.UpstreamLocal }},
	"DOWNSTREAM_LOCAL":         {kind: opAddr, addr: func(e *Entry) netip.AddrPort { return e.DownstreamLocal }},
	"DOWNSTREAM_REMOTE":        {kind: opAddr, addr: func(e *Entry) netip.AddrPort { return e.DownstreamRemote }},
	"DOWNSTREAM_DIRECT_REMOTE": {kind: opAddr, addr: func(e *Entry) netip.AddrPort { return e.DownstreamDirect }},
}

func init() {
	for prefix, o := range addrOps {
		for suffix, part := range map[string]addrPart{"_ADDRESS": addrFull, "_ADDRESS_WITHOUT_PORT": addrNoPort, "_PORT": addrPort} {
			o.part = part
			simpleOps[prefix+suffix] = o
		}
	}
}

// strOp is the operator printing the string field f returns.
func strOp(f func(*Entry) string) op { return op{kind: opString, str: f} }

// numOp is the operator printing the integer field f returns.
func numOp(f func(*Entry) int64) op { return op{kind: opNumber, num: f} }

// peerCertificate is the downstream peer's leaf certificate, nil without one.
func peerCertificate(e *Entry) *x509.Certificate {
	if len(e.PeerCertificates) == 0 {
		return nil
	}
	return e.PeerCertificates[0]
}

// localCertificate is the downstream connection's local certificate, nil without one.
func localCertificate(e *Entry) *x509.Certificate { return e.LocalCertificate }

// parseOp compiles one command operator: name, its argument (inside the parentheses, hasArg
// when present) and the :Z truncation.
func parseOp(name, arg string, hasArg bool, maxLen int) (op, error) {
	if o, ok := simpleOps[name]; ok {
		o.maxLen = maxLen
		return o, nil
	}
	needArg := func() error {
		if !hasArg || arg == "" {
			return xdsfield.Unsupported("%"+name+"%", "needs an argument, e.g. %%%s(X)%%", name)
		}
		return nil
	}
	switch name {
	case "START_TIME":
		o := op{kind: opStartTime, maxLen: maxLen}
		if hasArg && arg != "" {
			o.tf = compileTime(arg)
		}
		return o, nil
	case "REQ", "REQUEST_HEADER", "RESP", "RESPONSE_HEADER", "TRAILER", "RESPONSE_TRAILER":
		if err := needArg(); err != nil {
			return op{}, err
		}
		main, alt, hasAlt := strings.Cut(arg, "?")
		if main == "" || hasAlt && (alt == "" || strings.Contains(alt, "?")) {
			return op{}, xdsfield.Unsupported("%"+name+"("+arg+")%", "expected X or X?Y")
		}
		o := op{kind: opReqHeader, maxLen: maxLen}
		switch name {
		case "RESP", "RESPONSE_HEADER":
			o.kind = opRespHeader
		case "TRAILER", "RESPONSE_TRAILER":
			o.kind = opTrailer
		}
		o.keys = []string{headerKey(main)}
		if hasAlt {
			o.keys = append(o.keys, headerKey(alt))
		}
		return o, nil
	case "DYNAMIC_METADATA":
		if err := needArg(); err != nil {
			return op{}, err
		}
		return op{kind: opDynamicMetadata, keys: strings.Split(arg, ":"), maxLen: maxLen}, nil
	case "GRPC_STATUS":
		o := op{kind: opGRPCStatus, maxLen: maxLen}
		switch arg {
		case "", "CAMEL_STRING":
		case "SNAKE_STRING":
			o.grpc = 1
		case "NUMBER":
			o.grpc = 2
		default:
			return op{}, xdsfield.Unsupported("%GRPC_STATUS("+arg+")%", "expected CAMEL_STRING, SNAKE_STRING or NUMBER")
		}
		return o, nil
	case "HOSTNAME":
		h, _ := os.Hostname()
		return op{kind: opConstant, value: h, maxLen: maxLen}, nil
	case "ENVIRONMENT":
		if err := needArg(); err != nil {
			return op{}, err
		}
		return op{kind: opConstant, value: os.Getenv(arg), maxLen: maxLen}, nil
	}
	return op{}, xdsfield.Unsupported("%"+name+"%", "command operator not implemented")
}

// headerKey is the lookup key of a header operator's name: pseudo-headers as given (upper
// case), others in net/http's canonical form (which Headers views look up without folding).
func headerKey(name string) string {
	if strings.HasPrefix(name, ":") {
		return strings.ToUpper(name)
	}
	return http.CanonicalHeaderKey(name)
}

// appendValue appends the operator's value for e to b, untruncated text for strings and
// numbers, a JSON text for vJSON, nothing for vMissing.
func (o *op) appendValue(b []byte, e *Entry) ([]byte, valKind) {
	start := len(b)
	b, k := o.appendRaw(b, e)
	if k == vString && len(b) == start {
		return b, vMissing // Envoy prints an empty value as a missing one
	}
	if o.maxLen > 0 && k != vNumber && len(b)-start > o.maxLen {
		b = b[:start+o.maxLen]
	}
	return b, k
}

func (o *op) appendRaw(b []byte, e *Entry) ([]byte, valKind) {
	switch o.kind {
	case opStartTime:
		if e.Start.IsZero() {
			return b, vMissing
		}
		if o.tf == nil {
			return appendDefaultTime(b, e.Start), vString
		}
		return o.tf.append(b, e.Start), vString
	case opReqHeader:
		for _, k := range o.keys {
			if v := requestHeader(e, k); v != "" {
				return append(b, v...), vString
			}
		}
		return b, vMissing
	case opRespHeader, opTrailer:
		h := e.ResponseHeaders
		if o.kind == opTrailer {
			h = e.ResponseTrailers
		}
		for _, k := range o.keys {
			if v := attributes.LendFirstValue(h, k); v != "" {
				return append(b, v...), vString
			}
		}
		return b, vMissing
	case opString:
		return appendStr(b, o.str(e))
	case opNumber:
		return appendInt(b, o.num(e)), vNumber
	case opResponseFlags:
		if e.ResponseFlags == "" {
			return append(b, '-'), vString // Envoy renders no flags as "-", also in JSON
		}
		return append(b, e.ResponseFlags...), vString
	case opUpstreamHost:
		if o.part == addrFull {
			return appendStr(b, e.UpstreamHost)
		}
		ap, err := netip.ParseAddrPort(e.UpstreamHost)
		if err != nil {
			return b, vMissing
		}
		return appendAddr(b, ap, o.part)
	case opAddr:
		return appendAddr(b, o.addr(e), o.part)
	case opURISAN, opSubject:
		c := o.cert(e)
		switch {
		case c == nil:
			return b, vMissing
		case o.kind == opSubject:
			return append(b, c.Subject.String()...), vString
		}
		return appendURIs(b, c.URIs), vString
	case opGRPCStatus:
		return appendGRPCStatus(b, e.GRPCStatus, o.grpc)
	case opDynamicMetadata:
		return appendMetadata(b, e.DynamicMetadata, o.keys)
	case opConstant:
		return appendStr(b, o.value)
	}
	return b, vMissing
}

// requestHeader returns a request header or pseudo-header of e ("" when absent), lent
// (attributes.LendFirstValue): the caller appends it to its line at once.
func requestHeader(e *Entry, k string) string {
	switch k {
	case ":METHOD":
		return e.Method
	case ":PATH":
		return e.Path
	case ":AUTHORITY":
		return e.Authority
	case ":SCHEME":
		return e.Scheme
	case ":PROTOCOL":
		return ""
	}
	if k == "Host" {
		return e.Authority
	}
	return attributes.LendFirstValue(e.RequestHeaders, k)
}

func appendStr(b []byte, s string) ([]byte, valKind) {
	if s == "" {
		return b, vMissing
	}
	return append(b, s...), vString
}

func appendAddr(b []byte, a netip.AddrPort, part addrPart) ([]byte, valKind) {
	if !a.IsValid() {
		return b, vMissing
	}
	switch part {
	case addrNoPort:
		return a.Addr().Unmap().AppendTo(b), vString
	case addrPort:
		return appendInt(b, int64(a.Port())), vNumber
	}
	ip := a.Addr().Unmap()
	if !ip.Is4() {
		return netip.AddrPortFrom(ip, a.Port()).AppendTo(b), vString
	}
	b = ip.AppendTo(b)
	return appendInt(append(b, ':'), int64(a.Port())), vString
}

// appendInt is strconv.AppendInt in base 10, faster for the small numbers of a log line
// (status codes, sizes, durations, ports).
func appendInt(b []byte, v int64) []byte {
	if v < 0 || v >= 1e9 {
		return strconv.AppendInt(b, v, 10)
	}
	if v < 10 {
		return append(b, byte('0'+v))
	}
	var tmp [9]byte
	i := len(tmp)
	for v > 0 {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, tmp[i:]...)
}

func appendURIs[U interface{ String() string }](b []byte, uris []U) []byte {
	for i, u := range uris {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, u.String()...)
	}
	return b
}

var grpcCamel = [...]string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
	"Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

var grpcSnake = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

func appendGRPCStatus(b []byte, status string, style uint8) ([]byte, valKind) {
	n, err := strconv.Atoi(status)
	if status == "" || err != nil || n < 0 {
		return b, vMissing
	}
	switch {
	case style == 2:
		return strconv.AppendInt(b, int64(n), 10), vNumber
	case n >= len(grpcCamel):
		return strconv.AppendInt(b, int64(n), 10), vString
	case style == 1:
		return append(b, grpcSnake[n]...), vString
	}
	return append(b, grpcCamel[n]...), vString
}

// appendMetadata appends the value at path (namespace, then keys) of the dynamic metadata:
// a string as is, a number or bool as its JSON text, a struct or list as JSON.
func appendMetadata(b []byte, md map[string]*structpb.Struct, path []string) ([]byte, valKind) {
	s := md[path[0]]
	if s == nil {
		return b, vMissing
	}
	if len(path) == 1 {
		return appendJSONValue(b, s.AsMap()), vJSON
	}
	v := s.GetFields()[path[1]]
	for _, k := range path[2:] {
		v = v.GetStructValue().GetFields()[k]
	}
	if v == nil {
		return b, vMissing
	}
	switch x := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return appendStr(b, x.StringValue)
	case *structpb.Value_NumberValue:
		return strconv.AppendFloat(b, x.NumberValue, 'g', -1, 64), vNumber
	case *structpb.Value_BoolValue:
		return strconv.AppendBool(b, x.BoolValue), vJSON
	case *structpb.Value_NullValue, nil:
		return b, vMissing
	}
	return appendJSONValue(b, v.AsInterface()), vJSON
}

func appendJSONValue(b []byte, v any) []byte {
	j, err := json.Marshal(v)
	if err != nil {
		return b
	}
	return append(b, j...)
}
