// responsewriter.go: the response writer every request is served through.
package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"time"
)

// trackingWriter records status and size, and sets the headers every response carries just
// before they are written.
type trackingWriter struct {
	w           http.ResponseWriter
	start       time.Time
	requestID   string
	corsOrigin  string // allowed Origin of a CORS request; "" for none
	corsDone    bool   // a preflight answer set its own headers
	status      int
	bytes       int64
	wroteHeader bool
	hijacked    bool
	aborted     bool
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

// FlushError keeps the real writer's error for http.ResponseController, which Flush drops.
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

// beforeHeaders sets the gateway's own headers over whatever a handler or an upstream set.
func (t *trackingWriter) beforeHeaders() {
	h := t.w.Header()
	h.Set("X-Request-ID", t.requestID)
	h.Set("X-Process-Time", fmt.Sprintf("%.2fms", float64(time.Since(t.start).Microseconds())/1000))
	if !t.corsDone {
		setCORSHeaders(h, t.corsOrigin)
	}
	// Every response varies by Origin: a cache must not serve one origin's answer to another.
	if !varyHasOrigin(h.Values("Vary")) {
		h.Add("Vary", "Origin")
	}
}
