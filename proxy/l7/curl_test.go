package l7

import (
	"context"
	"encoding/pem"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCurl drives the handler with curl (a different HTTP/1.1 and HTTP/2 implementation,
// nghttp2-based): HTTP/1.1 with a chunked upload and Expect: 100-continue, h2c with prior
// knowledge, and h2 over TLS.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend")))), env, false)
	pt := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend")))), env, true)
	caFile := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(caFile, pemCert(pt.cert.Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, curl, append([]string{"-sS", "--max-time", "15"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	// HTTP/1.1, chunked body, 100-continue (curl waits for it before sending the body).
	out := run("-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue", "--data-binary", "curl body", p.url("/h1"))
	if !strings.Contains(out, `"Proto":"HTTP/1.1"`) || !strings.Contains(out, `"Body":"curl body"`) {
		t.Errorf("HTTP/1.1: %s", out)
	}
	if ri := p.nextInfo(t); ri.Protocol != "HTTP/1.1" || ri.Status != 200 {
		t.Errorf("HTTP/1.1 info %+v", ri)
	}
	// h2c with prior knowledge.
	run("--http2-prior-knowledge", p.url("/h2c"))
	if ri := p.nextInfo(t); ri.Protocol != "HTTP/2" || ri.Status != 200 {
		t.Errorf("h2c info %+v", ri)
	}
	// h2 over TLS with ALPN.
	run("--http2", "--cacert", caFile, "--resolve", "proxy.test:"+portOf(pt.addr)+":127.0.0.1", "https://proxy.test:"+portOf(pt.addr)+"/tls")
	if ri := pt.nextInfo(t); ri.Protocol != "HTTP/2" || ri.Conn.ALPN != "h2" || ri.Status != 200 {
		t.Errorf("h2/TLS info %+v", ri)
	}
}

func portOf(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
