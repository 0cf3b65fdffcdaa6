package dns

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
)

// ResolvConf is what the DNS proxy reads from a resolv.conf file.
type ResolvConf struct {
	Servers []string // host:port of each nameserver, in file order
	Search  []string // search suffixes, canonical (lower case, no trailing dot)
}

// ReadResolvConf parses a resolv.conf file (nameserver and search/domain lines; the last search or
// domain line wins, as in glibc). A missing file gives an empty ResolvConf and no error.
func ReadResolvConf(path string) (ResolvConf, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return ResolvConf{}, nil
	}
	if err != nil {
		return ResolvConf{}, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	return parseResolvConf(f)
}

func parseResolvConf(r io.Reader) (ResolvConf, error) {
	var rc ResolvConf
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			// A zone index (fe80::1%eth0) is kept: net.Dial understands it.
			host, _, _ := strings.Cut(f[1], "%")
			if _, err := netip.ParseAddr(host); err != nil {
				continue
			}
			if len(rc.Servers) < 3 { // MAXNS, as glibc
				rc.Servers = append(rc.Servers, net.JoinHostPort(f[1], "53"))
			}
		case "search", "domain":
			rc.Search = rc.Search[:0]
			for _, s := range f[1:] {
				if s = canonicalName(s); s != "" && len(rc.Search) < 6 {
					rc.Search = append(rc.Search, s)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return rc, fmt.Errorf("parsing resolv.conf: %w", err)
	}
	return rc, nil
}

// Forwarder sends queries to upstream resolvers: each server in turn, each within Timeout, until
// one answers. UDP queries go over UDP (a truncated answer is returned as is: the client retries
// over TCP), TCP queries over TCP. Every query uses its own socket, so an answer can only come
// from the server it was sent to. It is safe for concurrent use.
type Forwarder struct {
	// Servers are host:port addresses.
	Servers []string
	// Timeout bounds each attempt (default 2s).
	Timeout time.Duration
	// Dialer dials the upstream sockets (default: a zero net.Dialer).
	Dialer *net.Dialer
}

// Forward implements the forwarding of one query message; it returns the first upstream answer.
func (f *Forwarder) Forward(ctx context.Context, query []byte, tcp bool) ([]byte, error) {
	if len(f.Servers) == 0 {
		return nil, errors.New("forwarding dns query: no upstream resolvers")
	}
	if len(query) < 12 || len(query) > MaxMessageSize {
		return nil, fmt.Errorf("forwarding dns query: message of %d bytes", len(query))
	}
	var errs []error
	for _, s := range f.Servers {
		resp, err := f.exchange(ctx, s, query, tcp)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("forwarding dns query: %w", errors.Join(errs...))
}

func (f *Forwarder) exchange(ctx context.Context, server string, query []byte, tcp bool) ([]byte, error) {
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := f.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	network := "udp"
	if tcp {
		network = "tcp"
	}
	c, err := d.DialContext(ctx, network, server)
	if err != nil {
		return nil, fmt.Errorf("dialing %s %s: %w", network, server, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if tcp {
		if err := writeTCP(c, query); err != nil {
			return nil, fmt.Errorf("sending to %s: %w", server, err)
		}
		resp, err := readTCP(c)
		if err != nil {
			return nil, fmt.Errorf("reading from %s: %w", server, err)
		}
		return resp, nil
	}
	if _, err := c.Write(query); err != nil {
		return nil, fmt.Errorf("sending to %s: %w", server, err)
	}
	buf := make([]byte, MaxMessageSize)
	id := binary.BigEndian.Uint16(query)
	// Skip stray datagrams (a late answer to someone else cannot arrive on this socket, but
	// a malformed one can): at most a few, within the deadline.
	for range 4 {
		n, err := c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("reading from %s: %w", server, err)
		}
		if validResponse(buf[:n], id) {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
	return nil, fmt.Errorf("reading from %s: no valid response", server)
}

// writeTCP writes one length-prefixed message.
func writeTCP(w io.Writer, msg []byte) error {
	if len(msg) > MaxMessageSize {
		return errors.New("message too long")
	}
	b := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(b, uint16(len(msg)))
	copy(b[2:], msg)
	_, err := w.Write(b)
	return err
}

// readTCP reads one length-prefixed message.
func readTCP(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint16(l[:])
	if n < 12 {
		return nil, fmt.Errorf("message of %d bytes is shorter than a header", n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}
