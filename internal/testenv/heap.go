package testenv

import "runtime"

// HeapAfterGC returns the bytes of live heap objects after two collections (the second frees
// what the first's finalizers and cleanups released), for tests that memory does not grow.
func HeapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
