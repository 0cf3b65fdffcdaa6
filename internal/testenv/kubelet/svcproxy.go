package kubelet

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
)

// serviceProxy is the node's kube-proxy, in userspace: traffic from the pods to a Service's
// cluster IP and TCP port is redirected (an iptables DNAT rule in the host's nat PREROUTING chain,
// for packets arriving from the node's bridge only) to a listener on the node's address, which
// connects to one of the Service's ready endpoints, in turn. The kubernetes Service's traffic goes
// to the API server. Traffic of the host itself to cluster IPs is not redirected (other tests'
// clusters use the same service range).
type serviceProxy struct {
	node      netip.Addr
	bridge    string
	chain     string
	apiserver string // host:port of the API server
	services  corelisters.ServiceLister
	slices    discoverylisters.EndpointSliceLister
	kick      chan struct{}
	done      chan struct{}
	next      atomic.Uint64

	mu        sync.Mutex
	listeners map[string]*serviceListener // by "CLUSTERIP:PORT"
	rules     string
}

// serviceListener serves one port of one Service.
type serviceListener struct {
	ln                   net.Listener
	namespace, name, key string
	port                 corev1.ServicePort
}

// iptables runs iptables with args in the host's network namespace.
func iptables(args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command("iptables", append([]string{"-w", "5"}, args...)...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// start creates the node's chain, jumps to it from PREROUTING for the bridge's packets, and
// follows Services and EndpointSlices until stop.
func (p *serviceProxy) start() error {
	p.listeners = map[string]*serviceListener{}
	p.kick, p.done = make(chan struct{}, 1), make(chan struct{})
	if err := iptables("-t", "nat", "-N", p.chain); err != nil {
		return err
	}
	if err := iptables("-t", "nat", "-A", "PREROUTING", "-i", p.bridge, "-j", p.chain); err != nil {
		_ = iptables("-t", "nat", "-X", p.chain)
		return err
	}
	go func() {
		for {
			select {
			case <-p.kick:
			case <-p.done:
				return
			}
			p.sync()
			time.Sleep(50 * time.Millisecond) // coalesce bursts of changes
		}
	}()
	notify(p.kick)
	return nil
}

// stop removes the rules and closes the listeners.
func (p *serviceProxy) stop() {
	close(p.done)
	_ = iptables("-t", "nat", "-D", "PREROUTING", "-i", p.bridge, "-j", p.chain)
	_ = iptables("-t", "nat", "-F", p.chain)
	_ = iptables("-t", "nat", "-X", p.chain)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.listeners {
		l.ln.Close()
	}
}

// sync makes the listeners and rules match the Services.
func (p *serviceProxy) sync() {
	svcs, err := p.services.List(labels.Everything())
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[string]bool{}
	for _, svc := range svcs {
		ip := svc.Spec.ClusterIP
		if ip == "" || ip == corev1.ClusterIPNone || net.ParseIP(ip).To4() == nil {
			continue
		}
		for _, port := range svc.Spec.Ports {
			if port.Protocol != "" && port.Protocol != corev1.ProtocolTCP {
				continue
			}
			key := net.JoinHostPort(ip, strconv.Itoa(int(port.Port)))
			want[key] = true
			if l := p.listeners[key]; l != nil {
				l.namespace, l.name, l.port = svc.Namespace, svc.Name, port
				continue
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(p.node.String(), "0"))
			if err != nil {
				continue
			}
			l := &serviceListener{ln: ln, namespace: svc.Namespace, name: svc.Name, key: key, port: port}
			p.listeners[key] = l
			go p.serve(l)
		}
	}
	for key, l := range p.listeners {
		if !want[key] {
			l.ln.Close()
			delete(p.listeners, key)
		}
	}
	var b strings.Builder
	b.WriteString("*nat\n:" + p.chain + " - [0:0]\n")
	for key, l := range p.listeners {
		host, port, _ := net.SplitHostPort(key)
		fmt.Fprintf(&b, "-A %s -d %s/32 -p tcp --dport %s -j DNAT --to-destination %s\n", p.chain, host, port, l.ln.Addr())
	}
	b.WriteString("COMMIT\n")
	if b.String() == p.rules {
		return
	}
	cmd := exec.Command("iptables-restore", "-w", "5", "--noflush")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err == nil {
		p.rules = b.String()
	} else {
		_ = out // retried at the next change
	}
}

// serve accepts connections for one Service port and relays each to an endpoint.
func (p *serviceProxy) serve(l *serviceListener) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		go p.relay(l, c)
	}
}

// relay connects c to one of the Service's ready endpoints, trying the others when one refuses.
func (p *serviceProxy) relay(l *serviceListener, c net.Conn) {
	defer c.Close()
	p.mu.Lock()
	ns, name, port := l.namespace, l.name, l.port
	p.mu.Unlock()
	eps := p.endpoints(ns, name, port)
	if len(eps) == 0 {
		return
	}
	start := int(p.next.Add(1))
	var up net.Conn
	for i := range eps {
		var err error
		if up, err = net.DialTimeout("tcp", eps[(start+i)%len(eps)], 2*time.Second); err == nil {
			break
		}
	}
	if up == nil {
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		close(done)
	}()
	_, _ = io.Copy(c, up)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	<-done
}

// endpoints are the addresses (host:port) of a Service port's ready endpoints; the kubernetes
// Service's is the API server.
func (p *serviceProxy) endpoints(ns, name string, port corev1.ServicePort) []string {
	if ns == "default" && name == "kubernetes" {
		return []string{p.apiserver}
	}
	slices, err := p.slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name}))
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		target := int32(-1)
		for _, sp := range s.Ports {
			if sp.Port != nil && (sp.Name == nil && port.Name == "" || sp.Name != nil && *sp.Name == port.Name) {
				target = *sp.Port
			}
		}
		if target < 0 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				out = append(out, net.JoinHostPort(a, strconv.Itoa(int(target))))
			}
		}
	}
	return out
}

// env is the kubernetes Service's variables every container gets (client-go's in-cluster
// configuration reads them).
func (p *serviceProxy) env() []string {
	svc, err := p.services.Services("default").Get("kubernetes")
	if err != nil || len(svc.Spec.Ports) == 0 {
		return nil
	}
	ip, port := svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port))
	addr := "tcp://" + net.JoinHostPort(ip, port)
	return []string{"KUBERNETES_SERVICE_HOST=" + ip, "KUBERNETES_SERVICE_PORT=" + port, "KUBERNETES_SERVICE_PORT_HTTPS=" + port,
		"KUBERNETES_PORT=" + addr, "KUBERNETES_PORT_" + port + "_TCP=" + addr}
}
