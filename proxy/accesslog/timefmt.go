package accesslog

import (
	"strconv"
	"sync/atomic"
	"time"
)

// defaultTimeSecond caches the text of the second most recently printed by appendDefaultTime:
// requests logged in the same second (nearly all, under load) print it without computing the
// calendar date again, as Envoy's formatter caches it.
var defaultTimeSecond atomic.Pointer[secondText]

// secondText is "2016-04-15T20:17:00" for the Unix second sec.
type secondText struct {
	sec  int64
	text [19]byte
}

// appendDefaultTime appends Envoy's default %START_TIME%: "2016-04-15T20:17:00.310Z" (UTC,
// milliseconds), without time.Format's layout interpretation.
func appendDefaultTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	sec := t.Unix()
	c := defaultTimeSecond.Load()
	if c == nil || c.sec != sec {
		if y := t.Year(); y < 0 || y > 9999 { // not 19 bytes: not cached
			return appendMillis(appendSecond(b, t), t)
		}
		c = &secondText{sec: sec}
		appendSecond(c.text[:0], t)
		defaultTimeSecond.Store(c)
	}
	return appendMillis(append(b, c.text[:]...), t)
}

// appendSecond appends t (in UTC) as "2016-04-15T20:17:00".
func appendSecond(b []byte, t time.Time) []byte {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	b = pad(b, y, 4)
	b = append(b, '-')
	b = pad(b, int(mo), 2)
	b = append(b, '-')
	b = pad(b, d, 2)
	b = append(b, 'T')
	b = pad(b, h, 2)
	b = append(b, ':')
	b = pad(b, mi, 2)
	b = append(b, ':')
	return pad(b, s, 2)
}

// appendMillis appends t's milliseconds and the zone, ".310Z".
func appendMillis(b []byte, t time.Time) []byte {
	ms := t.Nanosecond() / 1e6
	return append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// pad appends n with at least width digits, zero-padded.
func pad(b []byte, n, width int) []byte {
	var tmp [20]byte
	d := strconv.AppendInt(tmp[:0], int64(n), 10)
	for i := len(d); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, d...)
}

// timeFormat is a compiled strftime-like %START_TIME(...)% format: the specifiers of C++'s
// put_time that Envoy documents, plus Envoy's %s, %f, %[1-9]f and absl's %E<n>S / %E*S.
// Times are printed in UTC, as Envoy prints them.
type timeFormat struct {
	parts []tpart
}

type tpart struct {
	spec byte   // 0: literal
	lit  string // literal text
	n    int    // digits of %Nf and %ENS
}

// compileTime compiles a START_TIME format. Unknown specifiers are printed as written.
func compileTime(f string) *timeFormat {
	tf := &timeFormat{}
	lit := []byte{}
	flush := func() {
		if len(lit) > 0 {
			tf.parts = append(tf.parts, tpart{lit: string(lit)})
			lit = lit[:0]
		}
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '%' || i+1 >= len(f) {
			lit = append(lit, c)
			continue
		}
		i++
		c = f[i]
		switch {
		case c == '%':
			lit = append(lit, '%')
		case c == 'n':
			lit = append(lit, '\n')
		case c == 't':
			lit = append(lit, '\t')
		case c >= '1' && c <= '9' && i+1 < len(f) && f[i+1] == 'f':
			flush()
			tf.parts = append(tf.parts, tpart{spec: 'f', n: int(c - '0')})
			i++
		case c == 'E' && i+2 < len(f) && f[i+2] == 'S' && (f[i+1] == '*' || f[i+1] >= '0' && f[i+1] <= '9'):
			flush()
			n := 9
			if f[i+1] != '*' {
				n = int(f[i+1] - '0')
			}
			tf.parts = append(tf.parts, tpart{spec: 'E', n: n})
			i += 2
		case c == 'T':
			flush()
			tf.parts = append(tf.parts, tpart{spec: 'H'}, tpart{lit: ":"}, tpart{spec: 'M'}, tpart{lit: ":"}, tpart{spec: 'S'})
		case c == 'F':
			flush()
			tf.parts = append(tf.parts, tpart{spec: 'Y'}, tpart{lit: "-"}, tpart{spec: 'm'}, tpart{lit: "-"}, tpart{spec: 'd'})
		case c == 'D':
			flush()
			tf.parts = append(tf.parts, tpart{spec: 'm'}, tpart{lit: "/"}, tpart{spec: 'd'}, tpart{lit: "/"}, tpart{spec: 'y'})
		case c == 'R':
			flush()
			tf.parts = append(tf.parts, tpart{spec: 'H'}, tpart{lit: ":"}, tpart{spec: 'M'})
		case c == 'f':
			flush()
			tf.parts = append(tf.parts, tpart{spec: 'f', n: 9})
		case isTimeSpec(c):
			flush()
			tf.parts = append(tf.parts, tpart{spec: c})
		default:
			lit = append(lit, '%', c)
		}
	}
	flush()
	return tf
}

func isTimeSpec(c byte) bool {
	switch c {
	case 'Y', 'm', 'd', 'H', 'M', 'S', 'y', 'j', 'e', 'a', 'A', 'b', 'h', 'B', 'p', 'z', 'Z', 's', 'I', 'u', 'w':
		return true
	}
	return false
}

func (tf *timeFormat) append(b []byte, t time.Time) []byte {
	t = t.UTC()
	for _, p := range tf.parts {
		switch p.spec {
		case 0:
			b = append(b, p.lit...)
		case 'Y':
			b = pad(b, t.Year(), 4)
		case 'm':
			b = pad(b, int(t.Month()), 2)
		case 'd':
			b = pad(b, t.Day(), 2)
		case 'e':
			if t.Day() < 10 {
				b = append(b, ' ')
			}
			b = strconv.AppendInt(b, int64(t.Day()), 10)
		case 'H':
			b = pad(b, t.Hour(), 2)
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			b = pad(b, h, 2)
		case 'M':
			b = pad(b, t.Minute(), 2)
		case 'S':
			b = pad(b, t.Second(), 2)
		case 'y':
			b = pad(b, t.Year()%100, 2)
		case 'j':
			b = pad(b, t.YearDay(), 3)
		case 'a':
			b = append(b, t.Weekday().String()[:3]...)
		case 'A':
			b = append(b, t.Weekday().String()...)
		case 'u':
			wd := int(t.Weekday())
			if wd == 0 {
				wd = 7
			}
			b = strconv.AppendInt(b, int64(wd), 10)
		case 'w':
			b = strconv.AppendInt(b, int64(t.Weekday()), 10)
		case 'b', 'h':
			b = append(b, t.Month().String()[:3]...)
		case 'B':
			b = append(b, t.Month().String()...)
		case 'p':
			if t.Hour() < 12 {
				b = append(b, "AM"...)
			} else {
				b = append(b, "PM"...)
			}
		case 'z':
			b = append(b, "+0000"...)
		case 'Z':
			b = append(b, "UTC"...)
		case 's':
			b = strconv.AppendInt(b, t.Unix(), 10)
		case 'f':
			b = appendFraction(b, t.Nanosecond(), p.n)
		case 'E':
			b = pad(b, t.Second(), 2)
			if p.n > 0 {
				b = append(b, '.')
				b = appendFraction(b, t.Nanosecond(), p.n)
			}
		}
	}
	return b
}

// appendFraction appends the first n (1-9) digits of the nanoseconds ns.
func appendFraction(b []byte, ns, n int) []byte {
	var d [9]byte
	for i := 8; i >= 0; i-- {
		d[i] = byte('0' + ns%10)
		ns /= 10
	}
	return append(b, d[:n]...)
}
