// trace.go: OpenTelemetry spans of the gateway's own work, posted as OTLP/HTTP JSON. Export is
// off (a nil tracer, no allocation) unless GATEWAY_OTLP_ENDPOINT is set; finished spans go into
// a bounded queue without blocking, so a slow collector costs dropped spans, never a slow request.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// The service.name an operator picks in Jaeger or Tempo: the deployment's name, not the prose one.
	traceServiceName = "atenex-api-gateway"
	// Bounds the memory (under 600 bytes a span) a collector that stops answering can cost.
	traceQueueSize     = 4096
	traceBatchSize     = 512             // spans per export request
	traceFlushInterval = time.Second     // how late a span reaches the collector when traffic is light
	traceExportTimeout = 5 * time.Second // meanwhile the queue fills: a hung collector costs spans only
	traceWarnInterval  = time.Minute     // rate limit of the warning about failed exports
	maxExportResponse  = 64 << 10        // how much of a collector's answer is read
)

// version is service.version, set by release builds with -ldflags "-X main.version=1.2.3".
var version = ""

// serviceVersion returns version, else the module version or VCS revision of the build, else "dev".
func serviceVersion() string {
	bi, ok := debug.ReadBuildInfo()
	switch {
	case version != "":
		return version
	case !ok:
		return "dev"
	case bi.Main.Version != "" && bi.Main.Version != "(devel)":
		return bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && s.Value != "" {
			return s.Value[:min(len(s.Value), 12)]
		}
	}
	return "dev"
}

// spanKind is OTLP's Span.SpanKind; the JSON mapping writes enums as their integer.
type spanKind uint8

const (
	spanKindInternal spanKind = 1
	spanKindServer   spanKind = 2
	spanKindClient   spanKind = 3
)

// traceSpan is one span, encoded as it is in the OTLP JSON mapping: ids as lower-case hex
// (as in traceparent, not base64), 64-bit integers as decimal strings, enums as integers.
type traceSpan struct {
	TraceID  string         `json:"traceId"`
	SpanID   string         `json:"spanId"`
	ParentID string         `json:"parentSpanId,omitempty"`
	Name     string         `json:"name"`
	Kind     spanKind       `json:"kind"`
	Start    int64          `json:"startTimeUnixNano,string"`
	End      int64          `json:"endTimeUnixNano,string"`
	Attrs    []otlpAttr     `json:"attributes"`
	Status   map[string]any `json:"status,omitempty"`

	tr    *tracer
	ended atomic.Bool
}

// otlpAttr is an OTLP KeyValue; its value is an AnyValue such as {"stringValue": "GET"}.
type otlpAttr struct {
	Key   string         `json:"key"`
	Value map[string]any `json:"value"`
}

// set adds a string, int (written as a decimal string, like every int64) or bool attribute.
func (s *traceSpan) set(key string, value any) {
	typ := "stringValue"
	switch v := value.(type) {
	case int:
		typ, value = "intValue", strconv.Itoa(v)
	case bool:
		typ = "boolValue"
	}
	s.Attrs = append(s.Attrs, otlpAttr{key, map[string]any{typ: value}})
}

// fail marks the span as failed. errorType is a short fixed word (never an error's text,
// which may quote URLs with query strings or values from the database).
func (s *traceSpan) fail(errorType string) {
	s.Status = map[string]any{"code": 2, "message": errorType} // 2: STATUS_CODE_ERROR
	s.set("error.type", errorType)
}

func (s *traceSpan) finish() { s.finishErr(nil) }

// finishErr ends the span and hands it to the exporter. A span already ended (and so perhaps
// being encoded) is left alone.
func (s *traceSpan) finishErr(err error) {
	if s == nil || s.ended.Load() {
		return
	}
	if err != nil {
		s.fail(errorType(err))
	}
	if !s.ended.Swap(true) {
		s.End = time.Now().UnixNano()
		s.tr.enqueue(s)
	}
}

// child starts a span under s; nil when s is nil (not traced).
func (s *traceSpan) child(name string, kind spanKind) *traceSpan {
	if s == nil {
		return nil
	}
	return &traceSpan{tr: s.tr, TraceID: s.TraceID, SpanID: randomHex(1), ParentID: s.SpanID,
		Name: name, Kind: kind, Start: time.Now().UnixNano()}
}

type traceSpanKey struct{}

// spanFrom returns the request's server span, or nil. It has a context value of its own so
// that, with export off, requestInfo keeps its size.
func spanFrom(ctx context.Context) *traceSpan {
	s, _ := ctx.Value(traceSpanKey{}).(*traceSpan)
	return s
}

// startSpan starts a child of the request's server span; nil (every method a no-op) when untraced.
func startSpan(ctx context.Context, name string, kind spanKind) *traceSpan {
	return spanFrom(ctx).child(name, kind)
}

// errorType is a bounded description of err for the error.type attribute.
func errorType(err error) string {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, errHashBusy):
		return "busy"
	case errors.As(err, &pgErr):
		return "sqlstate " + pgErr.Code
	}
	return "error"
}

// startDBSpan starts the span of a store call (pgStore.withConn), named after the store
// method, read from the stack only when traced, so no call site passes a name.
func startDBSpan(ctx context.Context) *traceSpan {
	s := startSpan(ctx, "query", spanKindClient)
	if s == nil {
		return nil
	}
	if pc, _, _, ok := runtime.Caller(2); ok { // 0: here, 1: withConn, 2: the store method
		if f := runtime.FuncForPC(pc); f != nil {
			name := f.Name() // "main.(*pgStore).UserByID"
			s.Name = name[strings.LastIndexByte(name, '.')+1:]
		}
	}
	s.set("db.system.name", "postgresql")
	s.set("db.operation.name", s.Name)
	return s
}

// finishDB ends a store call's span; "no rows" is an answer, not a failure.
func (s *traceSpan) finishDB(err *error) {
	if errors.Is(*err, pgx.ErrNoRows) {
		s.finish()
	} else {
		s.finishErr(*err)
	}
}

// tracer owns the export queue and the goroutine that empties it; nil is export off.
type tracer struct {
	endpoint string // {GATEWAY_OTLP_ENDPOINT}/v1/traces
	headers  http.Header
	ratio    float64 // GATEWAY_TRACE_SAMPLE_RATIO
	client   *http.Client
	log      *slog.Logger
	m        *metrics
	version  string // service.version

	queue     chan *traceSpan
	stopping  chan struct{} // closed by shutdown: flush what is queued, then exit
	stopOnce  sync.Once
	done      chan struct{}      // closed when the export goroutine has exited
	exportCtx context.Context    // bounds every export
	abort     context.CancelFunc // cancels exportCtx when the shutdown's time is up
	lastWarn  time.Time          // export goroutine only
}

// newTracer returns the running exporter cfg configures, or nil when export is off.
func newTracer(cfg *Config, log *slog.Logger, m *metrics) *tracer {
	if cfg.OTLPEndpoint == nil {
		return nil
	}
	return startTracer(cfg, log, m, traceFlushInterval, traceQueueSize)
}

// startTracer starts an exporter sending at least every interval, queueing at most queueSize spans.
func startTracer(cfg *Config, log *slog.Logger, m *metrics, interval time.Duration, queueSize int) *tracer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := *cfg.OTLPEndpoint
	u.Path += "/v1/traces"
	if u.RawPath != "" {
		u.RawPath += "/v1/traces"
	}
	headers := http.Header{}
	for _, h := range cfg.OTLPHeaders {
		headers.Add(h.Name, h.Value)
	}
	headers.Set("Content-Type", "application/json")
	t := &tracer{
		endpoint: u.String(),
		headers:  headers,
		ratio:    cfg.TraceSampleRatio,
		client: &http.Client{
			Transport: &http.Transport{ // no Proxy: straight to the collector, like the upstreams
				DialContext:           (&net.Dialer{Timeout: traceExportTimeout, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConnsPerHost:   1, // one exporter goroutine: one connection is all it uses
				IdleConnTimeout:       90 * time.Second,
				ResponseHeaderTimeout: traceExportTimeout,
				TLSHandshakeTimeout:   traceExportTimeout,
			},
			// A collector never redirects; following one could send the API key elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:      log,
		m:        m,
		version:  serviceVersion(),
		queue:    make(chan *traceSpan, queueSize),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
	t.exportCtx, t.abort = context.WithCancel(context.Background())
	go t.run(interval)
	return t
}

// rootFlags samples a trace this gateway starts ("01", else "00") by GATEWAY_TRACE_SAMPLE_RATIO;
// a valid incoming traceparent keeps its own flags instead: the caller has decided.
func (t *tracer) rootFlags() string {
	if rand.Float64() < t.ratio { // in [0, 1): ratio 1 samples all, 0 none
		return "01"
	}
	return "00"
}

// startServer returns ctx with the request's server span when info's traceparent (validated
// or generated by the middleware) is sampled; its parent is the client's span, if valid.
func (t *tracer) startServer(ctx context.Context, r *http.Request, info *requestInfo, start time.Time) context.Context {
	if t == nil || len(info.TraceParent) != traceParentLen || unhex(info.TraceParent[54])&1 == 0 {
		return ctx
	}
	switch r.URL.Path {
	case "/health", "/livez", "/readyz":
		return ctx // probes every few seconds would bury the traces worth reading
	}
	s := &traceSpan{tr: t, TraceID: info.TraceID, SpanID: randomHex(1), Kind: spanKindServer, Start: start.UnixNano()}
	if tp := r.Header["Traceparent"]; info.KeepTraceState && len(tp) == 1 && len(tp[0]) >= traceParentLen {
		s.ParentID = tp[0][36:52]
	}
	return context.WithValue(ctx, traceSpanKey{}, s)
}

// endServer finishes the server span, named after the route pattern (never the raw path),
// with the path without its query and the caller's ids: never a token or an email.
func (t *tracer) endServer(ctx context.Context, info *requestInfo, route string, r *http.Request, status int, aborted bool) {
	s := spanFrom(ctx)
	if s == nil {
		return
	}
	s.Name = route
	method := methodLabel(r.Method)
	if method == "OTHER" {
		method = "_OTHER" // the semantic conventions' word for a method outside the known set
	}
	s.set("http.request.method", method)
	s.set("http.route", route)
	s.set("url.path", logPath(r.URL.Path))
	s.set("http.response.status_code", status)
	if info.UserID != "" {
		s.set("user.id", info.UserID)
	}
	if info.CompanyID != "" {
		s.set("company.id", info.CompanyID)
	}
	switch {
	case aborted:
		s.fail("aborted")
	case status >= 500:
		s.fail(strconv.Itoa(status))
	}
	s.finish()
}

// enqueue hands a finished span to the exporter, or drops and counts it: a request never waits.
func (t *tracer) enqueue(s *traceSpan) {
	if t == nil {
		return
	}
	select {
	case <-t.stopping: // nothing reads the queue any more
		t.m.traceSpansDropped("shutdown", 1)
	default:
		select {
		case t.queue <- s:
		default:
			t.m.traceSpansDropped("queue_full", 1)
		}
	}
}

// run sends a batch when it is full or every interval, and on shutdown what is left.
func (t *tracer) run(interval time.Duration) {
	defer close(t.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var batch []*traceSpan
	for {
		select {
		case s := <-t.queue:
			if batch = append(batch, s); len(batch) < traceBatchSize {
				continue
			}
		case <-tick.C:
		case <-t.stopping:
			for len(t.queue) > 0 { // this goroutine is the queue's only reader
				batch = append(batch, <-t.queue)
			}
			for b := range slices.Chunk(batch, traceBatchSize) {
				t.export(b)
			}
			return
		}
		if len(batch) > 0 {
			t.export(batch)
			batch = nil // lets the sent spans be collected
		}
	}
}

// export posts one batch; one the collector did not accept is dropped and counted, never
// retried, so a struggling collector is not hammered and memory stays bounded.
func (t *tracer) export(batch []*traceSpan) {
	if t.exportCtx.Err() != nil { // shutdown ran out of time
		t.m.traceSpansDropped("shutdown", len(batch))
		return
	}
	ctx, cancel := context.WithTimeout(t.exportCtx, traceExportTimeout)
	defer cancel()
	rejected, err := t.post(ctx, t.encode(batch))
	switch {
	case err != nil:
		reason := "export_failed"
		if t.exportCtx.Err() != nil {
			reason = "shutdown"
		}
		t.m.traceSpansDropped(reason, len(batch))
		t.warn("trace export failed: spans dropped", slog.Int("spans", len(batch)), slog.String("error", err.Error()))
	case rejected > 0:
		t.m.traceSpansDropped("rejected", int(min(rejected, int64(len(batch)))))
		t.warn("trace collector rejected spans", slog.Int64("spans", rejected))
	}
}

// encode writes an ExportTraceServiceRequest (sorted map keys are OTLP's field order here).
func (t *tracer) encode(batch []*traceSpan) []byte {
	for _, s := range batch {
		if s.Attrs == nil {
			s.Attrs = []otlpAttr{} // the span has ended: only this goroutine touches it now
		}
	}
	str := func(v string) map[string]any { return map[string]any{"stringValue": v} }
	b, _ := json.Marshal(map[string]any{"resourceSpans": []any{map[string]any{
		"resource": map[string]any{"attributes": []otlpAttr{
			{"service.name", str(traceServiceName)}, {"service.version", str(t.version)}}},
		"scopeSpans": []any{map[string]any{
			"scope": map[string]string{"name": traceServiceName, "version": t.version},
			"spans": batch,
		}},
	}}}) // plain values cannot fail to encode
	return b
}

// post sends one encoded batch and returns how many spans the collector rejected (partial success).
func (t *tracer) post(ctx context.Context, body []byte) (rejected int64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("build export request: %w", err)
	}
	req.Header = t.headers.Clone()
	resp, err := t.client.Do(req)
	if err != nil {
		// The *url.Error names the endpoint, which is configuration, not a secret.
		return 0, fmt.Errorf("post spans: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxExportResponse))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return 0, fmt.Errorf("post spans to %s: collector answered %s", t.endpoint, resp.Status)
	}
	// rejectedSpans is an int64, so a JSON string, though some collectors write a number.
	var r struct {
		PartialSuccess struct{ RejectedSpans json.Number }
	}
	if json.Unmarshal(answer, &r) != nil {
		return 0, nil
	}
	n, _ := r.PartialSuccess.RejectedSpans.Int64()
	return n, nil
}

// warn logs at most once per traceWarnInterval: a collector that is down would log every flush.
func (t *tracer) warn(msg string, attrs ...slog.Attr) {
	if now := time.Now(); now.Sub(t.lastWarn) >= traceWarnInterval {
		t.lastWarn = now
		t.log.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
	}
}

// shutdown sends the queued spans and stops the exporter, giving up (the rest counted as
// dropped) when ctx ends. Safe to call more than once and on a nil tracer.
func (t *tracer) shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	t.stopOnce.Do(func() { close(t.stopping) })
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		t.abort()
		<-t.done
		return fmt.Errorf("flush spans: %w", ctx.Err())
	}
}

// close stops the exporter without waiting for the collector.
func (t *tracer) close() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = t.shutdown(ctx)
}

// wrapTransport adds a client span around every upstream call of a traced request.
func (t *tracer) wrapTransport(rt http.RoundTripper) http.RoundTripper {
	if t == nil {
		return rt
	}
	return &tracingTransport{next: rt}
}

type tracingTransport struct{ next http.RoundTripper }

func (tt *tracingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	parent := spanFrom(req.Context())
	tp := req.Header[hdrTraceParent]
	if parent == nil || len(tp) != 1 || len(tp[0]) < traceParentLen {
		return tt.next.RoundTrip(req)
	}
	info := requestInfoFrom(req.Context())
	method := methodLabel(req.Method)
	s := parent.child(method+" "+info.Upstream, spanKindClient)
	s.SpanID = tp[0][36:52] // the proxy's outbound traceparent: the upstream's spans hang under this one
	s.set("http.request.method", method)
	s.set("server.address", req.URL.Hostname())
	if p, err := strconv.Atoi(req.URL.Port()); err == nil {
		s.set("server.port", p)
	}
	s.set("url.path", logPath(req.URL.Path)) // never the query: it may carry secrets
	if info.Upstream != "" {
		s.set("peer.service", info.Upstream)
	}

	// Under load, the wait for an upstream connection is where a request's time goes.
	wait := s.child("upstream connection", spanKindInternal)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(ci httptrace.GotConnInfo) {
			wait.set("network.connection.reused", ci.Reused)
			wait.finish()
		},
	}))
	resp, err := tt.next.RoundTrip(req)
	if err != nil {
		kind, _ := classifyUpstreamError(req.Context(), err)
		wait.finishErr(err)
		s.fail(kind)
		s.finish()
		return nil, err
	}
	wait.finish() // no-op unless the transport skipped GotConn
	s.set("http.response.status_code", resp.StatusCode)
	if resp.StatusCode >= 400 {
		s.fail(strconv.Itoa(resp.StatusCode)) // for a client span, 4xx is a failure too
	}
	if resp.StatusCode == http.StatusSwitchingProtocols || resp.Body == nil || resp.Body == http.NoBody {
		// A switched connection's body must stay an io.ReadWriteCloser for ReverseProxy.
		s.finish()
		return resp, nil
	}
	resp.Body = &spanBody{ReadCloser: resp.Body, s: s}
	return resp, nil
}

// spanBody ends the client span when the proxy closes the body, so it covers a long stream too.
type spanBody struct {
	io.ReadCloser
	s *traceSpan
}

func (b *spanBody) Close() error {
	err := b.ReadCloser.Close()
	b.s.finish()
	return err
}

// ---- Configuration ----------------------------------------------------------------------

// otlpHeader is one GATEWAY_OTLP_HEADERS entry.
type otlpHeader struct{ Name, Value string }

// exporterHeaders are set by the exporter itself; a configured value would break the export.
var exporterHeaders = []string{"Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding", "Host", "Connection"}

// parseOTLPHeaders reads GATEWAY_OTLP_HEADERS in OTEL_EXPORTER_OTLP_HEADERS' format. The value
// is a secret, so errors name the item's position, never its text.
func parseOTLPHeaders(v string) ([]otlpHeader, error) {
	var out []otlpHeader
	for i, item := range strings.Split(v, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		key, value, ok := strings.Cut(item, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || key == "" {
			return nil, fmt.Errorf("item %d is not key=value", i+1)
		}
		if strings.ContainsFunc(key, func(c rune) bool { return c >= 0x80 || !isTokenChar(byte(c)) }) {
			return nil, fmt.Errorf("item %d has an invalid header name", i+1)
		}
		if j := slices.IndexFunc(exporterHeaders, func(h string) bool { return strings.EqualFold(key, h) }); j >= 0 {
			return nil, fmt.Errorf("item %d sets %s, which the exporter sets itself", i+1, exporterHeaders[j])
		}

		dec, err := url.PathUnescape(value)
		if err != nil {
			return nil, fmt.Errorf("item %d has a malformed percent-encoding", i+1)
		}
		if strings.ContainsFunc(dec, func(c rune) bool { return (c < 0x20 && c != '\t') || c == 0x7f }) {
			return nil, fmt.Errorf("item %d has a control character in its value", i+1)
		}
		out = append(out, otlpHeader{Name: http.CanonicalHeaderKey(key), Value: dec})
	}
	return out, nil
}

// otlpHeadersText is GATEWAY_OTLP_HEADERS as the start-up log shows it: names only.
func (c *Config) otlpHeadersText() string {
	if len(c.OTLPHeaders) == 0 {
		return "unset"
	}
	names := make([]string, len(c.OTLPHeaders))
	for i, h := range c.OTLPHeaders {
		names[i] = h.Name + "=***"
	}
	return strings.Join(names, ",")
}
