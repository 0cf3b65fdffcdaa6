//go:build probe_gcp

package main

import (
	_ "github.com/strait-mesh/strait/tools/xdstrim/gcpset"
)
