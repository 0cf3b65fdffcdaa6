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

// The first four bytes of the well-known names, with bit 0x20 set in each byte.
const (
	w4Host = 'h' | 'o'<<8 | 's'<<16 | 't'<<24
	w4Date = 'd' | 'a'<<8 | 't'<<16 | 'e'<<24
	w4User = 'u' | 's'<<8 | 'e'<<16 | 'r'<<24
	w4Cont = 'c' | 'o'<<8 | 'n'<<16 | 't'<<24
	w4Conn = 'c' | 'o'<<8 | 'n'<<16 | 'n'<<24
	w4Acce = 'a' | 'c'<<8 | 'c'<<16 | 'e'<<24
	w4Serv = 's' | 'e'<<8 | 'r'<<16 | 'v'<<24
	w4Cach = 'c' | 'a'<<8 | 'c'<<16 | 'h'<<24
	w4Auth = 'a' | 'u'<<8 | 't'<<16 | 'h'<<24
	w4XReq = 'x' | '-'<<8 | 'r'<<16 | 'e'<<24
	w4XFor = 'x' | '-'<<8 | 'f'<<16 | 'o'<<24
	w4Upgr = 'u' | 'p'<<8 | 'g'<<16 | 'r'<<24
)

// knownField returns the well-known name that the 16 bytes w0, w1 at the start of a field
// line begin with (with its colon), or nil.
func knownField(w0, w1 uint64) *knownName {
	var k *knownName
	switch uint32(w0) | 0x20202020 {
	case w4Host:
		k = &nameHost
	case w4Date:
		k = &nameDate
	case w4User:
		k = &nameUserAgent
	case w4Cont:
		if k = &nameContentLength; !k.match(w0, w1) {
			k = &nameContentType
		}
	case w4Conn:
		k = &nameConnection
	case w4Acce:
		if k = &nameAcceptEncoding; !k.match(w0, w1) {
			k = &nameAccept
		}
	case w4Serv:
		k = &nameServer
	case w4Cach:
		k = &nameCacheControl
	case w4Auth:
		k = &nameAuthorization
	case w4XReq:
		k = &nameXRequestID
	case w4XFor:
		k = &nameXForwardedFor
	case w4Upgr:
		k = &nameUpgrade
	default:
		return nil
	}
	if !k.match(w0, w1) {
		return nil
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
