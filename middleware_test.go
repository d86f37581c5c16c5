// middleware_test.go: the request layers of middleware.go, exercised through withMiddleware.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// lockedBuffer collects log output written from server goroutines (syncBuffer) and decodes
// its JSON lines.
type lockedBuffer struct{ syncBuffer }

func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, line)
		}
		out = append(out, m)
	}
	return out
}

// waitLines waits until n log lines with message msg exist and returns them. The access
// line is written as the handler chain returns, which may race with the client reading.
func (b *lockedBuffer) waitLines(t *testing.T, msg string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		var got []map[string]any
		for _, l := range b.lines(t) {
			if l["msg"] == msg {
				got = append(got, l)
			}
		}
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) < n {
				t.Fatalf("want %d %q log lines, have %d; log:\n%s", n, msg, len(got), b.String())
			}
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newTestLogger(level slog.Level) (*slog.Logger, *lockedBuffer) {
	buf := &lockedBuffer{}
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: level})), buf
}

var testCORSConfig = Config{
	CORSAllowLocalhost: true,
	VercelFrontendURL:  "https://atenex-frontend.vercel.app",
	CORSAllowedOrigins: []string{"https://app.atenex.example"},
}

// testMux is a small route table standing in for the gateway's: each route provokes one
// behaviour of the middleware.
func testMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "healthy")
	})
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "alive")
	})
	mux.HandleFunc("GET /info", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(requestInfoFrom(r.Context()))
	})
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusBadGateway, codeUpstreamError, "Upstream unavailable")
	})
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Half-Done", "1")
		w.Header().Set("Content-Type", "text/event-stream")
		panic("boom")
	})
	mux.HandleFunc("GET /panic-after-write", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "partial")
		http.NewResponseController(w).Flush()
		panic("boom after write")
	})
	mux.HandleFunc("GET /abort", func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("/api/v1/query/{path...}", func(w http.ResponseWriter, r *http.Request) {
		info := requestInfoFrom(r.Context())
		info.UserID, info.CompanyID = "u-1", "c-1"
		info.Upstream, info.UpstreamStatus = "query", http.StatusCreated
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("GET /upstream-cors", func(w http.ResponseWriter, r *http.Request) {
		// What a backend with its own CORS middleware would answer.
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Credentials", "false")
		h.Set("Access-Control-Allow-Methods", "*")
		h.Set("Access-Control-Allow-Private-Network", "true")
		h.Set("Vary", "Accept-Encoding")
		h.Set("X-Request-ID", "upstream-id")
		h.Set("X-Process-Time", "0.001")
		io.WriteString(w, "from upstream")
	})
	return mux
}

func newTestServer(t *testing.T, cfg Config, level slog.Level) (*httptest.Server, *lockedBuffer) {
	t.Helper()
	log, buf := newTestLogger(level)
	srv := httptest.NewServer(withMiddleware(testMux(), &cfg, log, nil))
	t.Cleanup(srv.Close)
	return srv, buf
}

func doGet(t *testing.T, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body of %s: %v", url, err)
	}
	return res, string(body)
}

// serveDirect runs one request through withMiddleware without a network, for header values
// net/http's client refuses to send.
func serveDirect(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestRequestIDKeptWhenValidReplacedOtherwise(t *testing.T) {
	log, buf := newTestLogger(slog.LevelInfo)
	h := withMiddleware(testMux(), &Config{}, log, nil)
	tests := []struct {
		name   string
		values []string // X-Request-ID header lines; nil = absent
		keep   bool
	}{
		{"uuid", []string{"3f2b8c9e-5d1a-4e7b-9c3d-2a1b0c9d8e7f"}, true},
		{"visible ascii", []string{`!abc~{}"\`}, true},
		{"one char", []string{"x"}, true},
		{"128 chars", []string{strings.Repeat("a", 128)}, true},
		{"129 chars", []string{strings.Repeat("a", 129)}, false},
		{"control char", []string{"abc\x01def"}, false},
		{"newline", []string{"abc\ndef"}, false},
		{"DEL", []string{"abc\x7f"}, false},
		{"space", []string{"abc def"}, false},
		{"tab", []string{"abc\tdef"}, false},
		{"non-ASCII", []string{"abcé"}, false},
		{"empty", []string{""}, false},
		{"absent", nil, false},
		{"two header lines", []string{"one", "two"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/info", nil)
			if tt.values != nil {
				req.Header["X-Request-Id"] = tt.values
			}
			rec := serveDirect(h, req)
			got := rec.Header().Get("X-Request-ID")
			if tt.keep {
				if got != tt.values[0] {
					t.Fatalf("X-Request-ID = %q, want the client's %q", got, tt.values[0])
				}
			} else if !generatedID.MatchString(got) {
				t.Fatalf("X-Request-ID = %q, want a generated 32-hex id", got)
			}
			if n := len(rec.Header().Values("X-Request-ID")); n != 1 {
				t.Fatalf("%d X-Request-ID headers, want 1", n)
			}
			var info requestInfo
			if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil {
				t.Fatal(err)
			}
			if info.ID != got {
				t.Fatalf("handler saw request id %q, response says %q", info.ID, got)
			}
			lines := buf.lines(t)
			if last := lines[len(lines)-1]; last["request_id"] != got {
				t.Fatalf("logged request_id %v, response says %q", last["request_id"], got)
			}
		})
	}
}

func TestGeneratedRequestIDsDiffer(t *testing.T) {
	h := withMiddleware(testMux(), &Config{}, nil, nil)
	seen := map[string]bool{}
	for range 100 {
		id := serveDirect(h, httptest.NewRequest(http.MethodGet, "/ok", nil)).Header().Get("X-Request-ID")
		if seen[id] {
			t.Fatalf("request id %q generated twice", id)
		}
		seen[id] = true
	}
}

var processTime = regexp.MustCompile(`^[0-9]+\.[0-9]{2}ms$`)

func TestEveryResponseCarriesRequestIDAndProcessTime(t *testing.T) {
	srv, _ := newTestServer(t, testCORSConfig, slog.LevelInfo)
	tests := []struct {
		name, method, path string
		header             map[string]string
		want               int
	}{
		{"200", http.MethodGet, "/ok", nil, http.StatusOK},
		{"200 with empty handler", http.MethodGet, "/empty", nil, http.StatusOK},
		{"404", http.MethodGet, "/nowhere", nil, http.StatusNotFound},
		{"405", http.MethodPost, "/ok", nil, http.StatusMethodNotAllowed},
		{"502 from writeError", http.MethodGet, "/fail", nil, http.StatusBadGateway},
		{"panic", http.MethodGet, "/panic", nil, http.StatusInternalServerError},
		{"preflight", http.MethodOptions, "/api/v1/query/ask", map[string]string{
			"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}, http.StatusNoContent},
		{"refused preflight", http.MethodOptions, "/api/v1/query/ask", map[string]string{
			"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.want)
			}
			if id := res.Header.Get("X-Request-ID"); !generatedID.MatchString(id) {
				t.Errorf("X-Request-ID = %q", id)
			}
			if pt := res.Header.Get("X-Process-Time"); !processTime.MatchString(pt) {
				t.Errorf("X-Process-Time = %q, want like 3.21ms", pt)
			}
			if !varyHasOrigin(res.Header.Values("Vary")) {
				t.Errorf("Vary = %q, want Origin", res.Header.Values("Vary"))
			}
		})
	}
}

func TestPanicBecomes500JSONAndServerKeepsServing(t *testing.T) {
	srv, buf := newTestServer(t, Config{}, slog.LevelInfo)
	res, body := doGet(t, srv.URL+"/panic", nil)
	if res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	if res.Header.Get("X-Half-Done") != "" {
		t.Fatal("headers set before the panic leaked into the 500")
	}
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if e.Detail != "Internal server error" || e.RequestID != res.Header.Get("X-Request-ID") {
		t.Fatalf("body %+v, request id header %q", e, res.Header.Get("X-Request-ID"))
	}
	if strings.Contains(body, "boom") {
		t.Fatal("panic value leaked to the client")
	}

	for range 3 {
		if res, body := doGet(t, srv.URL+"/ok", nil); res.StatusCode != http.StatusOK || body != "ok" {
			t.Fatalf("after a panic: %d %q", res.StatusCode, body)
		}
	}

	p := buf.waitLines(t, "panic serving request", 1)[0]
	if p["level"] != "ERROR" || p["panic"] != "boom" || !strings.Contains(p["stack"].(string), "middleware_test.go") ||
		p["request_id"] != e.RequestID {
		t.Fatalf("panic log line %v", p)
	}
	for _, l := range buf.waitLines(t, "request", 4) {
		if l["path"] == "/panic" && (l["status"] != 500.0 || l["level"] != "ERROR") {
			t.Fatalf("access line of the panic: %v", l)
		}
	}
}

func TestPanicAfterHeadersAbortsTheResponse(t *testing.T) {
	srv, buf := newTestServer(t, Config{}, slog.LevelInfo)
	res, err := http.Get(srv.URL + "/panic-after-write")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(res.Body)
	res.Body.Close()
	if err == nil {
		t.Fatal("a truncated response read as complete")
	}
	buf.waitLines(t, "panic serving request", 1)
	if res, body := doGet(t, srv.URL+"/ok", nil); res.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("after a panic: %d %q", res.StatusCode, body)
	}
}

func TestAbortHandlerPanicAbortsWithoutPanicLog(t *testing.T) {
	srv, buf := newTestServer(t, Config{}, slog.LevelInfo)
	if res, err := http.Get(srv.URL + "/abort"); err == nil {
		res.Body.Close()
		t.Fatalf("aborted request answered %d", res.StatusCode)
	}
	l := buf.waitLines(t, "request", 1)[0]
	if l["aborted"] != true {
		t.Fatalf("access line %v, want aborted", l)
	}
	if strings.Contains(buf.String(), "panic serving request") {
		t.Fatal("http.ErrAbortHandler logged as a panic")
	}
	if res, body := doGet(t, srv.URL+"/ok", nil); res.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("after an abort: %d %q", res.StatusCode, body)
	}
}

func TestAccessLogLineHasFieldsButNoSecrets(t *testing.T) {
	srv, buf := newTestServer(t, Config{}, slog.LevelInfo)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	res, _ := doGet(t, srv.URL+"/api/v1/query/ask?token=SECRET-IN-QUERY&x=1", map[string]string{
		"Authorization": "Bearer SECRET-TOKEN",
		"Cookie":        "session=SECRET-COOKIE",
		"X-Request-ID":  "req-abc",
		"traceparent":   tp,
	})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", res.StatusCode)
	}
	l := buf.waitLines(t, "request", 1)[0]
	want := map[string]any{
		"level":           "INFO",
		"request_id":      "req-abc",
		"method":          "GET",
		"path":            "/api/v1/query/ask",
		"route":           "/api/v1/query/{path...}",
		"status":          201.0,
		"client_ip":       "127.0.0.1",
		"user_id":         "u-1",
		"company_id":      "c-1",
		"upstream":        "query",
		"upstream_status": 201.0,
		"trace_id":        "4bf92f3577b34da6a3ce929d0e0e4736",
		"bytes":           5.0,
	}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("%s = %#v, want %#v", k, l[k], v)
		}
	}
	if d, ok := l["duration_ms"].(float64); !ok || d < 0 {
		t.Errorf("duration_ms = %#v, want a non-negative number", l["duration_ms"])
	}
	all := buf.String()
	for _, secret := range []string{"SECRET", "token=", "Bearer", "Authorization", "session="} {
		if strings.Contains(all, secret) {
			t.Errorf("log contains %q:\n%s", secret, all)
		}
	}
}

func TestUnmatchedRouteLoggedAsUnmatched(t *testing.T) {
	srv, buf := newTestServer(t, Config{}, slog.LevelInfo)
	doGet(t, srv.URL+"/no/such/route", nil)
	if l := buf.waitLines(t, "request", 1)[0]; l["route"] != "unmatched" || l["status"] != 404.0 {
		t.Fatalf("access line %v", l)
	}
}

// The access line is written before ServeHTTP returns, so serving directly leaves nothing to
// wait for: a line missing afterwards was never written.
func TestAccessLogLevels(t *testing.T) {
	tests := []struct {
		name      string
		level     slog.Level // the logger's
		path      string
		wantLevel string // "" = no line
		status    float64
	}{
		{"probe hidden at INFO", slog.LevelInfo, "/health", "", 200},
		{"liveness probe hidden at INFO", slog.LevelInfo, "/livez", "", 200},
		{"request at INFO", slog.LevelInfo, "/ok", "INFO", 200},
		{"probe shown at DEBUG", slog.LevelDebug, "/health", "DEBUG", 200},
		{"liveness probe shown at DEBUG", slog.LevelDebug, "/livez", "DEBUG", 200},
		{"200 hidden at ERROR", slog.LevelError, "/ok", "", 200},
		{"404 hidden at ERROR", slog.LevelError, "/nowhere", "", 404},
		{"502 shown at ERROR", slog.LevelError, "/fail", "ERROR", 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, buf := newTestLogger(tt.level)
			serveDirect(withMiddleware(testMux(), &Config{}, log, nil), httptest.NewRequest(http.MethodGet, tt.path, nil))
			lines := buf.lines(t)
			if tt.wantLevel == "" {
				if len(lines) != 0 {
					t.Fatalf("want no line, got %v", lines)
				}
				return
			}
			if len(lines) != 1 || lines[0]["path"] != tt.path || lines[0]["level"] != tt.wantLevel ||
				lines[0]["status"] != tt.status {
				t.Fatalf("want one %s line for %s, got %v", tt.wantLevel, tt.path, lines)
			}
		})
	}
}

func TestCORSAllowedOrigins(t *testing.T) {
	vercel := Config{VercelFrontendURL: "https://atenex-frontend.vercel.app"}
	extra := Config{CORSAllowedOrigins: []string{"https://app.atenex.example", "https://admin.atenex.example:8443/"}}
	bare := Config{CORSAllowLocalhost: true} // localhost off is TestCORSLocalhostOnlyWhenAllowed
	nonVercel := Config{VercelFrontendURL: "https://atenex.example"}
	tests := []struct {
		name   string
		cfg    Config
		origin string
		want   bool
	}{
		{"localhost 3000", bare, "http://localhost:3000", true},
		{"localhost 3009", bare, "http://localhost:3009", true},
		{"localhost 3010", bare, "http://localhost:3010", false},
		{"localhost 300", bare, "http://localhost:300", false},
		{"localhost https", bare, "https://localhost:3000", false},
		{"localhost no port", bare, "http://localhost", false},
		{"127.0.0.1", bare, "http://127.0.0.1:3000", false},
		{"localhost trailing slash", bare, "http://localhost:3000/", false},
		{"null", bare, "null", false},
		{"empty", bare, "", false},
		{"vercel production", vercel, "https://atenex-frontend.vercel.app", true},
		{"vercel preview", vercel, "https://atenex-frontend-git-main-atenex.vercel.app", true},
		{"vercel preview hash", vercel, "https://atenex-frontend-a1b2c3d4e.vercel.app", true},
		{"vercel preview one char", vercel, "https://atenex-frontend-x.vercel.app", true},
		{"vercel preview label 63", vercel, "https://atenex-frontend-" + strings.Repeat("a", 63-16) + ".vercel.app", true},
		{"vercel preview label 64", vercel, "https://atenex-frontend-" + strings.Repeat("a", 64-16) + ".vercel.app", false},
		{"vercel preview empty suffix", vercel, "https://atenex-frontend-.vercel.app", false},
		{"vercel preview ends in dash", vercel, "https://atenex-frontend-abc-.vercel.app", false},
		{"vercel preview upper case", vercel, "https://atenex-frontend-ABC.vercel.app", false},
		{"vercel preview extra label", vercel, "https://atenex-frontend-a.b.vercel.app", false},
		{"vercel preview over http", vercel, "http://atenex-frontend-abc.vercel.app", false},
		{"vercel preview with port", vercel, "https://atenex-frontend-abc.vercel.app:443", false},
		{"vercel preview trailing slash", vercel, "https://atenex-frontend-abc.vercel.app/", false},
		{"vercel preview underscore", vercel, "https://atenex-frontend-a_b.vercel.app", false},
		{"vercel path trick", vercel, "https://evil.com/atenex-frontend.vercel.app", false},
		{"vercel as subdomain", vercel, "https://atenex-frontend.vercel.app.evil.com", false},
		{"vercel preview as subdomain", vercel, "https://atenex-frontend-1.vercel.app.evil.com", false},
		{"vercel prefix trick", vercel, "https://xatenex-frontend-1.vercel.app", false},
		{"vercel other project", vercel, "https://other-frontend-1.vercel.app", false},
		{"vercel userinfo trick", vercel, "https://atenex-frontend-1.vercel.app@evil.com", false},
		{"vercel different scheme", vercel, "http://atenex-frontend.vercel.app", false},
		{"vercel trailing slash", vercel, "https://atenex-frontend.vercel.app/", false},
		{"vercel upper case", vercel, "https://Atenex-Frontend.vercel.app", false},
		{"previews only for vercel.app", nonVercel, "https://atenex-1.vercel.app", false},
		{"non-vercel production", nonVercel, "https://atenex.example", true},
		{"no vercel configured", bare, "https://atenex-frontend-1.vercel.app", false},
		{"extra origin", extra, "https://app.atenex.example", true},
		{"extra origin with port, configured with slash", extra, "https://admin.atenex.example:8443", true},
		{"extra origin other port", extra, "https://app.atenex.example:8443", false},
		{"extra origin http", extra, "http://app.atenex.example", false},
		{"extra origin suffix", extra, "https://app.atenex.example.evil.com", false},
		{"extra origin subdomain", extra, "https://evil.app.atenex.example", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newCORSPolicy(&tt.cfg).allowed(tt.origin); got != tt.want {
				t.Fatalf("allowed(%q) = %v, want %v", tt.origin, got, tt.want)
			}
			// And what a browser sees on an actual request.
			h := withMiddleware(testMux(), &tt.cfg, nil, nil)
			req := httptest.NewRequest(http.MethodGet, "/ok", nil)
			req.Header.Set("Origin", tt.origin)
			hdr := serveDirect(h, req).Header()
			if tt.want {
				if hdr.Get("Access-Control-Allow-Origin") != tt.origin ||
					hdr.Get("Access-Control-Allow-Credentials") != "true" ||
					hdr.Get("Access-Control-Expose-Headers") != "X-Request-ID, X-Process-Time" {
					t.Fatalf("allowed origin got CORS headers %v", hdr)
				}
			} else if h := corsHeaders(hdr); len(h) != 0 {
				t.Fatalf("refused origin got CORS headers %v", h)
			}
			if !varyHasOrigin(hdr.Values("Vary")) {
				t.Fatalf("Vary = %q", hdr.Values("Vary"))
			}
		})
	}
}

func corsHeaders(h http.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out = append(out, k)
		}
	}
	return out
}

func TestCORSReplacesUpstreamCORSHeaders(t *testing.T) {
	h := withMiddleware(testMux(), &testCORSConfig, nil, nil)
	for _, origin := range []string{"http://localhost:3001", "https://evil.example", ""} {
		req := httptest.NewRequest(http.MethodGet, "/upstream-cors", nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		hdr := serveDirect(h, req).Header()
		if origin == "http://localhost:3001" {
			if v := hdr.Values("Access-Control-Allow-Origin"); len(v) != 1 || v[0] != origin {
				t.Fatalf("Access-Control-Allow-Origin = %q, want only %q", v, origin)
			}
			if v := hdr.Values("Access-Control-Allow-Credentials"); len(v) != 1 || v[0] != "true" {
				t.Fatalf("Access-Control-Allow-Credentials = %q", v)
			}
			if c := corsHeaders(hdr); len(c) != 3 {
				t.Fatalf("CORS headers %v, want only the gateway's three", c)
			}
		} else if c := corsHeaders(hdr); len(c) != 0 {
			t.Fatalf("origin %q got upstream CORS headers %v", origin, c)
		}
		if v := hdr.Values("Vary"); !slices.Contains(v, "Accept-Encoding") || !varyHasOrigin(v) {
			t.Fatalf("Vary = %q, want Accept-Encoding kept and Origin added", v)
		}
		if v := hdr.Values("X-Request-ID"); len(v) != 1 || v[0] == "upstream-id" {
			t.Fatalf("X-Request-ID = %q, want only the gateway's", v)
		}
		if v := hdr.Values("X-Process-Time"); len(v) != 1 || !processTime.MatchString(v[0]) {
			t.Fatalf("X-Process-Time = %q, want only the gateway's", v)
		}
	}
}

func TestCORSPreflightAnsweredWithoutReachingNext(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("preflight %s %s reached the next handler", r.Method, r.URL)
		w.WriteHeader(http.StatusTeapot)
	})
	log, _ := newTestLogger(slog.LevelInfo)
	srv := httptest.NewServer(withMiddleware(next, &testCORSConfig, log, nil))
	defer srv.Close()

	tests := []struct {
		name, origin, method string
		headers              []string // Access-Control-Request-Headers lines
		status               int
		detail               string
		allowHeaders         string
	}{
		{"localhost POST", "http://localhost:3000", "POST", []string{"content-type,authorization"}, 204, "", "content-type,authorization"},
		{"vercel preview PATCH", "https://atenex-frontend-git-x.vercel.app", "PATCH", nil, 204, "", ""},
		{"configured DELETE", "https://app.atenex.example", "DELETE", []string{"Authorization, X-Request-ID"}, 204, "", "Authorization, X-Request-ID"},
		{"two header lines", "http://localhost:3005", "PUT", []string{"a", "b"}, 204, "", "a, b"},
		{"OPTIONS method", "http://localhost:3005", "OPTIONS", nil, 204, "", ""},
		{"disallowed origin", "https://evil.example", "POST", nil, 400, "Disallowed CORS origin", ""},
		{"null origin", "null", "GET", nil, 400, "Disallowed CORS origin", ""},
		{"disallowed method", "http://localhost:3000", "TRACE", nil, 400, "Disallowed CORS method", ""},
		{"lower-case method", "http://localhost:3000", "patch", nil, 400, "Disallowed CORS method", ""},
		{"empty method", "http://localhost:3000", "", nil, 400, "Disallowed CORS method", ""},
		{"header not a token", "http://localhost:3000", "POST", []string{"content-type, x(y)"}, 400, "Disallowed CORS headers", ""},
		{"header with colon", "http://localhost:3000", "POST", []string{"x-a:b"}, 400, "Disallowed CORS headers", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/api/v1/query/ask", nil)
			req.Header.Set("Origin", tt.origin)
			req.Header["Access-Control-Request-Method"] = []string{tt.method}
			if tt.headers != nil {
				req.Header["Access-Control-Request-Headers"] = tt.headers
			}
			// No Authorization: a preflight never carries one and never needs one.
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", res.StatusCode, tt.status, body)
			}
			vary := strings.Join(res.Header.Values("Vary"), ",")
			for _, v := range []string{"Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"} {
				if !strings.Contains(vary, v) {
					t.Errorf("Vary %q lacks %s", vary, v)
				}
			}
			if tt.status != 204 {
				if c := corsHeaders(res.Header); len(c) != 0 {
					t.Fatalf("refused preflight carries %v", c)
				}
				var e errorBody
				if err := json.Unmarshal(body, &e); err != nil || e.Detail != tt.detail {
					t.Fatalf("body %q, want detail %q", body, tt.detail)
				}
				return
			}
			want := map[string]string{
				"Access-Control-Allow-Origin":      tt.origin,
				"Access-Control-Allow-Credentials": "true",
				"Access-Control-Allow-Methods":     "GET, POST, PUT, PATCH, DELETE, OPTIONS",
				"Access-Control-Allow-Headers":     tt.allowHeaders,
				"Access-Control-Max-Age":           "600",
			}
			for k, v := range want {
				if got := res.Header.Values(k); (v == "" && len(got) != 0) || (v != "" && (len(got) != 1 || got[0] != v)) {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if len(body) != 0 {
				t.Errorf("204 with a body %q", body)
			}
		})
	}
}

func TestOptionsWithoutPreflightHeadersReachesNext(t *testing.T) {
	reached := false
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true })
	h := withMiddleware(next, &testCORSConfig, nil, nil)
	req := httptest.NewRequest(http.MethodOptions, "/ok", nil)
	req.Header.Set("Origin", "http://localhost:3000") // no Access-Control-Request-Method
	rec := serveDirect(h, req)
	if !reached {
		t.Fatal("a plain OPTIONS request was answered as a preflight")
	}
	if rec.Header().Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Fatalf("headers %v", rec.Header())
	}
}

func TestParseTraceParent(t *testing.T) {
	const (
		tid = "4bf92f3577b34da6a3ce929d0e0e4736"
		pid = "00f067aa0ba902b7"
	)
	tests := []struct {
		name, in string
		ok       bool
		flags    string
	}{
		{"valid sampled", "00-" + tid + "-" + pid + "-01", true, "01"},
		{"valid not sampled", "00-" + tid + "-" + pid + "-00", true, "00"},
		{"unknown flags kept", "00-" + tid + "-" + pid + "-ff", true, "ff"},
		{"future version", "cc-" + tid + "-" + pid + "-01", true, "01"},
		{"future version with more fields", "cc-" + tid + "-" + pid + "-01-what-the-future-holds", true, "01"},
		{"future version, junk after 55", "cc-" + tid + "-" + pid + "-01what", false, ""},
		{"version 00 with more fields", "00-" + tid + "-" + pid + "-01-x", false, ""},
		{"version ff", "ff-" + tid + "-" + pid + "-01", false, ""},
		{"upper-case version", "0A-" + tid + "-" + pid + "-01", false, ""},
		{"upper-case trace id", "00-" + strings.ToUpper(tid) + "-" + pid + "-01", false, ""},
		{"upper-case parent id", "00-" + tid + "-00F067AA0BA902B7-01", false, ""},
		{"upper-case flags", "00-" + tid + "-" + pid + "-0A", false, ""},
		{"zero trace id", "00-" + strings.Repeat("0", 32) + "-" + pid + "-01", false, ""},
		{"zero parent id", "00-" + tid + "-0000000000000000-01", false, ""},
		{"short trace id", "00-" + tid[:31] + "-" + pid + "-01", false, ""},
		{"non-hex", "00-" + tid[:31] + "g-" + pid + "-01", false, ""},
		{"wrong separator", "00_" + tid + "-" + pid + "-01", false, ""},
		{"54 chars", ("00-" + tid + "-" + pid + "-01")[:54], false, ""},
		{"trailing space", "00-" + tid + "-" + pid + "-01 ", false, ""},
		{"empty", "", false, ""},
		{"garbage", strings.Repeat("-", 60), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotTID, gotPID, flags, ok := parseTraceParent(tt.in)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if ok && (gotTID != tid || gotPID != pid || flags != tt.flags) {
				t.Fatalf("got %q %q %q", gotTID, gotPID, flags)
			}
		})
	}
}

func TestTraceParentKeptReplacedOrCreated(t *testing.T) {
	const (
		tid = "4bf92f3577b34da6a3ce929d0e0e4736"
		pid = "00f067aa0ba902b7"
	)
	shape := regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$`)
	h := withMiddleware(testMux(), &Config{}, nil, nil)
	tests := []struct {
		name      string
		values    []string
		keepTrace bool
		flags     string
	}{
		{"valid", []string{"00-" + tid + "-" + pid + "-00"}, true, "00"},
		{"valid future version", []string{"01-" + tid + "-" + pid + "-01-extra"}, true, "01"},
		{"invalid", []string{"00-" + tid + "-" + pid + "-1"}, false, "01"},
		{"zero trace", []string{"00-" + strings.Repeat("0", 32) + "-" + pid + "-00"}, false, "01"},
		{"two lines", []string{"00-" + tid + "-" + pid + "-00", "00-" + tid + "-" + pid + "-00"}, false, "01"},
		{"absent", nil, false, "01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/info", nil)
			if tt.values != nil {
				req.Header["Traceparent"] = tt.values
			}
			req.Header.Set("Tracestate", "vendor=value")
			var info requestInfo
			if err := json.Unmarshal(serveDirect(h, req).Body.Bytes(), &info); err != nil {
				t.Fatal(err)
			}
			m := shape.FindStringSubmatch(info.TraceParent)
			if m == nil {
				t.Fatalf("TraceParent %q is not a version-00 traceparent", info.TraceParent)
			}
			if _, _, _, ok := parseTraceParent(info.TraceParent); !ok {
				t.Fatalf("forwarded traceparent %q does not parse", info.TraceParent)
			}
			if info.TraceID != m[1] {
				t.Fatalf("TraceID %q, traceparent %q", info.TraceID, info.TraceParent)
			}
			if (m[1] == tid) != tt.keepTrace || info.KeepTraceState != tt.keepTrace {
				t.Fatalf("trace id %q, KeepTraceState %v; want kept = %v", m[1], info.KeepTraceState, tt.keepTrace)
			}
			if m[2] == pid {
				t.Fatal("this hop reused the caller's span id")
			}
			if m[3] != tt.flags {
				t.Fatalf("flags %q, want %q", m[3], tt.flags)
			}
			if req.Header.Get("Tracestate") != "vendor=value" {
				t.Fatal("tracestate was modified")
			}
		})
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.168.1.1/32"),
		netip.MustParsePrefix("2001:db8::/32"),
	}
	tests := []struct {
		name    string
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"no proxies configured", "203.0.113.7:5555", []string{"1.2.3.4"}, nil, "203.0.113.7"},
		{"untrusted peer forges XFF", "203.0.113.7:5555", []string{"1.2.3.4"}, trusted, "203.0.113.7"},
		{"trusted peer, no XFF", "10.0.0.2:5555", nil, trusted, "10.0.0.2"},
		{"trusted peer, one client", "10.0.0.2:5555", []string{"198.51.100.9"}, trusted, "198.51.100.9"},
		{"client forges left entries", "10.0.0.2:5555", []string{"1.1.1.1, 6.6.6.6, 198.51.100.9"}, trusted, "198.51.100.9"},
		{"chain of trusted proxies", "10.0.0.2:5555", []string{"1.1.1.1, 198.51.100.9, 192.168.1.1, 10.9.9.9"}, trusted, "198.51.100.9"},
		{"several header lines", "10.0.0.2:5555", []string{"1.1.1.1", "198.51.100.9, 10.1.1.1", "10.2.2.2"}, trusted, "198.51.100.9"},
		{"all trusted gives left-most", "10.0.0.2:5555", []string{"10.3.3.3, 10.4.4.4"}, trusted, "10.3.3.3"},
		{"garbage stops at last trusted", "10.0.0.2:5555", []string{"198.51.100.9, garbage, 10.4.4.4"}, trusted, "10.4.4.4"},
		{"garbage right after peer", "10.0.0.2:5555", []string{"198.51.100.9, unknown"}, trusted, "10.0.0.2"},
		{"empty items skipped", "10.0.0.2:5555", []string{" , 198.51.100.9 ,, "}, trusted, "198.51.100.9"},
		{"spaces and tabs", "10.0.0.2:5555", []string{"\t198.51.100.9\t"}, trusted, "198.51.100.9"},
		{"entry with port", "10.0.0.2:5555", []string{"198.51.100.9:4711"}, trusted, "198.51.100.9"},
		{"IPv6 peer", "[2001:db8::1]:443", []string{"2001:db8:1::5, 2a00:1450::1"}, trusted, "2a00:1450::1"},
		{"IPv6 untrusted peer", "[2a00:1450::1]:443", []string{"1.2.3.4"}, trusted, "2a00:1450::1"},
		{"bracketed IPv6 entry", "10.0.0.2:5555", []string{"[2a00:1450::2]"}, trusted, "2a00:1450::2"},
		{"bracketed IPv6 entry with port", "10.0.0.2:5555", []string{"[2a00:1450::2]:80"}, trusted, "2a00:1450::2"},
		{"IPv4-mapped peer unmapped", "[::ffff:10.0.0.2]:5555", []string{"198.51.100.9"}, trusted, "198.51.100.9"},
		{"IPv4-mapped entry unmapped", "10.0.0.2:5555", []string{"::ffff:198.51.100.9"}, trusted, "198.51.100.9"},
		{"IPv4-mapped trusted entry", "10.0.0.2:5555", []string{"198.51.100.9, ::ffff:10.5.5.5"}, trusted, "198.51.100.9"},
		{"zone dropped", "[fe80::1%eth0]:5555", nil, trusted, "fe80::1"},
		{"peer without port", "203.0.113.7", nil, trusted, "203.0.113.7"},
		{"unparseable peer", "@", []string{"1.2.3.4"}, trusted, "invalid IP"},
		{"empty peer", "", nil, trusted, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := clientIP(tt.remote, tt.xff, tt.trusted)
			if got.String() != tt.want {
				t.Fatalf("clientIP = %s, want %s", got, tt.want)
			}
			// The same through the middleware, as the login limiter will read it.
			h := withMiddleware(testMux(), &Config{TrustedProxies: tt.trusted}, nil, nil)
			req := httptest.NewRequest(http.MethodGet, "/info", nil)
			req.RemoteAddr = tt.remote
			req.Header["X-Forwarded-For"] = tt.xff
			var info requestInfo
			if err := json.Unmarshal(serveDirect(h, req).Body.Bytes(), &info); err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if want == "invalid IP" {
				want = ""
			}
			if info.ClientIP != want {
				t.Fatalf("requestInfo.ClientIP = %q, want %q", info.ClientIP, want)
			}
		})
	}
}

func TestStreamingFlushAndResponseControllerReachRealWriter(t *testing.T) {
	release := make(chan struct{})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.EnableFullDuplex(); err != nil {
			t.Errorf("EnableFullDuplex: %v", err)
		}
		if err := rc.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Errorf("SetWriteDeadline: %v", err)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		if err := rc.Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		<-release
		io.WriteString(w, "data: second\n\n")
		w.(http.Flusher).Flush()
	})
	log, buf := newTestLogger(slog.LevelInfo)
	srv := httptest.NewServer(withMiddleware(next, &Config{}, log, nil))
	defer srv.Close()

	res, err := http.Get(srv.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if !processTime.MatchString(res.Header.Get("X-Process-Time")) || res.Header.Get("X-Request-ID") == "" {
		t.Fatalf("streamed response headers %v", res.Header)
	}
	br := bufio.NewReader(res.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event before the handler finished: %q, %v", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: second\n\n" {
		t.Fatalf("rest %q", rest)
	}
	if l := buf.waitLines(t, "request", 1)[0]; l["bytes"] != float64(len("data: first\n\ndata: second\n\n")) {
		t.Fatalf("access line %v", l)
	}
}

func TestHijackedConnectionLoggedAsSwitchingProtocols(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nhi")
		brw.Flush()
	})
	log, buf := newTestLogger(slog.LevelInfo)
	srv := httptest.NewServer(withMiddleware(next, &Config{}, log, nil))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "test")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusSwitchingProtocols || string(body) != "hi" {
		t.Fatalf("%d %q", res.StatusCode, body)
	}
	if l := buf.waitLines(t, "request", 1)[0]; l["status"] != 101.0 {
		t.Fatalf("access line %v", l)
	}
	if strings.Contains(buf.String(), "panic") {
		t.Fatalf("log %s", buf.String())
	}
}

func TestWriteErrorEscapesDetail(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusUnprocessableEntity, codeValidation, "bad \"field\" <x>\n\x01é\xff\u2028")
	})
	rec := serveDirect(withMiddleware(h, &Config{}, nil, nil), httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusUnprocessableEntity || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	var e errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if e.Detail != "bad \"field\" <x>\n\x01é\ufffd\u2028" || e.RequestID != rec.Header().Get("X-Request-ID") {
		t.Fatalf("decoded %+v", e)
	}
	if bytes.ContainsAny(bytes.TrimSuffix(rec.Body.Bytes(), []byte("\n")), "<>\n\x01") {
		t.Fatalf("body not escaped: %q", rec.Body)
	}
}

// --- fuzz targets -------------------------------------------------------------------------

func FuzzValidRequestID(f *testing.F) {
	for _, s := range []string{"", "x", "abc-123", strings.Repeat("a", 128), strings.Repeat("a", 129),
		"a b", "a\x00", "é", "\x7f", "!~"} {
		f.Add(s)
	}
	h := withMiddleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), &Config{}, nil, nil)
	f.Fuzz(func(t *testing.T, s string) {
		want := len(s) >= 1 && len(s) <= 128
		for _, c := range []byte(s) {
			if c < 0x21 || c > 0x7e {
				want = false
			}
		}
		if got := validRequestID(s); got != want {
			t.Fatalf("validRequestID(%q) = %v, want %v", s, got, want)
		}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header["X-Request-Id"] = []string{s}
		got := serveDirect(h, req).Header().Get("X-Request-ID")
		if want && got != s || !want && !generatedID.MatchString(got) {
			t.Fatalf("request id %q answered with %q", s, got)
		}
	})
}

var traceParentOracle = regexp.MustCompile(`^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$`)

func FuzzParseTraceParent(f *testing.F) {
	for _, s := range []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"", "00", strings.Repeat("-", 55),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tid, pid, flags, ok := parseTraceParent(s)
		m := traceParentOracle.FindStringSubmatch(s)
		want := m != nil && m[1] != "ff" && !(m[1] == "00" && m[5] != "") &&
			strings.Trim(m[2], "0") != "" && strings.Trim(m[3], "0") != ""
		if ok != want {
			t.Fatalf("parseTraceParent(%q) ok = %v, want %v", s, ok, want)
		}
		if ok && (tid != m[2] || pid != m[3] || flags != m[4]) {
			t.Fatalf("parseTraceParent(%q) = %q %q %q", s, tid, pid, flags)
		}
	})
}

func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.2:5555", "1.1.1.1, 198.51.100.9, 10.9.9.9")
	f.Add("203.0.113.7:5555", "1.2.3.4")
	f.Add("[2001:db8::1]:443", "2a00:1450::1\n::ffff:10.1.1.1")
	f.Add("10.0.0.2:1", "garbage, 10.1.1.1")
	f.Add("10.0.0.2:1", " , ,[::1]:80,")
	f.Add("@", "")
	trusted := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("::/0"),
	}
	f.Fuzz(func(t *testing.T, remote, xffText string) {
		xff := strings.Split(xffText, "\n")
		got := clientIP(remote, xff, trusted)
		peer, ok := parseIPEntry(remote)
		if !ok {
			if got.IsValid() {
				t.Fatalf("unparseable peer %q gave %s", remote, got)
			}
			return
		}
		if got == peer {
			return
		}
		if !inPrefixes(peer, trusted) {
			t.Fatalf("untrusted peer %s: XFF was believed (%s)", peer, got)
		}
		for _, line := range xff {
			for _, e := range strings.Split(line, ",") {
				if a, ok := parseIPEntry(strings.Trim(e, " \t")); ok && a == got {
					return
				}
			}
		}
		t.Fatalf("clientIP(%q, %q) = %s: neither the peer nor an XFF entry", remote, xff, got)
	})
}

var previewOracle = regexp.MustCompile(`^https://(atenex-frontend-[a-z0-9-]*[a-z0-9])\.vercel\.app$`)

func FuzzCORSOrigin(f *testing.F) {
	for _, s := range []string{"http://localhost:3000", "https://atenex-frontend.vercel.app",
		"https://atenex-frontend-abc.vercel.app", "https://atenex-frontend-.vercel.app",
		"https://evil.com/atenex-frontend.vercel.app", "https://atenex-frontend.vercel.app.evil.com",
		"https://xatenex-frontend-1.vercel.app", "null", "", "https://app.atenex.example"} {
		f.Add(s)
	}
	p := newCORSPolicy(&testCORSConfig)
	configured := []string{"https://atenex-frontend.vercel.app", "https://app.atenex.example"}
	for port := 3000; port <= 3009; port++ {
		configured = append(configured, fmt.Sprintf("http://localhost:%d", port))
	}
	f.Fuzz(func(t *testing.T, origin string) {
		m := previewOracle.FindStringSubmatch(origin)
		want := slices.Contains(configured, origin) || m != nil && len(m[1]) <= 63
		if got := p.allowed(origin); got != want {
			t.Fatalf("allowed(%q) = %v, want %v", origin, got, want)
		}
	})
}

func FuzzCORSPreflight(f *testing.F) {
	f.Add("http://localhost:3000", "POST", "content-type,authorization")
	f.Add("https://atenex-frontend-x.vercel.app", "PATCH", "")
	f.Add("https://evil.example", "GET", "x")
	f.Add("http://localhost:3000", "TRACE", "")
	f.Add("http://localhost:3000", "GET", "a\r\nb")
	p := newCORSPolicy(&testCORSConfig)
	h := withMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("preflight reached next")
	}), &testCORSConfig, nil, nil)
	f.Fuzz(func(t *testing.T, origin, method, reqHeaders string) {
		req := httptest.NewRequest(http.MethodOptions, "/api/v1/query/ask", nil)
		req.Header["Origin"] = []string{origin}
		req.Header["Access-Control-Request-Method"] = []string{method}
		req.Header["Access-Control-Request-Headers"] = []string{reqHeaders}
		rec := serveDirect(h, req)
		switch rec.Code {
		case http.StatusNoContent:
			if !p.allowed(origin) || !corsMethodAllowed(method) ||
				rec.Header().Get("Access-Control-Allow-Origin") != origin {
				t.Fatalf("preflight %q %q %q allowed: %v", origin, method, reqHeaders, rec.Header())
			}
			if strings.ContainsAny(rec.Header().Get("Access-Control-Allow-Headers"), "\r\n\x00") {
				t.Fatalf("control characters echoed: %q", reqHeaders)
			}
		case http.StatusBadRequest:
			if c := corsHeaders(rec.Header()); len(c) != 0 {
				t.Fatalf("refused preflight carries %v", c)
			}
		default:
			t.Fatalf("preflight answered %d", rec.Code)
		}
	})
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `"\`, "<>&", "\x00\x1f\n\t", "é", "\xff\xfe", "\u2028\u2029", "\U0001F600"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("appendJSONString(%q) = %q: %v", s, b, err)
		}
		ref, _ := json.Marshal(s)
		var want string
		json.Unmarshal(ref, &want)
		if got != want {
			t.Fatalf("appendJSONString(%q) decodes to %q, encoding/json gives %q", s, got, want)
		}
		if !bytes.Equal(b, ref) {
			t.Fatalf("appendJSONString(%q) = %s, encoding/json = %s", s, b, ref)
		}
	})
}

// --- benchmark ----------------------------------------------------------------------------

// benchWriter is a reusable ResponseWriter, so the benchmark counts the middleware's
// allocations rather than the recorder's.
type benchWriter struct{ h http.Header }

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(int)             {}

func BenchmarkMiddleware(b *testing.B) {
	body := []byte("ok")
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	})
	for _, bc := range []struct {
		name  string
		level slog.Level
		hdr   map[string]string
	}{
		{"bare/log-off", slog.LevelWarn, nil},
		{"bare/log-on", slog.LevelInfo, nil},
		{"browser/log-off", slog.LevelWarn, map[string]string{
			"Origin":       "https://atenex-frontend-git-main.vercel.app",
			"X-Request-ID": "3f2b8c9e-5d1a-4e7b-9c3d-2a1b0c9d8e7f",
			"Traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: bc.level}))
			h := withMiddleware(next, &testCORSConfig, log, nil)
			req := httptest.NewRequest(http.MethodGet, "/api/v1/query/ask", nil)
			req.RemoteAddr = "203.0.113.7:5555"
			for k, v := range bc.hdr {
				req.Header.Set(k, v)
			}
			w := &benchWriter{h: make(http.Header)}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}

// withMiddleware is the gateway's chain without tracing; a nil log discards.
func withMiddleware(next http.Handler, cfg *Config, log *slog.Logger, m *metrics) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return withTracedMiddleware(next, cfg, log, m, nil)
}
