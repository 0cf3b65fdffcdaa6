package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/analysis"
	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/embedded"
)

// SchemaValidationError (IST0106) is how `strait analyze` reports a document that does not
// decode or validate, as istioctl analyze does.
var schemaValidationError = analysis.Type{Code: "IST0106", Name: "SchemaValidationError", Level: analysis.Error, Template: "Schema validation error: %v"}

func newAnalyze(g *globals) *cobra.Command {
	var files []string
	var namespace, output string
	var all, selectors bool
	cmd := &cobra.Command{
		Use:   "analyze [-f FILE|DIR|-]... [-A | -n NAMESPACE] [-o json|yaml]",
		Short: "Analyze Istio configuration for mistakes (istioctl analyze)",
		Long: "analyze runs Istio's configuration analyzers (references to hosts, subsets and gateways that do not\n" +
			"exist, conflicting VirtualServices and DestinationRules, Sidecars selecting one workload, port names\n" +
			"without a protocol, deprecated fields, ...) and prints their messages with Istio's codes:\n\n" +
			"  Error [IST0101] (VirtualService default/reviews reviews.yaml:9) Referenced host+subset in destinationrule not found: \"reviews+v9\"\n\n" +
			"With -f it analyzes files offline, before they are applied; without, the live mesh of straitd.\n" +
			"Messages about namespace -n (default \"default\") are printed, or about every namespace with -A.\n" +
			"It exits non-zero when any message is an Error.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var msgs []analysis.Message
			var failed int // documents that could not be analyzed at all
			if len(files) > 0 {
				docs, err := readDocuments(files, g.stdin)
				if err != nil {
					return err
				}
				var errs []error
				msgs, errs = analyzeDocuments(docs, selectors)
				for _, err := range errs {
					fmt.Fprintf(g.stderr, "Error: %v\n", err)
				}
				failed = len(errs)
			} else {
				var err error
				if msgs, err = fetchAnalysis(cmd.Context(), g.addr); err != nil {
					return err
				}
			}
			if !all {
				msgs = inNamespace(msgs, namespace)
			}
			if err := printAnalysis(g.stdout, msgs, output, namespace, all); err != nil {
				return err
			}
			if n := analysis.Count(msgs, analysis.Error) + failed; n > 0 {
				return fmt.Errorf("analysis found %d error(s)", n)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "`FILE`, directory or - for stdin to analyze offline (repeatable); none: the live mesh")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "report messages about `NAMESPACE`")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "report messages about every namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output `FORMAT`: json or yaml (default: istioctl's lines)")
	cmd.Flags().BoolVar(&selectors, "check-gateway-selectors", false,
		"with -f: report Gateways whose selector matches no WorkloadEntry or WorkloadGroup of the files (gateway proxies started by strait up or strait run are not in them)")
	return cmd
}

// analyzeDocuments loads the documents as `strait apply` and straitd do (config.Load), builds
// the mesh snapshot straitd would serve from them and analyzes it. When several documents
// define one object (alternative versions of it), the last one is analyzed, as applying them in
// order would leave it. Documents that do not load become IST0106 messages when the object is
// known, else errors. Gateway selectors are checked against the documents' workloads when
// selectors is set.
func analyzeDocuments(docs []embedded.Document, selectors bool) ([]analysis.Message, []error) {
	files := make(map[string][]byte, len(docs))
	var objs []*config.Object
	index := map[config.Key]int{}
	var loadErrs []error
	for _, d := range docs {
		files[d.Origin] = []byte(d.Data)
		loaded, errs := config.Load(d.Origin, []byte(d.Data))
		for _, o := range loaded {
			if i, ok := index[o.Key()]; ok {
				objs[i] = o
				continue
			}
			index[o.Key()] = len(objs)
			objs = append(objs, o)
		}
		loadErrs = append(loadErrs, errs...)
	}
	opts := analysis.Options{Locator: analysis.LocatorFor(files), CheckGatewaySelectors: selectors}
	msgs := analysis.AnalyzeObjects(nil, objs, opts)
	for _, o := range objs {
		msgs = append(msgs, warningMessages(o, opts.Locator)...)
	}
	var errs []error
	for _, err := range loadErrs {
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Name == "" || ce.Kind == "" {
			errs = append(errs, err)
			continue
		}
		key := config.Key{Kind: ce.Kind, Namespace: ce.Namespace, Name: ce.Name}
		line := opts.Locator.Line(ce.Origin, key, ce.Field)
		if line == 0 {
			line = ce.Line // the document did not decode: where it starts
		}
		msgs = append(msgs, analysis.Message{
			Code: schemaValidationError.Code, Name: schemaValidationError.Name, Level: schemaValidationError.Level,
			Resource: analysis.Resource{Kind: ce.Kind, Namespace: ce.Namespace, Name: ce.Name},
			Origin:   ce.Origin, Field: ce.Field,
			Line:             line,
			Text:             fmt.Sprintf(schemaValidationError.Template, fieldMsg(ce)),
			DocumentationURL: schemaValidationError.DocumentationURL(),
		})
	}
	return analysis.Sort(msgs), errs
}

// warningMessages turns what decoding accepted with a warning (a field Istio removed from its
// API, dropped) into IST0002 Deprecated messages, as istioctl analyze reports deprecated fields.
func warningMessages(o *config.Object, loc analysis.Locator) []analysis.Message {
	var out []analysis.Message
	for _, w := range o.Warnings {
		line := 0
		if loc != nil {
			line = loc.Line(o.Origin, o.Key(), w.Field)
		}
		if line == 0 {
			line = w.Line
		}
		out = append(out, analysis.Message{
			Code: analysis.Deprecated.Code, Name: analysis.Deprecated.Name, Level: analysis.Deprecated.Level,
			Resource: analysis.Resource{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name},
			Origin:   o.Origin, Field: w.Field, Line: line,
			Text:             fmt.Sprintf(analysis.Deprecated.Template, fieldMsg(w)),
			DocumentationURL: analysis.Deprecated.DocumentationURL(),
		})
	}
	return out
}

// fieldMsg is a config error without its file and object: "FIELD: MESSAGE".
func fieldMsg(e *config.Error) string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// fetchAnalysis reads the live mesh's analysis from straitd's /debug/configz.
func fetchAnalysis(ctx context.Context, addr string) ([]analysis.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	url := "http://" + addr + "/debug/configz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("building request for %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the live analysis from straitd at %s (is it running? or analyze files with -f): %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("reading %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	var body struct {
		Analysis *[]analysis.Message `json:"analysis"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&body); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", url, err)
	}
	if body.Analysis == nil {
		return nil, fmt.Errorf("straitd at %s does not report an analysis at /debug/configz (an older version?)", addr)
	}
	return *body.Analysis, nil
}

// inNamespace keeps the messages about objects of namespace ns.
func inNamespace(msgs []analysis.Message, ns string) []analysis.Message {
	out := make([]analysis.Message, 0, len(msgs))
	for _, m := range msgs {
		if m.Resource.Namespace == ns || (m.Resource.Namespace == "" && m.Resource.Kind == "") {
			out = append(out, m)
		}
	}
	return out
}

// printAnalysis writes msgs as istioctl analyze does (one line each, or a line saying there is
// nothing to report), or as a JSON or YAML list.
func printAnalysis(w io.Writer, msgs []analysis.Message, output, namespace string, all bool) error {
	switch output {
	case "json", "yaml":
		if msgs == nil {
			msgs = []analysis.Message{}
		}
		b, err := json.MarshalIndent(msgs, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding messages: %w", err)
		}
		if output == "yaml" {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return fmt.Errorf("encoding messages as YAML: %w", err)
			}
		} else {
			b = append(b, '\n')
		}
		_, err = w.Write(b)
		return err
	case "":
	default:
		return fmt.Errorf("unknown output format %q (want json or yaml)", output)
	}
	if len(msgs) == 0 {
		if all {
			_, err := fmt.Fprintln(w, "✔ No validation issues found when analyzing all namespaces.")
			return err
		}
		_, err := fmt.Fprintf(w, "✔ No validation issues found when analyzing namespace: %s.\n", namespace)
		return err
	}
	for _, m := range msgs {
		if _, err := fmt.Fprintln(w, m.String()); err != nil {
			return err
		}
	}
	return nil
}

// printApplyWarnings analyzes the applied documents together with what straitd serves (the
// applied objects replacing theirs) and prints the messages about the applied objects to w. It
// is best effort: when the live objects cannot be read, it says so and prints nothing else.
func printApplyWarnings(ctx context.Context, w io.Writer, addr string, docs []embedded.Document) {
	c := embedded.NewClient(addr)
	applied := map[config.Key]bool{}
	files := make(map[string][]byte, len(docs))
	var objs []*config.Object
	for _, d := range docs {
		files[d.Origin] = []byte(d.Data)
		o, _ := config.Load(d.Origin, []byte(d.Data))
		for _, x := range o {
			applied[x.Key()] = true
		}
		objs = append(objs, o...)
	}
	if len(objs) == 0 {
		return
	}
	loc := analysis.LocatorFor(files)
	for _, o := range objs { // decoding's own warnings first: they need nothing from straitd
		for _, m := range warningMessages(o, loc) {
			fmt.Fprintln(w, m.String())
		}
	}
	for _, k := range config.Kinds {
		if k == config.Secret {
			continue
		}
		items, err := c.Get(ctx, string(k), "", "")
		if err != nil {
			fmt.Fprintf(w, "warning: not analyzed: reading %s from straitd: %v\n", k, err)
			return
		}
		for _, raw := range items {
			live, _ := config.Decode("straitd", raw)
			for _, o := range live {
				if !applied[o.Key()] {
					objs = append(objs, o)
				}
			}
		}
	}
	for _, m := range analysis.AnalyzeObjects(nil, objs, analysis.Options{Locator: loc}) {
		if applied[config.Key{Kind: m.Resource.Kind, Namespace: m.Resource.Namespace, Name: m.Resource.Name}] {
			fmt.Fprintln(w, m.String())
		}
	}
}
