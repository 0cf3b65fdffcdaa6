package listener

import (
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/strait-mesh/strait/proxy/accesslog"
)

// fileAccessLogName is the access logger's name in Envoy (wellknown.FileAccessLog).
const fileAccessLogName = "envoy.access_loggers.file"

// AccessLog is MeshConfig's access log setting, which istiod turns into a file access log on
// every HTTP connection manager and TCP proxy: accessLogFile (empty: no access log, Istio's
// default), accessLogEncoding and accessLogFormat.
type AccessLog struct {
	// File is the path ("/dev/stdout" for the proxy's standard output).
	File string
	// Encoding is TEXT or JSON.
	Encoding meshconfig.MeshConfig_AccessLogEncoding
	// Format is the custom format: a format string for TEXT (a newline is added when missing),
	// a JSON object of keys to command operators for JSON. Empty: Istio's default.
	Format string
}

// AccessLogFromMesh returns mc's access log setting.
func AccessLogFromMesh(mc *meshconfig.MeshConfig) AccessLog {
	return AccessLog{File: mc.GetAccessLogFile(), Encoding: mc.GetAccessLogEncoding(), Format: mc.GetAccessLogFormat()}
}

// Build returns the access_log list of a connection manager or TCP proxy, as istiod's
// FileAccessLogFromMeshConfig builds it; nil when File is empty. A JSON format that does not
// parse falls back to Istio's default keys, as istiod does (straitd's mesh config validation
// refuses it before it gets here).
func (a AccessLog) Build() []*accesslogv3.AccessLog {
	if a.File == "" {
		return nil
	}
	fl := &filev3.FileAccessLog{Path: a.File}
	switch a.Encoding {
	case meshconfig.MeshConfig_JSON:
		st := &structpb.Struct{}
		if a.Format == "" || protojson.Unmarshal([]byte(a.Format), st) != nil {
			st = istioJSON()
		}
		fl.AccessLogFormat = &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format:            &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: st},
			JsonFormatOptions: &corev3.JsonFormatOptions{SortProperties: false},
		}}
	default:
		f := a.Format
		if f == "" {
			f = accesslog.IstioTextFormat
		} else if !strings.HasSuffix(f, "\n") {
			f += "\n" // Istio: "a newline is added to every format (if missing)"
		}
		fl.AccessLogFormat = &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
				Specifier: &corev3.DataSource_InlineString{InlineString: f}}},
		}}
	}
	return []*accesslogv3.AccessLog{{Name: fileAccessLogName,
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(fl)}}}
}

func istioJSON() *structpb.Struct {
	st := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for k, v := range accesslog.IstioJSONFormat() {
		st.Fields[k] = structpb.NewStringValue(v)
	}
	return st
}
