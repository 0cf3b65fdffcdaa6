package agent

import (
	"math/rand/v2"
	"time"
)

// renewAt returns when a certificate received at received and expiring at notAfter is renewed:
// after fraction of its remaining lifetime, moved by up to ±jitter of the part after that point
// (so 24 h, 0.5, 0.1 renews between 10.8 h and 13.2 h), r in [-1, 1] choosing where. Jitter
// spreads the renewals of proxies started together (a rollout) so they do not reach the CA at
// once. The lifetime is counted from receipt, not NotBefore, which the CA backdates.
func renewAt(received, notAfter time.Time, fraction, jitter, r float64) time.Time {
	life := notAfter.Sub(received)
	if life <= 0 {
		return received
	}
	d := float64(life)*fraction + r*jitter*float64(life)*(1-fraction)
	return received.Add(max(0, time.Duration(d)))
}

// warnAt returns when a certificate enters its expiry-warning window: the last warnFraction of
// its validity period.
func warnAt(notBefore, notAfter time.Time, warnFraction float64) time.Time {
	return notAfter.Add(-time.Duration(float64(notAfter.Sub(notBefore)) * warnFraction))
}

// capRetry caps the backoff delay before retrying a failed renewal while the certificate can
// still prove the workload for left more: the retry comes at the latest halfway through left (but
// not sooner than floor). Retries thus get denser towards the expiry instead of one RetryMax
// apart, so that a CA that was unreachable for most of a short lifetime is asked again soon after
// it returns, while the certificate still authenticates the request. left <= 0 (the certificate
// no longer serves) leaves the delay as it is.
func capRetry(delay, left, floor time.Duration) time.Duration {
	if left <= 0 {
		return delay
	}
	return min(delay, max(floor, left/2))
}

// backoff is capped exponential backoff with ±20% jitter. Not safe for concurrent use.
type backoff struct {
	initial, max time.Duration
	cur          time.Duration
}

// next returns the delay before the next retry and doubles the following one, up to max.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.initial
	}
	d := b.cur
	b.cur = min(2*b.cur, b.max)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func (b *backoff) reset() { b.cur = 0 }

// jitterSign returns a uniform value in [-1, 1).
func jitterSign() float64 { return 2*rand.Float64() - 1 }
