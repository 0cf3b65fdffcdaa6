// Package accesslog implements Envoy's file access logger (envoy.access_loggers.file) for
// strait-proxy: the substitution format (Envoy's command operators, text and JSON), compiled once
// per configuration into a slice of operators, and a writer per file that takes formatted lines
// off the request path through a bounded queue.
//
// The HTTP connection manager (package l7) and the TCP proxy (package l4) compile their
// access_log lists with Compile and call Logger.Log once per finished request or connection with
// an Entry describing it. Log formats the line synchronously into a pooled buffer (no maps, no
// fmt) and hands it to the file's writer goroutine; when that queue is full the line is dropped
// and counted (filesystem.write_dropped), never waited for.
package accesslog

import "github.com/strait-mesh/strait/proxy/attributes"

// Entry is what one access log line is made of: a finished HTTP request or TCP connection. The
// caller fills it and passes it to Logger.Log, which does not retain it (nor its headers) after
// returning. It is attributes.Record, so that an access log filter's CEL expression sees the same
// values the line prints.
type Entry = attributes.Record
