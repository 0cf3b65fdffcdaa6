package route

import "github.com/strait-mesh/strait/proxy/xdsfield"

// UnsupportedError reports a configuration field that strait-proxy does not implement (see
// xdsfield). Callers NACK the update that carried it.
type UnsupportedError = xdsfield.UnsupportedError
