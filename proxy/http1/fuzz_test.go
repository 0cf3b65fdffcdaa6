package http1

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"net/http"
	"testing"
)

var fuzzSeeds = []string{
	goodReq, postReq, chunkReq, clteReq, upgradeRq, smuggled, h2Preface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00",
	"GET http://example.com:8080/a?b HTTP/1.1\r\nHost: example.com\r\n\r\n",
	"OPTIONS * HTTP/1.0\r\n\r\n",
	"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
	"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
	"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
	"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\\\"c\";d\r\nhello\r\n0\r\nT: v\r\n\r\n" + goodReq,
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n\r",
	"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n" + goodReq,
	"POST /u HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: x\r\nContent-Length: 2\r\n\r\nabGARBAGE",
}

// FuzzParseHead checks that a head parses the same whole, cut in two and byte by byte, and
// that whenever both the Parser and net/http accept a head they agree on its body framing.
func FuzzParseHead(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add([]byte(s), uint16(i*7))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		in := string(data)
		whole, _ := feedPieces(Limits{}, in)
		if len(in) > 1 {
			if r, _ := feedPieces(Limits{}, in, 1+int(cut)%(len(in)-1)); r != whole {
				t.Fatalf("cut at %d: %+v, whole %+v", 1+int(cut)%(len(in)-1), r, whole)
			}
		}
		if len(in) < 300 {
			cuts := make([]int, 0, len(in))
			for c := 1; c < len(in); c++ {
				cuts = append(cuts, c)
			}
			if r, _ := feedPieces(Limits{}, in, cuts...); r != whole {
				t.Fatalf("byte by byte: %+v, whole %+v", r, whole)
			}
		}
		if whole.err != nil || !whole.done {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data[:whole.n])))
		if err != nil {
			return // net/http is stricter here: it answers 400 and closes
		}
		chunked := len(req.TransferEncoding) == 1 && req.TransferEncoding[0] == "chunked"
		switch whole.framing {
		case FramingChunked:
			if !chunked || req.ContentLength != -1 {
				t.Fatalf("chunked head, net/http sees TE %q length %d", req.TransferEncoding, req.ContentLength)
			}
		case FramingLength:
			if chunked || req.ContentLength != whole.length {
				t.Fatalf("length %d, net/http sees TE %q length %d", whole.length, req.TransferEncoding, req.ContentLength)
			}
		default:
			if chunked || req.ContentLength != 0 {
				t.Fatalf("no body, net/http sees TE %q length %d", req.TransferEncoding, req.ContentLength)
			}
		}
	})
}

// guardRun is what a GuardConn delivered from a script.
type guardRun struct {
	out   []byte
	valid int64
	viol  *Error
	mode  uint8
}

func runGuard(t *testing.T, data []byte, cuts []int, sizes []int) guardRun {
	sc := cutScript(string(data), cuts...)
	g := NewGuardConn(sc, Limits{MaxHeaderBytes: 2048, MaxHeaderCount: 20})
	var out []byte
	buf := make([]byte, 4096)
	for i := 0; ; i++ {
		size := 4096
		if len(sizes) > 0 {
			size = sizes[i%len(sizes)]
		}
		n, err := g.Read(buf[:size])
		out = append(out, buf[:n]...)
		if int(g.nheld) > len(h2Preface)-1 || len(g.out) > max(size, smallRead) || len(g.stash) > len(data) {
			t.Fatalf("holds too much: held %d out %d stash %d", g.nheld, len(g.out), len(g.stash))
		}
		if err != nil || n == 0 || len(out) > len(data)+len(poison501)+8192 {
			break
		}
	}
	return guardRun{out, g.Validated(), g.Violation(), g.mode}
}

// FuzzGuard checks that any stream delivered in random pieces (and read with random sizes,
// including net/http's one-byte reads) gets the same verdict as delivered whole: the same
// violation, never less of the stream validated, only bytes of the stream up to Validated,
// then nothing but a poison.
func FuzzGuard(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add([]byte(s), uint64(i))
		f.Add([]byte(goodReq+s+smuggled), uint64(i*31+1))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		if len(data) > 1<<14 {
			return
		}
		whole := runGuard(t, data, nil, nil)
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		var cuts []int
		for c := 0; c < len(data); {
			c += 1 + rng.IntN(1+rng.IntN(64))
			if c < len(data) {
				cuts = append(cuts, c)
			}
		}
		sizes := []int{1 + rng.IntN(8), 14, 1 + rng.IntN(4096)}
		split := runGuard(t, data, cuts, sizes)
		for _, r := range []guardRun{whole, split} {
			if r.valid > int64(len(data)) || !bytes.Equal(r.out[:r.valid], data[:r.valid]) {
				t.Fatalf("delivered bytes that are not the stream's: valid %d", r.valid)
			}
			if r.viol == nil && int64(len(r.out)) != r.valid {
				t.Fatalf("delivered %d bytes, %d validated, no violation", len(r.out), r.valid)
			}
			if r.viol != nil && r.mode != gFailed && !isPoison(r.out[r.valid:]) {
				t.Fatalf("after a violation: %q", r.out[r.valid:])
			}
		}
		if whole.viol != split.viol {
			t.Fatalf("violation whole %v, split %v (cuts %v sizes %v)", whole.viol, split.viol, cuts, sizes)
		}
		if split.valid < whole.valid {
			t.Fatalf("split validated %d bytes, whole %d", split.valid, whole.valid)
		}
		if whole.viol == nil && split.valid != whole.valid {
			t.Fatalf("no violation: split validated %d bytes, whole %d", split.valid, whole.valid)
		}
	})
}

func isPoison(b []byte) bool {
	switch string(b) {
	case poison400, poison501, poison501Cont, "":
		return true
	}
	b = bytes.TrimPrefix(b, []byte(poison431))
	return len(bytes.Trim(b, "a")) == 0
}
