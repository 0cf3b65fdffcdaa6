package upstream

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	ppv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/proxy_protocol/v3"
)

// downstreamKey is the context key of the downstream connection's addresses.
type downstreamKey struct{}

// downstreamAddrs are the addresses of the downstream connection a request or TCP connection
// came in on, sent upstream in a PROXY protocol header.
type downstreamAddrs struct {
	src, dst netip.AddrPort
}

// WithDownstreamAddrs returns ctx carrying the downstream connection's source and destination
// addresses. Clusters whose transport socket is envoy.transport_sockets.upstream_proxy_protocol
// send them in the PROXY protocol header; without them the header says LOCAL (v2) / UNKNOWN (v1).
func WithDownstreamAddrs(ctx context.Context, src, dst netip.AddrPort) context.Context {
	return context.WithValue(ctx, downstreamKey{}, downstreamAddrs{src: src, dst: dst})
}

func downstreamFrom(ctx context.Context) (downstreamAddrs, bool) {
	d, ok := ctx.Value(downstreamKey{}).(downstreamAddrs)
	return d, ok && d.src.IsValid() && d.dst.IsValid()
}

// compileProxyProtocol reads an upstream_proxy_protocol transport socket around an inner one.
func (cl *Cluster) compileProxyProtocol(path string, a *anypb.Any) (*transport, error) {
	var pp ppv3.ProxyProtocolUpstreamTransport
	if err := anypb.UnmarshalTo(a, &pp, proto.UnmarshalOptions{}); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	if err := xdsfield.Check(&pp, path, "config", "transport_socket", "allow_unspecified_address"); err != nil {
		return nil, err
	}
	version := 1
	if c := pp.GetConfig(); c != nil {
		if err := xdsfield.Check(c, path+".config", "version"); err != nil {
			return nil, err
		}
		if c.GetVersion() == corev3.ProxyProtocolConfig_V2 {
			version = 2
		}
	}
	var inner *transport
	if ts := pp.GetTransportSocket(); ts != nil {
		var err error
		if inner, err = cl.compileSocket(path+".transport_socket", ts); err != nil {
			return nil, err
		}
	}
	t := &transport{proxyProtocol: version}
	if inner != nil {
		if inner.proxyProtocol != 0 {
			return nil, fmt.Errorf("%s.transport_socket: nested PROXY protocol", path)
		}
		t.tls = inner.tls
	}
	return t, nil
}

var proxyV2Signature = []byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// proxyHeader renders a PROXY protocol header (HAProxy's specification, versions 1 and 2) for a
// TCP connection from src to dst; ok false renders v1 "UNKNOWN" / v2 LOCAL.
func proxyHeader(version int, d downstreamAddrs, ok bool) []byte {
	src, dst := d.src, d.dst
	if ok {
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
		if src.Addr().Is4() != dst.Addr().Is4() {
			ok = false
		}
	}
	if version == 1 {
		if !ok {
			return []byte("PROXY UNKNOWN\r\n")
		}
		fam := "TCP4"
		if src.Addr().Is6() {
			fam = "TCP6"
		}
		return []byte("PROXY " + fam + " " + src.Addr().String() + " " + dst.Addr().String() + " " +
			strconv.Itoa(int(src.Port())) + " " + strconv.Itoa(int(dst.Port())) + "\r\n")
	}
	h := append([]byte(nil), proxyV2Signature...)
	if !ok {
		return append(h, 0x20, 0x00, 0x00, 0x00) // version 2, LOCAL, UNSPEC, no addresses
	}
	var body []byte
	fam := byte(0x11) // TCP over IPv4
	if src.Addr().Is4() {
		s, d := src.Addr().As4(), dst.Addr().As4()
		body = append(append(body, s[:]...), d[:]...)
	} else {
		fam = 0x21 // TCP over IPv6
		s, d := src.Addr().As16(), dst.Addr().As16()
		body = append(append(body, s[:]...), d[:]...)
	}
	body = binary.BigEndian.AppendUint16(body, src.Port())
	body = binary.BigEndian.AppendUint16(body, dst.Port())
	h = append(h, 0x21, fam) // version 2, PROXY
	h = binary.BigEndian.AppendUint16(h, uint16(len(body)))
	return append(h, body...)
}

// writeProxyHeader sends the header on a fresh connection.
func writeProxyHeader(conn net.Conn, version int, d downstreamAddrs, ok bool) error {
	if _, err := conn.Write(proxyHeader(version, d, ok)); err != nil {
		return fmt.Errorf("writing PROXY protocol header: %w", err)
	}
	return nil
}
