//go:build !unix

package overload

func fdLimit() uint64 { return 0 }
