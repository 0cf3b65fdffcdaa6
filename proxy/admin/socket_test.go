package admin

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/stats"
)

const nobody = 65534

// serve starts an admin server on a free loopback port and the socket sock, and stops it when
// the test ends.
func serve(t *testing.T, src Source, sock string) *Server {
	t.Helper()
	s, err := Listen(Options{Address: "127.0.0.1:0", Socket: sock, Source: src, Stats: stats.NewStore(), Level: new(slog.LevelVar), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	testenv.ServeUntilEnd(t, s.Serve, s.Close)
	return s
}

// socketClient is an HTTP client that connects to the Unix socket path.
func socketClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
}

func send(t *testing.T, c *http.Client, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSocketEndToEnd: a real server: the socket file has mode 0600 in a created 0700
// directory; the owner stops the proxy through it; over TCP the same request is refused; the
// socket file is gone after Close.
func TestSocketEndToEnd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "admin.sock")
	src := &fakeSource{}
	s := serve(t, src, sock)
	if s.SocketPath() != sock {
		t.Fatalf("SocketPath = %q", s.SocketPath())
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket with mode 0600", fi.Mode())
	}
	if di, _ := os.Stat(filepath.Dir(sock)); di.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory mode %v, want 0700", di.Mode().Perm())
	}
	tcp := "http://" + s.Addr().String()
	if code, body := send(t, http.DefaultClient, "POST", tcp+"/quitquitquit"); code != http.StatusForbidden || !strings.Contains(body, sock) {
		t.Fatalf("POST /quitquitquit over TCP = %d %q", code, body)
	}
	if code, body := send(t, http.DefaultClient, "GET", tcp+"/server_info"); code != 200 || !strings.Contains(body, `"admin_socket": "`+sock+`"`) {
		t.Fatalf("/server_info = %d %q", code, body)
	}
	if code, _ := send(t, http.DefaultClient, "GET", tcp+"/stats"); code != 200 {
		t.Fatalf("/stats over TCP = %d", code)
	}
	if src.quit.Load() != 0 {
		t.Fatal("quit over TCP reached the proxy")
	}
	c := socketClient(sock)
	if code, _ := send(t, c, "GET", "http://localhost/stats"); code != 200 {
		t.Fatalf("/stats on the socket = %d", code)
	}
	if code, _ := send(t, c, "POST", "http://localhost/quitquitquit"); code != 200 || src.quit.Load() != 1 {
		t.Fatalf("POST /quitquitquit on the socket = %d", code)
	}
	s.Close()
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file left after Close: %v", err)
	}
}

// TestListenSocketChecks: what ListenSocket refuses, and the stale socket it replaces.
func TestListenSocketChecks(t *testing.T) {
	dir := t.TempDir()
	mustListen := func(path string) *net.UnixListener {
		t.Helper()
		ln, err := ListenSocket(path)
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	refused := func(path, want string) {
		t.Helper()
		ln, err := ListenSocket(path)
		if err == nil {
			ln.Close()
			t.Fatalf("ListenSocket(%s) succeeded, want an error with %q", path, want)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("ListenSocket(%s): %v, want %q", path, err, want)
		}
	}
	refused("admin.sock", "must be absolute")
	refused("/"+strings.Repeat("x", 120)+"/admin.sock", "longer than")

	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777) // despite the umask
	refused(filepath.Join(open, "admin.sock"), "writable by other users")

	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	refused(file, "not a socket")

	live := filepath.Join(dir, "live.sock")
	ln := mustListen(live)
	refused(live, "in use")
	ln.Close()

	// A socket whose server is gone (SIGKILL leaves the file) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	ln = mustListen(stale)
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(stale); err != nil {
		t.Fatal(err)
	}
	mustListen(stale).Close()

	if os.Geteuid() == 0 {
		theirs := filepath.Join(dir, "theirs")
		os.Mkdir(theirs, 0o700)
		if err := os.Chown(theirs, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		refused(filepath.Join(theirs, "admin.sock"), "belongs to uid 65534")
		link := filepath.Join(dir, "link")
		os.Symlink(theirs, link)
		refused(filepath.Join(link, "admin.sock"), "belongs to uid 65534")
		os.Lchown(link, nobody, nobody)
		refused(filepath.Join(link, "admin.sock"), "symbolic link of uid 65534")
	}
}

// TestSocketBestEffort: a default socket that cannot be bound leaves the TCP endpoints up; an
// explicit one fails Listen.
func TestSocketBestEffort(t *testing.T) {
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	sock := filepath.Join(open, "admin.sock")
	o := Options{Address: "127.0.0.1:0", Socket: sock, Source: &fakeSource{}, Logger: quiet}
	if s, err := Listen(o); err == nil {
		s.tcpLn.Close()
		s.sockLn.Close()
		t.Fatal("an unsafe explicit socket was accepted")
	}
	o.SocketBestEffort = true
	s, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.tcpLn.Close()
	if s.SocketPath() != "" || s.sock != nil || s.tcp == nil {
		t.Fatalf("best effort: socket %q", s.SocketPath())
	}
	if _, err := Listen(Options{Address: "-", Socket: "-", Source: &fakeSource{}}); err == nil {
		t.Fatal("Listen with nothing to listen on succeeded")
	}
}

func TestDefaultSocketPath(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	if got, want := DefaultSocketPath("default", "reviews-v1", "127.19.0.1:15000"), "/run/user/1000/strait/default.reviews-v1@127.19.0.1_15000.sock"; got != want {
		t.Fatalf("DefaultSocketPath = %q, want %q", got, want)
	}
	if got, want := DefaultSocketPath("ns", "a/b c", "[::1]:15000"), "/run/user/1000/strait/ns.a_b_c@__1_15000.sock"; got != want {
		t.Fatalf("DefaultSocketPath = %q, want %q", got, want)
	}
	// Replicas (same name, other address) and namespaced pods (same address, other name) differ.
	a := DefaultSocketPath("default", "reviews", "127.19.0.1:15000")
	if a == DefaultSocketPath("default", "reviews", "127.19.1.1:15000") || a == DefaultSocketPath("default", "ratings", "127.19.0.1:15000") {
		t.Fatal("two proxies of one host share a default socket path")
	}
	long := strings.Repeat("p", 200)
	p1, p2 := DefaultSocketPath("default", long, "127.0.0.1:15000"), DefaultSocketPath("default", long+"2", "127.0.0.1:15000")
	if len(p1) > maxSocketPath || !strings.HasPrefix(p1, "/run/user/1000/strait/admin-") || p1 == p2 {
		t.Fatalf("long names: %q %q", p1, p2)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	if d := SocketDir(); os.Geteuid() == 0 && d != "/var/run/strait" || os.Geteuid() != 0 && !strings.HasSuffix(d, "/strait-"+strconv.Itoa(os.Geteuid())) {
		t.Fatalf("SocketDir = %q", d)
	}
}

// dialAs connects to the Unix socket path from a thread whose credentials are uid and gid (and
// no supplementary groups): raw set*id system calls change only the calling thread, which is
// locked to the goroutine and discarded with it. SO_PEERCRED records the connecting thread's
// credentials, as for a separate process of that user.
func dialAs(t *testing.T, uid, gid int, path string) (net.Conn, error) {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		for _, call := range [][4]uintptr{
			{syscall.SYS_SETGROUPS, 0, 0, 0},
			{syscall.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)},
			{syscall.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)},
		} {
			if _, _, errno := syscall.RawSyscall(call[0], call[1], call[2], call[3]); errno != 0 {
				ch <- result{err: errno}
				return
			}
		}
		c, err := net.Dial("unix", path)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// roundTrip sends one request on c and returns the status and body.
func roundTrip(t *testing.T, c net.Conn, method, path string) (int, string) {
	t.Helper()
	defer c.Close()
	req, _ := http.NewRequest(method, "http://localhost"+path, nil)
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSocketRefusesOtherUser: another local user cannot connect to the socket (mode 0600 in a
// 0700 directory), and when the modes are loosened by mistake, the SO_PEERCRED check still
// refuses it; the proxy's user (root here) is served.
func TestSocketRefusesOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: connects as uid nobody (65534) to show the socket refuses other users")
	}
	base, err := os.MkdirTemp("", "admin-peer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755) // nobody may reach the socket's directory, not enter it
	sock := filepath.Join(base, "run", "admin.sock")
	src := &fakeSource{}
	serve(t, src, sock)

	if c, err := dialAs(t, nobody, nobody, sock); err == nil {
		c.Close()
		t.Fatal("uid nobody connected to the admin socket (mode 0600 in a 0700 directory)")
	} else if !errors.Is(err, syscall.EACCES) {
		t.Fatalf("uid nobody: %v, want permission denied", err)
	}

	// A mistake: the directory and the socket opened to everyone. The peer check still refuses.
	os.Chmod(filepath.Dir(sock), 0o755)
	os.Chmod(sock, 0o666)
	for _, path := range []string{"/quitquitquit", "/drain_listeners", "/logging?level=debug", "/stats"} {
		c, err := dialAs(t, nobody, nobody, sock)
		if err != nil {
			t.Fatalf("uid nobody could not connect to the opened socket: %v", err)
		}
		if code, body := roundTrip(t, c, "POST", path); code != http.StatusForbidden || !strings.Contains(body, "uid 65534 may not") {
			t.Fatalf("POST %s as uid nobody = %d %q, want 403", path, code, body)
		}
	}
	if src.quit.Load() != 0 || src.drained.Load() != 0 {
		t.Fatal("a request of uid nobody reached the proxy")
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := roundTrip(t, c, "POST", "/quitquitquit"); code != 200 || src.quit.Load() != 1 {
		t.Fatalf("root: POST /quitquitquit = %d", code)
	}
}
