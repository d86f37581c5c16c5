// middleware.go: recover → request id / traceparent → access log + X-Process-Time → CORS,
// and the one JSON error helper every handler uses.
package main

import (
	"context"
	"encoding/json"
	"net/http"
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

// writeJSON writes v as a JSON response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"detail":"Internal server error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// errorBody is every error the gateway itself produces.
type errorBody struct {
	Detail    string `json:"detail"`
	RequestID string `json:"request_id,omitempty"`
}

// writeError writes {"detail": detail, "request_id": …} with status.
func writeError(w http.ResponseWriter, r *http.Request, status int, detail string) {
	writeJSON(w, status, errorBody{Detail: detail, RequestID: requestInfoFrom(r.Context()).ID})
}
