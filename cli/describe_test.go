package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/controlplane/describe"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
	"github.com/strait-mesh/strait/controlplane/xds"
	"github.com/strait-mesh/strait/internal/testenv"
)

// describeStraitd serves straitd's /debug/describe over the describe package's test mesh, with
// reviews-v1's sidecar connected, and returns its address.
func describeStraitd(t *testing.T) string {
	t.Helper()
	file := filepath.Join("..", "controlplane", "describe", "testdata", "mesh.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	snap := meshtest.Snapshot(t, "mesh.yaml", 1, nil, string(b))
	proxies := []xds.ProxyStatus{{Proxy: "sidecar~127.0.0.11~reviews-v1.default~default.svc.cluster.local",
		Types: map[string]xds.TypeStatus{"CDS": {Status: xds.Synced}, "LDS": {Status: xds.Synced}, "EDS": {Status: xds.Synced}, "RDS": {Status: xds.Synced}}}}
	mux := http.NewServeMux()
	mux.Handle(describe.Path, describe.Handler(describe.Options{
		Snapshot: func() *mesh.Snapshot { return snap },
		Proxies:  func() []xds.ProxyStatus { return proxies },
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// cliRun runs the root command with args against straitd at addr and returns stdout and the
// error.
func cliRun(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := execute(New(strings.NewReader(""), &out, &errb), append([]string{"--straitd", addr}, args...))
	return out.String(), err
}

// execute runs cmd with args (never nil, or cobra would read os.Args) within 20 seconds.
func execute(cmd *cobra.Command, args []string) error {
	cmd.SetArgs(append([]string{}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return cmd.ExecuteContext(ctx)
}

// executeQuiet runs cmd as execute does, with cobra printing neither usage nor the error, and
// what it does print (help) written to errw.
func executeQuiet(cmd *cobra.Command, errw io.Writer, args []string) error {
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetOut(errw)
	cmd.SetErr(errw)
	return execute(cmd, args)
}

// TestDescribeGolden checks the exact text of `strait describe service` and `describe
// workload`, and that -o json and yaml print straitd's report.
func TestDescribeGolden(t *testing.T) {
	addr := describeStraitd(t)
	for _, c := range []struct {
		golden string
		args   []string
	}{
		{"describe-service", []string{"describe", "service", "reviews"}},
		{"describe-workload", []string{"describe", "workload", "reviews-v1.default"}},
		{"describe-workload-v2", []string{"describe", "pod", "reviews-v2", "-n", "default"}},
		{"describe-service-yaml", []string{"describe", "svc", "ratings.default", "-o", "yaml"}},
	} {
		t.Run(c.golden, func(t *testing.T) {
			out, err := cliRun(t, addr, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, filepath.Join("testdata", c.golden+".golden"), out, *update)
		})
	}
	out, err := cliRun(t, addr, "describe", "service", "reviews", "-o", "json")
	if err != nil || !strings.Contains(out, `"hostname": "reviews.default.svc.cluster.local"`) {
		t.Errorf("-o json: %v\n%s", err, out)
	}
}

func TestDescribeErrors(t *testing.T) {
	addr := describeStraitd(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"describe", "service", "nothing"}, `no service "nothing" in namespace default`},
		{[]string{"describe", "workload", "nothing.other"}, `no workload "nothing" in namespace other`},
		{[]string{"describe", "service", "reviews", "-o", "xml"}, `unknown output format "xml"`},
		{[]string{"describe", "service"}, "accepts 1 arg(s)"},
	} {
		if _, err := cliRun(t, addr, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
	if _, err := cliRun(t, "127.0.0.1:1", "describe", "service", "reviews"); err == nil || !strings.Contains(err.Error(), "is it running?") {
		t.Errorf("no straitd: %v", err)
	}
}
