//go:build probe_otlp

package main

import (
	_ "go.opentelemetry.io/proto/otlp/common/v1"
	_ "go.opentelemetry.io/proto/otlp/resource/v1"
	_ "go.opentelemetry.io/proto/otlp/trace/v1"
)
