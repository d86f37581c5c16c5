// metrics.go: Prometheus text-format metrics on the standard library, and the admin
// listener's handler (metrics and pprof).
package main

import (
	"bytes"
	"cmp"
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

// durationLE holds the le label of each bucket, +Inf last; formatted once.
var durationLE = func() (le [len(durationBounds) + 1]string) {
	for i, b := range durationBounds {
		le[i] = strconv.FormatFloat(b.Seconds(), 'g', -1, 64)
	}
	le[len(durationBounds)] = "+Inf"
	return le
}()

// processStart approximates process_start_time_seconds: package initialisation runs a few
// milliseconds after exec, which is well inside what a scraper can resolve.
var processStart = time.Now()

// metrics holds every metric family. All methods are safe on a nil *metrics (no-op), so
// tests and tools may pass nil.
type metrics struct {
	requests     seriesMap[requestKey, atomic.Uint64]
	durations    seriesMap[string, histogram]
	upstreamErrs seriesMap[[2]string, atomic.Uint64]
	authFails    seriesMap[string, atomic.Uint64]
	logins       seriesMap[string, atomic.Uint64]
	rateLimited  seriesMap[string, atomic.Uint64]
	userCache    seriesMap[string, atomic.Uint64]
	traceDrops   seriesMap[string, atomic.Uint64]
	notifyUp     atomic.Bool
	inflight     atomic.Int64
	poolStats    atomic.Pointer[func() PoolStats]
	clientConns  atomic.Int64                     // open client connections (GATEWAY_MAX_CONNECTIONS)
	connsShed    seriesMap[string, atomic.Uint64] // client connections closed by the cap, by reason
}

func newMetrics() *metrics { return &metrics{} }

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
	old := s.cur.Load()
	if old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
	}
	next := make(map[K]*V, 1+lenOf(old))
	if old != nil {
		for k2, v2 := range *old {
			next[k2] = v2
		}
	}
	v := new(V)
	next[k] = v
	s.cur.Store(&next)
	return v
}

func lenOf[K comparable, V any](p *map[K]*V) int {
	if p == nil {
		return 0
	}
	return len(*p)
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

// normMethod bounds the method label: clients choose the method, so anything beyond the
// standard ones is folded into "OTHER". Constants are returned so a series never keeps a
// client's string alive.
func normMethod(m string) string {
	switch m {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodHead:
		return http.MethodHead
	case http.MethodPost:
		return http.MethodPost
	case http.MethodPut:
		return http.MethodPut
	case http.MethodPatch:
		return http.MethodPatch
	case http.MethodDelete:
		return http.MethodDelete
	case http.MethodConnect:
		return http.MethodConnect
	case http.MethodOptions:
		return http.MethodOptions
	case http.MethodTrace:
		return http.MethodTrace
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
	m.requests.get(requestKey{route, normMethod(method), code}).Add(1)
	m.durations.get(route).observe(d)
}

// upstreamError counts a failed proxy attempt; kind is e.g. "unreachable", "timeout".
func (m *metrics) upstreamError(upstream, kind string) {
	if m == nil {
		return
	}
	m.upstreamErrs.get([2]string{upstream, kind}).Add(1)
}

// authFailure counts a refused token; reason is a fixed word, never the token.
func (m *metrics) authFailure(reason string) {
	if m == nil {
		return
	}
	m.authFails.get(reason).Add(1)
}

// login counts a login attempt by outcome ("success", "failure", "rate_limited", "busy", "unavailable", "client_gone").
func (m *metrics) login(outcome string) {
	if m == nil {
		return
	}
	m.logins.get(outcome).Add(1)
}

// rateLimitRejection counts a 429 by the limit that refused it.
func (m *metrics) rateLimitRejection(limit string) {
	if m == nil {
		return
	}
	m.rateLimited.get(limit).Add(1)
}

// userCacheEvent counts what the user cache did besides answering from memory:
// "stale_served", "fail_fast", "notifications_lost".
func (m *metrics) userCacheEvent(event string) {
	if m == nil {
		return
	}
	m.userCache.get(event).Add(1)
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
	if m == nil {
		return
	}
	m.notifyUp.Store(up)
}

// inflightAdd moves gateway_inflight_requests; callers pair +1 with a deferred -1.
func (m *metrics) inflightAdd(delta int64) {
	if m == nil {
		return
	}
	m.inflight.Add(delta)
}

// clientConnsAdd moves gateway_client_connections.
func (m *metrics) clientConnsAdd(delta int64) {
	if m == nil {
		return
	}
	m.clientConns.Add(delta)
}

// connShed counts a client connection the connection cap closed; reason is a fixed word.
func (m *metrics) connShed(reason string) {
	if m == nil {
		return
	}
	m.connsShed.get(reason).Add(1)
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

// writeExposition writes every family in name order, each series in label order.
func (m *metrics) writeExposition(buf *bytes.Buffer) {
	b := buf.AvailableBuffer()

	b = appendFamily(b, "gateway_auth_failures_total", "counter", "Requests refused for a missing or invalid token, by reason.")
	for _, e := range m.authFails.sorted(strings.Compare) {
		b = appendSample(b, "gateway_auth_failures_total", []string{"reason"}, []string{e.k}, e.v.Load())
	}

	b = appendFamily(b, "gateway_client_connections", "gauge", "Open client connections on the public listener.")
	b = appendSeriesName(b, "gateway_client_connections", nil, nil)
	b = strconv.AppendInt(b, m.clientConns.Load(), 10)
	b = append(b, '\n')

	b = appendFamily(b, "gateway_client_connections_shed_total", "counter", "Client connections closed by GATEWAY_MAX_CONNECTIONS, by reason.")
	for _, e := range m.connsShed.sorted(strings.Compare) {
		b = appendSample(b, "gateway_client_connections_shed_total", []string{"reason"}, []string{e.k}, e.v.Load())
	}

	b = appendFamily(b, "gateway_db_pool_connections", "gauge", "Database pool connections by state.")
	if f := m.poolStats.Load(); f != nil {
		s := (*f)()
		b = appendSample(b, "gateway_db_pool_connections", []string{"state"}, []string{"acquired"}, uint64(max(s.Acquired, 0)))
		b = appendSample(b, "gateway_db_pool_connections", []string{"state"}, []string{"idle"}, uint64(max(s.Idle, 0)))
		b = appendSample(b, "gateway_db_pool_connections", []string{"state"}, []string{"total"}, uint64(max(s.Total, 0)))
	}

	const durName = "gateway_http_request_duration_seconds"
	b = appendFamily(b, durName, "histogram", "Time from request received to response finished, by route pattern.")
	for _, e := range m.durations.sorted(strings.Compare) {
		var cum uint64
		for i := range e.v.buckets {
			cum += e.v.buckets[i].Load()
			b = appendSample(b, durName+"_bucket", []string{"route", "le"}, []string{e.k, durationLE[i]}, cum)
		}
		b = appendSeriesName(b, durName+"_sum", []string{"route"}, []string{e.k})
		b = strconv.AppendFloat(b, float64(e.v.sumNanos.Load())/1e9, 'g', -1, 64)
		b = append(b, '\n')
		b = appendSample(b, durName+"_count", []string{"route"}, []string{e.k}, cum)
	}

	b = appendFamily(b, "gateway_http_requests_total", "counter", "Requests answered, by route pattern, method and status code.")
	for _, e := range m.requests.sorted(func(x, y requestKey) int {
		return cmp.Or(strings.Compare(x.route, y.route), strings.Compare(x.method, y.method), cmp.Compare(x.code, y.code))
	}) {
		code := "000"
		if e.k.code != 0 {
			code = strconv.Itoa(e.k.code)
		}
		b = appendSample(b, "gateway_http_requests_total", []string{"route", "method", "code"}, []string{e.k.route, e.k.method, code}, e.v.Load())
	}

	b = appendFamily(b, "gateway_inflight_requests", "gauge", "Requests being served right now.")
	b = appendSeriesName(b, "gateway_inflight_requests", nil, nil)
	b = strconv.AppendInt(b, m.inflight.Load(), 10)
	b = append(b, '\n')

	b = appendFamily(b, "gateway_logins_total", "counter", "Login attempts, by outcome.")
	for _, e := range m.logins.sorted(strings.Compare) {
		b = appendSample(b, "gateway_logins_total", []string{"outcome"}, []string{e.k}, e.v.Load())
	}

	b = appendFamily(b, "gateway_ratelimit_rejections_total", "counter", "Requests refused with 429, by limit.")
	for _, e := range m.rateLimited.sorted(strings.Compare) {
		b = appendSample(b, "gateway_ratelimit_rejections_total", []string{"limit"}, []string{e.k}, e.v.Load())
	}

	b = appendFamily(b, "gateway_trace_spans_dropped_total", "counter", "Spans never exported, by reason: queue_full (the collector is slow or down), export_failed, rejected (by the collector), shutdown (not flushed within the shutdown grace).")
	for _, e := range m.traceDrops.sorted(strings.Compare) {
		b = appendSample(b, "gateway_trace_spans_dropped_total", []string{"reason"}, []string{e.k}, e.v.Load())
	}

	b = appendFamily(b, "gateway_upstream_errors_total", "counter", "Failed upstream calls, by upstream and kind.")
	for _, e := range m.upstreamErrs.sorted(func(x, y [2]string) int {
		return cmp.Or(strings.Compare(x[0], y[0]), strings.Compare(x[1], y[1]))
	}) {
		b = appendSample(b, "gateway_upstream_errors_total", []string{"upstream", "kind"}, e.k[:], e.v.Load())
	}

	b = appendFamily(b, "gateway_user_cache_events_total", "counter", "User cache events: stale_served (the database failed and the last known state was used), fail_fast (the database was not asked while failing), notifications_lost.")
	for _, e := range m.userCache.sorted(strings.Compare) {
		b = appendSample(b, "gateway_user_cache_events_total", []string{"event"}, []string{e.k}, e.v.Load())
	}

	b = appendFamily(b, "gateway_user_notifications_up", "gauge", "1 while the database's change notifications reach the user cache, else 0 (the TTL alone then bounds staleness).")
	up := uint64(0)
	if m.notifyUp.Load() {
		up = 1
	}
	b = appendSample(b, "gateway_user_notifications_up", nil, nil, up)

	b = appendProcessMetrics(b)
	buf.Write(b)
}

// appendProcessMetrics adds the Go runtime and process basics every scrape config expects.
func appendProcessMetrics(b []byte) []byte {
	b = appendFamily(b, "go_goroutines", "gauge", "Number of goroutines that currently exist.")
	b = appendSample(b, "go_goroutines", nil, nil, uint64(runtime.NumGoroutine()))

	// runtime/metrics instead of runtime.ReadMemStats, which stops the world. HeapInuse is
	// the bytes of in-use spans: live objects plus the unused space inside those spans.
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
	b = appendFamily(b, "go_memstats_heap_inuse_bytes", "gauge", "Number of heap bytes that are in use.")
	b = appendSample(b, "go_memstats_heap_inuse_bytes", nil, nil, heap)

	if rss, ok := residentBytes(); ok {
		b = appendFamily(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
		b = appendSample(b, "process_resident_memory_bytes", nil, nil, rss)
	}

	b = appendFamily(b, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.")
	b = appendSeriesName(b, "process_start_time_seconds", nil, nil)
	b = strconv.AppendFloat(b, float64(processStart.UnixNano())/1e9, 'f', 3, 64)
	return append(b, '\n')
}

// residentBytes reads the resident set from /proc/self/statm (pages); absent off Linux.
func residentBytes() (uint64, bool) {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	fields := strings.Fields(string(raw))
	if len(fields) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * uint64(os.Getpagesize()), true
}

func appendFamily(b []byte, name, typ, help string) []byte {
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = appendEscaped(b, help, false)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	return append(b, '\n')
}

func appendSample(b []byte, name string, names, values []string, v uint64) []byte {
	b = appendSeriesName(b, name, names, values)
	b = strconv.AppendUint(b, v, 10)
	return append(b, '\n')
}

// appendSeriesName writes `name{l="v",…} ` (no braces when there are no labels).
func appendSeriesName(b []byte, name string, names, values []string) []byte {
	b = append(b, name...)
	if len(names) > 0 {
		b = append(b, '{')
		for i, n := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, n...)
			b = append(b, `="`...)
			b = appendEscaped(b, values[i], true)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, ' ')
}

// appendEscaped escapes per format 0.0.4: backslash and newline everywhere, and the double
// quote inside label values. Invalid UTF-8 becomes U+FFFD, as the format is UTF-8.
func appendEscaped(b []byte, s string, quote bool) []byte {
	s = strings.ToValidUTF8(s, "\uFFFD")
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
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
