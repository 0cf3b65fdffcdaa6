package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// parsed is one request as a parser understood it.
type parsed struct {
	method, scheme, authority, path string
	header, trailer                 []string // "lower-name: value", framing fields left out
	body                            string
}

// parseOurs reads one request from data with the server side of the codec.
func parseOurs(data []byte) (parsed, error) {
	c := connPool.New().(*conn)
	c.srv = &Server{}
	c.rd.src = bytes.NewReader(data)
	c.p.Init(http1.Limits{}, true)
	if _, err := c.rd.readHead(&c.p, nil); err != nil {
		return parsed{}, err
	}
	if e := c.buildRequest(); e != nil {
		return parsed{}, e
	}
	r := &c.req
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return parsed{}, err
	}
	p := parsed{method: r.Method, scheme: r.Scheme, authority: r.AuthorityString(), path: r.PathString(), body: string(body)}
	p.header, p.trailer = fieldList(&r.Header), fieldList(&r.Trailer)
	return p, nil
}

func fieldList(h *httpmsg.Header) []string {
	var l []string
	h.Range(func(name, value []byte) bool {
		if n := strings.ToLower(string(name)); n != "content-length" && n != "transfer-encoding" {
			l = append(l, n+": "+string(value))
		}
		return true
	})
	slices.Sort(l)
	return l
}

// parseNetHTTP reads one request from data with net/http's server-side parser.
func parseNetHTTP(data []byte) (parsed, error) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return parsed{}, err
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return parsed{}, err
	}
	p := parsed{method: req.Method, authority: req.Host, body: string(body)}
	if strings.HasPrefix(req.RequestURI, "/") || req.RequestURI == "*" {
		p.path = req.RequestURI
	} else if req.Method != "CONNECT" {
		p.scheme = strings.ToLower(req.URL.Scheme)
		u := *req.URL
		u.Scheme, u.Host, u.User = "", "", nil
		p.path = u.RequestURI()
		if !strings.HasPrefix(p.path, "/") {
			p.path = "/" + p.path
		}
	}
	p.header, p.trailer = headerList(req.Header), headerList(req.Trailer)
	return p, nil
}

func headerList(h http.Header) []string {
	var l []string
	for k, vs := range h {
		if k = strings.ToLower(k); k == "content-length" || k == "transfer-encoding" {
			continue
		}
		for _, v := range vs {
			l = append(l, k+": "+v)
		}
	}
	slices.Sort(l)
	return l
}

// stricter lists the documented exceptions: requests the codec refuses, as Envoy does, and
// net/http's ReadRequest accepts. Everything else must get the same decision from both.
//
//   - a Content-Length repeated, even with the same value (Envoy's balsa refuses it; RFC 9112
//     section 6.3 lets a recipient accept identical values);
//   - Transfer-Encoding in an HTTP/1.0 request (net/http ignores it and reads no body: two
//     parsers could disagree on where the next request starts);
//   - chunk extensions that are not RFC 9112's grammar, and whitespace around them (net/http
//     skips everything after ";");
//   - request targets with characters Envoy's (http-parser's) URL grammar refuses: obs-text,
//     "{", "|", "\", "^", "`" and similar in an absolute-form scheme or authority, "@@", and
//     request lines net/http splits differently (more than two spaces);
//   - a Host field or absolute-form authority with characters no authority has, or userinfo
//     in an absolute-form target (RFC 9110 section 4.2.4: treat as an error);
//   - a Connect request with a body, and Content-Length with Transfer-Encoding (net/http's
//     ReadRequest drops the Content-Length);
//   - an HTTP/1.1 request without Host (net/http's server refuses it after ReadRequest);
//   - a line ended by a bare LF (net/http accepts it; RFC 9112 section 2.2 lets a recipient,
//     Envoy does not);
//   - obs-fold, whitespace before the colon and bare CR: net/http refuses most of these too,
//     the codec refuses all of them.
//
// net/http is never allowed to refuse what the codec accepts. (Empty lines before the request
// line, which the codec skips, are taken off net/http's input.)
func stricter(err error) bool {
	var e *http1.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e {
	case http1.ErrDuplicateLength, http1.ErrTEInHTTP10, http1.ErrChunkExtension, http1.ErrInvalidURL,
		http1.ErrInvalidMethod, http1.ErrInvalidVersion, ErrInvalidAuthority, http1.ErrConnectBody,
		http1.ErrLengthAndTE, ErrMissingHost, http1.ErrObsFold, http1.ErrBareCR, http1.ErrBareLF, http1.ErrHeaderName,
		http1.ErrChunkSize, http1.ErrHeaderValue, http1.ErrUnsupportedTE, http1.ErrChunkData:
		return true
	}
	return false
}

var diffSeeds = []string{
	"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
	"GET /a/b?c=d&e HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: x\r\nAccept: */*\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
	"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer-Field: v\r\n\r\n",
	"GET http://example.com/x?y HTTP/1.1\r\nHost: other\r\n\r\n",
	"GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
	"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nX : a\r\n\r\n",
	"GET / HTTP/1.1\nHost: h\n\n",
	"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nX: \xff\xfe\r\n\r\n",
	"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
	"GET http://u:p@h/ HTTP/1.1\r\nHost: h\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 ; a=b\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
	"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nExpect: 100-continue\r\n\r\n",
	"get / HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.2\r\nHost: h\r\n\r\n",
	"\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
}

// FuzzServerVsNetHTTP feeds the same bytes to the codec's server-side parser and to
// net/http's (http.ReadRequest, then the body): both must accept or refuse, except where the
// codec is stricter as Envoy is (see stricter); for accepted input they must see the same
// method, scheme, authority, path, header fields, body and trailers.
func FuzzServerVsNetHTTP(f *testing.F) {
	for _, s := range diffSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8<<10 {
			return
		}
		ours, oerr := parseOurs(data)
		// The codec skips CR and LF before the request line, as Envoy's parsers do (RFC 9112
		// section 2.2); net/http's server does so only after a POST: compare what follows.
		theirs, terr := parseNetHTTP(bytes.TrimLeft(data, "\r\n"))
		switch {
		case oerr != nil && terr != nil:
			return
		case oerr != nil:
			if !stricter(oerr) {
				t.Fatalf("codec refuses (%v), net/http accepts %+v", oerr, theirs)
			}
			return
		case terr != nil:
			t.Fatalf("net/http refuses (%v), codec accepts %+v", terr, ours)
		}
		if ours.method != theirs.method || ours.authority != theirs.authority || ours.body != theirs.body ||
			!slices.Equal(ours.header, theirs.header) || !slices.Equal(ours.trailer, theirs.trailer) {
			t.Fatalf("codec %+v\nnet/http %+v", ours, theirs)
		}
		if ours.path != theirs.path && !samePath(ours.path, theirs.path) || ours.scheme != theirs.scheme {
			t.Fatalf("target: codec %q %q, net/http %q %q", ours.scheme, ours.path, theirs.scheme, theirs.path)
		}
	})
}

// samePath reports whether two paths are the same once net/url's re-escaping of an
// absolute-form target is undone.
func samePath(a, b string) bool {
	ua, err1 := url.PathUnescape(a)
	ub, err2 := url.PathUnescape(b)
	return err1 == nil && err2 == nil && ua == ub
}
