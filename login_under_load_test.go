// login_under_load_test.go: the bounded bcrypt pool: logins past its capacity get a quick
// 503, a client that gives up is not counted as busy, and proxying keeps flowing meanwhile.
package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestLoginsPastHashingCapacityGetQuick503WithRetryAfter(t *testing.T) {
	t.Parallel()
	const queueWait = 50 * time.Millisecond
	e := startGateway(t, withHashPool(1, queueWait))
	victim := e.createUser("busy@example.com", "right-password", "", bcrypt.MinCost)
	fast := e.createUser("fast@example.com", "right-password", "", bcrypt.MinCost)

	release := holdWorkers(t, e.gw.hashes, 1) // the only worker is busy
	defer release()
	rs, took := make([]response, 6), make([]time.Duration, 6)
	var wg sync.WaitGroup
	for i := range rs {
		wg.Go(func() {
			t0 := time.Now()
			rs[i] = e.login(victim.Email, "guess-"+strconv.Itoa(i))
			took[i] = time.Since(t0)
		})
	}
	wg.Wait()
	for i, r := range rs {
		mustRetryAfter(t, r, http.StatusServiceUnavailable, 5)
		// The wait for a worker is bounded: a 503 never waits for the comparison holding it.
		if took[i] > 1500*time.Millisecond {
			t.Errorf("503 after %v: the queue wait is %v", took[i], queueWait)
		}
	}
	release()
	mustBadCredentials(t, e.login(victim.Email, "guess"))
	mustStatus(t, e.login(fast.Email, "right-password"), http.StatusOK)
}

func TestAbandonedLoginIsNotCountedAsBusy(t *testing.T) {
	t.Parallel()
	e := startGateway(t, withHashPool(1, 10*time.Second))
	victim := e.createUser("patient@example.com", "right-password", "", bcrypt.MinCost)
	release := holdWorkers(t, e.gw.hashes, 1) // the only worker is busy
	defer release()
	// A login waits for the worker and its client gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	body := `{"email":"` + victim.Email + `","password":"wrong-password"}`
	req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/api/v1/users/login", strings.NewReader(body))
	if resp, err := e.client.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			resp.Body.Close()
		}
		t.Fatalf("login: %v, want the client's own timeout", err)
	}
	logins := &e.gw.metrics.logins
	waitFor(t, 5*time.Second, "the abandoned login counted", func() bool { return logins.get("client_gone").Load() == 1 })
	// "busy" is the 503 a capacity alert watches; a client that left is no sign of it.
	if busy := logins.get("busy").Load(); busy != 0 {
		t.Fatalf("logins: busy %d, want 0", busy)
	}
}

func TestProxiedRequestsKeepFlowingDuringLoginFlood(t *testing.T) {
	// Not parallel: the point is what hashing does to this process's proxy, alone.
	up, hits := countingUpstream(t)
	// Limits off, so every flood request reaches bcrypt instead of meeting a cheap 429.
	e := startGateway(t, withUpstream(up.URL), withEnv(map[string]string{
		"GATEWAY_LOGIN_IP_BURST": "0", "GATEWAY_LOGIN_EMAIL_BURST": "0", "GATEWAY_LOGIN_GLOBAL_BURST": "0"}))
	company := e.createCompany("Acme")
	tok := e.token(e.createUser("worker@example.com", "pw-pw-pw-pw", company, bcrypt.MinCost))
	// Cost 10: slow enough that 16 clients keep every worker busy, quicker than
	// production's 12 under the race detector.
	victim := e.createUser("target@example.com", "right-password", "", 10)

	// proxied sends at least n requests, one every 10 ms for at least span, and returns
	// their latencies.
	proxied := func(n int, span time.Duration) []time.Duration {
		var ds []time.Duration
		for start := time.Now(); len(ds) < n || time.Since(start) < span; {
			t0 := time.Now()
			r := e.do("GET", "/api/v1/query/chats", tok, "")
			ds = append(ds, time.Since(t0))
			if r.status != http.StatusOK {
				t.Fatalf("proxied request %d answered %d: %s", len(ds), r.status, r.body)
			}
			time.Sleep(10 * time.Millisecond) // paces the client: a steady trickle, not a second flood
		}
		return ds
	}
	idle := proxied(20, 0)

	ctx, stop := context.WithCancel(context.Background())
	var mu sync.Mutex
	flood := map[int]int{}
	answered := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	body := `{"email":"` + victim.Email + `","password":"wrong-password"}`
	for range 16 {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/api/v1/users/login", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := e.client.Do(req)
				if err != nil {
					continue // cancelled at the end
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				flood[resp.StatusCode]++
				mu.Unlock()
				once.Do(func() { close(answered) })
			}
		})
	}
	// Once a flood login has been answered, the workers are busy and the queue is full.
	select {
	case <-answered:
	case <-time.After(15 * time.Second):
		stop()
		wg.Wait()
		t.Fatal("no flood login answered within 15s")
	}
	// Long enough for several rounds of cost-12 comparisons, however fast the machine.
	loaded := proxied(50, 1500*time.Millisecond)
	stop()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for status := range flood {
		if status != http.StatusUnauthorized && status != http.StatusServiceUnavailable {
			t.Errorf("flood login answered %d (%v)", status, flood)
		}
	}
	if got, want := hits.Load(), int64(len(idle)+len(loaded)); got != want {
		t.Errorf("upstream saw %d requests, want %d", got, want)
	}
	t.Logf("proxied p50/p99: idle %v/%v, during a 16-client login flood %v/%v (%d requests); flood answers %v",
		percentile(idle, 0.5), percentile(idle, 0.99), percentile(loaded, 0.5), percentile(loaded, 0.99), len(loaded), flood)
}
