// Package buildcache owns every cache of built control-plane output: what translation builds and
// the xDS server marshals, kept so that output whose inputs did not change is neither rebuilt nor
// re-marshaled (issue 13, item 4).
//
// Two lifetimes, two types, and every key typed (a Go type parameter per cache, never an
// any-keyed map, never an object's address):
//
//   - Table: output carried from one snapshot to the next, owned by an Owner (one per control
//     plane process, shared by the generator and the xDS server). An entry is found by its key
//     (what it is: a service port's clusters, a scope's listeners) and is valid while the
//     fingerprint of its inputs (content hashes, see mesh.Snapshot.ConfigHash and friends) is
//     equal. Entries belong to generations: Owner.Advance starts a new one when a newer
//     snapshot is translated, and an entry nobody used in the current or the previous
//     generation is evicted. Every connected proxy is regenerated for each snapshot, so that is
//     exactly "no live snapshot or proxy needs it", and memory is bounded by two generations'
//     output whatever the number of changes.
//   - Slot and Store: values shared by the proxies of one snapshot (a Sidecar scope's index, the
//     outbound clusters of a scope). The Store hangs off the snapshot (mesh.Snapshot.Cache) and
//     dies with it; a Slot names one typed map in every Store. Carrying such a value over to the
//     next snapshot goes through a Table and the snapshot's change set (mesh.ChangeSet), never
//     through the Store.
//
// Every Table and Slot counts its hits, misses, entries and evictions; an Owner is a
// prometheus.Collector of them (strait_build_cache_reads_total{cache,type},
// strait_build_cache_size{cache}, strait_build_cache_evictions_total{cache}: istiod's
// pilot_xds_cache_* in Strait's name, one series per cache).
package buildcache
