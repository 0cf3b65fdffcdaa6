package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/embedded"
)

// readDocuments reads -f arguments: files, directories (their *.yaml, *.yml, *.json, recursively,
// in name order) or "-" for stdin.
func readDocuments(paths []string, stdin io.Reader) ([]embedded.Document, error) {
	var docs []embedded.Document
	for _, p := range paths {
		if p == "-" {
			b, err := io.ReadAll(io.LimitReader(stdin, embedded.MaxRequestBytes+1))
			if err != nil {
				return nil, fmt.Errorf("reading stdin: %w", err)
			}
			docs = append(docs, embedded.Document{Origin: "<stdin>", Data: string(b)})
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		if !st.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", p, err)
			}
			docs = append(docs, embedded.Document{Origin: p, Data: string(b)})
			continue
		}
		var files []string
		err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch strings.ToLower(filepath.Ext(path)) {
			case ".yaml", ".yml", ".json":
				if !d.IsDir() {
					files = append(files, path)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading directory %s: %w", p, err)
		}
		sort.Strings(files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", f, err)
			}
			docs = append(docs, embedded.Document{Origin: f, Data: string(b)})
		}
	}
	if len(docs) == 0 {
		return nil, errors.New("no input: pass -f FILE, -f DIR or -f -")
	}
	return docs, nil
}

// checkObjects names the inputs that hold no object (only comments or empty documents): an
// error when none of them holds one, as kubectl apply's "no objects passed to apply", else a
// warning on w for each.
func checkObjects(w io.Writer, docs []embedded.Document) error {
	var empty []string
	for _, d := range docs {
		if objs, errs := config.Decode(d.Origin, []byte(d.Data)); len(objs) == 0 && len(errs) == 0 {
			empty = append(empty, d.Origin)
		}
	}
	if len(empty) == 0 {
		return nil
	}
	if len(empty) == len(docs) {
		return fmt.Errorf("no objects to apply: %s contain(s) no objects (only comments or empty documents)", strings.Join(empty, ", "))
	}
	for _, e := range empty {
		fmt.Fprintf(w, "warning: %s contains no objects (only comments or empty documents)\n", e)
	}
	return nil
}

func printChanges(w io.Writer, changes []embedded.Change, suffix string) {
	for _, c := range changes {
		fmt.Fprintf(w, "%s/%s %s%s (namespace %s)\n", strings.ToLower(string(c.Kind)), c.Name, c.Action, suffix, c.Namespace)
	}
}

func newApply(g *globals) *cobra.Command {
	var files []string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Validate and store Istio configuration in straitd",
		Long: "apply sends every document to straitd, which validates them all; if any is invalid, every\n" +
			"error is printed and nothing changes.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, err := readDocuments(files, g.stdin)
			if err != nil {
				return err
			}
			if err := checkObjects(g.stderr, docs); err != nil {
				return err
			}
			tok, err := g.loadAdminToken()
			if err != nil {
				return err
			}
			changes, err := embedded.NewClient(g.addr).WithAdminToken(tok.token).Apply(cmd.Context(), docs, dryRun)
			if err != nil {
				return tok.explain("strait apply", err)
			}
			suffix := ""
			if dryRun {
				suffix = " (dry run)"
			}
			printChanges(g.stdout, changes, suffix)
			printApplyWarnings(cmd.Context(), g.stderr, g.addr, docs) // Istio's analyzers, as istioctl's warnings
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "`FILE`, directory or - for stdin (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate only; change nothing")
	return cmd
}

func newDelete(g *globals) *cobra.Command {
	var files []string
	var namespace string
	cmd := &cobra.Command{
		Use:   "delete (-f FILE|DIR|- | KIND NAME)",
		Short: "Delete configuration from straitd",
		Args:  cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := g.loadAdminToken()
			if err != nil {
				return err
			}
			c := embedded.NewClient(g.addr).WithAdminToken(tok.token)
			var changes []embedded.Change
			switch {
			case len(files) > 0 && len(args) == 0:
				var docs []embedded.Document
				if docs, err = readDocuments(files, g.stdin); err != nil {
					return err
				}
				changes, err = c.DeleteDocuments(cmd.Context(), docs)
			case len(files) == 0 && len(args) == 2:
				changes, err = c.Delete(cmd.Context(), args[0], namespace, args[1])
			default:
				return errors.New("give either -f FILE|DIR|- or KIND NAME")
			}
			if err != nil {
				return tok.explain("strait delete", err)
			}
			printChanges(g.stdout, changes, "")
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "`FILE`, directory or - for stdin (repeatable)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "`NAMESPACE` of KIND NAME")
	return cmd
}
