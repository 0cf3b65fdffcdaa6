package h2guard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"golang.org/x/net/http2"
)

// FuzzGuard feeds an arbitrary client byte stream (after a valid preface) to a Conn in random
// read sizes, chosen by seed, and reads it as the library would, in random read sizes too. It
// checks that the guard does not panic, never holds more than one frame, delivers only a prefix
// of the input (with repeated SETTINGS collapsed), delivers every complete frame when it finds
// nothing wrong, and on a violation returns an *Error, reports it once and writes one GOAWAY
// with its code. The seed corpus is in testdata/fuzz/FuzzGuard plus the cases below; run
// `go test -fuzz FuzzGuard -fuzzminimizetime 5s ./proxy/h2guard/` to search for more (the
// default minimization of a new input, up to 60 s, stalls the search on large inputs).
func FuzzGuard(f *testing.F) {
	f.Add(validTraffic()[len(Preface):], uint64(0))
	for i, tc := range violationCases() {
		s := newScript()
		tc.build(s)
		// Large inputs (the floods under the default limits, which TestViolations covers) make
		// slow mutation and minimization; the small ones below reach the same checks.
		if tc.lim.MaxFrameSize != 0 || s.Len() > 8<<10 {
			continue
		}
		f.Add(bytes.Clone(s.Bytes()[len(Preface):]), uint64(2*i)) // even seed: default limits
	}
	// Odd seeds: small limits (see below), so that short inputs reach every flood check.
	for _, build := range []func(s *script){
		func(s *script) {
			for i := 0; i < 6; i++ {
				s.ping(uint64(i))
			}
		},
		func(s *script) {
			for i := 0; i < 6; i++ {
				s.settings(4, uint32(i), 4, 1)
			}
		},
		func(s *script) {
			for i := 0; i < 4; i++ {
				s.fr.WritePriority(uint32(2*i+1), http2.PriorityParam{Weight: 1})
			}
		},
		func(s *script) {
			for i := uint32(1); i < 12; i += 2 {
				s.headers(i, false, true, s.request())
				s.fr.WriteRSTStream(i, http2.ErrCodeCancel)
			}
		},
		func(s *script) {
			b := s.request("x-long", string(bytes.Repeat([]byte("l"), 300)))
			s.headers(1, true, false, b[:100])
			s.fr.WriteContinuation(1, false, b[100:200])
			s.fr.WriteContinuation(1, true, b[200:])
		},
		func(s *script) {
			s.headers(1, false, true, s.request())
			for i := 0; i < 20; i++ {
				s.fr.WriteWindowUpdate(uint32(i%2), 1)
			}
		},
	} {
		s := newScript()
		build(s)
		f.Add(bytes.Clone(s.Bytes()[len(Preface):]), uint64(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed>>32^0x9e3779b97f4a7c15))
		in := append([]byte(Preface), data...)
		lim := Limits{}
		if seed&1 == 1 {
			// Small limits reach the header-block checks with short inputs.
			lim.MaxHeaderBlockBytes = 256
			lim.MaxOutboundControlFrames = 4
			lim.PrematureResetStreamCount = 4
			lim.MaxPriorityFramesPerStream = 2
		}
		var vs violations
		lim.OnViolation = vs.on
		var sizes []int
		for n := 0; n < len(in); {
			k := randSize(rng)
			sizes = append(sizes, k)
			n += k
		}
		c := newScriptConn(bytes.Clone(in), sizes...)
		g := New(c, lim)
		if _, err := g.Write(serverSettings); err != nil {
			t.Fatal(err)
		}
		maxHeld := int(g.lim.MaxFrameSize) + headerLen
		var got []byte
		var err error
		buf := make([]byte, 1<<15)
		for i := 0; ; i++ {
			if i > len(in)+10 {
				t.Fatalf("no end after %d reads", i)
			}
			var n int
			n, err = g.Read(buf[:randSize(rng)])
			got = append(got, buf[:n]...)
			if g.buf != nil && (len(*g.buf) > maxHeld || cap(*g.buf) > maxHeld) {
				t.Fatalf("guard holds %d bytes (capacity %d), more than one frame (%d)", len(*g.buf), cap(*g.buf), maxHeld)
			}
			if err != nil {
				break
			}
			if n == 0 {
				t.Fatal("Read returned neither bytes nor an error")
			}
		}
		want, complete := expectedDelivery(in)
		if !bytes.HasPrefix(want, got) {
			t.Fatalf("delivered bytes are not a prefix of the input: first difference at %d of %d", firstDiff(got, want), len(got))
		}
		var ge *Error
		switch {
		case err == io.EOF:
			if len(got) != complete {
				t.Fatalf("no violation, but %d bytes delivered of %d complete ones", len(got), complete)
			}
			if v := vs.list(); len(v) != 0 {
				t.Fatalf("OnViolation %v without an error", v)
			}
			if out := c.written(); !bytes.Equal(out, serverSettings) {
				t.Fatalf("guard wrote %x without a violation", out[len(serverSettings):])
			}
		case errors.As(err, &ge):
			if v := vs.list(); len(v) != 1 || v[0] != ge.Violation {
				t.Fatalf("OnViolation calls %v for %v", v, ge)
			}
			out := c.written()
			if !bytes.HasPrefix(out, serverSettings) || len(out) != len(serverSettings)+17 {
				t.Fatalf("after a violation the guard wrote %x, want one GOAWAY", out[len(serverSettings):])
			}
			ga := out[len(serverSettings):]
			if ga[3] != frameGoAway || ErrCode(binary.BigEndian.Uint32(ga[13:17])) != ge.Code || ga[9]&0x80 != 0 {
				t.Fatalf("GOAWAY %x does not carry %v", ga, ge)
			}
			if _, err2 := g.Read(buf); err2 != err {
				t.Fatalf("Read after the violation: %v", err2)
			}
		default:
			t.Fatalf("Read error %v (%T)", err, err)
		}
	})
}

// randSize is a read size: mostly small, sometimes a whole frame or more.
func randSize(rng *rand.Rand) int {
	switch rng.IntN(4) {
	case 0:
		return 1 + rng.IntN(9)
	case 1:
		return 1 + rng.IntN(100)
	case 2:
		return 1 + rng.IntN(20000)
	default:
		return 1 << 15
	}
}

// expectedDelivery is a reference model of the guard's output for an input it finds nothing
// wrong with: the input with each SETTINGS frame (not an acknowledgement) reduced to the last
// occurrence of each identifier, and complete, the length of the part the guard must deliver
// when the input ends: everything but an incomplete trailing frame, of which a DATA frame's
// header and payload bytes count, another frame's do not.
func expectedDelivery(in []byte) (out []byte, complete int) {
	out = append(out, in[:len(Preface)]...)
	complete = len(out)
	p := in[len(Preface):]
	for len(p) >= headerLen {
		length := int(p[0])<<16 | int(p[1])<<8 | int(p[2])
		typ, flags := p[3], p[4]
		if len(p) < headerLen+length {
			out = append(out, p...)
			if typ == frameData {
				complete = len(out)
			}
			return out, complete
		}
		payload := p[headerLen : headerLen+length]
		if typ == frameSettings && flags&flagAck == 0 && length%6 == 0 {
			payload = lastOfEachSetting(payload)
			out = append(out, byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload)))
			out = append(out, p[3:headerLen]...)
		} else {
			out = append(out, p[:headerLen]...)
		}
		out = append(out, payload...)
		complete = len(out)
		p = p[headerLen+length:]
	}
	return append(out, p...), complete
}

// lastOfEachSetting keeps the entries of a SETTINGS payload whose identifier does not occur
// again later, in order.
func lastOfEachSetting(p []byte) []byte {
	last := map[uint16]int{}
	for i := 0; i+6 <= len(p); i += 6 {
		last[binary.BigEndian.Uint16(p[i:])] = i
	}
	var out []byte
	for i := 0; i+6 <= len(p); i += 6 {
		if last[binary.BigEndian.Uint16(p[i:])] == i {
			out = append(out, p[i:i+6]...)
		}
	}
	return out
}

// TestExpectedDeliveryModel checks the fuzz target's reference model on a known case.
func TestExpectedDeliveryModel(t *testing.T) {
	s := newScript()
	s.settings(1, 1, 2, 0, 1, 3)
	s.fr.WriteData(1, false, []byte("abc"))
	full := s.Len()
	s.fr.WritePing(false, [8]byte{})
	in := s.Bytes()[:s.Len()-3]
	out, complete := expectedDelivery(in)
	w := newScript()
	w.settings(2, 0, 1, 3)
	w.fr.WriteData(1, false, []byte("abc"))
	wantComplete := w.Len()
	w.fr.WritePing(false, [8]byte{})
	if want := w.Bytes()[:w.Len()-3]; !bytes.Equal(out, want) || complete != wantComplete || full-complete != 6 {
		t.Fatalf("model: %x (complete %d), want %x (complete %d)", out, complete, want, wantComplete)
	}
}
