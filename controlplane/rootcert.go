package controlplane

import (
	"context"
	"errors"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/strait-mesh/strait/controlplane/leader"
)

// The ConfigMap holding the mesh's roots in every namespace, as Istio's namespace controller
// writes it: injected sidecars mount it as /var/run/secrets/istio/root-cert.pem to verify the CA.
const (
	RootCertConfigMap = "istio-ca-root-cert"
	RootCertKey       = "root-cert.pem"
)

// rootCertSkipped are the namespaces that get no root-cert ConfigMap (Istio's choice).
var rootCertSkipped = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true}

// rootCertWriter keeps ConfigMap istio-ca-root-cert (key root-cert.pem: the CA's trust bundle,
// label istio.io/config: "true") in every namespace: on start, in new namespaces, after a
// change of the trust bundle, and after someone edits or deletes it.
type rootCertWriter struct {
	client kubernetes.Interface
	// bundle returns the current trust bundle PEM.
	bundle func() []byte
	// only, when not empty, limits the namespaces written (straitd's --kube-namespaces).
	only map[string]bool
	log  *slog.Logger
}

// run writes the ConfigMaps until ctx ends; changed signals a new trust bundle. Failed writes are
// retried with backoff and logged.
func (w *rootCertWriter) run(ctx context.Context, changed <-chan struct{}) {
	nsInf := informers.NewSharedInformerFactory(w.client, 0)
	cmInf := informers.NewSharedInformerFactoryWithOptions(w.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = "metadata.name=" + RootCertConfigMap
	}))
	namespaces := nsInf.Core().V1().Namespaces()
	configMaps := cmInf.Core().V1().ConfigMaps()
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "root-cert-configmaps"})
	defer q.ShutDown()

	enqueueNS := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok {
			q.Add(ns.Name)
		}
	}
	enqueueCM := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			q.Add(cm.Namespace)
		}
	}
	if _, err := namespaces.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueueNS}); err != nil {
		w.log.Error("root-cert ConfigMaps: watching namespaces", "error", err)
		return
	}
	if _, err := configMaps.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) { enqueueCM(obj) },
		DeleteFunc: enqueueCM,
	}); err != nil {
		w.log.Error("root-cert ConfigMaps: watching ConfigMaps", "error", err)
		return
	}
	nsInf.Start(ctx.Done())
	cmInf.Start(ctx.Done())
	defer nsInf.Shutdown()
	defer cmInf.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), namespaces.Informer().HasSynced, configMaps.Informer().HasSynced) {
		return
	}

	go func() {
		for {
			select {
			case <-ctx.Done():
				q.ShutDown()
				return
			case <-changed:
				nss, err := namespaces.Lister().List(labels.Everything())
				if err != nil {
					w.log.Error("root-cert ConfigMaps: listing namespaces", "error", err)
					continue
				}
				w.log.Info("the trust bundle changed: updating the root-cert ConfigMaps", "namespaces", len(nss))
				for _, ns := range nss {
					q.Add(ns.Name)
				}
			}
		}
	}()
	for {
		ns, shutdown := q.Get()
		if shutdown {
			return
		}
		err := w.reconcile(ctx, ns, namespaces.Lister().Get, configMaps.Lister().ConfigMaps(ns).Get)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("root-cert ConfigMaps: writing", "namespace", ns, "error", err, "retries", q.NumRequeues(ns))
			q.AddRateLimited(ns)
		} else {
			q.Forget(ns)
		}
		q.Done(ns)
	}
}

// reconcile makes namespace ns's root-cert ConfigMap hold the current bundle (a no-op when it
// does, or when the namespace is skipped, gone or terminating).
func (w *rootCertWriter) reconcile(ctx context.Context, ns string, getNS func(string) (*corev1.Namespace, error),
	getCM func(string) (*corev1.ConfigMap, error)) error {
	if rootCertSkipped[ns] || (len(w.only) > 0 && !w.only[ns]) {
		return nil
	}
	n, err := getNS(ns)
	if apierrors.IsNotFound(err) || (err == nil && n.Status.Phase == corev1.NamespaceTerminating) {
		return nil
	}
	if err != nil {
		return err
	}
	bundle := string(w.bundle())
	if bundle == "" {
		return errors.New("the CA has no trust bundle")
	}
	cms := w.client.CoreV1().ConfigMaps(ns)
	cur, err := getCM(RootCertConfigMap)
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: RootCertConfigMap, Namespace: ns, Labels: map[string]string{"istio.io/config": "true"}},
			Data:       map[string]string{RootCertKey: bundle},
		}, metav1.CreateOptions{FieldManager: "straitd"})
		if err == nil {
			w.log.Info("wrote the root-cert ConfigMap", "namespace", ns)
		}
		return err
	}
	if err != nil {
		return err
	}
	if cur.Data[RootCertKey] == bundle && cur.Labels["istio.io/config"] == "true" {
		return nil
	}
	up := cur.DeepCopy() // the lister's object is shared
	if up.Labels == nil {
		up.Labels = map[string]string{}
	}
	up.Labels["istio.io/config"] = "true"
	if up.Data == nil {
		up.Data = map[string]string{}
	}
	up.Data[RootCertKey] = bundle
	if _, err := cms.Update(ctx, up, metav1.UpdateOptions{FieldManager: "straitd"}); err != nil {
		return err
	}
	w.log.Info("updated the root-cert ConfigMap", "namespace", ns)
	return nil
}

// startRootCertWriter runs the root-cert ConfigMap writer while el leads, when straitd has both
// a CA and Kubernetes.
func startRootCertWriter(el *leader.Elector, kcfg *rest.Config, mp *meshPort, only []string, log *slog.Logger) {
	if kcfg == nil || mp == nil {
		return
	}
	client, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		log.Error("root-cert ConfigMaps: kubernetes client", "error", err)
		return
	}
	w := &rootCertWriter{client: client, bundle: mp.authority.TrustBundlePEM, log: log.With("component", "root-cert-configmaps")}
	if len(only) > 0 {
		w.only = make(map[string]bool, len(only))
		for _, ns := range only {
			w.only[ns] = true
		}
	}
	el.Go("root-cert ConfigMaps", func(ctx context.Context) { w.run(ctx, mp.rootsChanged) })
}
