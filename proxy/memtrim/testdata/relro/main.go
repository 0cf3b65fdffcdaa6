// Command relro releases its own executable's pages with memtrim.ReleaseText and then uses
// interfaces, errors and formatted output, whose itabs and type data a position-independent
// or dynamically linked build keeps in relocated read-only pages. It prints "released N" and
// exits 0 when it survived.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/strait-mesh/strait/proxy/memtrim"
)

type shape interface{ Area() float64 }

type square struct{ side float64 }

func (q square) Area() float64 { return q.side * q.side }

var shapes = []shape{square{2}}

func main() {
	fmt.Println("before", shapes[0].Area(), errors.New("x"), strings.Repeat("a", 3))
	ms, err := memtrim.ReleaseText()
	if err != nil && !errors.Is(err, memtrim.ErrNotStatic) {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	var w io.Writer = os.Stdout
	fmt.Fprintln(w, "after", shapes[0].Area(), errors.New("y"), strings.Repeat("b", 3))
	var e error = &os.PathError{Op: "open", Path: "p", Err: errors.New("z")}
	fmt.Println(e.Error())
	fmt.Println("released", len(ms))
}
