package intercept

import "fmt"

// Backend is the way Install programs the kernel's netfilter.
type Backend string

// The backends.
const (
	// BackendAuto is BackendIPTables when the iptables tools (iptables-restore, -save and their
	// ip6tables twins) are on PATH or in /usr/sbin or /sbin, else BackendNFTables.
	BackendAuto Backend = "auto"
	// BackendIPTables runs iptables-restore and ip6tables-restore (Debian package iptables).
	BackendIPTables Backend = "iptables"
	// BackendNFTables programs nftables through netlink from this process: no binaries needed.
	BackendNFTables Backend = "nftables"
)

// Backends lists the accepted backend names.
var Backends = []Backend{BackendAuto, BackendIPTables, BackendNFTables}

// ParseBackend checks a backend name.
func ParseBackend(s string) (Backend, error) {
	for _, b := range Backends {
		if string(b) == s {
			return b, nil
		}
	}
	return "", fmt.Errorf("backend %q: want auto, iptables or nftables", s)
}

// SelectBackend resolves b ("" is auto) to the backend Install uses, with the reason for an
// automatic choice ("" when b was explicit). It only looks for the iptables tools; it does not
// check that nftables works.
func SelectBackend(b Backend) (Backend, string, error) {
	switch b {
	case "", BackendAuto:
		if err := IPTablesAvailable(); err != nil {
			return BackendNFTables, fmt.Sprintf("iptables tools not found (%v)", err), nil
		}
		path, _ := lookPath("iptables-restore")
		return BackendIPTables, "found " + path, nil
	case BackendIPTables, BackendNFTables:
		return b, "", nil
	}
	_, err := ParseBackend(string(b))
	return "", "", err
}
