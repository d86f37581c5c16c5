// metrics.go: Prometheus text-format metrics on the standard library, and the admin
// listener's handler (metrics and pprof).
package main

import (
	"bytes"
	"fmt"
	"maps"
	"net/http"
	// Also registers pprof on http.DefaultServeMux, which is safe only because the public
	// listener never serves DefaultServeMux.
	"net/http/pprof"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// durationBounds are the upper bounds (le) of gateway_http_request_duration_seconds, +Inf
// aside. Kept as durations so the hot path compares integers, never floats.
var durationBounds = [...]time.Duration{
	1 * time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	1 * time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
	30 * time.Second,
}

// processStart approximates process_start_time_seconds, a few milliseconds after exec.
var processStart = time.Now()

// metrics holds every metric family. All methods are no-ops on a nil *metrics.
type metrics struct {
	requests     seriesMap[requestKey, atomic.Uint64]
	durations    seriesMap[string, histogram]
	upstreamErrs seriesMap[[2]string, atomic.Uint64]
	authFails    counterVec
	logins       counterVec
	rateLimited  counterVec
	userCache    counterVec
	traceDrops   counterVec
	notifyUp     atomic.Bool
	inflight     atomic.Int64
	poolStats    atomic.Pointer[func() PoolStats]
	clientConns  atomic.Int64
	connsShed    counterVec
}

func newMetrics() *metrics { return &metrics{} }

// counterVec is a counter family keyed by one label.
type counterVec = seriesMap[string, atomic.Uint64]

// requestKey is one gateway_http_requests_total series.
type requestKey struct {
	route, method string
	code          int
}

// histogram is one route's duration series. Buckets are stored non-cumulative and summed at
// scrape time, and _count is derived from them, so the +Inf bucket always equals _count even
// while observations race the scrape.
type histogram struct {
	buckets  [len(durationBounds) + 1]atomic.Uint64
	sumNanos atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	d = max(d, 0)
	i := 0
	for i < len(durationBounds) && d > durationBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sumNanos.Add(uint64(d))
}

// seriesMap maps label values to a series: reads take no lock, a new series copies the map
// under mu. Every label set is bounded, so after warm-up the map never changes.
type seriesMap[K comparable, V any] struct {
	mu  sync.Mutex
	cur atomic.Pointer[map[K]*V]
}

func (s *seriesMap[K, V]) get(k K) *V {
	if v, ok := s.snapshot()[k]; ok {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.snapshot()
	if v, ok := old[k]; ok {
		return v
	}
	next := make(map[K]*V, len(old)+1)
	maps.Copy(next, old)
	v := new(V)
	next[k] = v
	s.cur.Store(&next)
	return v
}

// snapshot is the current series; it must not be written.
func (s *seriesMap[K, V]) snapshot() map[K]*V {
	if p := s.cur.Load(); p != nil {
		return *p
	}
	return nil
}

// methodLabel folds any non-standard method, which clients choose, into "OTHER". Constants
// are returned so a series never keeps a client's string alive.
func methodLabel(m string) string {
	for _, known := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace} {
		if m == known {
			return known
		}
	}
	return "OTHER"
}

// observeRequest counts one finished request. route must be the route pattern, never the raw
// path, which clients control; a code outside 100–999 is recorded as "000".
func (m *metrics) observeRequest(route, method string, code int, d time.Duration) {
	if m == nil {
		return
	}
	if code < 100 || code > 999 {
		code = 0
	}
	m.requests.get(requestKey{route, methodLabel(method), code}).Add(1)
	m.durations.get(route).observe(d)
}

// count adds n to one series of the counter family vec picks.
func (m *metrics) count(vec func(m *metrics) *counterVec, label string, n uint64) {
	if m != nil && n > 0 {
		vec(m).get(label).Add(n)
	}
}

// upstreamError counts a failed proxy attempt; kind is e.g. "unreachable", "timeout".
func (m *metrics) upstreamError(upstream, kind string) {
	if m != nil {
		m.upstreamErrs.get([2]string{upstream, kind}).Add(1)
	}
}

// The label of each counter below is one of a fixed set of words, never client input.
func (m *metrics) authFailure(reason string)   { m.count(authFailsVec, reason, 1) }
func (m *metrics) login(outcome string)        { m.count(loginsVec, outcome, 1) }
func (m *metrics) rateLimitRejection(l string) { m.count(rateLimitedVec, l, 1) }
func (m *metrics) userCacheEvent(event string) { m.count(userCacheVec, event, 1) }
func (m *metrics) connShed(reason string)      { m.count(connsShedVec, reason, 1) }
func (m *metrics) traceSpansDropped(reason string, n int) {
	m.count(traceDropsVec, reason, uint64(max(n, 0)))
}

func authFailsVec(m *metrics) *counterVec   { return &m.authFails }
func loginsVec(m *metrics) *counterVec      { return &m.logins }
func rateLimitedVec(m *metrics) *counterVec { return &m.rateLimited }
func userCacheVec(m *metrics) *counterVec   { return &m.userCache }
func connsShedVec(m *metrics) *counterVec   { return &m.connsShed }
func traceDropsVec(m *metrics) *counterVec  { return &m.traceDrops }

func (m *metrics) setNotificationsUp(up bool) {
	if m != nil {
		m.notifyUp.Store(up)
	}
}

func (m *metrics) inflightAdd(delta int64) {
	if m != nil {
		m.inflight.Add(delta)
	}
}

func (m *metrics) clientConnsAdd(delta int64) {
	if m != nil {
		m.clientConns.Add(delta)
	}
}

// setPoolStats installs the scrape-time callback of gateway_db_pool_connections; nil removes it.
func (m *metrics) setPoolStats(f func() PoolStats) {
	if m != nil {
		m.poolStats.Store(&f)
	}
}

// ServeHTTP writes the exposition; HEAD gets the headers only.
func (m *metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m == nil {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, r, http.StatusMethodNotAllowed, codeMethodNotAllowed, "Method Not Allowed")
		return
	}
	var buf bytes.Buffer
	m.writeExposition(&buf)
	h := w.Header()
	h.Set("Content-Type", metricsContentType)
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(buf.Bytes())
	}
}

// metricFamily is one family of the exposition and how its series are read at scrape time.
type metricFamily struct {
	name, typ, help string
	labels          []string
	read            func(m *metrics) []sample
	optional        bool // left out entirely when it has no series
}

// sample is one series: a name suffix (_bucket, _sum, _count), the values of the family's
// labels, in order, and its value.
type sample struct {
	suffix string
	values []string
	value  string
}

// metricFamilies is every family, in name order.
var metricFamilies = []metricFamily{
	{"gateway_auth_failures_total", "counter", "Requests refused for a missing or invalid token, by reason.",
		[]string{"reason"}, countsOf(authFailsVec), false},
	{"gateway_client_connections", "gauge", "Open client connections on the public listener.",
		nil, func(m *metrics) []sample { return one(strconv.FormatInt(m.clientConns.Load(), 10)) }, false},
	{"gateway_client_connections_shed_total", "counter", "Client connections closed by GATEWAY_MAX_CONNECTIONS, by reason.",
		[]string{"reason"}, countsOf(connsShedVec), false},
	{"gateway_db_pool_connections", "gauge", "Database pool connections by state.",
		[]string{"state"}, poolSamples, false},
	{"gateway_http_request_duration_seconds", "histogram", "Time from request received to response finished, by route pattern.",
		[]string{"route", "le"}, durationSamples, false},
	{"gateway_http_requests_total", "counter", "Requests answered, by route pattern, method and status code.",
		[]string{"route", "method", "code"}, requestSamples, false},
	{"gateway_inflight_requests", "gauge", "Requests being served right now.",
		nil, func(m *metrics) []sample { return one(strconv.FormatInt(m.inflight.Load(), 10)) }, false},
	{"gateway_logins_total", "counter", "Login attempts, by outcome.",
		[]string{"outcome"}, countsOf(loginsVec), false},
	{"gateway_ratelimit_rejections_total", "counter", "Requests refused with 429, by limit.",
		[]string{"limit"}, countsOf(rateLimitedVec), false},
	{"gateway_trace_spans_dropped_total", "counter", "Spans never exported, by reason: queue_full (the collector is slow or down), export_failed, rejected (by the collector), shutdown (not flushed within the shutdown grace).",
		[]string{"reason"}, countsOf(traceDropsVec), false},
	{"gateway_upstream_errors_total", "counter", "Failed upstream calls, by upstream and kind.",
		[]string{"upstream", "kind"}, upstreamErrorSamples, false},
	{"gateway_user_cache_events_total", "counter", "User cache events: stale_served (the database failed and the last known state was used), fail_fast (the database was not asked while failing), notifications_lost.",
		[]string{"event"}, countsOf(userCacheVec), false},
	{"gateway_user_notifications_up", "gauge", "1 while the database's change notifications reach the user cache, else 0 (the TTL alone then bounds staleness).",
		nil, func(m *metrics) []sample { return one(map[bool]string{false: "0", true: "1"}[m.notifyUp.Load()]) }, false},
	{"go_goroutines", "gauge", "Number of goroutines that currently exist.",
		nil, func(*metrics) []sample { return one(strconv.Itoa(runtime.NumGoroutine())) }, false},
	{"go_memstats_heap_inuse_bytes", "gauge", "Number of heap bytes that are in use.",
		nil, func(*metrics) []sample { return one(strconv.FormatUint(heapInuse(), 10)) }, false},
	{"process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
		nil, residentSamples, true},
	{"process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
		nil, func(*metrics) []sample {
			return one(strconv.FormatFloat(float64(processStart.UnixNano())/1e9, 'f', 3, 64))
		}, false},
}

func one(value string) []sample { return []sample{{value: value}} }

// counterSamples reads a counter family, labelled by labels(key) and ordered by label values.
func counterSamples[K comparable](s *seriesMap[K, atomic.Uint64], labels func(K) []string) []sample {
	var out []sample
	for k, v := range s.snapshot() {
		out = append(out, sample{values: labels(k), value: strconv.FormatUint(v.Load(), 10)})
	}
	slices.SortFunc(out, func(a, b sample) int { return slices.Compare(a.values, b.values) })
	return out
}

func countsOf(vec func(m *metrics) *counterVec) func(m *metrics) []sample {
	return func(m *metrics) []sample {
		return counterSamples(vec(m), func(k string) []string { return []string{k} })
	}
}

func poolSamples(m *metrics) []sample {
	f := m.poolStats.Load()
	if f == nil || *f == nil {
		return nil
	}
	s := (*f)()
	n := func(state string, v int32) sample {
		return sample{values: []string{state}, value: strconv.Itoa(int(max(v, 0)))}
	}
	return []sample{n("acquired", s.Acquired), n("idle", s.Idle), n("total", s.Total)}
}

func durationSamples(m *metrics) []sample {
	var out []sample
	series := m.durations.snapshot()
	for _, route := range slices.Sorted(maps.Keys(series)) {
		h, cum := series[route], uint64(0)
		for i := range h.buckets {
			cum += h.buckets[i].Load()
			le := "+Inf"
			if i < len(durationBounds) {
				le = strconv.FormatFloat(durationBounds[i].Seconds(), 'g', -1, 64)
			}
			out = append(out, sample{"_bucket", []string{route, le}, strconv.FormatUint(cum, 10)})
		}
		sum := strconv.FormatFloat(float64(h.sumNanos.Load())/1e9, 'g', -1, 64)
		out = append(out, sample{"_sum", []string{route}, sum}, sample{"_count", []string{route}, strconv.FormatUint(cum, 10)})
	}
	return out
}

func requestSamples(m *metrics) []sample {
	return counterSamples(&m.requests, func(k requestKey) []string {
		// 0 (out of range) is "000"; three digits sort as numbers
		return []string{k.route, k.method, fmt.Sprintf("%03d", k.code)}
	})
}

func upstreamErrorSamples(m *metrics) []sample {
	return counterSamples(&m.upstreamErrs, func(k [2]string) []string { return k[:] })
}

// heapInuse reads runtime/metrics, not runtime.ReadMemStats, which stops the world.
func heapInuse() uint64 {
	samples := []rtmetrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	rtmetrics.Read(samples)
	var heap uint64
	for _, s := range samples {
		if s.Value.Kind() == rtmetrics.KindUint64 {
			heap += s.Value.Uint64()
		}
	}
	return heap
}

// residentSamples reads the resident set from /proc/self/statm (pages); absent off Linux.
func residentSamples(*metrics) []sample {
	raw, _ := os.ReadFile("/proc/self/statm")
	fields := strings.Fields(string(raw))
	if len(fields) < 2 {
		return nil
	}
	pages, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return nil
	}
	return one(strconv.FormatUint(pages*uint64(os.Getpagesize()), 10))
}

// Format 0.0.4 escapes backslash and newline, and '"' in label values; it is UTF-8.
var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func (m *metrics) writeExposition(buf *bytes.Buffer) {
	for _, f := range metricFamilies {
		samples := f.read(m)
		if f.optional && len(samples) == 0 {
			continue
		}
		help := helpEscaper.Replace(strings.ToValidUTF8(f.help, "\uFFFD"))
		fmt.Fprintf(buf, "# HELP %s %s\n# TYPE %s %s\n", f.name, help, f.name, f.typ)
		for _, s := range samples {
			buf.WriteString(f.name + s.suffix)
			sep := "{"
			for i, v := range s.values {
				fmt.Fprintf(buf, `%s%s="%s"`, sep, f.labels[i], labelEscaper.Replace(strings.ToValidUTF8(v, "\uFFFD")))
				sep = ","
			}
			if len(s.values) > 0 {
				buf.WriteByte('}')
			}
			buf.WriteString(" " + s.value + "\n")
		}
	}
}

const (
	// adminWriteTimeout bounds every admin answer; pprof extends it for ?seconds=.
	adminWriteTimeout = 60 * time.Second
	// adminMaxProfileSeconds bounds ?seconds=: a profile or trace holds a connection (and CPU) that long.
	adminMaxProfileSeconds = 60
)

// newAdminHandlerFor serves /metrics, pprof when withPprof, and a JSON 404 for anything else.
// It must never be mounted on the public port: pprof exposes the command line, heap and CPU
// profiles, which is also why it is off unless asked for.
func newAdminHandlerFor(m *metrics, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m)
	if withPprof {
		mux.Handle("/debug/pprof/", boundProfileSeconds(pprof.Index))
		mux.Handle("/debug/pprof/cmdline", boundProfileSeconds(pprof.Cmdline))
		mux.Handle("/debug/pprof/profile", boundProfileSeconds(pprof.Profile))
		mux.Handle("/debug/pprof/symbol", boundProfileSeconds(pprof.Symbol))
		mux.Handle("/debug/pprof/trace", boundProfileSeconds(pprof.Trace))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, codeNotFound, "Not Found")
	})
	return mux
}

// boundProfileSeconds refuses ?seconds= over adminMaxProfileSeconds: pprof moves the write
// deadline to match any. Only GET and HEAD pass, so a POST body cannot carry another "seconds".
func boundProfileSeconds(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, r, http.StatusMethodNotAllowed, codeMethodNotAllowed, "Method Not Allowed")
			return
		}
		if v := r.URL.Query().Get("seconds"); v != "" {
			if n, err := strconv.Atoi(v); err != nil || n > adminMaxProfileSeconds {
				writeError(w, r, http.StatusBadRequest, codeValidation,
					"seconds must be a whole number of at most "+strconv.Itoa(adminMaxProfileSeconds))
				return
			}
		}
		next(w, r)
	})
}
