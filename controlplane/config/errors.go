package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Error is one problem found in a config document, while decoding or validating it. It names the
// file (Origin, and for decoding errors the Line where the document starts), the document (Kind,
// Namespace, Name — or Doc, the 1-based index of the document within the file, when the name is
// not known) and the field path, e.g. "spec.http[0].route[0].destination.host". Error() reads
// "FILE[:LINE]: KIND NAMESPACE/NAME: FIELD: MESSAGE".
type Error struct {
	Origin    string // file path, "store", "kubernetes", ...; may be empty
	Doc       int    // 1-based document index in Origin; 0 when unknown
	Line      int    // 1-based line of Field in Origin (where the document starts when not found); 0 when unknown
	Kind      Kind
	Namespace string
	Name      string
	Field     string // dotted path from the document root; empty for whole-document errors
	Msg       string
}

// Error formats the error as "FILE[:LINE]: KIND NAMESPACE/NAME: FIELD: MESSAGE".
func (e *Error) Error() string {
	var b strings.Builder
	if e.Origin != "" {
		b.WriteString(e.Origin)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	b.WriteString(e.object())
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// object names the document: "VirtualService default/reviews", or "document 3" when the name is
// not known.
func (e *Error) object() string {
	if e.Name != "" {
		kind := string(e.Kind)
		if kind == "" {
			kind = "object"
		}
		return fmt.Sprintf("%s %s/%s", kind, e.Namespace, e.Name)
	}
	if e.Kind != "" {
		if e.Doc > 0 {
			return fmt.Sprintf("%s (document %d)", e.Kind, e.Doc)
		}
		return string(e.Kind)
	}
	if e.Doc > 0 {
		return fmt.Sprintf("document %d", e.Doc)
	}
	return "document"
}

// Key returns the key of the object the error is about, and false when the document's kind or
// name is not known.
func (e *Error) Key() (Key, bool) {
	if e.Kind == "" || e.Name == "" {
		return Key{}, false
	}
	return Key{Kind: e.Kind, Namespace: e.Namespace, Name: e.Name}, true
}

// Warning is a finding that does not make config invalid but is most likely a mistake, such as a
// route to a subset that no DestinationRule defines (Istio reports these from its analyzers). Its
// fields mean what they mean in Error.
type Warning struct {
	Origin    string
	Kind      Kind
	Namespace string
	Name      string
	Field     string
	Msg       string
}

// Error formats the warning like Error, prefixed with "warning: ".
func (w *Warning) Error() string {
	e := Error{Origin: w.Origin, Kind: w.Kind, Namespace: w.Namespace, Name: w.Name, Field: w.Field, Msg: w.Msg}
	return "warning: " + e.Error()
}

// IsWarning reports whether err is (or wraps) a *Warning.
func IsWarning(err error) bool {
	var w *Warning
	return errors.As(err, &w)
}

// Errors flattens err (which may be built with errors.Join) into its *Error leaves. Errors that
// are not *Error are returned as they are.
func Errors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Errors(e)...)
		}
		return out
	}
	return []error{err}
}

// fieldErrs collects errors with their field paths while one object is validated; it is turned
// into *Error values naming the object at the end.
type fieldErrs struct {
	errs []fieldErr
}

type fieldErr struct {
	path string
	msg  string
}

func (f *fieldErrs) add(path, format string, args ...any) {
	f.errs = append(f.errs, fieldErr{path: path, msg: fmt.Sprintf(format, args...)})
}

// errFor returns an *Error about o.
func errFor(o *Object, field, msg string) *Error {
	return &Error{Origin: o.Origin, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Field: field, Msg: msg}
}

// join turns the collected field errors into one error about o (nil when there are none).
func (f *fieldErrs) join(o *Object) error {
	if len(f.errs) == 0 {
		return nil
	}
	errs := make([]error, 0, len(f.errs))
	for _, e := range f.errs {
		errs = append(errs, errFor(o, e.path, e.msg))
	}
	return errors.Join(errs...)
}

// eachItem checks every item of the list at path p: a null item is reported at "p[i]" as
// "<what> must not be null", any other is passed to check with its index and path "p[i]".
func eachItem[T comparable](fe *fieldErrs, p string, list []T, what string, check func(i int, ip string, item T)) {
	var null T
	for i, item := range list {
		ip := fmt.Sprintf("%s[%d]", p, i)
		if item == null {
			fe.add(ip, "%s must not be null", what)
			continue
		}
		check(i, ip, item)
	}
}

// namedInt is an integer field and its name, for validateNonNegative.
type namedInt struct {
	name string
	v    int32
}

// validateNonNegative reports each of fields (below path p) that is negative.
func validateNonNegative(fe *fieldErrs, p string, fields ...namedInt) {
	for _, f := range fields {
		if f.v < 0 {
			fe.add(p+"."+f.name, "%s %d must not be negative", f.name, f.v)
		}
	}
}
