package translate

import (
	"sync/atomic"
	"unsafe"
	"weak"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate/envoyfilter"
	"github.com/strait-mesh/strait/internal/workloadtable"
)

// The generator's caches, every one owned by package buildcache with typed keys: tables carry
// output from one snapshot to the next while the fingerprint of its inputs is equal (an entry no
// proxy used for a whole snapshot is evicted), slots share output between the proxies of one
// snapshot (in mesh.Snapshot.Cache, dropped with it).

// tables are the generator's buildcache.Tables, one per key type.
type tables struct {
	owner *buildcache.Owner

	scopeClusters *buildcache.Table[scopeSetKey, uint64, *outboundSet]       // per share key, on ConfigHash
	clusterSets   *buildcache.Table[setKey, struct{}, *outboundSet]          // per list of entries
	clusters      *buildcache.Table[clusterKey, clusterPrint, *clusterEntry] // per service port
	loadAssigns   *buildcache.Table[claKey, claPrint, *endpointv3.ClusterLoadAssignment]
	edsLists      *buildcache.Table[edsListKey, uint64, []types.Resource]
	sidecarOut    *buildcache.Table[shareKey, uint64, *sidecarOutbound]
	inboundParts  *buildcache.Table[inboundPartKey, uint64, *localList]
	specials      *buildcache.Table[bool, uint64, []types.Resource] // special clusters, by explicit
	proxyLists    *buildcache.Table[localKey, struct{}, *localList]
	listenerParts *buildcache.Table[listenerTableKey, uint64, *listenerTable]
	routeParts    *buildcache.Table[partsTableKey, struct{}, *partsTable]
	vhdsSplits    *buildcache.Table[vhdsKey, struct{}, *vhdsSplit]
	vhdsLists     *buildcache.Table[vhdsListKey, struct{}, *vhdsList]
	efResources   *buildcache.Table[efResourceKey, struct{}, *efResult]
	efAdded       *buildcache.Table[efAddedKey, struct{}, *efAdded]
	rlListeners   *buildcache.Table[rlListenerKey, bool, *rlResult]
	rlRoutes      *buildcache.Table[rlRouteKey, struct{}, *routev3.RouteConfiguration]
	rlClusters    *buildcache.Table[rlClusterKey, struct{}, *rlCluster]
	credentials   *buildcache.Table[credentialKey, uint64, *credentialBuild]
	nameTables    *buildcache.Table[nameTableKey, nameTablePrint, *nameTableResult]
	workloadTable *buildcache.Table[struct{}, uint64, *workloadTableResult]
	onDemand      *buildcache.Table[onDemandKey, struct{}, *onDemandOutput]
	vhostIndexes  *buildcache.Table[listHashKey, struct{}, *vhostIndexEntry]
	listenerRefs  *buildcache.Table[listHashKey, struct{}, *listenerRefsEntry]

	// serials number the objects that list keys are made of (see serial).
	serials    *buildcache.Weak[objectHandle, uint64]
	lastSerial atomic.Uint64
}

// objectHandle names a live object by a weak handle to it: the runtime never gives it to
// another object, even one allocated at the same address after the first was collected.
type objectHandle struct{ p weak.Pointer[byte] }

// serial returns the serial number of the object at p: the same while the object lives, and a
// new one for every other object. Lists of shared objects (a scope's clusters, a proxy's
// virtual hosts) are keyed by a hash of their items' serials, never by their addresses.
func (t *tables) serial(p unsafe.Pointer) uint64 {
	h := objectHandle{weak.Make((*byte)(p))}
	if n, ok := t.serials.Load(h); ok {
		return n
	}
	return t.serials.LoadOrStore(h, t.lastSerial.Add(1))
}

func newTables(o *buildcache.Owner) *tables {
	return &tables{
		owner:         o,
		scopeClusters: buildcache.NewTable[scopeSetKey, uint64, *outboundSet](o, "translate-scope-clusters"),
		clusterSets:   buildcache.NewTable[setKey, struct{}, *outboundSet](o, "translate-cluster-sets"),
		clusters:      buildcache.NewTable[clusterKey, clusterPrint, *clusterEntry](o, "translate-clusters"),
		loadAssigns:   buildcache.NewTable[claKey, claPrint, *endpointv3.ClusterLoadAssignment](o, "translate-load-assignments"),
		edsLists:      buildcache.NewTable[edsListKey, uint64, []types.Resource](o, "translate-load-assignment-lists"),
		sidecarOut:    buildcache.NewTable[shareKey, uint64, *sidecarOutbound](o, "translate-sidecar-outbound"),
		inboundParts:  buildcache.NewTable[inboundPartKey, uint64, *localList](o, "translate-inbound-parts"),
		specials:      buildcache.NewTable[bool, uint64, []types.Resource](o, "translate-special-clusters"),
		proxyLists:    buildcache.NewTable[localKey, struct{}, *localList](o, "translate-proxy-lists"),
		listenerParts: buildcache.NewTable[listenerTableKey, uint64, *listenerTable](o, "translate-listener-parts"),
		routeParts:    buildcache.NewTable[partsTableKey, struct{}, *partsTable](o, "translate-route-parts"),
		vhdsSplits:    buildcache.NewTable[vhdsKey, struct{}, *vhdsSplit](o, "translate-vhds-splits"),
		vhdsLists:     buildcache.NewTable[vhdsListKey, struct{}, *vhdsList](o, "translate-vhds-lists"),
		efResources:   buildcache.NewTable[efResourceKey, struct{}, *efResult](o, "translate-envoyfilter-resources"),
		efAdded:       buildcache.NewTable[efAddedKey, struct{}, *efAdded](o, "translate-envoyfilter-added"),
		rlListeners:   buildcache.NewTable[rlListenerKey, bool, *rlResult](o, "translate-ratelimit-listeners"),
		rlRoutes:      buildcache.NewTable[rlRouteKey, struct{}, *routev3.RouteConfiguration](o, "translate-ratelimit-routes"),
		rlClusters:    buildcache.NewTable[rlClusterKey, struct{}, *rlCluster](o, "translate-ratelimit-clusters"),
		credentials:   buildcache.NewTable[credentialKey, uint64, *credentialBuild](o, "translate-credentials"),
		nameTables:    buildcache.NewTable[nameTableKey, nameTablePrint, *nameTableResult](o, "translate-name-tables"),
		workloadTable: buildcache.NewTable[struct{}, uint64, *workloadTableResult](o, "translate-workload-table"),
		onDemand:      buildcache.NewTable[onDemandKey, struct{}, *onDemandOutput](o, "translate-on-demand"),
		vhostIndexes:  buildcache.NewTable[listHashKey, struct{}, *vhostIndexEntry](o, "translate-vhost-indexes"),
		listenerRefs:  buildcache.NewTable[listHashKey, struct{}, *listenerRefsEntry](o, "translate-listener-refs"),
		serials: buildcache.NewWeak(o, "translate-object-serials", func(h objectHandle, _ uint64) bool {
			return h.p.Value() != nil
		}),
	}
}

// listHashKey identifies a list of resources by a hash of its items' serials (tables.serial)
// and its length; the entry holds the list, which the caller compares item by item (a hash
// collision is not shared).
type listHashKey struct {
	hash uint64
	n    int
}

// The generator's slots: values shared by the proxies of one snapshot.
var (
	scopeClustersSlot      = buildcache.NewSlot[shareKey, *outboundSet]("translate-scope-clusters")
	identitiesSlot         = buildcache.NewSlot[mesh.ServiceKey, uint64]("translate-endpoint-identities")
	edsListSlot            = buildcache.NewSlot[edsListKey, []types.Resource]("translate-load-assignment-lists")
	scopeMeshSlot          = buildcache.NewSlot[string, *meshconfig.MeshConfig]("translate-scope-mesh")
	sourceLabelsSlot       = buildcache.NewSlot[string, bool]("translate-scope-source-labels")
	sidecarOutSlot         = buildcache.NewSlot[shareKey, *sidecarOutbound]("translate-sidecar-outbound")
	proxyListsSlot         = buildcache.NewSlot[localKey, *localList]("translate-proxy-lists")
	authzSlot              = buildcache.NewSlot[authzKey, *authzResult]("translate-authorization")
	proxylessSlot          = buildcache.NewSlot[shareKey, *proxylessOut]("translate-proxyless")
	telemetrySlot          = buildcache.NewSlot[telemetryKey, *telemetryResult]("translate-telemetry")
	efSelectSlot           = buildcache.NewSlot[efSelectKey, *envoyfilter.Set]("translate-envoyfilter-select")
	rlSelectSlot           = buildcache.NewSlot[rlSelectKey, []*config.Object]("translate-ratelimit-select")
	secretIndexSlot        = buildcache.NewSlot[struct{}, map[[2]string]*config.Object]("translate-secret-index")
	nameTableSlot          = buildcache.NewSlot[nameTableKey, *nameTableResult]("translate-name-tables")
	workloadTableSlot      = buildcache.NewSlot[struct{}, *workloadTableResult]("translate-workload-table")
	ecdsListSlot           = buildcache.NewSlot[ecdsListKey, *localList]("translate-ecds-lists")
	connectedWorkloadsSlot = buildcache.NewSlot[struct{}, []workloadtable.Workload]("translate-connected-workloads")
)
