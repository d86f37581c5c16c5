// accesslog.go: the access log line, request metrics and server span of a finished request.
package main

import (
	"log/slog"
	"net/http"
	"time"
)

// finish records the request once the response is done or aborted.
func (mw *middleware) finish(info *requestInfo, tw *trackingWriter, r *http.Request) {
	d := time.Since(tw.start)
	mw.m.inflightAdd(-1)
	status := tw.status
	if tw.hijacked && !tw.wroteHeader {
		status = http.StatusSwitchingProtocols
	}
	route := r.Pattern
	if route == "" {
		route = "unmatched"
		if tw.corsDone {
			route = "preflight" // answered here; the mux never saw it
		}
	}
	mw.m.observeRequest(route, methodLabel(r.Method), status, d)
	if mw.tracer != nil {
		mw.tracer.endServer(r.Context(), info, route, r, status, tw.aborted)
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
	attrs := []slog.Attr{
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
		slog.Int64("bytes", tw.bytes),
	}
	if info.Upstream != "" {
		attrs = append(attrs, slog.String("upstream", info.Upstream))
	}
	if info.UpstreamStatus != 0 {
		attrs = append(attrs, slog.Int("upstream_status", info.UpstreamStatus))
	}
	if tw.aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	mw.log.LogAttrs(ctx, level, "request", attrs...)
}

// logPath bounds what one request can put in a log line.
func logPath(p string) string {
	const maxLen = 2048
	if len(p) > maxLen {
		return p[:maxLen] + "…"
	}
	return p
}
