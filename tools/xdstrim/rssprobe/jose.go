//go:build probe_jose

package main

import (
	_ "github.com/go-jose/go-jose/v4"
	_ "github.com/go-jose/go-jose/v4/cipher"
)
