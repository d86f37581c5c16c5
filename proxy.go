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

// newUpstreamTransport returns the one http.Transport every proxy shares, so keep-alive
// connections are pooled per process rather than per route.
func newUpstreamTransport(cfg *Config) *http.Transport {
	// An upstream that does not accept a connection within 5 s is down, not slow: fail fast
	// with a 503 rather than holding the client for the whole header timeout.
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	// HTTP/1.1 only: the upstreams are plain in-cluster services, and one protocol keeps
	// streaming and error behaviour predictable.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &http.Transport{
		// Never honour HTTP_PROXY/HTTPS_PROXY from the environment: upstream traffic carries
		// identity headers and must go straight to the configured services.
		Proxy:       nil,
		DialContext: dialer.DialContext,
		Protocols:   &protocols,
		// Go's default keeps only 2 idle connections per host: under load every further
		// request would open (and soon close) a connection, piling up TIME_WAIT sockets.
		MaxConnsPerHost:     cfg.MaxConnsPerHost,
		MaxIdleConnsPerHost: cfg.MaxIdleConnsPerHost,
		// Three upstreams (ingest, query, auth) plus headroom; the per-host cap is the real
		// limit, this one only must not undercut it (0 would mean unlimited).
		MaxIdleConns:    4 * max(cfg.MaxIdleConnsPerHost, 2),
		IdleConnTimeout: 90 * time.Second,
		// Only the wait for response headers is bounded: a streamed answer (SSE) or a slow
		// download may legitimately last much longer than this.
		ResponseHeaderTimeout: cfg.HTTPClientTimeout,
		// The same bound the gateway's own server puts on request headers; Go's default
		// would let an upstream make the gateway buffer 10 MiB of headers per response.
		MaxResponseHeaderBytes: 64 << 10,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		// Bodies pass through byte for byte: asking for gzip and decompressing would change
		// what the client receives and cost CPU for nothing.
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

// upstreamGate is the RoundTripper every proxy uses: the shared transport behind two
// admission checks that keep one client or tenant from taking the upstream pool.
//
//   - Each upstream host has as many slots as the transport has connections for it
//     (GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS). A request waits at most queueWait for one,
//     then fails with errUpstreamBusy (503): http.Transport itself would queue it for as
//     long as its client stays, so trickling uploads that hold every connection would
//     stall everyone else without bound.
//   - Each company may hold at most companyMax slots at once (errCompanyInflight, 429),
//     so the slots one tenant's slow requests hold are never all of them.
//
// A slot is held from the round trip until the response body is closed, which is when
// ReverseProxy is done streaming it; that is exactly when the connection is free again.
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
		// Entries are never removed: company ids come only from tokens the gateway signed,
		// so they number the companies in the database.
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
		<-slots
		if company != nil {
			company.Add(-1)
		}
		return nil, err
	}
	res.Body = &gatedBody{ReadCloser: res.Body, slots: slots, company: company}
	return res, nil
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
		<-b.slots
		if b.company != nil {
			b.company.Add(-1)
		}
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
	cfg  *Config
	log  *slog.Logger
	m    *metrics
	rp   *httputil.ReverseProxy

	// idle cuts a request body or a response that moves no byte for this long (0 = never).
	idle time.Duration
	// forwardCredentials passes the client's Authorization and Cookie on to backends that
	// get identity headers; by default they are removed there (see rewrite).
	forwardCredentials bool
}

// bufPool lends the 32 KiB copy buffers of every proxy, so streaming a response costs no
// allocation per request.
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

// newProxy returns the handler forwarding up's route. It panics on a malformed upstream: that
// is a wiring mistake caught at start, never a request-time condition.
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
	p := &proxy{up: up, base: base, cfg: cfg, log: log, m: m, idle: cfg.ProxyIdleTimeout, forwardCredentials: cfg.ForwardCredentials}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      transport,
		BufferPool:     bufPool,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		// FlushInterval 0: ReverseProxy already flushes text/event-stream and bodies of
		// unknown length after every write; known-length bodies flow through the response
		// writer's buffer as they arrive.
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
	// Go's HTTP/1 server otherwise drains the unread request body before the first response
	// write, so a POST answered with SSE while its body is still open would stall. HTTP/2 is
	// full duplex already and reports ErrNotSupported, which is fine to ignore.
	_ = http.NewResponseController(w).EnableFullDuplex()
	if p.idle > 0 {
		w = newIdleStream(w, r, p.idle)
	}
	// With full duplex on, a body the transport never read (an upstream that refused the
	// connection) is closed by the server while a read of it may still be pending, which
	// net/http reports as a panic (golang/go#68560); closing it here first avoids that.
	defer r.Body.Close()
	p.rp.ServeHTTP(w, r)
}

// proxyAllowedMethods is the Allow header of a refused CONNECT or TRACE.
const proxyAllowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// refuseTunnel answers (and reports true for) what a backend must never be asked for:
// CONNECT, which would turn the gateway into a tunnel to wherever the backend connects;
// TRACE, which echoes the request, identity headers and credentials included; and protocol
// upgrades (Connection: upgrade with an Upgrade header, such as websocket or h2c), after
// which the gateway would see neither requests nor identities on that connection. Nothing
// the frontend uses needs them. A stray Upgrade header without Connection: upgrade is no
// upgrade: ReverseProxy drops it as the hop-by-hop header it is.
func refuseTunnel(w http.ResponseWriter, r *http.Request) bool {
	switch r.Method {
	case http.MethodConnect, http.MethodTrace:
		w.Header().Set("Allow", proxyAllowedMethods)
		writeError(w, r, http.StatusMethodNotAllowed, codeMethodNotAllowed, "Method Not Allowed")
		return true
	}
	if len(r.Header["Upgrade"]) > 0 && headerHasToken(r.Header["Connection"], "upgrade") {
		w.Header().Set("Connection", "close")
		writeError(w, r, http.StatusBadRequest, codeValidation, "Protocol upgrades are not supported")
		return true
	}
	return false
}

// headerHasToken reports whether the comma-separated values hold token, in any letter case.
func headerHasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.Trim(item, " \t"), token) {
				return true
			}
		}
	}
	return false
}

// idleStream bounds the two ways a client can hold a proxied request without moving it: a
// request body that stops arriving, and a response the client stops reading. Each read of
// the body and each write of the response must make progress within idle, enforced by the
// connection's own read and write deadlines, so nothing runs per byte and a stream that
// keeps moving (an SSE answer, a long upload) is never cut however long it lasts.
//
// Deadlines are moved forward only when fewer than idle remain (to idle+idle/4), so a
// stall is cut between idle and 1.25 x idle after it starts, at the cost of a timer update
// every idle/4 of streaming rather than one per write. One allocation holds it all.
type idleStream struct {
	rc   http.ResponseController
	idle time.Duration
	w    idleWriter
	body idleBody
}

// newIdleStream puts r's body behind the idle timeout (as http.MaxBytesReader is put in
// place) and returns the response writer to use instead of w.
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

// idleWriter is the response side of an idleStream. Its deadline is left in place when the
// handler returns: it also bounds net/http's final flush, and the server clears it before
// the connection's next request.
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

// idleBody is the request-body side of an idleStream.
type idleBody struct {
	io.ReadCloser
	st  *idleStream
	d   idleDeadline
	eof bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	// After EOF net/http reads the connection in the background (to notice a client that
	// leaves) with no deadline; setting one again would end that read and the request's
	// context with it, cutting a response that is still streaming.
	if !b.eof {
		b.st.arm(&b.d, (*http.ResponseController).SetReadDeadline)
	}
	n, err := b.ReadCloser.Read(p)
	b.eof = b.eof || err == io.EOF
	// Any other error leaves the deadline as it is: if it has passed, net/http's attempt to
	// discard the rest of the body fails at once and the connection is closed, instead of
	// waiting on a client that sends nothing.
	return n, err
}

// mapUpstreamPath maps an escaped gateway path to the escaped upstream path: the gateway
// prefix is replaced by the upstream prefix, and the prefix itself without its trailing slash
// maps to the upstream prefix. It refuses (false) any path that is not under the gateway prefix
// or that safePath rejects, so whenever it succeeds the result, unescaped and cleaned, stays
// inside upstreamPrefix.
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

// rejectUnsafePaths answers 400 to any request whose path could climb out of its route or be
// read differently by another server: dot segments, empty segments, backslashes, encoded
// '.', '/', '\' or '%', control bytes. It wraps the whole mux because ServeMux would otherwise
// answer unclean paths with a redirect to the cleaned one, and because no route has a reason
// to accept such a path.
func rejectUnsafePaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !safePath(r.URL.EscapedPath()) {
			writeError(w, r, http.StatusBadRequest, codeInvalidPath, "Invalid request path")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// safePath reports whether the escaped path p is absolute and free of anything that path
// normalisation, by us or by a backend, could turn into a different path:
//   - "." and ".." segments (also "..;x", which some servers read as "..");
//   - empty segments ("//"), which some servers collapse and others treat as a root;
//   - backslashes, which some servers read as '/';
//   - percent-encoded '.', '/', '\' and '%' in any case (%2e%2e, %2f, %5c, double encoding
//     %252e), and malformed escapes;
//   - overlong UTF-8 encodings (%c0%ae), which lax decoders read as ASCII '.' or '/';
//   - control bytes, raw or encoded, and raw bytes that never appear in an escaped path.
//
// Everything else (percent-encoded spaces, UTF-8, reserved sub-delimiters) passes unchanged.
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

// escapedByteAt decodes the "%XX" escape at p[i:], if there is one.
func escapedByteAt(p string, i int) (byte, bool) {
	if i+2 >= len(p) || p[i] != '%' || !isHex(p[i+1]) || !isHex(p[i+2]) {
		return 0, false
	}
	return unhex(p[i+1])<<4 | unhex(p[i+2]), true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// hdrTraceParent is the W3C trace context header in canonical form, as the header map keys it.
const hdrTraceParent = "Traceparent"

// rewrite builds the outbound request. ReverseProxy has already removed hop-by-hop headers
// (including those named in Connection) and the client's Forwarded / X-Forwarded-* headers
// before calling it; Rewrite, unlike Director, runs after that removal, so nothing set here can
// be stripped again by a client naming it in Connection.
func (p *proxy) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	mapped, ok := mapUpstreamPath(in.URL.EscapedPath(), p.up.gatewayPrefix, p.up.upstreamPrefix)
	if !ok {
		// ServeHTTP refused this path already and the mapping is a pure function of it, so
		// this cannot happen; if it ever did, abort rather than send the request anywhere.
		panic(http.ErrAbortHandler)
	}
	target := p.up.target
	out.URL.Scheme = target.Scheme
	out.URL.Host = target.Host
	out.URL.RawPath = p.base + mapped
	out.URL.Path, _ = url.PathUnescape(out.URL.RawPath) // cannot fail: safePath checked every escape
	// The client's query string, byte for byte. ReverseProxy re-encodes queries it cannot
	// parse (against parameter smuggling past a proxy that filters on them); the gateway makes
	// no decision on query parameters, so the backend must see exactly what the client sent.
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
		// The backend trusts the identity headers the gateway just set. The client's token
		// and cookies would only give it a second, unverified identity to confuse with the
		// first (and a token to leak into its logs). Routes without a verified caller (the
		// auth service) keep them: there the backend is the one that checks them.
		delete(out.Header, "Authorization")
		delete(out.Header, "Cookie")
	}
}

// clientBody marks failures to read the client's request body, so that a client hanging up
// mid-upload (or sending a broken chunked body) is not counted as an upstream failure. The
// first failure is kept: when it is the idle timeout, net/http has cancelled the request's
// context too (as on any failed read of the connection), and the transport reports that.
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

// bodyStalled returns the error of out's request body when the idle timeout cut it, else nil.
func bodyStalled(out *http.Request) error {
	if cb, ok := out.Body.(*clientBody); ok {
		if err := cb.failed.Load(); err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
	return nil
}

// reservedHeaders are the client-sent headers that must never reach an upstream: the
// identity and request-id headers only the gateway sets, and the forwarding headers it
// rebuilds.
var reservedHeaders = map[string]bool{
	"x-user-id": true, "x-company-id": true, "x-user-email": true, "x-request-id": true, "x-real-ip": true,
	"x-forwarded-for": true, "x-forwarded-host": true, "x-forwarded-proto": true,
}

// isReservedHeader reports whether name is one of reservedHeaders in any letter case and with
// '_' in place of '-', because some backends (CGI/WSGI-style environments) fold
// "X_Company_ID" into the same variable as "X-Company-ID"; ReverseProxy itself removes only
// the exact X-Forwarded-* names. (net/http refuses header names that are not ASCII tokens, so
// lower-casing cannot fold another character into one of these.)
func isReservedHeader(name string) bool {
	return reservedHeaders[strings.ReplaceAll(strings.ToLower(name), "_", "-")]
}

// setUpstreamHeaders removes every reserved client header from h (the outbound copy of in's
// headers) and sets the gateway's own: identity from the verified token, request id, trace
// context and X-Forwarded-*.
func setUpstreamHeaders(h http.Header, in *http.Request, info *requestInfo) {
	for k := range h {
		if isReservedHeader(k) {
			delete(h, k)
		}
	}
	// Only values from the verified token; the auth route has no identity and gets none, yet
	// the client's forged values were removed above all the same.
	if id, ok := identityFrom(in.Context()); ok {
		if id.UserID != "" {
			h.Set("X-User-Id", id.UserID)
		}
		if id.CompanyID != "" {
			h.Set("X-Company-Id", id.CompanyID)
		}
		if id.Email != "" {
			h.Set("X-User-Email", id.Email)
		}
	}
	if info.ID != "" {
		h.Set(hdrRequestID, info.ID)
	}
	if info.TraceParent != "" {
		// tracestate belongs to the trace the client started; when the client's traceparent
		// was invalid and replaced, its tracestate describes another trace and must go.
		if !info.KeepTraceState {
			delete(h, "Tracestate")
		}
		h.Set(hdrTraceParent, info.TraceParent)
	}

	trusted := info.PeerTrusted
	if peer, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		// A trusted proxy in front of us has already recorded the chain; anyone else's
		// X-Forwarded-For is a claim we cannot check, so the upstream sees only the peer.
		if prior := in.Header.Values("X-Forwarded-For"); trusted && len(prior) > 0 {
			h.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+peer)
		} else {
			h.Set("X-Forwarded-For", peer)
		}
	}
	if in.Host != "" {
		h.Set("X-Forwarded-Host", in.Host)
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
	h.Set("X-Forwarded-Proto", proto)
}

// modifyResponse records the upstream status; everything else passes through unchanged.
func (p *proxy) modifyResponse(res *http.Response) error {
	requestInfoFrom(res.Request.Context()).UpstreamStatus = res.StatusCode
	if res.StatusCode == http.StatusSwitchingProtocols {
		// The gateway never asks for an upgrade (refuseTunnel), so a backend switching
		// protocols anyway is misbehaving; failing here also closes its connection.
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

// statusClientClosedRequest is recorded (never sent) when the client left before the upstream
// answered; the number is the one nginx made conventional.
const statusClientClosedRequest = 499

// classifyUpstreamError decides, in this one place, what a failed round trip means for the
// client: the kind counted in metrics and the answer sent (nil: send nothing). ctx is the
// request's context, which tells a client that left apart from a failing upstream.
func classifyUpstreamError(ctx context.Context, err error) (kind string, answer *apiError) {
	var bodyErr *clientBodyError
	if errors.As(err, &bodyErr) && errors.Is(err, os.ErrDeadlineExceeded) {
		// The idle timeout cut a body that stopped arriving. net/http cancels the request's
		// context on any failed read of the connection, this one included, but the client
		// is still there and gets its answer.
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
		// Usually the client is gone and reads nothing; if it is still there, its body was
		// cut short or malformed.
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return kindClientGone, newError(http.StatusRequestEntityTooLarge, codeBodyTooLarge, "Request body too large")
		}
		return kindClientGone, newError(http.StatusBadRequest, codeValidation, "Invalid request body")
	}
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) || (errors.As(err, &opErr) && opErr.Op == "dial") {
		// Refused, unreachable, unresolvable, or no answer to the dial within its timeout:
		// the service is not there.
		return kindUnavailable, newError(http.StatusServiceUnavailable, codeUpstreamUnavailable, "Upstream service unavailable")
	}
	var netErr net.Error
	if (errors.As(err, &netErr) && netErr.Timeout()) || errors.Is(err, context.DeadlineExceeded) ||
		strings.Contains(err.Error(), "timeout awaiting response headers") {
		return kindTimeout, newError(http.StatusGatewayTimeout, codeUpstreamTimeout, "Upstream service timed out")
	}
	return kindBadResponse, newError(http.StatusBadGateway, codeUpstreamError, "Bad gateway")
}

// errorHandler answers a failed round trip. r is the outbound request: its URL is the mapped
// upstream URL and its context is the client's. The failure is logged here, with its kind, so
// the answer goes out without a cause.
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
	if stalled := bodyStalled(r); stalled != nil {
		err = stalled
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
		// The client's doing too, but worth seeing when it is an attack; the rest of its body
		// is never coming.
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
