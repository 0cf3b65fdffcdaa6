package translate_test

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/vocab"
	proute "github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/xdspb"
	proutev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

// retryCase is a sidecar whose route to reviews:9080 retries on retryOn, written as a golden
// input (testdata/retry-condition.yaml with retryOn in place of RETRY_ON).
func retryCase(t *testing.T, retryOn string) string {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join("testdata", "retry-condition.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "retry.input.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(tmpl), "RETRY_ON", retryOn)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// planes runs retryOn through all three planes: config validation (what `strait apply`
// accepts), translation (the route's retry_on) and strait-proxy's route compiler (the compiled
// condition set). A plane that rejects it returns an error.
func planes(t *testing.T, retryOn string) (validated error, emitted string, translated error, compiled vocab.RetryOn, compileErr error) {
	t.Helper()
	path := retryCase(t, retryOn)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.SplitN(string(data), "\n---\n", 2)
	objs, errs := config.Decode(path, []byte(docs[1]))
	if len(errs) > 0 {
		t.Fatalf("decode: %v", errors.Join(errs...))
	}
	for _, o := range objs {
		if err := config.Validate(o); err != nil {
			validated = err
		}
	}
	snap, p := loadCase(t, path)
	var reports []error
	g := translate.New(translate.Options{Report: func(_ *translate.Proxy, err error) { reports = append(reports, err) }})
	res, err := g.Generate(snap, p)
	if err != nil {
		t.Fatal(err)
	}
	translated = errors.Join(reports...)
	for _, r := range res[resource.RouteType] {
		rc := r.(*routev3.RouteConfiguration)
		if rc.GetName() != "9080" {
			continue
		}
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				if r.GetRoute().GetCluster() == vocab.OutboundClusterName(9080, "", "reviews.default.svc.cluster.local") {
					emitted = r.GetRoute().GetRetryPolicy().GetRetryOn()
				}
			}
		}
		tbl, err := proute.Compile(xdspb.MustFrom[*proutev3.RouteConfiguration](rc))
		if err != nil {
			return validated, emitted, translated, 0, err
		}
		rt := tbl.Match(proute.HTTPRequest(httptest.NewRequest("GET", "http://reviews.default.svc.cluster.local:9080/", nil)))
		if rt == nil || rt.Retry == nil {
			t.Fatalf("no route with a retry policy for reviews in %s", rc.GetName())
		}
		return validated, emitted, translated, rt.Retry.On, nil
	}
	t.Fatal("no route configuration 9080")
	return
}

// TestRetryConditionsOneList checks that config validation, translation and strait-proxy all take
// their retry conditions from vocab: every condition there passes all three planes and compiles
// to its own bit, and a name that is not there is refused by each plane on its own.
func TestRetryConditionsOneList(t *testing.T) {
	conds := vocab.RetryConditions()
	if len(conds) != 16 {
		t.Fatalf("%d retry conditions, Istio accepts 16", len(conds))
	}
	for _, c := range conds {
		t.Run(c.Name, func(t *testing.T) {
			verr, emitted, terr, on, cerr := planes(t, c.Name)
			if verr != nil {
				t.Errorf("config validation rejects %q: %v", c.Name, verr)
			}
			if terr != nil {
				t.Errorf("translation reports %q: %v", c.Name, terr)
			}
			if !strings.Contains(","+emitted+",", ","+c.Name+",") {
				t.Errorf("translated retry_on %q lacks %q", emitted, c.Name)
			}
			if cerr != nil {
				t.Errorf("strait-proxy rejects %q: %v", c.Name, cerr)
			}
			if on != c.On {
				t.Errorf("strait-proxy compiled %q to %v, want %v", c.Name, on, c.On)
			}
		})
	}
	// A name outside vocab: validation refuses it. The translator converts what validation
	// accepted without checking it again; handed the name anyway (a snapshot built from
	// unvalidated objects, as here), it passes it on, and strait-proxy refuses it in retry_on.
	const bogus = "reset-after-request"
	verr, emitted, _, _, cerr := planes(t, bogus)
	if verr == nil || !strings.Contains(verr.Error(), bogus) {
		t.Errorf("config validation accepts %q: %v", bogus, verr)
	}
	if !strings.Contains(emitted, bogus) {
		t.Errorf("translation checked %q again (retry_on %q)", bogus, emitted)
	}
	if cerr == nil || !strings.Contains(cerr.Error(), bogus) {
		t.Errorf("strait-proxy accepts %q: %v", bogus, cerr)
	}
}

// TestNoRetryConditionCopies fails when Go code outside internal/vocab spells a retry condition
// as a string literal again, the way the lists that drifted apart did. Test files may.
func TestNoRetryConditionCopies(t *testing.T) {
	root := filepath.Join("..", "..")
	distinctive := map[string]bool{}
	for _, c := range vocab.RetryConditions() {
		if strings.Contains(c.Name, "-") || strings.Contains(c.Name, "5xx") {
			distinctive[c.Name] = true // "reset", "internal", ... are ordinary words
		}
	}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "vocab", "testdata", ".git", "tools", "bench":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				s, _ := strconv.Unquote(lit.Value)
				for _, part := range strings.Split(s, ",") {
					if distinctive[strings.TrimSpace(part)] {
						t.Errorf("%s: retry condition %q spelled outside internal/vocab", path, part)
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestVocabularyGolden checks that the vocabulary golden case uses every value of the shared
// vocabulary: one route retries on every retry condition, and every name, port and ALPN value
// appears in the generated resources. Values that exclude each other in one proxy's config are
// looked up in the golden case that has them.
func TestVocabularyGolden(t *testing.T) {
	scalars := func(name string) map[string]bool {
		data, err := os.ReadFile(filepath.Join("testdata", name+".golden.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		var walk func(any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for _, e := range v {
					walk(e)
				}
			case []any:
				for _, e := range v {
					walk(e)
				}
			default:
				out[fmt.Sprint(v)] = true
			}
		}
		walk(v)
		return out
	}
	got := scalars("vocabulary")

	var all, seen vocab.RetryOn
	for _, c := range vocab.RetryConditions() {
		all |= c.On
	}
	outbound, outboundSubset, inbound := false, false, false
	for s := range got {
		if on, err := vocab.ParseRetryOn(s); err == nil && strings.Contains(s, ",") {
			seen |= on
		}
		if n, ok := vocab.ParseClusterName(s); ok {
			switch {
			case n.Direction == vocab.Inbound && n.String() == vocab.InboundClusterName(n.Port):
				inbound = true
			case n.Direction == vocab.Outbound && n.Subset != "":
				outboundSubset = true
			case n.Direction == vocab.Outbound:
				outbound = true
			}
		}
	}
	if seen != all {
		t.Errorf("retry conditions missing from the vocabulary case: %v", all&^seen)
	}
	if !outbound || !outboundSubset || !inbound {
		t.Errorf("cluster names: outbound %v, outbound with subset %v, inbound %v; want all", outbound, outboundSubset, inbound)
	}

	values := []any{
		vocab.FilterHCM, vocab.FilterTCPProxy, vocab.FilterRouter, vocab.FilterFault, vocab.FilterCORS,
		vocab.FilterOriginalDst, vocab.FilterTLSInspector, vocab.FilterHTTPInspector,
		vocab.PreviousHostsPredicate,
		vocab.TransportSocketTLS, vocab.TransportSocketRawBuffer, vocab.TransportSocketUpstreamProxyProtocol,
		vocab.PassthroughCluster, vocab.BlackHoleCluster, vocab.InboundPassthroughCluster, vocab.InboundPassthroughBindIP,
		vocab.VirtualOutbound, vocab.VirtualInbound,
		vocab.PassthroughFilterChain, vocab.BlackHoleFilterChain, vocab.InboundPassthroughFilterChain,
		vocab.OutboundCapturePort, vocab.InboundCapturePort,
		vocab.SecretDefault, vocab.SecretRootCA,
	}
	for _, f := range vocab.HTTPFilters() {
		values = append(values, f)
	}
	for _, list := range [][]string{vocab.IstioALPN(), vocab.HTTPALPN(), vocab.SniffedHTTPALPN()} {
		for _, a := range list {
			values = append(values, a)
		}
	}
	// REGISTRY_ONLY's default chain replaces ALLOW_ANY's.
	elsewhere := map[string]string{vocab.BlackHoleFilterChain: "registry-only"}
	for _, v := range values {
		s := fmt.Sprint(v)
		where, in := "vocabulary", got
		if other, ok := elsewhere[s]; ok {
			where, in = other, scalars(other)
		}
		if !in[s] {
			t.Errorf("%q does not appear in testdata/%s.golden.yaml", s, where)
		}
	}
}
