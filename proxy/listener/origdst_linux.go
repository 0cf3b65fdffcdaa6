package listener

import (
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h (same value as
// SO_ORIGINAL_DST, but at level SOL_IPV6); x/sys/unix does not define it.
const ip6tSOOriginalDst = 80

// originalDst returns the pre-DNAT destination of a connection redirected by iptables (REDIRECT
// or DNAT), from conntrack via SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6). ok is false
// when the connection was not redirected or the socket cannot be queried; callers then use the
// local address.
func originalDst(c net.Conn, local netip.AddrPort) (dst netip.AddrPort, ok bool) {
	sc, isSC := c.(syscall.Conn)
	if !isSC {
		return netip.AddrPort{}, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, false
	}
	v6 := local.Addr().Is6() && !local.Addr().Is4In6()
	cerr := raw.Control(func(fd uintptr) {
		if v6 {
			// sockaddr_in6 (28 bytes) fits in IPv6MTUInfo (32 bytes).
			info, gerr := unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSOOriginalDst)
			if gerr != nil || info.Addr.Family != unix.AF_INET6 {
				return
			}
			p := info.Addr.Port
			b := (*[2]byte)(unsafe.Pointer(&p)) // network byte order in memory
			dst = netip.AddrPortFrom(netip.AddrFrom16(info.Addr.Addr), uint16(b[0])<<8|uint16(b[1]))
			ok = true
			return
		}
		// sockaddr_in (16 bytes) fits in IPv6Mreq (20 bytes): family, port, address, zero.
		mreq, gerr := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if gerr != nil {
			return
		}
		a := mreq.Multiaddr
		fam := *(*uint16)(unsafe.Pointer(&a[0]))
		if fam != unix.AF_INET {
			return
		}
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{a[4], a[5], a[6], a[7]}), uint16(a[2])<<8|uint16(a[3]))
		ok = true
	})
	if cerr != nil {
		return netip.AddrPort{}, false
	}
	return dst, ok
}

// socketControl sets IP_TRANSPARENT, IP_FREEBIND (and their IPv6 variants) and SO_REUSEPORT
// before bind, for listeners with transparent, freebind or enable_reuse_port set.
func socketControl(transparent, freebind, reusePort, v6 bool) func(network, address string, c syscall.RawConn) error {
	if !transparent && !freebind && !reusePort {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if transparent {
				if v6 {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
				} else {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
				}
				if serr != nil {
					return
				}
			}
			if reusePort {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
					return
				}
			}
			if freebind {
				if v6 {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
				} else {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
