// proxy.go: route → upstream mapping, path safety, Rewrite (identity and forwarding headers),
// the shared upstream transport and the mapping of transport failures to HTTP statuses.
package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// newUpstreamTransport is the one transport every proxy shares: keep-alives pooled per process.
func newUpstreamTransport(cfg *Config) *http.Transport {
	// An upstream that accepts no connection within 5 s is down, not slow: fail fast (503).
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	// HTTP/1.1 only: plain in-cluster upstreams, and one protocol keeps streaming predictable.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &http.Transport{
		// Never HTTP_PROXY from the environment: upstream traffic carries identity headers.
		Proxy:       nil,
		DialContext: dialer.DialContext,
		Protocols:   &protocols,
		// Go keeps only 2 idle connections per host by default, piling up TIME_WAIT under load.
		MaxConnsPerHost:     cfg.MaxConnsPerHost,
		MaxIdleConnsPerHost: cfg.MaxIdleConnsPerHost,
		// Three upstreams plus headroom; must not undercut the per-host cap (0 = unlimited).
		MaxIdleConns:    4 * max(cfg.MaxIdleConnsPerHost, 2),
		IdleConnTimeout: 90 * time.Second,
		// Only headers are bounded: an SSE answer or a slow download may last much longer.
		ResponseHeaderTimeout: cfg.HTTPClientTimeout,
		// The server's own request-header bound; Go's default would buffer 10 MiB per response.
		MaxResponseHeaderBytes: 64 << 10,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		// Bodies pass through byte for byte, never re-encoded.
		DisableCompression: true,
		WriteBufferSize:    32 << 10, // fewer syscalls on big bodies than the 4 KiB default
		ReadBufferSize:     32 << 10,
	}
}

// Errors of upstreamGate, mapped to statuses by the proxy's error handler.
var (
	errUpstreamBusy       = errors.New("no upstream connection free in time")
	errCompanyInflight    = errors.New("company has too many proxied requests in flight")
	errUnrequestedUpgrade = errors.New("upstream switched protocols unasked")
)

// upstreamGate puts the shared transport behind two admission checks, so one client or tenant
// cannot take the upstream pool: a request waits at most queueWait for one of a host's slots
// (one per connection; http.Transport would queue without bound behind trickling uploads), and
// a company holds at most companyMax. A slot is held until the response body is closed.
type upstreamGate struct {
	*http.Transport // the shared pool; CloseIdleConnections and settings come from it

	queueWait  time.Duration
	perHost    int
	companyMax int // 0 = no cap

	hosts     sync.Map // upstream host → chan struct{} of perHost slots
	companies sync.Map // company id → *atomic.Int32 requests in flight
}

func newUpstreamGate(cfg *Config) *upstreamGate {
	return &upstreamGate{
		Transport:  newUpstreamTransport(cfg),
		queueWait:  cfg.UpstreamQueueWait,
		perHost:    max(cfg.MaxConnsPerHost, 1),
		companyMax: cfg.CompanyMaxInflight,
	}
}

func (g *upstreamGate) RoundTrip(req *http.Request) (*http.Response, error) {
	var company *atomic.Int32
	if id, ok := identityFrom(req.Context()); ok && id.CompanyID != "" && g.companyMax > 0 {
		// Never removed: ids come only from signed tokens, so they number the companies.
		v, ok := g.companies.Load(id.CompanyID)
		if !ok {
			v, _ = g.companies.LoadOrStore(id.CompanyID, new(atomic.Int32))
		}
		company = v.(*atomic.Int32)
		if company.Add(1) > int32(g.companyMax) {
			company.Add(-1)
			return nil, errCompanyInflight
		}
	}
	slots := g.slots(req.URL.Host)
	if err := g.acquire(req.Context(), slots); err != nil {
		if company != nil {
			company.Add(-1)
		}
		return nil, err
	}
	res, err := g.Transport.RoundTrip(req)
	if err != nil {
		releaseSlot(slots, company)
		return nil, err
	}
	res.Body = &gatedBody{ReadCloser: res.Body, slots: slots, company: company}
	return res, nil
}

// releaseSlot gives back an upstream connection slot and, when counted, the company's share of it.
func releaseSlot(slots chan struct{}, company *atomic.Int32) {
	<-slots
	if company != nil {
		company.Add(-1)
	}
}

func (g *upstreamGate) slots(host string) chan struct{} {
	if v, ok := g.hosts.Load(host); ok {
		return v.(chan struct{})
	}
	// Hosts come from the configured upstream URLs only, never from a client.
	v, _ := g.hosts.LoadOrStore(host, make(chan struct{}, g.perHost))
	return v.(chan struct{})
}

// acquire takes a slot, waiting at most queueWait (no timer when one is free at once).
func (g *upstreamGate) acquire(ctx context.Context, slots chan struct{}) error {
	select {
	case slots <- struct{}{}:
		return nil
	default:
	}
	if g.queueWait <= 0 {
		return errUpstreamBusy
	}
	t := time.NewTimer(g.queueWait)
	defer t.Stop()
	select {
	case slots <- struct{}{}:
		return nil
	case <-t.C:
		return errUpstreamBusy
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gatedBody gives back the slot (and the company's count) when the response is done.
type gatedBody struct {
	io.ReadCloser
	slots   chan struct{}
	company *atomic.Int32
	closed  atomic.Bool
}

func (b *gatedBody) Close() error {
	err := b.ReadCloser.Close()
	if b.closed.CompareAndSwap(false, true) {
		releaseSlot(b.slots, b.company)
	}
	return err
}

// upstream names one backend route: requests under gatewayPrefix go to target with
// gatewayPrefix replaced by upstreamPrefix. Both prefixes start and end with '/'.
type upstream struct {
	name           string // "ingest", "query", "auth": used in logs and metrics
	target         *url.URL
	gatewayPrefix  string
	upstreamPrefix string
}

// proxy forwards one route's requests to its upstream.
type proxy struct {
	up   upstream
	base string // the target's escaped path without a trailing '/' ("" for none)
	log  *slog.Logger
	m    *metrics
	rp   *httputil.ReverseProxy

	idle time.Duration // cuts a request body or response that moves no byte for this long (0 = never)
	// forwardCredentials keeps the client's Authorization and Cookie where identity headers go.
	forwardCredentials bool
}

// bufPool lends every proxy its 32 KiB copy buffers: streaming allocates nothing per request.
var bufPool = &bufferPool{}

const copyBufferSize = 32 << 10

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if buf, ok := b.p.Get().(*[copyBufferSize]byte); ok {
		return buf[:]
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) < copyBufferSize {
		return
	}
	// An array pointer converted from the slice: storing it in the pool allocates nothing.
	b.p.Put((*[copyBufferSize]byte)(buf[:copyBufferSize]))
}

// newProxy panics on a malformed upstream: a wiring mistake caught at start.
func newProxy(up upstream, transport http.RoundTripper, cfg *Config, log *slog.Logger, m *metrics) http.Handler {
	if up.target == nil || up.target.Host == "" || (up.target.Scheme != "http" && up.target.Scheme != "https") {
		panic("proxy " + up.name + ": upstream target must be an absolute http(s) URL")
	}
	if !validPrefix(up.gatewayPrefix) || !validPrefix(up.upstreamPrefix) {
		panic("proxy " + up.name + ": prefixes must be clean paths starting and ending with '/'")
	}
	base := strings.TrimSuffix(up.target.EscapedPath(), "/")
	if base != "" && !safePath(base) {
		panic("proxy " + up.name + ": upstream target path must be a clean path")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &proxy{up: up, base: base, log: log, m: m, idle: cfg.ProxyIdleTimeout, forwardCredentials: cfg.ForwardCredentials}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      transport,
		BufferPool:     bufPool,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		// FlushInterval 0: ReverseProxy already flushes SSE and unknown-length bodies per write.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return p
}

func validPrefix(p string) bool {
	return len(p) >= 1 && p[0] == '/' && p[len(p)-1] == '/' && safePath(p)
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	escaped := r.URL.EscapedPath()
	if !safePath(escaped) {
		writeError(w, r, http.StatusBadRequest, codeInvalidPath, "Invalid request path")
		return
	}
	if gp := p.up.gatewayPrefix; !strings.HasPrefix(escaped, gp) && escaped != gp[:len(gp)-1] {
		// Safe but outside this route: the route table sent us something it should not have.
		writeError(w, r, http.StatusNotFound, codeNotFound, "Not Found")
		return
	}
	if refuseTunnel(w, r) {
		return
	}
	requestInfoFrom(r.Context()).Upstream = p.up.name
	// Without it HTTP/1 drains the unread body before the first write, stalling a POST answered
	// with SSE. HTTP/2 is full duplex already and reports ErrNotSupported.
	_ = http.NewResponseController(w).EnableFullDuplex()
	if p.idle > 0 {
		w = newIdleStream(w, r, p.idle)
	}
	// With full duplex, the server closing a body the transport never read while a read is
	// pending panics (golang/go#68560); closing it here first avoids that.
	defer r.Body.Close()
	p.rp.ServeHTTP(w, r)
}

// refuseTunnel answers (reporting true) what a backend must never be asked: CONNECT (a tunnel),
// TRACE (echoes identity headers and credentials) and upgrades, after which the gateway sees no
// more requests on the connection. Without Connection: upgrade, ReverseProxy drops Upgrade.
func refuseTunnel(w http.ResponseWriter, r *http.Request) bool {
	switch r.Method {
	case http.MethodConnect, http.MethodTrace:
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		writeError(w, r, http.StatusMethodNotAllowed, codeMethodNotAllowed, "Method Not Allowed")
		return true
	}
	if len(r.Header["Upgrade"]) > 0 && anyListItem(r.Header["Connection"], func(item string) bool {
		return strings.EqualFold(item, "upgrade")
	}) {
		w.Header().Set("Connection", "close")
		writeError(w, r, http.StatusBadRequest, codeValidation, "Protocol upgrades are not supported")
		return true
	}
	return false
}

// idleStream cuts a request body or response that makes no progress within idle, using the
// connection's deadlines. They move (to idle+idle/4) only when fewer than idle remain: a stall is
// cut within 1.25 x idle, for one timer update per idle/4 of streaming.
type idleStream struct {
	rc   http.ResponseController
	idle time.Duration
	w    idleWriter
	body idleBody
}

// newIdleStream replaces r's body (as http.MaxBytesReader does) and returns the writer to use.
func newIdleStream(w http.ResponseWriter, r *http.Request, idle time.Duration) http.ResponseWriter {
	st := &idleStream{rc: *http.NewResponseController(w), idle: idle}
	st.w = idleWriter{ResponseWriter: w, st: st}
	if r.Body != nil && r.Body != http.NoBody {
		st.body = idleBody{ReadCloser: r.Body, st: st}
		r.Body = &st.body
	}
	return &st.w
}

// idleDeadline is one side's deadline; off when the connection has none (a test recorder).
type idleDeadline struct {
	at  time.Time
	off bool
}

func (st *idleStream) arm(d *idleDeadline, set func(*http.ResponseController, time.Time) error) {
	if now := time.Now(); !d.off && d.at.Sub(now) < st.idle {
		d.at = now.Add(st.idle + st.idle/4)
		d.off = set(&st.rc, d.at) != nil
	}
}

// idleWriter is the response side of an idleStream. Its deadline stays after the handler
// returns: it bounds the final flush, and the server clears it before the next request.
type idleWriter struct {
	http.ResponseWriter
	st *idleStream
	d  idleDeadline
}

func (w *idleWriter) arm() { w.st.arm(&w.d, (*http.ResponseController).SetWriteDeadline) }

func (w *idleWriter) WriteHeader(code int) {
	w.arm() // a 1xx is written to the connection at once
	w.ResponseWriter.WriteHeader(code)
}

func (w *idleWriter) Write(b []byte) (int, error) {
	w.arm()
	return w.ResponseWriter.Write(b)
}

// FlushError is what http.ResponseController (and so ReverseProxy) flushes through.
func (w *idleWriter) FlushError() error {
	w.arm()
	return w.st.rc.Flush()
}

func (w *idleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type idleBody struct {
	io.ReadCloser
	st  *idleStream
	d   idleDeadline
	eof bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	// After EOF net/http reads the connection in the background; a deadline then would end
	// that read and the request's context, cutting a response still streaming.
	if !b.eof {
		b.st.arm(&b.d, (*http.ResponseController).SetReadDeadline)
	}
	n, err := b.ReadCloser.Read(p)
	b.eof = b.eof || err == io.EOF
	// Other errors keep the deadline: if passed, net/http's discard of the rest fails at once
	// and closes the connection instead of waiting on a client that sends nothing.
	return n, err
}

// mapUpstreamPath replaces the gateway prefix of an escaped path (or the prefix without its
// slash) by the upstream one; refusing unsafe paths keeps the result inside upstreamPrefix.
func mapUpstreamPath(escapedPath, gatewayPrefix, upstreamPrefix string) (string, bool) {
	if !validPrefix(gatewayPrefix) || !validPrefix(upstreamPrefix) || !safePath(escapedPath) {
		return "", false
	}
	if escapedPath == gatewayPrefix[:len(gatewayPrefix)-1] {
		return upstreamPrefix, true
	}
	rest, ok := strings.CutPrefix(escapedPath, gatewayPrefix)
	if !ok {
		return "", false
	}
	return upstreamPrefix + rest, true
}

// rejectUnsafePaths wraps the whole mux, which would otherwise redirect unclean paths to clean ones.
func rejectUnsafePaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !safePath(r.URL.EscapedPath()) {
			writeError(w, r, http.StatusBadRequest, codeInvalidPath, "Invalid request path")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// safePath refuses what normalisation, ours or a backend's, could turn into another path: "."
// and ".." segments (also "..;x"), empty segments, backslashes, encoded '.', '/', '\' or '%',
// malformed escapes, overlong UTF-8 (%c0%ae is '.' to lax decoders), control bytes.
func safePath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '/':
			seg := p[i+1:]
			if j := strings.IndexByte(seg, '/'); j >= 0 {
				seg = seg[:j]
				if j == 0 {
					return false // "//"
				}
			}
			if j := strings.IndexByte(seg, ';'); j >= 0 {
				seg = seg[:j]
			}
			if seg == "." || seg == ".." {
				return false
			}
		case '%':
			d, ok := escapedByteAt(p, i)
			switch {
			case !ok, d == '.', d == '/', d == '\\', d == '%', d < 0x20, d == 0x7f:
				return false
			case d == 0xc0, d == 0xc1, d >= 0xf5:
				return false // never in UTF-8; 0xc0/0xc1 only start overlong forms of ASCII
			case d == 0xe0, d == 0xf0:
				// Overlong 3- and 4-byte forms (%e0%80%ae is '.' to a lax decoder).
				if n, ok := escapedByteAt(p, i+3); ok && n >= 0x80 && (d == 0xe0 && n < 0xa0 || d == 0xf0 && n < 0x90) {
					return false
				}
			}
			i += 2
		case '\\', '?', '#':
			return false
		default:
			if c <= ' ' || c >= 0x7f {
				return false
			}
		}
	}
	return true
}

func escapedByteAt(p string, i int) (byte, bool) {
	if i+2 >= len(p) || p[i] != '%' || hexDigitValue[p[i+1]] < 0 || hexDigitValue[p[i+2]] < 0 {
		return 0, false
	}
	return byte(hexDigitValue[p[i+1]])<<4 | byte(hexDigitValue[p[i+2]]), true
}

func unhex(c byte) byte { return byte(hexDigitValue[c]) }

const hdrTraceParent = "Traceparent"

// rewrite builds the outbound request. Unlike Director, Rewrite runs after ReverseProxy removed
// hop-by-hop headers, so nothing set here can be stripped by a client naming it in Connection.
func (p *proxy) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	mapped, ok := mapUpstreamPath(in.URL.EscapedPath(), p.up.gatewayPrefix, p.up.upstreamPrefix)
	if !ok {
		// ServeHTTP refused such paths already; abort rather than send the request anywhere.
		panic(http.ErrAbortHandler)
	}
	target := p.up.target
	out.URL.Scheme = target.Scheme
	out.URL.Host = target.Host
	out.URL.RawPath = p.base + mapped
	out.URL.Path, _ = url.PathUnescape(out.URL.RawPath) // cannot fail: safePath checked every escape
	// Byte for byte: ReverseProxy would re-encode a query it cannot parse.
	out.URL.RawQuery = in.URL.RawQuery
	if target.RawQuery != "" {
		if out.URL.RawQuery == "" {
			out.URL.RawQuery = target.RawQuery
		} else {
			out.URL.RawQuery = target.RawQuery + "&" + out.URL.RawQuery
		}
	}
	out.Host = "" // the Host header names the upstream, as pr.SetURL does
	if out.Body != nil {
		out.Body = &clientBody{ReadCloser: out.Body}
	}

	info := requestInfoFrom(in.Context())
	setUpstreamHeaders(out.Header, in, info)
	if !p.forwardCredentials && info.Authenticated {
		// The backend trusts the identity headers; the client's token and cookies would be a
		// second, unverified identity. The auth route, with no verified caller, keeps them.
		delete(out.Header, "Authorization")
		delete(out.Header, "Cookie")
	}
}

// clientBody marks failures to read the client's body (no upstream failure). The first is kept:
// after an idle timeout the transport reports only the context cancellation net/http adds.
type clientBody struct {
	io.ReadCloser
	failed atomic.Pointer[clientBodyError]
}

type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "read client request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		cerr := &clientBodyError{err}
		b.failed.CompareAndSwap(nil, cerr)
		err = cerr
	}
	return n, err
}

// reservedHeaders are client headers that must never reach an upstream: those only the
// gateway sets (identity, request id) and the forwarding headers it rebuilds.
var reservedHeaders = map[string]bool{
	"x-user-id": true, "x-company-id": true, "x-user-email": true, "x-request-id": true, "x-real-ip": true,
	"x-forwarded-for": true, "x-forwarded-host": true, "x-forwarded-proto": true,
}

// isReservedHeader matches reservedHeaders in any case and with '_' for '-': CGI/WSGI-style
// backends fold "X_Company_ID" into the same variable as "X-Company-ID".
func isReservedHeader(name string) bool {
	return reservedHeaders[strings.ReplaceAll(strings.ToLower(name), "_", "-")]
}

// setUpstreamHeaders removes every reserved client header from h (the outbound copy of in's
// headers) and sets the gateway's own: identity, request id, trace context, X-Forwarded-*.
func setUpstreamHeaders(h http.Header, in *http.Request, info *requestInfo) {
	for k := range h {
		if isReservedHeader(k) {
			delete(h, k)
		}
	}
	// One array holds every value set below: one allocation instead of one per header. Keys
	// are written canonical, as Header.Set would write them.
	vals := make([]string, 0, 8)
	set := func(key, value string) {
		vals = append(vals, value)
		h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	// Only values from the verified token; the auth route gets none.
	if id, ok := identityFrom(in.Context()); ok {
		if id.UserID != "" {
			set("X-User-Id", id.UserID)
		}
		if id.CompanyID != "" {
			set("X-Company-Id", id.CompanyID)
		}
		if id.Email != "" {
			set("X-User-Email", id.Email)
		}
	}
	if info.ID != "" {
		set(hdrRequestID, info.ID)
	}
	if info.TraceParent != "" {
		// The client's tracestate belongs to its trace; with its traceparent replaced it must go.
		if !info.KeepTraceState {
			delete(h, "Tracestate")
		}
		set(hdrTraceParent, info.TraceParent)
	}

	trusted := info.PeerTrusted
	if peer, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		// Only a trusted proxy's chain is kept; anyone else's is an unchecked claim.
		if prior := in.Header.Values("X-Forwarded-For"); trusted && len(prior) > 0 {
			set("X-Forwarded-For", strings.Join(prior, ", ")+", "+peer)
		} else {
			set("X-Forwarded-For", peer)
		}
	}
	if in.Host != "" {
		set("X-Forwarded-Host", in.Host)
	}
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	if trusted {
		// A trusted TLS-terminating proxy knows the scheme the browser used.
		switch v := in.Header.Get("X-Forwarded-Proto"); {
		case strings.EqualFold(v, "https"):
			proto = "https"
		case strings.EqualFold(v, "http"):
			proto = "http"
		}
	}
	set("X-Forwarded-Proto", proto)
}

// modifyResponse records the upstream status; everything else passes through unchanged.
func (p *proxy) modifyResponse(res *http.Response) error {
	requestInfoFrom(res.Request.Context()).UpstreamStatus = res.StatusCode
	if res.StatusCode == http.StatusSwitchingProtocols {
		// The gateway never asks for one (refuseTunnel); failing also closes the connection.
		return errUnrequestedUpgrade
	}
	return nil // CORS headers are the middleware's (setCORSHeaders), whatever the backend sent
}

// Upstream failure kinds, as counted in gateway_upstream_errors_total{kind}.
const (
	kindUnavailable   = "unavailable"
	kindTimeout       = "timeout"
	kindBadResponse   = "bad_response"
	kindClientGone    = "client_gone"
	kindBusy          = "busy"           // no upstream connection free within GATEWAY_UPSTREAM_QUEUE_WAIT
	kindClientStalled = "client_stalled" // the request body stopped for GATEWAY_PROXY_IDLE_TIMEOUT
)

// statusClientClosedRequest (nginx's 499) is recorded, never sent, when the client left first.
const statusClientClosedRequest = 499

// classifyUpstreamError returns the kind counted in metrics and the answer (nil: none).
func classifyUpstreamError(ctx context.Context, err error) (kind string, answer *apiError) {
	var bodyErr *clientBodyError
	if errors.As(err, &bodyErr) && errors.Is(err, os.ErrDeadlineExceeded) {
		// net/http cancelled the context too, but the client is still there.
		return kindClientStalled, newError(http.StatusRequestTimeout, codeRequestTimeout, "Request body stalled")
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return kindClientGone, nil
	}
	if errors.Is(err, errUpstreamBusy) {
		return kindBusy, &apiError{status: http.StatusServiceUnavailable, code: codeUpstreamBusy,
			detail: "Upstream service busy; try again shortly", retryAfter: "1"}
	}
	if errors.As(err, &bodyErr) {
		// Usually the client is gone; if not, its body was cut short or malformed.
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return kindClientGone, newError(http.StatusRequestEntityTooLarge, codeBodyTooLarge, "Request body too large")
		}
		return kindClientGone, newError(http.StatusBadRequest, codeValidation, "Invalid request body")
	}
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) || (errors.As(err, &opErr) && opErr.Op == "dial") {
		// Refused, unreachable, unresolvable or dial timeout: the service is not there.
		return kindUnavailable, newError(http.StatusServiceUnavailable, codeUpstreamUnavailable, "Upstream service unavailable")
	}
	var netErr net.Error
	if (errors.As(err, &netErr) && netErr.Timeout()) || errors.Is(err, context.DeadlineExceeded) ||
		strings.Contains(err.Error(), "timeout awaiting response headers") {
		return kindTimeout, newError(http.StatusGatewayTimeout, codeUpstreamTimeout, "Upstream service timed out")
	}
	return kindBadResponse, newError(http.StatusBadGateway, codeUpstreamError, "Bad gateway")
}

// errorHandler logs and answers a failed round trip (without its cause); r is the outbound request.
func (p *proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	info := requestInfoFrom(ctx)
	if errors.Is(err, errCompanyInflight) && ctx.Err() == nil {
		// The company's own cap, not an upstream failure.
		p.m.rateLimitRejection("company_inflight")
		writeAPIError(w, r, nil, &apiError{status: http.StatusTooManyRequests, code: codeRateLimited,
			detail: "Too many requests in progress for this company; retry shortly", retryAfter: "1"})
		return
	}
	if cb, ok := r.Body.(*clientBody); ok {
		if cerr := cb.failed.Load(); cerr != nil && errors.Is(cerr, os.ErrDeadlineExceeded) {
			err = cerr // the idle timeout cut the body
		}
	}
	kind, answer := classifyUpstreamError(ctx, err)
	p.m.upstreamError(p.up.name, kind)

	level := slog.LevelWarn
	switch kind {
	case kindClientGone:
		// The client's doing, not the upstream's: no alert-worthy level.
		level = slog.LevelDebug
		info.UpstreamStatus = statusClientClosedRequest
	case kindClientStalled:
		// Worth seeing when it is an attack; the rest of the body is never coming.
		level = slog.LevelInfo
		w.Header().Set("Connection", "close")
	case kindBadResponse:
		level = slog.LevelError
	}
	if p.log.Enabled(ctx, level) {
		// Never headers: they carry tokens and identities.
		p.log.LogAttrs(ctx, level, "upstream request failed", slog.String("request_id", info.ID),
			slog.String("upstream", p.up.name), slog.String("method", r.Method), slog.String("path", r.URL.EscapedPath()),
			slog.String("kind", kind), slog.String("error", err.Error()))
	}
	if answer != nil {
		writeAPIError(w, r, nil, answer)
	}
}
