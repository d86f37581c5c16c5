// trace_test.go: span export checked against the OTLP JSON mapping with real HTTP servers on
// both sides (a collector and an upstream): parent links, sampling, a stalled collector,
// flushing at shutdown, and the export settings.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// ---- OTLP/JSON, as the collector reads it ------------------------------------------------
//
// These mirror ExportTraceServiceRequest in the protobuf JSON mapping that OTLP/HTTP uses.
// Decoding with DisallowUnknownFields makes every field name we write a real one; int64
// fields typed as strings and enums typed as numbers make a wrongly typed value fail.

type otlpRequest struct {
	ResourceSpans []struct {
		Resource struct {
			Attributes []otlpKV `json:"attributes"`
		} `json:"resource"`
		ScopeSpans []struct {
			Scope struct {
				Name    string `json:"name"`
				Version string `json:"version"`
			} `json:"scope"`
			Spans []otlpSpan `json:"spans"`
		} `json:"scopeSpans"`
	} `json:"resourceSpans"`
}

type otlpKV struct {
	Key   string       `json:"key"`
	Value otlpAnyValue `json:"value"`
}

type otlpAnyValue struct {
	StringValue *string `json:"stringValue"`
	IntValue    *string `json:"intValue"` // int64: a decimal string in the JSON mapping
	BoolValue   *bool   `json:"boolValue"`
}

type otlpSpan struct {
	TraceID           string   `json:"traceId"`
	SpanID            string   `json:"spanId"`
	ParentSpanID      string   `json:"parentSpanId"`
	Name              string   `json:"name"`
	Kind              int      `json:"kind"` // enums are integers: 1 internal, 2 server, 3 client
	StartTimeUnixNano string   `json:"startTimeUnixNano"`
	EndTimeUnixNano   string   `json:"endTimeUnixNano"`
	Attributes        []otlpKV `json:"attributes"`
	Status            *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"status"`
}

func (s otlpSpan) attr(key string) (otlpAnyValue, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return otlpAnyValue{}, false
}

func (s otlpSpan) str(t *testing.T, key string) string {
	t.Helper()
	v, ok := s.attr(key)
	if !ok || v.StringValue == nil || v.IntValue != nil || v.BoolValue != nil {
		t.Fatalf("span %q: attribute %s = %+v, want a stringValue", s.Name, key, v)
	}
	return *v.StringValue
}

func (s otlpSpan) int(t *testing.T, key string) int64 {
	t.Helper()
	v, ok := s.attr(key)
	if !ok || v.IntValue == nil || v.StringValue != nil {
		t.Fatalf("span %q: attribute %s = %+v, want an intValue", s.Name, key, v)
	}
	n, err := strconv.ParseInt(*v.IntValue, 10, 64)
	if err != nil {
		t.Fatalf("span %q: intValue %q of %s is not a decimal int64", s.Name, *v.IntValue, key)
	}
	return n
}

var (
	hexTraceID = regexp.MustCompile(`^[0-9a-f]{32}$`)
	hexSpanID  = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// collectorExport is one request the fake collector received.
type collectorExport struct {
	path   string
	header http.Header
	body   []byte
}

// fakeCollector is an OTLP/HTTP receiver that keeps every export it is sent and answers
// with answer (200 and an empty ExportTraceServiceResponse when nil).
type fakeCollector struct {
	srv     *httptest.Server
	exports chan collectorExport
}

func newFakeCollector(t *testing.T, answer http.HandlerFunc) *fakeCollector {
	t.Helper()
	c := &fakeCollector{exports: make(chan collectorExport, 1000)}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c.exports <- collectorExport{path: r.URL.Path, header: r.Header.Clone(), body: body}
		if answer != nil {
			answer(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// received returns what the collector has been sent so far.
func (c *fakeCollector) received() []collectorExport {
	var out []collectorExport
	for {
		select {
		case e := <-c.exports:
			out = append(out, e)
		default:
			return out
		}
	}
}

// decodeExport checks one export body against the mapping and returns it with its spans.
func decodeExport(t *testing.T, body []byte) (otlpRequest, []otlpSpan) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req otlpRequest
	if err := dec.Decode(&req); err != nil {
		t.Fatalf("export is not an ExportTraceServiceRequest in the OTLP JSON mapping: %v\n%s", err, body)
	}
	var spans []otlpSpan
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			spans = append(spans, ss.Spans...)
		}
	}
	for _, s := range spans {
		if !hexTraceID.MatchString(s.TraceID) || !hexSpanID.MatchString(s.SpanID) ||
			(s.ParentSpanID != "" && !hexSpanID.MatchString(s.ParentSpanID)) {
			t.Errorf("span %q: ids %q/%q/%q, want lower-case hex (not base64)", s.Name, s.TraceID, s.SpanID, s.ParentSpanID)
		}
		start, err1 := strconv.ParseInt(s.StartTimeUnixNano, 10, 64)
		end, err2 := strconv.ParseInt(s.EndTimeUnixNano, 10, 64)
		if err1 != nil || err2 != nil || end < start || time.Since(time.Unix(0, start)) > time.Hour {
			t.Errorf("span %q: times %q..%q, want decimal Unix nanoseconds in order", s.Name, s.StartTimeUnixNano, s.EndTimeUnixNano)
		}
	}
	return req, spans
}

// allSpans decodes every export the collector received.
func (c *fakeCollector) allSpans(t *testing.T) []otlpSpan {
	t.Helper()
	var spans []otlpSpan
	for _, e := range c.received() {
		_, s := decodeExport(t, e.body)
		spans = append(spans, s...)
	}
	return spans
}

func spanNamed(t *testing.T, spans []otlpSpan, name string) otlpSpan {
	t.Helper()
	var found []otlpSpan
	for _, s := range spans {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one span named %q, got %d among %v", name, len(found), spanNames(spans))
	}
	return found[0]
}

func spanNames(spans []otlpSpan) []string {
	names := make([]string, len(spans))
	for i, s := range spans {
		names[i] = s.Name
	}
	return names
}

// tracedEnv serves a gateway on the in-memory store that exports to collector, with one
// user of one company. tweak runs before the routes are built.
func tracedEnv(t *testing.T, collector *fakeCollector, env map[string]string, tweak func(*gateway)) (*testEnv, User) {
	t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	if _, ok := env["GATEWAY_OTLP_ENDPOINT"]; !ok {
		env["GATEWAY_OTLP_ENDPOINT"] = collector.srv.URL
	}
	cfg := testConfig(t, env)
	e := serveTestEnv(t, cfg, newMemoryStore(), "", tweak)
	company := e.createCompany("Acme")
	return e, e.createUser("ada@example.com", "pw-pw-pw-pw", company, bcrypt.MinCost)
}

// flushSpans waits for every request to finish (so every span is queued), then flushes.
func (e *testEnv) flushSpans(t *testing.T) {
	t.Helper()
	e.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.gw.tracer.shutdown(ctx); err != nil {
		t.Fatalf("flush spans: %v", err)
	}
}

// withTracer replaces the gateway's exporter by one with the given flush interval and
// queue size.
func withTracer(interval time.Duration, queueSize int) func(*gateway) {
	return func(g *gateway) {
		g.tracer.close()
		g.tracer = startTracer(g.cfg, g.log, g.metrics, interval, queueSize)
	}
}

// droppedSpans reads gateway_trace_spans_dropped_total{reason} ("" for every reason) from
// the exposition.
func droppedSpans(tb testing.TB, m *metrics, reason string) float64 {
	tb.Helper()
	var buf bytes.Buffer
	m.writeExposition(&buf)
	e, err := parseExposition(buf.String())
	if err != nil {
		tb.Fatalf("invalid exposition: %v", err)
	}
	f := e.family("gateway_trace_spans_dropped_total")
	if f == nil {
		tb.Fatal("no gateway_trace_spans_dropped_total family")
	}
	total := 0.0
	for _, s := range f.samples {
		if r, _ := s.label("reason"); reason == "" || r == reason {
			total += s.value
		}
	}
	return total
}

// ---- tests ----------------------------------------------------------------------------------

func TestOTLPExportFollowsTheJSONMapping(t *testing.T) {
	collector := newFakeCollector(t, nil)
	upstream, lastUpstream := recordingUpstream(t)
	e, user := tracedEnv(t, collector, map[string]string{
		"GATEWAY_QUERY_SERVICE_URL": upstream.URL,
		"GATEWAY_OTLP_HEADERS":      "x-api-key=k3y%2Cwith-comma, tenant=acme",
	}, nil)
	token := e.token(user)

	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	r := e.do("GET", "/api/v1/query/chats?token=secret-in-query", token, "",
		"traceparent", "00-"+clientTrace+"-"+clientSpan+"-01")
	if r.status != http.StatusOK {
		t.Fatalf("proxied request: %d %s", r.status, r.body)
	}
	upstreamTP := lastUpstream().Header.Get("Traceparent")
	e.flushSpans(t)

	exports := collector.received()
	if len(exports) == 0 {
		t.Fatal("the collector received nothing")
	}
	ex := exports[0]
	if ex.path != "/v1/traces" || ex.header.Get("Content-Type") != "application/json" {
		t.Errorf("export sent to %s as %q, want /v1/traces as application/json", ex.path, ex.header.Get("Content-Type"))
	}
	if ex.header.Get("X-Api-Key") != "k3y,with-comma" || ex.header.Get("Tenant") != "acme" {
		t.Errorf("configured headers not sent: %v", ex.header)
	}
	for _, leak := range []string{token, user.Email, "secret-in-query"} {
		if bytes.Contains(ex.body, []byte(leak)) {
			t.Errorf("the export carries %q", leak)
		}
	}
	req, spans := decodeExport(t, ex.body)
	if len(exports) > 1 {
		spans = append(spans, collector.allSpans(t)...)
	}

	res := otlpSpan{Name: "resource", Attributes: req.ResourceSpans[0].Resource.Attributes}
	if got := res.str(t, "service.name"); got != "atenex-api-gateway" {
		t.Errorf("service.name = %q", got)
	}
	if res.str(t, "service.version") == "" {
		t.Error("service.version is empty")
	}

	server := spanNamed(t, spans, "/api/v1/query/{path...}")
	if server.Kind != 2 || server.TraceID != clientTrace || server.ParentSpanID != clientSpan {
		t.Errorf("server span kind %d trace %s parent %s, want kind 2 (server) in the client's trace under its span",
			server.Kind, server.TraceID, server.ParentSpanID)
	}
	checks := []struct{ key, want string }{
		{"http.request.method", "GET"},
		{"http.route", "/api/v1/query/{path...}"},
		{"url.path", "/api/v1/query/chats"},
		{"user.id", user.ID},
		{"company.id", user.CompanyID},
	}
	for _, c := range checks {
		if got := server.str(t, c.key); got != c.want {
			t.Errorf("server span %s = %q, want %q", c.key, got, c.want)
		}
	}
	if got := server.int(t, "http.response.status_code"); got != 200 {
		t.Errorf("http.response.status_code = %d", got)
	}
	if server.Status != nil && server.Status.Code == 2 {
		t.Errorf("a 200 marked as an error: %+v", server.Status)
	}

	client := spanNamed(t, spans, "GET query")
	if client.Kind != 3 || client.TraceID != clientTrace || client.ParentSpanID != server.SpanID {
		t.Errorf("client span kind %d trace %s parent %s, want kind 3 (client) under the server span %s",
			client.Kind, client.TraceID, client.ParentSpanID, server.SpanID)
	}
	if want := "00-" + clientTrace + "-" + client.SpanID + "-01"; upstreamTP != want {
		t.Errorf("upstream received traceparent %q, want %q: its parent must be the client span", upstreamTP, want)
	}
	if got := client.int(t, "http.response.status_code"); got != 200 {
		t.Errorf("client span status code %d", got)
	}
	if got := client.str(t, "url.path"); got != "/api/v1/chats" {
		t.Errorf("client span url.path %q, want the upstream path without the query", got)
	}
	if got := client.str(t, "peer.service"); got != "query" {
		t.Errorf("client span peer.service %q", got)
	}

	conn := spanNamed(t, spans, "upstream connection")
	if conn.Kind != 1 || conn.ParentSpanID != client.SpanID {
		t.Errorf("connection wait span kind %d parent %s, want kind 1 under the client span", conn.Kind, conn.ParentSpanID)
	}
	if v, ok := conn.attr("network.connection.reused"); !ok || v.BoolValue == nil {
		t.Errorf("network.connection.reused = %+v, want a boolValue", v)
	}
	if !strings.Contains(string(ex.body), `"intValue":"200"`) {
		t.Error(`int attributes are not written as strings ("intValue":"200")`)
	}
}

func TestTraceLoginHasDatabaseAndBcryptSpans(t *testing.T) {
	collector := newFakeCollector(t, nil)
	dbURL := testDatabaseURL(t)
	store, err := openPostgres(context.Background(), dbURL, testDBTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	e := newTestEnvWithStore(t, map[string]string{"GATEWAY_OTLP_ENDPOINT": collector.srv.URL}, store, dbURL)
	company := e.createCompany("Acme")
	e.createUser("grace@example.com", "pw-pw-pw-pw", company, bcrypt.MinCost)

	const trace = "0af7651916cd43dd8448eb211c80319c"
	r := e.do("POST", "/api/v1/users/login", "", `{"email":"grace@example.com","password":"pw-pw-pw-pw"}`,
		"traceparent", "00-"+trace+"-b7ad6b7169203331-01")
	mustStatus(t, r, http.StatusOK)
	e.flushSpans(t)

	spans := collector.allSpans(t)
	server := spanNamed(t, spans, "POST /api/v1/users/login")
	byEmail := spanNamed(t, spans, "UserByEmail")
	if byEmail.Kind != 3 || byEmail.ParentSpanID != server.SpanID || byEmail.TraceID != trace {
		t.Errorf("database span kind %d parent %s, want kind 3 under the server span %s", byEmail.Kind, byEmail.ParentSpanID, server.SpanID)
	}
	if got := byEmail.str(t, "db.system.name"); got != "postgresql" {
		t.Errorf("db.system.name = %q", got)
	}
	bc := spanNamed(t, spans, "bcrypt")
	if bc.Kind != 1 || bc.ParentSpanID != server.SpanID {
		t.Errorf("bcrypt span kind %d parent %s, want kind 1 under the server span", bc.Kind, bc.ParentSpanID)
	}
	if got := server.str(t, "user.id"); got == "" {
		t.Error("a successful login's span lacks user.id")
	}
	if b, _ := json.Marshal(spans); bytes.Contains(b, []byte("grace@example.com")) {
		t.Error("the login's spans carry the email")
	}
}

func TestTraceSampling(t *testing.T) {
	const trace, parent = "11111111111111111111111111111111", "2222222222222222"
	cases := []struct {
		name        string
		ratio       string
		traceparent string // sent by the client; "" = none
		path        string
		exported    bool
		wantFlags   string // of the traceparent the upstream receives
	}{
		{"ratio 1 samples a new trace", "1", "", "/api/v1/query/chats", true, "01"},
		{"ratio 0 samples no new trace", "0", "", "/api/v1/query/chats", false, "00"},
		{"a sampled parent wins over ratio 0", "0", "00-" + trace + "-" + parent + "-01", "/api/v1/query/chats", true, "01"},
		{"an unsampled parent wins over ratio 1", "1", "00-" + trace + "-" + parent + "-00", "/api/v1/query/chats", false, "00"},
		{"an invalid parent is a new trace, sampled by the ratio", "0", "00-" + trace + "-" + parent + "-1", "/api/v1/query/chats", false, "00"},
		{"other flag bits pass through", "0", "00-" + trace + "-" + parent + "-03", "/api/v1/query/chats", true, "03"},
		{"probes are not traced", "1", "", "/livez", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			collector := newFakeCollector(t, nil)
			upstream, lastUpstream := recordingUpstream(t)
			e, user := tracedEnv(t, collector, map[string]string{
				"GATEWAY_QUERY_SERVICE_URL":  upstream.URL,
				"GATEWAY_TRACE_SAMPLE_RATIO": tc.ratio,
			}, nil)
			var headers []string
			if tc.traceparent != "" {
				headers = []string{"traceparent", tc.traceparent}
			}
			if r := e.do("GET", tc.path, e.token(user), "", headers...); r.status != http.StatusOK {
				t.Fatalf("status %d %s", r.status, r.body)
			}
			if tc.wantFlags != "" {
				tp := lastUpstream().Header.Get("Traceparent")
				if !strings.HasSuffix(tp, "-"+tc.wantFlags) {
					t.Errorf("upstream received traceparent %q, want flags %s", tp, tc.wantFlags)
				}
			}
			e.flushSpans(t)
			spans := collector.allSpans(t)
			if got := len(spans) > 0; got != tc.exported {
				t.Errorf("exported %v (%v), want exported %v", got, spanNames(spans), tc.exported)
			}
		})
	}
}

func TestTraceSampleRatioSharesNewTraces(t *testing.T) {
	cfg := testConfig(t, map[string]string{"GATEWAY_OTLP_ENDPOINT": "http://127.0.0.1:1", "GATEWAY_TRACE_SAMPLE_RATIO": "0.25"})
	tr := startTracer(cfg, nil, nil, time.Hour, 1)
	defer tr.close()
	const draws = 20000
	sampled := 0
	for range draws {
		if tr.rootFlags() == "01" {
			sampled++
		}
	}
	// Binomial(20000, 0.25) has a standard deviation of about 61: ±600 is ten of them.
	if sampled < draws/4-600 || sampled > draws/4+600 {
		t.Errorf("%d of %d new traces sampled at ratio 0.25", sampled, draws)
	}
}

func TestTraceStalledCollectorDropsSpansNeverDelaysRequests(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 100)
	collector := newFakeCollector(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select { // a collector that never answers (until the test ends)
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	upstream, _ := recordingUpstream(t)
	const queueSize = 8
	// A short flush interval so the first export starts at once; it then hangs.
	e, user := tracedEnv(t, collector, map[string]string{"GATEWAY_QUERY_SERVICE_URL": upstream.URL},
		withTracer(time.Millisecond, queueSize))
	token := e.token(user)

	if r := e.do("GET", "/", "", ""); r.status != http.StatusOK { // one span: the stuck batch
		t.Fatalf("status %d", r.status)
	}
	<-arrived // the exporter is now inside a request the collector never answers

	// Three spans each (server, client, connection wait), and the first one a fourth: its
	// wait for the user lookup.
	const requests, spans = 20, 20*3 + 1
	var slowest time.Duration
	for range requests {
		start := time.Now()
		if r := e.do("GET", "/api/v1/query/chats", token, ""); r.status != http.StatusOK {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		slowest = max(slowest, time.Since(start))
	}
	// A request that waited for the exporter would take the whole export timeout.
	if slowest >= traceExportTimeout/5 {
		t.Errorf("slowest request took %v while the collector stalled, want far below the export timeout %v", slowest, traceExportTimeout)
	}
	select {
	case <-release:
		t.Fatal("released early")
	default: // the collector still holds the first export: nothing above waited for it
	}

	e.srv.Close() // every request finished: all their spans were offered to the queue
	if got, want := droppedSpans(t, e.gw.metrics, "queue_full"), float64(spans-queueSize); got != want {
		t.Errorf("gateway_trace_spans_dropped_total{reason=queue_full} = %v, want %v", got, want)
	}
}

func TestTraceShutdownFlushesPendingSpans(t *testing.T) {
	collector := newFakeCollector(t, nil)
	// A flush interval that never comes: only shutdown can send these spans.
	e, _ := tracedEnv(t, collector, nil, withTracer(time.Hour, traceQueueSize))
	for range 3 {
		if r := e.do("GET", "/", "", ""); r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
	}
	e.srv.Close()
	if got := collector.received(); len(got) != 0 {
		t.Fatalf("%d exports before shutdown with an hour's flush interval", len(got))
	}
	e.flushSpans(t)
	if spans := collector.allSpans(t); len(spans) != 3 {
		t.Errorf("shutdown flushed %d spans (%v), want 3", len(spans), spanNames(spans))
	}
	if r := e.gw.tracer.shutdown(context.Background()); r != nil {
		t.Errorf("a second shutdown: %v", r)
	}
}

func TestTraceShutdownGivesUpWhenTheGraceEnds(t *testing.T) {
	arrived := make(chan struct{}, 1)
	collector := newFakeCollector(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done() // never answers
	})
	e, _ := tracedEnv(t, collector, nil, withTracer(time.Hour, traceQueueSize))
	for range 2 {
		e.do("GET", "/", "", "")
	}
	e.srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.gw.tracer.shutdown(ctx) }()
	<-arrived
	cancel() // the grace period is over
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("shutdown = %v, want the grace's end", err)
	}
	if got := droppedSpans(t, e.gw.metrics, "shutdown"); got != 2 {
		t.Errorf("gateway_trace_spans_dropped_total{reason=shutdown} = %v, want 2", got)
	}
}

func TestRunFlushesSpansOnShutdown(t *testing.T) {
	collector := newFakeCollector(t, nil)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	g := startRun(t, ctx, []string{"-dev"}, map[string]string{
		"GATEWAY_OTLP_ENDPOINT": collector.srv.URL,
		"GATEWAY_DRAIN_DELAY":   "0s",
	})
	resp, err := http.Get(g.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	stop() // what SIGTERM does to run's context
	if err := g.wait(30 * time.Second); err != nil {
		t.Fatalf("run: %v", err)
	}
	found := false
	for _, s := range collector.allSpans(t) {
		found = found || s.Name == "GET /{$}"
	}
	if !found {
		t.Error("the span of a request served just before shutdown never reached the collector")
	}
}

func TestTraceCollectorFailuresAreCounted(t *testing.T) {
	cases := []struct {
		name   string
		answer http.HandlerFunc
		reason string
	}{
		{"error status", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		}, "export_failed"},
		{"partial success", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"partialSuccess":{"rejectedSpans":"1","errorMessage":"too old"}}`)
		}, "rejected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			collector := newFakeCollector(t, tc.answer)
			e, _ := tracedEnv(t, collector, nil, nil)
			e.do("GET", "/", "", "")
			e.flushSpans(t)
			if got := droppedSpans(t, e.gw.metrics, tc.reason); got != 1 {
				t.Errorf("gateway_trace_spans_dropped_total{reason=%s} = %v, want 1", tc.reason, got)
			}
		})
	}
}

func TestTraceUpstreamFailureMarksClientSpan(t *testing.T) {
	collector := newFakeCollector(t, nil)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // nothing listens there any more
	e, user := tracedEnv(t, collector, map[string]string{"GATEWAY_QUERY_SERVICE_URL": downURL}, nil)
	if r := e.do("GET", "/api/v1/query/chats", e.token(user), ""); r.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", r.status)
	}
	e.flushSpans(t)
	spans := collector.allSpans(t)
	client := spanNamed(t, spans, "GET query")
	if client.Status == nil || client.Status.Code != 2 || client.str(t, "error.type") != "unavailable" {
		t.Errorf("client span status %+v, want an error of type unavailable", client.Status)
	}
	server := spanNamed(t, spans, "/api/v1/query/{path...}")
	if server.Status == nil || server.Status.Code != 2 || server.int(t, "http.response.status_code") != 503 {
		t.Errorf("server span status %+v, want an error for the 503", server.Status)
	}
}

// loadTraceConfig loads the production configuration with the given name, value pairs set.
func loadTraceConfig(kv ...string) (*Config, error) {
	env := productionEnv()
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	return loadConfig(envOf(env), false)
}

func TestTraceConfigAcceptsEveryDocumentedForm(t *testing.T) {
	tests := []struct {
		name, value string
		got         func(*Config) any
		want        any
	}{
		{"GATEWAY_OTLP_ENDPOINT", "", func(c *Config) any { return c.OTLPEndpoint == nil }, true},
		{"GATEWAY_OTLP_ENDPOINT", " http://127.0.0.1:4318/ ", func(c *Config) any { return c.OTLPEndpoint.String() }, "http://127.0.0.1:4318"},
		{"GATEWAY_OTLP_ENDPOINT", "https://OTLP.example/otlp/", func(c *Config) any { return c.OTLPEndpoint.String() }, "https://otlp.example/otlp"},
		{"GATEWAY_OTLP_HEADERS", "x-api-key=abc%3D%3D, tenant = acme ,", func(c *Config) any {
			return c.OTLPHeaders[0].Name + ":" + c.OTLPHeaders[0].Value + " " + c.OTLPHeaders[1].Name + ":" + c.OTLPHeaders[1].Value
		}, "X-Api-Key:abc== Tenant:acme"},
		{"GATEWAY_OTLP_HEADERS", "Authorization=Basic dXNlcjpwYXNz", func(c *Config) any { return c.OTLPHeaders[0].Value }, "Basic dXNlcjpwYXNz"},
		{"GATEWAY_TRACE_SAMPLE_RATIO", "", func(c *Config) any { return c.TraceSampleRatio }, 1.0},
		{"GATEWAY_TRACE_SAMPLE_RATIO", "0", func(c *Config) any { return c.TraceSampleRatio }, 0.0},
		{"GATEWAY_TRACE_SAMPLE_RATIO", "0.25", func(c *Config) any { return c.TraceSampleRatio }, 0.25},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			cfg, err := loadTraceConfig(tt.name, tt.value)
			if err != nil {
				t.Fatalf("loadConfig refused a valid value: %v", err)
			}
			if got := tt.got(cfg); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTraceConfigRefusesInvalidSetting(t *testing.T) {
	tests := []struct{ name, value string }{
		{"GATEWAY_OTLP_ENDPOINT", "otel-collector:4318"},
		{"GATEWAY_OTLP_ENDPOINT", "grpc://otel-collector:4317"},
		{"GATEWAY_OTLP_ENDPOINT", "http://user:hunter2pass@otel-collector:4318"},
		{"GATEWAY_OTLP_ENDPOINT", "http://otel-collector:4318/v1/traces?x=1"},
		{"GATEWAY_OTLP_HEADERS", "hunter2-api-key-without-a-name"},
		{"GATEWAY_OTLP_HEADERS", "=hunter2-value"},
		{"GATEWAY_OTLP_HEADERS", "x api key=hunter2-value"},
		{"GATEWAY_OTLP_HEADERS", "content-type=text/hunter2"},
		{"GATEWAY_OTLP_HEADERS", "x-api-key=hunter2%zz"},
		{"GATEWAY_OTLP_HEADERS", "x-api-key=hunter2%0D%0AHost: evil"},
		{"GATEWAY_OTLP_HEADERS", "CHANGE_ME"},
		{"GATEWAY_TRACE_SAMPLE_RATIO", "1.5"},
		{"GATEWAY_TRACE_SAMPLE_RATIO", "-0.1"},
		{"GATEWAY_TRACE_SAMPLE_RATIO", "half"},
		{"GATEWAY_TRACE_SAMPLE_RATIO", "NaN"},
		{"GATEWAY_TRACE_SAMPLE_RATIO", "10%"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			cfg, err := loadTraceConfig(tt.name, tt.value)
			if err == nil {
				t.Fatalf("loadConfig accepted %s=%q: %+v", tt.name, tt.value, cfg)
			}
			lines := problemLines(err)
			if len(lines) != 1 || !strings.HasPrefix(lines[0], tt.name+": ") || !strings.Contains(lines[0], "expected") {
				t.Fatalf("want one line naming %s and what is expected, got:\n%v", tt.name, err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
}

func TestTraceConfigLogMasksHeaders(t *testing.T) {
	cfg, err := loadTraceConfig("GATEWAY_OTLP_ENDPOINT", "http://otel-collector:4318", "GATEWAY_OTLP_HEADERS", "x-api-key=hunter2-key")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("configuration", "config", cfg)
	if strings.Contains(buf.String(), "hunter2") {
		t.Fatalf("log line shows the header value: %s", buf.String())
	}
	for _, want := range []string{`"GATEWAY_OTLP_HEADERS":"X-Api-Key=***"`, `"GATEWAY_OTLP_ENDPOINT":"http://otel-collector:4318"`, `"GATEWAY_TRACE_SAMPLE_RATIO":1`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log line lacks %s: %s", want, buf.String())
		}
	}
	if s, _ := lookupSetting("GATEWAY_OTLP_HEADERS"); !s.Secret {
		t.Error("GATEWAY_OTLP_HEADERS is not marked secret")
	}
	if !slices.ContainsFunc(settings, func(s setting) bool { return s.Name == "GATEWAY_TRACE_SAMPLE_RATIO" && s.Default == "1.0" }) {
		t.Error("GATEWAY_TRACE_SAMPLE_RATIO does not default to 1.0")
	}
}

// BenchmarkTraceExport: one authenticated proxied request through the whole gateway (client
// and upstream in the process), with span export off, on (every request sampled, to a
// collector that reads and discards) and on with nothing sampled, so the differences are the
// cost of tracing a request and of deciding not to.
func BenchmarkTraceExport(b *testing.B) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{}`)
	}))
	defer sink.Close()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"chats":[]}`)
	}))
	defer upstream.Close()

	for _, mode := range []struct {
		name, endpoint, ratio string
	}{{"off", "", "1"}, {"on", sink.URL, "1"}, {"on-unsampled", sink.URL, "0"}} {
		b.Run(mode.name, func(b *testing.B) {
			cfg := testConfig(b, map[string]string{"GATEWAY_QUERY_SERVICE_URL": upstream.URL,
				"GATEWAY_LOG_LEVEL": "INFO", "GATEWAY_OTLP_ENDPOINT": mode.endpoint, "GATEWAY_TRACE_SAMPLE_RATIO": mode.ratio})
			store := newMemoryStore()
			company, _ := store.CreateCompany(context.Background(), "Bench Co")
			user, err := store.CreateUser(context.Background(), NewUser{Email: "bench@example.com", HashedPassword: dummyHash, CompanyID: company.ID})
			if err != nil {
				b.Fatal(err)
			}
			m := newMetrics()
			gw := newGateway(cfg, slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})), store, m)
			defer gw.close()
			srv := httptest.NewServer(gw.routes())
			defer srv.Close()
			token, err := gw.issueToken(user, 0)
			if err != nil {
				b.Fatal(err)
			}
			h := &hotPath{gw: gw, srv: srv, token: token, client: srv.Client()}
			h.get(b) // warms the user cache and the connections
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				h.get(b)
			}
			b.StopTimer()
			srv.Close()
			gw.tracer.shutdown(context.Background())
			b.ReportMetric(droppedSpans(b, m, "")/float64(b.N), "dropped/op")
		})
	}
}
