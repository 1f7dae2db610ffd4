package observe

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Every request used to look up six labelled children by their label
// values (WithLabelValues: hashing the values and a read lock shared by
// every core), for labels that are fixed per route or per store operation.
// The children are now looked up once and kept here. Each is bound on its
// first use, never before, so /metrics shows exactly the series it showed
// when every call named its labels.

// routeKey is the labels every per-request series shares.
type routeKey struct{ frontend, route string }

// routeMetrics are the children of one frontend and route.
type routeMetrics struct {
	key              routeKey
	requests         [len(statusClasses) + 1]atomic.Pointer[prometheus.Counter] // by class index, then "other"
	requestDuration  atomic.Pointer[prometheus.Observer]
	upstream         [len(statusClasses) + 2]atomic.Pointer[prometheus.Counter] // by class index, "other", "error"
	upstreamDuration atomic.Pointer[prometheus.Observer]
}

// routeSet maps labels to their children. Reads take no lock: the map is
// replaced, never changed, when a new pair of labels appears. Labels are
// frontend names and configured routes, so it stays small.
type routeSet struct {
	m  atomic.Pointer[map[routeKey]*routeMetrics]
	mu sync.Mutex // serializes writers
}

func (s *routeSet) get(frontend, route string) *routeMetrics {
	k := routeKey{frontend, route}
	if m := s.m.Load(); m != nil {
		if rm, ok := (*m)[k]; ok {
			return rm
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.m.Load()
	if old != nil {
		if rm, ok := (*old)[k]; ok {
			return rm
		}
	}
	next := make(map[routeKey]*routeMetrics, 1+len(ptrMap(old)))
	for k, v := range ptrMap(old) {
		next[k] = v
	}
	rm := &routeMetrics{key: k}
	next[k] = rm
	s.m.Store(&next)
	return rm
}

func ptrMap(m *map[routeKey]*routeMetrics) map[routeKey]*routeMetrics {
	if m == nil {
		return nil
	}
	return *m
}

// classIndex is the index of status's class in statusClasses, or
// len(statusClasses) for "other".
func classIndex(status int) int {
	if status < 100 || status > 599 {
		return len(statusClasses)
	}
	return status/100 - 1
}

// bindCounter binds the child of vec with labels into slot. Callers load
// the slot first and call this only when it is empty, so that the label
// slice is built only then.
func bindCounter(slot *atomic.Pointer[prometheus.Counter], vec *prometheus.CounterVec, labels ...string) prometheus.Counter {
	c := vec.WithLabelValues(labels...)
	slot.Store(&c) // a racing bind stores the same child
	return c
}

// bindObserver is bindCounter for histograms.
func bindObserver(slot *atomic.Pointer[prometheus.Observer], vec *prometheus.HistogramVec, labels ...string) prometheus.Observer {
	o := vec.WithLabelValues(labels...)
	slot.Store(&o)
	return o
}

func classLabel(i int) string {
	switch {
	case i < len(statusClasses):
		return statusClasses[i]
	case i == len(statusClasses):
		return "other"
	}
	return "error"
}

func (rm *routeMetrics) request(m *Metrics, class int) prometheus.Counter {
	if c := rm.requests[class].Load(); c != nil {
		return *c
	}
	return bindCounter(&rm.requests[class], m.requests, rm.key.frontend, rm.key.route, classLabel(class))
}

func (rm *routeMetrics) requestTime(m *Metrics) prometheus.Observer {
	if o := rm.requestDuration.Load(); o != nil {
		return *o
	}
	return bindObserver(&rm.requestDuration, m.requestDuration, rm.key.frontend, rm.key.route)
}

func (rm *routeMetrics) upstreamAnswer(m *Metrics, class int) prometheus.Counter {
	if c := rm.upstream[class].Load(); c != nil {
		return *c
	}
	return bindCounter(&rm.upstream[class], m.upstreamResponses, rm.key.frontend, rm.key.route, classLabel(class))
}

func (rm *routeMetrics) upstreamTime(m *Metrics) prometheus.Observer {
	if o := rm.upstreamDuration.Load(); o != nil {
		return *o
	}
	return bindObserver(&rm.upstreamDuration, m.upstreamDuration, rm.key.frontend, rm.key.route)
}

// Store call results, the values of the "result" label.
const (
	resultOK = iota
	resultNotFound
	resultExists
	resultCanceled
	resultError
	numResults
)

var resultNames = [numResults]string{"ok", "not_found", "exists", "canceled", "error"}

// opMetrics are the children of one store operation.
type opMetrics struct {
	name     string
	results  [numResults]atomic.Pointer[prometheus.Counter]
	duration atomic.Pointer[prometheus.Observer]
}

func (o *opMetrics) count(m *Metrics, result int) prometheus.Counter {
	if c := o.results[result].Load(); c != nil {
		return *c
	}
	return bindCounter(&o.results[result], m.storeOps, o.name, resultNames[result])
}

func (o *opMetrics) time(m *Metrics) prometheus.Observer {
	if d := o.duration.Load(); d != nil {
		return *d
	}
	return bindObserver(&o.duration, m.storeDuration, o.name)
}
