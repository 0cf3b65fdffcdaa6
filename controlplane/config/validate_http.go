package config

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/internal/vocab"
)

// validateRedirect checks an HTTP redirect.
func validateRedirect(fe *fieldErrs, p string, r *networking.HTTPRedirect) {
	if r.Uri == "" && r.Authority == "" && r.Scheme == "" && r.RedirectPort == nil && r.PrefixRewrite == "" && r.RedirectCode == 0 {
		fe.add(p, "redirect must set at least one of uri, authority, scheme, port or redirectCode")
	}
	if r.Uri != "" && r.PrefixRewrite != "" {
		fe.add(p, "only one of uri and prefixRewrite may be set")
	}
	switch r.RedirectCode {
	case 0, 301, 302, 303, 307, 308:
	default:
		fe.add(p+".redirectCode", "redirect code %d is not supported (want 301, 302, 303, 307 or 308)", r.RedirectCode)
	}
	if port, ok := r.RedirectPort.(*networking.HTTPRedirect_Port); ok {
		validatePort(fe, p+".port", port.Port)
	}
	if r.Authority != "" {
		validateAuthority(fe, p+".authority", r.Authority)
	}
}

// validateAuthority checks a host[:port] authority used in redirects and rewrites.
func validateAuthority(fe *fieldErrs, p, a string) {
	if strings.ContainsAny(a, " \t\r\n/") {
		fe.add(p, "invalid authority %s", quoteShort(a))
	}
}

// maxDirectResponseBody is the largest inline body Istio accepts (Envoy's default limit is 4 KiB
// per file; Istio allows up to 1 MiB).
const maxDirectResponseBody = 1 << 20

// validateDirectResponse checks a direct response.
func validateDirectResponse(fe *fieldErrs, p string, d *networking.HTTPDirectResponse) {
	if d.Status < 200 || d.Status > 599 {
		fe.add(p+".status", "status %d must be in 200-599", d.Status)
	}
	if d.Body != nil {
		size := 0
		switch b := d.Body.Specifier.(type) {
		case *networking.HTTPBody_String_:
			size = len(b.String_)
		case *networking.HTTPBody_Bytes:
			size = len(b.Bytes)
		}
		if size > maxDirectResponseBody {
			fe.add(p+".body", "body is %d bytes, more than the limit of %d", size, maxDirectResponseBody)
		}
	}
}

// validateRewrite checks a rewrite: uri and uriRegexRewrite are exclusive.
func validateRewrite(fe *fieldErrs, p string, r *networking.HTTPRewrite) {
	if r.Uri == "" && r.Authority == "" && r.UriRegexRewrite == nil {
		fe.add(p, "rewrite must set at least one of uri, authority or uriRegexRewrite")
	}
	if r.Uri != "" && r.UriRegexRewrite != nil {
		fe.add(p, "only one of uri and uriRegexRewrite may be set")
	}
	if r.UriRegexRewrite != nil {
		if r.UriRegexRewrite.Match == "" {
			fe.add(p+".uriRegexRewrite.match", "match regex is required")
		} else {
			validateRegex(fe, p+".uriRegexRewrite.match", r.UriRegexRewrite.Match)
		}
	}
	if r.Authority != "" {
		validateAuthority(fe, p+".authority", r.Authority)
	}
}

// validateRetries checks a retry policy.
func validateRetries(fe *fieldErrs, p string, r *networking.HTTPRetry) {
	if r.Attempts < 0 {
		fe.add(p+".attempts", "attempts %d must not be negative", r.Attempts)
	}
	validateDuration(fe, p+".perTryTimeout", r.PerTryTimeout)
	validateDuration(fe, p+".backoff", r.Backoff)
	if r.RetryOn != "" {
		for _, pol := range strings.Split(r.RetryOn, ",") {
			pol = strings.TrimSpace(pol)
			if _, ok := vocab.LookupRetryCondition(pol); ok {
				continue
			}
			if code, err := strconv.Atoi(pol); err == nil && http.StatusText(code) != "" {
				continue // a status code for retriable-status-codes (Istio: one net/http knows)
			}
			fe.add(p+".retryOn", "unknown retry condition %s", quoteShort(pol))
		}
	}
}

// validateFault checks fault injection.
func validateFault(fe *fieldErrs, p string, f *networking.HTTPFaultInjection) {
	if f.Delay == nil && f.Abort == nil {
		fe.add(p, "fault must set delay or abort")
	}
	if d := f.Delay; d != nil {
		dp := p + ".delay"
		validatePercent(fe, dp+".percentage", d.Percentage)
		if d.Percent < 0 || d.Percent > 100 {
			fe.add(dp+".percent", "percent %d must be in 0-100", d.Percent)
		}
		switch t := d.HttpDelayType.(type) {
		case nil:
			fe.add(dp, "fixedDelay is required")
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			if t.FixedDelay == nil {
				fe.add(dp+".fixedDelay", "fixedDelay is required")
			}
			validateDuration(fe, dp+".fixedDelay", t.FixedDelay)
		case *networking.HTTPFaultInjection_Delay_ExponentialDelay:
			fe.add(dp+".exponentialDelay", "exponentialDelay is not supported")
		}
	}
	if a := f.Abort; a != nil {
		ap := p + ".abort"
		validatePercent(fe, ap+".percentage", a.Percentage)
		switch t := a.ErrorType.(type) {
		case nil:
			fe.add(ap, "one of httpStatus or grpcStatus is required")
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			if t.HttpStatus < 200 || t.HttpStatus > 599 {
				fe.add(ap+".httpStatus", "HTTP status %d must be in 200-599", t.HttpStatus)
			}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			if _, ok := vocab.GRPCStatus(t.GrpcStatus); !ok {
				fe.add(ap+".grpcStatus", "invalid gRPC status %s (want a code name like UNAVAILABLE)", quoteShort(t.GrpcStatus))
			}
		case *networking.HTTPFaultInjection_Abort_Http2Error:
			fe.add(ap+".http2Error", "http2Error is not supported")
		}
	}
}

// validateMirrors checks mirror, mirrorPercent, mirrorPercentage and mirrors.
func validateMirrors(fe *fieldErrs, p string, r *networking.HTTPRoute) {
	if r.Mirror != nil && len(r.Mirrors) > 0 {
		fe.add(p+".mirrors", "only one of mirror and mirrors may be set")
	}
	if r.Mirror != nil {
		validateDestination(fe, p+".mirror", r.Mirror)
	}
	if r.MirrorPercent != nil && r.MirrorPercent.Value > 100 {
		fe.add(p+".mirrorPercent", "mirrorPercent %d must be in 0-100", r.MirrorPercent.Value)
	}
	if r.MirrorPercent != nil && r.MirrorPercentage != nil {
		fe.add(p+".mirrorPercent", "only one of mirrorPercent and mirrorPercentage may be set")
	}
	validatePercent(fe, p+".mirrorPercentage", r.MirrorPercentage)
	eachItem(fe, p+".mirrors", r.Mirrors, "mirror", func(_ int, mp string, m *networking.HTTPMirrorPolicy) {
		validateDestination(fe, mp+".destination", m.Destination)
		validatePercent(fe, mp+".percentage", m.Percentage)
	})
}

// corsMethods are the methods accepted in corsPolicy.allowMethods.
var corsMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true,
	"OPTIONS": true, "TRACE": true, "CONNECT": true, "*": true,
}

// validateCors checks a CORS policy.
func validateCors(fe *fieldErrs, p string, c *networking.CorsPolicy) {
	if len(c.AllowOrigin) > 0 && len(c.AllowOrigins) > 0 {
		fe.add(p+".allowOrigin", "only one of allowOrigin (deprecated) and allowOrigins may be set")
	}
	eachItem(fe, p+".allowOrigins", c.AllowOrigins, "origin", func(_ int, op string, o *networking.StringMatch) {
		validateStringMatch(fe, op, o)
	})
	for i, m := range c.AllowMethods {
		if !corsMethods[m] {
			fe.add(fmt.Sprintf("%s.allowMethods[%d]", p, i), "%s is not an HTTP method", quoteShort(m))
		}
	}
	for i, h := range c.AllowHeaders {
		if h != "*" {
			validateHeaderName(fe, fmt.Sprintf("%s.allowHeaders[%d]", p, i), h)
		}
	}
	for i, h := range c.ExposeHeaders {
		if h != "*" {
			validateHeaderName(fe, fmt.Sprintf("%s.exposeHeaders[%d]", p, i), h)
		}
	}
	if c.MaxAge != nil {
		if err := c.MaxAge.CheckValid(); err != nil || c.MaxAge.Seconds < 0 {
			fe.add(p+".maxAge", "maxAge must be a non-negative duration")
		} else if c.MaxAge.Nanos != 0 {
			fe.add(p+".maxAge", "maxAge has only second precision")
		}
	}
}

// validateHeaders checks header operations: valid names, and no pseudo-headers or Host removal.
func validateHeaders(fe *fieldErrs, p string, h *networking.Headers) {
	if h == nil {
		return
	}
	for _, op := range []struct {
		name string
		ops  *networking.Headers_HeaderOperations
	}{{"request", h.Request}, {"response", h.Response}} {
		if op.ops == nil {
			continue
		}
		base := p + "." + op.name
		for _, kind := range []struct {
			name string
			m    map[string]string
		}{{"set", op.ops.Set}, {"add", op.ops.Add}} {
			for _, k := range sortedStringKeys(kind.m) {
				hp := base + "." + kind.name + "[" + strconv.Quote(k) + "]"
				validateHeaderName(fe, hp, k)
				if strings.HasPrefix(k, ":") {
					fe.add(hp, "pseudo-header %s cannot be modified", quoteShort(k))
				}
			}
		}
		for i, k := range op.ops.Remove {
			hp := fmt.Sprintf("%s.remove[%d]", base, i)
			validateHeaderName(fe, hp, k)
			if strings.HasPrefix(k, ":") || strings.EqualFold(k, "host") {
				fe.add(hp, "header %s cannot be removed", quoteShort(k))
			}
		}
	}
}
