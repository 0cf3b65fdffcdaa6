package stats

import (
	"io"
	"strings"
	"testing"
)

type fixedCollector string

func (c fixedCollector) WritePrometheus(w io.Writer) error {
	_, err := io.WriteString(w, string(c))
	return err
}

func TestCollectorRenderedAfterStore(t *testing.T) {
	s := NewStore()
	s.Counter("a.b", "envoy_a_b").Inc()
	s.AddCollector(fixedCollector("# TYPE istio_x counter\nistio_x{l=\"v\"} 2\n"))
	var b strings.Builder
	if err := s.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	want := "# TYPE envoy_a_b counter\nenvoy_a_b 1\n# TYPE istio_x counter\nistio_x{l=\"v\"} 2\n"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}
