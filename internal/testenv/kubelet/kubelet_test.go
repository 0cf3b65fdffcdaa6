package kubelet

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/strait-mesh/strait/internal/images"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/testenv/kubeenv"
)

// appEnv makes the test binary a tiny application (see TestMain): the image the pods of these
// tests run.
const appEnv = "KUBELET_TEST_APP"

func TestMain(m *testing.M) {
	switch os.Getenv(appEnv) {
	case "":
		os.Exit(m.Run())
	case "serve":
		// Answers /env/NAME with the variable, /file?path=P with the file, /args with its args.
		mux := http.NewServeMux()
		mux.HandleFunc("/env/{name}", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, os.Getenv(r.PathValue("name"))) })
		mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
			b, err := os.ReadFile(r.URL.Query().Get("path"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			w.Write(b)
		})
		mux.HandleFunc("/args", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, strings.Join(os.Args[1:], " ")) })
		mux.HandleFunc("/lookup/{name}", func(w http.ResponseWriter, r *http.Request) {
			addrs, err := net.LookupHost(r.PathValue("name"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			fmt.Fprint(w, strings.Join(addrs, ","))
		})
		mux.HandleFunc("/fetch", func(w http.ResponseWriter, r *http.Request) {
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(r.URL.Query().Get("url"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			io.Copy(w, resp.Body)
		})
		mux.HandleFunc("/uid", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, os.Getuid()) })
		if err := http.ListenAndServe(":8080", mux); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		time.Sleep(2 * time.Minute)
		os.Exit(0)
	case "exit0":
		time.Sleep(500 * time.Millisecond)
		os.Exit(0)
	}
	os.Exit(2)
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "x", "B": "$(A)"}
	for in, want := range map[string]string{
		"$(A)":          "x",
		"--a=$(A)-$(A)": "--a=x-x",
		"$(C)":          "$(C)",
		"$$(A)":         "$(A)",
		"a$b":           "a$b",
		"$(B)":          "$(A)",
		"$(A":           "$(A",
		"end$":          "end$",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnvironmentAndCommand(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"app": "a"}},
		Spec:   corev1.PodSpec{ServiceAccountName: "sa", NodeName: "n"},
		Status: corev1.PodStatus{PodIP: "198.18.180.2"}}
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	c := corev1.Container{Name: "c", Image: "strait/proxy:test", Command: []string{"strait-proxy"}, Args: []string{"--ip=$(IP)", "--x=$(NOPE)"},
		Env: []corev1.EnvVar{field("IP", "status.podIP"), field("SA", "spec.serviceAccountName"), field("APP", "metadata.labels['app']"),
			{Name: "BOTH", Value: "$(IP)/$(SA)"}}}
	env, vars, err := environment(pod, c, []string{"K=v"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(env[2:], " "); got != "K=v IP=198.18.180.2 SA=sa APP=a BOTH=198.18.180.2/sa" {
		t.Errorf("env %s", got)
	}
	k := &Kubelet{opts: Options{Images: map[string]Image{"strait/proxy:test": {Binary: "/bin/strait-proxy"}}}}
	argv, err := k.command(c)
	if err != nil {
		t.Fatal(err)
	}
	for i := range argv {
		argv[i] = expand(argv[i], vars)
	}
	if got := strings.Join(argv, " "); got != "/bin/strait-proxy --ip=198.18.180.2 --x=$(NOPE)" {
		t.Errorf("argv %s", got)
	}
	c.Command = []string{"sh"}
	if _, err := k.command(c); err == nil || !strings.Contains(err.Error(), `command "sh"`) {
		t.Errorf("another command: %v", err)
	}
	c.Image = "nginx"
	if _, err := k.command(c); err == nil || !strings.Contains(err.Error(), `image "nginx"`) {
		t.Errorf("another image: %v", err)
	}
	pod.Spec.Containers = []corev1.Container{{Name: "c", Image: "strait/proxy:test",
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}}}
	if err := k.admit(pod); err == nil || !strings.Contains(err.Error(), "spec.containers[0] (c).readinessProbe") {
		t.Errorf("an exec probe: %v", err)
	}
}

func TestClusterDNS(t *testing.T) {
	svcs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	_ = svcs.Add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop"},
		Spec: corev1.ServiceSpec{ClusterIP: "198.19.240.10", ClusterIPs: []string{"198.19.240.10"}}})
	slices := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	d := &clusterDNS{domain: "cluster.local", services: corelisters.NewServiceLister(svcs), slices: discoverylisters.NewEndpointSliceLister(slices)}
	ask := func(name string, typ dnsmessage.Type) dnsmessage.Message {
		q := dnsmessage.Message{Header: dnsmessage.Header{ID: 7, RecursionDesired: true},
			Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}}}
		b, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		var m dnsmessage.Message
		if err := m.Unpack(d.answer(b)); err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := ask("reviews.shop.svc.cluster.local.", dnsmessage.TypeA)
	if m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 1 || netip.AddrFrom4(m.Answers[0].Body.(*dnsmessage.AResource).A).String() != "198.19.240.10" || m.ID != 7 {
		t.Errorf("A reviews: %+v", m)
	}
	if m := ask("reviews.shop.svc.cluster.local.", dnsmessage.TypeAAAA); m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 0 {
		t.Errorf("AAAA reviews: %+v", m)
	}
	for _, name := range []string{"ratings.shop.svc.cluster.local.", "reviews.shop.svc.cluster.local.shop.svc.cluster.local.", "example.com."} {
		if m := ask(name, dnsmessage.TypeA); m.RCode != dnsmessage.RCodeNameError {
			t.Errorf("%s: %v, want NXDOMAIN", name, m.RCode)
		}
	}
	if d.answer([]byte{1, 2, 3}) != nil {
		t.Error("garbage got an answer")
	}
}

// TestPodsRun runs pods on a real API server: a pod with downward-API env, volumes, a projected
// token, a readiness probe and runAsUser becomes Ready with its address, answers there, resolves
// its Service's name, reaches it at its cluster IP and becomes its ready endpoint; a pod of an unknown image fails naming it;
// one failing its liveness probe is restarted; a Job-style pod with a native sidecar succeeds; a
// deleted pod is stopped with SIGTERM, or SIGKILL once it outlasts its grace period, and removed.
func TestPodsRun(t *testing.T) {
	if err := Available(); err != nil {
		if os.Getenv(kubeenv.RequireToolsEnv) != "" {
			t.Fatal(err)
		}
		t.Skipf("skipping: %v", err)
	}
	cluster := kubeenv.Start(t, kubeenv.Options{ControllerManager: true})
	self := TestBinaryCopy(t)
	k := Start(t, cluster.Config, Options{PodCIDR: netip.MustParsePrefix("198.18.189.0/24"),
		Images: map[string]Image{"test/app:1": {Binary: self}}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := kubernetes.NewForConfigOrDie(cluster.Config)
	objs := cluster.Objects(t)
	testenv.Eventually(t, 30*time.Second, func() error {
		_, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if _, err := objs.Create(ctx, `apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - name: web
    image: test/app:1
    args: ["--name=$(POD_NAME)"]
    env:
    - {name: `+appEnv+`, value: serve}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    securityContext: {runAsUser: 1234, runAsGroup: 1234}
    readinessProbe: {httpGet: {path: /env/POD_NAME, port: 8080}, periodSeconds: 1}
    volumeMounts:
    - {name: settings, mountPath: /var/run/kubelet-test/settings, readOnly: true}
    - {name: token, mountPath: /var/run/kubelet-test/token}
  volumes:
  - {name: settings, configMap: {name: settings}}
  - name: token
    projected: {sources: [{serviceAccountToken: {audience: test, path: token, expirationSeconds: 600}}]}
---
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: stubborn
    image: test/app:1
    env: [{name: `+appEnv+`, value: ignore-term}]
---
apiVersion: v1
kind: Pod
metadata: {name: unwell}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: unwell
    image: test/app:1
    env: [{name: `+appEnv+`, value: serve}]
    livenessProbe: {tcpSocket: {port: 9999}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: nginx}
spec:
  containers: [{name: nginx, image: nginx:latest}]
---
apiVersion: v1
kind: Pod
metadata: {name: job}
spec:
  restartPolicy: Never
  initContainers:
  - name: sidecar
    image: test/app:1
    restartPolicy: Always
    env: [{name: `+appEnv+`, value: serve}]
    startupProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
  containers:
  - name: main
    image: test/app:1
    env: [{name: `+appEnv+`, value: exit0}]
`); err != nil {
		t.Fatal(err)
	}

	var ip string
	testenv.Eventually(t, 60*time.Second, func() error {
		p, err := client.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.Status.PodIP != "" {
				ip = p.Status.PodIP
				return nil
			}
		}
		return fmt.Errorf("pod web not ready: %+v", p.Status)
	})
	get := func(path string) string {
		resp, err := http.Get("http://" + net.JoinHostPort(ip, "8080") + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for path, want := range map[string]string{
		"/env/POD_NAME": "web", "/env/POD_IP": ip, "/args": "--name=web", "/uid": "1234",
		"/file?path=/var/run/kubelet-test/settings/greeting": "hello",
		"/lookup/web": "", // filled below
	} {
		if path == "/lookup/web" {
			svc, err := client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want = svc.Spec.ClusterIP
		}
		if got := get(path); got != want {
			t.Errorf("GET %s = %q, want %q", path, got, want)
		}
	}
	// The Service's cluster IP and port (80), through the node's service proxy, back to the pod.
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := get("/fetch?url=http://web/env/POD_NAME"); got != "web" {
			return fmt.Errorf("GET http://web/env/POD_NAME from the pod: %q", got)
		}
		return nil
	})
	if env := get("/env/KUBERNETES_SERVICE_HOST"); env != kubeenv.KubernetesServiceIP {
		t.Errorf("KUBERNETES_SERVICE_HOST %q, want %s", env, kubeenv.KubernetesServiceIP)
	}
	if tok := get("/file?path=/var/run/kubelet-test/token/token"); strings.Count(tok, ".") != 2 {
		t.Errorf("the projected token is not a JWT: %q", tok)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		slices, err := client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=web"})
		if err != nil {
			return err
		}
		for _, s := range slices.Items {
			for _, ep := range s.Endpoints {
				if len(ep.Addresses) > 0 && ep.Addresses[0] == ip && ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					return nil
				}
			}
		}
		return fmt.Errorf("no ready endpoint %s in %+v", ip, slices.Items)
	})

	phase := func(name string, want corev1.PodPhase) *corev1.Pod {
		var p *corev1.Pod
		testenv.Eventually(t, 60*time.Second, func() error {
			var err error
			p, err = client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != want {
				return fmt.Errorf("pod %s phase %q (%s), want %s", name, p.Status.Phase, p.Status.Message, want)
			}
			return nil
		})
		return p
	}
	if p := phase("nginx", corev1.PodFailed); !strings.Contains(p.Status.Message, `image "nginx:latest"`) {
		t.Errorf("the nginx pod's message: %q", p.Status.Message)
	}
	phase("job", corev1.PodSucceeded)
	// A container failing its liveness probe is restarted (restartPolicy Always).
	testenv.Eventually(t, 60*time.Second, func() error {
		p, err := client.CoreV1().Pods("default").Get(ctx, "unwell", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].RestartCount < 1 {
			return fmt.Errorf("pod unwell not restarted: %+v", p.Status.ContainerStatuses)
		}
		return nil
	})

	phase("stubborn", corev1.PodRunning)
	one := int64(1)
	for _, name := range []string{"web", "stubborn"} {
		if err := client.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &one}); err != nil {
			t.Fatal(err)
		}
	}
	for name, code := range map[string]string{"web": "exited with code 143", "stubborn": "exited with code 137"} {
		testenv.Eventually(t, 30*time.Second, func() error {
			if _, err := client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{}); err == nil {
				return fmt.Errorf("pod %s still there", name)
			}
			if ns := k.PodNetns("default", name); ns != "" {
				return fmt.Errorf("pod %s still has namespace %s", name, ns)
			}
			return nil
		})
		// SIGTERM ends the server (128+15); the one ignoring it is killed (128+9).
		if logs := k.Logs("default", name, name); !strings.Contains(logs, code) {
			t.Errorf("pod %s: want %q in its log:\n%s", name, code, logs)
		}
	}
}

// TestPulledImageLaunch checks how a pulled image's config and a container compose, by
// Kubernetes' rules, and that the executable is found inside the image's root file system.
func TestPulledImageLaunch(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"usr/local/bin/straitd", "opt/tool"} {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "work"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := &pulledImage{ref: "r/straitd:v1", root: root, config: v1.Config{Entrypoint: []string{"/usr/local/bin/straitd"}, Cmd: []string{"--default"},
		Env: []string{"PATH=/usr/local/bin:/bin", "IMG=1"}, WorkingDir: "/work"}}
	bin := "/usr/local/bin/straitd" // paths inside the root file system, which the process is chrooted to
	for _, c := range []struct {
		command, args []string
		want          string
	}{
		{nil, nil, bin + " --default"},
		{nil, []string{"--a"}, bin + " --a"},
		{[]string{"straitd"}, nil, bin},
		{[]string{"straitd"}, []string{"--b"}, bin + " --b"},
		{[]string{"/opt/tool"}, []string{"x"}, "/opt/tool x"},
		{[]string{"../opt/tool"}, nil, "/opt/tool"},
	} {
		l, err := img.launch(corev1.Container{Image: img.ref, Command: c.command, Args: c.args})
		if err != nil {
			t.Errorf("%q %q: %v", c.command, c.args, err)
			continue
		}
		if got := strings.Join(l.argv, " "); got != c.want {
			t.Errorf("%q %q: argv %q, want %q", c.command, c.args, got, c.want)
		}
		if l.dir != "/work" || l.root != root || strings.Join(l.env, " ") != "PATH=/usr/local/bin:/bin IMG=1" {
			t.Errorf("dir %q env %q", l.dir, l.env)
		}
	}
	for _, cmd := range []string{"tool", "/bin/sh", "nope"} { // tool is not on the PATH
		if _, err := img.launch(corev1.Container{Image: img.ref, Command: []string{cmd}}); err == nil {
			t.Errorf("command %q: no error", cmd)
		}
	}
	c := corev1.Container{Image: img.ref, Env: []corev1.EnvVar{{Name: "PATH", Value: "/opt"}, {Name: "IMG", Value: "2"}}, Command: []string{"tool"}}
	l, err := img.launch(c)
	if err != nil || l.argv[0] != "/opt/tool" {
		t.Errorf("the container's PATH: %q, %v", l.argv, err)
	}
	env, _, err := environment(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}, c, nil, l.env)
	if err != nil || strings.Join(env, " ") != "PATH=/usr/local/bin:/bin IMG=1 HOSTNAME=p PATH=/opt IMG=2" {
		t.Errorf("env %q, %v", env, err)
	}
	k := &Kubelet{images: &imageStore{images: map[string]*pullEntry{img.ref: {done: closed(), img: img}}}}
	if l, err := k.launch(corev1.Container{Image: img.ref}); err != nil || l.argv[0] != bin {
		t.Errorf("Kubelet.launch: %q, %v", l.argv, err)
	}
	if _, err := k.launch(corev1.Container{Image: "other"}); err == nil {
		t.Error("an image neither mapped nor pulled: no error")
	}
}

func closed() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

// TestImageStorePull pulls an image from an in-process registry and runs its entrypoint's path
// from the unpacked root file system.
func TestImageStorePull(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	idx, err := images.Build(images.Spec{Name: "tool", Binaries: map[string]string{"linux/" + runtime.GOARCH: bin}, CACertificates: []byte("-")})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	ref := l.Addr().String() + "/tool:v1"
	if _, err := (images.Registry{Insecure: true, Keychain: authn.NewMultiKeychain()}).Push(context.Background(), ref, idx); err != nil {
		t.Fatal(err)
	}
	store, err := newImageStore(PullOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.remove() })
	k := &Kubelet{images: store, client: fake.NewClientset()} // the client only records events
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: ref, Args: []string{"--x"}}}}}
	if err := k.pullImages(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	l2, err := k.launch(pod.Spec.Containers[0])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(l2.argv, " ") != "/usr/local/bin/tool --x" || l2.root != store.images[ref].img.root {
		t.Errorf("argv %q in %s", l2.argv, l2.root)
	}
	if fi, err := os.Stat(filepath.Join(l2.root, "usr/local/bin/tool")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("the unpacked binary: %v, %v", fi, err)
	}
	if id := k.imageID(ref); !strings.HasPrefix(id, l.Addr().String()+"/tool@sha256:") {
		t.Errorf("imageID %q", id)
	}
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "s"}}
	pod.Spec.Containers[0].Image = l.Addr().String() + "/other:v1"
	if err := k.pullImages(context.Background(), pod); err == nil || !strings.Contains(err.Error(), "imagePullSecrets") {
		t.Errorf("imagePullSecrets: %v", err)
	}
	pod.Spec.ImagePullSecrets = nil
	if err := k.pullImages(context.Background(), pod); err == nil || !strings.Contains(err.Error(), "other") {
		t.Errorf("a missing image: %v", err)
	}
}

func TestChrootMountPoint(t *testing.T) {
	root, src := t.TempDir(), t.TempDir()
	file := filepath.Join(src, "hosts")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := chrootMountPoint(root, "/var/run/secrets/token", src, "ro"); err != nil || p != filepath.Join(root, "var/run/secrets/token") {
		t.Errorf("directory: %q, %v", p, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "var/run/secrets/token")); err != nil || !fi.IsDir() {
		t.Errorf("directory mount point: %v, %v", fi, err)
	}
	if _, err := chrootMountPoint(root, "/etc/hosts", file, "ro"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/hosts")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("file mount point: %v, %v", fi, err)
	}
	if _, err := chrootMountPoint(root, "/proc", "proc", "proc"); err != nil {
		t.Errorf("proc: %v", err)
	}
	os.Symlink("/etc", filepath.Join(root, "link"))
	if _, err := chrootMountPoint(root, "/link/x", src, "rw"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("through a symbolic link: %v", err)
	}
	if _, err := chrootMountPoint(root, "relative", src, "rw"); err == nil {
		t.Error("a relative mount path: no error")
	}
}
