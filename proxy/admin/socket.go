package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxSocketPath is the longest path a Unix socket address holds (107 bytes on Linux).
var maxSocketPath = len(syscall.RawSockaddrUnix{}.Path) - 1

// SocketDir returns the directory of default admin sockets, one the proxy's user owns:
// $XDG_RUNTIME_DIR/strait when XDG_RUNTIME_DIR is set (the user's private runtime directory),
// else /var/run/strait for root, else $TMPDIR/strait-UID (as `strait run` keeps its state).
func SocketDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "strait")
	}
	if os.Geteuid() == 0 {
		return "/var/run/strait"
	}
	return filepath.Join(os.TempDir(), "strait-"+strconv.Itoa(os.Geteuid()))
}

// DefaultSocketPath returns where a proxy puts its admin socket when not told:
//
//	SocketDir()/NAMESPACE.WORKLOAD@HOST_PORT.sock
//
// named by the workload and the admin TCP address, which together tell apart the proxies that
// share a file system: explicit-mode replicas share a workload name but not an admin address;
// sidecars in network namespaces share the admin address 127.0.0.1:15000 but not a name.
// Characters other than [A-Za-z0-9._-] become '_'. When that path is too long for a Unix socket
// address, the file is named by a hash of the same parts: SocketDir()/admin-HASH.sock. The proxy
// reports the path in its log and in /server_info's "admin_socket".
func DefaultSocketPath(namespace, workload, adminAddress string) string {
	dir := SocketDir()
	host, port, err := net.SplitHostPort(adminAddress)
	if err != nil {
		host, port = adminAddress, ""
	}
	name := sanitize(namespace) + "." + sanitize(workload) + "@" + sanitize(host) + "_" + sanitize(port) + ".sock"
	if p := filepath.Join(dir, name); len(p) <= maxSocketPath {
		return p
	}
	sum := sha256.Sum256([]byte(namespace + "\x00" + workload + "\x00" + adminAddress))
	return filepath.Join(dir, "admin-"+hex.EncodeToString(sum[:10])+".sock")
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// ListenSocket binds the admin socket at path for the proxy's user only:
//
//   - the parent directory is created with mode 0700 when missing; it must be a directory owned
//     by the proxy's effective uid or root and writable by no one else (group or others could
//     otherwise replace the socket with their own);
//   - a socket file left at path by a proxy that is gone (nothing accepts on it) is replaced; a
//     live one, or a file that is not a socket, is an error;
//   - the socket file gets mode 0600.
//
// File modes are the first guard; the server's SO_PEERCRED check is the second. The listener
// removes the file when closed.
func ListenSocket(path string) (*net.UnixListener, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("admin socket %q: the path must be absolute", path)
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("admin socket %q: the path is longer than the %d bytes a Unix socket address holds", path, maxSocketPath)
	}
	if err := prepareSocketDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("binding admin socket %s: %w", path, err)
	}
	// Between bind and chmod the file has the umask's mode; the directory (not writable by
	// others) and the peer check cover that moment.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket %s: setting mode 0600: %w", path, err)
	}
	return ln, nil
}

// prepareSocketDir creates dir (0700) when missing and checks that only the proxy's user or root
// can change what it holds.
func prepareSocketDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating directory: %w", err)
	}
	// A symbolic link as the last component (e.g. a planted /tmp/strait-UID) must itself belong
	// to the proxy's user or root, and so must its target; the directories above are the
	// operator's choice.
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if !ownedBySelfOrRoot(fi) {
			return fmt.Errorf("%s is a symbolic link of uid %d, not of the proxy's uid %d or root", dir, fileUID(fi), os.Geteuid())
		}
		if fi, err = os.Stat(dir); err != nil {
			return err
		}
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if !ownedBySelfOrRoot(fi) {
		return fmt.Errorf("directory %s belongs to uid %d, not to the proxy's uid %d or root", dir, fileUID(fi), os.Geteuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("directory %s (mode %#o) is writable by other users: choose one only the proxy's user can write", dir, fi.Mode().Perm())
	}
	return nil
}

func fileUID(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

func ownedBySelfOrRoot(fi fs.FileInfo) bool {
	uid := fileUID(fi)
	return uid == os.Geteuid() || uid == 0
}

// removeStaleSocket removes a socket file at path that no process accepts on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return errors.New("in use: another process serves on it (is another proxy of this workload running?)")
	}
	return os.Remove(path)
}

// peer is the credentials of an admin socket connection, from SO_PEERCRED.
type peer struct {
	uid uint32
	pid int32
	err error // why the credentials are unknown
}

type peerKey struct{}

// withPeer is the socket server's ConnContext: it records the connection's peer credentials.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	var p peer
	if uc, ok := c.(*net.UnixConn); ok {
		p.uid, p.pid, p.err = peerCred(uc)
	} else {
		p.err = fmt.Errorf("not a Unix socket connection (%T)", c)
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// requireOwner serves h to peers whose uid is the proxy's or root's and answers 403 to others,
// and to peers whose credentials are unknown.
func (s *Server) requireOwner(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := r.Context().Value(peerKey{}).(peer)
		switch {
		case !ok:
			p.err = errors.New("no peer credentials")
			fallthrough
		case p.err != nil:
			s.opts.Logger.Warn("admin socket: refused a peer of unknown credentials", "path", r.URL.Path, "error", p.err)
			http.Error(w, "admin socket: the peer's credentials are unknown", http.StatusForbidden)
			return
		case p.uid != s.ownerUID && p.uid != 0:
			s.opts.Logger.Warn("admin socket: refused another user", "path", r.URL.Path, "uid", p.uid, "pid", p.pid)
			http.Error(w, fmt.Sprintf("admin socket: uid %d may not use this proxy's admin socket (only uid %d and root)", p.uid, s.ownerUID), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
