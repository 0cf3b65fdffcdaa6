package accesslog

import (
	"fmt"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	accesslogv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/accesslog/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	filev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/access_loggers/file/v3"
)

// TypeFile is the type URL of Envoy's file access logger, the one access logger strait-proxy
// implements.
const TypeFile = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"

// Logger is a compiled access_log list (of an HTTP connection manager or a TCP proxy). A nil
// *Logger logs nothing. It is immutable and safe for concurrent use.
type Logger struct {
	logs []fileLog
}

type fileLog struct {
	f      *Format
	sink   *sink
	filter filter // nil: every entry
}

// Compile compiles the access_log list at field path (e.g. "http_connection_manager.access_log")
// against files. It returns nil for an empty list. Each log's filter (filter.go) decides which
// entries it writes. Anything not implemented — another logger type, a filter kind, a field of
// FileAccessLog or of its format — is an error naming the field, so that the update carrying it
// is NACKed; so is a file that cannot be opened or a CEL expression that does not compile.
func Compile(path string, als []*accesslogv3.AccessLog, files *Files) (*Logger, error) {
	if len(als) == 0 {
		return nil, nil
	}
	l := &Logger{}
	for i, al := range als {
		p := fmt.Sprintf("%s[%d]", path, i)
		if err := xdsfield.Check(al, p, "name", "typed_config", "filter"); err != nil {
			return nil, err
		}
		var flt filter
		if al.GetFilter() != nil {
			var err error
			if flt, err = compileFilter(p+".filter", al.GetFilter()); err != nil {
				return nil, err
			}
		}
		tc := al.GetTypedConfig()
		if tc.GetTypeUrl() != TypeFile {
			return nil, xdsfield.Unsupported(p+".typed_config", "access logger %q (only %s)", tc.GetTypeUrl(), TypeFile)
		}
		var fl filev3.FileAccessLog
		if err := tc.UnmarshalTo(&fl); err != nil {
			return nil, fmt.Errorf("decoding %s.typed_config: %w", p, err)
		}
		f, err := CompileFile(p+".typed_config", &fl)
		if err != nil {
			return nil, err
		}
		s, err := files.open(fl.GetPath())
		if err != nil {
			return nil, fmt.Errorf("%s.typed_config.path: %w", p, err)
		}
		l.logs = append(l.logs, fileLog{f: f, sink: s, filter: flt})
	}
	return l, nil
}

// CompileFile compiles a FileAccessLog's format (its path is not opened): log_format with
// text_format_source (inline_string or inline_bytes), text_format or json_format, and the legacy
// format and json_format fields. Without a format it is Envoy's default.
func CompileFile(path string, fl *filev3.FileAccessLog) (*Format, error) {
	if err := xdsfield.Check(fl, path, "path", "format", "json_format", "log_format"); err != nil {
		return nil, err
	}
	if fl.GetPath() == "" {
		return nil, fmt.Errorf("%s.path: empty", path)
	}
	var (
		f   *Format
		err error
	)
	switch af := fl.GetAccessLogFormat().(type) {
	case nil:
		f, err = CompileText(EnvoyDefaultFormat, false)
	case *filev3.FileAccessLog_Format:
		path += ".format"
		s := af.Format
		if s == "" {
			s = EnvoyDefaultFormat
		}
		f, err = CompileText(s, false)
	case *filev3.FileAccessLog_JsonFormat:
		path += ".json_format"
		f, err = CompileJSON(af.JsonFormat, false, false)
	case *filev3.FileAccessLog_LogFormat:
		return compileSubstitution(path+".log_format", af.LogFormat)
	default:
		return nil, xdsfield.Unsupported(path+".access_log_format", "%T", af)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// compileSubstitution compiles a SubstitutionFormatString. json_format_options is accepted:
// keys are always written sorted, which is one of the orders Envoy may write with
// sort_properties false (a protobuf Struct has no order).
func compileSubstitution(path string, sf *corev3.SubstitutionFormatString) (*Format, error) {
	if err := xdsfield.Check(sf, path, "text_format", "json_format", "text_format_source",
		"omit_empty_values", "json_format_options"); err != nil {
		return nil, err
	}
	if err := xdsfield.Check(sf.GetJsonFormatOptions(), path+".json_format_options", "sort_properties"); err != nil {
		return nil, err
	}
	omit := sf.GetOmitEmptyValues()
	var (
		f   *Format
		err error
	)
	switch x := sf.GetFormat().(type) {
	case *corev3.SubstitutionFormatString_TextFormat:
		path += ".text_format"
		f, err = CompileText(x.TextFormat, omit)
	case *corev3.SubstitutionFormatString_JsonFormat:
		path += ".json_format"
		f, err = CompileJSON(x.JsonFormat, true, omit)
	case *corev3.SubstitutionFormatString_TextFormatSource:
		path += ".text_format_source"
		switch ds := x.TextFormatSource.GetSpecifier().(type) {
		case *corev3.DataSource_InlineString:
			f, err = CompileText(ds.InlineString, omit)
		case *corev3.DataSource_InlineBytes:
			f, err = CompileText(string(ds.InlineBytes), omit)
		default:
			return nil, xdsfield.Unsupported(path, "only inline_string and inline_bytes")
		}
	default:
		return nil, xdsfield.Unsupported(path+".format", "one of text_format, json_format, text_format_source is required")
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Log formats e with each access log whose filter admits it and queues the lines for writing.
// It never blocks on the file: a line finding its file's queue full is dropped and counted.
// Nothing of e is retained.
func (l *Logger) Log(e *Entry) {
	if l == nil {
		return
	}
	for i := range l.logs {
		fl := &l.logs[i]
		if fl.filter != nil && !fl.filter(e) {
			continue
		}
		bp := scratchLines.Get().(*[]byte)
		*bp = fl.f.Append((*bp)[:0], e)
		fl.sink.add(*bp)
		if cap(*bp) <= maxScratch {
			scratchLines.Put(bp)
		}
	}
}
