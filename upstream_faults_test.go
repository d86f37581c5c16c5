// upstream_faults_test.go: upstreams that refuse, stall, reset or send huge headers get JSON
// answers or a visibly broken stream, and leave no goroutine or connection behind.
package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// faultUpstream is a raw TCP upstream that misbehaves as the last element of the request
// path says, and counts the connections it is still serving.
type faultUpstream struct {
	ln   net.Listener
	open atomic.Int64
	// resetNow lets a stream that sent its headers reset: the test sends once its client
	// has them, so the status is surely on the wire.
	resetNow chan struct{}
}

func newFaultUpstream(t *testing.T) *faultUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &faultUpstream{ln: ln, resetNow: make(chan struct{}, 1)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.open.Add(1)
			go f.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return f
}

func (f *faultUpstream) URL() string { return "http://" + f.ln.Addr().String() }

// reset closes c with a TCP RST rather than a FIN.
func reset(c net.Conn) {
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

func (f *faultUpstream) serve(c net.Conn) {
	defer f.open.Add(-1)
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		switch path.Base(req.URL.Path) {
		case "ok":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
			continue
		case "stall": // never answer; wait for the gateway to hang up
			io.Copy(io.Discard, br)
		case "reset-mid-headers":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Ty")
			reset(c)
		case "reset-mid-body":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n")
			c.Write(bytes.Repeat([]byte("a"), 64<<10)) // more than the gateway buffers before flushing
			f.waitForReset()
			reset(c)
		case "reset-mid-chunked":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
			io.WriteString(c, "e\r\ndata: first\n\n\r\n")
			f.waitForReset()
			reset(c)
		case "endless":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
			for {
				if _, err := io.WriteString(c, "8\r\ndata: x\n\r\n"); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond) // paces the stream: a slow one, not a flood
			}
		case "100k-header":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Huge: %s\r\nContent-Length: 2\r\n\r\n{}", strings.Repeat("h", 100<<10))
			continue
		case "11m-header": // past net/http's own 10 MiB default
			io.WriteString(c, "HTTP/1.1 200 OK\r\n")
			line := "X-Huge: " + strings.Repeat("h", 64<<10) + "\r\n"
			for range 11 << 20 / len(line) {
				if _, err := io.WriteString(c, line); err != nil {
					return
				}
			}
			io.WriteString(c, "Content-Length: 2\r\n\r\n{}")
		}
		return
	}
}

func (f *faultUpstream) waitForReset() {
	select {
	case <-f.resetNow:
	case <-time.After(5 * time.Second): // the client never got the headers: the test fails
	}
}

// goroutinesSettle waits up to limit for the goroutine count to come back to at most want,
// and returns the last count.
func goroutinesSettle(want int, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond) // polls
	}
}

func TestUpstreamFaultsAnswerJSONAndLeakNoGoroutines(t *testing.T) {
	// Not parallel: the goroutine count is the whole process's.
	fault := newFaultUpstream(t)
	e := startGateway(t, withEnv(map[string]string{"GATEWAY_QUERY_SERVICE_URL": fault.URL(),
		"GATEWAY_INGEST_SERVICE_URL": closedPortURL(t)}), withConfig(func(c *Config) {
		// Short, so the stalled upstream costs little, yet long enough for 11 MiB of headers
		// to arrive on a loaded machine under the race detector.
		c.HTTPClientTimeout = 2 * time.Second
	}))
	company := e.createCompany("Acme")
	tok := e.token(e.createUser("faults@example.com", "pw-pw-pw-pw", company, bcrypt.MinCost))

	get := func(ctx context.Context, p string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+p, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return e.client.Do(req)
	}
	quiesce := func() {
		e.client.CloseIdleConnections()
		e.gw.transport.CloseIdleConnections()
	}
	// Warm up every path once (user cache, pools, lazily started goroutines), then measure.
	mustStatus(t, e.do("GET", "/api/v1/query/ok", tok, ""), http.StatusOK)
	mustStatus(t, e.do("GET", "/api/v1/ingest/ok", tok, ""), http.StatusServiceUnavailable)
	quiesce()
	// Closed connections' goroutines end a moment later; a count taken too soon would only
	// make the leak check below more lenient, never flaky.
	time.Sleep(200 * time.Millisecond)
	baseline := goroutinesSettle(0, 0)

	jsonCases := []struct {
		name, path, body string
		status           int
		detail           string
	}{
		{"connection refused", "/api/v1/ingest/list", "", http.StatusServiceUnavailable, "Upstream service unavailable"},
		{"connection refused, request body unread", "/api/v1/ingest/upload", `{"doc":"x"}`, http.StatusServiceUnavailable, "Upstream service unavailable"},
		{"accepts and never answers", "/api/v1/query/stall", "", http.StatusGatewayTimeout, "Upstream service timed out"},
		{"resets mid-headers", "/api/v1/query/reset-mid-headers", "", http.StatusBadGateway, "Bad gateway"},
		{"100 KiB response header", "/api/v1/query/100k-header", "", http.StatusBadGateway, "Bad gateway"},
		{"11 MiB response header", "/api/v1/query/11m-header", "", http.StatusBadGateway, "Bad gateway"},
	}
	for _, tc := range jsonCases {
		t.Run(tc.name, func(t *testing.T) {
			method := "GET"
			if tc.body != "" {
				method = "POST"
			}
			t0 := time.Now()
			r := e.do(method, tc.path, tok, tc.body)
			mustStatus(t, r, tc.status)
			if d := r.detail(t); d != tc.detail {
				t.Errorf("detail %q, want %q", d, tc.detail)
			}
			if took := time.Since(t0); took > 4*time.Second {
				t.Errorf("answered after %v", took)
			}
		})
	}

	for _, p := range []string{"/api/v1/query/reset-mid-body", "/api/v1/query/reset-mid-chunked"} {
		t.Run("headers then reset: "+path.Base(p), func(t *testing.T) {
			// The status is already on the wire; the gateway must end the stream so the
			// client sees a broken body, never a complete-looking one or a hang.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := get(ctx, p)
			if err == nil {
				fault.resetNow <- struct{}{}
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d", resp.StatusCode)
				}
				var n int64
				n, err = io.Copy(io.Discard, resp.Body)
				if err == nil {
					t.Fatalf("read %d bytes and a clean end: the truncation was hidden", n)
				}
				t.Logf("body cut after %d bytes: %v", n, err)
			}
			if ctx.Err() != nil {
				t.Fatalf("the client had to give up: the stream was never ended (%v)", err)
			}
		})
	}

	t.Run("endless slow body cut by the client", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		resp, err := get(ctx, "/api/v1/query/endless")
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		for i := 0; i < 3; i++ {
			if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: x") && line != "\n" {
				t.Fatalf("event %d: %q %v", i, line, err)
			}
		}
		cancel()
		resp.Body.Close()
		// The gateway must hang up on the upstream too, or it streams forever to no one.
		waitFor(t, 5*time.Second, "the upstream connection closed after the client left", func() bool { return fault.open.Load() == 0 })
	})

	quiesce()
	n := goroutinesSettle(baseline+2, 5*time.Second)
	t.Logf("goroutines: %d before the faults, %d after", baseline, n)
	if n > baseline+2 {
		var stacks bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Fatalf("goroutines: %d after the faults, %d before\n%s", n, baseline, stacks.String())
	}
	if n := fault.open.Load(); n != 0 {
		t.Fatalf("upstream still has %d open connection(s)", n)
	}
	mustStatus(t, e.do("GET", "/api/v1/query/ok", tok, ""), http.StatusOK)
}
