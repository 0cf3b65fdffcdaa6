package inject

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAppDrain checks the preStop sleep given to application containers: the default, the
// annotation (a number, 0 for none, anything else refused naming it), the cap under the grace
// period, and an application's own preStop hook left alone.
func TestAppDrain(t *testing.T) {
	own := &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/drain"}}}}
	grace := func(n int64) *int64 { return &n }
	cases := []struct {
		name  string
		ann   map[string]string
		grace *int64
		hook  *corev1.Lifecycle
		want  int64 // the app's preStop sleep seconds; 0: none
		err   bool
	}{
		{name: "default", want: DefaultAppDrain},
		{name: "annotation", ann: map[string]string{AnnotationAppDrain: "12"}, want: 12},
		{name: "off", ann: map[string]string{AnnotationAppDrain: "0"}},
		{name: "capped by the grace period", ann: map[string]string{AnnotationAppDrain: "12"}, grace: grace(4), want: 3},
		{name: "no grace", grace: grace(1)},
		{name: "own hook", hook: own},
		{name: "bad", ann: map[string]string{AnnotationAppDrain: "5s"}, err: true},
		{name: "negative", ann: map[string]string{AnnotationAppDrain: "-1"}, err: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: tc.ann},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: tc.grace,
					Containers: []corev1.Container{{Name: "app", Image: "app", Lifecycle: tc.hook}}}}
			out, err := Inject(pod, "default", testConfig())
			var ae *annotationError
			if tc.err {
				if !errors.As(err, &ae) || ae.key != AnnotationAppDrain {
					t.Fatalf("Inject: %v, want an error naming %s", err, AnnotationAppDrain)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var app corev1.Container
			for _, c := range out.Spec.Containers {
				if c.Name == "app" {
					app = c
				}
			}
			switch {
			case tc.hook != nil:
				if app.Lifecycle != tc.hook && app.Lifecycle.PreStop.Exec == nil {
					t.Errorf("the app's own preStop hook was replaced: %+v", app.Lifecycle)
				}
			case tc.want == 0:
				if app.Lifecycle != nil && app.Lifecycle.PreStop != nil {
					t.Errorf("preStop %+v, want none", app.Lifecycle.PreStop)
				}
			default:
				if app.Lifecycle == nil || app.Lifecycle.PreStop == nil || app.Lifecycle.PreStop.Sleep == nil || app.Lifecycle.PreStop.Sleep.Seconds != tc.want {
					t.Errorf("preStop %+v, want a sleep of %d s", app.Lifecycle, tc.want)
				}
			}
			for _, c := range append(out.Spec.InitContainers, out.Spec.Containers...) {
				if c.Name == ProxyContainer && c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
					t.Errorf("the proxy got a preStop hook: %+v", c.Lifecycle.PreStop)
				}
			}
		})
	}
}
