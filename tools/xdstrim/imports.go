package main

// The go-control-plane and cncf/xds packages whose descriptors xdstrim trims.
import _ "github.com/strait-mesh/strait/tools/xdstrim/gcpset"
