// Command strait is Strait's command line: apply, get and delete configuration, and inspect the mesh.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/strait-mesh/strait/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
