package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// defaultTokenExpiry is a projected token's lifetime when the volume does not say (Kubernetes'
// default, one hour).
const defaultTokenExpiry = int64(3600)

// prepareVolumes writes every volume of the pod under dir/volumes/NAME: emptyDirs empty and
// writable by anyone (as the kubelet makes them), ConfigMaps and Secrets with their keys as files,
// projected volumes with their sources, a service-account token requested with the TokenRequest
// API and bound to the pod. It returns each volume's directory. A missing ConfigMap or Secret is
// an error (the caller retries, as the kubelet waits for them).
func (k *Kubelet) prepareVolumes(ctx context.Context, pod *corev1.Pod, dir string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		vdir := filepath.Join(dir, "volumes", v.Name)
		if err := os.RemoveAll(vdir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return nil, err
		}
		var files map[string][]byte
		var err error
		switch {
		case v.EmptyDir != nil:
			err = os.Chmod(vdir, 0o777)
		case v.ConfigMap != nil:
			files, err = k.configMapFiles(ctx, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional)
		case v.Secret != nil:
			files, err = k.secretFiles(ctx, pod.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional)
		case v.Projected != nil:
			files, err = k.projectedFiles(ctx, pod, v.Projected.Sources)
		}
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		for name, data := range files {
			p := filepath.Join(vdir, filepath.Clean("/"+name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return nil, err
			}
			// Readable by the container's user whoever it is (no fsGroup handling here).
			if err := os.WriteFile(p, data, 0o644); err != nil {
				return nil, err
			}
		}
		out[v.Name] = vdir
	}
	return out, nil
}

// keyFiles maps a ConfigMap's or Secret's keys to files: every key under its own name, or only
// the items under their paths.
func keyFiles(data map[string][]byte, items []corev1.KeyToPath, what string) (map[string][]byte, error) {
	files := map[string][]byte{}
	if len(items) == 0 {
		for k, v := range data {
			files[k] = v
		}
		return files, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("%s has no key %q", what, it.Key)
		}
		files[it.Path] = v
	}
	return files, nil
}

func (k *Kubelet) configMapFiles(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool) (map[string][]byte, error) {
	cm, err := k.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if optional != nil && *optional {
			return nil, nil
		}
		return nil, fmt.Errorf("ConfigMap %s/%s: %w", ns, name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyFiles(data, items, "ConfigMap "+ns+"/"+name)
}

func (k *Kubelet) secretFiles(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool) (map[string][]byte, error) {
	s, err := k.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if optional != nil && *optional {
			return nil, nil
		}
		return nil, fmt.Errorf("Secret %s/%s: %w", ns, name, err)
	}
	return keyFiles(s.Data, items, "Secret "+ns+"/"+name)
}

// projectedFiles gathers the files of a projected volume's sources.
func (k *Kubelet) projectedFiles(ctx context.Context, pod *corev1.Pod, sources []corev1.VolumeProjection) (map[string][]byte, error) {
	files := map[string][]byte{}
	add := func(more map[string][]byte) {
		for name, data := range more {
			files[name] = data
		}
	}
	for i, s := range sources {
		var more map[string][]byte
		var err error
		switch {
		case s.ServiceAccountToken != nil:
			var tok string
			tok, err = k.token(ctx, pod, s.ServiceAccountToken)
			more = map[string][]byte{s.ServiceAccountToken.Path: []byte(tok)}
		case s.ConfigMap != nil:
			more, err = k.configMapFiles(ctx, pod.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional)
		case s.Secret != nil:
			more, err = k.secretFiles(ctx, pod.Namespace, s.Secret.Name, s.Secret.Items, s.Secret.Optional)
		case s.DownwardAPI != nil:
			more = map[string][]byte{}
			for _, it := range s.DownwardAPI.Items {
				if it.FieldRef == nil {
					return nil, fmt.Errorf("sources[%d].downwardAPI %s: only fieldRef is supported by the test kubelet", i, it.Path)
				}
				v, ferr := fieldValue(pod, it.FieldRef.FieldPath)
				if ferr != nil {
					return nil, fmt.Errorf("sources[%d].downwardAPI %s: %w", i, it.Path, ferr)
				}
				more[it.Path] = []byte(v)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("sources[%d]: %w", i, err)
		}
		add(more)
	}
	return files, nil
}

// token requests a service-account token for the pod's service account, bound to the pod, with
// the projection's audience and lifetime (the kubelet's TokenRequest).
func (k *Kubelet) token(ctx context.Context, pod *corev1.Pod, p *corev1.ServiceAccountTokenProjection) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	exp := defaultTokenExpiry
	if p.ExpirationSeconds != nil {
		exp = *p.ExpirationSeconds
	}
	var auds []string
	if p.Audience != "" {
		auds = []string{p.Audience}
	}
	tr, err := k.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: auds, ExpirationSeconds: &exp,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for service account %s/%s: %w", pod.Namespace, sa, err)
	}
	return tr.Status.Token, nil
}

// mountArgs returns the (source, target, mode) triples of a container's volume mounts for the
// mount wrapper, mode "ro" or "rw".
func mountArgs(c corev1.Container, vols map[string]string) []string {
	var out []string
	for _, m := range c.VolumeMounts {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		out = append(out, vols[m.Name], strings.TrimRight(m.MountPath, "/"), mode)
	}
	return out
}
