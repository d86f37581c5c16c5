// tenancy_test.go: tenant isolation end to end against PostgreSQL (SPEC §7): who may join
// which company, tokens that follow the database, revocation, propagation across replicas,
// and database outages that must not become proxy outages.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"
)

// tenancyEnv is a gateway on a fresh database in front of a counting upstream.
func tenancyEnv(t *testing.T, tweak func(*gateway), configure ...func(*Config)) *testEnv {
	t.Helper()
	up, _ := countingUpstream(t)
	return startGateway(t, withUpstream(up.URL), withGateway(tweak), withConfig(configure...))
}

// sql runs one statement on the test database as an operator with psql would.
func (e *testEnv) sql(query string, args ...any) {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, query, args...); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
}

// tokenIssuedAt signs a token for u as the gateway would have at issued.
func (e *testEnv) tokenIssuedAt(u User, issued time.Time) string {
	e.t.Helper()
	tok, err := signToken([]byte(testSecret), Claims{Subject: u.ID, Email: u.Email, CompanyID: u.CompanyID,
		IssuedAt: issued.Unix(), AuthTime: issued.Unix(), ExpiresAt: issued.Add(24 * time.Hour).Unix()})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *testEnv) userNow(id string) User {
	e.t.Helper()
	u, err := e.store.UserByID(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func (e *testEnv) invite(companyID, email, role string, expires time.Time) Invitation {
	e.t.Helper()
	inv, err := e.store.CreateInvitation(context.Background(), Invitation{CompanyID: companyID, Email: email, Role: role, ExpiresAt: expires})
	if err != nil {
		e.t.Fatal(err)
	}
	return inv
}

// mustCode checks r is a JSON error with status and code.
func mustCode(t testing.TB, r response, status int, code string) {
	t.Helper()
	mustStatus(t, r, status)
	if got := r.json(t)["code"]; got != code {
		t.Fatalf("code = %v, want %s; body %s", got, code, r.body)
	}
	r.detail(t)
}

func claimsOf(t testing.TB, token string) Claims {
	t.Helper()
	c, err := verifyToken([]byte(testSecret), token, time.Now())
	if err != nil {
		t.Fatalf("issued token does not verify: %v", err)
	}
	return c
}

func TestEnsureCompanyRefusesAnotherTenantsCompany(t *testing.T) {
	t.Parallel()
	e := tenancyEnv(t, nil)
	mine, theirs := e.createCompany("Mine"), e.createCompany("Theirs")
	u := e.createUser("attacker@example.com", "pw-pw-pw-pw", mine, bcrypt.MinCost)

	r := e.do("POST", "/api/v1/users/me/ensure-company", e.token(u), `{"company_id":"`+theirs+`"}`)
	mustCode(t, r, http.StatusForbidden, codeCompanyForbidden)
	if r.detail(t) != "Not allowed to join this company" {
		t.Fatalf("detail = %q", r.detail(t))
	}
	if strings.Contains(string(r.body), "access_token") {
		t.Fatalf("a refused join returned a token: %s", r.body)
	}
	if got := e.userNow(u.ID).CompanyID; got != mine {
		t.Fatalf("user moved to %s on a refused join", got)
	}
	// The token the attacker already holds still reaches only their own company.
	mustStatus(t, e.do("GET", "/api/v1/query/chats", e.token(u), ""), http.StatusOK)
}

// TestEnsureCompanyJoinsANamedCompanyOnlyWhenEntitled is the table of SPEC §7 step 1: a
// body company is honoured for the current company, an open invitation to it (any email
// letter case), or a database admin; refused otherwise, with nothing changed.
func TestEnsureCompanyJoinsANamedCompanyOnlyWhenEntitled(t *testing.T) {
	t.Parallel()
	e := tenancyEnv(t, nil)
	home, target, closed := e.createCompany("Home"), e.createCompany("Target"), e.createCompany("Closed")
	e.sql("UPDATE companies SET is_active = false WHERE id = $1", closed)
	future, past := time.Now().Add(72*time.Hour), time.Now().Add(-time.Hour)

	cases := []struct {
		name    string
		role    string
		setup   func(email string)
		body    string
		status  int
		code    string
		company string // where the user ends up
		newRole string
	}{
		{name: "current company", body: home, status: 200, company: home},
		{name: "no entitlement", body: target, status: 403, code: codeCompanyForbidden, company: home},
		{name: "open invitation", setup: func(email string) { e.invite(target, email, "user", future) },
			body: target, status: 200, company: target, newRole: "user"},
		{name: "open invitation with admin role", setup: func(email string) { e.invite(target, email, "admin", future) },
			body: target, status: 200, company: target, newRole: "admin"},
		{name: "invitation email in other letter case", setup: func(email string) { e.invite(target, strings.ToUpper(email), "user", future) },
			body: target, status: 200, company: target, newRole: "user"},
		{name: "expired invitation", setup: func(email string) { e.invite(target, email, "user", past) },
			body: target, status: 403, code: codeCompanyForbidden, company: home},
		{name: "revoked invitation", setup: func(email string) {
			inv := e.invite(target, email, "user", future)
			if err := e.store.RevokeInvitation(context.Background(), target, inv.ID); err != nil {
				t.Fatal(err)
			}
		}, body: target, status: 403, code: codeCompanyForbidden, company: home},
		{name: "already accepted invitation", setup: func(email string) {
			inv := e.invite(target, email, "user", future)
			e.sql("UPDATE company_invitations SET accepted_at = now() WHERE id = $1", inv.ID)
		}, body: target, status: 403, code: codeCompanyForbidden, company: home},
		{name: "invitation for another email", setup: func(email string) { e.invite(target, "someone-else@example.com", "user", future) },
			body: target, status: 403, code: codeCompanyForbidden, company: home},
		{name: "invitation to another company", setup: func(email string) { e.invite(closed, email, "user", future) },
			body: target, status: 403, code: codeCompanyForbidden, company: home},
		{name: "database admin", role: "admin", body: target, status: 200, company: target, newRole: "admin"},
		{name: "inactive company even for an admin", role: "admin", body: closed, status: 400, code: codeCompanyNotFound, company: home},
		{name: "unknown company", body: "00000000-0000-4000-8000-000000000000", status: 400, code: codeCompanyNotFound, company: home},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			email := fmt.Sprintf("member%d@example.com", i)
			u := e.createUser(email, "pw-pw-pw-pw", home, bcrypt.MinCost)
			if tc.role != "" {
				e.sql("UPDATE users SET role = $2 WHERE id = $1", u.ID, tc.role)
			}
			if tc.setup != nil {
				tc.setup(email)
			}
			r := e.do("POST", "/api/v1/users/me/ensure-company", e.token(u), `{"company_id":"`+strings.ToUpper(tc.body)+`"}`)
			if tc.code != "" {
				mustCode(t, r, tc.status, tc.code)
			} else {
				mustStatus(t, r, tc.status)
				body := r.json(t)
				if body["company_id"] != tc.company || claimsOf(t, body["new_access_token"].(string)).CompanyID != tc.company {
					t.Fatalf("body %s, want company %s", r.body, tc.company)
				}
			}
			got := e.userNow(u.ID)
			if got.CompanyID != tc.company {
				t.Fatalf("user's company = %s, want %s", got.CompanyID, tc.company)
			}
			if tc.newRole != "" && got.Role != tc.newRole {
				t.Fatalf("user's role = %s, want %s", got.Role, tc.newRole)
			}
		})
	}
	t.Run("an accepted invitation cannot be used twice", func(t *testing.T) {
		u := e.createUser("twice@example.com", "pw-pw-pw-pw", home, bcrypt.MinCost)
		e.invite(target, u.Email, "user", future)
		mustStatus(t, e.do("POST", "/api/v1/users/me/ensure-company", e.token(u), `{"company_id":"`+target+`"}`), 200)
		e.sql("UPDATE users SET company_id = $2 WHERE id = $1", u.ID, home)
		back := e.token(e.userNow(u.ID))
		mustCode(t, e.do("POST", "/api/v1/users/me/ensure-company", back, `{"company_id":"`+target+`"}`), 403, codeCompanyForbidden)
	})
	t.Run("null or absent company_id keeps the current company", func(t *testing.T) {
		u := e.createUser("keeper@example.com", "pw-pw-pw-pw", home, bcrypt.MinCost)
		for _, body := range []string{"", "{}", `{"company_id": null}`} {
			r := e.do("POST", "/api/v1/users/me/ensure-company", e.token(u), body)
			mustStatus(t, r, 200)
			if r.json(t)["company_id"] != home {
				t.Fatalf("body %q: %s", body, r.body)
			}
		}
	})
	t.Run("needs a token", func(t *testing.T) {
		mustCode(t, e.do("POST", "/api/v1/users/me/ensure-company", "", ""), http.StatusUnauthorized, codeNotAuthenticated)
	})
	for _, tc := range []struct{ name, body string }{
		{"non-uuid", `{"company_id": "acme"}`},
		{"number", `{"company_id": 42}`},
		{"bad json", `{"company_id": `},
		{"array body", `[1]`},
	} {
		t.Run("malformed "+tc.name, func(t *testing.T) {
			u := e.createUser(strings.ReplaceAll(tc.name, " ", "-")+"@example.com", "pw-pw-pw-pw", home, bcrypt.MinCost)
			mustCode(t, e.do("POST", "/api/v1/users/me/ensure-company", e.token(u), tc.body), 422, codeValidation)
			if e.userNow(u.ID).CompanyID != home {
				t.Fatal("user changed on a refused request")
			}
		})
	}
}

// TestUserWithoutCompanyLandsInInvitedThenDomainThenDefaultCompany is the table of SPEC §7
// steps 2–6, run through ensure-company without a body and through login, which must land
// an invited user in their company without the frontend calling ensure-company.
func TestUserWithoutCompanyLandsInInvitedThenDomainThenDefaultCompany(t *testing.T) {
	t.Parallel()
	future := time.Now().Add(72 * time.Hour)
	type world struct{ invited, domain, fallback, closed string }
	cases := []struct {
		name    string
		email   string
		setup   func(e *testEnv, w world, email string)
		dflt    bool
		want    func(w world) string // "" : no company
		newRole string
	}{
		{name: "newest open invitation", email: "inv@corp.example",
			setup: func(e *testEnv, w world, email string) {
				e.invite(w.fallback, email, "user", future)
				e.invite(w.invited, email, "admin", future.Add(time.Hour))
			}, want: func(w world) string { return w.invited }, newRole: "admin"},
		{name: "invitation beats domain and default", email: "both@domain.example", dflt: true,
			setup: func(e *testEnv, w world, email string) { e.invite(w.invited, strings.ToUpper(email), "user", future) },
			want:  func(w world) string { return w.invited }, newRole: "user"},
		{name: "email domain in other letter case", email: "someone@DOMAIN.Example",
			want: func(w world) string { return w.domain }},
		{name: "domain beats default", email: "x@domain.example", dflt: true,
			want: func(w world) string { return w.domain }},
		{name: "default company", email: "x@elsewhere.example", dflt: true,
			want: func(w world) string { return w.fallback }},
		{name: "invitation to an inactive company is skipped", email: "y@elsewhere.example", dflt: true,
			setup: func(e *testEnv, w world, email string) { e.invite(w.closed, email, "user", future) },
			want:  func(w world) string { return w.fallback }},
		{name: "domain of an inactive company is skipped", email: "z@closed.example", dflt: true,
			want: func(w world) string { return w.fallback }},
		{name: "nothing applies", email: "nobody@elsewhere.example",
			want: func(w world) string { return "" }},
	}
	for _, via := range []string{"ensure-company", "login"} {
		t.Run(via, func(t *testing.T) {
			e := tenancyEnv(t, nil)
			w := world{e.createCompany("Invited"), e.createCompany("Domain"), e.createCompany("Default"), e.createCompany("Closed")}
			ctx := context.Background()
			if err := e.store.AddDomain(ctx, "domain.example", w.domain); err != nil {
				t.Fatal(err)
			}
			if err := e.store.AddDomain(ctx, "closed.example", w.closed); err != nil {
				t.Fatal(err)
			}
			e.sql("UPDATE companies SET is_active = false WHERE id = $1", w.closed)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					e.cfg.DefaultCompanyID = ""
					if tc.dflt {
						e.cfg.DefaultCompanyID = w.fallback
					}
					u := e.createUser(tc.email, "right-password", "", bcrypt.MinCost)
					if tc.setup != nil {
						tc.setup(e, w, tc.email)
					}
					want := tc.want(w)
					var got string
					if via == "login" {
						r := e.login(tc.email, "right-password")
						mustStatus(t, r, 200)
						body := r.json(t)
						got, _ = body["company_id"].(string)
						if claimsOf(t, body["access_token"].(string)).CompanyID != got {
							t.Fatalf("token and body disagree: %s", r.body)
						}
					} else {
						r := e.do("POST", "/api/v1/users/me/ensure-company", e.token(u), "")
						if want == "" {
							mustCode(t, r, 400, codeCompanyRequired)
						} else {
							mustStatus(t, r, 200)
							got, _ = r.json(t)["company_id"].(string)
						}
					}
					if got != want {
						t.Fatalf("company %q, want %q", got, want)
					}
					row := e.userNow(u.ID)
					if row.CompanyID != want {
						t.Fatalf("database company %q, want %q", row.CompanyID, want)
					}
					if tc.newRole != "" && row.Role != tc.newRole {
						t.Fatalf("role %q, want the invitation's %q", row.Role, tc.newRole)
					}
				})
			}
		})
	}
}

func TestMovedUsersOldTokenIsStaleOnProxiedRoutes(t *testing.T) {
	t.Parallel()
	e := tenancyEnv(t, nil)
	oldCo, newCo := e.createCompany("Old"), e.createCompany("New")
	u := e.createUser("mover@example.com", "pw-pw-pw-pw", oldCo, bcrypt.MinCost)
	old := e.token(u)
	mustStatus(t, e.do("GET", "/api/v1/query/chats", old, ""), 200)

	e.sql("UPDATE users SET company_id = $2 WHERE id = $1", u.ID, newCo)
	waitFor(t, time.Second, "the old company's token refused", func() bool {
		return e.do("GET", "/api/v1/query/chats", old, "").status == http.StatusUnauthorized
	})
	r := e.do("GET", "/api/v1/ingest/upload", old, "")
	mustCode(t, r, http.StatusUnauthorized, codeTokenStale)
	if r.header.Get("WWW-Authenticate") != challengeInvalidToken {
		t.Fatalf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
	}
	// The user routes work from the database row: refresh issues a token for the new company.
	mustStatus(t, e.do("GET", "/api/v1/users/me", old, ""), 200)
	r = e.do("POST", "/api/v1/users/refresh", old, "")
	mustStatus(t, r, 200)
	fresh := r.json(t)["access_token"].(string)
	if c := claimsOf(t, fresh); c.CompanyID != newCo {
		t.Fatalf("refreshed token for company %s, want %s", c.CompanyID, newCo)
	}
	mustStatus(t, e.do("GET", "/api/v1/query/chats", fresh, ""), 200)
}

func TestTokenNamingACompanyNeverTheUsersIsStale(t *testing.T) {
	t.Parallel()
	e := tenancyEnv(t, nil)
	mine, theirs := e.createCompany("Mine"), e.createCompany("Theirs")
	u := e.createUser("forger@example.com", "pw-pw-pw-pw", mine, bcrypt.MinCost)
	forged := u
	forged.CompanyID = theirs
	mustCode(t, e.do("GET", "/api/v1/query/chats", e.token(forged), ""), http.StatusUnauthorized, codeTokenStale)
	noCompany := e.createUser("nocompany@example.com", "pw-pw-pw-pw", "", bcrypt.MinCost)
	noCompany.CompanyID = theirs
	mustCode(t, e.do("GET", "/api/v1/query/chats", e.token(noCompany), ""), http.StatusUnauthorized, codeTokenStale)
}

func TestInactiveCompanyRefusedEverywhere(t *testing.T) {
	t.Parallel()
	e := tenancyEnv(t, nil)
	co := e.createCompany("Closing")
	u := e.createUser("closing@example.com", "right-password", co, bcrypt.MinCost)
	tok := e.token(u)
	mustStatus(t, e.do("GET", "/api/v1/query/chats", tok, ""), 200)

	e.sql("UPDATE companies SET is_active = false WHERE id = $1", co)
	waitFor(t, time.Second, "proxying refused", func() bool {
		return e.do("GET", "/api/v1/query/chats", tok, "").status == http.StatusForbidden
	})
	mustCode(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusForbidden, codeCompanyInactive)
	mustCode(t, e.login(u.Email, "right-password"), http.StatusForbidden, codeCompanyInactive)
	mustCode(t, e.login(u.Email, "wrong-password"), http.StatusUnauthorized, codeInvalidCredentials)
	mustCode(t, e.do("POST", "/api/v1/users/refresh", tok, ""), http.StatusForbidden, codeCompanyInactive)
	mustCode(t, e.do("POST", "/api/v1/users/me/ensure-company", tok, ""), http.StatusForbidden, codeCompanyInactive)

	e.sql("UPDATE companies SET is_active = true WHERE id = $1", co)
	waitFor(t, time.Second, "reactivated company served", func() bool {
		return e.do("GET", "/api/v1/query/chats", tok, "").status == http.StatusOK
	})
}

func TestLogoutRevokesEveryOlderToken(t *testing.T) {
	t.Parallel()
	e := tenancyEnv(t, nil)
	co := e.createCompany("Acme")
	u := e.createUser("leaver@example.com", "right-password", co, bcrypt.MinCost)
	stolen := e.tokenIssuedAt(u, time.Now().Add(-time.Hour))
	other := e.tokenIssuedAt(u, time.Now().Add(-2*time.Second))
	mustStatus(t, e.do("GET", "/api/v1/query/chats", stolen, ""), 200)

	r := e.do("POST", "/api/v1/users/logout", other, "")
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	for name, tok := range map[string]string{"stolen": stolen, "the one that logged out": other} {
		mustCode(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusUnauthorized, codeTokenRevoked)
		mustCode(t, e.do("POST", "/api/v1/users/refresh", tok, ""), http.StatusUnauthorized, codeTokenRevoked)
		_ = name
	}
	// Signing in again right away works, in the same second as the revocation.
	r = e.login(u.Email, "right-password")
	mustStatus(t, r, 200)
	mustStatus(t, e.do("GET", "/api/v1/query/chats", r.json(t)["access_token"].(string), ""), 200)
	mustCode(t, e.do("POST", "/api/v1/users/logout", "", ""), http.StatusUnauthorized, codeNotAuthenticated)
}

func TestPasswordChangeRevokesOlderTokensAndReturnsNone(t *testing.T) {
	t.Parallel()
	e := tenancyEnv(t, nil)
	co := e.createCompany("Acme")
	u := e.createUser("changer@example.com", "old-password", co, bcrypt.MinCost)
	stolen := e.tokenIssuedAt(u, time.Now().Add(-time.Hour))
	mine := e.tokenIssuedAt(u, time.Now().Add(-2*time.Second))
	change := func(tok, current, next string) response {
		b, _ := json.Marshal(map[string]string{"current_password": current, "new_password": next})
		return e.do("POST", "/api/v1/users/me/password", tok, string(b))
	}

	mustCode(t, change(mine, "wrong-password", "new-password-1"), http.StatusBadRequest, codeInvalidCredentials)
	mustCode(t, change(mine, "old-password", "short"), http.StatusUnprocessableEntity, codeValidation)
	mustCode(t, change(mine, "old-password", strings.Repeat("x", 1025)), http.StatusUnprocessableEntity, codeValidation)
	mustCode(t, e.do("POST", "/api/v1/users/me/password", mine, `{"new_password":"new-password-1"}`), http.StatusUnprocessableEntity, codeValidation)
	mustStatus(t, e.do("GET", "/api/v1/query/chats", stolen, ""), 200)

	r := change(mine, "old-password", "new-password-1")
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("password change: %d %s (want 204 and no token)", r.status, r.body)
	}
	mustCode(t, e.do("GET", "/api/v1/query/chats", stolen, ""), http.StatusUnauthorized, codeTokenRevoked)
	mustCode(t, e.do("GET", "/api/v1/users/me", mine, ""), http.StatusUnauthorized, codeTokenRevoked)
	mustCode(t, e.login(u.Email, "old-password"), http.StatusUnauthorized, codeInvalidCredentials)
	mustStatus(t, e.login(u.Email, "new-password-1"), 200)
}

func TestPasswordChangeCountsAgainstLoginLimits(t *testing.T) {
	t.Parallel()
	e := tenancyEnv(t, nil, func(c *Config) { c.LoginEmailBurst, c.LoginEmailPerMinute = 3, 1 })
	e.gw.loginByEmail = newLimiter(e.cfg.LoginEmailPerMinute/60, e.cfg.LoginEmailBurst, limiterMaxKeys)
	u := e.createUser("guessed@example.com", "old-password", "", bcrypt.MinCost)
	tok := e.token(u)
	body := `{"current_password":"guess","new_password":"new-password-1"}`
	for range 3 {
		mustCode(t, e.do("POST", "/api/v1/users/me/password", tok, body), http.StatusBadRequest, codeInvalidCredentials)
	}
	r := e.do("POST", "/api/v1/users/me/password", tok, body)
	mustCode(t, r, http.StatusTooManyRequests, codeLoginRateLimited)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
}

func TestRefreshRefusesPastSessionMaxAge(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	e := tenancyEnv(t, useClock(clk), func(c *Config) { c.SessionMaxAge = 48 * time.Hour })
	co := e.createCompany("Acme")
	u := e.createUser("sessions@example.com", "right-password", co, bcrypt.MinCost)
	r := e.login(u.Email, "right-password")
	mustStatus(t, r, 200)
	tok := r.json(t)["access_token"].(string)
	signedIn := claimsOf(t, tok).AuthTime
	if signedIn != clk.Now().Unix() {
		t.Fatalf("auth_time %d, want the login time %d", signedIn, clk.Now().Unix())
	}

	// Refreshing every 20 h keeps the original sign-in time; the token never outlives it.
	for _, step := range []time.Duration{20 * time.Hour, 20 * time.Hour} {
		clk.Advance(step)
		r = e.do("POST", "/api/v1/users/refresh", tok, "")
		mustStatus(t, r, 200)
		tok = r.json(t)["access_token"].(string)
		c, err := verifyToken([]byte(testSecret), tok, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		if c.AuthTime != signedIn || c.ExpiresAt > signedIn+int64((48*time.Hour).Seconds()) {
			t.Fatalf("refreshed claims %+v: auth_time must stay %d and exp within the session", c, signedIn)
		}
	}
	clk.Advance(8*time.Hour + time.Second)
	mustCode(t, e.do("POST", "/api/v1/users/refresh", tok, ""), http.StatusUnauthorized, codeSessionExpired)

	// A token without auth_time (the previous gateway's) counts from its iat.
	legacy, err := signToken([]byte(testSecret), Claims{Subject: u.ID, CompanyID: co,
		IssuedAt: clk.Now().Add(-49 * time.Hour).Unix(), ExpiresAt: clk.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	mustCode(t, e.do("POST", "/api/v1/users/refresh", legacy, ""), http.StatusUnauthorized, codeSessionExpired)
	mustStatus(t, e.do("GET", "/api/v1/query/chats", legacy, ""), 200) // unchanged user: still valid until exp
}

// waitFor polls cond until it holds or limit passes, and returns how long it took.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond) // polls
	}
	return time.Since(start)
}

// TestPlainSQLChangesReachTwoGatewaysWithinOneSecond runs two replicas on one database, with
// the default 60 s cache, and changes users and companies behind their backs with SQL.
func TestPlainSQLChangesReachTwoGatewaysWithinOneSecond(t *testing.T) {
	up, _ := countingUpstream(t)
	dbURL := testDatabaseURL(t)
	var replicas [2]*testEnv
	for i := range replicas {
		store := openPostgresAt(t, dbURL, testDBTimeout)
		replicas[i] = startGateway(t, withUpstream(up.URL), withStore(store, dbURL))
		if replicas[i].cfg.UserCacheTTL != time.Minute {
			t.Fatalf("default cache TTL %v, want 60s", replicas[i].cfg.UserCacheTTL)
		}
	}
	e := replicas[0]
	for _, r := range replicas {
		waitFor(t, 5*time.Second, "notifications up", func() bool { return r.gw.metrics.notifyUp.Load() })
	}
	type change struct {
		query string
		args  []any
	}
	cases := []struct {
		name   string
		change func(u User, co, other string) change
		status int
	}{
		{"deactivate user", func(u User, co, other string) change {
			return change{"UPDATE users SET is_active = false WHERE id = $1", []any{u.ID}}
		}, http.StatusUnauthorized},
		{"move user", func(u User, co, other string) change {
			return change{"UPDATE users SET company_id = $2 WHERE id = $1", []any{u.ID, other}}
		}, http.StatusUnauthorized},
		{"deactivate company", func(u User, co, other string) change {
			return change{"UPDATE companies SET is_active = false WHERE id = $1", []any{co}}
		}, http.StatusForbidden},
		{"revoke sessions", func(u User, co, other string) change {
			return change{"UPDATE users SET tokens_valid_after = date_trunc('second', now()) + interval '1 second' WHERE id = $1", []any{u.ID}}
		}, http.StatusUnauthorized},
		{"delete user", func(u User, co, other string) change {
			return change{"DELETE FROM users WHERE id = $1", []any{u.ID}}
		}, http.StatusUnauthorized},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			co, other := e.createCompany(fmt.Sprint("Co ", i)), e.createCompany(fmt.Sprint("Other ", i))
			u := e.createUser(fmt.Sprintf("sql%d@example.com", i), "pw-pw-pw-pw", co, bcrypt.MinCost)
			tok := e.token(u)
			for _, r := range replicas {
				mustStatus(t, r.do("GET", "/api/v1/query/chats", tok, ""), 200) // cached now, for 60 s
			}
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, dbURL)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			ch := tc.change(u, co, other)
			changed := time.Now()
			if _, err := conn.Exec(ctx, ch.query, ch.args...); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for n, r := range replicas {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						if r.do("GET", "/api/v1/query/chats", tok, "").status == tc.status {
							t.Logf("%s: replica %d refused the token %v after the SQL change", tc.name, n+1, time.Since(changed).Round(time.Millisecond))
							return
						}
						if time.Since(changed) > time.Second {
							t.Errorf("%s: replica %d still served the token 1s after the SQL change", tc.name, n+1)
							return
						}
						time.Sleep(5 * time.Millisecond) // polls: the bound is PostgreSQL's notification, no clock seam
					}
				}()
			}
			wg.Wait()
		})
	}
}

// TestLostNotificationsStillExpireCachedUsersAfterTTL kills the notification connection:
// changes then reach the gateway when its TTL expires (moved by a fake clock), the gauge
// says so, and the listener comes back by itself with the cache emptied.
func TestLostNotificationsStillExpireCachedUsersAfterTTL(t *testing.T) {
	clk := newFakeClock()
	e := tenancyEnv(t, useClock(clk))
	co := e.createCompany("Acme")
	u := e.createUser("ttl@example.com", "pw-pw-pw-pw", co, bcrypt.MinCost)
	v := e.createUser("ttl2@example.com", "pw-pw-pw-pw", co, bcrypt.MinCost)
	tok, tokV := e.token(u), e.token(v)
	waitFor(t, 5*time.Second, "notifications up", func() bool { return e.gw.metrics.notifyUp.Load() })
	mustStatus(t, e.do("GET", "/api/v1/query/chats", tok, ""), 200)
	mustStatus(t, e.do("GET", "/api/v1/query/chats", tokV, ""), 200)

	e.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'atenex-api-gateway-listener' AND datname = current_database()")
	waitFor(t, 5*time.Second, "the loss noticed", func() bool { return !e.gw.metrics.notifyUp.Load() })
	if !strings.Contains(e.logs.String(), "user change notifications lost") {
		t.Fatalf("no WARN about the lost notifications:\n%s", e.logs.String())
	}
	// Keep the listener from coming back until the TTL case is checked: while it is down
	// (or before it empties the cache) the cached state may be served, but never past the TTL.
	e.sql("UPDATE users SET is_active = false WHERE id = $1", u.ID)
	clk.Advance(e.cfg.UserCacheTTL + time.Second)
	mustCode(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusUnauthorized, codeInvalidToken)

	waitFor(t, 10*time.Second, "the listener back by itself", func() bool { return e.gw.metrics.notifyUp.Load() })
	// Notifications flow again: a change is seen without moving the clock.
	mustStatus(t, e.do("GET", "/api/v1/query/chats", tokV, ""), 200)
	e.sql("UPDATE users SET is_active = false WHERE id = $1", v.ID)
	waitFor(t, time.Second, "change seen after reconnecting", func() bool {
		return e.do("GET", "/api/v1/query/chats", tokV, "").status == http.StatusUnauthorized
	})
}

// slowStore counts user lookups and holds each until the current round's gate opens.
type slowStore struct {
	Store
	lookups atomic.Int64
	mu      sync.Mutex
	gate    chan struct{}
}

func (s *slowStore) UserByID(ctx context.Context, id string) (User, error) {
	s.lookups.Add(1)
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	<-gate
	return s.Store.UserByID(ctx, id)
}

// TestConcurrentRequestsShareOneUserLookup runs on the in-memory store, whose change
// notifications are never lost: a reconnecting listener would empty the cache mid-round
// and make one lookup more than the round counts.
func TestConcurrentRequestsShareOneUserLookup(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	mem := newMemoryStore()
	store := &slowStore{Store: mem}
	up, hits := countingUpstream(t)
	co, err := mem.CreateCompany(context.Background(), "Acme")
	if err != nil {
		t.Fatal(err)
	}
	u, err := mem.CreateUser(context.Background(), NewUser{Email: "herd@example.com", HashedPassword: dummyHash, Role: "user", CompanyID: co.ID})
	if err != nil {
		t.Fatal(err)
	}
	e := startGateway(t, withUpstream(up.URL), withStore(store, ""), withClock(clk))
	waitFor(t, 10*time.Second, "notifications flow", e.gw.metrics.notifyUp.Load)
	tok := e.token(u)

	for round, want := range []int64{1, 2} {
		gate := make(chan struct{})
		store.mu.Lock()
		store.gate = gate
		store.mu.Unlock()
		const clients = 50
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r := e.do("GET", "/api/v1/query/chats", tok, ""); r.status != 200 {
					t.Errorf("round %d: %d %s", round, r.status, r.body)
				}
			}()
		}
		waitFor(t, 5*time.Second, "the first lookup started", func() bool { return store.lookups.Load() == want })
		close(gate)
		wg.Wait()
		if got := store.lookups.Load(); got != want {
			t.Fatalf("round %d: %d database lookups for %d concurrent requests of one user, want %d in all", round, got, clients, want)
		}
		clk.Advance(e.cfg.UserCacheTTL + time.Second) // the entry expires: exactly one more lookup
	}
	if hits.Load() != 100 {
		t.Fatalf("upstream saw %d requests, want 100", hits.Load())
	}
}

// TestDatabaseOutageKeepsSignedInUsersServed stops the database (connections refused) and,
// separately, makes it hang (a relay that stops forwarding): users seen before keep being
// proxied with no added latency, new logins get 503 within the deadline, /readyz stays 200,
// and everything recovers by itself.
func TestDatabaseOutageKeepsSignedInUsersServed(t *testing.T) {
	for _, mode := range []string{"stopped", "hanging"} {
		t.Run(mode, func(t *testing.T) {
			clk := newFakeClock()
			dbURL := testDatabaseURL(t)
			u, err := url.Parse(dbURL)
			if err != nil {
				t.Fatal(err)
			}
			relay := newTCPRelay(t, u.Host)
			const dbTimeout = 500 * time.Millisecond
			store := openPostgresAt(t, withHost(t, dbURL, relay.Addr()), dbTimeout)
			up, hits := countingUpstream(t)
			e := startGateway(t, withUpstream(up.URL), withStore(store, dbURL), withClock(clk))
			co := e.createCompany("Acme")
			var tokens []string
			for i := range 5 {
				user := e.createUser(fmt.Sprintf("seen%d@example.com", i), "right-password", co, bcrypt.MinCost)
				tokens = append(tokens, e.token(user))
			}
			latency := func(n int) time.Duration {
				var ds []time.Duration
				for i := range n {
					t0 := time.Now()
					r := e.do("GET", "/api/v1/query/chats", tokens[i%len(tokens)], "")
					ds = append(ds, time.Since(t0))
					if r.status != 200 {
						t.Fatalf("request of a user seen before: %d %s", r.status, r.body)
					}
				}
				return percentile(ds, 0.5)
			}
			before := latency(50)

			if mode == "stopped" {
				relay.Sever()
			} else {
				relay.Stall()
			}
			clk.Advance(e.cfg.UserCacheTTL + time.Second) // every entry expired: only the stale state is left
			latency(len(tokens))                          // each user's first refresh may wait staleRefreshWait
			during := latency(200)
			t.Logf("%s database: median proxied latency %v before, %v during the outage", mode, before, during)
			if during > before+10*time.Millisecond {
				t.Fatalf("median latency %v during the outage, %v before", during, before)
			}

			t0 := time.Now()
			mustCode(t, e.login("seen0@example.com", "right-password"), http.StatusServiceUnavailable, codeDatabaseUnavailable)
			if took := time.Since(t0); took > dbTimeout+time.Second {
				t.Fatalf("login took %v during the outage, deadline %v", took, dbTimeout)
			}
			stranger := e.token(User{ID: newUUID(), Email: "new@example.com", CompanyID: co})
			mustCode(t, e.do("GET", "/api/v1/query/chats", stranger, ""), http.StatusServiceUnavailable, codeDatabaseUnavailable)
			r := e.do("GET", "/readyz", "", "")
			mustStatus(t, r, 200)
			if !strings.Contains(string(r.body), `"database":"unavailable"`) {
				t.Fatalf("/readyz body does not report the database: %s", r.body)
			}
			mustStatus(t, e.do("GET", "/health", "", ""), http.StatusServiceUnavailable)

			relay.Restore()
			waitFor(t, 15*time.Second, "logins back", func() bool {
				clk.Advance(failFastMax) // past any fail-fast interval
				return e.login("seen0@example.com", "right-password").status == 200
			})
			mustStatus(t, e.do("GET", "/health", "", ""), 200)
			mustStatus(t, e.do("GET", "/api/v1/query/chats", tokens[1], ""), 200)
			if hits.Load() == 0 {
				t.Fatal("upstream saw nothing")
			}
		})
	}
}

func TestUnmigratedDatabaseRefusesToStart(t *testing.T) {
	t.Parallel()
	dbURL := testDatabaseURL(t)
	// Undo the v2 part only, as a database the previous gateway ran on looks.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"DROP TRIGGER atenex_gateway_users_changed ON users",
		"DROP TABLE company_invitations", "DROP TABLE company_domains",
		"ALTER TABLE users DROP COLUMN tokens_valid_after",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)
	env := postgresEnv(t, dbURL)
	env["GATEWAY_JWT_SECRET"] = testSecret
	env["PORT"] = freePort(t)
	env["GATEWAY_ADMIN_PORT"] = "0"
	var out syncBuffer
	err = run(ctx, nil, func(k string) string { return env[k] }, strings.NewReader(""), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "migrate") || strings.Count(err.Error(), "\n") > 0 {
		t.Fatalf("run on an unmigrated database: %v (want one line naming migrate)", err)
	}
	if exitCode(err) == 0 {
		t.Fatal("exit code 0")
	}
}

func TestPreviousGatewayTokensWorkWhileUserUnchanged(t *testing.T) {
	t.Parallel()
	secret, vectors := readPythonJoseVectors(t)
	var token string
	for _, v := range vectors {
		if v.name == "valid_with_company" {
			token = v.token
		}
	}
	claims, err := verifyToken(secret, token, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	up, _ := countingUpstream(t)
	e := startGateway(t, withUpstream(up.URL), withEnv(map[string]string{"GATEWAY_JWT_SECRET": string(secret)}))
	e.sql("INSERT INTO companies (id, name) VALUES ($1, 'Legacy Co'), ($2, 'Elsewhere')", claims.CompanyID, "3f2b8c8e-1d2f-4a3b-8c9d-0e1f2a3b4c5d")
	e.sql("INSERT INTO users (id, email, hashed_password, company_id) VALUES ($1, $2, 'x', $3)", claims.Subject, claims.Email, claims.CompanyID)

	mustStatus(t, e.do("GET", "/api/v1/query/chats", token, ""), 200)
	e.sql("UPDATE users SET company_id = '3f2b8c8e-1d2f-4a3b-8c9d-0e1f2a3b4c5d' WHERE id = $1", claims.Subject)
	waitFor(t, time.Second, "the moved user's previous-gateway token refused", func() bool {
		return e.do("GET", "/api/v1/query/chats", token, "").status == http.StatusUnauthorized
	})
	mustCode(t, e.do("GET", "/api/v1/query/chats", token, ""), http.StatusUnauthorized, codeTokenStale)
}
