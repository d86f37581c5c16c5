// hardening_test.go: the gateway under abuse and faults, end to end: failed-login limits,
// the bounded bcrypt pool, the per-company limit, database and upstream outages, and hostile
// clients.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// newTestEnvTweaked is newTestEnv with tweak applied to the gateway before it serves, for
// the rare test that must swap one of its parts (the bcrypt pool).
func newTestEnvTweaked(t *testing.T, env map[string]string, tweak func(*gateway)) *testEnv {
	t.Helper()
	dbURL := testDatabaseURL(t)
	store, err := openPostgres(context.Background(), dbURL, testDBTimeout)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(store.Close)
	return serveTestEnv(t, testConfig(t, env), store, dbURL, tweak)
}

// loginFrom logs in with an X-Forwarded-For header (ignored unless the peer is trusted).
func (e *testEnv) loginFrom(xff, email, password string) response {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"email": email, "password": password})
	if xff == "" {
		return e.do("POST", "/api/v1/users/login", "", string(b))
	}
	return e.do("POST", "/api/v1/users/login", "", string(b), "X-Forwarded-For", xff)
}

// mustRetryAfter checks r is a 429 JSON answer whose Retry-After is whole seconds from 1 to
// max, and returns them.
func mustRetryAfter(t testing.TB, r response, status, max int) int {
	t.Helper()
	mustStatus(t, r, status)
	if r.detail(t) == "" {
		t.Fatal("empty detail")
	}
	v := r.header.Get("Retry-After")
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		t.Fatalf("Retry-After = %q, want whole seconds from 1 to %d", v, max)
	}
	return n
}

// mustBadCredentials checks r is the one 401 every failed login gets.
func mustBadCredentials(t testing.TB, r response) {
	t.Helper()
	mustStatus(t, r, http.StatusUnauthorized)
	if d := r.detail(t); d != detailBadCredentials {
		t.Fatalf("detail = %q, want %q", d, detailBadCredentials)
	}
}

func TestLoginFloodFromOneIPMeets429WithRetryAfter(t *testing.T) {
	t.Parallel()
	// The defaults: 10 failures at once per IP, 10 a minute after. The clock stands still,
	// so no token refills however slowly a loaded machine hashes.
	e := newTestEnvTweaked(t, nil, useClock(newFakeClock()))
	users := make([]User, 4)
	for i := range users {
		users[i] = e.createUser(fmt.Sprintf("flood%d@example.com", i), "right-password", "", bcrypt.MinCost)
	}
	// 30 failures in a row from one IP. Attempt 0 is an unknown email and attempts 1-9 are
	// wrong passwords spread over several accounts (no email reaches its own limit), so a
	// 429 from attempt 10 on shows that both kinds of failure are counted per IP.
	for i := 0; i < 30; i++ {
		var r response
		if i == 0 || i%4 == 0 && i >= 10 {
			r = e.login(fmt.Sprintf("ghost%d@example.com", i), "guess-"+strconv.Itoa(i))
		} else {
			r = e.login(users[i%len(users)].Email, "guess-"+strconv.Itoa(i))
		}
		if i < 10 {
			mustBadCredentials(t, r)
			continue
		}
		mustRetryAfter(t, r, http.StatusTooManyRequests, 60)
		if r.header.Get("WWW-Authenticate") != "" {
			t.Fatalf("a rate-limited answer must not look like a credential check: %v", r.header)
		}
	}
	// The right password from the locked-out IP is refused too: the IP's bucket is checked
	// before the password, so a locked-out client cannot keep guessing and tell a hit by a
	// 200. The lock lifts as the bucket refills, which Retry-After announces (see
	// TestLockedOutIPCanLogInAfterRetryAfter).
	mustRetryAfter(t, e.login(users[0].Email, "right-password"), http.StatusTooManyRequests, 60)
	if got := e.lastLogin(users[0].ID); got != nil {
		t.Fatal("a refused login updated last_login")
	}
}

func TestLockedOutIPCanLogInAfterRetryAfter(t *testing.T) {
	t.Parallel()
	// A short refill (one token per 500 ms) through the configuration, not a fake clock.
	e := newTestEnv(t, map[string]string{"GATEWAY_LOGIN_IP_BURST": "3", "GATEWAY_LOGIN_IP_PER_MINUTE": "120"})
	u := e.createUser("back@example.com", "right-password", "", bcrypt.MinCost)
	for i := 0; i < 3; i++ {
		mustBadCredentials(t, e.login(u.Email, "wrong-password"))
	}
	wait := mustRetryAfter(t, e.login(u.Email, "wrong-password"), http.StatusTooManyRequests, 2)
	mustRetryAfter(t, e.login(u.Email, "right-password"), http.StatusTooManyRequests, 2)
	time.Sleep(time.Duration(wait) * time.Second)
	mustStatus(t, e.login(u.Email, "right-password"), http.StatusOK)
}

func TestConcurrentLoginFloodStillLocksTheIP(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	users := make([]User, 10)
	for i := range users {
		users[i] = e.createUser(fmt.Sprintf("wave%d@example.com", i), "right-password", "", bcrypt.MinCost)
	}
	// Attempts that arrive together all pass the check before any is charged (a failure is
	// known only after bcrypt); each is still charged afterwards, so the IP ends up locked.
	statuses := make([]int, 30)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Go(func() {
			statuses[i] = e.login(users[i%len(users)].Email, "wrong-password").status
		})
	}
	wg.Wait()
	counts := map[int]int{}
	for _, s := range statuses {
		counts[s]++
		if s != http.StatusUnauthorized && s != http.StatusTooManyRequests && s != http.StatusServiceUnavailable {
			t.Fatalf("concurrent failed login answered %d; statuses %v", s, statuses)
		}
	}
	t.Logf("30 concurrent failed logins from one IP: %v", counts)
	mustRetryAfter(t, e.login(users[0].Email, "right-password"), http.StatusTooManyRequests, 120)
}

func TestLoginLimitPerEmailAcrossIPs(t *testing.T) {
	t.Parallel()
	trusted := map[string]string{"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32"}

	t.Run("many IPs guessing one password meet 429", func(t *testing.T) {
		t.Parallel()
		e := newTestEnv(t, trusted) // email: 10 at once, 5 a minute after
		victim := e.createUser("victim@example.com", "right-password", "", bcrypt.MinCost)
		bystander := e.createUser("bystander@example.com", "right-password", "", bcrypt.MinCost)
		for i := 1; i <= 10; i++ {
			mustBadCredentials(t, e.loginFrom(fmt.Sprintf("203.0.113.%d", i), victim.Email, "guess"))
		}
		mustRetryAfter(t, e.loginFrom("203.0.113.50", victim.Email, "guess"), http.StatusTooManyRequests, 60)
		// The bucket belongs to the address, whatever its letter case.
		mustRetryAfter(t, e.loginFrom("203.0.113.51", "VICTIM@Example.COM", "guess"), http.StatusTooManyRequests, 60)
		// Documented policy: the email's bucket guards the account whatever the IP, so the
		// right password from a fresh IP waits too (else the limit would be an oracle for
		// a botnet); the lock is bounded, see the next subtest.
		mustRetryAfter(t, e.loginFrom("198.51.100.1", victim.Email, "right-password"), http.StatusTooManyRequests, 60)
		// Another account is not affected, even from an IP that took part (one failure each).
		mustStatus(t, e.loginFrom("203.0.113.1", bystander.Email, "right-password"), http.StatusOK)
	})

	t.Run("failures below the limit never block the owner", func(t *testing.T) {
		t.Parallel()
		e := newTestEnv(t, trusted)
		victim := e.createUser("owner@example.com", "right-password", "", bcrypt.MinCost)
		for i := 1; i <= 9; i++ {
			mustBadCredentials(t, e.loginFrom(fmt.Sprintf("203.0.113.%d", i), victim.Email, "guess"))
		}
		mustStatus(t, e.loginFrom("198.51.100.1", victim.Email, "right-password"), http.StatusOK)
	})

	t.Run("a drained email unlocks within the documented bound", func(t *testing.T) {
		t.Parallel()
		// burst 3, one token per 500 ms. take caps the debt a flood can run up at two bursts,
		// so once the flood stops the owner waits at most (burst+1) intervals = 2 s: within
		// "twice the refill time" (3 s) that ratelimit.go documents.
		env := map[string]string{"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32",
			"GATEWAY_LOGIN_EMAIL_BURST": "3", "GATEWAY_LOGIN_EMAIL_PER_MINUTE": "120"}
		e := newTestEnv(t, env)
		victim := e.createUser("drained@example.com", "right-password", "", bcrypt.MinCost)
		var wg sync.WaitGroup
		for i := 1; i <= 16; i++ {
			wg.Go(func() {
				r := e.loginFrom(fmt.Sprintf("203.0.113.%d", i), victim.Email, "guess")
				if r.status != http.StatusUnauthorized && r.status != http.StatusTooManyRequests && r.status != http.StatusServiceUnavailable {
					t.Errorf("flood login answered %d: %s", r.status, r.body)
				}
			})
		}
		wg.Wait()
		floodEnd := time.Now()
		mustRetryAfter(t, e.loginFrom("198.51.100.1", victim.Email, "right-password"), http.StatusTooManyRequests, 3)
		for i := 2; ; i++ {
			time.Sleep(100 * time.Millisecond)
			r := e.loginFrom(fmt.Sprintf("198.51.100.%d", i), victim.Email, "right-password")
			if r.status == http.StatusOK {
				t.Logf("owner locked out for %v after the flood", time.Since(floodEnd).Round(10*time.Millisecond))
				break
			}
			mustRetryAfter(t, r, http.StatusTooManyRequests, 3)
			if time.Since(floodEnd) > 3*time.Second+time.Second {
				t.Fatalf("owner still locked out %v after the flood stopped", time.Since(floodEnd))
			}
		}
	})
}

func TestSuccessfulLoginResetsEmailBucket(t *testing.T) {
	t.Parallel()
	// The IP limit is set out of reach so only the email's bucket (3, refilling once a
	// minute) decides. The later typos come from another address: the one that logged in
	// is exempt from the email limit from then on (TestLoginFromKnownAddressSurvivesOthersFailures).
	e := newTestEnv(t, map[string]string{"GATEWAY_LOGIN_IP_BURST": "100", "GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32",
		"GATEWAY_LOGIN_EMAIL_BURST": "3", "GATEWAY_LOGIN_EMAIL_PER_MINUTE": "1"})
	u := e.createUser("forgetful@example.com", "right-password", "", bcrypt.MinCost)
	loginFrom := func(ip, password string) response { return e.loginFrom(ip, u.Email, password) }
	mustBadCredentials(t, loginFrom("198.51.100.1", "typo-1"))
	mustBadCredentials(t, loginFrom("198.51.100.1", "typo-2"))
	mustStatus(t, loginFrom("198.51.100.1", "right-password"), http.StatusOK)
	// Without the reset only one token would be left and the second typo below would be a 429.
	for i := 3; i <= 5; i++ {
		mustBadCredentials(t, loginFrom("198.51.100.2", "typo-"+strconv.Itoa(i)))
	}
	mustRetryAfter(t, loginFrom("198.51.100.2", "typo-6"), http.StatusTooManyRequests, 60)
}

func TestForgedXForwardedForFromUntrustedPeerIsIgnored(t *testing.T) {
	t.Parallel()
	users := func(e *testEnv) []User {
		us := make([]User, 4) // spread over accounts so no email hits its own limit first
		for i := range us {
			us[i] = e.createUser(fmt.Sprintf("xff%d@example.com", i), "right-password", "", bcrypt.MinCost)
		}
		return us
	}
	cases := []struct {
		name    string
		env     map[string]string
		xff     func(i int) string
		limited bool // a 429 must come at attempt 10
	}{
		{"untrusted peer rotating the header", nil,
			func(i int) string { return fmt.Sprintf("198.51.100.%d", i+1) }, true},
		{"untrusted peer rotating a whole chain", nil,
			func(i int) string { return fmt.Sprintf("10.0.0.%d, 198.51.100.%d", i+1, i+1) }, true},
		{"trusted peer, client forging entries left of the real one",
			map[string]string{"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32"},
			func(i int) string { return fmt.Sprintf("198.51.100.%d, 203.0.113.7", i+1) }, true},
		{"trusted chain, right-most untrusted entry is the client",
			map[string]string{"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32, 10.0.0.0/8"},
			func(i int) string {
				return fmt.Sprintf("198.51.100.%d, 203.0.113.7, 10.%d.0.1", i+1, i%5)
			}, true},
		// The control: behind a trusted proxy, distinct real clients are distinct keys, so
		// the cases above would pass no 429 if the header were believed.
		{"trusted peer, distinct real clients", map[string]string{"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32"},
			func(i int) string { return fmt.Sprintf("203.0.113.%d", i+1) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, tc.env)
			us := users(e)
			for i := 0; i < 12; i++ {
				r := e.loginFrom(tc.xff(i), us[i%len(us)].Email, "wrong-password")
				if i < 10 || !tc.limited {
					mustBadCredentials(t, r)
				} else {
					mustRetryAfter(t, r, http.StatusTooManyRequests, 60)
				}
			}
		})
	}
}

func TestLoginLimitsCanBeTurnedOff(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, map[string]string{"GATEWAY_LOGIN_IP_BURST": "0", "GATEWAY_LOGIN_EMAIL_BURST": "0"})
	if e.gw.loginByIP != nil || e.gw.loginByEmail != nil {
		t.Fatal("burst 0 must leave the login limits off")
	}
	u := e.createUser("free@example.com", "right-password", "", bcrypt.MinCost)
	for i := 0; i < 30; i++ {
		mustBadCredentials(t, e.login(u.Email, "wrong-password"))
	}
	mustStatus(t, e.login(u.Email, "right-password"), http.StatusOK)
}

// createUserWithHash stores a user whose password hash is given as is.
func (e *testEnv) createUserWithHash(email, hash, companyID string) User {
	e.t.Helper()
	u, err := e.store.CreateUser(context.Background(), NewUser{Email: email, HashedPassword: hash, Role: "user", CompanyID: companyID})
	if err != nil {
		e.t.Fatalf("create user: %v", err)
	}
	return u
}

func TestBcryptPoolBusyAnswers503(t *testing.T) {
	// Not parallel: cost-12 hashing takes seconds under the race detector and would skew
	// the timing of other tests.
	e := newTestEnvTweaked(t, nil, func(gw *gateway) {
		gw.hashes.close()
		gw.hashes = newHashPool(1, 50*time.Millisecond)
	})
	// dummyHash is a real cost-12 hash nobody knows the password of: every guess is wrong
	// and holds the one worker for a full production-cost comparison.
	victim := e.createUserWithHash("busy@example.com", dummyHash, "")
	fast := e.createUser("fast@example.com", "right-password", "", bcrypt.MinCost)

	type result struct {
		r    response
		took time.Duration
	}
	results := make([]result, 8)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			<-start
			t0 := time.Now()
			r := e.login(victim.Email, "guess-"+strconv.Itoa(i))
			results[i] = result{r, time.Since(t0)}
		})
	}
	close(start)
	wg.Wait()

	counts := map[int]int{}
	for _, res := range results {
		counts[res.r.status]++
		switch res.r.status {
		case http.StatusUnauthorized:
			mustBadCredentials(t, res.r)
		case http.StatusServiceUnavailable:
			mustRetryAfter(t, res.r, http.StatusServiceUnavailable, 5)
			// The wait for a worker is bounded: a 503 never waits for the comparison
			// holding the worker (seconds under the race detector).
			if res.took > 1500*time.Millisecond {
				t.Errorf("503 after %v: the queue wait is 50ms", res.took)
			}
		default:
			t.Fatalf("concurrent login answered %d: %s", res.r.status, res.r.body)
		}
	}
	t.Logf("8 concurrent cost-12 logins on one worker: %v", counts)
	if counts[http.StatusServiceUnavailable] == 0 || counts[http.StatusUnauthorized] == 0 {
		t.Fatalf("want some 401 (one had the worker) and some 503 (the rest): %v", counts)
	}
	mustStatus(t, e.login(fast.Email, "right-password"), http.StatusOK)
}

func TestAbandonedLoginIsNotCountedAsBusy(t *testing.T) {
	// Not parallel, like TestBcryptPoolBusyAnswers503.
	e := newTestEnvTweaked(t, nil, func(gw *gateway) {
		gw.hashes.close()
		gw.hashes = newHashPool(1, 10*time.Second)
	})
	victim := e.createUserWithHash("patient@example.com", dummyHash, "")
	body := `{"email":"` + victim.Email + `","password":"wrong-password"}`
	login := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/api/v1/users/login", strings.NewReader(body))
		resp, err := e.client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return err
	}
	// One login holds the only worker; a second waits for it and its client gives up.
	var wg sync.WaitGroup
	wg.Go(func() { login(context.Background()) })
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if err := login(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second login: %v, want the client's own timeout", err)
	}
	wg.Wait()
	logins := &e.gw.metrics.logins
	deadline := time.Now().Add(5 * time.Second)
	for logins.get("client_gone").Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// "busy" is the 503 a capacity alert watches; a client that left is no sign of it.
	if gone, busy := logins.get("client_gone").Load(), logins.get("busy").Load(); gone != 1 || busy != 0 {
		t.Fatalf("logins: client_gone %d, busy %d; want 1 and 0", gone, busy)
	}
}

// countingUpstream answers every request 200 JSON and counts them.
func countingUpstream(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func TestProxiedRequestsKeepFlowingDuringLoginFlood(t *testing.T) {
	// Not parallel: the point is what hashing does to this process's proxy, alone.
	up, hits := countingUpstream(t)
	// Limits off, so every flood request reaches bcrypt instead of meeting a cheap 429.
	e := newTestEnv(t, map[string]string{"GATEWAY_QUERY_SERVICE_URL": up.URL,
		"GATEWAY_LOGIN_IP_BURST": "0", "GATEWAY_LOGIN_EMAIL_BURST": "0", "GATEWAY_LOGIN_GLOBAL_BURST": "0"})
	company := e.createCompany("Acme")
	tok := e.token(e.createUser("worker@example.com", "pw-pw-pw-pw", company, bcrypt.MinCost))
	victim := e.createUserWithHash("target@example.com", dummyHash, "")

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
			time.Sleep(10 * time.Millisecond)
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

func TestCompanyRateLimit(t *testing.T) {
	t.Parallel()
	t.Run("on: burst then 429 per company", func(t *testing.T) {
		t.Parallel()
		up, hits := countingUpstream(t)
		e := newTestEnv(t, map[string]string{"GATEWAY_QUERY_SERVICE_URL": up.URL,
			"GATEWAY_RATE_LIMIT_COMPANY_RPS": "1", "GATEWAY_RATE_LIMIT_COMPANY_BURST": "2"})
		acme, globex := e.createCompany("Acme"), e.createCompany("Globex")
		ana := e.token(e.createUser("ana@acme.example", "pw-pw-pw-pw", acme, bcrypt.MinCost))
		bob := e.token(e.createUser("bob@acme.example", "pw-pw-pw-pw", acme, bcrypt.MinCost))
		gus := e.token(e.createUser("gus@globex.example", "pw-pw-pw-pw", globex, bcrypt.MinCost))
		// Warm the user cache so the three quick requests below are as quick as they can be.
		for _, tok := range []string{ana, bob, gus} {
			mustStatus(t, e.do("GET", "/api/v1/users/me", tok, ""), http.StatusOK)
		}

		mustStatus(t, e.do("GET", "/api/v1/query/chats", ana, ""), http.StatusOK)
		mustStatus(t, e.do("POST", "/api/v1/query/ask", ana, `{"q":1}`), http.StatusOK)
		wait := mustRetryAfter(t, e.do("GET", "/api/v1/query/chats", ana, ""), http.StatusTooManyRequests, 2)
		// The bucket is the company's: another user of it waits too, another company does not.
		mustRetryAfter(t, e.do("GET", "/api/v1/query/chats", bob, ""), http.StatusTooManyRequests, 2)
		mustStatus(t, e.do("GET", "/api/v1/query/chats", gus, ""), http.StatusOK)
		mustStatus(t, e.do("GET", "/api/v1/query/chats", gus, ""), http.StatusOK)
		// The gateway's own endpoints are not proxied routes and are not limited.
		mustStatus(t, e.do("GET", "/api/v1/users/me", ana, ""), http.StatusOK)
		if got := hits.Load(); got != 4 {
			t.Fatalf("upstream saw %d requests, want 4 (a 429 must not reach it)", got)
		}
		time.Sleep(time.Duration(wait) * time.Second)
		mustStatus(t, e.do("GET", "/api/v1/query/chats", ana, ""), http.StatusOK)
	})
	t.Run("off by default", func(t *testing.T) {
		t.Parallel()
		up, hits := countingUpstream(t)
		e := newTestEnv(t, map[string]string{"GATEWAY_QUERY_SERVICE_URL": up.URL})
		if e.gw.companyRate != nil {
			t.Fatal("the company limit must be off by default")
		}
		company := e.createCompany("Acme")
		tok := e.token(e.createUser("busy@acme.example", "pw-pw-pw-pw", company, bcrypt.MinCost))
		for i := 0; i < 50; i++ {
			mustStatus(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusOK)
		}
		if got := hits.Load(); got != 50 {
			t.Fatalf("upstream saw %d requests, want 50", got)
		}
	})
}

// dbCall is one request that needs the database, and the status it gets when it is up.
type dbCall struct {
	name string
	do   func() response
}

func dbCalls(e *testEnv, email, password, token string) []dbCall {
	return []dbCall{
		{"login", func() response { return e.login(email, password) }},
		{"ensure-company", func() response { return e.do("POST", "/api/v1/users/me/ensure-company", token, "") }},
		{"me", func() response { return e.do("GET", "/api/v1/users/me", token, "") }},
		{"refresh", func() response { return e.do("POST", "/api/v1/users/refresh", token, "") }},
		{"proxied, uncached user check", func() response { return e.do("GET", "/api/v1/query/chats", token, "") }},
	}
}

// expectDatabaseOutage checks every call and /health answer 503 JSON within limit.
func expectDatabaseOutage(t *testing.T, e *testEnv, calls []dbCall, limit time.Duration) {
	t.Helper()
	for _, c := range calls {
		t0 := time.Now()
		r := c.do()
		took := time.Since(t0)
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("%s during the outage: %d %s, want 503", c.name, r.status, r.body)
			continue
		}
		mustStatus(t, r, http.StatusServiceUnavailable)
		r.detail(t)
		if took > limit {
			t.Errorf("%s took %v during the outage, want at most %v", c.name, took, limit)
		}
	}
	t0 := time.Now()
	r := e.do("GET", "/health", "", "")
	mustStatus(t, r, http.StatusServiceUnavailable)
	if r.json(t)["status"] != "unhealthy" || time.Since(t0) > limit {
		t.Errorf("/health during the outage after %v: %s", time.Since(t0), r.body)
	}
}

func TestDatabaseOutageAnswers503AndRecovers(t *testing.T) {
	t.Parallel()
	dbURL := testDatabaseURL(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	relay := newTCPRelay(t, u.Host)
	store, err := openPostgres(context.Background(), withHost(t, dbURL, relay.Addr()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	up, _ := countingUpstream(t)
	// No cache and no stale state: every call needs the database (the stale-if-error path
	// has its own test).
	e := newTestEnvWithStore(t, map[string]string{"GATEWAY_QUERY_SERVICE_URL": up.URL}, store, dbURL,
		func(c *Config) { c.UserCacheTTL, c.UserStaleIfError = 0, 0 })
	company := e.createCompany("Acme")
	user := e.createUser("steady@example.com", "right-password", company, bcrypt.MinCost)
	calls := dbCalls(e, user.Email, "right-password", e.token(user))
	expectServed := func(t *testing.T, when string) {
		t.Helper()
		for _, c := range calls {
			if r := c.do(); r.status != http.StatusOK {
				t.Fatalf("%s %s: %d %s", c.name, when, r.status, r.body)
			}
		}
	}
	expectServed(t, "before the outage")

	relay.Sever()
	expectDatabaseOutage(t, e, calls, 3*time.Second)
	// Again, now that the pool holds no connection at all.
	expectDatabaseOutage(t, e, calls, 3*time.Second)

	relay.Restore()
	deadline := time.Now().Add(10 * time.Second)
	for e.do("GET", "/health", "", "").status != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/health did not recover within 10s of the database returning")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Nothing restarted: the same gateway and pool serve every call again, first time.
	expectServed(t, "after the database returned")
}

func TestDatabaseThatHangsAnswers503WithinDeadline(t *testing.T) {
	t.Parallel()
	// A database host that accepts connections and never answers: only the deadline on
	// every call keeps requests from hanging.
	store, err := openPostgres(context.Background(), withHost(t, testServerURL(), silentLoopbackAddr(t)), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	up, hits := countingUpstream(t)
	e := newTestEnvWithStore(t, map[string]string{"GATEWAY_QUERY_SERVICE_URL": up.URL}, store, "",
		func(c *Config) { c.UserCacheTTL = 0 })
	token := e.token(User{ID: newUUID(), Email: "ghost@example.com", CompanyID: newUUID()})
	expectDatabaseOutage(t, e, dbCalls(e, "ghost@example.com", "any-password", token), 500*time.Millisecond+2*time.Second)
	if hits.Load() != 0 {
		t.Fatal("a request whose user could not be checked reached the upstream")
	}
}

// faultUpstream is a raw TCP upstream that misbehaves as the last element of the request
// path says, and counts the connections it is still serving.
type faultUpstream struct {
	ln   net.Listener
	open atomic.Int64
}

func newFaultUpstream(t *testing.T) *faultUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &faultUpstream{ln: ln}
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
			time.Sleep(100 * time.Millisecond)         // let the gateway stream it
			reset(c)
		case "reset-mid-chunked":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
			io.WriteString(c, "e\r\ndata: first\n\n\r\n")
			time.Sleep(50 * time.Millisecond)
			reset(c)
		case "endless":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
			for {
				if _, err := io.WriteString(c, "8\r\ndata: x\n\r\n"); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
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

// goroutinesSettle waits up to limit for the goroutine count to come back to at most want,
// and returns the last count.
func goroutinesSettle(want int, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestUpstreamFaultsAnswerJSONAndLeakNoGoroutines(t *testing.T) {
	// Not parallel: the goroutine count is the whole process's.
	fault := newFaultUpstream(t)
	e := newTestEnv(t, map[string]string{"GATEWAY_QUERY_SERVICE_URL": fault.URL(),
		"GATEWAY_INGEST_SERVICE_URL": closedPortURL(t)}, func(c *Config) {
		// Short, so the stalled upstream costs little, yet long enough for 11 MiB of headers
		// to arrive on a loaded machine under the race detector.
		c.HTTPClientTimeout = 2 * time.Second
	})
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
		deadline := time.Now().Add(5 * time.Second)
		for fault.open.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("upstream still has %d connection(s) 5s after the client left", fault.open.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
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
			case <-time.After(50 * time.Millisecond):
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

func TestClientFaults(t *testing.T) {
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
