//go:build probe_trimmed

package main

import (
	_ "github.com/strait-mesh/strait/proxy/xdspb/all"
)
