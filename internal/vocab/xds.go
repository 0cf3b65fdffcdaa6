package vocab

// xDS resource type URLs: what an ADS stream subscribes to and what its responses carry. They
// are go-control-plane's pkg/resource/v3 constants, spelled here so that strait-proxy need not
// link go-control-plane.
const (
	// APITypePrefix prefixes every xDS type URL.
	APITypePrefix = "type.googleapis.com/"

	ClusterType         = APITypePrefix + "envoy.config.cluster.v3.Cluster"
	EndpointType        = APITypePrefix + "envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerType        = APITypePrefix + "envoy.config.listener.v3.Listener"
	RouteType           = APITypePrefix + "envoy.config.route.v3.RouteConfiguration"
	VirtualHostType     = APITypePrefix + "envoy.config.route.v3.VirtualHost"
	SecretType          = APITypePrefix + "envoy.extensions.transport_sockets.tls.v3.Secret"
	ExtensionConfigType = APITypePrefix + "envoy.config.core.v3.TypedExtensionConfig"
	// ResourceType is the discovery.Resource envelope an ADS response may wrap a resource in.
	ResourceType = APITypePrefix + "envoy.service.discovery.v3.Resource"
)
