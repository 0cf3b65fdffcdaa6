// Package netns creates the network plumbing of workloads run as test hosts: named network
// namespaces (as `ip netns add` does), a bridge in the host namespace, and veth pairs that put a
// namespace on the bridge with its own address and a default route through the bridge. It shells
// out to iproute2's `ip` for configuration and enters namespaces with setns(2) on a locked thread
// to open sockets or start processes there. Everything here needs root (CAP_NET_ADMIN and
// CAP_SYS_ADMIN).
package netns

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Available reports why this process cannot create namespaces, or nil when it can: it must be
// root and have `ip` (Debian package iproute2).
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("not root: network namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN")
	}
	if _, err := ipPath(); err != nil {
		return err
	}
	return nil
}

func ipPath() (string, error) {
	for _, p := range []string{"ip", "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", errors.New("ip not found (Debian package iproute2)")
}

// IP runs `ip args...` and returns its output.
func IP(args ...string) (string, error) {
	path, err := ipPath()
	if err != nil {
		return "", err
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// NS is a named network namespace (/run/netns/NAME).
type NS struct {
	Name string
}

// Path returns the namespace's bind mount.
func (n *NS) Path() string { return "/run/netns/" + n.Name }

// Add creates the named namespace with its loopback interface up. An existing namespace of that
// name is an error.
func Add(name string) (*NS, error) {
	if _, err := IP("netns", "add", name); err != nil {
		return nil, fmt.Errorf("creating network namespace %s: %w", name, err)
	}
	n := &NS{Name: name}
	if _, err := n.IP("link", "set", "lo", "up"); err != nil {
		_ = n.Delete()
		return nil, err
	}
	return n, nil
}

// Exists reports whether the named namespace exists.
func Exists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// Delete removes the namespace (its veth ends go with it). Processes still inside keep it alive
// until they exit.
func (n *NS) Delete() error {
	if !Exists(n.Name) {
		return nil
	}
	if _, err := IP("netns", "delete", n.Name); err != nil {
		return fmt.Errorf("deleting network namespace %s: %w", n.Name, err)
	}
	return nil
}

// IP runs `ip -n NAME args...`: ip inside the namespace.
func (n *NS) IP(args ...string) (string, error) {
	return IP(append([]string{"-n", n.Name}, args...)...)
}

// Do runs f on an OS thread that is inside the namespace. Sockets f opens belong to the
// namespace, and processes f starts (exec.Cmd.Start) begin there. f must not start goroutines
// that expect to be in the namespace.
func (n *NS) Do(f func() error) error {
	target, err := os.Open(n.Path())
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", n.Name, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening this thread's network namespace: %w", err)
	}
	defer self.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering network namespace %s: %w", n.Name, err)
	}
	ferr := f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and dies with its goroutine: it must not run other code.
		return errors.Join(ferr, fmt.Errorf("leaving network namespace %s: %w", n.Name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Start starts cmd inside the namespace.
func (n *NS) Start(cmd *exec.Cmd) error {
	return n.Do(cmd.Start)
}

// Bridge is a Linux bridge in the host namespace that workloads' veths attach to.
type Bridge struct {
	Name string
	// Gateway is the bridge's own address with the prefix length of the workloads' subnet,
	// for example 198.18.0.1/15.
	Gateway netip.Prefix
}

// EnsureBridge creates the bridge with its address, or finds it already there, and brings it up.
func EnsureBridge(b Bridge) error {
	if _, err := IP("link", "show", "dev", b.Name); err != nil {
		if _, err := IP("link", "add", b.Name, "type", "bridge"); err != nil && !strings.Contains(err.Error(), "File exists") {
			return fmt.Errorf("creating bridge %s: %w", b.Name, err)
		}
	}
	if out, err := IP("-o", "addr", "show", "dev", b.Name); err != nil {
		return err
	} else if !strings.Contains(out, " "+b.Gateway.String()+" ") {
		if _, err := IP("addr", "add", b.Gateway.String(), "dev", b.Name); err != nil && !strings.Contains(err.Error(), "File exists") {
			return fmt.Errorf("adding %s to bridge %s: %w", b.Gateway, b.Name, err)
		}
	}
	if _, err := IP("link", "set", b.Name, "up"); err != nil {
		return err
	}
	return nil
}

// BridgeInUse reports whether any interface is attached to the bridge.
func BridgeInUse(name string) (bool, error) {
	out, err := IP("-o", "link", "show", "master", name)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(out) != "", nil
}

// DeleteBridgeIfUnused deletes the bridge unless an interface is still attached to it. It
// reports whether the bridge was deleted (or did not exist).
func DeleteBridgeIfUnused(name string) (bool, error) {
	if _, err := IP("link", "show", "dev", name); err != nil {
		return true, nil
	}
	used, err := BridgeInUse(name)
	if err != nil || used {
		return false, err
	}
	if _, err := IP("link", "delete", name, "type", "bridge"); err != nil {
		return false, fmt.Errorf("deleting bridge %s: %w", name, err)
	}
	return true, nil
}

// Attach connects ns to the bridge with a veth pair: hostIf (at most 15 characters) on the bridge
// in the host namespace, eth0 in ns with addr (the prefix length of b.Gateway), up, and a default
// route via the bridge's address.
func Attach(ns *NS, b Bridge, hostIf string, addr netip.Addr) error {
	if _, err := IP("link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", ns.Name); err != nil {
		return fmt.Errorf("creating veth %s: %w", hostIf, err)
	}
	steps := [][]string{
		{"link", "set", hostIf, "master", b.Name},
		{"link", "set", hostIf, "up"},
	}
	for _, s := range steps {
		if _, err := IP(s...); err != nil {
			_ = DeleteLink(hostIf)
			return err
		}
	}
	inner := [][]string{
		{"addr", "add", netip.PrefixFrom(addr, b.Gateway.Bits()).String(), "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"route", "add", "default", "via", b.Gateway.Addr().String()},
	}
	for _, s := range inner {
		if _, err := ns.IP(s...); err != nil {
			_ = DeleteLink(hostIf)
			return err
		}
	}
	return nil
}

// DeleteLink deletes a host-namespace interface if it exists (a veth's peer goes with it).
func DeleteLink(name string) error {
	if _, err := IP("link", "show", "dev", name); err != nil {
		return nil
	}
	if _, err := IP("link", "delete", name); err != nil {
		if _, serr := IP("link", "show", "dev", name); serr != nil {
			return nil // gone meanwhile: a veth goes with its peer's namespace
		}
		return fmt.Errorf("deleting interface %s: %w", name, err)
	}
	return nil
}

// Lock takes an exclusive lock (flock) named name under /run/strait/locks, waiting for it, so
// that processes creating and deleting a shared bridge do not race. The returned func unlocks.
func Lock(name string) (func(), error) {
	dir := "/run/strait/locks"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	f, err := os.OpenFile(dir+"/"+name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", name, err)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}
