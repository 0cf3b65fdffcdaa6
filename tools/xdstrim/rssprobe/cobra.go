//go:build probe_cobra

package main

import (
	_ "github.com/spf13/cobra"
)
