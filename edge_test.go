// edge_test.go: the edge under abuse (SPEC §8). Each attack found against the shipped
// configuration is a test named after it, next to the checks of the settings that stop it.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// ---- Login limits that hold against many addresses ----------------------------------------

func TestLoginClientKeyGroupsIPv6By64(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"203.0.113.7", "203.0.113.7"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"::1", "::/64"},
		{"", ""},
		{"not an address", "not an address"},
	} {
		if got := loginClientKey(tc.ip); got != tc.want {
			t.Errorf("loginClientKey(%q) = %q, want %q", tc.ip, got, tc.want)
		}
	}
}

// Thirty addresses of one IPv6 /64 guessed 3 emails 90 times: each address had a bucket of
// its own, and a host routed a /64 has 2^64 of them.
func TestGuessesSpreadOverOneIPv6SubnetMeet429(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, map[string]string{"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32"})
	emails := []string{"a@example.com", "b@example.com", "c@example.com"}
	for _, em := range emails {
		e.createUser(em, "right-password", "", bcrypt.MinCost)
	}
	first429, limited := -1, 0
	for i := range 90 {
		addr := fmt.Sprintf("2001:db8:77:1:%x::%x", i%30, i)
		r := e.loginFrom(addr, emails[i%3], "guess-"+strconv.Itoa(i))
		switch r.status {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			limited++
			if first429 < 0 {
				first429 = i
			}
		default:
			t.Fatalf("guess %d: %d %s", i, r.status, r.body)
		}
	}
	// The /64's bucket holds 10 (GATEWAY_LOGIN_IP_BURST): the 11th guess meets the limit, long
	// before any one email's bucket (10 each, 30 in all) would.
	if first429 != 10 || limited != 80 {
		t.Fatalf("first 429 at guess %d, %d of 90 limited; want the 11th and 80", first429, limited)
	}
	// Another /64 is another client.
	r := e.loginFrom("2001:db8:77:2::1", "someone@example.com", "guess")
	mustBadCredentials(t, r)
}

func TestGlobalFailedLoginBudgetSlowsSprayingAcrossAddresses(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, map[string]string{"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32",
		"GATEWAY_LOGIN_GLOBAL_BURST": "6", "GATEWAY_LOGIN_GLOBAL_PER_MINUTE": "1"})
	regular := e.createUser("regular@example.com", "right-password", "", bcrypt.MinCost)
	// A first login from an address takes a token from the budget and, being no failure,
	// gives it back: the spray below still finds all 6.
	mustStatus(t, e.loginFrom("198.51.100.1", regular.Email, "right-password"), http.StatusOK)

	// One guess per address, one email per guess: neither per-address nor per-email limits
	// ever apply. The replica's budget does.
	var statuses []int
	for i := range 10 {
		r := e.loginFrom(fmt.Sprintf("203.0.%d.%d", i/200, i%200+1), fmt.Sprintf("spray%d@example.com", i), "Summer2025!")
		statuses = append(statuses, r.status)
		if r.status == http.StatusTooManyRequests {
			mustRetryAfter(t, r, http.StatusTooManyRequests, 3600)
		}
	}
	want := append(slices.Repeat([]int{http.StatusUnauthorized}, 6), slices.Repeat([]int{http.StatusTooManyRequests}, 4)...)
	if !slices.Equal(statuses, want) {
		t.Fatalf("statuses %v, want 6 x 401 then 429s", statuses)
	}
	if n := e.gw.metrics.rateLimited.get("login_global").Load(); n != 4 {
		t.Fatalf("login_global rejections = %d", n)
	}
	// A returning user is not held by the budget the spray emptied; the same user from an
	// address never used before waits like everyone else (the documented price).
	mustStatus(t, e.loginFrom("198.51.100.1", regular.Email, "right-password"), http.StatusOK)
	mustStatus(t, e.loginFrom("198.51.100.1", regular.Email, "typo"), http.StatusUnauthorized)
	mustStatus(t, e.loginFrom("198.51.100.1", regular.Email, "right-password"), http.StatusOK)
	mustRetryAfter(t, e.loginFrom("198.51.100.2", regular.Email, "right-password"), http.StatusTooManyRequests, 3600)
}

// 503s refunded the attacker's limit tokens, so a flood that kept hashing saturated cost
// nothing. Now an unknown (email, address) pair pays for a busy answer as for a wrong
// password; a returning user's pair is refunded, since the gateway failed, not the user.
func TestBusyAnswerDoesNotRefundAnUnknownPair(t *testing.T) {
	t.Parallel()
	e := newTestEnvTweaked(t, map[string]string{"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32",
		"GATEWAY_LOGIN_IP_BURST": "3", "GATEWAY_LOGIN_IP_PER_MINUTE": "0.01"}, func(gw *gateway) {
		gw.hashes.close()
		gw.hashes = newHashPool(1, time.Millisecond)
	})
	known := e.createUser("known@example.com", "right-password", "", bcrypt.MinCost)
	mustStatus(t, e.loginFrom("198.51.100.5", known.Email, "right-password"), http.StatusOK)

	release := holdWorkers(t, e.gw.hashes, 1) // hashing saturated
	defer release()
	// The stranger's three attempts all meet a full pool, and each costs a token.
	for i := range 3 {
		r := e.loginFrom("203.0.113.9", fmt.Sprintf("guess%d@example.com", i), "guess")
		mustRetryAfter(t, r, http.StatusServiceUnavailable, 1)
	}
	mustRetryAfter(t, e.loginFrom("203.0.113.9", "guess9@example.com", "guess"), http.StatusTooManyRequests, 3600*24)
	// The returning user meets the same full pool three times and more, and is refunded.
	for range 5 {
		mustRetryAfter(t, e.loginFrom("198.51.100.5", known.Email, "right-password"), http.StatusServiceUnavailable, 1)
	}
	release()
	mustStatus(t, e.loginFrom("198.51.100.5", known.Email, "right-password"), http.StatusOK)
}

func TestHashPoolServesReturningLoginsFirst(t *testing.T) {
	p := newHashPoolWith(1, 10*time.Second, hashPolicy{})
	defer p.close()
	release := holdWorkers(t, p, 1)
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	queue := func(name string, class hashClass) {
		wg.Go(func() {
			if err := p.runAs(context.Background(), class, func() {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
			}); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
	waitQueued := func(class hashClass, n int32) {
		for deadline := time.Now().Add(5 * time.Second); p.waiting[class].Load() != n; {
			if time.Now().After(deadline) {
				t.Fatalf("%d callers of class %d waiting, want %d", p.waiting[class].Load(), class, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := range 4 {
		queue(fmt.Sprintf("stranger-%d", i), hashOrdinary)
	}
	waitQueued(hashOrdinary, 4)
	queue("returning-1", hashFirst)
	queue("returning-2", hashFirst)
	waitQueued(hashFirst, 2)
	release()
	wg.Wait()
	if len(order) != 6 || !strings.HasPrefix(order[0], "returning") || !strings.HasPrefix(order[1], "returning") {
		t.Fatalf("order %v: returning users must go before every waiting stranger", order)
	}
}

// ---- Login flood -------------------------------------------------------------------------

// clientFrom is an HTTP client whose connections come from the loopback address ip.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}}
}

func postLogin(c *http.Client, base, email, password string) (int, error) {
	body := fmt.Sprintf(`{"email":%q,"password":%q}`, email, password)
	res, err := c.Post(base+"/api/v1/users/login", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

// 40 addresses flooding logins made a legitimate user's login answer 503 in 10 of 14 tries.
// Here 40 loopback addresses (127.0.0.10-49) flood wrong passwords while a returning user
// signs in 10 times and a signed-in user's proxied requests are timed: with the default
// limits, and with every limit off so that hashing stays saturated and only the queue's
// order protects the returning user.
func TestLoginFloodFrom40AddressesLetsReturningUserIn(t *testing.T) {
	// Not parallel: it measures latency under load on this process.
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"default limits", map[string]string{}},
		{"limits off, hashing saturated", map[string]string{
			"GATEWAY_LOGIN_IP_BURST": "0", "GATEWAY_LOGIN_EMAIL_BURST": "0", "GATEWAY_LOGIN_GLOBAL_BURST": "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, _ := countingUpstream(t)
			tc.env["GATEWAY_QUERY_SERVICE_URL"] = up.URL
			e := newTestEnv(t, tc.env)
			company := e.createCompany("Acme")
			worker := e.token(e.createUser("worker@acme.example", "pw-pw-pw-pw", company, bcrypt.MinCost))
			returning := e.createUser("returning@acme.example", "right-password", company, bcrypt.MinCost)
			// The flood guesses at real accounts. Their hashes are cheaper than production's
			// cost 12 so that one comparison stays well under the 1 s queue wait even under
			// the race detector (30x slower); the queue's order is what is tested.
			const floodCost = 7
			targets := make([]string, 40)
			for i := range targets {
				targets[i] = e.createUser(fmt.Sprintf("target%d@acme.example", i), "secret-"+strconv.Itoa(i), company, floodCost).Email
			}
			me := clientFrom("127.0.0.200")
			if status, err := postLogin(me, e.srv.URL, returning.Email, "right-password"); err != nil || status != http.StatusOK {
				t.Fatalf("first login: %d %v", status, err)
			}

			ctx, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var mu sync.Mutex
			flood := map[int]int{}
			for i := range 40 {
				c := clientFrom(fmt.Sprintf("127.0.0.%d", 10+i))
				wg.Go(func() {
					defer c.CloseIdleConnections()
					for n := 0; ctx.Err() == nil; n++ {
						status, err := postLogin(c, e.srv.URL, targets[(i+n)%len(targets)], "guess-"+strconv.Itoa(n))
						if err == nil {
							mu.Lock()
							flood[status]++
							mu.Unlock()
						}
						time.Sleep(10 * time.Millisecond)
					}
				})
			}
			var latencies []time.Duration
			proxyDone := make(chan struct{})
			go func() {
				defer close(proxyDone)
				c := clientFrom("127.0.0.201")
				defer c.CloseIdleConnections()
				for ctx.Err() == nil {
					req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/v1/query/chats", nil)
					req.Header.Set("Authorization", "Bearer "+worker)
					t0 := time.Now()
					res, err := c.Do(req)
					if err != nil {
						continue
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode == http.StatusOK {
						latencies = append(latencies, time.Since(t0))
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()

			time.Sleep(500 * time.Millisecond) // the flood is under way
			var mine []int
			for range 10 {
				status, err := postLogin(me, e.srv.URL, returning.Email, "right-password")
				if err != nil {
					t.Errorf("returning login: %v", err)
				}
				mine = append(mine, status)
				time.Sleep(100 * time.Millisecond)
			}
			stop()
			wg.Wait()
			<-proxyDone
			me.CloseIdleConnections()

			ok := 0
			for _, s := range mine {
				if s == http.StatusOK {
					ok++
				}
			}
			p99 := percentile(latencies, 0.99)
			mu.Lock()
			t.Logf("returning user: %v; proxied p50 %v p99 %v over %d requests; flood answers %v",
				mine, percentile(latencies, 0.5), p99, len(latencies), flood)
			mu.Unlock()
			if ok < 9 {
				t.Errorf("the returning user got in %d times of 10 (%v)", ok, mine)
			}
			if p99 >= 250*time.Millisecond {
				t.Errorf("proxied p99 %v during the flood, want under 250ms", p99)
			}
		})
	}
}
