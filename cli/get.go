package cli

import (
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
			return printObjects(g.stdout, items, output, all, name != "")
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
	config.RequestAuthentication: "ra",
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

func printObjects(w io.Writer, items []json.RawMessage, output string, withNS, single bool) error {
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
	if withNS {
		fmt.Fprintln(tw, "NAMESPACE\tNAME\tAGE")
	} else {
		fmt.Fprintln(tw, "NAME\tAGE")
	}
	for _, it := range items {
		var h objectHeader
		if err := json.Unmarshal(it, &h); err != nil {
			return fmt.Errorf("reading object: %w", err)
		}
		age := "<unknown>"
		if !h.Metadata.CreationTimestamp.IsZero() {
			age = shortDuration(time.Since(h.Metadata.CreationTimestamp))
		}
		if withNS {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", h.Metadata.Namespace, h.Metadata.Name, age)
		} else {
			fmt.Fprintf(tw, "%s\t%s\n", h.Metadata.Name, age)
		}
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
