package kubelet

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/strait-mesh/strait/controlplane/inject"
	"github.com/strait-mesh/strait/internal/images"
)

// Image is what a container image means on this node: the binary that is its entrypoint.
type Image struct {
	// Binary is the path of the executable the image runs.
	Binary string
	// Commands are the names a container's command may give the binary (for example
	// "strait-proxy" and "/usr/local/bin/strait-proxy"); the base name of Binary always counts.
	Commands []string
}

// TestBinaryCopy copies the running (test) binary where any user can run it, and returns its path:
// an image for pods whose containers run as another user than root. The copy goes with the test.
func TestBinaryCopy(t testing.TB) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "strait-test-image-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, filepath.Base(self))
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// admit checks that the kubelet can run everything the pod asks for, and returns an error naming
// the first field it cannot (the pod then fails with that message, as a real kubelet's admission
// refusal does).
func (k *Kubelet) admit(pod *corev1.Pod) error {
	if pod.Spec.HostNetwork {
		return errors.New("spec.hostNetwork: not supported by the test kubelet")
	}
	vols := map[string]bool{}
	for i, v := range pod.Spec.Volumes {
		if err := supportedVolume(v); err != nil {
			return fmt.Errorf("spec.volumes[%d] (%s): %w", i, v.Name, err)
		}
		vols[v.Name] = true
	}
	check := func(field string, c corev1.Container) error {
		if _, err := k.launch(c); err != nil {
			return fmt.Errorf("%s (%s): %w", field, c.Name, err)
		}
		if len(c.EnvFrom) > 0 {
			return fmt.Errorf("%s (%s).envFrom: not supported by the test kubelet", field, c.Name)
		}
		for j, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if e.ValueFrom.FieldRef == nil {
				return fmt.Errorf("%s (%s).env[%d] (%s).valueFrom: only fieldRef is supported by the test kubelet", field, c.Name, j, e.Name)
			}
			if _, err := fieldValue(pod, e.ValueFrom.FieldRef.FieldPath); err != nil {
				return fmt.Errorf("%s (%s).env[%d] (%s).valueFrom.fieldRef: %w", field, c.Name, j, e.Name, err)
			}
		}
		for j, m := range c.VolumeMounts {
			if !vols[m.Name] {
				return fmt.Errorf("%s (%s).volumeMounts[%d]: no volume %q", field, c.Name, j, m.Name)
			}
			if m.SubPath != "" || m.SubPathExpr != "" {
				return fmt.Errorf("%s (%s).volumeMounts[%d].subPath: not supported by the test kubelet", field, c.Name, j)
			}
		}
		for name, p := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe} {
			if p == nil {
				continue
			}
			if p.Exec != nil {
				return fmt.Errorf("%s (%s).%s.exec: only httpGet, tcpSocket and grpc probes are supported by the test kubelet", field, c.Name, name)
			}
			if _, ok := inject.OriginalProbe(&c, p); !ok {
				return fmt.Errorf("%s (%s).%s: no handler, or a port the container does not name", field, c.Name, name)
			}
		}
		if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
			return fmt.Errorf("%s (%s).lifecycle.postStart: not supported by the test kubelet", field, c.Name)
		}
		if ps := preStop(c); ps != nil && (ps.Sleep == nil || ps.Exec != nil || ps.HTTPGet != nil || ps.TCPSocket != nil) {
			return fmt.Errorf("%s (%s).lifecycle.preStop: only sleep is supported by the test kubelet", field, c.Name)
		}
		return nil
	}
	for i, c := range pod.Spec.InitContainers {
		if err := check(fmt.Sprintf("spec.initContainers[%d]", i), c); err != nil {
			return err
		}
	}
	for i, c := range pod.Spec.Containers {
		if err := check(fmt.Sprintf("spec.containers[%d]", i), c); err != nil {
			return err
		}
	}
	return nil
}

// supportedVolume reports whether the kubelet can provide a volume.
func supportedVolume(v corev1.Volume) error {
	switch {
	case v.EmptyDir != nil, v.ConfigMap != nil, v.Secret != nil:
		return nil
	case v.Projected != nil:
		for i, s := range v.Projected.Sources {
			if s.ClusterTrustBundle != nil || s.PodCertificate != nil {
				return fmt.Errorf("projected.sources[%d]: only serviceAccountToken, configMap, secret and downwardAPI are supported by the test kubelet", i)
			}
		}
		return nil
	}
	return errors.New("only emptyDir, configMap, secret and projected volumes are supported by the test kubelet")
}

// command returns the argv of a container: the image's binary, then the container's command
// (without its first word, which must name the binary) and args, as Kubernetes composes them
// with an image whose entrypoint is the binary and which has no CMD.
func (k *Kubelet) command(c corev1.Container) ([]string, error) {
	img, ok := k.opts.Images[c.Image]
	if !ok {
		return nil, fmt.Errorf("image %q: not one of the images this node runs (%s)", c.Image, strings.Join(k.imageNames(), ", "))
	}
	argv := []string{img.Binary}
	if len(c.Command) > 0 {
		if !img.names(c.Command[0]) {
			return nil, fmt.Errorf("command %q: image %q runs only %s", c.Command[0], c.Image, path.Base(img.Binary))
		}
		argv = append(argv, c.Command[1:]...)
	}
	return append(argv, c.Args...), nil
}

func (img Image) names(cmd string) bool {
	if cmd == path.Base(img.Binary) || cmd == img.Binary {
		return true
	}
	for _, n := range img.Commands {
		if n == cmd {
			return true
		}
	}
	return false
}

func (k *Kubelet) imageNames() []string {
	var out []string
	for name := range k.opts.Images {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// fieldValue resolves a downward API field path of the pod.
func fieldValue(pod *corev1.Pod, field string) (string, error) {
	switch field {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.podIPs":
		ips := make([]string, 0, len(pod.Status.PodIPs))
		for _, ip := range pod.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		return strings.Join(ips, ","), nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if rest, ok := strings.CutPrefix(field, prefix+"['"); ok && strings.HasSuffix(rest, "']") {
			return m[strings.TrimSuffix(rest, "']")], nil
		}
	}
	return "", fmt.Errorf("field path %q: not supported by the test kubelet", field)
}

// environment returns the container's environment as Kubernetes builds it: the image's (imageEnv;
// when nil, a default PATH), HOSTNAME, the node's variables (base), then its env in order, each
// value with $(VAR) references to earlier variables of env expanded, and fieldRef values from
// the pod. A later entry of a name wins (as exec.Cmd reads Env).
func environment(pod *corev1.Pod, c corev1.Container, base, imageEnv []string) ([]string, map[string]string, error) {
	vars := map[string]string{}
	var order []string
	for _, e := range c.Env {
		val := expand(e.Value, vars)
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			v, err := fieldValue(pod, e.ValueFrom.FieldRef.FieldPath)
			if err != nil {
				return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			val = v
		}
		if _, seen := vars[e.Name]; !seen {
			order = append(order, e.Name)
		}
		vars[e.Name] = val
	}
	env := append([]string{}, imageEnv...)
	if imageEnv == nil {
		env = append(env, "PATH="+images.DefaultPath)
	}
	env = append(append(env, "HOSTNAME="+pod.Name), base...)
	for _, name := range order {
		env = append(env, name+"="+vars[name])
	}
	return env, vars, nil
}

// expand replaces $(VAR) in s by the value of VAR when vars has it, and $$ by $, leaving other
// references as they are (Kubernetes' rules for command, args and env values).
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// isSidecar reports whether an init container is a native sidecar (restartPolicy Always).
func isSidecar(c corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// runAs returns the uid and gid a container runs as: its securityContext's, else the pod's, else
// root.
func runAs(pod *corev1.Pod, c corev1.Container) (uid, gid int64) {
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.RunAsUser != nil {
			uid = *psc.RunAsUser
		}
		if psc.RunAsGroup != nil {
			gid = *psc.RunAsGroup
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
	}
	return uid, gid
}

// preStop returns the container's preStop hook, or nil.
func preStop(c corev1.Container) *corev1.LifecycleHandler {
	if c.Lifecycle == nil {
		return nil
	}
	return c.Lifecycle.PreStop
}
