package cli

import (
	"context"
	"errors"
	"io"
	"os/exec"
)

// startExplicit starts the workload in explicit mode (no root): not yet.
func (w *workload) startExplicit(ctx context.Context, proxyBin string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (*exec.Cmd, error) {
	return nil, errors.New("explicit mode is not implemented yet")
}
