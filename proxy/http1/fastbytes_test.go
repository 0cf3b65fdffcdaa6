package http1

import (
	"strings"
	"testing"
)

// fieldLines are field lines whose names and values end at every offset around a word of
// eight bytes (the fast path's name and value scans load words from the name's and the
// value's first byte).
func fieldLines() []string {
	var lines []string
	for _, nl := range []int{1, 3, 7, 8, 9, 15, 16, 17} {
		for _, vl := range []int{0, 1, 6, 7, 8, 9, 16, 17} {
			name := strings.Repeat("x-Ab", 5)[:nl]
			lines = append(lines, name+": "+strings.Repeat("v ", 9)[:vl]+"\r\n")
		}
	}
	// Well-known names (names.go), matched by their words, in both cases and cut short.
	for _, name := range []string{"Host", "DATE", "user-agent", "Content-Length", "Content-Type", "Connection",
		"Accept-Encoding", "accept", "Server", "Cache-Control", "Authorization", "X-Request-Id", "X-Forwarded-For",
		"Upgrade", "Content-Lengt", "Accept-Encodin", "Transfer-Encoding"} {
		lines = append(lines, name+": 1\r\n", name+":\r\n")
	}
	return lines
}

// TestFastPathEveryByte puts every byte value at every position of field lines (name, colon,
// OWS, value, CR, LF) of a request head and a response head, and wants the same result fed
// whole (the fast path) and byte by byte (the state machine only).
func TestFastPathEveryByte(t *testing.T) {
	for _, line := range fieldLines() {
		for pos := 0; pos < len(line); pos++ {
			for c := 0; c < 256; c++ {
				l := []byte(line)
				l[pos] = byte(c)
				for _, in := range []string{
					"GET / HTTP/1.1\r\n" + string(l) + "Content-Length: 12\r\n\r\n",
					"POST / HTTP/1.1\r\nHost: a\r\n" + string(l) + "\r\n",
				} {
					whole, _ := feedPieces(Limits{}, in)
					cuts := make([]int, 0, len(in))
					for c := 1; c < len(in); c++ {
						cuts = append(cuts, c)
					}
					if r, _ := feedPieces(Limits{}, in, cuts...); r != whole {
						t.Fatalf("%q: byte by byte %+v, whole %+v", in, r, whole)
					}
				}
				in := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n" + string(l) + "\r\n"
				whole := feedResponseCuts(Limits{}, in)
				cuts := make([]int, 0, len(in))
				for c := 1; c < len(in); c++ {
					cuts = append(cuts, c)
				}
				if r := feedResponseCuts(Limits{}, in, cuts...); r != whole {
					t.Fatalf("%q: byte by byte %s, whole %s", in, r, whole)
				}
			}
		}
	}
}

// TestFastRequestLineEveryByte puts every byte value at every position of request lines
// (the usual methods are recognized by their word) and wants the same result fed whole and
// byte by byte.
func TestFastRequestLineEveryByte(t *testing.T) {
	for _, line := range []string{"GET / HTTP/1.1\r\n", "POST /a HTTP/1.0\r\n", "PUT /ab?c HTTP/1.1\r\n", "GETX / HTTP/1.1\r\n"} {
		for pos := 0; pos < len(line); pos++ {
			for c := 0; c < 256; c++ {
				l := []byte(line)
				l[pos] = byte(c)
				in := string(l) + "Host: a\r\n\r\n"
				whole, _ := feedPieces(Limits{}, in)
				cuts := make([]int, 0, len(in))
				for c := 1; c < len(in); c++ {
					cuts = append(cuts, c)
				}
				if r, _ := feedPieces(Limits{}, in, cuts...); r != whole {
					t.Fatalf("%q: byte by byte %+v, whole %+v", in, r, whole)
				}
			}
		}
	}
}

// TestFastStatusLineEveryByte puts every byte value at every position of status lines (a short
// reason phrase is scanned in the word after its SP) and wants the same result fed whole and
// byte by byte.
func TestFastStatusLineEveryByte(t *testing.T) {
	for _, line := range []string{"HTTP/1.1 200 OK\r\n", "HTTP/1.1 404 Not Found\r\n", "HTTP/1.0 204 \r\n",
		"HTTP/1.1 599 abcdefg\r\n", "HTTP/1.1 599 abcdefgh\r\n", "HTTP/1.1 100\r\n"} {
		for pos := 0; pos < len(line); pos++ {
			for c := 0; c < 256; c++ {
				l := []byte(line)
				l[pos] = byte(c)
				for _, in := range []string{string(l) + "Content-Length: 0\r\n\r\n", string(l)} {
					whole := feedResponseCuts(Limits{}, in)
					cuts := make([]int, 0, len(in))
					for c := 1; c < len(in); c++ {
						cuts = append(cuts, c)
					}
					if r := feedResponseCuts(Limits{}, in, cuts...); r != whole {
						t.Fatalf("%q: byte by byte %s, whole %s", in, r, whole)
					}
				}
			}
		}
	}
}
