// metrics_test.go: the metrics exposition (checked by a strict text-format parser) and the
// admin handler.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// ---- a strict parser for Prometheus text format 0.0.4 ----

type expoLabel struct{ name, value string }

type expoSample struct {
	name   string
	labels []expoLabel
	value  float64
}

func (s expoSample) label(name string) (string, bool) {
	for _, l := range s.labels {
		if l.name == name {
			return l.value, true
		}
	}
	return "", false
}

type expoFamily struct {
	name, help, typ string
	samples         []expoSample
}

type exposition struct {
	families []*expoFamily
	raw      string
}

func (e exposition) family(name string) *expoFamily {
	for _, f := range e.families {
		if f.name == name {
			return f
		}
	}
	return nil
}

// value returns the one sample named name whose labels are exactly want (name=value pairs).
func (e exposition) value(name string, want ...string) (float64, bool) {
	for _, f := range e.families {
		for _, s := range f.samples {
			if s.name != name || len(s.labels)*2 != len(want) {
				continue
			}
			match := true
			for i := 0; i < len(want); i += 2 {
				if v, ok := s.label(want[i]); !ok || v != want[i+1] {
					match = false
					break
				}
			}
			if match {
				return s.value, true
			}
		}
	}
	return 0, false
}

func isNameChar(c byte, first, colon bool) bool {
	switch {
	case c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		return true
	case c == ':':
		return colon
	case '0' <= c && c <= '9':
		return !first
	}
	return false
}

func validName(s string, colon bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameChar(s[i], i == 0, colon) {
			return false
		}
	}
	return true
}

// parseExposition accepts only what a well-formed 0.0.4 exposition may contain: every
// sample in a family announced by HELP then TYPE, valid names and label syntax, no duplicate
// series, families sorted by name and series by label values, histograms cumulative and
// ending in +Inf equal to _count, counters non-negative.
func parseExposition(text string) (exposition, error) {
	e := exposition{raw: text}
	if text == "" {
		return e, errors.New("empty exposition")
	}
	if !strings.HasSuffix(text, "\n") {
		return e, errors.New("exposition does not end in a newline")
	}
	if !utf8.ValidString(text) {
		return e, errors.New("exposition is not valid UTF-8")
	}
	var cur *expoFamily
	seenSeries := map[string]bool{}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for n := 0; n < len(lines); n++ {
		line := lines[n]
		lineErr := func(format string, a ...any) error {
			return fmt.Errorf("line %d %q: %s", n+1, line, fmt.Sprintf(format, a...))
		}
		switch {
		case line == "":
			return e, lineErr("blank line")
		case strings.HasPrefix(line, "# HELP "):
			name, help, ok := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			if !ok || !validName(name, true) {
				return e, lineErr("bad HELP")
			}
			if e.family(name) != nil {
				return e, lineErr("family %s announced twice", name)
			}
			if cur != nil && name <= cur.name {
				return e, lineErr("family %s not after %s", name, cur.name)
			}
			if strings.Contains(strings.ReplaceAll(strings.ReplaceAll(help, `\\`, ""), `\n`, ""), `\`) {
				return e, lineErr("bad escape in HELP")
			}
			if n+1 >= len(lines) {
				return e, lineErr("HELP without TYPE")
			}
			n++
			line = lines[n]
			tname, typ, ok := strings.Cut(strings.TrimPrefix(line, "# TYPE "), " ")
			if !strings.HasPrefix(line, "# TYPE ") || !ok || tname != name {
				return e, lineErr("HELP %s not followed by its TYPE", name)
			}
			if typ != "counter" && typ != "gauge" && typ != "histogram" {
				return e, lineErr("unexpected type %q", typ)
			}
			cur = &expoFamily{name: name, help: help, typ: typ}
			e.families = append(e.families, cur)
		case strings.HasPrefix(line, "#"):
			return e, lineErr("unexpected comment (TYPE without HELP?)")
		default:
			s, err := parseSampleLine(line)
			if err != nil {
				return e, lineErr("%v", err)
			}
			if cur == nil {
				return e, lineErr("sample before any HELP/TYPE")
			}
			if !sampleBelongs(cur, s.name) {
				return e, lineErr("sample %s outside family %s", s.name, cur.name)
			}
			_, hasLE := s.label("le")
			if hasLE != (s.name == cur.name+"_bucket" && cur.typ == "histogram") {
				return e, lineErr("le label misplaced")
			}
			key := s.name
			for _, l := range s.labels {
				key += "\xff" + l.name + "=" + l.value
			}
			if seenSeries[key] {
				return e, lineErr("duplicate series")
			}
			seenSeries[key] = true
			if cur.typ == "counter" && !(s.value >= 0) {
				return e, lineErr("counter not a non-negative number")
			}
			cur.samples = append(cur.samples, s)
		}
	}
	for _, f := range e.families {
		if err := checkSeriesOrder(f); err != nil {
			return e, err
		}
		if f.typ == "histogram" {
			if err := checkHistogram(f); err != nil {
				return e, err
			}
		}
	}
	return e, nil
}

func sampleBelongs(f *expoFamily, name string) bool {
	if f.typ == "histogram" {
		return name == f.name+"_bucket" || name == f.name+"_sum" || name == f.name+"_count"
	}
	return name == f.name
}

func parseSampleLine(line string) (expoSample, error) {
	var s expoSample
	i := 0
	for i < len(line) && isNameChar(line[i], i == 0, true) {
		i++
	}
	s.name = line[:i]
	if !validName(s.name, true) {
		return s, errors.New("bad metric name")
	}
	if i < len(line) && line[i] == '{' {
		i++
		seen := map[string]bool{}
		for {
			j := i
			for j < len(line) && isNameChar(line[j], j == i, false) {
				j++
			}
			name := line[i:j]
			if !validName(name, false) || strings.HasPrefix(name, "__") {
				return s, fmt.Errorf("bad label name %q", name)
			}
			if seen[name] {
				return s, fmt.Errorf("duplicate label %q", name)
			}
			seen[name] = true
			if !strings.HasPrefix(line[j:], `="`) {
				return s, errors.New(`label name not followed by ="`)
			}
			j += 2
			var val strings.Builder
			for {
				if j >= len(line) {
					return s, errors.New("unterminated label value")
				}
				c := line[j]
				if c == '"' {
					j++
					break
				}
				if c == '\\' {
					if j+1 >= len(line) {
						return s, errors.New("dangling backslash")
					}
					switch line[j+1] {
					case '\\':
						val.WriteByte('\\')
					case '"':
						val.WriteByte('"')
					case 'n':
						val.WriteByte('\n')
					default:
						return s, fmt.Errorf("bad escape \\%c", line[j+1])
					}
					j += 2
					continue
				}
				val.WriteByte(c)
				j++
			}
			s.labels = append(s.labels, expoLabel{name, val.String()})
			if j >= len(line) {
				return s, errors.New("unterminated label set")
			}
			if line[j] == '}' {
				i = j + 1
				break
			}
			if line[j] != ',' {
				return s, errors.New("labels not separated by a comma")
			}
			i = j + 1
		}
	}
	if i >= len(line) || line[i] != ' ' {
		return s, errors.New("no single space before the value")
	}
	val := line[i+1:]
	if val == "" || strings.ContainsAny(val, " \t") {
		return s, errors.New("bad value (or unexpected timestamp)")
	}
	v, err := strconv.ParseFloat(val, 64)
	if err != nil {
		return s, fmt.Errorf("bad value: %v", err)
	}
	s.value = v
	return s, nil
}

func labelValues(s expoSample, skipLE bool) []string {
	var out []string
	for _, l := range s.labels {
		if skipLE && l.name == "le" {
			continue
		}
		out = append(out, l.value)
	}
	return out
}

// checkSeriesOrder: series sorted by their label values; a histogram's series contiguous.
func checkSeriesOrder(f *expoFamily) error {
	var prev []string
	var prevName string
	done := map[string]bool{}
	for i, s := range f.samples {
		vals := labelValues(s, f.typ == "histogram")
		if i == 0 {
			prev, prevName = vals, s.name
			continue
		}
		c := slices.Compare(prev, vals)
		switch {
		case c > 0:
			return fmt.Errorf("family %s: series %v after %v", f.name, vals, prev)
		case c == 0 && f.typ != "histogram" && prevName == s.name:
			return fmt.Errorf("family %s: repeated series %v", f.name, vals)
		case c < 0:
			key := strings.Join(prev, "\xff")
			done[key] = true
			if done[strings.Join(vals, "\xff")] {
				return fmt.Errorf("family %s: series %v not contiguous", f.name, vals)
			}
		}
		prev, prevName = vals, s.name
	}
	return nil
}

func checkHistogram(f *expoFamily) error {
	type group struct {
		les    []float64
		counts []float64
		sum    *float64
		count  *float64
	}
	groups := map[string]*group{}
	var order []string
	for _, s := range f.samples {
		key := strings.Join(labelValues(s, true), "\xff")
		g := groups[key]
		if g == nil {
			g = &group{}
			groups[key] = g
			order = append(order, key)
		}
		switch s.name {
		case f.name + "_bucket":
			if g.sum != nil || g.count != nil {
				return fmt.Errorf("%s: bucket after _sum/_count", f.name)
			}
			leStr, _ := s.label("le")
			le, err := strconv.ParseFloat(leStr, 64)
			if err != nil {
				return fmt.Errorf("%s: bad le %q", f.name, leStr)
			}
			if n := len(g.les); n > 0 && !(le > g.les[n-1]) {
				return fmt.Errorf("%s: le %v not increasing", f.name, le)
			}
			if n := len(g.counts); n > 0 && s.value < g.counts[n-1] {
				return fmt.Errorf("%s: buckets not cumulative at le=%v", f.name, le)
			}
			g.les = append(g.les, le)
			g.counts = append(g.counts, s.value)
		case f.name + "_sum":
			v := s.value
			g.sum = &v
		case f.name + "_count":
			v := s.value
			g.count = &v
		}
	}
	for _, key := range order {
		g := groups[key]
		if len(g.les) == 0 || !math.IsInf(g.les[len(g.les)-1], 1) {
			return fmt.Errorf("%s{%q}: buckets do not end in +Inf", f.name, key)
		}
		if g.count == nil || g.sum == nil {
			return fmt.Errorf("%s{%q}: missing _sum or _count", f.name, key)
		}
		if *g.count != g.counts[len(g.counts)-1] {
			return fmt.Errorf("%s{%q}: +Inf bucket %v != _count %v", f.name, key, g.counts[len(g.counts)-1], *g.count)
		}
		if !(*g.sum >= 0) {
			return fmt.Errorf("%s{%q}: negative _sum", f.name, key)
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
	srv := httptest.NewServer(newAdminHandler(m))
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

func TestMetricsCountRequestsByRoutePatternMethodAndCode(t *testing.T) {
	m := newMetrics()
	srv := newAdminServer(t, m)
	const route = "/api/v1/query/{path...}"
	for range 3 {
		m.observeRequest(route, "GET", 200, 3*time.Millisecond)
	}
	m.observeRequest(route, "POST", 502, 40*time.Second)
	m.observeRequest("POST /api/v1/users/login", "POST", 401, 1*time.Millisecond)

	e := scrape(t, srv)
	wantValue(t, e, 3, "gateway_http_requests_total", "route", route, "method", "GET", "code", "200")
	wantValue(t, e, 1, "gateway_http_requests_total", "route", route, "method", "POST", "code", "502")
	wantValue(t, e, 1, "gateway_http_requests_total", "route", "POST /api/v1/users/login", "method", "POST", "code", "401")
	if n := len(e.family("gateway_http_requests_total").samples); n != 3 {
		t.Errorf("gateway_http_requests_total has %d series, want 3", n)
	}

	const dur = "gateway_http_request_duration_seconds"
	// Bucket bounds are inclusive: exactly 1 ms falls in le="0.001".
	for le, want := range map[string]float64{"0.001": 0, "0.0025": 0, "0.005": 3, "30": 3, "+Inf": 4} {
		wantValue(t, e, want, dur+"_bucket", "route", route, "le", le)
	}
	wantValue(t, e, 1, dur+"_bucket", "route", "POST /api/v1/users/login", "le", "0.001")
	wantValue(t, e, 4, dur+"_count", "route", route)
	wantValue(t, e, 40.009, dur+"_sum", "route", route)
	var les []string
	for _, s := range e.family(dur).samples {
		if v, ok := s.label("route"); ok && v == route && s.name == dur+"_bucket" {
			le, _ := s.label("le")
			les = append(les, le)
		}
	}
	wantLEs := []string{"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "+Inf"}
	if !slices.Equal(les, wantLEs) {
		t.Errorf("buckets = %v, want %v", les, wantLEs)
	}
}

func TestMetricsCountGatewayEvents(t *testing.T) {
	m := newMetrics()
	srv := newAdminServer(t, m)
	m.upstreamError("query", "unreachable")
	m.upstreamError("query", "unreachable")
	m.upstreamError("ingest", "timeout")
	m.authFailure("expired")
	m.login("success")
	m.login("invalid")
	m.login("invalid")
	m.rateLimitRejection("login_ip")
	m.inflightAdd(3)
	m.inflightAdd(-1)

	e := scrape(t, srv)
	wantValue(t, e, 2, "gateway_upstream_errors_total", "upstream", "query", "kind", "unreachable")
	wantValue(t, e, 1, "gateway_upstream_errors_total", "upstream", "ingest", "kind", "timeout")
	wantValue(t, e, 1, "gateway_auth_failures_total", "reason", "expired")
	wantValue(t, e, 1, "gateway_logins_total", "outcome", "success")
	wantValue(t, e, 2, "gateway_logins_total", "outcome", "invalid")
	wantValue(t, e, 1, "gateway_ratelimit_rejections_total", "limit", "login_ip")
	wantValue(t, e, 2, "gateway_inflight_requests")
}

func TestMetricsExposeEveryFamilyWithHelpAndType(t *testing.T) {
	e := scrape(t, newAdminServer(t, newMetrics()))
	want := map[string]string{
		"gateway_http_requests_total":           "counter",
		"gateway_http_request_duration_seconds": "histogram",
		"gateway_upstream_errors_total":         "counter",
		"gateway_auth_failures_total":           "counter",
		"gateway_logins_total":                  "counter",
		"gateway_ratelimit_rejections_total":    "counter",
		"gateway_db_pool_connections":           "gauge",
		"gateway_inflight_requests":             "gauge",
		"go_goroutines":                         "gauge",
		"go_memstats_heap_inuse_bytes":          "gauge",
		"process_start_time_seconds":            "gauge",
	}
	if _, err := os.Stat("/proc/self/statm"); err == nil {
		want["process_resident_memory_bytes"] = "gauge"
	}
	for name, typ := range want {
		f := e.family(name)
		if f == nil {
			t.Errorf("family %s missing", name)
			continue
		}
		if f.typ != typ || f.help == "" {
			t.Errorf("family %s: type %q help %q, want type %q and a help text", name, f.typ, f.help, typ)
		}
	}
	if v, _ := e.value("go_goroutines"); v < 1 {
		t.Errorf("go_goroutines = %v", v)
	}
	if v, _ := e.value("go_memstats_heap_inuse_bytes"); v <= 0 {
		t.Errorf("go_memstats_heap_inuse_bytes = %v", v)
	}
	if _, ok := want["process_resident_memory_bytes"]; ok {
		if v, _ := e.value("process_resident_memory_bytes"); v < 1<<20 {
			t.Errorf("process_resident_memory_bytes = %v, want at least 1 MiB", v)
		}
	}
	start, _ := e.value("process_start_time_seconds")
	if now := float64(time.Now().Unix()); start > now+1 || start < now-24*3600 {
		t.Errorf("process_start_time_seconds = %v, now %v", start, now)
	}
}

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

func TestMetricsEscapeLabelValues(t *testing.T) {
	tests := []struct{ name, route, wantRaw string }{
		{"backslash", `a\b`, `route="a\\b"`},
		{"quote", `say "hi"`, `route="say \"hi\""`},
		{"newline", "line1\nline2", `route="line1\nline2"`},
		{"all together", "\\\"\n", `route="\\\"\n"`},
		{"braces and commas", `x{a="b",c}`, `route="x{a=\"b\",c}"`},
		{"utf-8", "/café/{id}", `route="/café/{id}"`},
		{"invalid utf-8", "a\xffb", `route="a` + "\uFFFD" + `b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMetrics()
			m.observeRequest(tt.route, "GET", 200, time.Millisecond)
			m.authFailure(tt.route)
			e := scrape(t, newAdminServer(t, m))
			if !strings.Contains(e.raw, "gateway_http_requests_total{"+tt.wantRaw+",") {
				t.Errorf("exposition lacks %s:\n%s", tt.wantRaw, e.raw)
			}
			want := strings.ToValidUTF8(tt.route, "\uFFFD")
			wantValue(t, e, 1, "gateway_http_requests_total", "route", want, "method", "GET", "code", "200")
			wantValue(t, e, 1, "gateway_http_request_duration_seconds_count", "route", want)
			wantValue(t, e, 1, "gateway_auth_failures_total", "reason", want)
		})
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
		if got := normMethod(tt.in); got != tt.want {
			t.Errorf("normMethod(%.20q) = %q, want %q", tt.in, got, tt.want)
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

func TestMetricsStatusCodeIsThreeDigits(t *testing.T) {
	m := newMetrics()
	for _, code := range []int{200, 404, 0, -1, 1000, 99, 599} {
		m.observeRequest("/", "GET", code, 0)
	}
	e := scrape(t, newAdminServer(t, m))
	for code, want := range map[string]float64{"200": 1, "404": 1, "599": 1, "000": 4} {
		wantValue(t, e, want, "gateway_http_requests_total", "route", "/", "method", "GET", "code", code)
	}
	for _, s := range e.family("gateway_http_requests_total").samples {
		if c, _ := s.label("code"); len(c) != 3 {
			t.Errorf("code label %q is not 3 digits", c)
		}
	}
}

func TestMetricsSeriesOrderIsStable(t *testing.T) {
	m := newMetrics()
	srv := newAdminServer(t, m)
	// Inserted out of order on purpose; the parser rejects unsorted output.
	for _, r := range []string{"/z", "/a", "/m", "/a b", "/a\x01"} {
		for _, meth := range []string{"POST", "GET", "DELETE"} {
			m.observeRequest(r, meth, 200, time.Millisecond)
			m.observeRequest(r, meth, 404, time.Millisecond)
		}
		m.upstreamError(r, "timeout")
		m.upstreamError(r, "reset")
		m.login(r)
	}
	gatewayLines := func(raw string) string {
		var keep []string
		for _, l := range strings.Split(raw, "\n") {
			if strings.HasPrefix(l, "gateway_") || strings.HasPrefix(l, "# HELP gateway_") || strings.HasPrefix(l, "# TYPE gateway_") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	first := gatewayLines(scrape(t, srv).raw)
	for range 5 {
		if again := gatewayLines(scrape(t, srv).raw); again != first {
			t.Fatalf("exposition changed without new observations:\n%s\n---\n%s", first, again)
		}
	}
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
	newAdminHandler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
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
			if _, err := parseExposition(buf.String()); err != nil {
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

// The parser is what makes the other tests able to fail; it must refuse each malformed form.
func TestExpositionParserRejectsMalformedText(t *testing.T) {
	const head = "# HELP a_total h\n# TYPE a_total counter\n"
	const hist = "# HELP d h\n# TYPE d histogram\n"
	valid := head + "a_total{x=\"1\"} 2\n"
	if _, err := parseExposition(valid); err != nil {
		t.Fatalf("valid text rejected: %v", err)
	}
	tests := []struct{ name, text string }{
		{"no trailing newline", strings.TrimSuffix(valid, "\n")},
		{"sample without family", "a_total 1\n"},
		{"TYPE without HELP", "# TYPE a_total counter\na_total 1\n"},
		{"HELP without TYPE", "# HELP a_total h\na_total 1\n"},
		{"sample of another family", head + "b_total 1\n"},
		{"blank line", head + "\na_total 1\n"},
		{"bad label name", head + "a_total{1x=\"1\"} 1\n"},
		{"unquoted label value", head + "a_total{x=1} 1\n"},
		{"unknown escape", head + "a_total{x=\"\\t\"} 1\n"},
		{"unterminated value", head + "a_total{x=\"1} 1\n"},
		{"duplicate label", head + "a_total{x=\"1\",x=\"2\"} 1\n"},
		{"trailing comma", head + "a_total{x=\"1\",} 1\n"},
		{"duplicate series", head + "a_total{x=\"1\"} 1\na_total{x=\"1\"} 2\n"},
		{"unsorted series", head + "a_total{x=\"2\"} 1\na_total{x=\"1\"} 2\n"},
		{"unsorted families", "# HELP b h\n# TYPE b gauge\nb 1\n" + head},
		{"negative counter", head + "a_total -1\n"},
		{"bad value", head + "a_total one\n"},
		{"timestamp", head + "a_total 1 1700000000\n"},
		{"histogram not cumulative", hist + "d_bucket{le=\"1\"} 2\nd_bucket{le=\"+Inf\"} 1\nd_sum 1\nd_count 1\n"},
		{"histogram without +Inf", hist + "d_bucket{le=\"1\"} 1\nd_sum 1\nd_count 1\n"},
		{"+Inf differs from count", hist + "d_bucket{le=\"1\"} 1\nd_bucket{le=\"+Inf\"} 1\nd_sum 1\nd_count 2\n"},
		{"histogram without sum", hist + "d_bucket{le=\"+Inf\"} 1\nd_count 1\n"},
		{"le out of order", hist + "d_bucket{le=\"2\"} 1\nd_bucket{le=\"1\"} 1\nd_bucket{le=\"+Inf\"} 1\nd_sum 1\nd_count 1\n"},
		{"le on a counter", head + "a_total{le=\"1\"} 1\n"},
		{"unknown type", "# HELP a h\n# TYPE a summary\n"},
	}
	for _, tt := range tests {
		if _, err := parseExposition(tt.text); err == nil {
			t.Errorf("%s: accepted\n%s", tt.name, tt.text)
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
		if gotRoute != valid(route) || gotMethod != normMethod(method) || len(gotCode) != 3 {
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
