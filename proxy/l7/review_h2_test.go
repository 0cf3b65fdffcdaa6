package l7

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// TestReviewH2ConcurrentStreamsCaches: concurrent HTTP/2 streams of one mTLS connection share
// the connection's caches (the source address text for x-forwarded-for and
// x-envoy-external-address, the x-forwarded-client-cert element) and each get their own
// request id: every stream's upstream request carries the right values, its own client id
// (or a fresh UUID), and the recorded ids match the responses after all streams ended. Run
// with -race.
func TestReviewH2ConcurrentStreamsCaches(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend"))))
	hcm.UseRemoteAddress = wrapperspb.Bool(true)
	hcm.PreserveExternalRequestId = true
	hcm.AlwaysSetRequestIdInResponse = true
	hcm.ForwardClientCertDetails = hcmv3.HttpConnectionManager_APPEND_FORWARD
	hcm.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true}
	p := startProxyTLS(t, hcm, env, true, func(c *tls.Config) { c.ClientAuth = tls.RequireAnyClientCert })
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	clientCfg, _ := selfSigned(t)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "proxy.test",
		Certificates: clientCfg.Certificates}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	// One connection first, so that the streams below share it.
	if resp, err := c.Get("https://" + p.addr + "/warm"); err != nil {
		t.Fatal(err)
	} else if resp.ProtoMajor != 2 {
		t.Skipf("negotiated %s", resp.Proto)
	} else {
		resp.Body.Close()
		<-p.infos
	}
	const n = 48
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequest("GET", "https://"+p.addr+"/x", nil)
			var id string
			if i%2 == 0 {
				id = fmt.Sprintf("client-%d-%s", i, strings.Repeat("q", i))
				req.Header.Set("X-Request-Id", id)
			}
			req.Header.Set("X-Forwarded-Client-Cert", fmt.Sprintf("By=spiffe://prior/%d;Hash=00", i))
			resp, err := c.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			s := decodeSeen(t, resp)
			got := resp.Header.Get("X-Request-Id")
			ids[i] = got
			switch {
			case id != "" && (got != id || s.Header.Get("X-Request-Id") != id):
				errs <- fmt.Sprintf("stream %d: id %q, response %q, upstream %q", i, id, got, s.Header.Get("X-Request-Id"))
			case id == "" && (len(got) != uuidLen || s.Header.Get("X-Request-Id") != got):
				errs <- fmt.Sprintf("stream %d: generated id: response %q, upstream %q", i, got, s.Header.Get("X-Request-Id"))
			}
			if v := s.Header.Get("X-Forwarded-For"); v != "127.0.0.1" {
				errs <- fmt.Sprintf("stream %d: x-forwarded-for %q", i, v)
			}
			if v := s.Header.Get("X-Envoy-External-Address"); v != "127.0.0.1" {
				errs <- fmt.Sprintf("stream %d: x-envoy-external-address %q", i, v)
			}
			xfcc := s.Header.Get("X-Forwarded-Client-Cert")
			if !strings.HasPrefix(xfcc, fmt.Sprintf("By=spiffe://prior/%d;Hash=00,By=spiffe://cluster.local/", i)) ||
				!strings.HasSuffix(xfcc, ";URI=spiffe://cluster.local/ns/default/sa/proxy") {
				errs <- fmt.Sprintf("stream %d: x-forwarded-client-cert %q", i, xfcc)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	recorded := map[string]int{}
	for i := 0; i < n; i++ {
		recorded[p.nextInfo(t).RequestID]++
	}
	for i, id := range ids {
		if recorded[id] != 1 {
			t.Errorf("stream %d: response id %q recorded %d times (records %v)", i, id, recorded[id], recorded)
		}
	}
}
