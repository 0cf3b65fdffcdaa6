package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/internal/version"
)

// TestVersion reads a fake straitd's /version and /debug/syncz and prints istioctl's lines.
func TestVersion(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/version":
			_ = json.NewEncoder(w).Encode(version.Info{Version: "dev", Revision: "0123456789abcdef", GoVersion: "go1.x"})
		case "/debug/syncz":
			w.Write([]byte(`[{"proxy":"sidecar~10.0.0.1~a.ns~ns.svc.cluster.local","version":"dev-0123456789ab"},
				{"proxy":"sidecar~10.0.0.2~b.ns~ns.svc.cluster.local","version":"dev-0123456789ab"},
				{"proxy":"router~10.0.0.3~gw.ns~ns.svc.cluster.local"}]`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	if code := Run(t.Context(), []string{"--straitd", strings.TrimPrefix(srv.URL, "http://"), "version"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := "client version: " + version.Get().String() + "\n" +
		"control plane version: dev-0123456789ab\n" +
		"data plane version: dev-0123456789ab (2 proxies), unknown (1 proxies)\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	if code := Run(t.Context(), []string{"--straitd", "127.0.0.1:1", "version", "-o", "json"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var v meshVersions
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v.Unreachable == "" || v.Client.Version == "" {
		t.Errorf("straitd down, -o json: %v %+v", err, v)
	}
}
