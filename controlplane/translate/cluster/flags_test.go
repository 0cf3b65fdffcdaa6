package cluster

import "flag"

// update is accepted so that "go test ./controlplane/translate/... -update" (which regenerates the
// golden files of other packages) also runs here; this package has no golden files.
var _ = flag.Bool("update", false, "no golden files in this package")
