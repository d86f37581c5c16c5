// slow_clients_test.go: the real server (through run) against slow, oversized and junk
// requests: each is cut off or refused with a 4xx, and the server keeps serving.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// rawExchange dials addr, writes req (all at once in the background, as a client would
// keep writing, or a byte every 50 ms when trickle is set), and returns everything the
// server sent until it closed the connection, and when.
func rawExchange(t *testing.T, addr string, req []byte, trickle bool) ([]byte, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if trickle {
		return trickleUntilClosed(t, c, req)
	}
	t0 := time.Now()
	go c.Write(req)
	return readUntilClosed(t, c, t0)
}

// trickleUntilClosed writes req to c a byte every 50 ms and returns what the server sent
// until it closed the connection, and when.
func trickleUntilClosed(t *testing.T, c net.Conn, req []byte) ([]byte, time.Duration) {
	t.Helper()
	t0 := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for _, b := range req {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond): // paces the client against the server's real deadline
			}
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	return readUntilClosed(t, c, t0)
}

// readUntilClosed returns what the server sent on c until it closed the connection, and
// how long after t0; a server still holding it open after 5 s fails the test.
func readUntilClosed(t *testing.T, c net.Conn, t0 time.Time) ([]byte, time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("server kept the connection open for 5s (got %q)", got)
	}
	return got, time.Since(t0)
}

// checkCutOff checks a slow body was answered with a 408 JSON about when the 300 ms limit
// ran out. A client still writing may see the connection reset before it reads the answer,
// so for it no answer at all is fine too.
func checkCutOff(t *testing.T, got []byte, took time.Duration, stillWriting bool) {
	t.Helper()
	if took < 250*time.Millisecond || took > 3*time.Second {
		t.Errorf("closed after %v, want about 300ms", took)
	}
	if len(got) == 0 && stillWriting {
		return
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil)
	if err != nil {
		t.Fatalf("not an HTTP answer: %q", got)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	mustStatus(t, response{resp.StatusCode, resp.Header, b}, http.StatusRequestTimeout)
}

// TestHostileClientsAreCutOffAndTheServerKeepsServing runs the real server, whose own
// timeouts and header limit are under test, so slow clients really trickle.
func TestHostileClientsAreCutOffAndTheServerKeepsServing(t *testing.T) {
	t.Parallel()
	dbURL := testDatabaseURL(t)
	store, err := openPostgres(context.Background(), dbURL, testDBTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	company, err := store.CreateCompany(context.Background(), "Acme")
	if err != nil {
		t.Fatal(err)
	}
	user, err := store.CreateUser(context.Background(), NewUser{Email: "client@example.com", HashedPassword: "x", CompanyID: company.ID})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signToken([]byte(testSecret), Claims{Subject: user.ID, Email: user.Email, CompanyID: company.ID, ExpiresAt: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	up, hits := countingUpstream(t)

	env := postgresEnv(t, dbURL)
	env["GATEWAY_JWT_SECRET"] = testSecret
	env["GATEWAY_QUERY_SERVICE_URL"] = up.URL
	env["GATEWAY_READ_HEADER_TIMEOUT"] = "300ms"
	env["GATEWAY_DRAIN_DELAY"] = "0s"
	env["GATEWAY_SHUTDOWN_GRACE"] = "1s"
	ctx, cancel := context.WithCancel(context.Background())
	g := startRun(t, ctx, nil, env)
	t.Cleanup(func() {
		cancel()
		if err := g.wait(10 * time.Second); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	addr := strings.TrimPrefix(g.base, "http://")
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	send := func(method, p, auth string, body io.Reader) response {
		t.Helper()
		req, err := http.NewRequest(method, g.base+p, body)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, p, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return response{resp.StatusCode, resp.Header, b}
	}

	t.Run("unfinished headers are closed after the header timeout", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			req     string
			trickle bool
		}{
			{"partial request line, then silence", "GET /api/v1/query/ch", false},
			{"headers without their blank line", "GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n", false},
			// Slowloris: a byte every 50 ms keeps the connection busy but never finishes.
			{"headers trickled byte by byte", "GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 200), true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel() // independent connections to one server
				got, took := rawExchange(t, addr, []byte(tc.req), tc.trickle)
				if took < 250*time.Millisecond || took > 3*time.Second {
					t.Errorf("closed after %v, want about the 300ms header timeout", took)
				}
				if bytes.HasPrefix(got, []byte("HTTP/1.1 5")) {
					t.Errorf("server error for a slow client: %q", got)
				}
			})
		}
	})

	t.Run("JSON bodies that never finish are cut off", func(t *testing.T) {
		// The server has no ReadTimeout (it would cut slow proxied uploads), so the gateway's
		// own endpoints bound their small bodies themselves, to the header timeout.
		for _, tc := range []struct {
			name string
			head string
		}{
			{"login", "POST /api/v1/users/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"},
			{"ensure-company", "POST /api/v1/users/me/ensure-company HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\n"},
		} {
			for _, body := range []struct {
				name    string
				req     string
				trickle bool
			}{
				{"stalled", tc.head + "Content-Length: 100\r\n\r\n{\"email\":", false},
				{"trickled", tc.head + "Content-Length: 400\r\n\r\n" + strings.Repeat(" ", 400), true},
				{"stalled chunked", tc.head + "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":", false},
			} {
				t.Run(tc.name+" "+body.name, func(t *testing.T) {
					t.Parallel() // independent connections to one server
					req := body.req
					if body.trickle {
						// The headers at once, then the body byte by byte.
						head, rest, _ := strings.Cut(req, "\r\n\r\n")
						req = rest
						c, err := net.Dial("tcp", addr)
						if err != nil {
							t.Fatal(err)
						}
						defer c.Close()
						io.WriteString(c, head+"\r\n\r\n")
						got, took := trickleUntilClosed(t, c, []byte(req))
						checkCutOff(t, got, took, true)
						return
					}
					got, took := rawExchange(t, addr, []byte(req), false)
					checkCutOff(t, got, took, false)
				})
			}
		}
	})

	t.Run("oversized headers get 431", func(t *testing.T) {
		for _, name := range []string{"X-Padding", "Authorization"} {
			value := strings.Repeat("a", 80<<10)
			if name == "Authorization" {
				value = "Bearer " + value
			}
			got, _ := rawExchange(t, addr, []byte("GET /api/v1/query/chats HTTP/1.1\r\nHost: x\r\n"+name+": "+value+"\r\n\r\n"), false)
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil)
			if err != nil {
				t.Fatalf("%s: no HTTP answer: %v (%q)", name, err, got)
			}
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("%s of 80 KiB: status %d, want 431", name, resp.StatusCode)
			}
		}
	})

	t.Run("oversized JSON bodies get 413", func(t *testing.T) {
		big := `{"email":"a@example.com","password":"` + strings.Repeat("p", 1<<20) + `"}`
		r := send("POST", "/api/v1/users/login", "", strings.NewReader(big))
		mustStatus(t, r, http.StatusRequestEntityTooLarge)
		r.detail(t)
		big = `{"company_id":"` + strings.Repeat("c", 1<<20) + `"}`
		r = send("POST", "/api/v1/users/me/ensure-company", "Bearer "+tok, strings.NewReader(big))
		mustStatus(t, r, http.StatusRequestEntityTooLarge)
		r.detail(t)
	})

	t.Run("junk Authorization gets 401", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		randomBytes := func(n int, lo, hi byte) []byte {
			b := make([]byte, n)
			for i := range b {
				b[i] = lo + byte(rng.IntN(int(hi-lo)+1))
			}
			return b
		}
		b64 := func(n int) string { return base64.RawURLEncoding.EncodeToString(randomBytes(n, 0, 255)) }
		cases := []struct{ name, auth string }{
			{"1 byte", "x"},
			{"scheme only", "Bearer"},
			{"scheme and a space", "Bearer "},
			{"other scheme", "Basic YWxhZGRpbjpvcGVuc2VzYW1l"},
			{"three dots", "Bearer ..."},
			{"many spaces", "Bearer" + strings.Repeat(" ", 4000)},
			{"spaces around a junk token", "Bearer " + strings.Repeat(" ", 4000) + "x" + strings.Repeat(" ", 100)},
			{"8 KiB", "Bearer " + strings.Repeat("A", 8<<10)},
			{"60 KiB of random base64", "Bearer " + b64(45<<10)},
			{"three 20 KiB segments", "Bearer " + b64(15<<10) + "." + b64(15<<10) + "." + b64(15<<10)},
			{"binary-looking bytes", "Bearer " + string(randomBytes(2000, 0x80, 0xff))},
			{"binary-looking token segments", "Bearer " + string(randomBytes(40, 0x80, 0xff)) + "." + string(randomBytes(40, 0x80, 0xff)) + "."},
			{"unsigned alg none", "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIn0."},
			{"tab-separated", "Bearer\t" + tok},
			{"token twice", "Bearer " + tok + " " + tok},
			{"token with a signature byte changed", "Bearer " + tok[:len(tok)-2] + "AA"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := send("GET", "/api/v1/query/chats", tc.auth, nil)
				mustStatus(t, r, http.StatusUnauthorized)
				r.detail(t)
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
				}
			})
		}
		// Bytes no HTTP client may send reach the server only raw: net/http refuses them
		// before any handler, with a 400, never a 5xx.
		for _, auth := range []string{"Bearer \x01\x02\x03", "Bearer a\x00b", "Bearer \x7f"} {
			got, _ := rawExchange(t, addr, []byte("GET /api/v1/query/chats HTTP/1.1\r\nHost: x\r\nAuthorization: "+auth+"\r\nConnection: close\r\n\r\n"), false)
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil)
			if err != nil {
				t.Fatalf("%q: no HTTP answer: %v (%q)", auth, err, got)
			}
			if resp.StatusCode/100 != 4 {
				t.Fatalf("%q: status %d, want a 4xx", auth, resp.StatusCode)
			}
		}
		if n := hits.Load(); n != 0 {
			t.Fatalf("%d junk-authorised requests reached the upstream", n)
		}
	})

	// After all that, the same server still serves.
	mustStatus(t, send("GET", "/api/v1/query/chats", "Bearer "+tok, nil), http.StatusOK)
	if n := hits.Load(); n != 1 {
		t.Fatalf("upstream saw %d requests, want 1", n)
	}
}

// FuzzJunkAuthorizationNeverServerError sends any Authorization value to a proxied route:
// without the secret no value can be a valid token, so every answer is a 401 JSON.
func FuzzJunkAuthorizationNeverServerError(f *testing.F) {
	for _, seed := range []string{
		"", "x", "Bearer", "Bearer ", "bearer  ", "Bearer ...", "Bearer a.b.c", "BEARER a.b.c",
		"Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Bearer " + strings.Repeat("A", 9000),
		"Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIn0.",
		"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMTExMTExMS0yMjIyLTQzMzMtODQ0NC01NTU1NTU1NTU1NTUiLCJleHAiOjk5OTk5OTk5OTl9.AAAA",
		"Bearer \x00\xff\xfe", "Bearer \t\r\n x",
	} {
		f.Add(seed)
	}
	cfg := testConfig(f, map[string]string{"GATEWAY_QUERY_SERVICE_URL": "http://127.0.0.1:9"})
	gw := newGateway(cfg, slog.New(slog.DiscardHandler), newMemoryStore(), newMetrics())
	f.Cleanup(gw.close)
	handler := gw.routes()
	f.Fuzz(func(t *testing.T, auth string) {
		req := httptest.NewRequest("GET", "/api/v1/query/chats", nil)
		req.Header["Authorization"] = []string{auth}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		r := response{rec.Code, rec.Result().Header, rec.Body.Bytes()}
		mustStatus(t, r, http.StatusUnauthorized)
		r.detail(t)
	})
}
