//go:build probe_cel

package main

import (
	_ "github.com/google/cel-go/cel"
)
