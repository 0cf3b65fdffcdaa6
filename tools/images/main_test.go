package main

import (
	"context"
	"debug/buildinfo"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestRunRefusesBadArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "one of -registry or -oci-layout"},
		{[]string{"-registry", "r", "-oci-layout", "d"}, "one of -registry or -oci-layout"},
		{[]string{"-registry", "r", "extra"}, "unexpected arguments"},
		{[]string{"-registry", "r", "-ca-certificates", "/nonexistent/ca.pem"}, "-ca-certificates"},
	} {
		if err := run(context.Background(), c.args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("run(%q) = %v, want an error with %q", c.args, err, c.want)
		}
	}
	if _, err := crossCompile(context.Background(), t.TempDir(), "straitd", "amd64"); err == nil || !strings.Contains(err.Error(), "want OS/ARCH") {
		t.Errorf("platform without OS: %v", err)
	}
}

func TestCreationTime(t *testing.T) {
	bi := &buildinfo.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.time", Value: "2026-05-04T03:02:01Z"}}}
	t.Setenv("SOURCE_DATE_EPOCH", "")
	if got, err := creationTime(bi); err != nil || !got.Equal(time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC)) {
		t.Errorf("vcs.time: %v, %v", got, err)
	}
	if got, err := creationTime(&buildinfo.BuildInfo{}); err != nil || !got.IsZero() {
		t.Errorf("nothing stamped: %v, %v", got, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if got, err := creationTime(bi); err != nil || got.Unix() != 1700000000 {
		t.Errorf("SOURCE_DATE_EPOCH: %v, %v", got, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err := creationTime(bi); err == nil {
		t.Error("a bad SOURCE_DATE_EPOCH: no error")
	}
}
