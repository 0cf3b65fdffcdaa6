package config

import (
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// validateDestinationRule checks a DestinationRule as Istio does.
func validateDestinationRule(fe *fieldErrs, dr *networking.DestinationRule) {
	if dr.Host == "" {
		fe.add("spec.host", "host is required")
	} else if msg := wildcardHostErr(dr.Host); msg != "" {
		fe.add("spec.host", "%s", msg)
	}
	validateTrafficPolicy(fe, "spec.trafficPolicy", dr.TrafficPolicy, true)
	names := map[string]int{}
	eachItem(fe, "spec.subsets", dr.Subsets, "subset", func(i int, p string, s *networking.Subset) {
		switch {
		case s.Name == "":
			fe.add(p+".name", "subset name is required")
		case !isDNS1123Label(s.Name):
			fe.add(p+".name", "invalid subset name %s: %s", quoteShort(s.Name), dns1123LabelMsg)
		}
		if j, dup := names[s.Name]; dup && s.Name != "" {
			fe.add(p+".name", "duplicate subset name %s (also spec.subsets[%d])", quoteShort(s.Name), j)
		} else {
			names[s.Name] = i
		}
		validateLabels(fe, p+".labels", s.Labels)
		validateTrafficPolicy(fe, p+".trafficPolicy", s.TrafficPolicy, true)
	})
	validateExportTo(fe, "spec.exportTo", dr.ExportTo)
	if dr.WorkloadSelector != nil {
		validateWorkloadSelector(fe, "spec.workloadSelector", dr.WorkloadSelector.MatchLabels)
	}
}

// validateTrafficPolicy checks a traffic policy; portLevel says whether portLevelSettings are
// allowed (they are not nested).
func validateTrafficPolicy(fe *fieldErrs, p string, tp *networking.TrafficPolicy, portLevel bool) {
	if tp == nil {
		return
	}
	validateLoadBalancer(fe, p+".loadBalancer", tp.LoadBalancer)
	validateConnectionPool(fe, p+".connectionPool", tp.ConnectionPool)
	validateOutlierDetection(fe, p+".outlierDetection", tp.OutlierDetection)
	validateClientTLS(fe, p+".tls", tp.Tls)
	if t := tp.Tunnel; t != nil {
		if t.Protocol != "" && t.Protocol != "CONNECT" && t.Protocol != "POST" {
			fe.add(p+".tunnel.protocol", "tunnel protocol %s must be CONNECT or POST", quoteShort(t.Protocol))
		}
		if t.TargetHost == "" {
			fe.add(p+".tunnel.targetHost", "targetHost is required")
		} else if !isIP(t.TargetHost) {
			if msg := fqdnErr(t.TargetHost); msg != "" {
				fe.add(p+".tunnel.targetHost", "%s", msg)
			}
		}
		validatePort(fe, p+".tunnel.targetPort", t.TargetPort)
	}
	if rb := tp.RetryBudget; rb != nil {
		if rb.Percent != nil && (rb.Percent.Value < 0 || rb.Percent.Value > 100) {
			fe.add(p+".retryBudget.percent", "percent %v must be in 0-100", rb.Percent.Value)
		}
		validateDuration(fe, p+".retryBudget.budgetInterval", rb.BudgetInterval)
	}
	if !portLevel && len(tp.PortLevelSettings) > 0 {
		fe.add(p+".portLevelSettings", "portLevelSettings cannot be nested")
	}
	ports := map[uint32]int{}
	eachItem(fe, p+".portLevelSettings", tp.PortLevelSettings, "port traffic policy", func(i int, pp string, pl *networking.TrafficPolicy_PortTrafficPolicy) {
		if pl.Port == nil {
			fe.add(pp+".port", "port is required")
		} else {
			validatePort(fe, pp+".port.number", pl.Port.Number)
			if j, dup := ports[pl.Port.Number]; dup {
				fe.add(pp+".port.number", "duplicate port %d (also %s.portLevelSettings[%d])", pl.Port.Number, p, j)
			}
			ports[pl.Port.Number] = i
		}
		validateLoadBalancer(fe, pp+".loadBalancer", pl.LoadBalancer)
		validateConnectionPool(fe, pp+".connectionPool", pl.ConnectionPool)
		validateOutlierDetection(fe, pp+".outlierDetection", pl.OutlierDetection)
		validateClientTLS(fe, pp+".tls", pl.Tls)
	})
}

// validateLoadBalancer checks load balancer settings.
func validateLoadBalancer(fe *fieldErrs, p string, lb *networking.LoadBalancerSettings) {
	if lb == nil {
		return
	}
	if ch, ok := lb.LbPolicy.(*networking.LoadBalancerSettings_ConsistentHash); ok && ch.ConsistentHash != nil {
		c := ch.ConsistentHash
		cp := p + ".consistentHash"
		switch k := c.HashKey.(type) {
		case nil:
			fe.add(cp, "one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName is required")
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
			validateHeaderName(fe, cp+".httpHeaderName", k.HttpHeaderName)
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
			if k.HttpCookie == nil || k.HttpCookie.Name == "" {
				fe.add(cp+".httpCookie.name", "cookie name is required")
			}
			if k.HttpCookie != nil && k.HttpCookie.Ttl != nil {
				if err := k.HttpCookie.Ttl.CheckValid(); err != nil || k.HttpCookie.Ttl.AsDuration() < 0 {
					fe.add(cp+".httpCookie.ttl", "ttl must be a non-negative duration")
				}
			}
		case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
			if !k.UseSourceIp {
				fe.add(cp+".useSourceIp", "useSourceIp must be true when it is the hash key")
			}
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
			if k.HttpQueryParameterName == "" {
				fe.add(cp+".httpQueryParameterName", "query parameter name must not be empty")
			}
		}
		if c.MinimumRingSize != 0 && c.HashAlgorithm != nil {
			fe.add(cp+".minimumRingSize", "minimumRingSize (deprecated) cannot be combined with ringHash or maglev")
		}
		switch a := c.HashAlgorithm.(type) {
		case *networking.LoadBalancerSettings_ConsistentHashLB_Maglev:
			if a.Maglev != nil && a.Maglev.TableSize != 0 && !isPrime(a.Maglev.TableSize) {
				fe.add(cp+".maglev.tableSize", "table size %d must be a prime number", a.Maglev.TableSize)
			}
			if a.Maglev != nil && a.Maglev.TableSize > 5000011 {
				fe.add(cp+".maglev.tableSize", "table size %d is larger than 5000011", a.Maglev.TableSize)
			}
		case *networking.LoadBalancerSettings_ConsistentHashLB_RingHash_:
			if a.RingHash != nil && a.RingHash.MinimumRingSize > 8388608 {
				fe.add(cp+".ringHash.minimumRingSize", "minimumRingSize %d is larger than 8388608", a.RingHash.MinimumRingSize)
			}
		}
		if c.MinimumRingSize > 8388608 {
			fe.add(cp+".minimumRingSize", "minimumRingSize %d is larger than 8388608", c.MinimumRingSize)
		}
	}
	validateDuration(fe, p+".warmupDurationSecs", lb.WarmupDurationSecs)
	if lb.WarmupDurationSecs != nil && lb.Warmup != nil {
		fe.add(p+".warmup", "only one of warmup and warmupDurationSecs may be set")
	}
	if w := lb.Warmup; w != nil {
		if w.Duration == nil {
			fe.add(p+".warmup.duration", "duration is required")
		}
		validateDuration(fe, p+".warmup.duration", w.Duration)
		if w.MinimumPercent != nil && (w.MinimumPercent.Value < 0 || w.MinimumPercent.Value > 100) {
			fe.add(p+".warmup.minimumPercent", "minimumPercent %v must be in 0-100", w.MinimumPercent.Value)
		}
		if w.Aggression != nil && w.Aggression.Value < 1 {
			fe.add(p+".warmup.aggression", "aggression %v must be at least 1", w.Aggression.Value)
		}
	}
	validateLocalityLB(fe, p+".localityLbSetting", lb.LocalityLbSetting)
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// validateLocalityLB checks locality load balancing: distribute and failover are exclusive,
// distribute weights add up to 100, failover from and to differ.
func validateLocalityLB(fe *fieldErrs, p string, l *networking.LocalityLoadBalancerSetting) {
	if l == nil {
		return
	}
	if len(l.Distribute) > 0 && len(l.Failover) > 0 {
		fe.add(p, "only one of distribute and failover may be set")
	}
	froms := map[string]bool{}
	eachItem(fe, p+".distribute", l.Distribute, "distribute entry", func(_ int, dp string, d *networking.LocalityLoadBalancerSetting_Distribute) {
		validateLocality(fe, dp+".from", d.From, true)
		if froms[d.From] {
			fe.add(dp+".from", "locality %s is distributed twice", quoteShort(d.From))
		}
		froms[d.From] = true
		var total uint64
		for _, to := range sortedStringKeys(d.To) {
			validateLocality(fe, dp+".to["+quoteShort(to)+"]", to, true)
			total += uint64(d.To[to])
		}
		if total != 100 {
			fe.add(dp+".to", "weights must add up to 100, not %d", total)
		}
	})
	eachItem(fe, p+".failover", l.Failover, "failover entry", func(_ int, fp string, f *networking.LocalityLoadBalancerSetting_Failover) {
		if f.From == f.To {
			fe.add(fp, "failover from and to must differ (both %s)", quoteShort(f.From))
		}
		validateLocality(fe, fp+".from", f.From, false)
		validateLocality(fe, fp+".to", f.To, false)
		if strings.Contains(f.From, "/") || strings.Contains(f.To, "/") {
			fe.add(fp, "failover applies to regions only (no \"/\")")
		}
	})
	for i, fp := range l.FailoverPriority {
		if strings.TrimSpace(fp) == "" {
			fe.add(fmt.Sprintf("%s.failoverPriority[%d]", p, i), "label must not be empty")
		}
	}
}

// validateLocality checks a "region/zone/subzone" locality; wildcards "*" are allowed only as the
// last part, when wildcards is true.
func validateLocality(fe *fieldErrs, p, loc string, wildcards bool) {
	if loc == "" || loc == "/" {
		fe.add(p, "locality must not be empty")
		return
	}
	parts := strings.Split(loc, "/")
	if len(parts) > 3 {
		fe.add(p, "locality %s has more than region/zone/subzone", quoteShort(loc))
	}
	for i, part := range parts {
		if part == "" {
			fe.add(p, "locality %s has an empty part", quoteShort(loc))
			return
		}
		if strings.Contains(part, "*") && (!wildcards || part != "*" || i != len(parts)-1) {
			fe.add(p, "locality %s: \"*\" is allowed only as the whole last part", quoteShort(loc))
			return
		}
	}
}

// validateConnectionPool checks connection pool settings: non-negative limits and durations of at
// least 1ms.
func validateConnectionPool(fe *fieldErrs, p string, cp *networking.ConnectionPoolSettings) {
	if cp == nil {
		return
	}
	if t := cp.Tcp; t != nil {
		tp := p + ".tcp"
		if t.MaxConnections < 0 {
			fe.add(tp+".maxConnections", "maxConnections %d must not be negative", t.MaxConnections)
		}
		validateDuration(fe, tp+".connectTimeout", t.ConnectTimeout)
		validateDuration(fe, tp+".maxConnectionDuration", t.MaxConnectionDuration)
		validateDurationOrZero(fe, tp+".idleTimeout", t.IdleTimeout) // 0s disables it
		if k := t.TcpKeepalive; k != nil {
			validateDuration(fe, tp+".tcpKeepalive.time", k.Time)
			validateDuration(fe, tp+".tcpKeepalive.interval", k.Interval)
		}
	}
	if h := cp.Http; h != nil {
		hp := p + ".http"
		validateNonNegative(fe, hp,
			namedInt{"http1MaxPendingRequests", h.Http1MaxPendingRequests}, namedInt{"http2MaxRequests", h.Http2MaxRequests},
			namedInt{"maxRequestsPerConnection", h.MaxRequestsPerConnection}, namedInt{"maxRetries", h.MaxRetries},
			namedInt{"maxConcurrentStreams", h.MaxConcurrentStreams})
		validateDurationOrZero(fe, hp+".idleTimeout", h.IdleTimeout) // 0s disables it
		if k := h.Http2KeepAlive; k != nil {
			validateDuration(fe, hp+".http2KeepAlive.interval", k.Interval)
			validateDuration(fe, hp+".http2KeepAlive.timeout", k.Timeout)
		}
	}
}

// validateOutlierDetection checks outlier detection settings.
func validateOutlierDetection(fe *fieldErrs, p string, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	if od.ConsecutiveErrors < 0 {
		fe.add(p+".consecutiveErrors", "consecutiveErrors %d must not be negative", od.ConsecutiveErrors)
	}
	validateDuration(fe, p+".interval", od.Interval)
	validateDuration(fe, p+".baseEjectionTime", od.BaseEjectionTime)
	if od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100 {
		fe.add(p+".maxEjectionPercent", "maxEjectionPercent %d must be in 0-100", od.MaxEjectionPercent)
	}
	if od.MinHealthPercent < 0 || od.MinHealthPercent > 100 {
		fe.add(p+".minHealthPercent", "minHealthPercent %d must be in 0-100", od.MinHealthPercent)
	}
	if od.ConsecutiveLocalOriginFailures.GetValue() > 0 && !od.SplitExternalLocalOriginErrors {
		fe.add(p+".consecutiveLocalOriginFailures", "consecutiveLocalOriginFailures needs splitExternalLocalOriginErrors: true")
	}
	for i, c := range od.OutlierDetectionHttpErrorCodes {
		if c < 100 || c > 599 {
			fe.add(fmt.Sprintf("%s.outlierDetectionHttpErrorCodes[%d]", p, i), "HTTP status %d must be in 100-599", c)
		}
	}
}

// validateClientTLS checks upstream TLS settings: MUTUAL needs a client certificate and key unless
// credentialName is set; credentialName excludes file-based certificates; ISTIO_MUTUAL takes no
// certificates.
func validateClientTLS(fe *fieldErrs, p string, t *networking.ClientTLSSettings) {
	if t == nil {
		return
	}
	files := t.ClientCertificate != "" || t.PrivateKey != "" || t.CaCertificates != "" || t.CaCrl != ""
	switch t.Mode {
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		if files || t.CredentialName != "" {
			fe.add(p, "tls mode ISTIO_MUTUAL uses Istio's certificates: clientCertificate, privateKey, caCertificates, caCrl and credentialName must not be set")
		}
	case networking.ClientTLSSettings_SIMPLE, networking.ClientTLSSettings_MUTUAL:
		if t.CredentialName != "" {
			if files {
				fe.add(p, "clientCertificate, privateKey, caCertificates and caCrl cannot be combined with credentialName")
			}
			break
		}
		if t.Mode == networking.ClientTLSSettings_MUTUAL {
			if t.ClientCertificate == "" {
				fe.add(p+".clientCertificate", "a client certificate is required for MUTUAL tls")
			}
			if t.PrivateKey == "" {
				fe.add(p+".privateKey", "a private key is required for MUTUAL tls")
			}
		}
	}
	if t.InsecureSkipVerify.GetValue() && (t.CaCertificates != "" || len(t.SubjectAltNames) > 0) {
		fe.add(p+".insecureSkipVerify", "insecureSkipVerify cannot be combined with caCertificates or subjectAltNames")
	}
	if t.Sni != "" {
		if msg := fqdnErr(t.Sni); msg != "" && !isIP(t.Sni) {
			fe.add(p+".sni", "%s", msg)
		}
	}
}
