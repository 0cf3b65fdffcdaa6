package listener

import (
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	meshconfig "istio.io/api/mesh/v1alpha1"
)

// TestPathNormalization checks MeshConfig pathNormalization's translation, as istiod's.
func TestPathNormalization(t *testing.T) {
	type want struct {
		normalize, merge bool
		escaped          hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction
	}
	keep, unescape := hcmv3.HttpConnectionManager_KEEP_UNCHANGED, hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD
	for n, w := range map[meshconfig.MeshConfig_ProxyPathNormalization_NormalizationType]want{
		meshconfig.MeshConfig_ProxyPathNormalization_DEFAULT:                  {true, false, keep},
		meshconfig.MeshConfig_ProxyPathNormalization_BASE:                     {true, false, keep},
		meshconfig.MeshConfig_ProxyPathNormalization_NONE:                     {false, false, keep},
		meshconfig.MeshConfig_ProxyPathNormalization_MERGE_SLASHES:            {true, true, keep},
		meshconfig.MeshConfig_ProxyPathNormalization_DECODE_AND_MERGE_SLASHES: {true, true, unescape},
	} {
		var m hcmv3.HttpConnectionManager
		if err := hcm(hcmOptions{statPrefix: "x", rds: "80", pathNorm: n}).GetTypedConfig().UnmarshalTo(&m); err != nil {
			t.Fatal(err)
		}
		got := want{m.GetNormalizePath().GetValue(), m.GetMergeSlashes(), m.GetPathWithEscapedSlashesAction()}
		if got != w {
			t.Errorf("%v: %+v, want %+v", n, got, w)
		}
	}
}
