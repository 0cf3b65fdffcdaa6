package http1

// Well-known field names. Most field lines of real heads carry one of a few names; fastLines
// recognizes those by comparing the two words at the start of the line with the name and its
// colon, which both checks the name (its bytes are then tchars) and ends it, in place of the
// word-at-a-time token scan, and gives its framing kind without kindOf.

// knownName is a field name of at most 15 bytes followed by ':', as the two words that start
// its line: want, with bit 0x20 set (fold) at the letters' positions (either case matches)
// and other bytes exact, under mask (the bytes after the colon are not compared).
type knownName struct {
	fold, mask, want [2]uint64
	n                int // the name's length
	kind             fieldKind
	next             *knownName // the next name in its slot of knownNames
}

func (k *knownName) match(w0, w1 uint64) bool {
	return (w0|k.fold[0])&k.mask[0] == k.want[0] && (w1|k.fold[1])&k.mask[1] == k.want[1]
}

// newKnownName builds the knownName of name (lower case, 1 to 15 bytes).
func newKnownName(name string, kind fieldKind) knownName {
	k := knownName{n: len(name), kind: kind}
	s := name + ":"
	for i := 0; i < len(s); i++ {
		c, w, sh := uint64(s[i]), i/8, uint(i%8)*8
		k.mask[w] |= 0xff << sh
		k.want[w] |= c << sh
		if 'a' <= c && c <= 'z' {
			k.fold[w] |= 0x20 << sh
		}
	}
	return k
}

var (
	nameHost           = newKnownName("host", kHost)
	nameDate           = newKnownName("date", kOther)
	nameUserAgent      = newKnownName("user-agent", kOther)
	nameContentLength  = newKnownName("content-length", kContentLength)
	nameContentType    = newKnownName("content-type", kOther)
	nameConnection     = newKnownName("connection", kConnection)
	nameAcceptEncoding = newKnownName("accept-encoding", kOther)
	nameAccept         = newKnownName("accept", kOther)
	nameServer         = newKnownName("server", kOther)
	nameCacheControl   = newKnownName("cache-control", kOther)
	nameAuthorization  = newKnownName("authorization", kOther)
	nameXRequestID     = newKnownName("x-request-id", kOther)
	nameXForwardedFor  = newKnownName("x-forwarded-for", kOther)
	nameUpgrade        = newKnownName("upgrade", kUpgrade)
)

// knownNames chains the well-known names by knownSlot of their first four bytes (letters
// folded): a field line's first word finds the only names it can start with by one load, in
// place of a switch over the names' words (whose compares and jumps were several code lines
// of the request's footprint). knownMul spreads the names' words over the slots without a
// collision, so a chain is more than one name only where names share those bytes
// ("content-", "accept").
var knownNames = func() (t [1 << knownBits]*knownName) {
	for _, k := range []*knownName{&nameHost, &nameDate, &nameUserAgent, &nameContentLength,
		&nameContentType, &nameConnection, &nameAcceptEncoding, &nameAccept, &nameServer,
		&nameCacheControl, &nameAuthorization, &nameXRequestID, &nameXForwardedFor, &nameUpgrade} {
		at := &t[knownSlot(uint32(k.want[0]))]
		for *at != nil {
			at = &(*at).next
		}
		*at = k
	}
	return t
}()

const (
	knownBits = 4
	knownMul  = 0x0a57af35
)

// knownSlot is the slot in knownNames of a name whose first four bytes, with bit 0x20 set in
// each, are w.
func knownSlot(w uint32) uint32 { return w * knownMul >> (32 - knownBits) }

// knownField returns the well-known name that the 16 bytes w0, w1 at the start of a field
// line begin with (with its colon), or nil.
func knownField(w0, w1 uint64) *knownName {
	k := knownNames[knownSlot(uint32(w0)|0x20202020)]
	for k != nil && !k.match(w0, w1) {
		k = k.next
	}
	return k
}

// matchExact advances the case-insensitive match of a value against want, allowing trailing
// OWS; see valueByte.
func matchExact(vs uint8, c byte, want string) uint8 {
	n := uint8(len(want))
	switch {
	case vs < n && lower(c) == want[vs]:
		return vs + 1
	case (vs == n || vs == n+1) && isOWS(c):
		return n + 1
	}
	return 255
}
