package l7

import (
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/proxy/xdsfield"
)

// checkFields is xdsfield.Check with the argument order of this package's call sites.
func checkFields(path string, m proto.Message, allowed ...string) error {
	return xdsfield.Check(m, path, allowed...)
}
