package kube

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/strait-mesh/strait/controlplane/config"
)

// Status condition written on the objects the source reads.
const (
	// ConditionType is the condition's type: whether Strait accepted the object.
	ConditionType = "Accepted"
	// ReasonInvalid is its reason when Strait refused the object (status "False"); the message
	// lists the errors, each with its field path.
	ReasonInvalid = "Invalid"
	// ReasonValid is its reason when an object Strait had refused was mended (status "True").
	// Objects that were never refused get no condition: valid objects cost no status writes.
	ReasonValid = "Valid"
)

// maxConditionMessage bounds a condition's message (many errors in one object).
const maxConditionMessage = 4096

// statusTimeout bounds one status write.
const statusTimeout = 10 * time.Second

// statusPatch is a pending status write.
type statusPatch struct {
	gvr             schema.GroupVersionResource
	namespace, name string
	body            []byte
}

// statusWriter writes status conditions in the background, the latest per object, so that a
// slow API server never holds up config.
type statusWriter struct {
	client dynamic.Interface
	log    interface{ Warn(string, ...any) }

	mu      sync.Mutex
	pending map[config.Key]statusPatch
	kick    chan struct{}
}

func newStatusWriter(client dynamic.Interface, log interface{ Warn(string, ...any) }) *statusWriter {
	return &statusWriter{client: client, log: log, pending: map[config.Key]statusPatch{}, kick: make(chan struct{}, 1)}
}

// update queues the status the object u of kind k (served from gvr) should have given its errors,
// when it differs from the status u has.
func (w *statusWriter) update(k config.Key, gvr schema.GroupVersionResource, u *unstructured.Unstructured, errs []error) {
	cur := currentCondition(u)
	var want map[string]any
	switch {
	case len(errs) == 0 && cur == nil:
		w.forget(k) // never refused (or its condition was removed): nothing to write
		return
	case len(errs) > 0:
		want = map[string]any{"type": ConditionType, "status": "False", "reason": ReasonInvalid, "message": conditionMessage(errs)}
	case cur["status"] != "True":
		want = map[string]any{"type": ConditionType, "status": "True", "reason": ReasonValid, "message": "accepted by Strait"}
	default:
		w.forget(k)
		return
	}
	gen := u.GetGeneration()
	if cur != nil && cur["status"] == want["status"] && cur["reason"] == want["reason"] && cur["message"] == want["message"] &&
		observedGeneration(cur) == gen {
		// The object carries it (written by this replica, or by the leader while this one
		// waited for the lease): nothing to write any more.
		w.forget(k)
		return
	}
	want["observedGeneration"] = gen
	want["lastTransitionTime"] = time.Now().UTC().Format(time.RFC3339)
	// A JSON merge patch replaces the list: the other conditions of the object are kept by
	// writing them back.
	conds := []any{want}
	existing, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range existing {
		if m, ok := c.(map[string]any); ok && m["type"] != ConditionType {
			conds = append(conds, c)
		}
	}
	body, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": conds}})
	if err != nil {
		w.log.Warn("status not written", "object", k.String(), "err", err)
		return
	}
	w.mu.Lock()
	w.pending[k] = statusPatch{gvr: gvr, namespace: k.Namespace, name: k.Name, body: body}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// forget drops a pending write for a deleted object.
func (w *statusWriter) forget(k config.Key) {
	w.mu.Lock()
	delete(w.pending, k)
	w.mu.Unlock()
}

// run writes queued statuses until ctx is done, starting with those queued before it started
// (a replica that just became the leader). A failed write is logged and dropped: the next
// change of the object queues it again.
func (w *statusWriter) run(ctx context.Context) {
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-w.kick:
			}
		}
		w.mu.Lock()
		batch := w.pending
		w.pending = map[config.Key]statusPatch{}
		w.mu.Unlock()
		for k, p := range batch {
			pctx, cancel := context.WithTimeout(ctx, statusTimeout)
			_, err := w.client.Resource(p.gvr).Namespace(p.namespace).Patch(pctx, p.name, types.MergePatchType, p.body, metav1.PatchOptions{FieldManager: "straitd"}, "status")
			cancel()
			if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
				w.log.Warn("status not written", "object", k.String(), "err", err)
			}
		}
	}
}

// currentCondition returns the object's condition of ConditionType, or nil.
func currentCondition(u *unstructured.Unstructured) map[string]any {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == ConditionType {
			return m
		}
	}
	return nil
}

// observedGeneration reads a condition's observedGeneration (a JSON number, or a string as
// Istio's schema allows).
func observedGeneration(c map[string]any) int64 {
	switch v := c["observedGeneration"].(type) {
	case int64:
		return v
	case float64:
		return int64(v)
	case string:
		var n int64
		_ = json.Unmarshal([]byte(v), &n)
		return n
	}
	return -1
}

// conditionMessage lists errors as "FIELD: MESSAGE", without the origin and object each error
// repeats, joined by "; ", within maxConditionMessage bytes.
func conditionMessage(errs []error) string {
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		var ce *config.Error
		if errors.As(e, &ce) {
			if ce.Field != "" {
				parts = append(parts, ce.Field+": "+ce.Msg)
			} else {
				parts = append(parts, ce.Msg)
			}
			continue
		}
		parts = append(parts, e.Error())
	}
	msg := strings.Join(parts, "; ")
	if len(msg) > maxConditionMessage {
		msg = strings.ToValidUTF8(msg[:maxConditionMessage-3], "") + "..."
	}
	return msg
}
