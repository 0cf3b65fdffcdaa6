package version

import "testing"

func TestString(t *testing.T) {
	for _, c := range []struct {
		in   Info
		want string
	}{
		{Info{Version: "v1.2.3", Revision: "abc"}, "v1.2.3"},
		{Info{Version: "dev"}, "dev"},
		{Info{Version: "dev", Revision: "0123456789abcdef0123"}, "dev-0123456789ab"},
		{Info{Version: "dev", Revision: "0123", Modified: true}, "dev-0123-dirty"},
	} {
		if got := c.in.String(); got != c.want {
			t.Errorf("%+v.String() = %q, want %q", c.in, got, c.want)
		}
	}
	if Get().GoVersion == "" || Get().String() == "" {
		t.Errorf("Get() = %+v: empty", Get())
	}
}
