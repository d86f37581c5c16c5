// admin_test.go: the administration API end to end against PostgreSQL and real HTTP: who may
// call it (the database role, within the propagation bound), every route's answers and
// refusals, the audit line of every change, database outages, the documents/stats proxy, and
// the -dev demo administrator.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// adminEnv is a gateway on a fresh database with an administrator in the company home.
type adminEnv struct {
	*testEnv
	home  string
	admin User
	tok   string // the administrator's token
}

func newAdminEnv(t *testing.T, opts ...envOption) *adminEnv {
	t.Helper()
	up, _ := countingUpstream(t)
	e := startGateway(t, append([]envOption{withUpstream(up.URL)}, opts...)...)
	home := e.createCompany("Home")
	admin := e.createAdmin("admin@example.com", home)
	return &adminEnv{testEnv: e, home: home, admin: admin, tok: e.token(admin)}
}

// createAdmin stores a user whose database role is admin.
func (e *testEnv) createAdmin(email, companyID string) User {
	e.t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("admin-password"), bcrypt.MinCost)
	if err != nil {
		e.t.Fatal(err)
	}
	u, err := e.store.CreateUser(context.Background(), NewUser{Email: email, HashedPassword: string(hash), Role: "admin", CompanyID: companyID})
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// auditLines returns the audit log lines written so far.
func (e *testEnv) auditLines() []map[string]any {
	e.t.Helper()
	var lines []map[string]any
	for _, line := range strings.Split(e.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["audit"] == true {
			lines = append(lines, m)
		}
	}
	return lines
}

// mustAuditOnce checks that exactly one audit line was written since the first `since`
// lines, by actor, for action on target.
func (e *testEnv) mustAuditOnce(t *testing.T, since int, actor, action, target string) map[string]any {
	t.Helper()
	lines := e.auditLines()[since:]
	if len(lines) != 1 {
		t.Fatalf("%d audit lines for one %s, want 1: %v", len(lines), action, lines)
	}
	l := lines[0]
	if l["actor_id"] != actor || l["action"] != action || l["target_id"] != target || l["request_id"] == "" {
		t.Fatalf("audit line = %v; want actor %s, action %s, target %s", l, actor, action, target)
	}
	return l
}

// keys returns the sorted member names of a JSON object.
func jsonKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func mustKeys(t *testing.T, m map[string]any, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := jsonKeys(m); !slices.Equal(got, want) {
		t.Fatalf("members = %v, want exactly %v", got, want)
	}
}

// jsonList decodes a JSON array of objects.
func jsonList(t *testing.T, r response) []map[string]any {
	t.Helper()
	var l []map[string]any
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatalf("response is not a JSON array (status %d): %s", r.status, r.body)
	}
	return l
}

// mustNoContent checks a 204 with an empty body.
func mustNoContent(t *testing.T, r response) {
	t.Helper()
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("status %d, body %q; want 204 and no body", r.status, r.body)
	}
}

// recentTime checks that v is an RFC 3339 time within a minute of now.
func recentTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || time.Since(ts).Abs() > time.Minute {
		t.Fatalf("time %v is not an RFC 3339 time near now (%v)", v, err)
	}
	return ts
}

// adminSampleBodies is a valid body for every administration route that reads one; the
// table-driven tests below fail for a new route without a sample, so no route goes untested.
var adminSampleBodies = map[string]string{
	"GET /api/v1/admin/stats":                               "",
	"POST /api/v1/admin/companies":                          `{"name":"Sample"}`,
	"GET /api/v1/admin/companies/select":                    "",
	"PATCH /api/v1/admin/companies/{id}":                    `{"name":"Sample renamed"}`,
	"POST /api/v1/admin/companies/{id}/invitations":         `{"email":"sample@example.com"}`,
	"GET /api/v1/admin/companies/{id}/invitations":          "",
	"DELETE /api/v1/admin/companies/{id}/invitations/{inv}": "",
	"PUT /api/v1/admin/companies/{id}/domains/{domain}":     "",
	"DELETE /api/v1/admin/companies/{id}/domains/{domain}":  "",
	"POST /api/v1/admin/users":                              `{"email":"sample@example.com","password":"a-long-password"}`,
	"GET /api/v1/admin/users/by_company/{company_id}":       "",
	"PATCH /api/v1/admin/users/{id}":                        `{"name":"Sample"}`,
	"POST /api/v1/admin/users/{id}/revoke-sessions":         "",
}

// adminCalls returns a request for every AdminAuth row of the route table: company and user
// fill the {id} of company and user routes, inv the invitation.
func adminCalls(t *testing.T, g *gateway, company, user, inv string) []struct{ pattern, method, path, body string } {
	t.Helper()
	var calls []struct{ pattern, method, path, body string }
	for _, rt := range g.routeTable() {
		if rt.auth != authAdmin {
			continue
		}
		body, ok := adminSampleBodies[rt.pattern]
		if !ok {
			t.Fatalf("no sample body for %s in adminSampleBodies", rt.pattern)
		}
		method, path, _ := strings.Cut(rt.pattern, " ")
		id := company
		if strings.HasPrefix(path, "/api/v1/admin/users/") {
			id = user
		}
		path = strings.NewReplacer("{id}", id, "{company_id}", company, "{inv}", inv, "{domain}", "sample.example.com").Replace(path)
		calls = append(calls, struct{ pattern, method, path, body string }{rt.pattern, method, path, body})
	}
	if len(calls) < 13 {
		t.Fatalf("only %d administration routes in the table", len(calls))
	}
	return calls
}

func TestAdminRoutesRefuseCallersWithoutDatabaseAdminRole(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	other := e.createCompany("Other")
	member := e.createUser("member@example.com", "member-password", e.home, bcrypt.MinCost)
	forged, err := signToken([]byte(testSecret), Claims{Subject: member.ID, Email: member.Email, CompanyID: e.home,
		Roles: []string{"admin"}, IssuedAt: time.Now().Unix(), ExpiresAt: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	withoutCompany := e.token(User{ID: e.admin.ID, Email: e.admin.Email, Role: "admin"})
	staleCompany := e.token(User{ID: e.admin.ID, Email: e.admin.Email, Role: "admin", CompanyID: other})
	inactive := e.createAdmin("inactive-admin@example.com", e.home)
	inactiveTok := e.token(inactive)
	e.sql("UPDATE users SET is_active = false WHERE id = $1", inactive.ID)

	callers := []struct {
		name, token string
		status      int
		code        string
	}{
		{"no token", "", http.StatusUnauthorized, codeNotAuthenticated},
		{"normal user", e.token(member), http.StatusForbidden, codeAdminRequired},
		{"normal user with a forged roles claim", forged, http.StatusForbidden, codeAdminRequired},
		{"admin token without a company", withoutCompany, http.StatusForbidden, codeCompanyRequired},
		{"admin token for another company", staleCompany, http.StatusUnauthorized, codeTokenStale},
		{"inactive admin", inactiveTok, http.StatusUnauthorized, codeInvalidToken},
	}
	calls := adminCalls(t, e.gw, other, member.ID, newUUID())
	for _, caller := range callers {
		t.Run(caller.name, func(t *testing.T) {
			for _, c := range calls {
				r := e.do(c.method, c.path, caller.token, c.body)
				if r.status != caller.status || r.json(t)["code"] != caller.code {
					t.Fatalf("%s %s: %d %s; want %d %s", c.method, c.path, r.status, r.body, caller.status, caller.code)
				}
				if caller.code == codeAdminRequired && r.detail(t) != detailAdminRequired {
					t.Fatalf("detail = %q, want %q", r.detail(t), detailAdminRequired)
				}
			}
		})
	}
	if lines := e.auditLines(); len(lines) != 0 {
		t.Fatalf("refused callers changed something: %v", lines)
	}
	if got := e.userNow(member.ID); got.Role != "user" || got.FullName != "Test member@example.com" {
		t.Fatalf("member changed: %+v", got)
	}
	// The same calls from the administrator are not refused by AdminAuth.
	for _, c := range calls {
		if r := e.do(c.method, c.path, e.tok, c.body); r.status == http.StatusForbidden || r.status == http.StatusUnauthorized {
			t.Errorf("%s %s as admin: %d %s", c.method, c.path, r.status, r.body)
		}
	}
}

// TestAdminDemotedInDatabaseLosesAccessWithinOneSecond changes the role with plain SQL while
// the user cache holds it for 60 s: only the database's notification can make it visible.
func TestAdminDemotedInDatabaseLosesAccessWithinOneSecond(t *testing.T) {
	e := newAdminEnv(t)
	if e.cfg.UserCacheTTL != time.Minute {
		t.Fatalf("cache TTL %v; this test needs the 60 s default", e.cfg.UserCacheTTL)
	}
	waitFor(t, 5*time.Second, "notifications up", func() bool { return e.gw.metrics.notifyUp.Load() })
	mustStatus(t, e.do("GET", "/api/v1/admin/stats", e.tok, ""), http.StatusOK) // the role is cached now

	e.sql("UPDATE users SET role = 'user' WHERE id = $1", e.admin.ID)
	took := waitFor(t, time.Second, "demoted administrator refused", func() bool {
		return e.do("GET", "/api/v1/admin/stats", e.tok, "").status == http.StatusForbidden
	})
	t.Logf("demotion seen after %v", took)
	mustCode(t, e.do("POST", "/api/v1/admin/companies", e.tok, `{"name":"Too late"}`), http.StatusForbidden, codeAdminRequired)
	// Still a valid user of their company: only the administration API is closed.
	mustStatus(t, e.do("GET", "/api/v1/query/chats", e.tok, ""), http.StatusOK)

	e.sql("UPDATE users SET role = 'admin' WHERE id = $1", e.admin.ID)
	waitFor(t, time.Second, "promoted user let in", func() bool {
		return e.do("GET", "/api/v1/admin/stats", e.tok, "").status == http.StatusOK
	})
}

func TestAdminStatsCountActiveUsersOfActiveCompanies(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	alpha, beta, closed := e.createCompany("Alpha"), e.createCompany("beta"), e.createCompany("Closed")
	e.createUser("a1@example.com", "pw-pw-pw-pw", alpha, bcrypt.MinCost)
	e.createUser("a2@example.com", "pw-pw-pw-pw", alpha, bcrypt.MinCost)
	gone := e.createUser("a3@example.com", "pw-pw-pw-pw", alpha, bcrypt.MinCost)
	e.sql("UPDATE users SET is_active = false WHERE id = $1", gone.ID)
	e.createUser("c1@example.com", "pw-pw-pw-pw", closed, bcrypt.MinCost)
	e.sql("UPDATE companies SET is_active = false WHERE id = $1", closed)
	e.createUser("nobody@example.com", "pw-pw-pw-pw", "", bcrypt.MinCost)

	r := e.do("GET", "/api/v1/admin/stats", e.tok, "")
	mustStatus(t, r, http.StatusOK)
	var got statsView
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	want := statsView{CompanyCount: 3, UsersPerCompany: []companyUsersView{
		{CompanyID: alpha, Name: "Alpha", UserCount: 2}, {CompanyID: beta, Name: "beta", UserCount: 0},
		{CompanyID: e.home, Name: "Home", UserCount: 1},
	}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stats = %+v\nwant    %+v", got, want)
	}
	mustKeys(t, r.json(t), "company_count", "users_per_company")
}

func TestAdminCreateCompanyThenSelectListsIt(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	closed := e.createCompany("Closed")
	e.sql("UPDATE companies SET is_active = false WHERE id = $1", closed)

	n := len(e.auditLines())
	r := e.do("POST", "/api/v1/admin/companies", e.tok, `{"name":"  Acme Corp  "}`)
	mustStatus(t, r, http.StatusCreated)
	created := r.json(t)
	mustKeys(t, created, "id", "name", "created_at")
	id, _ := created["id"].(string)
	if !isUUID(id) || created["name"] != "Acme Corp" {
		t.Fatalf("created %v; want a UUID and the trimmed name", created)
	}
	recentTime(t, created["created_at"])
	e.mustAuditOnce(t, n, e.admin.ID, "company.create", id)

	r = e.do("GET", "/api/v1/admin/companies/select", e.tok, "")
	mustStatus(t, r, http.StatusOK)
	want := []map[string]any{{"id": id, "name": "Acme Corp"}, {"id": e.home, "name": "Home"}}
	if got := jsonList(t, r); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("select = %v, want %v (active companies by name)", got, want)
	}

	bad := []struct{ name, body string }{
		{"no name", `{}`},
		{"null name", `{"name":null}`},
		{"empty name", `{"name":""}`},
		{"blank name", `{"name":"   "}`},
		{"number", `{"name":42}`},
		{"control character", `{"name":"a\u0000b"}`},
		{"too long", `{"name":"` + strings.Repeat("x", maxNameBytes+1) + `"}`},
		{"not JSON", `{"name":`},
		{"array", `["Acme"]`},
		{"no body", ``},
	}
	n = len(e.auditLines())
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			mustCode(t, e.do("POST", "/api/v1/admin/companies", e.tok, tc.body), http.StatusUnprocessableEntity, codeValidation)
		})
	}
	mustCode(t, e.do("POST", "/api/v1/admin/companies", e.tok, `{"name":"`+strings.Repeat("x", int(e.cfg.MaxBodyBytes))+`"}`),
		http.StatusRequestEntityTooLarge, codeBodyTooLarge)
	if got := jsonList(t, e.do("GET", "/api/v1/admin/companies/select", e.tok, "")); len(got) != 2 {
		t.Fatalf("refused bodies created companies: %v", got)
	}
	if lines := e.auditLines()[n:]; len(lines) != 0 {
		t.Fatalf("refused bodies were audited: %v", lines)
	}
}

func TestAdminCreateUserSignsInWithItsPassword(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t, withProductionHashCost())
	const password = "a-long-secret-password"
	n := len(e.auditLines())
	r := e.do("POST", "/api/v1/admin/users", e.tok, fmt.Sprintf(
		`{"email":"New.User@Example.com","password":%q,"name":"New User","company_id":%q,"roles":["user","admin"]}`,
		password, strings.ToUpper(e.home)))
	mustStatus(t, r, http.StatusCreated)
	u := r.json(t)
	mustKeys(t, u, "id", "email", "name", "company_id", "roles", "is_active", "created_at")
	id, _ := u["id"].(string)
	if !isUUID(id) || u["email"] != "New.User@Example.com" || u["name"] != "New User" || u["company_id"] != e.home ||
		fmt.Sprint(u["roles"]) != "[admin]" || u["is_active"] != true {
		t.Fatalf("created %v", u)
	}
	recentTime(t, u["created_at"])
	line := e.mustAuditOnce(t, n, e.admin.ID, "user.create", id)
	if line["email"] != "New.User@Example.com" || line["role"] != "admin" || line["company_id"] != e.home {
		t.Fatalf("audit line = %v", line)
	}
	if strings.Contains(e.logs.String(), password) {
		t.Fatal("the password reached the log")
	}
	if hash := e.userNow(id).HashedPassword; !strings.HasPrefix(hash, "$2b$12$") {
		t.Fatalf("stored hash %q is not passlib's cost-12 bcrypt", hash[:7])
	}
	login := e.login("new.user@example.com", password)
	mustStatus(t, login, http.StatusOK)
	if l := login.json(t); l["company_id"] != e.home || l["role"] != "admin" {
		t.Fatalf("login of the created user = %v", l)
	}
}

func TestAdminCreateUserWithOnlyEmailAndPasswordHasNoCompanyAndTheUserRole(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	r := e.do("POST", "/api/v1/admin/users", e.tok, `{"email":"plain@example.com","password":"another-password","name":null,"company_id":null}`)
	mustStatus(t, r, http.StatusCreated)
	if p := r.json(t); p["name"] != nil || p["company_id"] != nil || fmt.Sprint(p["roles"]) != "[user]" {
		t.Fatalf("created %v; want null name and company, roles [user]", p)
	}
}

func TestAdminCreateUserRefusalsWriteNothing(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	closed := e.createCompany("Closed")
	e.sql("UPDATE companies SET is_active = false WHERE id = $1", closed)
	e.createUser("taken@example.com", "pw-pw-pw-pw", e.home, bcrypt.MinCost)
	body := func(email, password, extra string) string {
		return fmt.Sprintf(`{"email":%q,"password":%q%s}`, email, password, extra)
	}
	cases := []struct {
		name, email, body string
		status            int
		code              string
	}{
		{"duplicate email in another case", "TAKEN@example.com", body("TAKEN@example.com", "long-enough", ""), 409, codeAlreadyExists},
		{"unknown company", "u1@example.com", body("u1@example.com", "long-enough", `,"company_id":"`+newUUID()+`"`), 422, codeCompanyNotFound},
		{"inactive company", "u2@example.com", body("u2@example.com", "long-enough", `,"company_id":"`+closed+`"`), 422, codeCompanyNotFound},
		{"malformed company", "u3@example.com", body("u3@example.com", "long-enough", `,"company_id":"acme"`), 422, codeValidation},
		{"password of 7 bytes", "u4@example.com", body("u4@example.com", "7-bytes", ""), 422, codeValidation},
		{"password over 1024 bytes", "u5@example.com", body("u5@example.com", strings.Repeat("p", maxPasswordBytes+1), ""), 422, codeValidation},
		{"password with NUL", "u6@example.com", `{"email":"u6@example.com","password":"long\u0000enough"}`, 422, codeValidation},
		{"no password", "u7@example.com", `{"email":"u7@example.com"}`, 422, codeValidation},
		{"invalid email", "not-an-email", body("not-an-email", "long-enough", ""), 422, codeValidation},
		{"unknown role", "u8@example.com", body("u8@example.com", "long-enough", `,"roles":["superuser"]`), 422, codeValidation},
		{"empty roles", "u9@example.com", body("u9@example.com", "long-enough", `,"roles":[]`), 422, codeValidation},
		{"roles not a list", "u10@example.com", body("u10@example.com", "long-enough", `,"roles":"admin"`), 422, codeValidation},
		{"name too long", "u11@example.com", body("u11@example.com", "long-enough", `,"name":"`+strings.Repeat("n", maxNameBytes+1)+`"`), 422, codeValidation},
		{"array body", "u12@example.com", `[{"email":"u12@example.com"}]`, 422, codeValidation},
	}
	n := len(e.auditLines())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mustCode(t, e.do("POST", "/api/v1/admin/users", e.tok, tc.body), tc.status, tc.code)
			if tc.code != codeAlreadyExists {
				if _, err := e.store.UserByEmail(context.Background(), tc.email); err != errNotFound {
					t.Fatalf("a refused user was written (%v)", err)
				}
			}
		})
	}
	if lines := e.auditLines()[n:]; len(lines) != 0 {
		t.Fatalf("refusals were audited: %v", lines)
	}
}

func TestAdminUsersByCompanyPagesByEmail(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	acme, other := e.createCompany("Acme"), e.createCompany("Other")
	for _, email := range []string{"carol@example.com", "Alice@example.com", "bob@example.com"} {
		e.createUser(email, "pw-pw-pw-pw", acme, bcrypt.MinCost)
	}
	gone := e.createUser("dave@example.com", "pw-pw-pw-pw", acme, bcrypt.MinCost)
	e.sql("UPDATE users SET is_active = false WHERE id = $1", gone.ID)
	e.createUser("eve@example.com", "pw-pw-pw-pw", other, bcrypt.MinCost)

	emails := func(query string) []string {
		t.Helper()
		r := e.do("GET", "/api/v1/admin/users/by_company/"+acme+query, e.tok, "")
		mustStatus(t, r, http.StatusOK)
		var out []string
		for _, u := range jsonList(t, r) {
			mustKeys(t, u, "id", "email", "name", "company_id", "is_active", "created_at", "roles")
			if u["company_id"] != acme {
				t.Fatalf("another company's user listed: %v", u)
			}
			if u["email"] == "dave@example.com" && u["is_active"] != false {
				t.Fatalf("deactivated user shown active: %v", u)
			}
			out = append(out, u["email"].(string))
		}
		return out
	}
	all := []string{"Alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"}
	pages := []struct {
		query string
		want  []string
	}{
		{"", all},
		{"?limit=50&offset=0", all},
		{"?limit=2", all[:2]},
		{"?limit=2&offset=2", all[2:]},
		{"?offset=3", all[3:]},
		{"?limit=200&offset=4", nil},
	}
	for _, p := range pages {
		if got := emails(p.query); !slices.Equal(got, p.want) {
			t.Errorf("%q = %v, want %v", p.query, got, p.want)
		}
	}
	if r := e.do("GET", "/api/v1/admin/users/by_company/"+acme+"?offset=10", e.tok, ""); string(r.body) != "[]\n" {
		t.Errorf("page past the end = %q, want an empty list", r.body)
	}

	refusals := []struct {
		path   string
		status int
		code   string
	}{
		{acme + "?limit=0", 422, codeValidation},
		{acme + "?limit=201", 422, codeValidation},
		{acme + "?limit=ten", 422, codeValidation},
		{acme + "?offset=-1", 422, codeValidation},
		{acme + "?offset=99999999999999999999", 422, codeValidation},
		{newUUID(), 404, codeCompanyNotFound},
		{"acme", 422, codeValidation},
	}
	for _, tc := range refusals {
		mustCode(t, e.do("GET", "/api/v1/admin/users/by_company/"+tc.path, e.tok, ""), tc.status, tc.code)
	}
}

func TestAdminPatchCompanyDeactivationRefusesItsUsersAtOnce(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	acme := e.createCompany("Acme")
	member := e.createUser("member@acme.example", "member-password", acme, bcrypt.MinCost)
	tok := e.token(member)
	mustStatus(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusOK) // cached for 60 s

	n := len(e.auditLines())
	r := e.do("PATCH", "/api/v1/admin/companies/"+acme, e.tok, `{"is_active":false}`)
	mustStatus(t, r, http.StatusOK)
	co := r.json(t)
	mustKeys(t, co, "id", "name", "is_active", "created_at")
	if co["id"] != acme || co["name"] != "Acme" || co["is_active"] != false {
		t.Fatalf("patched %v", co)
	}
	if line := e.mustAuditOnce(t, n, e.admin.ID, "company.update", acme); line["is_active"] != false {
		t.Fatalf("audit line = %v", line)
	}
	// No waiting: this replica dropped the company's users from its cache.
	mustCode(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusForbidden, codeCompanyInactive)
	for _, c := range jsonList(t, e.do("GET", "/api/v1/admin/companies/select", e.tok, "")) {
		if c["id"] == acme {
			t.Fatal("deactivated company still offered in the selector")
		}
	}

	r = e.do("PATCH", "/api/v1/admin/companies/"+acme, e.tok, `{"is_active":true,"name":"Acme Two"}`)
	mustStatus(t, r, http.StatusOK)
	if co := r.json(t); co["is_active"] != true || co["name"] != "Acme Two" {
		t.Fatalf("patched %v", co)
	}
	mustStatus(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusOK)

	refusals := []struct {
		name, id, body string
		status         int
		code           string
	}{
		{"nothing to change", acme, `{}`, 422, codeValidation},
		{"null name only", acme, `{"name":null}`, 422, codeValidation},
		{"misspelt field", acme, `{"active":false}`, 422, codeValidation},
		{"is_active as a string", acme, `{"is_active":"false"}`, 422, codeValidation},
		{"is_active null", acme, `{"is_active":null}`, 422, codeValidation},
		{"empty name", acme, `{"name":"","is_active":false}`, 422, codeValidation},
		{"unknown company", newUUID(), `{"is_active":false}`, 404, codeCompanyNotFound},
		{"malformed id", "acme", `{"is_active":false}`, 422, codeValidation},
		{"own company", e.home, `{"is_active":false}`, 409, codeSelfLockout},
	}
	n = len(e.auditLines())
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			mustCode(t, e.do("PATCH", "/api/v1/admin/companies/"+tc.id, e.tok, tc.body), tc.status, tc.code)
		})
	}
	mustStatus(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusOK)
	mustStatus(t, e.do("GET", "/api/v1/admin/stats", e.tok, ""), http.StatusOK) // the own company is active
	if lines := e.auditLines()[n:]; len(lines) != 0 {
		t.Fatalf("refusals were audited: %v", lines)
	}
}

func TestAdminPatchUserTakesEffectAtOnce(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	other := e.createCompany("Other")
	member := e.createUser("member@example.com", "member-password", e.home, bcrypt.MinCost)
	tok := e.tokenIssuedAt(member, time.Now().Add(-2*time.Second))
	mustStatus(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusOK) // cached for 60 s
	path := "/api/v1/admin/users/" + member.ID

	patch := func(body string) map[string]any {
		t.Helper()
		n := len(e.auditLines())
		r := e.do("PATCH", path, e.tok, body)
		mustStatus(t, r, http.StatusOK)
		e.mustAuditOnce(t, n, e.admin.ID, "user.update", member.ID)
		u := r.json(t)
		mustKeys(t, u, "id", "email", "name", "company_id", "roles", "is_active", "created_at")
		return u
	}
	if u := patch(`{"name":"Renamed"}`); u["name"] != "Renamed" || u["company_id"] != e.home || fmt.Sprint(u["roles"]) != "[user]" {
		t.Fatalf("renamed: %v", u)
	}
	if u := patch(`{"name":null}`); u["name"] != nil {
		t.Fatalf("name cleared: %v", u)
	}

	// Promotion and demotion reach AdminAuth at once, whatever the token says.
	if u := patch(`{"roles":["admin"]}`); fmt.Sprint(u["roles"]) != "[admin]" {
		t.Fatalf("promoted: %v", u)
	}
	mustStatus(t, e.do("GET", "/api/v1/admin/stats", tok, ""), http.StatusOK)
	patch(`{"roles":["user"]}`)
	mustCode(t, e.do("GET", "/api/v1/admin/stats", tok, ""), http.StatusForbidden, codeAdminRequired)

	// Moved: the old token names the old company.
	if u := patch(`{"company_id":"` + other + `"}`); u["company_id"] != other {
		t.Fatalf("moved: %v", u)
	}
	mustCode(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusUnauthorized, codeTokenStale)
	if u := patch(`{"company_id":null}`); u["company_id"] != nil {
		t.Fatalf("company removed: %v", u)
	}

	// Deactivated: refused at once, and activating again does not revive the old token.
	if u := patch(`{"company_id":"` + e.home + `","is_active":false}`); u["is_active"] != false || u["company_id"] != e.home {
		t.Fatalf("deactivated: %v", u)
	}
	mustCode(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusUnauthorized, codeInvalidToken)
	mustCode(t, e.login(member.Email, "member-password"), http.StatusUnauthorized, codeInvalidCredentials)
	patch(`{"is_active":true}`)
	mustCode(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusUnauthorized, codeTokenRevoked)
	mustStatus(t, e.login(member.Email, "member-password"), http.StatusOK)
}

func TestAdminPatchUserRefusalsChangeNothing(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	closed := e.createCompany("Closed")
	e.sql("UPDATE companies SET is_active = false WHERE id = $1", closed)
	member := e.createUser("member@example.com", "member-password", e.home, bcrypt.MinCost)
	before, err := e.store.AccountByID(context.Background(), member.ID)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, id, body string
		status         int
		code           string
	}{
		{"nothing to change", member.ID, `{}`, 422, codeValidation},
		{"misspelt field", member.ID, `{"role":"admin"}`, 422, codeValidation},
		{"is_active as a string", member.ID, `{"is_active":"no"}`, 422, codeValidation},
		{"is_active null", member.ID, `{"is_active":null}`, 422, codeValidation},
		{"unknown role", member.ID, `{"roles":["root"]}`, 422, codeValidation},
		{"empty roles", member.ID, `{"roles":[]}`, 422, codeValidation},
		{"roles not a list", member.ID, `{"roles":"admin"}`, 422, codeValidation},
		{"malformed company", member.ID, `{"company_id":"acme"}`, 422, codeValidation},
		{"name is a number", member.ID, `{"name":7}`, 422, codeValidation},
		{"control character in name", member.ID, `{"name":"a\u0007b"}`, 422, codeValidation},
		// The company is refused, so the rest of the change is not made either.
		{"unknown company", member.ID, `{"name":"x","is_active":false,"company_id":"` + newUUID() + `"}`, 422, codeCompanyNotFound},
		{"inactive company", member.ID, `{"name":"x","is_active":false,"company_id":"` + closed + `"}`, 422, codeCompanyNotFound},
		{"not JSON", member.ID, `{"name":`, 422, codeValidation},
		{"unknown user", newUUID(), `{"name":"x"}`, 404, codeNotFound},
		{"malformed user id", "nobody", `{"name":"x"}`, 422, codeValidation},
	}
	n := len(e.auditLines())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mustCode(t, e.do("PATCH", "/api/v1/admin/users/"+tc.id, e.tok, tc.body), tc.status, tc.code)
			after, err := e.store.AccountByID(context.Background(), member.ID)
			if err != nil || after != before {
				t.Fatalf("refused change altered the user: %+v (%v), was %+v", after, err, before)
			}
		})
	}
	if lines := e.auditLines()[n:]; len(lines) != 0 {
		t.Fatalf("refusals were audited: %v", lines)
	}
}

func TestAdminCannotLockThemselvesOut(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	self := "/api/v1/admin/users/" + e.admin.ID
	mustCode(t, e.do("PATCH", self, e.tok, `{"is_active":false}`), http.StatusConflict, codeSelfLockout)
	mustCode(t, e.do("PATCH", self, e.tok, `{"roles":["user"]}`), http.StatusConflict, codeSelfLockout)
	mustCode(t, e.do("PATCH", "/api/v1/admin/companies/"+e.home, e.tok, `{"is_active":false}`), http.StatusConflict, codeSelfLockout)
	mustStatus(t, e.do("GET", "/api/v1/admin/stats", e.tok, ""), http.StatusOK)
	// Renaming oneself is fine, and another administrator may demote this one.
	mustStatus(t, e.do("PATCH", self, e.tok, `{"name":"Me"}`), http.StatusOK)
	second := e.createAdmin("second@example.com", e.home)
	mustStatus(t, e.do("PATCH", self, e.token(second), `{"roles":["user"]}`), http.StatusOK)
	mustCode(t, e.do("GET", "/api/v1/admin/stats", e.tok, ""), http.StatusForbidden, codeAdminRequired)
}

func TestAdminInvitationsCreateListRevoke(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	acme := e.createCompany("Acme")
	base := "/api/v1/admin/companies/" + acme + "/invitations"

	n := len(e.auditLines())
	r := e.do("POST", base, e.tok, `{"email":"Invitee@Example.com"}`)
	mustStatus(t, r, http.StatusCreated)
	inv := r.json(t)
	mustKeys(t, inv, "id", "company_id", "email", "role", "created_by", "created_at", "expires_at")
	invID, _ := inv["id"].(string)
	if !isUUID(invID) || inv["company_id"] != acme || inv["email"] != "Invitee@Example.com" || inv["role"] != "user" || inv["created_by"] != e.admin.ID {
		t.Fatalf("created %v", inv)
	}
	if exp := recentTime(t, inv["created_at"]).Add(7 * 24 * time.Hour); !strings.HasPrefix(inv["expires_at"].(string), exp.Format("2006-01-02T15")) {
		t.Fatalf("expires_at %v, want 7 days after creation", inv["expires_at"])
	}
	e.mustAuditOnce(t, n, e.admin.ID, "invitation.create", invID)

	r = e.do("POST", base, e.tok, `{"email":"boss@example.com","role":"admin","expires_in_days":1}`)
	mustStatus(t, r, http.StatusCreated)
	boss := r.json(t)
	if boss["role"] != "admin" {
		t.Fatalf("created %v", boss)
	}
	r = e.do("GET", base, e.tok, "")
	mustStatus(t, r, http.StatusOK)
	if l := jsonList(t, r); len(l) != 2 || l[0]["id"] != boss["id"] || l[1]["id"] != invID {
		t.Fatalf("open invitations = %v, want boss's then the invitee's", l)
	}

	// The invitee signs up and lands in the company from the login form.
	e.createUser("invitee@example.com", "invitee-password", "", bcrypt.MinCost)
	login := e.login("invitee@example.com", "invitee-password")
	mustStatus(t, login, http.StatusOK)
	if login.json(t)["company_id"] != acme {
		t.Fatalf("invitee landed in %v", login.json(t)["company_id"])
	}
	if l := jsonList(t, e.do("GET", base, e.tok, "")); len(l) != 1 || l[0]["id"] != boss["id"] {
		t.Fatalf("after acceptance open invitations = %v", l)
	}

	// Through another company's path, the invitation is not found and stays open.
	mustCode(t, e.do("DELETE", "/api/v1/admin/companies/"+e.home+"/invitations/"+boss["id"].(string), e.tok, ""), http.StatusNotFound, codeNotFound)
	n = len(e.auditLines())
	mustNoContent(t, e.do("DELETE", base+"/"+boss["id"].(string), e.tok, ""))
	e.mustAuditOnce(t, n, e.admin.ID, "invitation.revoke", boss["id"].(string))
	mustCode(t, e.do("DELETE", base+"/"+boss["id"].(string), e.tok, ""), http.StatusNotFound, codeNotFound)
	mustCode(t, e.do("DELETE", base+"/"+invID, e.tok, ""), http.StatusNotFound, codeNotFound) // accepted
	if r := e.do("GET", base, e.tok, ""); string(r.body) != "[]\n" {
		t.Fatalf("open invitations = %s, want []", r.body)
	}

	refusals := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"invalid email", "POST", base, `{"email":"nope"}`, 422, codeValidation},
		{"unknown role", "POST", base, `{"email":"x@example.com","role":"owner"}`, 422, codeValidation},
		{"zero days", "POST", base, `{"email":"x@example.com","expires_in_days":0}`, 422, codeValidation},
		{"too many days", "POST", base, `{"email":"x@example.com","expires_in_days":366}`, 422, codeValidation},
		{"days as a string", "POST", base, `{"email":"x@example.com","expires_in_days":"7"}`, 422, codeValidation},
		{"fractional days", "POST", base, `{"email":"x@example.com","expires_in_days":1.5}`, 422, codeValidation},
		{"unknown company", "POST", "/api/v1/admin/companies/" + newUUID() + "/invitations", `{"email":"x@example.com"}`, 404, codeCompanyNotFound},
		{"list of unknown company", "GET", "/api/v1/admin/companies/" + newUUID() + "/invitations", "", 404, codeCompanyNotFound},
		{"malformed company", "GET", "/api/v1/admin/companies/acme/invitations", "", 422, codeValidation},
		{"malformed invitation", "DELETE", base + "/inv-1", "", 422, codeValidation},
	}
	n = len(e.auditLines())
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			mustCode(t, e.do(tc.method, tc.path, e.tok, tc.body), tc.status, tc.code)
		})
	}
	if lines := e.auditLines()[n:]; len(lines) != 0 {
		t.Fatalf("refusals were audited: %v", lines)
	}
}

func TestAdminDomainsRegisterAndRemove(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	acme := e.createCompany("Acme")
	path := "/api/v1/admin/companies/" + acme + "/domains/"

	for range 2 { // idempotent
		n := len(e.auditLines())
		r := e.do("PUT", path+"Acme.EXAMPLE", e.tok, "")
		mustStatus(t, r, http.StatusOK)
		if d := r.json(t); d["domain"] != "acme.example" || d["company_id"] != acme {
			t.Fatalf("registered %v", d)
		}
		if line := e.mustAuditOnce(t, n, e.admin.ID, "domain.add", acme); line["domain"] != "acme.example" {
			t.Fatalf("audit line = %v", line)
		}
	}
	// One company per domain, and another company's path never removes it.
	mustCode(t, e.do("PUT", "/api/v1/admin/companies/"+e.home+"/domains/acme.example", e.tok, ""), http.StatusConflict, codeAlreadyExists)
	mustCode(t, e.do("DELETE", "/api/v1/admin/companies/"+e.home+"/domains/acme.example", e.tok, ""), http.StatusNotFound, codeNotFound)
	e.createUser("newcomer@acme.example", "newcomer-password", "", bcrypt.MinCost)
	if login := e.login("newcomer@acme.example", "newcomer-password"); login.json(t)["company_id"] != acme {
		t.Fatalf("a user of the domain landed in %v", login.json(t)["company_id"])
	}

	n := len(e.auditLines())
	mustNoContent(t, e.do("DELETE", path+"acme.example", e.tok, ""))
	e.mustAuditOnce(t, n, e.admin.ID, "domain.remove", acme)
	mustCode(t, e.do("DELETE", path+"acme.example", e.tok, ""), http.StatusNotFound, codeNotFound)

	for _, bad := range []string{"localhost", "exa_mple.com", "-bad.example", "a..example"} {
		mustCode(t, e.do("PUT", path+bad, e.tok, ""), http.StatusUnprocessableEntity, codeValidation)
	}
	mustCode(t, e.do("PUT", "/api/v1/admin/companies/"+newUUID()+"/domains/other.example", e.tok, ""), http.StatusNotFound, codeCompanyNotFound)
	mustCode(t, e.do("PUT", "/api/v1/admin/companies/acme/domains/other.example", e.tok, ""), http.StatusUnprocessableEntity, codeValidation)
}

func TestAdminRevokeSessionsRefusesOlderTokensAtOnce(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	member := e.createUser("member@example.com", "member-password", e.home, bcrypt.MinCost)
	tok := e.tokenIssuedAt(member, time.Now().Add(-2*time.Second))
	mustStatus(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusOK) // cached for 60 s

	n := len(e.auditLines())
	mustNoContent(t, e.do("POST", "/api/v1/admin/users/"+member.ID+"/revoke-sessions", e.tok, ""))
	e.mustAuditOnce(t, n, e.admin.ID, "user.revoke_sessions", member.ID)
	mustCode(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusUnauthorized, codeTokenRevoked)
	mustStatus(t, e.login(member.Email, "member-password"), http.StatusOK)

	mustCode(t, e.do("POST", "/api/v1/admin/users/"+newUUID()+"/revoke-sessions", e.tok, ""), http.StatusNotFound, codeNotFound)
	mustCode(t, e.do("POST", "/api/v1/admin/users/nobody/revoke-sessions", e.tok, ""), http.StatusUnprocessableEntity, codeValidation)
}

// TestAdminDatabaseOutageAnswers503 cuts the database under a signed-in administrator: every
// route answers 503 database_unavailable — never a 404, 409 or 422 that would tell the
// dashboard something false, and never a 500.
func TestAdminDatabaseOutageAnswers503(t *testing.T) {
	dbURL := testDatabaseURL(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	relay := newTCPRelay(t, u.Host)
	store, err := openPostgres(context.Background(), withHost(t, dbURL, relay.Addr()), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	e := serveTestEnv(t, testConfig(t, nil), store, dbURL, nil)
	home := e.createCompany("Home")
	admin := e.createAdmin("admin@example.com", home)
	member := e.createUser("member@example.com", "member-password", home, bcrypt.MinCost)
	tok := e.token(admin)
	mustStatus(t, e.do("GET", "/api/v1/admin/stats", tok, ""), http.StatusOK) // the administrator is cached

	relay.Sever()
	n := len(e.auditLines())
	for _, c := range adminCalls(t, e.gw, home, member.ID, newUUID()) {
		mustCode(t, e.do(c.method, c.path, tok, c.body), http.StatusServiceUnavailable, codeDatabaseUnavailable)
	}
	if lines := e.auditLines()[n:]; len(lines) != 0 {
		t.Fatalf("failed changes were audited: %v", lines)
	}
}

func TestAdminAuditLineIgnoresLogLevel(t *testing.T) {
	var logs syncBuffer
	cfg := testConfig(t, nil)
	g := newGateway(cfg, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError})), newMemoryStore(), newMetrics())
	t.Cleanup(g.close)
	r := httptest.NewRequest("POST", "/api/v1/admin/companies", nil)
	r = r.WithContext(withCaller(r.Context(), &requestInfo{}, identity{UserID: "actor"}))
	g.log.Info("an ordinary line the level drops")
	g.audit(r, "company.create", "target")
	var line map[string]any
	if err := json.Unmarshal([]byte(logs.String()), &line); err != nil {
		t.Fatalf("want exactly the audit line at log level ERROR, got %q", logs.String())
	}
	if line["audit"] != true || line["actor_id"] != "actor" || line["action"] != "company.create" || line["target_id"] != "target" {
		t.Fatalf("audit line = %v", line)
	}
}

func TestDocumentsStatsProxiedToIngestStatsWithStrictAuth(t *testing.T) {
	t.Parallel()
	upstream, last := recordingUpstream(t)
	e := newTestEnv(t, map[string]string{"GATEWAY_INGEST_SERVICE_URL": upstream.URL})
	co := e.createCompany("Acme")
	u := e.createUser("docs@example.com", "pw-pw-pw-pw", co, bcrypt.MinCost)

	r := e.do("GET", "/api/v1/documents/stats?from_date=2024-01-01&status=processed&q=a%20b", e.token(u), "", "X-Company-ID", newUUID())
	mustStatus(t, r, http.StatusOK)
	got := last()
	if got.URL.Path != "/api/v1/ingest/stats" || got.URL.RawQuery != "from_date=2024-01-01&status=processed&q=a%20b" {
		t.Fatalf("upstream saw %s?%s", got.URL.Path, got.URL.RawQuery)
	}
	if got.Header.Get("X-Company-ID") != co || got.Header.Get("X-User-ID") != u.ID || got.Header.Get("X-User-Email") != u.Email {
		t.Fatalf("identity headers at the upstream: %v", got.Header)
	}

	mustCode(t, e.do("GET", "/api/v1/documents/stats", "", ""), http.StatusUnauthorized, codeNotAuthenticated)
	mustCode(t, e.do("GET", "/api/v1/documents/stats", e.token(User{ID: u.ID, Email: u.Email}), ""), http.StatusForbidden, codeCompanyRequired)
	mustCode(t, e.do("POST", "/api/v1/documents/stats", e.token(u), ""), http.StatusMethodNotAllowed, codeMethodNotAllowed)
	mustCode(t, e.do("GET", "/api/v1/documents/other", e.token(u), ""), http.StatusNotFound, codeNotFound)
}

// TestRunDevModeDemoUserIsAnAdmin runs the README's administration examples against
// `go run . -dev`: the demo user is an administrator and the start log says so.
func TestRunDevModeDemoUserIsAnAdmin(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := startRun(t, ctx, []string{"-dev"}, map[string]string{"GATEWAY_DRAIN_DELAY": "0s"})
	var demo map[string]any
	for _, line := range g.logLines() {
		if _, ok := line["demo_email"]; ok {
			demo = line
		}
	}
	if demo == nil || demo["level"] != "WARN" || demo["demo_role"] != "admin" || !strings.Contains(demo["msg"].(string), "administrator") {
		t.Fatalf("the demo user's WARN line does not say it is an administrator: %v", demo)
	}
	_, login := postJSON(t, g.base+"/api/v1/users/login", "", fmt.Sprintf(`{"email":%q,"password":%q}`, demo["demo_email"], demo["demo_password"]))
	token, _ := login["access_token"].(string)
	call := func(method, path, body string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, g.base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v any
		json.NewDecoder(resp.Body).Decode(&v)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %v, want %d", method, path, resp.StatusCode, v, want)
		}
		m, _ := v.(map[string]any)
		return m
	}
	if stats := call("GET", "/api/v1/admin/stats", "", 200); stats["company_count"] != 1.0 {
		t.Fatalf("stats = %v", stats)
	}
	co := call("POST", "/api/v1/admin/companies", `{"name":"Acme"}`, 201)
	call("POST", "/api/v1/admin/users", fmt.Sprintf(`{"email":"ana@acme.example","password":"a-long-password","name":"Ana","company_id":%q,"roles":["user"]}`, co["id"]), 201)
	call("GET", "/api/v1/admin/users/by_company/"+co["id"].(string)+"?limit=50&offset=0", "", 200)
	call("GET", "/api/v1/documents/stats", "", 200)
	cancel()
	if err := g.wait(10 * time.Second); err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestREADMEDocumentsEveryAdminRoute(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(testConfig(t, nil), slog.New(slog.DiscardHandler), newMemoryStore(), newMetrics())
	t.Cleanup(g.close)
	for _, rt := range g.routeTable() {
		if rt.auth == authAdmin && !strings.Contains(string(readme), "\n| `"+rt.pattern) {
			t.Errorf("README's administration table lacks %s", rt.pattern)
		}
	}
}
