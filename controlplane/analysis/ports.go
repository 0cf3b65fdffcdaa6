package analysis

import (
	"fmt"
	"strconv"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// analyzePortNames reports (IST0118) ServiceEntry ports that set no protocol and whose name
// does not start with one ("http", "http-api", "grpc-web", ...): their protocol is detected at
// run time instead.
func analyzePortNames(c *context) {
	for _, t := range objects[*networking.ServiceEntry](c, config.ServiceEntry) {
		for i, p := range t.spec.GetPorts() {
			if p.GetProtocol() != "" || registry.ProtocolFromPortName(p.GetName()) != registry.Unsupported {
				continue
			}
			target := p.GetTargetPort()
			if target == 0 {
				target = p.GetNumber()
			}
			c.report(newMessage(PortNameIsNotUnderNamingConvention, t.obj, fmt.Sprintf("spec.ports[%d].name", i),
				p.GetName(), int(p.GetNumber()), strconv.FormatUint(uint64(target), 10)))
		}
	}
}
