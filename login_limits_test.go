// login_limits_test.go: failed logins meet 429 with Retry-After, per address, per email and
// behind proxies, and the owner of an account gets back in.
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

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
	e := startGateway(t, withClock(newFakeClock()))
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
	clk := newFakeClock()
	e := startGateway(t, withClock(clk), withEnv(map[string]string{"GATEWAY_LOGIN_IP_BURST": "3", "GATEWAY_LOGIN_IP_PER_MINUTE": "120"}))
	u := e.createUser("back@example.com", "right-password", "", bcrypt.MinCost)
	for i := 0; i < 3; i++ {
		mustBadCredentials(t, e.login(u.Email, "wrong-password"))
	}
	wait := mustRetryAfter(t, e.login(u.Email, "wrong-password"), http.StatusTooManyRequests, 2)
	mustRetryAfter(t, e.login(u.Email, "right-password"), http.StatusTooManyRequests, 2)
	clk.Advance(time.Duration(wait) * time.Second)
	mustStatus(t, e.login(u.Email, "right-password"), http.StatusOK)
}

func TestConcurrentLoginFloodStillLocksTheIP(t *testing.T) {
	t.Parallel()
	e := startGateway(t)
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
		e := startGateway(t, withEnv(trusted)) // email: 10 at once, 5 a minute after
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
		e := startGateway(t, withEnv(trusted))
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
		clk := newFakeClock()
		e := startGateway(t, withEnv(env), withClock(clk))
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
		mustRetryAfter(t, e.loginFrom("198.51.100.1", victim.Email, "right-password"), http.StatusTooManyRequests, 3)
		const step = 100 * time.Millisecond
		for waited, i := step, 2; ; waited, i = waited+step, i+1 {
			clk.Advance(step)
			r := e.loginFrom(fmt.Sprintf("198.51.100.%d", i), victim.Email, "right-password")
			if r.status == http.StatusOK {
				t.Logf("owner locked out for %v after the flood", waited)
				break
			}
			mustRetryAfter(t, r, http.StatusTooManyRequests, 3)
			if waited > 3*time.Second {
				t.Fatalf("owner still locked out %v after the flood stopped", waited)
			}
		}
	})
}

func TestSuccessfulLoginResetsEmailBucket(t *testing.T) {
	t.Parallel()
	// The IP limit is set out of reach so only the email's bucket (3, refilling once a
	// minute) decides. The later typos come from another address: the one that logged in
	// is exempt from the email limit from then on (TestLoginFromKnownAddressSurvivesOthersFailures).
	e := startGateway(t, withEnv(map[string]string{"GATEWAY_LOGIN_IP_BURST": "100", "GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32",
		"GATEWAY_LOGIN_EMAIL_BURST": "3", "GATEWAY_LOGIN_EMAIL_PER_MINUTE": "1"}))
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
			e := startGateway(t, withEnv(tc.env))
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
	e := startGateway(t, withEnv(map[string]string{"GATEWAY_LOGIN_IP_BURST": "0", "GATEWAY_LOGIN_EMAIL_BURST": "0"}))
	if e.gw.loginByIP != nil || e.gw.loginByEmail != nil {
		t.Fatal("burst 0 must leave the login limits off")
	}
	u := e.createUser("free@example.com", "right-password", "", bcrypt.MinCost)
	for i := 0; i < 30; i++ {
		mustBadCredentials(t, e.login(u.Email, "wrong-password"))
	}
	mustStatus(t, e.login(u.Email, "right-password"), http.StatusOK)
}

func TestLoginFromKnownAddressSurvivesOthersFailures(t *testing.T) {
	t.Parallel()
	e := startGateway(t, withEnv(map[string]string{"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32"}))
	e.createUser("victim@example.com", "right-password", "", bcrypt.MinCost)
	loginFrom := func(ip, password string) response { return e.loginFrom(ip, "victim@example.com", password) }
	mustStatus(t, loginFrom("198.51.100.7", "right-password"), http.StatusOK) // the user's usual address

	// An attacker spread over many addresses exhausts the email's bucket.
	limited := false
	for i := range 40 {
		r := loginFrom(fmt.Sprintf("203.0.113.%d", i+1), "guess")
		if r.status == http.StatusTooManyRequests {
			limited = true
			if r.header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		}
	}
	if !limited {
		t.Fatal("40 failures on one email from 40 addresses never met the email limit")
	}
	mustStatus(t, loginFrom("203.0.113.250", "right-password"), http.StatusTooManyRequests) // a new address waits
	mustStatus(t, loginFrom("198.51.100.7", "right-password"), http.StatusOK)               // the known one does not
}
