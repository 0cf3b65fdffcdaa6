package listener

import "flag"

// update is accepted so that "go test ./controlplane/translate/... -update" also runs here; this
// package has no golden files (the top-level package's cover its output).
var _ = flag.Bool("update", false, "no golden files in this package")
