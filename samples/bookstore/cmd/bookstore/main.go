// Command bookstore runs one service of Strait's demo application: web, details, reviews (v1, v2
// or v3) or ratings. See samples/bookstore/README.md.
//
//	bookstore --service reviews --version v2 --port 9080 --ratings http://ratings:9080
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/strait-mesh/strait/samples/bookstore"
)

func main() {
	o, err := bookstore.ParseArgs(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bookstore:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("service", o.Service, "version", o.Version)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bookstore.Run(ctx, o, log); err != nil {
		log.Error("exiting", "err", err)
		os.Exit(1)
	}
}
