package dns

import (
	"context"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// Message limits. dnsmessage itself bounds name decompression (a name may follow at most ten
// compression pointers and is at most 255 bytes long), so a hostile message costs at most a
// linear pass over its bytes.
const (
	// MaxMessageSize is the largest message read from a client or an upstream (TCP's limit).
	MaxMessageSize = 65535
	// minUDPSize is the UDP payload every client accepts (RFC 1035); larger answers over UDP
	// need EDNS(0) and are cut to maxUDPSize at most.
	minUDPSize = 512
	maxUDPSize = 4096
	// ednsSize is the UDP payload size the proxy advertises in its own OPT records.
	ednsSize = 1232
	// maxAdditionals bounds the additional records examined for an OPT record.
	maxAdditionals = 4
	// TTL of mesh answers, in seconds (Istio's).
	meshTTL = 30
)

// forwardFunc sends a query to the upstream resolvers and returns their response message.
type forwardFunc func(ctx context.Context, query []byte, tcp bool) ([]byte, error)

// handler answers queries: mesh names from the current table, the rest through forward.
type handler struct {
	table   func() *Table
	search  []string // canonical search suffixes, from resolv.conf
	forward forwardFunc
	metrics Metrics
}

// query is what a handler needs of a parsed client message.
type query struct {
	hdr      dnsmessage.Header
	q        dnsmessage.Question
	hasQ     bool
	edns     bool
	udpLimit int
}

// respond returns the response to one client message, or nil when no response must be sent (not
// a query at all, or a response). tcp says whether the client used TCP (no truncation).
func (h *handler) respond(ctx context.Context, msg []byte, tcp bool) []byte {
	if len(msg) > MaxMessageSize {
		return nil
	}
	var p dnsmessage.Parser
	hdr, err := p.Start(msg)
	if err != nil || hdr.Response {
		return nil
	}
	inc(h.metrics.Requests)
	qr := query{hdr: hdr, udpLimit: minUDPSize}
	if tcp {
		qr.udpLimit = MaxMessageSize
	}
	q, err := p.Question()
	if err == nil {
		qr.q, qr.hasQ = q, true
		if _, err2 := p.Question(); err2 != dnsmessage.ErrSectionDone {
			return qr.reply(dnsmessage.RCodeFormatError, false)
		}
	} else {
		return qr.reply(dnsmessage.RCodeFormatError, false)
	}
	qr.readEDNS(&p, tcp)
	if hdr.OpCode != 0 {
		return qr.reply(dnsmessage.RCodeNotImplemented, false)
	}
	if q.Class == dnsmessage.ClassINET || q.Class == dnsmessage.ClassANY {
		if out := h.mesh(&qr); out != nil {
			return out
		}
	}
	inc(h.metrics.UpstreamRequests)
	if h.forward == nil {
		inc(h.metrics.UpstreamFailures)
		return qr.reply(dnsmessage.RCodeServerFailure, false)
	}
	resp, err := h.forward(ctx, msg, tcp)
	if err != nil || !validResponse(resp, hdr.ID) {
		inc(h.metrics.UpstreamFailures)
		return qr.reply(dnsmessage.RCodeServerFailure, false)
	}
	return resp
}

// readEDNS looks for an OPT record among the first additional records and takes the client's UDP
// payload size from it. Malformed trailing sections are ignored: the question is what counts.
func (qr *query) readEDNS(p *dnsmessage.Parser, tcp bool) {
	if p.SkipAllAnswers() != nil || p.SkipAllAuthorities() != nil {
		return
	}
	for range maxAdditionals {
		rh, err := p.AdditionalHeader()
		if err != nil {
			return
		}
		if rh.Type == dnsmessage.TypeOPT {
			qr.edns = true
			if !tcp {
				qr.udpLimit = min(max(int(rh.Class), minUDPSize), maxUDPSize)
			}
			return
		}
		if p.SkipAdditional() != nil {
			return
		}
	}
}

// mesh answers a question about a mesh name, or returns nil when the name is not one.
func (h *handler) mesh(qr *query) []byte {
	t := h.table()
	if t == nil {
		return nil
	}
	name := canonicalName(qr.q.Name.String())
	e := t.lookup(name)
	cname := false
	if e == nil {
		// A search-list expansion of a mesh name (the resolver appended a search suffix, as
		// with ndots:5): answer with a CNAME to the mesh name, as Istio does, instead of a
		// round trip upstream for an NXDOMAIN.
		for _, s := range h.search {
			if base, ok := strings.CutSuffix(name, "."+s); ok {
				if e = t.lookup(base); e != nil {
					cname = true
					break
				}
			}
		}
	}
	if e == nil {
		return nil
	}
	out, err := qr.meshAnswer(e, cname, false)
	if err == nil && len(out) > qr.udpLimit {
		out, err = qr.meshAnswer(e, cname, true)
	}
	if err != nil {
		return qr.reply(dnsmessage.RCodeServerFailure, false)
	}
	return out
}

// meshAnswer builds the authoritative answer for a mesh name: its A and/or AAAA records as the
// question asks (none, NODATA, for another type), after a CNAME from the asked name when cname.
// truncated builds the empty TC response for a client whose UDP limit is too small.
func (qr *query) meshAnswer(e *entry, cname, truncated bool) ([]byte, error) {
	hdr := qr.responseHeader(dnsmessage.RCodeSuccess)
	hdr.Authoritative = true
	hdr.Truncated = truncated
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), hdr)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(qr.q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if !truncated {
		owner := qr.q.Name
		if cname {
			target, err := dnsmessage.NewName(e.canonical + ".")
			if err != nil {
				return nil, err
			}
			if err := b.CNAMEResource(rrHeader(owner, dnsmessage.TypeCNAME), dnsmessage.CNAMEResource{CNAME: target}); err != nil {
				return nil, err
			}
			owner = target
		}
		if qr.q.Type == dnsmessage.TypeA || qr.q.Type == dnsmessage.TypeALL {
			for _, ip := range e.v4 {
				if err := b.AResource(rrHeader(owner, dnsmessage.TypeA), dnsmessage.AResource{A: ip.As4()}); err != nil {
					return nil, err
				}
			}
		}
		if qr.q.Type == dnsmessage.TypeAAAA || qr.q.Type == dnsmessage.TypeALL {
			for _, ip := range e.v6 {
				if err := b.AAAAResource(rrHeader(owner, dnsmessage.TypeAAAA), dnsmessage.AAAAResource{AAAA: ip.As16()}); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := qr.addOPT(&b); err != nil {
		return nil, err
	}
	return b.Finish()
}

// reply builds a response without answers with the given code (and the question, if parsed).
func (qr *query) reply(code dnsmessage.RCode, authoritative bool) []byte {
	hdr := qr.responseHeader(code)
	hdr.Authoritative = authoritative
	b := dnsmessage.NewBuilder(make([]byte, 0, 128), hdr)
	b.EnableCompression()
	if qr.hasQ {
		if b.StartQuestions() != nil || b.Question(qr.q) != nil {
			return nil
		}
	}
	if qr.addOPT(&b) != nil {
		return nil
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

func (qr *query) responseHeader(code dnsmessage.RCode) dnsmessage.Header {
	return dnsmessage.Header{
		ID:                 qr.hdr.ID,
		Response:           true,
		OpCode:             qr.hdr.OpCode,
		RecursionDesired:   qr.hdr.RecursionDesired,
		RecursionAvailable: true,
		RCode:              code,
	}
}

// addOPT adds the proxy's OPT record when the query had one (RFC 6891).
func (qr *query) addOPT(b *dnsmessage.Builder) error {
	if !qr.edns {
		return nil
	}
	if err := b.StartAdditionals(); err != nil {
		return err
	}
	var rh dnsmessage.ResourceHeader
	if err := rh.SetEDNS0(ednsSize, dnsmessage.RCodeSuccess, false); err != nil {
		return err
	}
	return b.OPTResource(rh, dnsmessage.OPTResource{})
}

func rrHeader(name dnsmessage.Name, t dnsmessage.Type) dnsmessage.ResourceHeader {
	return dnsmessage.ResourceHeader{Name: name, Type: t, Class: dnsmessage.ClassINET, TTL: meshTTL}
}

// validResponse reports whether an upstream message is a response to the query with that ID.
func validResponse(msg []byte, id uint16) bool {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	return err == nil && h.Response && h.ID == id
}
