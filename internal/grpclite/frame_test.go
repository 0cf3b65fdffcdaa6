package grpclite

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"
)

func rawFrame(flags byte, msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

func TestFrameReader(t *testing.T) {
	two := append(rawFrame(0, []byte("ab")), rawFrame(0, nil)...)
	f := frameReader{r: bytes.NewReader(two), max: 10}
	if m, err := f.next(); err != nil || string(m) != "ab" {
		t.Fatalf("first: %q, %v", m, err)
	}
	if m, err := f.next(); err != nil || len(m) != 0 {
		t.Fatalf("second: %q, %v", m, err)
	}
	if _, err := f.next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want Code
	}{
		{"compressed", rawFrame(1, []byte("x")), Internal},
		{"unknown flags", rawFrame(0x80, []byte("x")), Internal},
		{"too large", rawFrame(0, make([]byte, 11)), ResourceExhausted},
		{"huge length, no body", []byte{0, 0xff, 0xff, 0xff, 0xff}, ResourceExhausted},
		{"truncated header", []byte{0, 0, 0}, Internal},
		{"truncated message", rawFrame(0, []byte("abc"))[:7], Internal},
	} {
		f := frameReader{r: bytes.NewReader(tc.in), max: 10}
		if _, err := f.next(); CodeOf(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// A transport error passes through for the caller to map.
	boom := errors.New("boom")
	f = frameReader{r: io.MultiReader(bytes.NewReader([]byte{0, 0}), errReader{boom}), max: 10}
	if _, err := f.next(); !errors.Is(err, boom) {
		t.Errorf("transport error: %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestFrame(t *testing.T) {
	b, err := frame(wrapperspb.String("hi"))
	if err != nil {
		t.Fatal(err)
	}
	f := frameReader{r: bytes.NewReader(b), max: 100}
	m, err := f.next()
	if err != nil || b[0] != 0 || len(m) != len(b)-5 {
		t.Fatalf("frame %x: %v", b, err)
	}
}

func TestTimeoutHeader(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                  "1n",
		0:                             "1n",
		time.Nanosecond:               "1n",
		99_999_999:                    "99999999n",
		100_000_000:                   "100000u",
		100_000_001:                   "100001u", // rounded up
		time.Second:                   "1000000u",
		99_999_999 * time.Microsecond: "99999999u",
		2 * time.Minute:               "120000m",
		30 * time.Hour:                "108000S",
		200_000 * time.Hour:           "12000000M",
		time.Duration(1<<63 - 1):      "2562048H",
	} {
		if got := timeoutHeader(d); got != want {
			t.Errorf("timeoutHeader(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestPercentDecode(t *testing.T) {
	for in, want := range map[string]string{
		"plain":             "plain",
		"100%25":            "100%",
		"%C3%BC":            "ü",
		"bad %zz and %4":    "bad %zz and %4",
		"%":                 "%",
		"end%2":             "end%2",
		"%0A%0d":            "\n\r",
		"mixed %41%2x%42 ü": "mixed A%2xB ü",
	} {
		if got := percentDecode(in); got != want {
			t.Errorf("percentDecode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHeaderStatus(t *testing.T) {
	if _, ok := headerStatus(http.Header{}); ok {
		t.Error("no grpc-status: ok")
	}
	s, _ := headerStatus(http.Header{"Grpc-Status": {"5"}, "Grpc-Message": {"gone%21"}, "Grpc-Status-Details-Bin": {"AQI="}})
	if s.Code != NotFound || s.Message != "gone!" || !bytes.Equal(s.Details, []byte{1, 2}) {
		t.Errorf("status %+v", s)
	}
	s, _ = headerStatus(http.Header{"Grpc-Status": {"x"}})
	if s.Code != Unknown {
		t.Errorf("invalid grpc-status: %+v", s)
	}
	if s, _ = headerStatus(http.Header{"Grpc-Status": {"99"}}); s.Code != 99 || s.Code.String() != "Code(99)" {
		t.Errorf("unknown code: %+v %v", s, s.Code)
	}
	if Unauthenticated.String() != "Unauthenticated" || CodeOf(nil) != OK || CodeOf(io.EOF) != Unknown {
		t.Error("code names")
	}
}

func TestHTTPStatusCode(t *testing.T) {
	for status, want := range map[int]Code{400: Internal, 401: Unauthenticated, 403: PermissionDenied, 404: Unimplemented,
		429: Unavailable, 502: Unavailable, 503: Unavailable, 504: Unavailable, 500: Unknown, 302: Unknown} {
		if got := httpStatusCode(status); got != want {
			t.Errorf("HTTP %d: %v, want %v", status, got, want)
		}
	}
}

func TestMetadataOf(t *testing.T) {
	md := metadataOf(http.Header{
		"Content-Type": {"application/grpc"}, "Grpc-Status": {"0"}, "X-A": {"1", "2"},
		"X-B-Bin": {"AAE", "AgM=,BA"}, "X-C-Bin": {"!!"},
	})
	if len(md) != 2 || md.Get("x-a") != "1" || len(md["x-a"]) != 2 {
		t.Errorf("metadata %q", md)
	}
	if got := md["x-b-bin"]; len(got) != 3 || got[0] != "\x00\x01" || got[1] != "\x02\x03" || got[2] != "\x04" {
		t.Errorf("binary %q", got)
	}
	if len(md["x-c-bin"]) != 0 {
		t.Errorf("invalid base64 kept: %q", md["x-c-bin"])
	}
}

// FuzzFrameReader reads untrusted bytes as a stream of gRPC messages: no panic, no message
// over the limit, nothing read past the input, and a *Status for every failure but io.EOF.
func FuzzFrameReader(f *testing.F) {
	f.Add(rawFrame(0, []byte("hello")), 16)
	f.Add(append(rawFrame(0, nil), rawFrame(0, []byte("x"))...), 1)
	f.Add(rawFrame(1, []byte("z")), 16)
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff}, 1<<20)
	f.Add([]byte{0, 0, 0, 0, 3, 'a'}, 8)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max < 0 || max > 1<<20 {
			max = 1 << 10
		}
		fr := frameReader{r: bytes.NewReader(in), max: max}
		total := 0
		for range len(in) + 1 { // each message consumes at least its 5-byte prefix
			m, err := fr.next()
			if err == io.EOF {
				if total != len(in) {
					t.Fatalf("io.EOF after %d of %d bytes", total, len(in))
				}
				return
			}
			if err != nil {
				if _, ok := FromError(err); !ok {
					t.Fatalf("error %v is not a *Status", err)
				}
				return
			}
			if len(m) > max {
				t.Fatalf("message of %d bytes over the limit of %d", len(m), max)
			}
			total += 5 + len(m)
			if total > len(in) {
				t.Fatalf("read %d bytes of %d", total, len(in))
			}
		}
		t.Fatal("more messages than the input can hold")
	})
}
