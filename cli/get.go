package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/embedded"
)

type objectHeader struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name              string    `json:"name"`
		Namespace         string    `json:"namespace"`
		CreationTimestamp time.Time `json:"creationTimestamp"`
	} `json:"metadata"`
}

func newGet(g *globals) *cobra.Command {
	var namespace, output string
	var all bool
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List configuration stored in straitd",
		Long:  "get lists objects of a kind as a table, YAML or JSON. KIND is one of " + kindNamesHelp() + ".",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			if _, ok := config.KindFor(args[0]); !ok {
				return fmt.Errorf("unknown kind %q: want one of %s", args[0], kindNamesHelp())
			}
			ns := namespace
			if all {
				ns = ""
			}
			items, err := embedded.NewClient(g.addr).Get(cmd.Context(), args[0], ns, name)
			if err != nil {
				return err
			}
			var st map[string]objectStatus
			if output == "" {
				kind, _ := config.KindFor(args[0])
				st = objectStatuses(cmd.Context(), g.addr, kind)
			}
			return printObjects(g.stdout, items, output, all, name != "", st)
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "`NAMESPACE` to list")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list across all namespaces")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml or json (default: table)")
	return cmd
}

// kindShortNames are Istio's short names of the kinds, as `get` accepts them (config.KindFor).
var kindShortNames = map[config.Kind]string{
	config.VirtualService: "vs", config.DestinationRule: "dr", config.ServiceEntry: "se", config.WorkloadEntry: "we",
	config.WorkloadGroup: "wg", config.Gateway: "gw", config.PeerAuthentication: "pa", config.AuthorizationPolicy: "ap",
	config.RequestAuthentication: "ra", config.RateLimit: "rl",
}

// kindNamesHelp lists the kinds `get` accepts: "virtualservice (vs), destinationrule (dr), ...".
func kindNamesHelp() string {
	names := make([]string, 0, len(config.Kinds))
	for _, k := range config.Kinds {
		n := strings.ToLower(string(k))
		if s := kindShortNames[k]; s != "" {
			n += " (" + s + ")"
		}
		names = append(names, n)
	}
	return strings.Join(names, ", ")
}

// objectStatus is what straitd says of one served object: where it came from and what the
// analyzers found (the worst level and its codes; "OK" when nothing).
type objectStatus struct{ origin, status string }

// objectStatuses reads straitd's /debug/configz for the objects of kind, keyed "ns/name": their
// origin (a file of the watched directory or the store) and their analysis status. It is best
// effort: without an answer the table just has no such columns.
func objectStatuses(ctx context.Context, addr string, kind config.Kind) map[string]objectStatus {
	b, err := fetch(ctx, addr, "/debug/configz")
	if err != nil {
		return nil
	}
	var cz struct {
		Objects []struct {
			Kind, Namespace, Name, Origin string
		} `json:"objects"`
		Analysis []struct {
			Code     string `json:"code"`
			Level    string `json:"level"`
			Resource struct {
				Kind, Namespace, Name string
			} `json:"resource"`
		} `json:"analysis"`
	}
	if json.Unmarshal(b, &cz) != nil {
		return nil
	}
	out := map[string]objectStatus{}
	for _, o := range cz.Objects {
		if o.Kind == string(kind) {
			out[o.Namespace+"/"+o.Name] = objectStatus{origin: o.Origin, status: "OK"}
		}
	}
	rank := map[string]int{"Info": 1, "Warning": 2, "Error": 3}
	worst := map[string]string{}
	for _, m := range cz.Analysis {
		if m.Resource.Kind != string(kind) {
			continue
		}
		key := m.Resource.Namespace + "/" + m.Resource.Name
		st, ok := out[key]
		if !ok {
			continue
		}
		if rank[m.Level] > rank[worst[key]] {
			worst[key] = m.Level
			st.status = m.Level + " " + m.Code
		} else if m.Level == worst[key] && !strings.Contains(st.status, m.Code) {
			st.status += "," + m.Code
		}
		out[key] = st
	}
	return out
}

func printObjects(w io.Writer, items []json.RawMessage, output string, withNS, single bool, statuses map[string]objectStatus) error {
	switch output {
	case "json":
		var v any = items
		if single && len(items) == 1 {
			v = items[0]
		} else {
			v = map[string]any{"apiVersion": "v1", "kind": "List", "items": items}
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("rendering json: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "yaml":
		for i, it := range items {
			b, err := yaml.JSONToYAML(it)
			if err != nil {
				return fmt.Errorf("rendering yaml: %w", err)
			}
			if i > 0 {
				io.WriteString(w, "---\n")
			}
			w.Write(b)
		}
		return nil
	case "":
	default:
		return fmt.Errorf("unknown output format %q: use yaml or json", output)
	}
	if len(items) == 0 {
		_, err := io.WriteString(w, "No resources found.\n")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	head := "NAME\tAGE"
	if withNS {
		head = "NAMESPACE\t" + head
	}
	if statuses != nil {
		head += "\tSTATUS\tORIGIN"
	}
	fmt.Fprintln(tw, head)
	for _, it := range items {
		var h objectHeader
		if err := json.Unmarshal(it, &h); err != nil {
			return fmt.Errorf("reading object: %w", err)
		}
		age := "<unknown>"
		if !h.Metadata.CreationTimestamp.IsZero() {
			age = shortDuration(time.Since(h.Metadata.CreationTimestamp))
		}
		row := h.Metadata.Name + "\t" + age
		if withNS {
			row = h.Metadata.Namespace + "\t" + row
		}
		if statuses != nil {
			st, ok := statuses[h.Metadata.Namespace+"/"+h.Metadata.Name]
			if !ok {
				st = objectStatus{status: "not served", origin: "-"} // stored, but refused or not yet in a snapshot
			}
			row += "\t" + st.status + "\t" + st.origin
		}
		fmt.Fprintln(tw, row)
	}
	return tw.Flush()
}

// shortDuration renders an age as kubectl does: 45s, 12m, 3h, 2d.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}
