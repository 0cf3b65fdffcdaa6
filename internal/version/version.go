// Package version is the build identity of Strait's binaries: straitd, strait-proxy and strait
// report the same string, read from the Go build information (module version, VCS revision).
package version

import (
	"runtime/debug"
	"sync"
)

// Info describes one build.
type Info struct {
	// Version is the module version for a released build, else "dev" (a build from a checkout).
	Version string `json:"version"`
	// Revision is the VCS commit the build was made from ("" when unknown), Modified whether the
	// work tree had uncommitted changes.
	Revision string `json:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	// GoVersion is the toolchain that built it.
	GoVersion string `json:"goVersion"`
}

var (
	once sync.Once
	info Info
)

// Get returns this binary's build information.
func Get() Info {
	once.Do(func() {
		bi, _ := debug.ReadBuildInfo()
		info = FromBuildInfo(bi)
	})
	return info
}

// FromBuildInfo is the build information of a binary whose Go build information is bi (nil when
// it has none): this binary's (Get), or another's read with debug/buildinfo, so that a tool can
// name what it builds by the version the binary itself reports.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	i := Info{Version: "dev", GoVersion: "unknown"}
	if bi == nil {
		return i
	}
	i.GoVersion = bi.GoVersion
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		i.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// String is the one-line version: "dev-1a2b3c4d5e6f" (with "-dirty" for a modified tree) for a
// build from a checkout, the module version for a release.
func (i Info) String() string {
	if i.Version != "dev" || i.Revision == "" {
		return i.Version
	}
	s := i.Version + "-" + i.Revision[:min(12, len(i.Revision))]
	if i.Modified {
		s += "-dirty"
	}
	return s
}
