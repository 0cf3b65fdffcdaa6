package e2e

import (
	"os"
	"os/signal"
	"syscall"
)

// signalNotify relays SIGTERM and SIGINT to ch.
func signalNotify(ch chan os.Signal) { signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT) }
