//go:build probe_yaml

package main

import (
	_ "go.yaml.in/yaml/v3"
)
