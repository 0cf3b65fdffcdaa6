// Command rssprobe measures what linking a set of packages costs a Go binary that does nothing:
// its resident memory right after package initialisation (total, file-backed, anonymous) and
// the size of its executable's text and read-only data. Build tags pick the set:
//
//	go build -o /tmp/probe -tags probe_trimmed ./tools/xdstrim/rssprobe && /tmp/probe
//
// Tags: none (an empty binary), probe_protobuf (protobuf's well-known types), probe_grpc
// (gRPC and the well-known types), probe_gcp (the go-control-plane and cncf/xds packages
// strait-proxy links), probe_trimmed (proxy/xdspb, the trimmed tree), probe_cel, probe_cobra,
// probe_yaml, probe_otlp, probe_istio, probe_jose; several may be combined.
package main

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"strings"
)

func main() {
	status, err := os.Open("/proc/self/status")
	if err != nil {
		fmt.Fprintln(os.Stderr, "rssprobe:", err)
		os.Exit(1)
	}
	defer status.Close()
	kb := map[string]string{}
	s := bufio.NewScanner(status)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if ok && (k == "VmRSS" || k == "RssAnon" || k == "RssFile") {
			kb[k] = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		}
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rssprobe:", err)
		os.Exit(1)
	}
	fi, err := os.Stat(exe)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rssprobe:", err)
		os.Exit(1)
	}
	var text, rodata uint64
	if f, err := elf.Open(exe); err == nil {
		for _, sec := range f.Sections {
			switch sec.Name {
			case ".text":
				text = sec.Size
			case ".rodata", ".gopclntab", ".typelink", ".itablink", ".go.buildinfo", ".noptrdata", ".data":
				rodata += sec.Size
			}
		}
		f.Close()
	}
	fmt.Printf("rss_kb=%s file_kb=%s anon_kb=%s binary_kb=%d text_kb=%d data_kb=%d\n",
		kb["VmRSS"], kb["RssFile"], kb["RssAnon"], fi.Size()/1024, text/1024, rodata/1024)
}
