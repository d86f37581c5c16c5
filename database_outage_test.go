// database_outage_test.go: a database that goes away or hangs gets quick 503 JSON answers,
// and the same gateway serves again once it is back.
package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

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
	store, relay, dbURL := relayedTestPostgres(t, time.Second)
	up, _ := countingUpstream(t)
	// No cache and no stale state: every call needs the database (the stale-if-error path
	// has its own test).
	clk := newFakeClock()
	e := startGateway(t, withUpstream(up.URL), withStore(store, dbURL), withClock(clk),
		withConfig(func(c *Config) { c.UserCacheTTL, c.UserStaleIfError = 0, 0 }))
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
	waitFor(t, 10*time.Second, "/health back after the database returned", func() bool {
		clk.Advance(failFastMax) // past any fail-fast interval
		return e.do("GET", "/health", "", "").status == http.StatusOK
	})
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
	e := startGateway(t, withUpstream(up.URL), withStore(store, ""), withConfig(func(c *Config) { c.UserCacheTTL = 0 }))
	token := e.token(User{ID: newUUID(), Email: "ghost@example.com", CompanyID: newUUID()})
	expectDatabaseOutage(t, e, dbCalls(e, "ghost@example.com", "any-password", token), 500*time.Millisecond+2*time.Second)
	if hits.Load() != 0 {
		t.Fatal("a request whose user could not be checked reached the upstream")
	}
}
