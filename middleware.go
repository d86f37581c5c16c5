// middleware.go: the layers around every request (ids, client IP, access log, timing, recovery, CORS) and JSON errors.
package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// requestInfo travels with a request through every layer; later layers fill in what they
// learn (identity, upstream) and the access log reads it at the end. One per request.
type requestInfo struct {
	ID             string // X-Request-ID (validated client value or generated)
	TraceParent    string // traceparent forwarded upstream
	TraceID        string
	ClientIP       string
	UserID         string
	CompanyID      string
	Upstream       string // upstream name ("ingest", "query", "auth") when proxied
	UpstreamStatus int

	Caller        identity // the verified caller (withIdentity), valid when Authenticated
	Authenticated bool

	PeerTrusted bool // the TCP peer is in GATEWAY_TRUSTED_PROXIES (its X-Forwarded-* count)
	// ClientIsProxy: ClientIP is itself a trusted proxy (the request came from the proxy,
	// or every X-Forwarded-For hop was trusted), so it stands for no one client.
	ClientIsProxy bool

	// KeepTraceState reports that the client's traceparent was valid, so its tracestate
	// belongs to the same trace and may be forwarded untouched. When false the traceparent
	// was replaced by a new trace and the proxy must drop any tracestate header: W3C Trace
	// Context forbids pairing a vendor's state with a trace it does not belong to.
	KeepTraceState bool
}

type requestInfoKey struct{}

func withRequestInfo(ctx context.Context, info *requestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, info)
}

// requestInfoFrom returns the request's info, or a throwaway one so callers never check nil.
func requestInfoFrom(ctx context.Context) *requestInfo {
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return info
	}
	return &requestInfo{}
}

// withMiddleware wraps next (the route mux) in the gateway's cross-cutting layers, outermost
// first: request info (request ID, traceparent, client IP) → access log, X-Process-Time and
// metrics → panic recovery → CORS → next.
//
// next should be the ServeMux itself, or pass the request it receives on unchanged: the
// route pattern for metrics and logs is read from that request's Pattern after next returns.
func withMiddleware(next http.Handler, cfg *Config, log *slog.Logger, m *metrics) http.Handler {
	return withTracedMiddleware(next, cfg, log, m, nil)
}

// withTracedMiddleware is withMiddleware with a server span per request exported by tr (nil:
// no export).
func withTracedMiddleware(next http.Handler, cfg *Config, log *slog.Logger, m *metrics, tr *tracer) http.Handler {
	if cfg == nil {
		cfg = &Config{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &middleware{next: next, log: log, m: m, cors: newCORSPolicy(cfg), trusted: cfg.TrustedProxies, tracer: tr,
		xffWarning: &untrustedProxyWarning{log: log, now: time.Now, every: time.Minute}}
}

type middleware struct {
	next       http.Handler
	log        *slog.Logger
	m          *metrics
	cors       *corsPolicy
	trusted    []netip.Prefix
	tracer     *tracer
	xffWarning *untrustedProxyWarning
}

// reqState is everything the middleware keeps per request, in one allocation.
type reqState struct {
	info requestInfo
	tw   trackingWriter
}

func (mw *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &reqState{}
	st.tw.w = w
	st.tw.start = time.Now()
	st.tw.cors = mw.cors
	mw.fillInfo(&st.info, r)
	st.tw.requestID = st.info.ID
	ctx := withRequestInfo(r.Context(), &st.info)
	if mw.tracer != nil {
		ctx = mw.tracer.startServer(ctx, r, &st.info, st.tw.start)
	}
	r2 := r.WithContext(ctx)

	mw.m.inflightAdd(1)
	defer mw.finish(st, r2)
	mw.serve(&st.tw, r2)
}

// fillInfo sets the request ID, trace context and client IP of info from r.
func (mw *middleware) fillInfo(info *requestInfo, r *http.Request) {
	// The new traceparent and, when needed, a generated request ID share one string.
	var buf [traceParentLen + 32]byte
	b := append(buf[:0], "00-"...)
	traceID, flags := "", "01"
	if tp := r.Header["Traceparent"]; len(tp) == 1 { // several traceparent lines are invalid
		if id, _, fl, ok := parseTraceParent(tp[0]); ok {
			traceID, flags = id, fl
			info.KeepTraceState = true
		}
	}
	if traceID == "" && mw.tracer != nil {
		flags = mw.tracer.rootFlags() // a trace this gateway starts is sampled by its ratio
	}
	if traceID != "" {
		b = append(b, traceID...)
	} else {
		b = appendRandomHex(b, 2)
	}
	b = append(b, '-')
	b = appendRandomHex(b, 1) // this hop's span id
	b = append(b, '-')
	b = append(b, flags...)

	clientID := ""
	if v := r.Header["X-Request-Id"]; len(v) == 1 && validRequestID(v[0]) {
		clientID = v[0]
	} else {
		b = appendRandomHex(b, 2)
	}
	s := string(b)
	info.TraceParent = s[:traceParentLen]
	info.TraceID = s[3:35]
	if clientID != "" {
		info.ID = clientID
	} else {
		info.ID = s[traceParentLen:]
	}

	xff := r.Header["X-Forwarded-For"]
	info.PeerTrusted = peerTrusted(r.RemoteAddr, mw.trusted)
	if !info.PeerTrusted {
		if len(xff) > 0 {
			mw.xffWarning.observe(r.RemoteAddr)
		}
		xff = nil // never believed from an untrusted peer
	}
	client := clientIP(r.RemoteAddr, xff, mw.trusted)
	info.ClientIP = addrText(client, r.RemoteAddr)
	info.ClientIsProxy = info.PeerTrusted && inPrefixes(client, mw.trusted)
}

// untrustedProxyWarning says, at most once per every, that a peer in a private or loopback
// range sent X-Forwarded-For without being a trusted proxy. That is what a gateway behind an
// ingress looks like when GATEWAY_TRUSTED_PROXIES is missing: every client then has the
// ingress's address, so the login limits count everyone's failures against one key and one
// attacker locks every user out. A public peer sending the header is just a client forging
// it, which is ignored without comment.
type untrustedProxyWarning struct {
	log   *slog.Logger
	now   func() time.Time
	every time.Duration
	next  atomic.Int64 // unix nanoseconds before which nothing more is logged
}

func (u *untrustedProxyWarning) observe(remoteAddr string) {
	peer, ok := parseIPEntry(remoteAddr, true)
	if !ok || !(peer.IsPrivate() || peer.IsLoopback()) {
		return
	}
	now := u.now().UnixNano()
	next := u.next.Load()
	if now < next || !u.next.CompareAndSwap(next, now+int64(u.every)) {
		return
	}
	u.log.LogAttrs(context.Background(), slog.LevelWarn,
		"X-Forwarded-For from a private address that is not in GATEWAY_TRUSTED_PROXIES: "+
			"the header is ignored and login limits are keyed on that proxy's address, so one client's failures "+
			"lock out everyone behind it; add the proxy's range to GATEWAY_TRUSTED_PROXIES",
		slog.String("peer", peer.String()),
		slog.String("setting", "GATEWAY_TRUSTED_PROXIES"),
		slog.String("header", "X-Forwarded-For"),
	)
}

// appendRandomHex appends n random non-zero 64-bit words as 16 lower-case hex digits each.
// math/rand/v2's global source is ChaCha8 seeded by the runtime: unpredictable enough for
// request and trace IDs, and it needs no system call or lock.
func appendRandomHex(b []byte, n int) []byte {
	const hexDigits = "0123456789abcdef"
	for range n {
		v := rand.Uint64() | 1 // never all zeros, which W3C forbids for trace and span ids
		for shift := 60; shift >= 0; shift -= 4 {
			b = append(b, hexDigits[(v>>shift)&0xf])
		}
	}
	return b
}

// serve is the panic-recovery layer around CORS and next.
func (mw *middleware) serve(tw *trackingWriter, r *http.Request) {
	defer mw.recoverPanic(tw, r)
	if mw.cors.handle(tw, r) {
		return
	}
	if len(r.Header["Authorization"]) > 1 {
		// Which one counts would be up to each reader: the gateway verifies the first, a
		// backend or a logger might take the last — an unsigned token with claims of the
		// sender's choosing. No client has a reason to send two.
		writeError(tw, r, http.StatusBadRequest, codeValidation, "More than one Authorization header")
		return
	}
	mw.next.ServeHTTP(tw, r)
	if !tw.wroteHeader && !tw.hijacked {
		// net/http would send the implicit 200 after we return, without our headers.
		tw.WriteHeader(http.StatusOK)
	}
}

// recoverPanic turns a panic in a handler into a logged 500 JSON response. The server keeps
// serving either way: net/http recovers per connection, this only makes the answer useful.
func (mw *middleware) recoverPanic(tw *trackingWriter, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		// net/http's own way to abort a response: let it close the connection quietly.
		tw.aborted = true
		panic(v)
	}
	mw.log.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
		slog.String("request_id", tw.requestID),
		slog.String("method", r.Method),
		slog.String("path", logPath(r.URL.Path)),
		slog.String("panic", fmt.Sprint(v)),
		slog.String("stack", string(debug.Stack())),
	)
	if tw.hijacked {
		return
	}
	if tw.wroteHeader {
		// Part of the response is on the wire. Finishing it normally would tell the client a
		// truncated body is complete; aborting the connection tells it the truth.
		tw.aborted = true
		panic(http.ErrAbortHandler)
	}
	clear(tw.Header()) // whatever the handler had set describes a response that never happened
	tw.corsDone = false
	writeError(tw, r, http.StatusInternalServerError, codeInternal, "Internal server error")
}

// finish records the request in metrics and the access log once the response is done (or
// aborted).
func (mw *middleware) finish(st *reqState, r *http.Request) {
	d := time.Since(st.tw.start)
	mw.m.inflightAdd(-1)
	status := st.tw.status
	if st.tw.hijacked && !st.tw.wroteHeader {
		status = http.StatusSwitchingProtocols
	}
	route := r.Pattern
	if route == "" {
		route = "unmatched"
		if st.tw.corsDone {
			route = "preflight" // answered here; the mux never saw it
		}
	}
	mw.m.observeRequest(route, methodLabel(r.Method), status, d)
	if mw.tracer != nil {
		mw.tracer.endServer(r.Context(), &st.info, route, r, status, st.tw.aborted)
	}

	level := slog.LevelInfo
	switch {
	case r.URL.Path == "/health" || r.URL.Path == "/livez" || r.URL.Path == "/readyz":
		level = slog.LevelDebug // probes every few seconds would drown the real traffic
	case status >= 500:
		level = slog.LevelError
	}
	ctx := r.Context()
	if !mw.log.Enabled(ctx, level) {
		return
	}
	info := &st.info
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("request_id", info.ID),
		slog.String("method", r.Method),
		// The path only: the query string may carry secrets (tokens in links, signed URLs).
		slog.String("path", logPath(r.URL.Path)),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("client_ip", info.ClientIP),
		slog.String("user_id", info.UserID),
		slog.String("company_id", info.CompanyID),
		slog.String("trace_id", info.TraceID),
		slog.Int64("bytes", st.tw.bytes),
	)
	if info.Upstream != "" {
		attrs = append(attrs, slog.String("upstream", info.Upstream))
	}
	if info.UpstreamStatus != 0 {
		attrs = append(attrs, slog.Int("upstream_status", info.UpstreamStatus))
	}
	if st.tw.aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	// A record without a caller PC: slog's usual runtime.Callers is measurable per request
	// and the access log has no use for the source line.
	rec := slog.NewRecord(time.Now(), level, "request", 0)
	rec.AddAttrs(attrs...)
	mw.log.Handler().Handle(ctx, rec)
}

// logPath bounds what one request can put in a log line.
func logPath(p string) string {
	const maxLen = 2048
	if len(p) > maxLen {
		return p[:maxLen] + "…"
	}
	return p
}

// methodLabel keeps the metrics' method label bounded: clients may send any token.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// trackingWriter records status and size, and sets the headers every response carries just
// before they are written. Unwrap lets http.ResponseController reach the real writer.
type trackingWriter struct {
	w           http.ResponseWriter
	start       time.Time
	cors        *corsPolicy
	requestID   string
	corsOrigin  string // allowed Origin of an actual CORS request; "" = send no CORS headers
	corsDone    bool   // the CORS layer answered a preflight with its own headers
	status      int
	bytes       int64
	wroteHeader bool
	hijacked    bool
	aborted     bool

	// Backing arrays for the header values set on every response: a map entry needs a
	// []string, and these save allocating one per header.
	hdr [6]string
}

func (t *trackingWriter) Header() http.Header { return t.w.Header() }

func (t *trackingWriter) WriteHeader(code int) {
	if t.wroteHeader || t.hijacked {
		return // superfluous: the first status stands
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		t.w.WriteHeader(code) // informational; the final header is still to come
		return
	}
	t.beforeHeaders()
	t.w.WriteHeader(code) // panics on an invalid code: recovery then still sees headers unsent
	t.wroteHeader = true
	t.status = code
}

func (t *trackingWriter) Write(p []byte) (int, error) {
	if !t.wroteHeader && !t.hijacked {
		t.WriteHeader(http.StatusOK)
	}
	n, err := t.w.Write(p)
	t.bytes += int64(n)
	return n, err
}

// FlushError is what http.ResponseController.Flush looks for first; it keeps the real
// writer's error, which a plain Flush would drop.
func (t *trackingWriter) FlushError() error {
	if !t.wroteHeader && !t.hijacked {
		t.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(t.w).Flush()
}

func (t *trackingWriter) Flush() { _ = t.FlushError() }

// Hijack is implemented (rather than left to Unwrap) so the log knows the connection left
// net/http and no headers must be written after the handler returns.
func (t *trackingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(t.w).Hijack()
	if err == nil {
		t.hijacked = true
	}
	return conn, rw, err
}

func (t *trackingWriter) Unwrap() http.ResponseWriter { return t.w }

// Canonical header keys, used to index the header map directly.
const (
	hdrRequestID     = "X-Request-Id"
	hdrProcessTime   = "X-Process-Time"
	hdrVary          = "Vary"
	hdrAllowOrigin   = "Access-Control-Allow-Origin"
	hdrAllowCreds    = "Access-Control-Allow-Credentials"
	hdrExposeHeaders = "Access-Control-Expose-Headers"
	hdrAllowMethods  = "Access-Control-Allow-Methods"
	hdrAllowHeaders  = "Access-Control-Allow-Headers"
	hdrMaxAge        = "Access-Control-Max-Age"
)

// beforeHeaders sets X-Request-ID, X-Process-Time, the CORS headers and Vary. It overwrites
// whatever a handler or an upstream set for these: the gateway's answer is the one that
// counts, and an upstream's own CORS headers would otherwise duplicate or contradict ours.
func (t *trackingWriter) beforeHeaders() {
	h := t.w.Header()
	t.hdr[0] = t.requestID
	h[hdrRequestID] = t.hdr[0:1:1]

	var buf [24]byte
	ms := float64(time.Since(t.start).Microseconds()) / 1000
	t.hdr[1] = string(append(strconv.AppendFloat(buf[:0], ms, 'f', 2, 64), "ms"...))
	h[hdrProcessTime] = t.hdr[1:2:2]

	if !t.corsDone {
		delete(h, hdrAllowOrigin)
		delete(h, hdrAllowCreds)
		delete(h, hdrExposeHeaders)
		delete(h, hdrAllowMethods)
		delete(h, hdrAllowHeaders)
		delete(h, hdrMaxAge)
		if t.corsOrigin != "" {
			t.hdr[2], t.hdr[3], t.hdr[4] = t.corsOrigin, "true", "X-Request-ID, X-Process-Time"
			h[hdrAllowOrigin] = t.hdr[2:3:3]
			h[hdrAllowCreds] = t.hdr[3:4:4]
			h[hdrExposeHeaders] = t.hdr[4:5:5]
		}
	}

	// Every response varies by Origin: a cache must not serve one origin's answer to another.
	if v := h[hdrVary]; len(v) == 0 {
		t.hdr[5] = "Origin"
		h[hdrVary] = t.hdr[5:6:6]
	} else if !varyHasOrigin(v) {
		h[hdrVary] = append(v, "Origin")
	}
}

// varyHasOrigin reports whether the Vary values already cover Origin.
func varyHasOrigin(values []string) bool {
	for _, v := range values {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			item = strings.Trim(item, " \t")
			if item == "*" || strings.EqualFold(item, "Origin") {
				return true
			}
		}
	}
	return false
}

// validRequestID accepts 1–128 visible ASCII characters (0x21–0x7E): enough for any UUID or
// tracing ID, nothing that could split a header or a log line.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// traceParentLen is the length of a version-00 traceparent.
const traceParentLen = 55

// parseTraceParent parses a W3C Trace Context (level 1) traceparent header
// "version-traceid-parentid-flags". Version 00 must be exactly 55 characters; a later
// version may append "-…" fields, which are ignored. Version ff, upper-case hex and all-zero
// ids are invalid.
func parseTraceParent(s string) (traceID, parentID, flags string, ok bool) {
	if len(s) < traceParentLen || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return "", "", "", false
	}
	version := s[:2]
	if !isLowerHex(version) || version == "ff" {
		return "", "", "", false
	}
	if len(s) > traceParentLen && (version == "00" || s[traceParentLen] != '-') {
		return "", "", "", false
	}
	traceID, parentID, flags = s[3:35], s[36:52], s[53:55]
	if !isLowerHex(traceID) || allZeros(traceID) || !isLowerHex(parentID) || allZeros(parentID) ||
		!isLowerHex(flags) {
		return "", "", "", false
	}
	return traceID, parentID, flags, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func allZeros(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// clientIP is the address rate limits and logs attribute a request to. It is the TCP peer,
// unless the peer is one of our trusted proxies: then X-Forwarded-For (every line,
// comma-separated) is walked from the right, past the trusted proxies, and the first
// untrusted entry is the client. Everything left of it may be forged by the client, so it
// is never read. An unparseable entry stops the walk at the last trusted hop; if every entry
// is trusted the left-most one is returned. X-Forwarded-For from an untrusted peer is
// ignored. IPv4-mapped IPv6 addresses are unmapped and zones dropped so one client has one
// key. The zero Addr means the peer address itself is unparseable.
func clientIP(remoteAddr string, xff []string, trusted []netip.Prefix) netip.Addr {
	peer, ok := parseIPEntry(remoteAddr, true)
	if !ok || !inPrefixes(peer, trusted) {
		return peer
	}
	last := peer
	for i := len(xff) - 1; i >= 0; i-- {
		rest := xff[i]
		for {
			j := strings.LastIndexByte(rest, ',')
			if entry := strings.Trim(rest[j+1:], " \t"); entry != "" { // empty list items are legal
				a, ok := parseIPEntry(entry, false)
				if !ok {
					return last
				}
				if !inPrefixes(a, trusted) {
					return a
				}
				last = a
			}
			if j < 0 {
				break
			}
			rest = rest[:j]
		}
	}
	return last
}

// parseIPEntry parses an address with or without a port ("1.2.3.4", "1.2.3.4:80", "::1",
// "[::1]", "[::1]:80"). portFirst tries the host:port form first, which is what RemoteAddr
// holds; a failed netip parse allocates its error, so the likely form goes first.
func parseIPEntry(s string, portFirst bool) (netip.Addr, bool) {
	var a netip.Addr
	if portFirst {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			a = ap.Addr()
		} else if a, err = netip.ParseAddr(s); err != nil {
			return netip.Addr{}, false
		}
	} else {
		var err error
		if a, err = netip.ParseAddr(s); err != nil {
			if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
				a, err = netip.ParseAddr(s[1 : len(s)-1])
			} else if strings.IndexByte(s, ':') >= 0 {
				var ap netip.AddrPort
				ap, err = netip.ParseAddrPort(s)
				a = ap.Addr()
			}
			if err != nil {
				return netip.Addr{}, false
			}
		}
	}
	return a.Unmap().WithZone(""), true
}

// peerTrusted reports whether the TCP peer is one of the trusted proxies: the one place that
// decides whether a client's X-Forwarded-* headers may be believed.
func peerTrusted(remoteAddr string, trusted []netip.Prefix) bool {
	if len(trusted) == 0 {
		return false
	}
	peer, ok := parseIPEntry(remoteAddr, true)
	return ok && inPrefixes(peer, trusted)
}

func inPrefixes(a netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// addrText is a.String(), reusing the host text of remoteAddr when it is already canonical
// (the usual case) instead of allocating a new string.
func addrText(a netip.Addr, remoteAddr string) string {
	if !a.IsValid() {
		return ""
	}
	var buf [64]byte
	b := a.AppendTo(buf[:0])
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil && string(b) == host {
		return host
	}
	return string(b)
}

// corsPolicy decides which browser origins may call the gateway with credentials.
type corsPolicy struct {
	origins map[string]struct{}
	// previewPrefix is "https://<project>-" when VercelFrontendURL is https://<project>.vercel.app,
	// so that project's preview deployments are allowed; "" otherwise.
	previewPrefix string
	// previewSuffix is what a preview origin ends with: ".vercel.app", or
	// "-<team>.vercel.app" when CORSVercelTeam is set. Vercel names previews
	// <project>-<hash>-<team> and <project>-git-<branch>-<team>; without the team, any
	// Vercel account can deploy a project whose name starts with ours.
	previewSuffix string
}

const vercelAppSuffix = ".vercel.app"

// newCORSPolicy builds the allowed origins of SPEC §4 and §8: http://localhost:3000…3009 when
// CORSAllowLocalhost, VercelFrontendURL, its preview deployments (of CORSVercelTeam when
// set), and CORSAllowedOrigins.
func newCORSPolicy(cfg *Config) *corsPolicy {
	p := &corsPolicy{origins: make(map[string]struct{}), previewSuffix: vercelAppSuffix}
	if cfg.CORSVercelTeam != "" {
		p.previewSuffix = "-" + cfg.CORSVercelTeam + vercelAppSuffix
	}
	if cfg.CORSAllowLocalhost {
		for port := 3000; port <= 3009; port++ {
			p.origins["http://localhost:"+strconv.Itoa(port)] = struct{}{}
		}
	}
	add := func(o string) {
		o = strings.TrimSuffix(strings.TrimSpace(o), "/") // a browser's Origin never ends in '/'
		// "null" is what sandboxed iframes and file:// pages send; allowing it with
		// credentials would let any such page in.
		if o != "" && o != "null" {
			p.origins[o] = struct{}{}
		}
	}
	add(cfg.VercelFrontendURL)
	for _, o := range cfg.CORSAllowedOrigins {
		add(o)
	}

	vercel := strings.TrimSuffix(strings.TrimSpace(cfg.VercelFrontendURL), "/")
	if rest, ok := strings.CutPrefix(vercel, "https://"); ok {
		if project, ok := strings.CutSuffix(rest, vercelAppSuffix); ok && validDNSLabel(project) &&
			len(project) <= 61 { // room for "-" and at least one suffix character
			p.previewPrefix = "https://" + project + "-"
		}
	}
	return p
}

// allowed reports whether origin (the Origin header, verbatim) may make credentialed requests.
// Matching is exact: a configured origin, or the whole string is the preview-deployment shape
// https://<project>-<suffix>.vercel.app with one DNS label before .vercel.app. Note that the
// shape itself is what SPEC asks for: any Vercel project named "<project>-…" matches it.
func (p *corsPolicy) allowed(origin string) bool {
	if _, ok := p.origins[origin]; ok {
		return true
	}
	if p.previewPrefix == "" {
		return false
	}
	host, ok := strings.CutPrefix(origin, "https://")
	if !ok {
		return false
	}
	label, ok := strings.CutSuffix(host, vercelAppSuffix)
	if !ok || !strings.HasPrefix(origin, p.previewPrefix) || !strings.HasSuffix(origin, p.previewSuffix) ||
		len(label) > 63 || !validDNSLabel(label) {
		return false
	}
	// Something between the project and the suffix, and prefix and suffix not overlapping.
	return len(origin) > len(p.previewPrefix)+len(p.previewSuffix)
}

// validDNSLabel: one or more [a-z0-9-], not starting or ending with '-'. Lower case only:
// browsers send the host lower-cased, so anything else is not a browser's Origin.
func validDNSLabel(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// corsAllowedMethods is what a preflight may ask for.
const corsAllowedMethods = "GET, POST, PUT, PATCH, DELETE, OPTIONS"

// handle is the CORS layer. It answers a preflight itself (reporting true): preflights never
// reach a backend and never need a token. For any other request it notes an allowed Origin
// so beforeHeaders adds the CORS headers to whatever response follows.
func (p *corsPolicy) handle(tw *trackingWriter, r *http.Request) bool {
	originValues := r.Header["Origin"]
	if len(originValues) == 0 {
		return false
	}
	origin := ""
	if len(originValues) == 1 { // several Origin lines are not from a browser: allow none
		origin = originValues[0]
	}
	reqMethod, isPreflight := r.Header["Access-Control-Request-Method"]
	if r.Method != http.MethodOptions || !isPreflight {
		if origin != "" && p.allowed(origin) {
			tw.corsOrigin = origin
		}
		return false
	}

	tw.corsDone = true
	h := tw.Header()
	h.Set(hdrVary, "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	if origin == "" || !p.allowed(origin) {
		writeError(tw, r, http.StatusBadRequest, codeCORSRejected, "Disallowed CORS origin")
		return true
	}
	if len(reqMethod) != 1 || !corsMethodAllowed(reqMethod[0]) {
		writeError(tw, r, http.StatusBadRequest, codeCORSRejected, "Disallowed CORS method")
		return true
	}
	reqHeaders := r.Header["Access-Control-Request-Headers"]
	if !validTokenList(reqHeaders) {
		writeError(tw, r, http.StatusBadRequest, codeCORSRejected, "Disallowed CORS headers")
		return true
	}
	h.Set(hdrAllowOrigin, origin)
	h.Set(hdrAllowCreds, "true")
	h.Set(hdrAllowMethods, corsAllowedMethods)
	if allowHeaders := strings.Join(reqHeaders, ", "); strings.Trim(allowHeaders, " \t,") != "" {
		h.Set(hdrAllowHeaders, allowHeaders)
	}
	h.Set(hdrMaxAge, "600")
	tw.WriteHeader(http.StatusNoContent)
	return true
}

// corsMethodAllowed matches exactly: browsers upper-case the standard methods themselves,
// and "patch" is not PATCH to them either.
func corsMethodAllowed(m string) bool {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodOptions:
		return true
	}
	return false
}

// validTokenList reports whether values form a comma-separated list of RFC 9110 tokens
// (header names), with optional spaces and tabs around items; empty items are allowed.
func validTokenList(values []string) bool {
	for _, v := range values {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			item = strings.Trim(item, " \t")
			for i := 0; i < len(item); i++ {
				if !isTokenChar(item[i]) {
					return false
				}
			}
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
