// proxy_test.go: the proxy against real loopback upstreams that echo what they receive.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// echoed is what an echo upstream saw of one request.
type echoed struct {
	Method     string      `json:"method"`
	RequestURI string      `json:"request_uri"` // the request target exactly as received
	Host       string      `json:"host"`
	Header     http.Header `json:"header"`
	BodySHA256 string      `json:"body_sha256"`
	BodyLen    int64       `json:"body_len"`
}

// echoUpstream is a real HTTP server that answers every request with what it received and
// records every request target it sees.
type echoUpstream struct {
	*httptest.Server
	name string
	mu   sync.Mutex
	seen []echoed
}

func newEchoUpstream(t *testing.T, name string) *echoUpstream {
	t.Helper()
	u := &echoUpstream{name: name}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *echoUpstream) serve(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	e := echoed{
		Method:     r.Method,
		RequestURI: r.RequestURI,
		Host:       r.Host,
		Header:     r.Header.Clone(),
		BodySHA256: hex.EncodeToString(h.Sum(nil)),
		BodyLen:    n,
	}
	u.mu.Lock()
	u.seen = append(u.seen, e)
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Upstream", u.name)
	json.NewEncoder(w).Encode(e)
}

func (u *echoUpstream) requests() []echoed {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]echoed(nil), u.seen...)
}

// last returns the last request the upstream saw, failing the test when it saw none.
func (u *echoUpstream) last(t *testing.T) echoed {
	t.Helper()
	seen := u.requests()
	if len(seen) == 0 {
		t.Fatalf("upstream %s saw no request", u.name)
	}
	return seen[len(seen)-1]
}

var testIdentity = identity{
	UserID:    "6f1b1c7e-2c4a-4e53-9f0e-3d2a1b0c9d8e",
	CompanyID: "0b6f6c8a-5a4e-4c1f-8f2d-7e9a1c3b5d70",
	Email:     "ana@example.com",
}

// testGateway serves the gateway's real route table inside rejectUnsafePaths, with a stand-in
// for the middleware (request info the test can choose) and for the auth wrappers (a fixed
// caller, testIdentity).
type testGateway struct {
	*httptest.Server
	ingest, query, auth *echoUpstream
	logs                *syncBuffer

	mu    sync.Mutex
	infos []*requestInfo // every finished request's info, in completion order
	done  chan *requestInfo
}

type gatewayOptions struct {
	cfg     *Config
	targets map[string]string // upstream name → target URL replacing its echo upstream
	newInfo func(r *http.Request) *requestInfo
	tls     bool
}

// withCaller is ctx with info installed as the middleware does, holding the caller as the
// auth wrappers record it.
func withCaller(ctx context.Context, info *requestInfo, id identity) context.Context {
	info.setCaller(id)
	return withRequestInfo(ctx, info)
}

func proxyTestConfig() *Config {
	return &Config{
		HTTPClientTimeout:   5 * time.Second,
		MaxConnsPerHost:     200,
		MaxIdleConnsPerHost: 100,
	}
}

func newTestGateway(t *testing.T, opts gatewayOptions) *testGateway {
	t.Helper()
	cfg := opts.cfg
	if cfg == nil {
		cfg = proxyTestConfig()
	}
	g := &testGateway{
		ingest: newEchoUpstream(t, "ingest"),
		query:  newEchoUpstream(t, "query"),
		auth:   newEchoUpstream(t, "auth"),
		logs:   &syncBuffer{},
		done:   make(chan *requestInfo, 64),
	}
	log := slog.New(slog.NewJSONHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	target := func(name, echoURL string) *url.URL {
		raw := echoURL
		if s, ok := opts.targets[name]; ok {
			raw = s
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("parse target %q: %v", raw, err)
		}
		return u
	}
	cfg.Upstreams = map[string]*url.URL{"ingest": target("ingest", g.ingest.URL), "query": target("query", g.query.URL), "auth": target("auth", g.auth.URL)}
	gw := newGateway(cfg, log, newMemoryStore(), nil)
	t.Cleanup(gw.close)

	// The real route table, with the caller every authenticated row would verify.
	var table []route
	for _, rt := range gw.routeTable() {
		if rt.auth != authNone {
			h := rt.handler
			rt.auth, rt.handler = authNone, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requestInfoFrom(r.Context()).setCaller(testIdentity)
				h.ServeHTTP(w, r)
			})
		}
		table = append(table, rt)
	}
	mux := gw.serveMux(table)

	var seq int
	var seqMu sync.Mutex
	inner := rejectUnsafePaths(mux)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var info *requestInfo
		if opts.newInfo != nil {
			info = opts.newInfo(r)
		} else {
			seqMu.Lock()
			seq++
			info = &requestInfo{ID: fmt.Sprintf("req-%04d", seq)}
			seqMu.Unlock()
		}
		info.PeerTrusted = peerTrusted(r.RemoteAddr, cfg.TrustedProxies) // as the middleware decides
		w.Header().Set("X-Request-ID", info.ID)
		defer func() {
			g.mu.Lock()
			g.infos = append(g.infos, info)
			g.mu.Unlock()
			select {
			case g.done <- info:
			default:
			}
		}()
		inner.ServeHTTP(w, r.WithContext(withRequestInfo(r.Context(), info)))
	})
	if opts.tls {
		g.Server = httptest.NewTLSServer(handler)
	} else {
		g.Server = httptest.NewServer(handler)
	}
	t.Cleanup(g.Close)
	return g
}

// upstreams returns every echo upstream with the unescaped prefix its requests must stay in.
func (g *testGateway) upstreams() map[*echoUpstream]string {
	return map[*echoUpstream]string{g.ingest: "/api/v1/ingest/", g.query: "/api/v1/", g.auth: "/api/v1/auth/"}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// do sends one request through the gateway and returns the response with its body read.
func (g *testGateway) do(t *testing.T, method, target string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, g.URL+target, body)
	if err != nil {
		t.Fatalf("new request %s %s: %v", method, target, err)
	}
	for k, vs := range header {
		req.Header[k] = vs // as given: no canonicalisation, so odd spellings go on the wire
	}
	res, err := g.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return res, b
}

// rawRequest writes requestLine and headers verbatim on a new connection, so paths reach the
// gateway exactly as an attacker would type them.
func rawRequest(t *testing.T, addr, requestLine string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "%s\r\nHost: gateway.test\r\nConnection: close\r\n\r\n", requestLine); err != nil {
		t.Fatalf("write: %v", err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: read response: %v", requestLine, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res, body
}

func decodeEcho(t *testing.T, body []byte) echoed {
	t.Helper()
	var e echoed
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decode echo %q: %v", body, err)
	}
	return e
}

// wantJSONError checks a gateway-produced error: status, JSON content type, detail, request id.
func wantJSONError(t *testing.T, res *http.Response, body []byte, status int, detail string) {
	t.Helper()
	if res.StatusCode != status {
		t.Fatalf("status = %d, want %d (body %s)", res.StatusCode, status, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	if detail != "" && e.Detail != detail {
		t.Errorf("detail = %q, want %q", e.Detail, detail)
	}
	if e.Detail == "" {
		t.Errorf("empty detail in %s", body)
	}
	if rid := res.Header.Get("X-Request-ID"); rid == "" || e.RequestID != rid {
		t.Errorf("request_id = %q, X-Request-ID = %q: want equal and set", e.RequestID, rid)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestProxyForwardsEveryMethodToMappedPath(t *testing.T) {
	g := newTestGateway(t, gatewayOptions{})
	routes := []struct {
		name     string
		up       *echoUpstream
		gateway  string
		upstream string
		identity bool
	}{
		{"ingest", g.ingest, "/api/v1/ingest/docs/42", "/api/v1/ingest/docs/42", true},
		{"query", g.query, "/api/v1/query/chats/42", "/api/v1/chats/42", true},
		{"auth", g.auth, "/api/v1/auth/session", "/api/v1/auth/session", false},
	}
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"}
	for _, rt := range routes {
		for _, method := range methods {
			t.Run(rt.name+"/"+method, func(t *testing.T) {
				var body []byte
				if method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE" {
					body = []byte(`{"method":"` + method + `","n":1}`)
				}
				res, resBody := g.do(t, method, rt.gateway+"?x=1", bytes.NewReader(body), nil)
				if res.StatusCode != http.StatusOK {
					t.Fatalf("status = %d, body %s", res.StatusCode, resBody)
				}
				if got := res.Header.Get("X-Upstream"); got != rt.name {
					t.Errorf("answered by %q, want %q", got, rt.name)
				}
				e := rt.up.last(t)
				if e.Method != method {
					t.Errorf("upstream method = %q, want %q", e.Method, method)
				}
				if want := rt.upstream + "?x=1"; e.RequestURI != want {
					t.Errorf("upstream target = %q, want %q", e.RequestURI, want)
				}
				if e.BodySHA256 != sha256Hex(body) || e.BodyLen != int64(len(body)) {
					t.Errorf("upstream body = %d bytes %s, want %d bytes %s", e.BodyLen, e.BodySHA256, len(body), sha256Hex(body))
				}
				if wantHost := strings.TrimPrefix(rt.up.URL, "http://"); e.Host != wantHost {
					t.Errorf("upstream Host = %q, want %q", e.Host, wantHost)
				}
				if got := e.Header.Get("X-Company-ID"); rt.identity && got != testIdentity.CompanyID || !rt.identity && got != "" {
					t.Errorf("X-Company-ID = %q (route with identity: %v)", got, rt.identity)
				}
				if method != "HEAD" {
					if got := decodeEcho(t, resBody); got.RequestURI != e.RequestURI {
						t.Errorf("response body is not the upstream's: %+v", got)
					}
				}
			})
		}
	}
}

func TestProxyFrontendCallsReachTheirUpstreamPaths(t *testing.T) {
	g := newTestGateway(t, gatewayOptions{})
	const docID = "3f2c9a1e-8b7d-4c6e-a5f4-1d2e3c4b5a69"
	const chatID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"

	var upload bytes.Buffer
	mw := multipart.NewWriter(&upload)
	mw.WriteField("metadata_json", `{"source":"test"}`)
	fw, _ := mw.CreateFormFile("file", "informe final.pdf")
	fw.Write(bytes.Repeat([]byte("%PDF-1.7 not really\n"), 500))
	mw.Close()

	calls := []struct {
		method, path string
		contentType  string
		body         []byte
		up           *echoUpstream
		want         string
	}{
		{"POST", "/api/v1/ingest/upload", mw.FormDataContentType(), upload.Bytes(), g.ingest, "/api/v1/ingest/upload"},
		{"GET", "/api/v1/ingest/status?limit=10&offset=0", "", nil, g.ingest, "/api/v1/ingest/status?limit=10&offset=0"},
		{"GET", "/api/v1/ingest/status/" + docID, "", nil, g.ingest, "/api/v1/ingest/status/" + docID},
		{"POST", "/api/v1/ingest/retry/" + docID, "", nil, g.ingest, "/api/v1/ingest/retry/" + docID},
		{"DELETE", "/api/v1/ingest/" + docID, "", nil, g.ingest, "/api/v1/ingest/" + docID},
		{"GET", "/api/v1/query/chats", "", nil, g.query, "/api/v1/chats"},
		{"GET", "/api/v1/query/chats/" + chatID + "/messages", "", nil, g.query, "/api/v1/chats/" + chatID + "/messages"},
		{"POST", "/api/v1/query/ask", "application/json", []byte(`{"query":"¿Qué dice el informe?","chat_id":null}`), g.query, "/api/v1/ask"},
		{"DELETE", "/api/v1/query/chats/" + chatID, "", nil, g.query, "/api/v1/chats/" + chatID},
	}
	for _, c := range calls {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			h := http.Header{"Authorization": {"Bearer header.payload.signature"}}
			if c.contentType != "" {
				h.Set("Content-Type", c.contentType)
			}
			res, body := g.do(t, c.method, c.path, bytes.NewReader(c.body), h)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, body %s", res.StatusCode, body)
			}
			e := c.up.last(t)
			if e.Method != c.method || e.RequestURI != c.want {
				t.Errorf("upstream saw %s %s, want %s %s", e.Method, e.RequestURI, c.method, c.want)
			}
			if e.BodySHA256 != sha256Hex(c.body) {
				t.Errorf("body changed on the way: %d bytes received, %d sent", e.BodyLen, len(c.body))
			}
			if got := e.Header.Get("Content-Type"); got != c.contentType {
				t.Errorf("Content-Type = %q, want %q", got, c.contentType)
			}
			// The backend trusts the identity headers; the client's token stays with the gateway
			// (GATEWAY_PROXY_FORWARD_CREDENTIALS; TestCredentialsAreNotForwardedToBackends).
			if got := e.Header.Get("Authorization"); got != "" {
				t.Errorf("Authorization = %q forwarded", got)
			}
			if e.Header.Get("X-User-ID") != testIdentity.UserID || e.Header.Get("X-User-Email") != testIdentity.Email ||
				e.Header.Get("X-Company-ID") != testIdentity.CompanyID {
				t.Errorf("identity headers = %q %q %q", e.Header.Get("X-User-ID"), e.Header.Get("X-User-Email"), e.Header.Get("X-Company-ID"))
			}
		})
	}
}

func TestProxyKeepsRawQueryByteForByte(t *testing.T) {
	g := newTestGateway(t, gatewayOptions{})
	for _, q := range []string{
		"a=1&b=%2F&c=%20&c=+&d",
		"q=%C2%BFqu%C3%A9%3F&empty=&=x&&z",
		"a=1;b=2&c=%zz", // unparsable for Go's url.ParseQuery, which ReverseProxy would re-encode
	} {
		t.Run(q, func(t *testing.T) {
			res, body := rawRequest(t, g.Listener.Addr().String(), "GET /api/v1/query/chats?"+q+" HTTP/1.1")
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, body %s", res.StatusCode, body)
			}
			if got, want := g.query.last(t).RequestURI, "/api/v1/chats?"+q; got != want {
				t.Errorf("upstream target = %q, want %q", got, want)
			}
		})
	}
}

func TestProxyPrependsTargetPath(t *testing.T) {
	up := newEchoUpstream(t, "ingest")
	g := newTestGateway(t, gatewayOptions{targets: map[string]string{"ingest": up.URL + "/base/"}})
	res, body := g.do(t, "GET", "/api/v1/ingest/a%20b/c?x=1", nil, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, body %s", res.StatusCode, body)
	}
	if got, want := up.last(t).RequestURI, "/base/api/v1/ingest/a%20b/c?x=1"; got != want {
		t.Errorf("upstream target = %q, want %q", got, want)
	}
}

// forgedHeaders are client attempts to pass identity or request-id values to a backend, in
// the spellings different servers fold together.
var forgedHeaders = http.Header{
	"X-Company-ID":     {"forged"},
	"x_company_id":     {"forged"},
	"X_USER_ID":        {"forged"},
	"x-user-email":     {"forged"},
	"X-User-Email":     {"forged"},
	"X-Request-Id":     {"forged"},
	"x_request_id":     {"forged"},
	"X-Real-IP":        {"forged"},
	"X_Forwarded_For":  {"forged"},
	"x_forwarded_host": {"forged"},
}

// wantNoForgedHeaders fails when any header the upstream saw carries a forged value.
func wantNoForgedHeaders(t *testing.T, e echoed) {
	t.Helper()
	for k, vs := range e.Header {
		for _, v := range vs {
			if strings.Contains(v, "forged") {
				t.Errorf("upstream received %s: %q", k, v)
			}
		}
	}
}

func TestProxyDropsForgedCompanyHeader(t *testing.T) {
	g := newTestGateway(t, gatewayOptions{})
	for _, c := range []struct {
		name     string
		path     string
		up       *echoUpstream
		identity bool
	}{
		{"ingest", "/api/v1/ingest/status", g.ingest, true},
		{"query", "/api/v1/query/chats", g.query, true},
		{"auth without identity", "/api/v1/auth/login", g.auth, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, body := g.do(t, "POST", c.path, strings.NewReader("{}"), forgedHeaders)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, body %s", res.StatusCode, body)
			}
			e := c.up.last(t)
			wantNoForgedHeaders(t, e)
			for _, name := range []string{"X-User-ID", "X-Company-ID", "X-User-Email"} {
				got := e.Header.Values(name)
				switch {
				case c.identity && (len(got) != 1 || got[0] == ""):
					t.Errorf("%s = %q, want the token's value once", name, got)
				case !c.identity && len(got) != 0:
					t.Errorf("%s = %q on a route without identity", name, got)
				}
			}
			if c.identity && e.Header.Get("X-Company-ID") != testIdentity.CompanyID {
				t.Errorf("X-Company-ID = %q, want %q", e.Header.Get("X-Company-ID"), testIdentity.CompanyID)
			}
		})
	}
}

func TestProxyOmitsAbsentClaimsButStillDropsForgedOnes(t *testing.T) {
	// A token without company_id (InitialAuth-style identity): nothing is set for it, and the
	// client's own X-Company-ID is gone all the same.
	up := newEchoUpstream(t, "ingest")
	h := newProxy(upstream{name: "ingest", target: mustParseURL(t, up.URL),
		gatewayPrefix: "/api/v1/ingest/", upstreamPrefix: "/api/v1/ingest/"}, newUpstreamTransport(proxyTestConfig()), proxyTestConfig(), nil, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := withCaller(r.Context(), &requestInfo{ID: "r1"}, identity{UserID: testIdentity.UserID})
		h.ServeHTTP(w, r.WithContext(ctx))
	}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/ingest/x", nil)
	req.Header["x_company_id"] = []string{"forged"}
	req.Header.Set("X-User-Email", "forged")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	e := up.last(t)
	wantNoForgedHeaders(t, e)
	if got := e.Header.Get("X-User-ID"); got != testIdentity.UserID {
		t.Errorf("X-User-ID = %q", got)
	}
	if _, ok := e.Header["X-Company-Id"]; ok {
		t.Errorf("X-Company-ID sent without a claim: %q", e.Header["X-Company-Id"])
	}
	if _, ok := e.Header["X-User-Email"]; ok {
		t.Errorf("X-User-Email sent without a claim: %q", e.Header["X-User-Email"])
	}
}

func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestProxyPropagatesRequestID(t *testing.T) {
	g := newTestGateway(t, gatewayOptions{})
	res, body := g.do(t, "GET", "/api/v1/query/chats", nil, http.Header{"X-Request-ID": {"forged"}})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, body %s", res.StatusCode, body)
	}
	got := g.query.last(t).Header.Values("X-Request-ID")
	if want := res.Header.Get("X-Request-ID"); len(got) != 1 || got[0] != want {
		t.Errorf("upstream X-Request-ID = %q, want [%q] (the gateway's)", got, want)
	}
}

func TestProxyForwardsTraceContext(t *testing.T) {
	const (
		clientTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		ourTP    = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"
		newTP    = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	)
	for _, c := range []struct {
		name, clientTP, gatewayTP string
		keepState                 bool
	}{
		{"valid traceparent keeps its trace and tracestate", clientTP, ourTP, true},
		{"replaced traceparent drops the client's tracestate", "00-zzzz-bad-01", newTP, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newTestGateway(t, gatewayOptions{newInfo: func(*http.Request) *requestInfo {
				return &requestInfo{ID: "r1", TraceParent: c.gatewayTP, TraceID: c.gatewayTP[3:35], KeepTraceState: c.keepState}
			}})
			g.do(t, "GET", "/api/v1/ingest/status", nil, http.Header{
				"Traceparent": {c.clientTP}, "Tracestate": {"vendor=abc"}})
			e := g.ingest.last(t)
			if got := e.Header.Values("Traceparent"); len(got) != 1 || got[0] != c.gatewayTP {
				t.Errorf("traceparent = %q, want %q", got, c.gatewayTP)
			}
			if got := e.Header.Get("Tracestate"); (got == "vendor=abc") != c.keepState {
				t.Errorf("tracestate = %q, keep = %v", got, c.keepState)
			}
		})
	}
}

func TestProxySetsForwardedHeaders(t *testing.T) {
	spoof := http.Header{"X-Forwarded-For": {"6.6.6.6"}, "X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host": {"evil.example"}, "Forwarded": {"for=6.6.6.6"}}
	trusted := proxyTestConfig()
	trusted.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, c := range []struct {
		name      string
		cfg       *Config
		tls       bool
		header    http.Header
		wantFor   string
		wantProto string
	}{
		{"untrusted peer's forwarding headers are replaced", nil, false, spoof, "127.0.0.1", "http"},
		{"no forwarding headers", nil, false, nil, "127.0.0.1", "http"},
		{"TLS sets https", nil, true, spoof, "127.0.0.1", "https"},
		{"trusted peer's chain is extended", trusted, false, spoof, "6.6.6.6, 127.0.0.1", "https"},
		{"trusted peer's bogus proto is ignored", trusted, false,
			http.Header{"X-Forwarded-For": {"6.6.6.6", "7.7.7.7"}, "X-Forwarded-Proto": {"gopher"}},
			"6.6.6.6, 7.7.7.7, 127.0.0.1", "http"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newTestGateway(t, gatewayOptions{cfg: c.cfg, tls: c.tls})
			req, _ := http.NewRequest("GET", g.URL+"/api/v1/ingest/status", nil)
			req.Host = "app.example.com"
			for k, v := range c.header {
				req.Header[k] = v
			}
			res, err := g.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			e := g.ingest.last(t)
			if got := e.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != c.wantFor {
				t.Errorf("X-Forwarded-For = %q, want %q", got, c.wantFor)
			}
			if got := e.Header.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != c.wantProto {
				t.Errorf("X-Forwarded-Proto = %q, want %q", got, c.wantProto)
			}
			if got := e.Header.Values("X-Forwarded-Host"); len(got) != 1 || got[0] != "app.example.com" {
				t.Errorf("X-Forwarded-Host = %q, want the client's Host", got)
			}
			if got := e.Header.Get("Forwarded"); got != "" {
				t.Errorf("Forwarded = %q reached the upstream", got)
			}
			if e.Host == "app.example.com" {
				t.Errorf("upstream Host header is the client's, want the upstream's")
			}
		})
	}
}

func TestProxyDropsHopByHopHeaders(t *testing.T) {
	g := newTestGateway(t, gatewayOptions{})
	res, body := g.do(t, "GET", "/api/v1/ingest/status", nil, http.Header{
		"Connection":          {"X-Foo"},
		"X-Foo":               {"hop"},
		"Keep-Alive":          {"timeout=5"},
		"Te":                  {"gzip"},
		"Upgrade":             {"websocket"},
		"Proxy-Authorization": {"Basic c2VjcmV0"},
		"Proxy-Connection":    {"keep-alive"},
		"X-End-To-End":        {"kept"},
	})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, body %s", res.StatusCode, body)
	}
	e := g.ingest.last(t)
	for _, h := range []string{"X-Foo", "Keep-Alive", "Te", "Upgrade", "Proxy-Authorization", "Proxy-Connection"} {
		if v, ok := e.Header[h]; ok {
			t.Errorf("hop-by-hop %s = %q reached the upstream", h, v)
		}
	}
	if got := e.Header.Get("X-End-To-End"); got != "kept" {
		t.Errorf("end-to-end header lost: %q", got)
	}
}

func TestProxyDropsHopByHopResponseHeaders(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 200 OK\r\nConnection: X-Bar\r\nX-Bar: hop\r\nKeep-Alive: timeout=5\r\n" +
			"X-Kept: yes\r\nContent-Length: 2\r\n\r\nok")
		buf.Flush()
	}))
	defer up.Close()
	g := newTestGateway(t, gatewayOptions{targets: map[string]string{"query": up.URL}})
	res, body := g.do(t, "GET", "/api/v1/query/chats", nil, nil)
	if res.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("status = %d, body %q", res.StatusCode, body)
	}
	if res.Header.Get("X-Bar") != "" || res.Header.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop response headers reached the client: %v", res.Header)
	}
	if res.Header.Get("X-Kept") != "yes" {
		t.Errorf("end-to-end response header lost: %v", res.Header)
	}
}

func TestProxyPassesUpstreamResponseThrough(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.URL.Path {
		case "/api/v1/teapot":
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("X-Teapot", "short and stout")
			h.Add("Set-Cookie", "a=1; Path=/")
			h.Add("Set-Cookie", "b=2; Path=/")
			h.Set("Access-Control-Allow-Origin", "*")
			h.Set("Access-Control-Allow-Credentials", "true")
			w.WriteHeader(http.StatusTeapot)
			io.WriteString(w, "I'm a teapot\n")
		case "/api/v1/empty":
			h.Set("X-Deleted", "yes")
			w.WriteHeader(http.StatusNoContent)
		case "/api/v1/cached":
			h.Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		case "/api/v1/gzipped":
			h.Set("Content-Encoding", "gzip")
			h.Set("Content-Type", "application/json")
			w.Write([]byte{0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad})
		}
	}))
	defer up.Close()
	g := newTestGateway(t, gatewayOptions{targets: map[string]string{"query": up.URL}})

	res, body := g.do(t, "GET", "/api/v1/query/teapot", nil, nil)
	if res.StatusCode != http.StatusTeapot || string(body) != "I'm a teapot\n" {
		t.Errorf("teapot: status %d body %q", res.StatusCode, body)
	}
	if res.Header.Get("X-Teapot") != "short and stout" || len(res.Header.Values("Set-Cookie")) != 2 ||
		res.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("teapot headers changed: %v", res.Header)
	}
	res, body = g.do(t, "DELETE", "/api/v1/query/empty", nil, nil)
	if res.StatusCode != http.StatusNoContent || len(body) != 0 || res.Header.Get("X-Deleted") != "yes" {
		t.Errorf("204: status %d body %q headers %v", res.StatusCode, body, res.Header)
	}

	res, body = g.do(t, "GET", "/api/v1/query/cached", nil, http.Header{"If-None-Match": {`"v1"`}})
	if res.StatusCode != http.StatusNotModified || len(body) != 0 || res.Header.Get("ETag") != `"v1"` {
		t.Errorf("304: status %d body %q headers %v", res.StatusCode, body, res.Header)
	}

	// Compressed bodies pass untouched: neither decompressed nor re-encoded.
	req, _ := http.NewRequest("GET", g.URL+"/api/v1/query/gzipped", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	res, err := g.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.Equal(body, []byte{0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad}) || res.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("gzip body changed: % x, Content-Encoding %q", body, res.Header.Get("Content-Encoding"))
	}
}

func TestUpstreamTransportSettings(t *testing.T) {
	cfg := proxyTestConfig()
	cfg.HTTPClientTimeout = 42 * time.Second
	tr := newUpstreamTransport(cfg)
	if tr.Proxy != nil {
		t.Error("transport honours HTTP(S)_PROXY from the environment")
	}
	if tr.MaxConnsPerHost != 200 || tr.MaxIdleConnsPerHost != 100 || tr.MaxIdleConns < 3*100 {
		t.Errorf("pool sizes: conns/host %d, idle/host %d, idle %d", tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost, tr.MaxIdleConns)
	}
	if tr.ResponseHeaderTimeout != 42*time.Second || tr.IdleConnTimeout != 90*time.Second {
		t.Errorf("timeouts: header %v, idle %v", tr.ResponseHeaderTimeout, tr.IdleConnTimeout)
	}
	if !tr.DisableCompression {
		t.Error("compression enabled: bodies would not pass byte for byte")
	}
	if tr.Protocols == nil || tr.Protocols.HTTP2() || tr.Protocols.UnencryptedHTTP2() || !tr.Protocols.HTTP1() {
		t.Errorf("protocols = %v, want HTTP/1 only", tr.Protocols)
	}
}

func TestProxyReusesUpstreamConnectionsUnderConcurrency(t *testing.T) {
	const concurrent = 20
	var mu sync.Mutex
	newConns := 0
	var arrived sync.WaitGroup
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		arrived.Wait() // hold every request until all are in flight at once
		io.WriteString(w, "ok")
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			newConns++
			mu.Unlock()
		}
	}
	up.Start()
	defer up.Close()
	g := newTestGateway(t, gatewayOptions{targets: map[string]string{"query": up.URL}})
	g.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = concurrent

	round := func() int {
		mu.Lock()
		before := newConns
		mu.Unlock()
		arrived.Add(concurrent)
		var wg sync.WaitGroup
		for range concurrent {
			wg.Go(func() {
				res, err := g.Client().Get(g.URL + "/api/v1/query/chats")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			})
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return newConns - before
	}
	if n := round(); n != concurrent {
		t.Fatalf("first round opened %d upstream connections, want %d", n, concurrent)
	}
	// With Go's default of 2 idle connections per host, 18 of them would be opened again.
	if n := round(); n != 0 {
		t.Errorf("second round opened %d new upstream connections, want 0 (idle pool too small)", n)
	}
}

// bodySize is the size of the large bodies streamed through the proxy; memory growth while
// streaming must stay far below it.
const (
	bodySize       = 256 << 20
	maxStreamAlloc = 16 << 20
)

func generatedBody(seed byte) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{seed}), bodySize)
}

// allocatedDuring returns how many bytes the whole process allocated on the heap while f ran.
func allocatedDuring(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestProxyStreamsLargeUploadWithoutBuffering(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB")
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	}))
	defer up.Close()
	g := newTestGateway(t, gatewayOptions{targets: map[string]string{"ingest": up.URL}})
	g.do(t, "POST", "/api/v1/ingest/upload", strings.NewReader("warm"), nil) // pools and buffers exist before measuring

	sent := sha256.New()
	var got string
	var status int
	alloc := allocatedDuring(func() {
		req, _ := http.NewRequest("POST", g.URL+"/api/v1/ingest/upload", io.TeeReader(generatedBody(1), sent))
		req.ContentLength = bodySize
		res, err := g.Client().Do(req)
		if err != nil {
			t.Errorf("upload: %v", err)
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		got, status = string(b), res.StatusCode
	})
	if want := fmt.Sprintf("%d %x", bodySize, sent.Sum(nil)); status != http.StatusOK || got != want {
		t.Fatalf("upstream received %q (status %d), want %q", got, status, want)
	}
	t.Logf("heap allocated while streaming 256 MiB up: %.2f MiB", float64(alloc)/(1<<20))
	if alloc > maxStreamAlloc {
		t.Errorf("allocated %d bytes streaming a %d-byte upload: the body is being buffered", alloc, bodySize)
	}
}

func TestProxyStreamsLargeDownloadWithoutBuffering(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB")
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		if r.URL.Path == "/api/v1/ingest/warm" {
			io.WriteString(w, "warm")
			return
		}
		if r.URL.Query().Get("length") == "known" {
			w.Header().Set("Content-Length", fmt.Sprint(bodySize))
		}
		io.Copy(w, generatedBody(2))
	}))
	defer up.Close()
	g := newTestGateway(t, gatewayOptions{targets: map[string]string{"ingest": up.URL}})
	g.do(t, "GET", "/api/v1/ingest/warm", nil, nil)

	want := sha256.New()
	io.Copy(want, generatedBody(2))
	for _, length := range []string{"known", "unknown"} {
		t.Run(length+" length", func(t *testing.T) {
			got := sha256.New()
			var n int64
			alloc := allocatedDuring(func() {
				res, err := g.Client().Get(g.URL + "/api/v1/ingest/file?length=" + length)
				if err != nil {
					t.Errorf("download: %v", err)
					return
				}
				n, err = io.Copy(got, res.Body)
				res.Body.Close()
				if err != nil {
					t.Errorf("download body: %v", err)
				}
			})
			if n != bodySize || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				t.Fatalf("client received %d bytes with another hash, want %d", n, bodySize)
			}
			t.Logf("heap allocated while streaming 256 MiB down: %.2f MiB", float64(alloc)/(1<<20))
			if alloc > maxStreamAlloc {
				t.Errorf("allocated %d bytes streaming a %d-byte download: the body is being buffered", alloc, bodySize)
			}
		})
	}
}

// readWithin reads from r until the reader has produced want, or fails after d.
func readWithin(t *testing.T, r *bufio.Reader, want string, d time.Duration) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var b strings.Builder
		for !strings.Contains(b.String(), want) {
			line, err := r.ReadString('\n')
			b.WriteString(line)
			if err != nil {
				break
			}
		}
		got <- b.String()
	}()
	select {
	case s := <-got:
		if !strings.Contains(s, want) {
			t.Fatalf("stream ended with %q before %q", s, want)
		}
	case <-time.After(d):
		t.Fatalf("%q did not arrive within %v", want, d)
	}
}

func TestProxyDeliversFirstSSEEventWhileUpstreamOpen(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		rc.Flush()
		n, _ := io.Copy(io.Discard, r.Body) // blocks until the client finishes its body
		fmt.Fprintf(w, "data: done %d\n\n", n)
	}))
	defer up.Close()
	g := newTestGateway(t, gatewayOptions{targets: map[string]string{"query": up.URL}})

	pr, pw := io.Pipe()
	defer pw.CloseWithError(errors.New("test over"))
	go pw.Write([]byte(`{"query":"first half`))
	req, _ := http.NewRequest("POST", g.URL+"/api/v1/query/ask", pr)
	req.Header.Set("Content-Type", "application/json")
	type result struct {
		res *http.Response
		err error
	}
	results := make(chan result, 1)
	go func() {
		res, err := g.Client().Do(req)
		results <- result{res, err}
	}()
	var res *http.Response
	select {
	case r := <-results:
		if r.err != nil {
			t.Fatalf("ask: %v", r.err)
		}
		res = r.res
	case <-time.After(2 * time.Second):
		t.Fatal("no response headers within 2 s while the request body is open")
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	br := bufio.NewReader(res.Body)
	readWithin(t, br, "data: first\n\n", 2*time.Second)

	io.WriteString(pw, ` second half"}`)
	pw.Close()
	readWithin(t, br, fmt.Sprintf("data: done %d\n\n", len(`{"query":"first half second half"}`)), 5*time.Second)
}

func TestProxyDeliversUnknownLengthBodyAsProduced(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		io.WriteString(w, `{"n":1}`+"\n")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, `{"n":2}`+"\n")
	}))
	defer up.Close()
	defer close(release)
	g := newTestGateway(t, gatewayOptions{targets: map[string]string{"ingest": up.URL}})
	res, err := g.Client().Get(g.URL + "/api/v1/ingest/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	readWithin(t, bufio.NewReader(res.Body), `{"n":1}`+"\n", 2*time.Second)
}

func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestProxyAnswersUpstreamFailures(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then the server notices when the gateway hangs up
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer slow.Close()
	hijack := func(reply string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			buf.WriteString(reply)
			buf.Flush()
			conn.Close()
		}))
		t.Cleanup(s.Close)
		return s
	}
	cfg := proxyTestConfig()
	cfg.HTTPClientTimeout = 300 * time.Millisecond
	for _, c := range []struct {
		name, target string
		status       int
		detail, kind string
	}{
		{"closed port", closedPortURL(t), 503, "Upstream service unavailable", kindUnavailable},
		{"no response headers in time", slow.URL, 504, "Upstream service timed out", kindTimeout},
		{"garbage instead of HTTP", hijack("SSH-2.0-OpenSSH_9.6\r\n\r\n").URL, 502, "Bad gateway", kindBadResponse},
		{"connection closed mid-headers", hijack("HTTP/1.1 200 OK\r\nContent-Ty").URL, 502, "Bad gateway", kindBadResponse},
		{"connection closed without a byte", hijack("").URL, 502, "Bad gateway", kindBadResponse},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newTestGateway(t, gatewayOptions{cfg: cfg, targets: map[string]string{"ingest": c.target}})
			start := time.Now()
			res, body := g.do(t, "POST", "/api/v1/ingest/upload?secret=q", strings.NewReader("data"),
				http.Header{"Authorization": {"Bearer sekret-token-value"}})
			wantJSONError(t, res, body, c.status, c.detail)
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("answered after %v", d)
			}
			logs := g.logs.String()
			for _, want := range []string{`"upstream":"ingest"`, `"method":"POST"`, `"path":"/api/v1/ingest/upload"`,
				`"kind":"` + c.kind + `"`, `"request_id":"` + res.Header.Get("X-Request-ID") + `"`} {
				if !strings.Contains(logs, want) {
					t.Errorf("log lacks %s: %s", want, logs)
				}
			}
			if strings.Contains(logs, "sekret-token-value") {
				t.Errorf("log contains the bearer token: %s", logs)
			}
		})
	}
}

func TestProxyRecordsClientGoneWithoutAnswering(t *testing.T) {
	arrived := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
	}))
	defer up.Close()
	g := newTestGateway(t, gatewayOptions{targets: map[string]string{"query": up.URL}})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", g.URL+"/api/v1/query/ask", nil)
	errc := make(chan error, 1)
	go func() {
		res, err := g.Client().Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("request never reached the upstream")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v", err)
	}
	select {
	case info := <-g.done:
		if info.UpstreamStatus != statusClientClosedRequest || info.Upstream != "query" {
			t.Errorf("recorded upstream %q status %d, want query 499", info.Upstream, info.UpstreamStatus)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("gateway handler did not finish after the client left")
	}
	if logs := g.logs.String(); !strings.Contains(logs, `"kind":"client_gone"`) {
		t.Errorf("client gone not logged: %s", logs)
	}
}

func TestProxyDoesNotBlameUpstreamForBrokenUploads(t *testing.T) {
	for _, c := range []struct {
		name, request string
		closeWrite    bool
		status        int // 0: the client is gone, nothing to read
	}{
		{"client hangs up mid-upload", "Content-Length: 1048576\r\n\r\nonly a few bytes", true, 0},
		{"malformed chunked body", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\n", false, 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newTestGateway(t, gatewayOptions{})
			conn, err := net.Dial("tcp", g.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, "POST /api/v1/ingest/upload HTTP/1.1\r\nHost: gateway.test\r\n"+
				"Content-Type: application/octet-stream\r\n"+c.request)
			if c.closeWrite {
				conn.(*net.TCPConn).CloseWrite()
			}
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if c.status != 0 {
				wantJSONError(t, res, body, c.status, "Invalid request body")
			}
			select {
			case info := <-g.done:
				if info.UpstreamStatus != statusClientClosedRequest {
					t.Errorf("recorded upstream status %d, want 499", info.UpstreamStatus)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("gateway handler did not finish")
			}
			logs := g.logs.String()
			if !strings.Contains(logs, `"kind":"client_gone"`) || strings.Contains(logs, `"kind":"bad_response"`) {
				t.Errorf("broken upload logged as an upstream failure: %s", logs)
			}
		})
	}
}

// timeoutErr is a net.Error reporting a timeout, like the transport's header timeout.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassifyUpstreamError(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	live := context.Background()
	for _, c := range []struct {
		name   string
		ctx    context.Context
		err    error
		kind   string
		status int
	}{
		{"client canceled", canceled, context.Canceled, kindClientGone, 0},
		{"client canceled during a dial failure", canceled, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, kindClientGone, 0},
		{"connection refused", live, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, kindUnavailable, 503},
		{"no such host", live, &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "ingest.invalid", IsNotFound: true}}, kindUnavailable, 503},
		{"bare DNS error", live, fmt.Errorf("lookup: %w", &net.DNSError{Err: "server misbehaving", IsTemporary: true}), kindUnavailable, 503},
		{"dial timeout", live, &net.OpError{Op: "dial", Err: timeoutErr{}}, kindUnavailable, 503},
		{"header timeout (net.Error)", live, fmt.Errorf("round trip: %w", timeoutErr{}), kindTimeout, 504},
		{"header timeout (message)", live, errors.New("net/http: timeout awaiting response headers"), kindTimeout, 504},
		{"request deadline", expired, context.DeadlineExceeded, kindTimeout, 504},
		{"client body cut short", live, fmt.Errorf("write: %w", &clientBodyError{io.ErrUnexpectedEOF}), kindClientGone, 400},
		{"client body too large", live, &clientBodyError{&http.MaxBytesError{Limit: 10}}, kindClientGone, 413},
		{"connection reset", live, &net.OpError{Op: "read", Err: syscall.ECONNRESET}, kindBadResponse, 502},
		{"unexpected EOF", live, io.ErrUnexpectedEOF, kindBadResponse, 502},
		{"malformed response", live, errors.New(`net/http: HTTP/1.x transport connection broken: malformed HTTP response "SSH-2.0"`), kindBadResponse, 502},
	} {
		t.Run(c.name, func(t *testing.T) {
			kind, answer := classifyUpstreamError(c.ctx, c.err)
			status := 0
			if answer != nil {
				status = answer.status
				if answer.code == "" || answer.detail == "" {
					t.Errorf("status %d with code %q, detail %q", status, answer.code, answer.detail)
				}
			}
			if kind != c.kind || status != c.status {
				t.Errorf("got %s %d, want %s %d", kind, status, c.kind, c.status)
			}
		})
	}
}

// traversalAttempts are request targets that try to leave their route's prefix or to be read
// differently by a backend.
var traversalAttempts = []string{
	"/api/v1/ingest/../../admin",
	"/api/v1/ingest/..",
	"/api/v1/ingest/%2e%2e/secret",
	"/api/v1/ingest/%2E%2E/secret",
	"/api/v1/ingest/.%2e/secret",
	"/api/v1/ingest/%2e/secret",
	"/api/v1/query/..%2f..%2fadmin",
	"/api/v1/query/..%2F..%2Fadmin",
	"/api/v1/query/chats%2f..%2f..%2fusers",
	"/api/v1/ingest//etc",
	"/api/v1/ingest//etc/passwd",
	"/api/v1/ingest/a%5c..%5cb",
	"/api/v1/ingest/a%5C..%5Cb",
	`/api/v1/ingest/a\..\b`,
	"/api/v1/ingest/%252e%252e/x",
	"/api/v1/ingest/%25%32%65%25%32%65/x",
	"/api/v1/query/./chats",
	"/api/v1/query/chats/.",
	"/api/v1/query/chats/..",
	"/api/v1/ingest/..;/admin",
	"/api/v1/ingest/x/%00",
	"/api/v1/ingest/x%00y",
	"/api/v1/ingest/x%0d%0aX-Injected:%201",
	"/api/v1/ingest/%c0%ae%c0%ae/x",
	"/api/v1/ingest/%e0%80%ae%e0%80%ae/x",
	"/api/v1/ingest/%u002e%u002e/x",
	"/api/v1/ingest/%2",
	"/api/v1/auth/../users/login",
	"/api/v1/auth/%2e%2e/users/login",
	"/api/v1/query/../ingest/x",
	"/api/v1/../v1/ingest/x",
	"//api/v1/ingest/x",
	"http://gateway.test/api/v1/ingest/../../admin",
	"/health/../api/v1/ingest/x",
}

func TestProxyRefusesPathTraversal(t *testing.T) {
	g := newTestGateway(t, gatewayOptions{})
	addr := g.Listener.Addr().String()
	for _, target := range traversalAttempts {
		t.Run(target, func(t *testing.T) {
			res, body := rawRequest(t, addr, "GET "+target+" HTTP/1.1")
			if res.StatusCode != http.StatusBadRequest && res.StatusCode != http.StatusNotFound {
				t.Fatalf("status = %d, body %s", res.StatusCode, body)
			}
			if res.Header.Get("X-Request-ID") == "" {
				// Go's server refused the request line itself, before any handler: it never
				// reached an upstream, which is all that matters here.
				t.Logf("refused by the HTTP server: %d %q", res.StatusCode, body)
				return
			}
			wantJSONError(t, res, body, res.StatusCode, "")
		})
	}
	for up, prefix := range g.upstreams() {
		for _, e := range up.requests() {
			t.Errorf("upstream %s saw %s (prefix %s)", up.name, e.RequestURI, prefix)
		}
	}
}

func TestProxyAcceptsOrdinaryPaths(t *testing.T) {
	g := newTestGateway(t, gatewayOptions{})
	addr := g.Listener.Addr().String()
	for _, c := range []struct{ target, want string }{
		{"/api/v1/ingest/", "/api/v1/ingest/"},
		{"/api/v1/query/", "/api/v1/"},
		{"/api/v1/ingest/informe%20final.pdf", "/api/v1/ingest/informe%20final.pdf"},
		{"/api/v1/ingest/%C3%A9t%C3%A9/v1.2/...", "/api/v1/ingest/%C3%A9t%C3%A9/v1.2/..."},
		{"/api/v1/ingest/.well-known/x", "/api/v1/ingest/.well-known/x"},
		{"/api/v1/query/chats/a;b=c/messages", "/api/v1/chats/a;b=c/messages"},
		{"/api/v1/query/chats/x%3Fy", "/api/v1/chats/x%3Fy"},
	} {
		res, body := rawRequest(t, addr, "GET "+c.target+" HTTP/1.1")
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s: status = %d, body %s", c.target, res.StatusCode, body)
			continue
		}
		if got := decodeEcho(t, body).RequestURI; got != c.want {
			t.Errorf("%s: upstream target = %q, want %q", c.target, got, c.want)
		}
	}
}

func TestMapUpstreamPath(t *testing.T) {
	for _, c := range []struct {
		path, gw, up string
		want         string
		ok           bool
	}{
		{"/api/v1/query/chats", "/api/v1/query/", "/api/v1/", "/api/v1/chats", true},
		{"/api/v1/query/ask", "/api/v1/query/", "/api/v1/", "/api/v1/ask", true},
		{"/api/v1/query", "/api/v1/query/", "/api/v1/", "/api/v1/", true},
		{"/api/v1/query/", "/api/v1/query/", "/api/v1/", "/api/v1/", true},
		{"/api/v1/ingest/upload", "/api/v1/ingest/", "/api/v1/ingest/", "/api/v1/ingest/upload", true},
		{"/api/v1/ingest", "/api/v1/ingest/", "/api/v1/ingest/", "/api/v1/ingest/", true},
		{"/api/v1/ingest/a%20b", "/api/v1/ingest/", "/api/v1/ingest/", "/api/v1/ingest/a%20b", true},
		{"/api/v1/ingestx/upload", "/api/v1/ingest/", "/api/v1/ingest/", "", false},
		{"/api/v1/queryx", "/api/v1/query/", "/api/v1/", "", false},
		{"/api/v1/users/login", "/api/v1/query/", "/api/v1/", "", false},
		{"/api/v1/query/../users", "/api/v1/query/", "/api/v1/", "", false},
		{"/api/v1/query/chats", "/api/v1/query", "/api/v1/", "", false},  // prefix without '/'
		{"/api/v1/query/chats", "/api/v1/query/", "/api/../", "", false}, // unsafe upstream prefix
	} {
		got, ok := mapUpstreamPath(c.path, c.gw, c.up)
		if got != c.want || ok != c.ok {
			t.Errorf("mapUpstreamPath(%q, %q, %q) = %q, %v; want %q, %v", c.path, c.gw, c.up, got, ok, c.want, c.ok)
		}
	}
}

func TestSafePath(t *testing.T) {
	safe := []string{"/", "/api/v1/ingest/", "/a/b.c", "/a/.b", "/a/b.", "/a/...", "/a/..b", "/a/b;c",
		"/a%20b", "/%C3%A9", "/a/%3F%23", "/a:b@c!$&'()*+,=", "/%e0%a0%80", "/%f0%90%80%80"}
	for _, p := range safe {
		if !safePath(p) {
			t.Errorf("safePath(%q) = false, want true", p)
		}
	}
	unsafe := []string{"", "a/b", "*", "/a/./b", "/a/../b", "/..", "/.", "/a/.", "//", "/a//b", "/a/b//",
		"/a\\b", "/%2e", "/%2E", "/%2f", "/%2F", "/%5c", "/%5C", "/%25", "/%252e", "/%", "/%2", "/%zz",
		"/%00", "/%1f", "/%7f", "/%7F", "/a\x00b", "/a\nb", "/a b", "/a?b", "/a#b", "/\x7f", "/\x80",
		"/..;/x", "/.;x/y", "/%c0%ae", "/%C1%9C", "/%e0%80%ae", "/%f0%80%80%ae", "/%f5%80", "/%ff"}
	for _, p := range unsafe {
		if safePath(p) {
			t.Errorf("safePath(%q) = true, want false", p)
		}
	}
}

var fuzzMappings = []struct{ gw, up string }{
	{"/api/v1/ingest/", "/api/v1/ingest/"},
	{"/api/v1/query/", "/api/v1/"},
	{"/api/v1/auth/", "/api/v1/auth/"},
}

func FuzzMapUpstreamPath(f *testing.F) {
	for _, p := range traversalAttempts {
		for i := range fuzzMappings {
			f.Add(p, uint8(i))
		}
	}
	for _, p := range []string{"/api/v1/query/chats", "/api/v1/query", "/api/v1/ingest/a%20b/c", "/api/v1/auth/x;y",
		"/api/v1/ingest/%C3%A9", "/api/v1/query/chats/.../x"} {
		f.Add(p, uint8(0))
		f.Add(p, uint8(1))
	}
	f.Fuzz(func(t *testing.T, escapedPath string, which uint8) {
		m := fuzzMappings[int(which)%len(fuzzMappings)]
		got, ok := mapUpstreamPath(escapedPath, m.gw, m.up)
		if !ok {
			if got != "" {
				t.Fatalf("refused with a result %q", got)
			}
			return
		}
		if !safePath(escapedPath) {
			t.Fatalf("mapped %q although rejectUnsafePaths refuses it", escapedPath)
		}
		if !strings.HasPrefix(got, m.up) {
			t.Fatalf("%q mapped to %q, outside %q", escapedPath, got, m.up)
		}
		unescaped, err := url.PathUnescape(got)
		if err != nil {
			t.Fatalf("%q mapped to %q, which does not unescape: %v", escapedPath, got, err)
		}
		if clean := path.Clean(unescaped); !strings.HasPrefix(clean+"/", m.up) {
			t.Fatalf("%q mapped to %q, which cleans to %q outside %q", escapedPath, got, clean, m.up)
		}
		if strings.Contains(unescaped, "\\") || strings.Contains(unescaped, "//") {
			t.Fatalf("%q mapped to %q, which unescapes to %q", escapedPath, got, unescaped)
		}
	})
}

// discardWriter is a ResponseWriter that keeps nothing, so benchmarks measure the proxy.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Flush()                      {}

// rewindBody lets one request body be replayed every iteration without allocating.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

func BenchmarkProxyRequest(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	defer up.Close()
	cfg := proxyTestConfig()
	transport := newUpstreamTransport(cfg)
	defer transport.CloseIdleConnections()
	target, _ := url.Parse(up.URL)
	h := newProxy(upstream{name: "query", target: target, gatewayPrefix: "/api/v1/query/", upstreamPrefix: "/api/v1/"},
		transport, cfg, nil, nil)
	for _, c := range []struct {
		name, method string
		body         []byte
	}{
		{"GET", "GET", nil},
		{"POST-4KiB", "POST", bytes.Repeat([]byte("x"), 4<<10)},
	} {
		b.Run(c.name, func(b *testing.B) {
			info := &requestInfo{ID: "bench-request-id", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
			ctx := withCaller(context.Background(), info, testIdentity)
			body := &rewindBody{}
			req := httptest.NewRequestWithContext(ctx, c.method, "http://gateway.test/api/v1/query/chats?limit=10", nil)
			req.RemoteAddr = "203.0.113.7:52000"
			req.Header.Set("Authorization", "Bearer header.payload.signature")
			req.Header.Set("Accept", "application/json")
			req.Header.Set("User-Agent", "Mozilla/5.0")
			w := &discardWriter{h: make(http.Header)}
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				if c.body != nil {
					body.Reset(c.body)
					req.Body, req.ContentLength = body, int64(len(c.body))
				}
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}

func BenchmarkRewriteHeaders(b *testing.B) {
	in := httptest.NewRequest("GET", "http://gateway.test/api/v1/query/chats", nil)
	in.RemoteAddr = "203.0.113.7:52000"
	in.Header = http.Header{
		"Authorization":   {"Bearer header.payload.signature"},
		"Accept":          {"application/json"},
		"User-Agent":      {"Mozilla/5.0"},
		"Accept-Language": {"es-ES,es;q=0.9"},
		"Traceparent":     {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"X-Company-Id":    {"forged"},
		"X_user_id":       {"forged"},
	}
	info := &requestInfo{ID: "bench-request-id", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"}
	in = in.WithContext(withCaller(in.Context(), info, testIdentity))
	out := make(http.Header, 16)
	b.ReportAllocs()
	for b.Loop() {
		clear(out)
		for k, v := range in.Header {
			out[k] = v
		}
		setUpstreamHeaders(out, in, info)
	}
	if out.Get("X-Company-Id") != testIdentity.CompanyID || out.Get("X_user_id") != "" {
		b.Fatalf("headers not rewritten: %v", out)
	}
}
