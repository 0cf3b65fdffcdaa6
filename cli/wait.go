package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/controlplane/config"
)

// waitFlags are `strait wait`'s options, istioctl experimental wait's.
type waitFlags struct {
	forWhat         string // distribution or delete
	resourceVersion string
	threshold       float64
	timeout         time.Duration
	poll            time.Duration
}

// newWait returns `strait wait KIND NAME[.NAMESPACE]`: it returns once straitd serves the object
// (or no longer does, --for delete) and the share --threshold of connected proxies has
// acknowledged configuration generated from a mesh snapshot that reflects it.
func newWait(g *globals) *cobra.Command {
	f := waitFlags{poll: 250 * time.Millisecond}
	cmd := &cobra.Command{
		Use:   "wait KIND NAME[.NAMESPACE]",
		Short: "Wait until a config object is distributed to the proxies (istioctl x wait)",
		Long: `wait returns when straitd serves the object (with --resource-version, that version of it;
with --for delete, when it no longer serves it) and at least --threshold of the connected proxies
have acknowledged every resource type generated from a mesh snapshot that includes the change.
It fails after --timeout, saying how many proxies are behind.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, ok := config.KindFor(args[0])
			if !ok {
				return fmt.Errorf("unknown kind %q", args[0])
			}
			name, ns, _ := strings.Cut(args[1], ".")
			if ns == "" {
				ns = "default"
			}
			if f.forWhat != "distribution" && f.forWhat != "delete" {
				return fmt.Errorf("--for %q: want distribution or delete", f.forWhat)
			}
			if f.threshold <= 0 || f.threshold > 1 {
				return fmt.Errorf("--threshold %v: want a fraction in (0, 1]", f.threshold)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			msg, err := waitFor(ctx, g.addr, kind, ns, name, f)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, msg)
			return nil
		},
	}
	cmd.Flags().StringVar(&f.forWhat, "for", "distribution", "distribution (the object is served) or delete (it is gone)")
	cmd.Flags().StringVar(&f.resourceVersion, "resource-version", "", "wait for this resourceVersion of the object (as strait get -o yaml shows)")
	cmd.Flags().Float64Var(&f.threshold, "threshold", 1, "share of the connected proxies that must have the change")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}

// waitFor polls straitd until the object's state is served and distributed, or ctx ends.
func waitFor(ctx context.Context, addr string, kind config.Kind, ns, name string, f waitFlags) (string, error) {
	what := fmt.Sprintf("%s %s.%s", kind, name, ns)
	var snapshot uint64 // the first mesh snapshot with the wanted state of the object
	last := "straitd was not reached"
	for {
		if snapshot == 0 {
			v, ok, err := objectState(ctx, addr, kind, ns, name, f)
			switch {
			case err != nil:
				last = err.Error()
			case ok:
				snapshot = v
			case f.forWhat == "delete":
				last = what + " is still served"
			default:
				last = what + " is not served yet"
			}
		}
		if snapshot != 0 {
			synced, total, err := proxiesAt(ctx, addr, snapshot)
			switch {
			case err != nil:
				last = err.Error()
			case total == 0:
				return fmt.Sprintf("%s: served at mesh version %d; no proxies are connected", what, snapshot), nil
			case float64(synced) >= f.threshold*float64(total):
				state := "present"
				if f.forWhat == "delete" {
					state = "removed"
				}
				return fmt.Sprintf("%s %s on %d out of %d proxies (mesh version %d)", what, state, synced, total, snapshot), nil
			default:
				last = fmt.Sprintf("%s: %d of %d proxies have acknowledged mesh version %d", what, synced, total, snapshot)
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("timed out: %s", last)
		case <-time.After(f.poll):
		}
	}
}

// objectState reports whether straitd's current snapshot has the wanted state of the object
// (present, with the resource version if one is given; or absent for --for delete), and that
// snapshot's version.
func objectState(ctx context.Context, addr string, kind config.Kind, ns, name string, f waitFlags) (uint64, bool, error) {
	b, err := fetch(ctx, addr, "/debug/configz")
	if err != nil {
		return 0, false, err
	}
	var cz struct {
		Version uint64 `json:"version"`
		Objects []struct {
			Kind, Namespace, Name, ResourceVersion string
		} `json:"objects"`
	}
	if err := json.Unmarshal(b, &cz); err != nil {
		return 0, false, fmt.Errorf("reading straitd's /debug/configz: %w", err)
	}
	found := false
	for _, o := range cz.Objects {
		if o.Kind == string(kind) && o.Namespace == ns && o.Name == name &&
			(f.resourceVersion == "" || o.ResourceVersion == f.resourceVersion) {
			found = true
			break
		}
	}
	if found == (f.forWhat == "delete") || cz.Version == 0 {
		return 0, false, nil
	}
	return cz.Version, true, nil
}

// proxiesAt counts the connected proxies whose every resource type is acknowledged (SYNCED) and
// was generated from mesh snapshot v or a later one.
func proxiesAt(ctx context.Context, addr string, v uint64) (synced, total int, err error) {
	b, err := fetch(ctx, addr, "/debug/syncz")
	if err != nil {
		return 0, 0, err
	}
	var proxies []struct {
		MeshVersion uint64 `json:"meshVersion"`
		Types       map[string]struct {
			Status string `json:"status"`
		} `json:"types"`
	}
	if err := json.Unmarshal(b, &proxies); err != nil {
		return 0, 0, errors.Join(errors.New("reading straitd's /debug/syncz"), err)
	}
	for _, p := range proxies {
		total++
		if p.MeshVersion < v {
			continue
		}
		ok := true
		for _, t := range p.Types {
			if t.Status != "SYNCED" && t.Status != "NOT SENT" {
				ok = false
			}
		}
		if ok {
			synced++
		}
	}
	return synced, total, nil
}
