// Package memtrim keeps strait-proxy's resident set to what it uses. Most of a Go proxy's
// resident memory at idle is its own executable: the pages of code and read-only data that
// start-up, configuration decoding and package initialisation touched once (protobuf
// descriptors, type registries) and that the request path never touches again. They stay
// mapped, and counted in the process's RSS, until the kernel reclaims them under pressure.
//
// ReleaseText tells the kernel (madvise MADV_DONTNEED) that the executable's read-only
// mappings are not needed: the pages leave the process's page tables at once, and any page
// used again is mapped back from the page cache on its next access (a minor fault, no I/O
// while the page is cached). Only mappings of the executable file that are not writable are
// advised: code, read-only data and the symbol tables; writable data, the heap and stacks are
// never touched. The page cache itself is shared with every process that runs the same
// binary, and is left to the kernel.
//
// Only a statically linked, position-dependent executable (ELF type ET_EXEC with no dynamic
// section or interpreter: what `make build` and the images ship) is released. In a
// position-independent or dynamically linked one, part of the read-only mappings are pages the
// loader relocated after start-up (RELRO: the GOT, itabs, data.rel.ro), private modified copies
// that the kernel would discard and read back unrelocated from the file; ReleaseText releases
// nothing there, and never a PT_GNU_RELRO range.
//
// A Trimmer runs ReleaseText, and returns the Go heap's free pages to the kernel
// (debug.FreeOSMemory), once configuration has settled: after the proxy's first
// configuration and after later updates, at most once per interval.
package memtrim

import (
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Mapping is one line of /proc/self/maps that ReleaseText advises.
type Mapping struct {
	Start, End uintptr
	Perms      string
}

// textMappings returns the read-only mappings of the file exe listed in maps (the format of
// /proc/PID/maps).
func textMappings(maps *bufio.Scanner, exe string) ([]Mapping, error) {
	var out []Mapping
	for maps.Scan() {
		f := strings.Fields(maps.Text())
		// address perms offset dev inode pathname (the path may contain spaces or " (deleted)")
		if len(f) < 6 {
			continue
		}
		path := strings.Join(f[5:], " ")
		if path != exe || len(f[1]) < 4 || f[1][1] != '-' || f[1][3] != 'p' {
			continue // another file, or writable, or shared
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("maps line %q: no address range", maps.Text())
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("maps line %q: bad address range", maps.Text())
		}
		out = append(out, Mapping{Start: uintptr(start), End: uintptr(end), Perms: f[1]})
	}
	return out, maps.Err()
}

// ErrNotStatic is returned by ReleaseText for an executable whose read-only mappings may hold
// relocated pages (position-independent or dynamically linked): nothing is released.
var ErrNotStatic = errors.New("the executable is not statically linked at a fixed address: its read-only mappings may hold relocated pages")

// releasable reports whether exe is an ELF executable whose read-only mappings hold only file
// contents, and returns the address ranges that must never be released (PT_GNU_RELRO).
func releasable(exe string) (relro [][2]uintptr, err error) {
	f, err := elf.Open(exe)
	if err != nil {
		return nil, fmt.Errorf("reading the executable's ELF headers: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC {
		return nil, ErrNotStatic
	}
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP, elf.PT_DYNAMIC:
			return nil, ErrNotStatic
		case elf.PT_GNU_RELRO:
			relro = append(relro, [2]uintptr{uintptr(p.Vaddr), uintptr(p.Vaddr + p.Memsz)})
		}
	}
	return relro, nil
}

// ReleaseText advises the kernel that the executable's read-only private mappings are not
// needed now, and returns the mappings advised. It is safe at any time: a page is mapped
// back from the file on its next access. For an executable that is not statically linked at
// a fixed address it releases nothing and returns ErrNotStatic.
func ReleaseText() ([]Mapping, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("finding the executable: %w", err)
	}
	relro, err := releasable("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("reading the memory map: %w", err)
	}
	defer f.Close()
	all, err := textMappings(bufio.NewScanner(f), exe)
	if err != nil {
		return nil, err
	}
	var ms []Mapping
	for _, m := range all {
		if !overlaps(m, relro) {
			ms = append(ms, m)
		}
	}
	for _, m := range ms {
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.Start, m.End-m.Start, syscall.MADV_DONTNEED); errno != 0 {
			return nil, fmt.Errorf("madvise %#x-%#x: %w", m.Start, m.End, errno)
		}
	}
	return ms, nil
}

// overlaps reports whether m overlaps one of the ranges.
func overlaps(m Mapping, ranges [][2]uintptr) bool {
	for _, r := range ranges {
		if m.Start < r[1] && r[0] < m.End {
			return true
		}
	}
	return false
}

// Trimmer releases memory once the configuration has settled. The zero value is not usable;
// use New.
type Trimmer struct {
	settle, interval time.Duration
	kick             chan struct{}
	release          func() error
	// Trimmed, when set, is called after each release (tests, logging).
	Trimmed func(err error)
}

// New returns a Trimmer that releases settle after the last Kick (or an interval after the
// first Kick of a burst that does not pause), and not more often than once per interval.
func New(settle, interval time.Duration) *Trimmer {
	return &Trimmer{settle: settle, interval: interval, kick: make(chan struct{}, 1), release: releaseAll}
}

func releaseAll() error {
	debug.FreeOSMemory()
	if _, err := ReleaseText(); err != nil && !errors.Is(err, ErrNotStatic) {
		return err
	}
	return nil
}

// Kick reports a configuration change; it never blocks.
func (t *Trimmer) Kick() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Run releases memory after each settled run of Kicks until ctx ends.
func (t *Trimmer) Run(ctx context.Context) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.kick:
		}
		// Settle: wait until no Kick came for settle, and interval since the last release.
		burst := time.Now()
		wait := t.settle
		for {
			if d := t.interval - time.Since(last); !last.IsZero() && d > wait {
				wait = d
			}
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-t.kick:
				timer.Stop()
				wait = t.settle
				// Updates that never pause for settle (endpoint churn) must not put the
				// release off for ever: a burst an interval old is released now.
				if d := t.interval - time.Since(burst); d < wait {
					wait = max(d, 0)
				}
				continue
			case <-timer.C:
			}
			break
		}
		err := t.release()
		last = time.Now()
		if t.Trimmed != nil {
			t.Trimmed(err)
		}
	}
}
