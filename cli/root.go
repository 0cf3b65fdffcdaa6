// Package cli implements the `strait` command line: apply, get, delete and the operational
// commands. Commands talk to straitd's HTTP API; none of them reads straitd's files directly.
package cli

import (
	"context"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/internal/version"
)

// DefaultAddr is straitd's default --http-listen address.
const DefaultAddr = "127.0.0.1:15014"

type globals struct {
	addr           string
	adminTokenFile string // straitd's admin token for writes; see loadAdminToken
	stdin          io.Reader
	stdout         io.Writer
	stderr         io.Writer
}

// New returns the root `strait` command. Output goes to stdout/stderr, input from stdin.
func New(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "strait",
		Short:         "Strait service mesh command line",
		Long:          "strait manages a Strait mesh: it applies Istio configuration to straitd and inspects the mesh.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Get().String(),
	}
	addr := os.Getenv("STRAIT_ADDR")
	if addr == "" {
		addr = DefaultAddr
	}
	root.PersistentFlags().StringVar(&g.addr, "straitd", addr, "straitd's HTTP `ADDRESS` (env STRAIT_ADDR)")
	root.PersistentFlags().StringVar(&g.adminTokenFile, "admin-token-file", "",
		"straitd's admin token `FILE` (<straitd --data-dir>/admin-token), required by apply, delete and run (default $"+adminTokenEnv+", else "+defaultAdminTokenFile+" if it exists)")
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newApply(g), newGet(g), newDelete(g), newProxyStatus(g), newRun(g), newUp(g), newDown(g))
	root.AddCommand(newProxyConfig(g), newExplain(g))
	root.AddCommand(newCA(g), newVersion(g), newWait(g))
	root.AddCommand(newAnalyze(g), newDescribe(g), newDashboard(g), newInstall(g), newUninstall(g))
	return root
}

// Run executes the CLI with args and returns the process exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := New(stdin, stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		io.WriteString(stderr, "error: "+err.Error()+"\n")
		return 1
	}
	return 0
}
