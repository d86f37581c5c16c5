// middleware.go: the chain of layers around every request, the request-info contract they
// share with the handlers, and panic recovery.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"time"
)

// requestInfo travels as a pointer in the context: each layer fills in what it learns (IDs:
// requestid.go; client: clientip.go; caller: auth.go and users.go; upstream: proxy.go) and the
// access log reads it. Only the request's own goroutine writes, so no lock is needed.
type requestInfo struct {
	ID             string // X-Request-ID
	TraceParent    string // forwarded upstream
	TraceID        string
	ClientIP       string
	UserID         string
	CompanyID      string
	Upstream       string // upstream name ("ingest", "query", "auth") when proxied
	UpstreamStatus int

	Caller        identity // the verified caller, valid when Authenticated
	Authenticated bool

	PeerTrusted bool // the TCP peer is in GATEWAY_TRUSTED_PROXIES (its X-Forwarded-* count)
	// ClientIsProxy: ClientIP is itself a trusted proxy, so it stands for no one client.
	ClientIsProxy bool

	// KeepTraceState: the client's traceparent was valid, so its tracestate may be forwarded
	// (W3C forbids pairing a vendor's state with another trace).
	KeepTraceState bool
}

type requestInfoKey struct{}

func withRequestInfo(ctx context.Context, info *requestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, info)
}

// requestInfoFrom returns the request's info, or a throwaway one.
func requestInfoFrom(ctx context.Context) *requestInfo {
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return info
	}
	return &requestInfo{}
}

// withTracedMiddleware wraps next in the gateway's layers (see ServeHTTP), with a server span
// per request exported by tr (nil: none). next should be the ServeMux, or pass its request on
// unchanged: metrics and logs read the route from that request's Pattern.
func withTracedMiddleware(next http.Handler, cfg *Config, log *slog.Logger, m *metrics, tr *tracer) http.Handler {
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

// ServeHTTP is the whole chain, outermost layer first.
func (mw *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := &requestInfo{}
	setRequestIDs(info, r, mw.tracer)                                  // requestid.go
	setClientAddr(info, r, mw.trusted, mw.xffWarning)                  // clientip.go
	tw := &trackingWriter{w: w, start: time.Now(), requestID: info.ID} // responsewriter.go
	ctx := withRequestInfo(r.Context(), info)
	if mw.tracer != nil {
		ctx = mw.tracer.startServer(ctx, r, info, tw.start) // trace.go
	}
	r = r.WithContext(ctx)

	mw.m.inflightAdd(1)
	defer mw.finish(info, tw, r) // accesslog.go: metrics, span and access line, even after a panic
	defer mw.recoverPanic(tw, r) // below: a panic becomes a 500
	if mw.cors.handle(tw, r) {   // cors.go: a preflight is answered here
		return
	}
	if len(r.Header["Authorization"]) > 1 {
		// The gateway verifies the first; a backend or logger might read the last, unsigned one.
		writeError(tw, r, http.StatusBadRequest, codeValidation, "More than one Authorization header")
		return
	}
	mw.next.ServeHTTP(tw, r)
	if !tw.wroteHeader && !tw.hijacked {
		// net/http would send the implicit 200 after we return, without our headers.
		tw.WriteHeader(http.StatusOK)
	}
}

// recoverPanic turns a panic in a handler into a logged 500 JSON response.
func (mw *middleware) recoverPanic(tw *trackingWriter, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
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
		// Part of the response is on the wire: only aborting tells the client it is truncated.
		tw.aborted = true
		panic(http.ErrAbortHandler)
	}
	clear(tw.Header()) // whatever the handler had set describes a response that never happened
	tw.corsDone = false
	writeError(tw, r, http.StatusInternalServerError, codeInternal, "Internal server error")
}
