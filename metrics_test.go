// metrics_test.go: the metrics exposition (pinned by testdata/metrics.golden) and the admin
// handler.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The exposition after a fixed set of observations touching every family,
// with the process metrics' values (which no test controls) masked.
func TestMetricsExpositionMatchesGolden(t *testing.T) {
	m := newMetrics()
	const route = "/api/v1/query/{path...}"
	for range 3 {
		m.observeRequest(route, "GET", 200, 3*time.Millisecond)
	}
	m.observeRequest(route, "POST", 502, 40*time.Second)
	m.observeRequest("POST /api/v1/users/login", "POST", 401, 1*time.Millisecond) // bounds are inclusive
	m.observeRequest("/z", "PROPFIND", 0, 0)                                      // method folded, code "000"
	m.observeRequest("/a", "GET", 1000, 0)
	m.observeRequest("a\\b \"c\"\nd\xff", "GET", 200, 0) // escaped, invalid UTF-8 replaced
	m.upstreamError("query", "unreachable")
	m.upstreamError("query", "unreachable")
	m.upstreamError("ingest", "timeout")
	m.authFailure("expired")
	m.authFailure("bad_signature")
	m.login("success")
	m.login("invalid")
	m.login("invalid")
	m.rateLimitRejection("login_ip")
	m.userCacheEvent("stale_served")
	m.traceSpansDropped("queue_full", 3)
	m.setNotificationsUp(true)
	m.inflightAdd(3)
	m.inflightAdd(-1)
	m.clientConnsAdd(5)
	m.connShed("idle")
	m.setPoolStats(func() PoolStats { return PoolStats{Total: 4, Idle: 3, Acquired: 1} })

	var buf bytes.Buffer
	m.writeExposition(&buf)
	var got strings.Builder
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		name, _, _ := strings.Cut(line, " ")
		switch {
		case strings.Contains(line, "process_resident_memory_bytes"):
			continue // absent off Linux
		case strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"):
			line = name + " (volatile)\n"
		}
		got.WriteString(line)
	}

	path := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to create it)", err)
	}
	if got.String() != string(want) {
		t.Errorf("exposition differs from %s (go test -run Golden -update rewrites it):\n%s", path, got.String())
	}
}

func TestMetricsProcessFamiliesHaveLiveValues(t *testing.T) {
	e := scrape(t, newAdminServer(t, newMetrics()))
	if v, _ := e.value("go_goroutines"); v < 1 {
		t.Errorf("go_goroutines = %v", v)
	}
	if v, _ := e.value("go_memstats_heap_inuse_bytes"); v <= 0 {
		t.Errorf("go_memstats_heap_inuse_bytes = %v", v)
	}
	if _, err := os.Stat("/proc/self/statm"); err == nil {
		if v, _ := e.value("process_resident_memory_bytes"); v < 1<<20 {
			t.Errorf("process_resident_memory_bytes = %v, want at least 1 MiB", v)
		}
	}
	start, _ := e.value("process_start_time_seconds")
	if now := float64(time.Now().Unix()); start > now+1 || start < now-24*3600 {
		t.Errorf("process_start_time_seconds = %v, now %v", start, now)
	}
}

// ---- reading an exposition back (the golden file pins its exact form) ----

type expoSample struct {
	name   string
	labels map[string]string
	value  float64
}

func (s expoSample) label(name string) (string, bool) { v, ok := s.labels[name]; return v, ok }

type expoFamily struct{ samples []expoSample }

type exposition struct {
	families map[string]*expoFamily // by family name: a histogram's _bucket, _sum and _count under its own
	raw      string
}

func (e exposition) family(name string) *expoFamily { return e.families[name] }

// value returns the one sample named name whose labels are exactly want (name=value pairs).
func (e exposition) value(name string, want ...string) (float64, bool) {
	for _, f := range e.families {
	samples:
		for _, s := range f.samples {
			if s.name != name || len(s.labels)*2 != len(want) {
				continue
			}
			for i := 0; i < len(want); i += 2 {
				if s.labels[want[i]] != want[i+1] {
					continue samples
				}
			}
			return s.value, true
		}
	}
	return 0, false
}

// parseExposition reads samples back, grouped under the family of the preceding # TYPE line.
func parseExposition(text string) (exposition, error) {
	e := exposition{families: map[string]*expoFamily{}, raw: text}
	var cur *expoFamily
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ := strings.Cut(rest, " ")
			cur = &expoFamily{}
			e.families[name] = cur
			continue
		}
		if strings.HasPrefix(line, "#") || cur == nil {
			continue
		}
		i := strings.LastIndexByte(line, ' ') // values and timestamps have no spaces; label values may
		if i < 0 {
			return e, fmt.Errorf("line %q has no value", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return e, fmt.Errorf("line %q: %w", line, err)
		}
		s := expoSample{labels: map[string]string{}, value: v}
		name, labels, _ := strings.Cut(strings.TrimSuffix(line[:i], "}"), "{")
		s.name = name
		for labels != "" {
			k, rest, _ := strings.Cut(labels, `="`)
			var b strings.Builder
			i := 0
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
					c := rest[i]
					if c == 'n' {
						c = '\n'
					}
					b.WriteByte(c)
					continue
				}
				b.WriteByte(rest[i])
			}
			s.labels[k] = b.String()
			labels = strings.TrimPrefix(rest[min(i+1, len(rest)):], ",")
		}
		cur.samples = append(cur.samples, s)
	}
	return e, nil
}

// checkHistogram reports a histogram whose buckets are not cumulative or whose +Inf bucket
// differs from its _count: what a scrape racing the observations must never show.
func checkHistogram(e exposition, name string) error {
	last := map[string]float64{}
	for _, s := range e.family(name).samples {
		route := s.labels["route"]
		switch s.name {
		case name + "_bucket":
			if s.value < last[route] {
				return fmt.Errorf("%s{route=%q} bucket le=%s below the previous one", name, route, s.labels["le"])
			}
			last[route] = s.value
		case name + "_count":
			if s.value != last[route] {
				return fmt.Errorf("%s{route=%q}: count %v, +Inf bucket %v", name, route, s.value, last[route])
			}
		}
	}
	return nil
}

// ---- helpers ----

// scrape fetches /metrics from a real server running the admin handler and parses it.
func scrape(t *testing.T, srv *httptest.Server) exposition {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, body %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("Content-Type = %q", ct)
	}
	e, err := parseExposition(string(body))
	if err != nil {
		t.Fatalf("invalid exposition: %v\n%s", err, body)
	}
	return e
}

func newAdminServer(t *testing.T, m *metrics) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(newAdminHandlerFor(m, true))
	t.Cleanup(srv.Close)
	return srv
}

func wantValue(t *testing.T, e exposition, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := e.value(name, labels...)
	if !ok {
		t.Errorf("no sample %s%v", name, labels)
		return
	}
	if math.Abs(got-want) > 1e-9 {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// ---- tests ----

func TestMetricsPoolGaugeReadsCallbackAtScrapeTime(t *testing.T) {
	m := newMetrics()
	srv := newAdminServer(t, m)
	if f := scrape(t, srv).family("gateway_db_pool_connections"); len(f.samples) != 0 {
		t.Fatalf("pool series without a pool: %v", f.samples)
	}
	var mu sync.Mutex
	stats := PoolStats{Total: 4, Idle: 3, Acquired: 1}
	m.setPoolStats(func() PoolStats { mu.Lock(); defer mu.Unlock(); return stats })
	e := scrape(t, srv)
	wantValue(t, e, 4, "gateway_db_pool_connections", "state", "total")
	wantValue(t, e, 3, "gateway_db_pool_connections", "state", "idle")
	wantValue(t, e, 1, "gateway_db_pool_connections", "state", "acquired")

	mu.Lock()
	stats = PoolStats{Total: 10, Idle: 2, Acquired: 8}
	mu.Unlock()
	e = scrape(t, srv)
	wantValue(t, e, 10, "gateway_db_pool_connections", "state", "total")
	wantValue(t, e, 8, "gateway_db_pool_connections", "state", "acquired")

	m.setPoolStats(nil)
	if f := scrape(t, srv).family("gateway_db_pool_connections"); len(f.samples) != 0 {
		t.Errorf("pool series after removing the pool: %v", f.samples)
	}
}

func TestMetricsFoldUnknownMethodsIntoOther(t *testing.T) {
	tests := []struct{ in, want string }{
		{"GET", "GET"}, {"HEAD", "HEAD"}, {"POST", "POST"}, {"PUT", "PUT"},
		{"PATCH", "PATCH"}, {"DELETE", "DELETE"}, {"CONNECT", "CONNECT"},
		{"OPTIONS", "OPTIONS"}, {"TRACE", "TRACE"},
		{"get", "OTHER"}, {"Post", "OTHER"}, {"PROPFIND", "OTHER"}, {"", "OTHER"},
		{"GET ", "OTHER"}, {strings.Repeat("X", 10000), "OTHER"}, {"OTHER", "OTHER"},
	}
	for _, tt := range tests {
		if got := methodLabel(tt.in); got != tt.want {
			t.Errorf("methodLabel(%.20q) = %q, want %q", tt.in, got, tt.want)
		}
	}

	// A client inventing methods cannot grow the series set.
	m := newMetrics()
	for i := range 1000 {
		m.observeRequest("/api/v1/ingest/{path...}", "X-"+strconv.Itoa(i), 405, time.Millisecond)
	}
	e := scrape(t, newAdminServer(t, m))
	if n := len(e.family("gateway_http_requests_total").samples); n != 1 {
		t.Errorf("%d series after 1000 invented methods, want 1", n)
	}
	wantValue(t, e, 1000, "gateway_http_requests_total", "route", "/api/v1/ingest/{path...}", "method", "OTHER", "code", "405")
}

func TestMetricsNilIsNoOp(t *testing.T) {
	var m *metrics
	m.observeRequest("/", "GET", 200, time.Second)
	m.upstreamError("query", "timeout")
	m.authFailure("expired")
	m.login("success")
	m.rateLimitRejection("company")
	m.inflightAdd(1)
	m.setPoolStats(func() PoolStats { return PoolStats{} })
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Body.Len() != 0 {
		t.Errorf("nil metrics wrote %q", rec.Body.String())
	}
	// The admin handler still serves pprof and 404s with a nil metrics.
	rec = httptest.NewRecorder()
	newAdminHandlerFor(nil, true).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("pprof with nil metrics: status %d", rec.Code)
	}
}

func TestMetricsConcurrentObservationsAreAllCounted(t *testing.T) {
	m := newMetrics()
	srv := newAdminServer(t, m)
	const workers, perWorker = 16, 2000
	routes := []string{"/a", "/b", "/c"}
	methods := []string{"GET", "POST", "BREW"}
	stop := make(chan struct{})
	scrapeErr := make(chan error, 1)
	scraping := make(chan struct{})
	scrapes := 0
	go func() { // scrapes race the writers; every one must parse
		defer close(scrapeErr)
		for {
			var buf bytes.Buffer
			m.writeExposition(&buf)
			e, err := parseExposition(buf.String())
			if err == nil {
				err = checkHistogram(e, "gateway_http_request_duration_seconds")
			}
			if err != nil {
				scrapeErr <- err
				return
			}
			if scrapes++; scrapes == 1 {
				close(scraping)
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	<-scraping
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				m.inflightAdd(1)
				m.observeRequest(routes[(w+i)%3], methods[i%3], 200+i%2, time.Duration(i)*time.Microsecond)
				m.upstreamError("query", "timeout")
				m.login("invalid")
				m.inflightAdd(-1)
			}
		})
	}
	wg.Wait()
	close(stop)
	if err := <-scrapeErr; err != nil {
		t.Fatalf("scrape during writes: %v", err)
	}
	t.Logf("%d scrapes raced the writers", scrapes)

	e := scrape(t, srv)
	var total, count float64
	for _, s := range e.family("gateway_http_requests_total").samples {
		total += s.value
	}
	for _, s := range e.family("gateway_http_request_duration_seconds").samples {
		if s.name == "gateway_http_request_duration_seconds_count" {
			count += s.value
		}
	}
	if total != workers*perWorker || count != workers*perWorker {
		t.Errorf("requests_total sums to %v, histogram count to %v, want %d", total, count, workers*perWorker)
	}
	wantValue(t, e, workers*perWorker, "gateway_upstream_errors_total", "upstream", "query", "kind", "timeout")
	wantValue(t, e, workers*perWorker, "gateway_logins_total", "outcome", "invalid")
	wantValue(t, e, 0, "gateway_inflight_requests")
	if n := len(e.family("gateway_http_requests_total").samples); n != 3*3*2 {
		t.Errorf("%d request series, want 18", n)
	}
}

func TestMetricsObserveRequestDoesNotAllocate(t *testing.T) {
	m := newMetrics()
	m.observeRequest("/api/v1/query/{path...}", "GET", 200, time.Millisecond) // warm-up: creates the series
	allocs := testing.AllocsPerRun(1000, func() {
		m.observeRequest("/api/v1/query/{path...}", "GET", 200, time.Millisecond)
		m.inflightAdd(1)
		m.inflightAdd(-1)
	})
	if allocs != 0 {
		t.Errorf("observeRequest allocates %v times per call at steady state", allocs)
	}
}

func TestAdminServesMetricsAndPprof(t *testing.T) {
	srv := newAdminServer(t, newMetrics())
	for _, tt := range []struct{ path, wantBody string }{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile"},
		{"/debug/pprof/cmdline", ""},
		{"/debug/pprof/symbol", "num_symbols"},
	} {
		resp, err := srv.Client().Get(srv.URL + tt.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tt.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tt.wantBody) {
			t.Errorf("GET %s: status %d, body %.200q; want 200 containing %q", tt.path, resp.StatusCode, body, tt.wantBody)
		}
	}

	req, _ := http.NewRequest(http.MethodHead, srv.URL+"/metrics", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("HEAD /metrics: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("HEAD /metrics: status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestAdminDoesNotServeUnknownPaths(t *testing.T) {
	srv := newAdminServer(t, newMetrics())
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/", http.StatusNotFound},
		{"GET", "/health", http.StatusNotFound},
		{"GET", "/metrics/", http.StatusNotFound},
		{"GET", "/metricsx", http.StatusNotFound},
		{"GET", "/debug/", http.StatusNotFound},
		{"GET", "/api/v1/query/chats", http.StatusNotFound},
		{"POST", "/api/v1/users/login", http.StatusNotFound},
		{"POST", "/metrics", http.StatusMethodNotAllowed},
		{"DELETE", "/metrics", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		var body struct{ Detail string }
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tt.want || err != nil || body.Detail == "" ||
			resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: status %d (want %d), Content-Type %q, detail %q, decode err %v",
				tt.method, tt.path, resp.StatusCode, tt.want, resp.Header.Get("Content-Type"), body.Detail, err)
		}
		if tt.want == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow = %q", tt.method, tt.path, resp.Header.Get("Allow"))
		}
	}
}

// Any label value a caller passes survives the exposition: escaped, parsed back equal, and
// the method label always within the bounded set.
func FuzzMetricsLabelValuesRoundTrip(f *testing.F) {
	f.Add("/api/v1/query/{path...}", "GET", 200, "query", "timeout")
	f.Add("a\\b\"c\nd", "get", 0, "", "\x00")
	f.Add("\xff\xfe", "PROPFIND", 99999, "\\", "\"")
	f.Add("", "", -5, "up\nstream", "kind\\")
	f.Fuzz(func(t *testing.T, route, method string, code int, upstream, kind string) {
		m := newMetrics()
		m.observeRequest(route, method, code, time.Duration(code)*time.Millisecond)
		m.upstreamError(upstream, kind)
		var buf bytes.Buffer
		m.writeExposition(&buf)
		e, err := parseExposition(buf.String())
		if err != nil {
			t.Fatalf("invalid exposition: %v\n%s", err, buf.String())
		}
		rs := e.family("gateway_http_requests_total").samples
		if len(rs) != 1 {
			t.Fatalf("%d request series", len(rs))
		}
		valid := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
		gotRoute, _ := rs[0].label("route")
		gotMethod, _ := rs[0].label("method")
		gotCode, _ := rs[0].label("code")
		if gotRoute != valid(route) || gotMethod != methodLabel(method) || len(gotCode) != 3 {
			t.Errorf("labels route=%q method=%q code=%q from route=%q method=%q code=%d", gotRoute, gotMethod, gotCode, route, method, code)
		}
		if !slices.Contains([]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "OTHER"}, gotMethod) {
			t.Errorf("method label %q outside the bounded set", gotMethod)
		}
		if _, ok := e.value("gateway_upstream_errors_total", "upstream", valid(upstream), "kind", valid(kind)); !ok {
			t.Errorf("upstream error series for %q/%q not found", upstream, kind)
		}
	})
}

func BenchmarkObserveRequest(b *testing.B) {
	m := newMetrics()
	m.observeRequest("/api/v1/query/{path...}", "GET", 200, time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		m.observeRequest("/api/v1/query/{path...}", "GET", 200, 7*time.Millisecond)
	}
}

func BenchmarkObserveRequestParallel(b *testing.B) {
	m := newMetrics()
	routes := []string{"/api/v1/query/{path...}", "/api/v1/ingest/{path...}", "POST /api/v1/users/login", "GET /health"}
	for _, r := range routes {
		m.observeRequest(r, "GET", 200, time.Millisecond)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.observeRequest(routes[i%len(routes)], "GET", 200, time.Duration(i)*time.Microsecond)
			i++
		}
	})
}

func BenchmarkScrape(b *testing.B) {
	m := newMetrics()
	for i := range 50 {
		for _, meth := range []string{"GET", "POST"} {
			m.observeRequest("/route/"+strconv.Itoa(i), meth, 200, time.Millisecond)
		}
	}
	b.ReportAllocs()
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		m.writeExposition(&buf)
	}
}
