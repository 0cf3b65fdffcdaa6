//go:build probe_istio

package main

import (
	_ "istio.io/api/envoy/extensions/stats"
	_ "istio.io/api/security/v1alpha1"
)
