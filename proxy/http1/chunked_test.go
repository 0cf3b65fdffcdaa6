package http1

import (
	"strings"
	"testing"
)

type chunkResult struct {
	n    int
	err  error
	done bool
	data string
}

// decodePieces runs Next over in, cut at the given offsets, and collects the decoded data.
func decodePieces(lim Limits, in string, cuts ...int) chunkResult {
	var tp Parser
	tp.Init(lim, false)
	var c Chunked
	c.Reset(&tp)
	var r chunkResult
	var data strings.Builder
	prev := 0
	for _, cut := range append(cuts, len(in)) {
		b := []byte(in[prev:cut])
		for len(b) > 0 && !c.Done() {
			n, d, err := c.Next(b)
			data.Write(d)
			r.n += n
			b = b[n:]
			if err != nil {
				r.err, r.data = err, data.String()
				return r
			}
		}
		if c.Done() {
			break
		}
		prev = cut
	}
	r.done, r.data = c.Done(), data.String()
	return r
}

func checkChunkSplits(t *testing.T, lim Limits, in string, whole chunkResult) {
	t.Helper()
	var all []int
	for cut := 1; cut < len(in); cut++ {
		if r := decodePieces(lim, in, cut); r != whole {
			t.Fatalf("cut at %d: %+v, whole %+v", cut, r, whole)
		}
		all = append(all, cut)
	}
	if r := decodePieces(lim, in, all...); r != whole {
		t.Fatalf("byte by byte: %+v, whole %+v", r, whole)
	}
}

func TestChunkedAccepts(t *testing.T) {
	cases := []struct{ name, in, data string }{
		{"simple", "5\r\nhello\r\n0\r\n\r\n", "hello"},
		{"two chunks", "5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n", "hello!"},
		{"hex upper and lower", "A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij"},
		{"leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello"},
		{"sixteen digits", "0000000000000001\r\nx\r\n0000000000000000\r\n\r\n", "x"},
		{"extension name", "5;foo\r\nhello\r\n0\r\n\r\n", "hello"},
		{"extension token", "5;foo=bar;baz\r\nhello\r\n0;last\r\n\r\n", "hello"},
		{"extension quoted", "5;a=\"b; c=\\\"d\\\"\"\r\nhello\r\n0\r\n\r\n", "hello"},
		{"extension bws", "5; a = b ;c \t\r\nhello\r\n0\r\n\r\n", "hello"},
		{"extension empty quoted", "5;a=\"\"\r\nhello\r\n0\r\n\r\n", "hello"},
		{"trailers", "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\nX-Tab: a\tb\r\n\r\n", "hello"},
		{"crlf in data", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n"},
		{"nul in data", "3\r\na\x00b\r\n0\r\n\r\n", "a\x00b"},
		{"only last chunk", "0\r\n\r\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := decodePieces(Limits{}, tc.in+"NEXT")
			if r.err != nil || !r.done || r.n != len(tc.in) || r.data != tc.data {
				t.Fatalf("got %+v, want %d bytes of %q", r, len(tc.in), tc.data)
			}
			checkChunkSplits(t, Limits{}, tc.in, decodePieces(Limits{}, tc.in))
		})
	}
}

func TestChunkedRejects(t *testing.T) {
	small := Limits{MaxHeaderBytes: 30, MaxHeaderCount: 2}
	cases := []struct {
		name string
		lim  Limits
		in   string
		want *Error
		at   int
	}{
		{"size overflow", Limits{}, "ffffffffffffffffff\r\n", ErrChunkSize, 16},
		{"seventeen digits", Limits{}, "00000000000000001\r\nx\r\n", ErrChunkSize, 16},
		{"empty size", Limits{}, "\r\n", ErrChunkSize, 0},
		{"negative", Limits{}, "-5\r\n", ErrChunkSize, 0},
		{"hex prefix", Limits{}, "0x5\r\n", ErrChunkSize, 1},
		{"space after size", Limits{}, "5 \r\nhello\r\n0\r\n\r\n", ErrChunkSize, 1},
		{"space before extension", Limits{}, "5 ;a\r\nhello\r\n", ErrChunkSize, 1},
		{"leading space", Limits{}, " 5\r\n", ErrChunkSize, 0},
		{"bare lf after size", Limits{}, "5\nhello\r\n", ErrChunkSize, 1},
		{"bare cr after size", Limits{}, "5\rhello\r\n", ErrBareCR, 2},
		{"data longer", Limits{}, "5\r\nhelloX\r\n", ErrChunkData, 8},
		{"data shorter", Limits{}, "5\r\nhell\r\n0\r\n\r\n", ErrChunkData, 8},
		{"bare lf after data", Limits{}, "5\r\nhello\n0\r\n\r\n", ErrChunkData, 8},
		{"bare cr after data", Limits{}, "5\r\nhello\r0\r\n\r\n", ErrChunkData, 9},
		{"semicolon only", Limits{}, "5;\r\nhello\r\n", ErrChunkExtension, 2},
		{"empty value", Limits{}, "5;a=\r\nhello\r\n", ErrChunkExtension, 4},
		{"value with space", Limits{}, "5;a=b c\r\nhello\r\n", ErrChunkExtension, 6},
		{"name with slash", Limits{}, "5;a/b\r\nhello\r\n", ErrChunkExtension, 3},
		{"no name", Limits{}, "5;=b\r\nhello\r\n", ErrChunkExtension, 2},
		{"nul in extension", Limits{}, "5;a\x00\r\nhello\r\n", ErrChunkExtension, 3},
		{"cr in quoted", Limits{}, "5;a=\"b\rc\"\r\nhello\r\n", ErrChunkExtension, 6},
		{"lf in quoted", Limits{}, "5;a=\"b\nc\"\r\nhello\r\n", ErrChunkExtension, 6},
		{"unterminated quote", Limits{}, "5;a=\"b\r\nhello\r\n", ErrChunkExtension, 6},
		{"bare cr in extension", Limits{}, "5;a\rb\r\nhello\r\n", ErrBareCR, 4},
		{"double equals", Limits{}, "5;a==b\r\nhello\r\n", ErrChunkExtension, 4},
		{"size line too long", Limits{}, "5;a=" + strings.Repeat("b", maxChunkLine) + "\r\nhello\r\n", ErrChunkSize, maxChunkLine},
		{"trailer space before colon", Limits{}, "0\r\nX : v\r\n\r\n", ErrHeaderName, 4},
		{"trailer obs-fold", Limits{}, "0\r\nX: v\r\n w\r\n\r\n", ErrObsFold, 9},
		{"trailer nul", Limits{}, "0\r\nX: a\x00\r\n\r\n", ErrHeaderValue, 7},
		{"trailer bare lf", Limits{}, "0\r\nX: a\n\r\n", ErrBareLF, 7},
		{"trailer no colon", Limits{}, "0\r\nX\r\n\r\n", ErrHeaderName, 4},
		{"final bare lf", Limits{}, "0\r\n\n", ErrBareLF, 3},
		{"final bare cr", Limits{}, "0\r\n\rX", ErrBareCR, 4},
		{"trailers too large", small, "0\r\nX: " + strings.Repeat("v", 40) + "\r\n\r\n", ErrTrailersTooLarge, 33},
		{"too many trailers", small, "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", ErrTooManyTrailers, 15},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := decodePieces(tc.lim, tc.in)
			if r.err != tc.want {
				t.Fatalf("err = %v, want %v (%+v)", r.err, tc.want, r)
			}
			if r.n != tc.at {
				t.Fatalf("error at %d (%q), want %d", r.n, tc.in[:r.n], tc.at)
			}
			checkChunkSplits(t, tc.lim, tc.in, r)
		})
	}
}

func TestChunkedFeedNoAllocs(t *testing.T) {
	body := []byte("5;ext=\"v\"\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n")
	var tp Parser
	tp.Init(Limits{}, false)
	var c Chunked
	allocs := testing.AllocsPerRun(100, func() {
		c.Reset(&tp)
		if n, err := c.Feed(body); err != nil || n != len(body) || !c.Done() {
			t.Fatal(n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per body", allocs)
	}
}
