// metrics.go: Prometheus text-format metrics on the standard library, and the admin
// listener's handler (metrics and pprof).
package main

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"net/http"
	// Importing net/http/pprof also registers its handlers on http.DefaultServeMux as a side
	// effect. That is acceptable only because the public listener never uses
	// DefaultServeMux (it serves the handler built by routes()); the admin handler below
	// registers the pprof handlers explicitly on its own mux.
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

// metricsContentType is the Prometheus text exposition format this file writes.
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

// processStart approximates process_start_time_seconds: package initialisation runs a few
// milliseconds after exec, which is well inside what a scraper can resolve.
var processStart = time.Now()

// metrics holds every metric family. All methods are safe on a nil *metrics (no-op), so
// tests and tools may pass nil.
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
	clientConns  atomic.Int64 // open client connections (GATEWAY_MAX_CONNECTIONS)
	connsShed    counterVec   // client connections closed by the cap, by reason
}

func newMetrics() *metrics { return &metrics{} }

// counterVec is a counter family keyed by one label.
type counterVec = seriesMap[string, atomic.Uint64]

// requestKey is one gateway_http_requests_total series. code stays an int so the hot path
// never formats it.
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
	if d < 0 {
		d = 0
	}
	i := 0
	for i < len(durationBounds) && d > durationBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sumNanos.Add(uint64(d))
}

// seriesMap maps label values to a series. Reads are one atomic load and one map lookup,
// with no lock and no allocation; a new series copies the map under mu. Copying is fine
// because every label set is bounded (route patterns, normalised methods, status codes,
// fixed reasons), so after warm-up the map never changes.
type seriesMap[K comparable, V any] struct {
	mu  sync.Mutex
	cur atomic.Pointer[map[K]*V]
}

func (s *seriesMap[K, V]) get(k K) *V {
	if p := s.cur.Load(); p != nil {
		if v, ok := (*p)[k]; ok {
			return v
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := map[K]*V{}
	if old := s.cur.Load(); old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
		next = maps.Clone(*old)
	}
	v := new(V)
	next[k] = v
	s.cur.Store(&next)
	return v
}

// sorted returns a snapshot of the series ordered by cmpKey, for a stable exposition.
func (s *seriesMap[K, V]) sorted(cmpKey func(a, b K) int) []entry[K, V] {
	p := s.cur.Load()
	if p == nil {
		return nil
	}
	out := make([]entry[K, V], 0, len(*p))
	for k, v := range *p {
		out = append(out, entry[K, V]{k, v})
	}
	slices.SortFunc(out, func(a, b entry[K, V]) int { return cmpKey(a.k, b.k) })
	return out
}

type entry[K comparable, V any] struct {
	k K
	v *V
}

// methodLabel bounds the method label of metrics, logs and spans: clients choose the method,
// so anything beyond the standard ones is folded into "OTHER". Constants are returned so a
// series never keeps a client's string (and the request line it was cut from) alive.
func methodLabel(m string) string {
	for _, known := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace} {
		if m == known {
			return known
		}
	}
	return "OTHER"
}

// observeRequest counts one finished request and its duration. route must be the route
// pattern (e.g. "/api/v1/query/{path...}"), never the raw path, which clients control.
// A code outside 100–999 is recorded as "000" so it cannot widen the label set.
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

// upstreamError counts a failed proxy attempt; kind is e.g. "unreachable", "timeout".
func (m *metrics) upstreamError(upstream, kind string) {
	if m != nil {
		m.upstreamErrs.get([2]string{upstream, kind}).Add(1)
	}
}

// authFailure counts a refused token; reason is a fixed word, never the token.
func (m *metrics) authFailure(reason string) {
	if m != nil {
		m.authFails.get(reason).Add(1)
	}
}

// login counts a login attempt by outcome ("success", "failure", "rate_limited", "busy", "unavailable", "client_gone").
func (m *metrics) login(outcome string) {
	if m != nil {
		m.logins.get(outcome).Add(1)
	}
}

// rateLimitRejection counts a 429 by the limit that refused it.
func (m *metrics) rateLimitRejection(limit string) {
	if m != nil {
		m.rateLimited.get(limit).Add(1)
	}
}

// userCacheEvent counts what the user cache did besides answering from memory:
// "stale_served", "fail_fast", "notifications_lost".
func (m *metrics) userCacheEvent(event string) {
	if m != nil {
		m.userCache.get(event).Add(1)
	}
}

// traceSpansDropped counts n spans that were never exported, by reason: "queue_full",
// "export_failed", "rejected" (by the collector), "shutdown".
func (m *metrics) traceSpansDropped(reason string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.traceDrops.get(reason).Add(uint64(n))
}

// setNotificationsUp records whether the database's change notifications reach the cache.
func (m *metrics) setNotificationsUp(up bool) {
	if m != nil {
		m.notifyUp.Store(up)
	}
}

// inflightAdd moves gateway_inflight_requests; callers pair +1 with a deferred -1.
func (m *metrics) inflightAdd(delta int64) {
	if m != nil {
		m.inflight.Add(delta)
	}
}

// clientConnsAdd moves gateway_client_connections.
func (m *metrics) clientConnsAdd(delta int64) {
	if m != nil {
		m.clientConns.Add(delta)
	}
}

// connShed counts a client connection the connection cap closed; reason is a fixed word.
func (m *metrics) connShed(reason string) {
	if m != nil {
		m.connsShed.get(reason).Add(1)
	}
}

// setPoolStats installs the callback read at scrape time for gateway_db_pool_connections;
// nil removes it (no pool, no series).
func (m *metrics) setPoolStats(f func() PoolStats) {
	if m == nil {
		return
	}
	if f == nil {
		m.poolStats.Store(nil)
		return
	}
	m.poolStats.Store(&f)
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

// metricFamily is one family of the exposition: its name, type, help and label names, and
// how its series are read at scrape time. Adding a metric is one row of metricFamilies (plus
// the field and method that feed it).
type metricFamily struct {
	name, typ, help string
	labels          []string
	read            func(m *metrics) []sample
	optional        bool // left out entirely when it has no series
}

// sample is one series: a name suffix (a histogram's _bucket, _sum, _count), its label values
// paired in order with the family's label names (_sum and _count stop before le), and its
// value as text.
type sample struct {
	suffix string
	values []string
	value  string
}

// metricFamilies is every family, in name order.
var metricFamilies = []metricFamily{
	{"gateway_auth_failures_total", "counter", "Requests refused for a missing or invalid token, by reason.",
		[]string{"reason"}, countsOf(func(m *metrics) *counterVec { return &m.authFails }), false},
	{"gateway_client_connections", "gauge", "Open client connections on the public listener.",
		nil, func(m *metrics) []sample { return one(strconv.FormatInt(m.clientConns.Load(), 10)) }, false},
	{"gateway_client_connections_shed_total", "counter", "Client connections closed by GATEWAY_MAX_CONNECTIONS, by reason.",
		[]string{"reason"}, countsOf(func(m *metrics) *counterVec { return &m.connsShed }), false},
	{"gateway_db_pool_connections", "gauge", "Database pool connections by state.",
		[]string{"state"}, poolSamples, false},
	{"gateway_http_request_duration_seconds", "histogram", "Time from request received to response finished, by route pattern.",
		[]string{"route", "le"}, durationSamples, false},
	{"gateway_http_requests_total", "counter", "Requests answered, by route pattern, method and status code.",
		[]string{"route", "method", "code"}, requestSamples, false},
	{"gateway_inflight_requests", "gauge", "Requests being served right now.",
		nil, func(m *metrics) []sample { return one(strconv.FormatInt(m.inflight.Load(), 10)) }, false},
	{"gateway_logins_total", "counter", "Login attempts, by outcome.",
		[]string{"outcome"}, countsOf(func(m *metrics) *counterVec { return &m.logins }), false},
	{"gateway_ratelimit_rejections_total", "counter", "Requests refused with 429, by limit.",
		[]string{"limit"}, countsOf(func(m *metrics) *counterVec { return &m.rateLimited }), false},
	{"gateway_trace_spans_dropped_total", "counter", "Spans never exported, by reason: queue_full (the collector is slow or down), export_failed, rejected (by the collector), shutdown (not flushed within the shutdown grace).",
		[]string{"reason"}, countsOf(func(m *metrics) *counterVec { return &m.traceDrops }), false},
	{"gateway_upstream_errors_total", "counter", "Failed upstream calls, by upstream and kind.",
		[]string{"upstream", "kind"}, upstreamErrorSamples, false},
	{"gateway_user_cache_events_total", "counter", "User cache events: stale_served (the database failed and the last known state was used), fail_fast (the database was not asked while failing), notifications_lost.",
		[]string{"event"}, countsOf(func(m *metrics) *counterVec { return &m.userCache }), false},
	{"gateway_user_notifications_up", "gauge", "1 while the database's change notifications reach the user cache, else 0 (the TTL alone then bounds staleness).",
		nil, func(m *metrics) []sample { return one(strconv.Itoa(boolToInt(m.notifyUp.Load()))) }, false},
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

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// countsOf reads a counter family keyed by one label.
func countsOf(vec func(m *metrics) *counterVec) func(m *metrics) []sample {
	return func(m *metrics) []sample {
		var out []sample
		for _, e := range vec(m).sorted(strings.Compare) {
			out = append(out, sample{values: []string{e.k}, value: strconv.FormatUint(e.v.Load(), 10)})
		}
		return out
	}
}

func poolSamples(m *metrics) []sample {
	f := m.poolStats.Load()
	if f == nil {
		return nil
	}
	s := (*f)()
	var out []sample
	for _, st := range []struct {
		state string
		n     int32
	}{{"acquired", s.Acquired}, {"idle", s.Idle}, {"total", s.Total}} {
		out = append(out, sample{values: []string{st.state}, value: strconv.Itoa(int(max(st.n, 0)))})
	}
	return out
}

func durationSamples(m *metrics) []sample {
	var out []sample
	for _, e := range m.durations.sorted(strings.Compare) {
		var cum uint64
		for i := range e.v.buckets {
			cum += e.v.buckets[i].Load()
			le := "+Inf"
			if i < len(durationBounds) {
				le = strconv.FormatFloat(durationBounds[i].Seconds(), 'g', -1, 64)
			}
			out = append(out, sample{"_bucket", []string{e.k, le}, strconv.FormatUint(cum, 10)})
		}
		sum := strconv.FormatFloat(float64(e.v.sumNanos.Load())/1e9, 'g', -1, 64)
		out = append(out, sample{"_sum", []string{e.k}, sum}, sample{"_count", []string{e.k}, strconv.FormatUint(cum, 10)})
	}
	return out
}

func requestSamples(m *metrics) []sample {
	var out []sample
	for _, e := range m.requests.sorted(func(x, y requestKey) int {
		return cmp.Or(strings.Compare(x.route, y.route), strings.Compare(x.method, y.method), cmp.Compare(x.code, y.code))
	}) {
		code := fmt.Sprintf("%03d", e.k.code) // 0 (out of range) is "000"
		out = append(out, sample{values: []string{e.k.route, e.k.method, code}, value: strconv.FormatUint(e.v.Load(), 10)})
	}
	return out
}

func upstreamErrorSamples(m *metrics) []sample {
	var out []sample
	for _, e := range m.upstreamErrs.sorted(func(x, y [2]string) int {
		return cmp.Or(strings.Compare(x[0], y[0]), strings.Compare(x[1], y[1]))
	}) {
		out = append(out, sample{values: e.k[:], value: strconv.FormatUint(e.v.Load(), 10)})
	}
	return out
}

// heapInuse reads runtime/metrics instead of runtime.ReadMemStats, which stops the world.
// HeapInuse is the bytes of in-use spans: live objects plus the unused space inside them.
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
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return nil
	}
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

// Format 0.0.4 escapes backslash and newline everywhere, and the double quote inside label
// values. Invalid UTF-8 becomes U+FFFD, as the format is UTF-8.
var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// writeExposition writes every family in name order, each series in label order.
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
			for i, v := range s.values {
				sep := ","
				if i == 0 {
					sep = "{"
				}
				fmt.Fprintf(buf, `%s%s="%s"`, sep, f.labels[i], labelEscaper.Replace(strings.ToValidUTF8(v, "\uFFFD")))
			}
			if len(s.values) > 0 {
				buf.WriteByte('}')
			}
			buf.WriteString(" " + s.value + "\n")
		}
	}
}

// adminWriteTimeout bounds every answer of the admin listener. pprof extends it for
// endpoints that sample for ?seconds=, which adminMaxProfileSeconds bounds in turn.
const adminWriteTimeout = 60 * time.Second

// adminMaxProfileSeconds is the longest ?seconds= any pprof endpoint accepts: a CPU profile,
// an execution trace or a delta profile holds a connection (and, for the trace, costs CPU)
// for that long. pprof's default CPU profile is 30 s.
const adminMaxProfileSeconds = 60

// newAdminHandler serves /metrics and pprof, and a JSON 404 for anything else.
func newAdminHandler(m *metrics) http.Handler { return newAdminHandlerFor(m, true) }

// newAdminHandlerFor serves the admin listener (GATEWAY_ADMIN_PORT): /metrics, pprof only
// when withPprof (GATEWAY_PPROF=true), and a JSON 404 for anything else. It must never be
// mounted on the public port: pprof exposes the command line, heap contents and CPU
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

// boundProfileSeconds refuses a pprof request whose ?seconds= exceeds
// adminMaxProfileSeconds. pprof itself accepts any duration and moves the write deadline
// out to match, so without this one request could hold a connection for days. Only GET
// and HEAD are served, so the form pprof reads is the query string checked here (a POST
// body could carry another "seconds").
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
