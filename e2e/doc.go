// Package e2e holds end-to-end tests that run the real binaries together: straitd serving Istio
// configuration to strait-proxy processes that carry real traffic between loopback backends.
package e2e
