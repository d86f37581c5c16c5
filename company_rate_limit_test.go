// company_rate_limit_test.go: the optional per-company request rate on proxied routes.
package main

import (
	"net/http"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestCompanyOverItsRateGets429WhileOthersAreServed(t *testing.T) {
	t.Parallel()
	up, hits := countingUpstream(t)
	clk := newFakeClock()
	e := startGateway(t, withUpstream(up.URL), withClock(clk), withEnv(map[string]string{
		"GATEWAY_RATE_LIMIT_COMPANY_RPS": "1", "GATEWAY_RATE_LIMIT_COMPANY_BURST": "2"}))
	acme, globex := e.createCompany("Acme"), e.createCompany("Globex")
	ana := e.token(e.createUser("ana@acme.example", "pw-pw-pw-pw", acme, bcrypt.MinCost))
	bob := e.token(e.createUser("bob@acme.example", "pw-pw-pw-pw", acme, bcrypt.MinCost))
	gus := e.token(e.createUser("gus@globex.example", "pw-pw-pw-pw", globex, bcrypt.MinCost))
	// The clock stands still: no token refills between the requests below, however slow.
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
	clk.Advance(time.Duration(wait) * time.Second)
	mustStatus(t, e.do("GET", "/api/v1/query/chats", ana, ""), http.StatusOK)
}

func TestCompanyRateLimitIsOffByDefault(t *testing.T) {
	t.Parallel()
	up, hits := countingUpstream(t)
	e := startGateway(t, withUpstream(up.URL))
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
}
