package listener

import (
	"fmt"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/proxy/ratelimit"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	netlrlv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/local_ratelimit/v3"
)

// typeNetworkLocalRateLimit is the type URL of envoy.filters.network.local_ratelimit.
const typeNetworkLocalRateLimit = "type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit"

// connRateLimit is a compiled envoy.filters.network.local_ratelimit: each new connection takes
// a token from the filter's bucket; a connection that finds none is closed at once and counted
// in local_rate_limit.<stat_prefix>.rate_limited, as in Envoy. The bucket lives as long as the
// compiled listener (a listener update starts it full again, as in Envoy without share_key).
type connRateLimit struct {
	bucket  *ratelimit.Bucket
	enabled bool
	st      *ratelimit.NetworkStats
}

func compileNetworkLocalRateLimit(a *anypb.Any, env Env, path string) (*connRateLimit, error) {
	var c netlrlv3.LocalRateLimit
	if err := a.UnmarshalTo(&c); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	p := path + ".typed_config"
	// share_key shares a bucket between listeners across updates, which needs process-wide
	// state strait-proxy does not keep: refused by name.
	if err := xdsfield.Check(&c, p, "stat_prefix", "token_bucket", "runtime_enabled"); err != nil {
		return nil, err
	}
	if c.GetStatPrefix() == "" {
		return nil, fmt.Errorf("%s.stat_prefix: empty", p)
	}
	if c.GetTokenBucket() == nil || c.GetTokenBucket().GetFillInterval() == nil {
		return nil, fmt.Errorf("%s.token_bucket: a token bucket with fill_interval is required", p)
	}
	tb, err := route.CompileTokenBucket(p+".token_bucket", c.GetTokenBucket())
	if err != nil {
		return nil, err
	}
	r := &connRateLimit{bucket: ratelimit.NewBucket(tb, nil), enabled: true,
		st: ratelimit.NewNetworkStats(envStats(env), c.GetStatPrefix())}
	if re := c.GetRuntimeEnabled(); re != nil {
		// No runtime layer: the flag's default value decides, as in an Envoy without the key.
		if err := xdsfield.Check(re, p+".runtime_enabled", "default_value", "runtime_key"); err != nil {
			return nil, err
		}
		r.enabled = re.GetDefaultValue() == nil || re.GetDefaultValue().GetValue()
	}
	return r, nil
}

// onConnection takes a token for the new connection; false closes it.
func (r *connRateLimit) onConnection(*connState) bool {
	if !r.enabled || r.bucket.Take() {
		return true
	}
	r.st.RateLimited.Inc()
	return false
}
