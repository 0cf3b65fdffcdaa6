package bookstore

import "embed"

// Files holds the bookstore's mesh configuration (config/) and the traffic scenarios to apply
// (scenarios/), so that `strait up` can write them out wherever it runs.
//
//go:embed config/*.yaml scenarios/*.yaml
var Files embed.FS
