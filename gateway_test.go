// gateway_test.go: startGateway, the one helper every end-to-end test starts its gateway
// with, and the gateway's own endpoints against a real PostgreSQL: login, refresh, me,
// StrictAuth, health, CORS and malformed bodies.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"
)

const testSecret = "integration-test-secret-0123456789-abcdefghij"

// testDBTimeout is the store deadline of tests that do not study outages: generous, so a
// loaded machine running the race detector never turns a slow query into a 503.
const testDBTimeout = 5 * time.Second

// testConfig builds a validated configuration from env over a minimal production-like base.
func testConfig(t testing.TB, env map[string]string) *Config {
	t.Helper()
	base := map[string]string{
		"GATEWAY_JWT_SECRET":        testSecret,
		"GATEWAY_POSTGRES_PASSWORD": "not-used-by-tests",
		"GATEWAY_ADMIN_PORT":        "0",
		"GATEWAY_LOG_LEVEL":         "DEBUG",
	}
	for k, v := range env {
		base[k] = v
	}
	cfg, err := loadConfig(func(k string) string { return base[k] }, false)
	if err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	return cfg
}

// testEnv is one gateway serving its real routes through httptest.
type testEnv struct {
	t      testing.TB
	cfg    *Config
	store  Store
	dbURL  string
	gw     *gateway
	srv    *httptest.Server
	logs   *syncBuffer
	client *http.Client
}

// fakeClock is a settable clock for the gateway and its user cache, so tests of time
// bounds move time instead of waiting for it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// useClock returns a tweak that runs the gateway and its user cache on clk.
func useClock(clk *fakeClock) func(*gateway) {
	return func(g *gateway) { g.now, g.users.now = clk.Now, clk.Now }
}

// envSetup is what startGateway builds a gateway from; envOptions fill it in.
type envSetup struct {
	env       map[string]string
	cfg       *Config // used as is when set, instead of testConfig(env)
	store     Store
	dbURL     string
	configure []func(*Config)
	tweaks    []func(*gateway)
	// productionHashCost: see withProductionHashCost.
	productionHashCost bool
}

type envOption func(*envSetup)

// withEnv sets settings over testConfig's base; later options win.
func withEnv(env map[string]string) envOption {
	return func(s *envSetup) {
		for k, v := range env {
			s.env[k] = v
		}
	}
}

// withUpstream points the query and ingest routes at url.
func withUpstream(url string) envOption {
	return withEnv(map[string]string{"GATEWAY_QUERY_SERVICE_URL": url, "GATEWAY_INGEST_SERVICE_URL": url})
}

// withStore serves store instead of a store on a fresh database; dbURL is what e.sql and
// e.lastLogin connect to.
func withStore(store Store, dbURL string) envOption {
	return func(s *envSetup) { s.store, s.dbURL = store, dbURL }
}

// withConfig changes the parsed configuration, for fields no setting reaches.
func withConfig(f ...func(*Config)) envOption {
	return func(s *envSetup) { s.configure = append(s.configure, f...) }
}

// withGateway changes the gateway before it serves (nil is ignored).
func withGateway(f func(*gateway)) envOption {
	return func(s *envSetup) {
		if f != nil {
			s.tweaks = append(s.tweaks, f)
		}
	}
}

// withClock runs the gateway and its user cache on clk.
func withClock(clk *fakeClock) envOption { return withGateway(useClock(clk)) }

// withHashPool gives the gateway a bcrypt pool of workers that waits at most wait for one.
func withHashPool(workers int, wait time.Duration) envOption {
	return withGateway(func(gw *gateway) {
		gw.hashes.close()
		gw.hashes = newHashPool(workers, wait)
	})
}

// withProductionHashCost keeps the pool's cost-12 hashes and dummy. Without it a test
// gateway hashes at bcrypt's minimum cost, with a dummy of that cost: the same code, at
// a sixtieth of the time, for the tests whose subject is not the cost.
func withProductionHashCost() envOption {
	return func(s *envSetup) { s.productionHashCost = true }
}

// fastDummyHash is a minimum-cost hash of a password nobody knows, the dummy of test pools.
var fastDummyHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(randomHex(2)), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

// startGateway serves the real routes of one gateway, on a fresh PostgreSQL database unless
// withStore names a store, logging at DEBUG into e.logs. Every test gateway starts here.
func startGateway(t testing.TB, opts ...envOption) *testEnv {
	t.Helper()
	s := &envSetup{env: map[string]string{}}
	for _, o := range opts {
		o(s)
	}
	if s.store == nil {
		s.dbURL = testDatabaseURL(t)
		s.store = openPostgresAt(t, s.dbURL, testDBTimeout)
	}
	cfg := s.cfg
	if cfg == nil {
		cfg = testConfig(t, s.env)
	}
	for _, f := range s.configure {
		f(cfg)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gw := newGateway(cfg, log, s.store, newMetrics())
	for _, f := range s.tweaks {
		f(gw)
	}
	if !s.productionHashCost {
		gw.hashes.cost, gw.hashes.dummy = bcrypt.MinCost, fastDummyHash()
	}
	t.Cleanup(gw.close)
	srv := httptest.NewServer(gw.routes())
	t.Cleanup(srv.Close)
	return &testEnv{t: t, cfg: cfg, store: s.store, dbURL: s.dbURL, gw: gw, srv: srv, logs: logs, client: srv.Client()}
}

// newTestEnv, newTestEnvWithStore and serveTestEnv are startGateway with positional
// arguments, for the tests written before it.
func newTestEnv(t *testing.T, env map[string]string, configure ...func(*Config)) *testEnv {
	t.Helper()
	return startGateway(t, withEnv(env), withConfig(configure...))
}

func newTestEnvWithStore(t *testing.T, env map[string]string, store Store, dbURL string, configure ...func(*Config)) *testEnv {
	t.Helper()
	return startGateway(t, withEnv(env), withStore(store, dbURL), withConfig(configure...))
}

func serveTestEnv(t testing.TB, cfg *Config, store Store, dbURL string, tweak func(*gateway)) *testEnv {
	t.Helper()
	return startGateway(t, func(s *envSetup) { s.cfg = cfg }, withStore(store, dbURL), withGateway(tweak))
}

// createUser stores a user with a fast bcrypt hash (cost 4; the cost-12 production path is
// covered by the passlib vectors).
func (e *testEnv) createUser(email, password, companyID string, cost int) User {
	e.t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		e.t.Fatal(err)
	}
	u, err := e.store.CreateUser(context.Background(), NewUser{Email: email, HashedPassword: string(hash), FullName: "Test " + email, Role: "user", CompanyID: companyID})
	if err != nil {
		e.t.Fatalf("create user: %v", err)
	}
	return u
}

func (e *testEnv) createCompany(name string) string {
	e.t.Helper()
	c, err := e.store.CreateCompany(context.Background(), name)
	if err != nil {
		e.t.Fatalf("create company: %v", err)
	}
	return c.ID
}

func (e *testEnv) token(u User) string {
	e.t.Helper()
	tok, err := e.gw.issueToken(u, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object (status %d): %q", r.status, r.body)
	}
	return m
}

func (r response) detail(t testing.TB) string {
	t.Helper()
	d, ok := r.json(t)["detail"].(string)
	if !ok {
		t.Fatalf("response has no string detail: %s", r.body)
	}
	return d
}

func (e *testEnv) do(method, path, token, body string, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

func (e *testEnv) login(email, password string) response {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"email": email, "password": password})
	return e.do("POST", "/api/v1/users/login", "", string(b))
}

func (e *testEnv) lastLogin(userID string) *time.Time {
	e.t.Helper()
	conn, err := pgx.Connect(context.Background(), e.dbURL)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var ts *time.Time
	if err := conn.QueryRow(context.Background(), "SELECT last_login FROM users WHERE id = $1", userID).Scan(&ts); err != nil {
		e.t.Fatal(err)
	}
	return ts
}

func mustStatus(t testing.TB, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status = %d, want %d; body %s", r.status, want, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	if r.header.Get("X-Request-ID") == "" || r.header.Get("X-Process-Time") == "" {
		t.Fatalf("missing X-Request-ID or X-Process-Time: %v", r.header)
	}
}

func TestLoginReturnsTokenAndUpdatesLastLogin(t *testing.T) {
	t.Parallel()
	e := startGateway(t)
	company := e.createCompany("Acme")
	u := e.createUser("ana@example.com", "s3cret-pass", company, bcrypt.MinCost)
	if e.lastLogin(u.ID) != nil {
		t.Fatal("last_login set before any login")
	}

	r := e.login("ana@example.com", "s3cret-pass")
	mustStatus(t, r, http.StatusOK)
	body := r.json(t)
	for field, want := range map[string]any{"token_type": "bearer", "user_id": u.ID, "email": "ana@example.com", "company_id": company, "role": "user", "full_name": "Test ana@example.com"} {
		if body[field] != want {
			t.Errorf("%s = %v, want %v", field, body[field], want)
		}
	}
	claims, err := verifyToken([]byte(testSecret), body["access_token"].(string), time.Now())
	if err != nil {
		t.Fatalf("issued token does not verify: %v", err)
	}
	if claims.Subject != u.ID || claims.CompanyID != company || claims.Email != u.Email {
		t.Fatalf("claims = %+v", claims)
	}
	if got := claims.ExpiresAt - claims.IssuedAt; got != 1440*60 {
		t.Fatalf("token lifetime = %ds, want %ds", got, 1440*60)
	}
	if e.lastLogin(u.ID) == nil {
		t.Fatal("last_login not updated by a successful login")
	}
	if strings.Contains(e.logs.String(), "s3cret-pass") || strings.Contains(e.logs.String(), body["access_token"].(string)) {
		t.Fatal("password or token written to the log")
	}
}

func TestLoginWithoutCompanyReturnsNullCompany(t *testing.T) {
	t.Parallel()
	e := startGateway(t)
	e.createUser("solo@example.com", "s3cret-pass", "", bcrypt.MinCost)
	r := e.login("solo@example.com", "s3cret-pass")
	mustStatus(t, r, http.StatusOK)
	if v, present := r.json(t)["company_id"]; !present || v != nil {
		t.Fatalf("company_id = %v (present %v), want null", v, present)
	}
}

func TestLoginEmailIsCaseInsensitive(t *testing.T) {
	t.Parallel()
	e := startGateway(t)
	e.createUser("Mixed.Case@Example.com", "s3cret-pass", "", bcrypt.MinCost)
	for _, email := range []string{"mixed.case@example.com", "MIXED.CASE@EXAMPLE.COM", "Mixed.Case@Example.com"} {
		mustStatus(t, e.login(email, "s3cret-pass"), http.StatusOK)
	}
}

func TestLoginUnknownEmailMatchesWrongPassword(t *testing.T) {
	t.Parallel()
	e := startGateway(t, withProductionHashCost())
	// A passlib cost-12 hash, so the wrong password below costs what a production one does.
	if _, err := e.store.CreateUser(context.Background(), NewUser{Email: "real@example.com", HashedPassword: loadPasslibVectors(t)[0].hash, Role: "user"}); err != nil {
		t.Fatal(err)
	}
	inactive := e.createUser("gone@example.com", "right-password", "", bcrypt.MinCost)
	if err := e.store.SetActive(context.Background(), inactive.Email, false); err != nil {
		t.Fatal(err)
	}

	timed := func(email, password string) (response, time.Duration) {
		start := time.Now()
		r := e.login(email, password)
		return r, time.Since(start)
	}
	wrong, wrongTook := timed("real@example.com", "wrong-password")
	unknown, unknownTook := timed("nobody@example.com", "wrong-password")
	gone, _ := timed("gone@example.com", "right-password")
	for name, r := range map[string]response{"wrong password": wrong, "unknown email": unknown, "inactive user": gone} {
		mustStatus(t, r, http.StatusUnauthorized)
		if r.detail(t) != "Incorrect email or password" {
			t.Errorf("%s: detail %q", name, r.detail(t))
		}
		if r.header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("%s: WWW-Authenticate %q", name, r.header.Get("WWW-Authenticate"))
		}
		var m map[string]any
		json.Unmarshal(r.body, &m)
		delete(m, "request_id")
		if len(m) != 2 || m["code"] != codeInvalidCredentials {
			t.Errorf("%s: body is not exactly detail and code %s: %s", name, codeInvalidCredentials, r.body)
		}
	}
	// An unknown email must cost a bcrypt verification too, or its speed tells it apart.
	if unknownTook < wrongTook/3 {
		t.Fatalf("unknown email answered in %v, wrong password in %v: no dummy bcrypt", unknownTook, wrongTook)
	}
}

func TestLoginRejectsMalformedBodies(t *testing.T) {
	t.Parallel()
	e := startGateway(t)
	cases := []struct {
		name string
		body string
		want int
	}{
		{"not json", `{"email": "a@example.com", "password": `, 422},
		{"array", `["a@example.com", "x"]`, 422},
		{"string", `"hello"`, 422},
		{"null", `null`, 422},
		{"empty", ``, 422},
		{"missing email", `{"password": "x"}`, 422},
		{"missing password", `{"email": "a@example.com"}`, 422},
		{"email number", `{"email": 12, "password": "x"}`, 422},
		{"password object", `{"email": "a@example.com", "password": {"a": 1}}`, 422},
		{"invalid email", `{"email": "not-an-email", "password": "x"}`, 422},
		{"email with space", `{"email": "a b@example.com", "password": "x"}`, 422},
		{"empty password", `{"email": "a@example.com", "password": ""}`, 422},
		{"password too long", `{"email": "a@example.com", "password": "` + strings.Repeat("p", 2000) + `"}`, 422},
		{"huge body", `{"email": "a@example.com", "password": "` + strings.Repeat("p", 1<<20) + `"}`, 413},
		{"trailing garbage", `{"email": "a@example.com", "password": "x"} junk`, 422},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/users/login", "", tc.body)
			mustStatus(t, r, tc.want)
			if r.detail(t) == "" {
				t.Fatal("empty detail")
			}
		})
	}
}

func TestRefreshedTokenFollowsTheUsersCurrentCompany(t *testing.T) {
	t.Parallel()
	e := startGateway(t)
	company := e.createCompany("Acme")
	u := e.createUser("r@example.com", "pw-pw-pw-pw", "", bcrypt.MinCost)
	old := e.token(u)
	if err := e.store.SetUserCompany(context.Background(), u.ID, company); err != nil {
		t.Fatal(err)
	}
	r := e.do("POST", "/api/v1/users/refresh", old, "")
	mustStatus(t, r, http.StatusOK)
	body := r.json(t)
	claims, err := verifyToken([]byte(testSecret), body["access_token"].(string), time.Now())
	if err != nil || claims.CompanyID != company || body["token_type"] != "bearer" {
		t.Fatalf("refreshed token: claims %+v err %v body %s", claims, err, r.body)
	}

	if err := e.store.SetActive(context.Background(), u.Email, false); err != nil {
		t.Fatal(err)
	}
	e.gw.users.forget(u.ID)
	mustStatus(t, e.do("POST", "/api/v1/users/refresh", old, ""), http.StatusUnauthorized)
}

func TestMeReturnsProfileWithoutHash(t *testing.T) {
	t.Parallel()
	e := startGateway(t)
	u := e.createUser("me@example.com", "pw-pw-pw-pw", "", bcrypt.MinCost)
	r := e.do("GET", "/api/v1/users/me", e.token(u), "")
	mustStatus(t, r, http.StatusOK)
	body := r.json(t)
	if body["user_id"] != u.ID || body["email"] != u.Email || body["is_active"] != true || body["role"] != "user" {
		t.Fatalf("me = %s", r.body)
	}
	if v, ok := body["company_id"]; !ok || v != nil {
		t.Fatalf("company_id = %v, want null", v)
	}
	if bytes.Contains(r.body, []byte("$2")) || bytes.Contains(r.body, []byte("hash")) {
		t.Fatalf("profile leaks the password hash: %s", r.body)
	}
}

// recordingUpstream records the last request it saw.
func recordingUpstream(t *testing.T) (*httptest.Server, func() *http.Request) {
	t.Helper()
	var mu sync.Mutex
	var last *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		last = r.Clone(context.Background())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(srv.Close)
	return srv, func() *http.Request { mu.Lock(); defer mu.Unlock(); return last }
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

func TestProxiedRoutesRefuseTokensTheyCannotTrust(t *testing.T) {
	t.Parallel()
	upstreamSrv, last := recordingUpstream(t)
	e := startGateway(t, withEnv(map[string]string{"GATEWAY_QUERY_SERVICE_URL": upstreamSrv.URL}))
	company := e.createCompany("Acme")
	withCompany := e.createUser("with@example.com", "pw-pw-pw-pw", company, bcrypt.MinCost)
	without := e.createUser("without@example.com", "pw-pw-pw-pw", "", bcrypt.MinCost)
	ghost := User{ID: "11111111-2222-4333-8444-555555555555", Email: "ghost@example.com", CompanyID: company}

	expired, _ := signToken([]byte(testSecret), Claims{Subject: withCompany.ID, CompanyID: company, ExpiresAt: time.Now().Add(-time.Hour).Unix()})
	otherKey, _ := signToken([]byte("another-secret-another-secret-0123456789"), Claims{Subject: withCompany.ID, CompanyID: company, ExpiresAt: time.Now().Add(time.Hour).Unix()})

	cases := []struct {
		name      string
		auth      string
		status    int
		challenge string
	}{
		{"no header", "", 401, "Bearer"},
		{"basic scheme", "Basic YWxhZGRpbjpvcGVuc2VzYW1l", 401, "Bearer"},
		{"empty bearer", "Bearer ", 401, "Bearer"},
		{"junk token", "Bearer not.a.token", 401, `Bearer error="invalid_token"`},
		{"huge junk", "Bearer " + strings.Repeat("A", 40000), 401, `Bearer error="invalid_token"`},
		{"expired", "Bearer " + expired, 401, `Bearer error="invalid_token"`},
		{"other key", "Bearer " + otherKey, 401, `Bearer error="invalid_token"`},
		{"no company claim", "Bearer " + e.token(without), 403, `Bearer error="insufficient_scope"`},
		{"unknown user", "Bearer " + e.token(ghost), 401, `Bearer error="invalid_token"`},
		{"lower-case scheme", "bearer " + e.token(withCompany), 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			headers := []string{}
			if tc.auth != "" {
				headers = []string{"Authorization", tc.auth}
			}
			r := e.do("GET", "/api/v1/query/chats", "", "", headers...)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status != 200 {
				mustStatus(t, r, tc.status)
				r.detail(t)
				if got := r.header.Get("WWW-Authenticate"); got != tc.challenge {
					t.Fatalf("WWW-Authenticate %q, want %q", got, tc.challenge)
				}
			}
		})
	}
	if got := last(); got == nil || got.URL.Path != "/api/v1/chats" || got.Header.Get("X-Company-ID") != company {
		t.Fatalf("authorised request did not reach the upstream as expected: %+v", got)
	}
}

func TestDeactivatedUserRefusedWithinCacheTTL(t *testing.T) {
	t.Parallel()
	for _, ttl := range []time.Duration{0, 300 * time.Millisecond} {
		t.Run(ttl.String(), func(t *testing.T) {
			clk := newFakeClock()
			upstreamSrv, _ := recordingUpstream(t)
			e := startGateway(t, withUpstream(upstreamSrv.URL), withClock(clk), withConfig(func(c *Config) { c.UserCacheTTL = ttl }))
			company := e.createCompany("Acme")
			u := e.createUser("active@example.com", "pw-pw-pw-pw", company, bcrypt.MinCost)
			tok := e.token(u)
			mustStatus(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusOK)
			if err := e.store.SetActive(context.Background(), u.Email, false); err != nil {
				t.Fatal(err)
			}
			// Within the TTL the cached row may still be served (unless the change
			// notification got there first); once it has passed, never.
			if ttl > 0 {
				clk.Advance(ttl + time.Millisecond)
			}
			mustStatus(t, e.do("GET", "/api/v1/query/chats", tok, ""), http.StatusUnauthorized)
		})
	}
}

func TestHealthTurns503WhileTheDatabaseIsDownAndRecovers(t *testing.T) {
	t.Parallel()
	store, relay, dbURL := relayedTestPostgres(t, time.Second)
	clk := newFakeClock()
	e := startGateway(t, withStore(store, dbURL), withClock(clk))
	company := e.createCompany("Acme")
	user := e.createUser("h@example.com", "pw-pw-pw-pw", company, bcrypt.MinCost)

	r := e.do("GET", "/health", "", "")
	mustStatus(t, r, http.StatusOK)
	if body := r.json(t); body["status"] != "healthy" || body["service"] != "Atenex API Gateway" {
		t.Fatalf("health = %s", r.body)
	}

	relay.Sever()
	start := time.Now()
	r = e.do("GET", "/health", "", "")
	mustStatus(t, r, http.StatusServiceUnavailable)
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("unhealthy answer took %v", took)
	}
	if r.json(t)["status"] != "unhealthy" {
		t.Fatalf("health = %s", r.body)
	}
	mustStatus(t, e.login("h@example.com", "pw-pw-pw-pw"), http.StatusServiceUnavailable)
	e.gw.users.forget(user.ID)
	mustStatus(t, e.do("GET", "/api/v1/users/me", e.token(user), ""), http.StatusServiceUnavailable)

	relay.Restore()
	waitFor(t, 10*time.Second, "health back", func() bool {
		clk.Advance(failFastMax) // past any fail-fast interval
		return e.do("GET", "/health", "", "").status == http.StatusOK
	})
	mustStatus(t, e.login("h@example.com", "pw-pw-pw-pw"), http.StatusOK)
}

func TestUnknownRoutesAndWrongMethodsGetJSON404And405(t *testing.T) {
	t.Parallel()
	e := startGateway(t)
	r := e.do("GET", "/", "", "")
	mustStatus(t, r, 200)
	if r.json(t)["message"] != "Atenex API Gateway is running!" {
		t.Fatalf("root = %s", r.body)
	}
	mustStatus(t, e.do("GET", "/livez", "", ""), 200)
	r = e.do("GET", "/nope", "", "")
	mustStatus(t, r, 404)
	r.detail(t)
	r = e.do("DELETE", "/health", "", "")
	mustStatus(t, r, 405)
	if !strings.Contains(r.header.Get("Allow"), "GET") {
		t.Fatalf("Allow = %q", r.header.Get("Allow"))
	}
	r = e.do("GET", "/api/v1/users/login", "", "")
	mustStatus(t, r, 405)
	r = e.do("GET", "/api/v1/auth/login", "", "")
	mustStatus(t, r, 404)
}

func TestBrowserLoginAllowedOnlyFromKnownOrigins(t *testing.T) {
	t.Parallel()
	e := startGateway(t, withEnv(map[string]string{"VERCEL_FRONTEND_URL": "https://atenex-frontend.vercel.app",
		"GATEWAY_CORS_ALLOW_LOCALHOST": "true"})) // a developer's frontend; off by default outside -dev
	preflight := func(origin string) response {
		return e.do("OPTIONS", "/api/v1/users/login", "", "", "Origin", origin,
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type, authorization")
	}
	for _, origin := range []string{"http://localhost:3000", "http://localhost:3009", "https://atenex-frontend.vercel.app", "https://atenex-frontend-git-main-team.vercel.app"} {
		r := preflight(origin)
		if r.status/100 != 2 || r.header.Get("Access-Control-Allow-Origin") != origin || r.header.Get("Access-Control-Allow-Credentials") != "true" {
			t.Errorf("preflight from %s: %d %v", origin, r.status, r.header)
		}
	}
	for _, origin := range []string{"http://localhost:3010", "https://evil.example", "https://atenex-frontend.vercel.app.evil.example", "null"} {
		r := preflight(origin)
		if r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %s allowed: %v", origin, r.header)
		}
	}
	r := e.do("POST", "/api/v1/users/login", "", `{}`, "Origin", "http://localhost:3000")
	if r.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" || !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "X-Request-ID") {
		t.Fatalf("actual request CORS headers: %v", r.header)
	}
}
