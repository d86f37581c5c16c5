// cli_test.go: the operator subcommands through run(), as an operator types them, against a
// real PostgreSQL: migrate, company, user, invitation and domain administration, usage
// errors and outages.
package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"
)

// cliResult is what an operator sees: the two streams and the exit code.
type cliResult struct {
	stdout, stderr string
	err            error
	code           int
}

// output is everything printed, the error included, as a terminal would show it.
func (r cliResult) output() string {
	out := r.stdout + r.stderr
	if r.err != nil {
		out += r.err.Error()
	}
	return out
}

// runCLIWith runs one command through run() the way main does.
func runCLIWith(ctx context.Context, env map[string]string, stdin io.Reader, args ...string) cliResult {
	var stdout, stderr syncBuffer
	err := run(ctx, args, func(k string) string { return env[k] }, stdin, &stdout, &stderr)
	code := 0
	if err != nil {
		code = exitCode(err)
	}
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), err: err, code: code}
}

func runCLI(env map[string]string, stdin string, args ...string) cliResult {
	return runCLIWith(context.Background(), env, strings.NewReader(stdin), args...)
}

// mustSucceed runs a command that must exit 0 and returns its trimmed stdout.
func mustSucceed(t *testing.T, env map[string]string, stdin string, args ...string) string {
	t.Helper()
	r := runCLI(env, stdin, args...)
	if r.code != 0 {
		t.Fatalf("%s: exit %d: %v\nstderr: %s", strings.Join(args, " "), r.code, r.err, r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

func storedUser(t *testing.T, dbURL, email string) User {
	t.Helper()
	store, err := openPostgres(context.Background(), dbURL, testDBTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close() // at once: tests look users up many times
	u, err := store.UserByEmail(context.Background(), email)
	if err != nil {
		t.Fatalf("user %s: %v", email, err)
	}
	return u
}

// checkRefused fails unless the command exited with code, an error saying every want (and
// wrapping sentinel when not nil), and printed no result.
func checkRefused(t *testing.T, r cliResult, code int, want []string, sentinel error) {
	t.Helper()
	if r.err == nil || r.code != code {
		t.Fatalf("exit %d (%v), want %d", r.code, r.err, code)
	}
	for _, w := range want {
		if !strings.Contains(r.err.Error(), w) {
			t.Errorf("error does not say %q:\n%v", w, r.err)
		}
	}
	if sentinel != nil && !errors.Is(r.err, sentinel) {
		t.Errorf("error does not wrap %v: %v", sentinel, r.err)
	}
	if r.stdout != "" {
		t.Errorf("a failed command printed a result: %q", r.stdout)
	}
}

// checkCost12Prefix fails unless hash has the form of a passlib-style cost-12 bcrypt hash.
func checkCost12Prefix(t *testing.T, hash string) {
	t.Helper()
	if !strings.HasPrefix(hash, "$2b$12$") || len(hash) != 60 {
		t.Fatalf("stored hash %q is not a $2b$ cost-12 bcrypt hash", hash)
	}
}

// checkCost12Hash fails unless hash is a passlib-style cost-12 bcrypt hash of password.
func checkCost12Hash(t *testing.T, hash, password string) {
	t.Helper()
	checkCost12Prefix(t, hash)
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)); err != nil {
		t.Fatalf("stored hash does not verify the password: %v", err)
	}
}

func TestCLIMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	dbURL := emptyTestDatabaseURL(t)
	env := postgresEnv(t, dbURL)

	// Before migrating, an operator is told what to do rather than shown a bare SQL error.
	r := runCLI(env, "", "company", "create", "-name", "Early")
	if r.code != 1 || !strings.Contains(r.err.Error(), "migrate` first") {
		t.Fatalf("company create before migrate: exit %d, %v; want exit 1 asking to run migrate", r.code, r.err)
	}

	if out := mustSucceed(t, env, "", "migrate"); !strings.Contains(out, "schema applied") {
		t.Fatalf("migrate printed %q", out)
	}
	companyID := mustSucceed(t, env, "", "company", "create", "-name", "Kept")
	if out := mustSucceed(t, env, "", "migrate"); !strings.Contains(out, "schema applied") {
		t.Fatalf("second migrate printed %q", out)
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, rel := range []string{"users", "companies", "users_email_lower_key"} {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", rel).Scan(&exists); err != nil || !exists {
			t.Errorf("%s after migrate: exists=%v, %v", rel, exists, err)
		}
	}
	var name string
	if err := conn.QueryRow(ctx, "SELECT name FROM companies WHERE id = $1", companyID).Scan(&name); err != nil || name != "Kept" {
		t.Fatalf("company created between migrations: %q, %v", name, err)
	}
}

func TestCLICreatesCompanyAndUserWhoCanLogIn(t *testing.T) {
	t.Parallel()
	dbURL := testDatabaseURL(t)
	env := postgresEnv(t, dbURL)
	const password = "correct horse battery"

	companyID := mustSucceed(t, env, "", "company", "create", "-name", "  Acme Corp  ")
	if !isUUID(companyID) {
		t.Fatalf("company create printed %q, want only its UUID", companyID)
	}
	r := runCLI(env, password+"\n", "user", "create", "-email", "Ana@Example.com", "-name", "Ana Pérez", "-role", "admin", "-company", strings.ToUpper(companyID))
	if r.code != 0 {
		t.Fatalf("user create: exit %d: %v", r.code, r.err)
	}
	userID := strings.TrimSpace(r.stdout)
	if !isUUID(userID) {
		t.Fatalf("user create printed %q, want only the user's UUID", r.stdout)
	}
	if strings.Contains(r.output(), password) {
		t.Fatal("the password was printed")
	}

	u := storedUser(t, dbURL, "ana@example.com")
	if u.ID != userID || u.Email != "Ana@Example.com" || u.FullName != "Ana Pérez" || u.Role != "admin" || u.CompanyID != companyID || !u.IsActive {
		t.Fatalf("stored user %+v", u)
	}
	// The login below proves the hash verifies the password.
	checkCost12Prefix(t, u.HashedPassword)

	e := newTestEnvWithStore(t, nil, openPostgresAt(t, dbURL, testDBTimeout), dbURL)
	resp := e.login("ana@example.com", password)
	mustStatus(t, resp, 200)
	body := resp.json(t)
	if body["user_id"] != userID || body["company_id"] != companyID || body["role"] != "admin" {
		t.Fatalf("login answered %v", body)
	}
	if tok, _ := body["access_token"].(string); tok == "" {
		t.Fatalf("login gave no token: %v", body)
	}
}

func TestCLIPasswordFromEnvironment(t *testing.T) {
	t.Parallel()
	dbURL := testDatabaseURL(t)
	env := postgresEnv(t, dbURL)
	env["NEW_USER_PASSWORD"] = "from-the-environment"

	r := runCLI(env, "from-standard-input\n", "user", "create", "-email", "env@example.com", "-password-env", "NEW_USER_PASSWORD")
	if r.code != 0 || !isUUID(strings.TrimSpace(r.stdout)) {
		t.Fatalf("user create -password-env: exit %d, stdout %q, %v", r.code, r.stdout, r.err)
	}
	if strings.Contains(r.output(), "from-the-environment") {
		t.Fatal("the password was printed")
	}
	u := storedUser(t, dbURL, "env@example.com")
	checkCost12Hash(t, u.HashedPassword, "from-the-environment")
	if u.CompanyID != "" || u.Role != "user" || u.FullName != "" {
		t.Fatalf("defaults not applied: %+v", u)
	}
}

func TestCLISetPasswordChangesLogin(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	env := postgresEnv(t, e.dbURL)
	const oldPassword, newPassword = "old-password-1", "new-password-2"
	e.createUser("reset@example.com", oldPassword, "", bcrypt.MinCost)
	mustStatus(t, e.login("reset@example.com", oldPassword), 200)

	// A password typed on Windows or piped from a CRLF file ends in "\r\n": neither byte
	// belongs to it.
	start := time.Now()
	out := mustSucceed(t, env, newPassword+"\r\nsecond line ignored\n", "user", "set-password", "-email", "RESET@example.com")
	if !strings.Contains(out, "updated") {
		t.Fatalf("set-password printed %q", out)
	}
	// The cost-12 hash replaced the old one (which was of another cost), and the login
	// verifies it: one slow comparison instead of one per password.
	checkCost12Prefix(t, storedUser(t, e.dbURL, "reset@example.com").HashedPassword)
	mustStatus(t, e.login("reset@example.com", newPassword), 200)
	checkRevokedNow(t, "user set-password", storedUser(t, e.dbURL, "reset@example.com").TokensValidAfter, start)
}

func TestCLIDeactivateRefusesLoginAndActivateRestores(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil, func(c *Config) { c.UserCacheTTL = 0 })
	env := postgresEnv(t, e.dbURL)
	const password = "pw-pw-pw-pw"
	company := e.createCompany("Acme")
	u := e.createUser("toggle@example.com", password, company, bcrypt.MinCost)
	tok := e.token(u)
	mustStatus(t, e.do("GET", "/api/v1/users/me", tok, ""), 200)

	start := time.Now()
	if out := mustSucceed(t, env, "", "user", "deactivate", "-email", "Toggle@Example.com"); !strings.Contains(out, "deactivated") {
		t.Fatalf("deactivate printed %q", out)
	}
	deactivated := storedUser(t, e.dbURL, "toggle@example.com")
	if deactivated.IsActive {
		t.Fatal("user still active after deactivate")
	}
	checkRevokedNow(t, "user deactivate", deactivated.TokensValidAfter, start)
	mustStatus(t, e.login("toggle@example.com", password), 401)
	mustStatus(t, e.do("GET", "/api/v1/users/me", tok, ""), 401)

	if out := mustSucceed(t, env, "", "user", "activate", "-email", "toggle@example.com"); !strings.Contains(out, "activated") {
		t.Fatalf("activate printed %q", out)
	}
	if got := storedUser(t, e.dbURL, "toggle@example.com").TokensValidAfter; !got.Equal(deactivated.TokensValidAfter) {
		t.Fatalf("activate changed tokens_valid_after from %v to %v", deactivated.TokensValidAfter, got)
	}
	// The tokens revoked by the deactivation stay revoked; a new sign-in works.
	resp := e.login("toggle@example.com", password)
	mustStatus(t, resp, 200)
	fresh, _ := resp.json(t)["access_token"].(string)
	mustStatus(t, e.do("GET", "/api/v1/users/me", fresh, ""), 200)
}

func TestCLIUsageErrors(t *testing.T) {
	t.Parallel()
	dbURL := testDatabaseURL(t)
	store := openPostgresAt(t, dbURL, testDBTimeout)
	hash, _ := bcrypt.GenerateFromPassword([]byte("existing-password"), bcrypt.MinCost)
	if _, err := store.CreateUser(context.Background(), NewUser{Email: "taken@example.com", HashedPassword: string(hash)}); err != nil {
		t.Fatal(err)
	}
	const goodPassword = "a-good-password\n"
	const missingCompany = "7d3f0a52-5b1e-4c7e-9a59-1f7f3f0b9a11"

	cases := []struct {
		name     string
		args     []string
		stdin    string
		env      map[string]string // merged over the database settings; "" deletes
		code     int
		want     []string // in the error message
		sentinel error    // the error wraps it
		secret   string   // must appear nowhere in the output
	}{
		{name: "group without action", args: []string{"user"}, code: 2, want: []string{"missing action", "create", "deactivate"}},
		{name: "company without action", args: []string{"company"}, code: 2, want: []string{"missing action", "create"}},
		{name: "unknown action", args: []string{"user", "delete", "-email", "a@example.com"}, code: 2, want: []string{`unknown command "user delete"`, "set-password"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, want: []string{`unknown command "frobnicate"`}},
		{name: "missing email", args: []string{"user", "create"}, stdin: goodPassword, code: 2, want: []string{"user create", "-email is required"}},
		{name: "invalid email", args: []string{"user", "activate", "-email", "not-an-email"}, code: 2, want: []string{"user activate", `"not-an-email" is not a valid email`}},
		{name: "missing company name", args: []string{"company", "create"}, code: 2, want: []string{"company create", "-name is required"}},
		{name: "blank company name", args: []string{"company", "create", "-name", "   "}, code: 2, want: []string{"-name is required"}},
		{name: "bad company UUID", args: []string{"user", "create", "-email", "x@example.com", "-company", "acme"}, stdin: goodPassword, code: 2, want: []string{`-company "acme" is not a UUID`}},
		{name: "flag of another command", args: []string{"company", "create", "-name", "Acme", "-email", "x@example.com"}, code: 2, want: []string{"company create", "-email", "company create -h"}},
		{name: "flag without value", args: []string{"user", "activate", "-email"}, code: 2, want: []string{"-email"}},
		{name: "stray argument", args: []string{"migrate", "now"}, code: 2, want: []string{`unexpected argument "now"`}},
		{name: "password flag", args: []string{"user", "create", "-email", "x@example.com", "-password", "hunter2-hunter2"}, code: 2,
			want: []string{"no -password flag", "standard input", "-password-env"}, secret: "hunter2-hunter2"},
		{name: "password flag with equals", args: []string{"user", "set-password", "--password=hunter2-hunter2", "-email", "taken@example.com"}, code: 2,
			want: []string{"no -password flag"}, secret: "hunter2-hunter2"},
		{name: "password as stray argument", args: []string{"user", "set-password", "-email", "taken@example.com", "hunter2-hunter2"}, code: 2,
			want: []string{"unexpected argument", "standard input"}, secret: "hunter2-hunter2"},
		{name: "password to a command taking none", args: []string{"user", "activate", "-email", "taken@example.com", "-password", "hunter2-hunter2"}, code: 2,
			want: []string{"user activate takes no password"}, secret: "hunter2-hunter2"},
		{name: "empty stdin", args: []string{"user", "create", "-email", "x@example.com"}, code: 2, want: []string{"no password on standard input", "-password-env"}},
		{name: "blank first line", args: []string{"user", "create", "-email", "x@example.com"}, stdin: "\nsecond-line-password\n", code: 2, want: []string{"no password on standard input"}},
		{name: "too short password", args: []string{"user", "set-password", "-email", "taken@example.com"}, stdin: "tiny7\n", code: 2, want: []string{"password too short", "at least 8"}, secret: "tiny7"},
		{name: "too long password", args: []string{"user", "create", "-email", "x@example.com"}, stdin: strings.Repeat("p", maxPasswordBytes+1), code: 2, want: []string{"password too long"}},
		{name: "NUL in password", args: []string{"user", "create", "-email", "x@example.com"}, stdin: "before\x00after\n", code: 2, want: []string{"NUL"}},
		{name: "unset password variable", args: []string{"user", "create", "-email", "x@example.com", "-password-env", "NO_SUCH_VAR"}, stdin: goodPassword, code: 2, want: []string{"NO_SUCH_VAR", "empty or unset"}},
		{name: "missing database password", args: []string{"migrate"}, env: map[string]string{"GATEWAY_POSTGRES_PASSWORD": ""}, code: 2, want: []string{"invalid configuration", "GATEWAY_POSTGRES_PASSWORD"}},
		{name: "bad database port", args: []string{"user", "deactivate", "-email", "taken@example.com"}, env: map[string]string{"GATEWAY_POSTGRES_PORT": "99999"}, code: 2, want: []string{"GATEWAY_POSTGRES_PORT"}},
		{name: "unknown user set-password", args: []string{"user", "set-password", "-email", "ghost@example.com"}, stdin: goodPassword, code: 1,
			want: []string{"user set-password: no user with email ghost@example.com"}, sentinel: errNotFound, secret: "a-good-password"},
		{name: "unknown user activate", args: []string{"user", "activate", "-email", "ghost@example.com"}, code: 1, want: []string{"user activate: no user with email ghost@example.com"}, sentinel: errNotFound},
		{name: "unknown user deactivate", args: []string{"user", "deactivate", "-email", "ghost@example.com"}, code: 1, want: []string{"user deactivate: no user with email ghost@example.com"}, sentinel: errNotFound},
		{name: "duplicate email in other case", args: []string{"user", "create", "-email", "TAKEN@example.com"}, stdin: goodPassword, code: 1,
			want: []string{"user create: a user with email taken@example.com already exists"}, sentinel: errDuplicate},
		{name: "company does not exist", args: []string{"user", "create", "-email", "new@example.com", "-company", missingCompany}, stdin: goodPassword, code: 1,
			want: []string{"no company with id " + missingCompany, "company create"}, sentinel: errNotFound, secret: "a-good-password"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := postgresEnv(t, dbURL)
			env["GATEWAY_DB_TIMEOUT"] = "2s"
			for k, v := range tc.env {
				env[k] = v
			}
			r := runCLI(env, tc.stdin, tc.args...)
			checkRefused(t, r, tc.code, tc.want, tc.sentinel)
			if tc.secret != "" && strings.Contains(r.output(), tc.secret) {
				t.Errorf("the password was printed:\n%s", r.output())
			}
		})
	}

	// None of the refused commands changed anything.
	if _, err := store.UserByEmail(context.Background(), "new@example.com"); !errors.Is(err, errNotFound) {
		t.Errorf("a refused user create stored a user: %v", err)
	}
	u, err := store.UserByEmail(context.Background(), "taken@example.com")
	if err != nil || !u.IsActive || bcrypt.CompareHashAndPassword([]byte(u.HashedPassword), []byte("existing-password")) != nil {
		t.Errorf("existing user changed by refused commands: %+v, %v", u, err)
	}
}

func TestCLIHelp(t *testing.T) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"help"}, []string{"migrate", "company create -name NAME", "user set-password", "user deactivate", "Exit codes"}},
		{[]string{"-h"}, []string{"migrate", "user create"}},
		{[]string{"--help"}, []string{"migrate", "user create"}},
		{[]string{"user", "-h"}, []string{"user create", "user activate", "-password-env"}},
		{[]string{"help", "user"}, []string{"user create", "user deactivate"}},
		{[]string{"migrate", "-h"}, []string{"Usage: atenex-api-gateway migrate", "schema.sql"}},
		{[]string{"company", "create", "-h"}, []string{"company create -name NAME", "-name NAME"}},
		{[]string{"user", "create", "-help"}, []string{"-email EMAIL", "-company UUID", "-password-env VAR", "standard input", "(default \"user\")"}},
		{[]string{"user", "set-password", "--help"}, []string{"user set-password -email EMAIL", "-password-env VAR", "never from the command line"}},
		{[]string{"help", "user", "activate"}, []string{"user activate -email EMAIL"}},
		{[]string{"user", "deactivate", "-email", "x@example.com", "-h"}, []string{"user deactivate -email EMAIL", "within a second", "tokens are revoked", "GATEWAY_USER_CACHE_TTL"}},
		{[]string{"user", "set-password", "-h"}, []string{"within a second", "revoked"}},
		{[]string{"help"}, []string{"company activate -id UUID", "company deactivate -id UUID", "user revoke-sessions -email EMAIL",
			"invite create -company UUID -email EMAIL [-role user|admin] [-days N]", "invite list -company UUID",
			"invite revoke -company UUID -id UUID", "domain add -company UUID -domain DOMAIN", "domain remove -company UUID -domain DOMAIN"}},
		{[]string{"invite", "-h"}, []string{"invite create", "invite list", "invite revoke"}},
		{[]string{"help", "domain"}, []string{"domain add", "domain remove"}},
		{[]string{"invite", "create", "-h"}, []string{"-company UUID", "-email EMAIL", "-role ROLE", "(default \"user\")", "-days N", "(default 7)", "1 to 365"}},
		{[]string{"company", "deactivate", "-h"}, []string{"company deactivate -id UUID", "company_inactive", "-id UUID"}},
		{[]string{"domain", "add", "-help"}, []string{"-domain DOMAIN", "one company at most"}},
		{[]string{"user", "revoke-sessions", "-h"}, []string{"user revoke-sessions -email EMAIL", "within a second"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			// No database settings at all: help must need none.
			r := runCLI(map[string]string{}, "", tc.args...)
			if r.err != nil {
				t.Fatalf("exit %d: %v", r.code, r.err)
			}
			for _, want := range tc.want {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("help does not show %q:\n%s", want, r.stdout)
				}
			}
			if r.stderr != "" {
				t.Errorf("help wrote to stderr: %q", r.stderr)
			}
		})
	}
	if r := runCLI(map[string]string{}, "", "help", "user", "rename"); r.code != 2 || !strings.Contains(r.err.Error(), `unknown command "user rename"`) {
		t.Fatalf("help for an unknown command: exit %d, %v", r.code, r.err)
	}
}

func TestCLIDatabaseDownFailsFast(t *testing.T) {
	t.Parallel()
	const dbPassword = "db-password-never-printed"
	servers := map[string]string{
		"closed port": closedLoopbackAddr(t),
		"silent host": silentLoopbackAddr(t),
	}
	commands := []struct {
		args  []string
		stdin string
	}{
		{[]string{"migrate"}, ""},
		{[]string{"company", "create", "-name", "Acme"}, ""},
		{[]string{"user", "create", "-email", "down@example.com"}, "a-good-password\n"},
		{[]string{"user", "set-password", "-email", "down@example.com"}, "a-good-password\n"},
		{[]string{"user", "deactivate", "-email", "down@example.com"}, ""},
		{[]string{"user", "revoke-sessions", "-email", "down@example.com"}, ""},
		{[]string{"invite", "list", "-company", "7d3f0a52-5b1e-4c7e-9a59-1f7f3f0b9a11"}, ""},
		{[]string{"domain", "add", "-company", "7d3f0a52-5b1e-4c7e-9a59-1f7f3f0b9a11", "-domain", "example.com"}, ""},
	}
	for server, addr := range servers {
		for _, c := range commands {
			t.Run(server+"/"+strings.Join(c.args[:min(2, len(c.args))], " "), func(t *testing.T) {
				t.Parallel()
				port := addr[strings.LastIndexByte(addr, ':')+1:]
				env := map[string]string{
					"GATEWAY_POSTGRES_USER":     "postgres",
					"GATEWAY_POSTGRES_PASSWORD": dbPassword,
					"GATEWAY_POSTGRES_SERVER":   "127.0.0.1",
					"GATEWAY_POSTGRES_PORT":     port,
					"GATEWAY_POSTGRES_DB":       "atenex",
					"GATEWAY_DB_TIMEOUT":        "500ms",
				}
				start := time.Now()
				r := runCLI(env, c.stdin, c.args...)
				elapsed := time.Since(start)
				if r.code != 1 {
					t.Fatalf("exit %d (%v), want 1", r.code, r.err)
				}
				if elapsed > 3*time.Second {
					t.Fatalf("took %v with GATEWAY_DB_TIMEOUT=500ms", elapsed)
				}
				if msg := r.err.Error(); !strings.Contains(msg, "unavailable") || !strings.Contains(msg, "127.0.0.1:"+port) {
					t.Fatalf("error does not say the database at 127.0.0.1:%s is unavailable:\n%s", port, msg)
				}
				if strings.Contains(r.output(), dbPassword) {
					t.Fatal("the database password was printed")
				}
			})
		}
	}
}

func TestCLIInterruptWhileWaitingForPassword(t *testing.T) {
	// An operator who starts `user create` at a terminal and presses Ctrl-C must get the
	// prompt back: main's context, not the default handler, receives the signal.
	env := postgresEnv(t, "postgres://postgres@127.0.0.1:5432/unused")
	pipe, w := io.Pipe()
	defer w.Close()
	stdin := &firstReadSignal{Reader: pipe, reading: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan cliResult, 1)
	go func() { done <- runCLIWith(ctx, env, stdin, "user", "create", "-email", "slow@example.com") }()
	<-stdin.reading // the command waits for the password
	cancel()
	select {
	case r := <-done:
		if r.code != 1 || !errors.Is(r.err, context.Canceled) || !strings.Contains(r.err.Error(), "interrupted") {
			t.Fatalf("exit %d: %v; want exit 1, interrupted", r.code, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting for the password after the interrupt")
	}
}

// firstReadSignal closes reading when Read is first called.
type firstReadSignal struct {
	io.Reader
	reading chan struct{}
	once    sync.Once
}

func (r *firstReadSignal) Read(p []byte) (int, error) {
	r.once.Do(func() { close(r.reading) })
	return r.Reader.Read(p)
}

func TestCLICompanyDeactivateRefusesItsUsersAndActivateRestores(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testDatabaseURL(t)
	env := postgresEnv(t, dbURL)
	store := openPostgresAt(t, dbURL, testDBTimeout)
	companyID := mustSucceed(t, env, "", "company", "create", "-name", "Acme")
	if _, err := store.CreateUser(ctx, NewUser{Email: "member@example.com", HashedPassword: "x", CompanyID: companyID}); err != nil {
		t.Fatal(err)
	}

	if out := mustSucceed(t, env, "", "company", "deactivate", "-id", strings.ToUpper(companyID)); out != "company "+companyID+" deactivated" {
		t.Fatalf("deactivate printed %q", out)
	}
	if u := storedUser(t, dbURL, "member@example.com"); u.CompanyActive || !u.TokensValidAfter.IsZero() {
		t.Fatalf("after company deactivate: %+v; want an inactive company and no revoked token", u)
	}
	if out := mustSucceed(t, env, "", "company", "activate", "-id", companyID); out != "company "+companyID+" activated" {
		t.Fatalf("activate printed %q", out)
	}
	if u := storedUser(t, dbURL, "member@example.com"); !u.CompanyActive {
		t.Fatalf("after company activate: %+v", u)
	}
}

func TestCLIInviteCreateListRevoke(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testDatabaseURL(t)
	env := postgresEnv(t, dbURL)
	store := openPostgresAt(t, dbURL, testDBTimeout)
	companyID := mustSucceed(t, env, "", "company", "create", "-name", "Acme")

	start := time.Now()
	first := mustSucceed(t, env, "", "invite", "create", "-company", companyID, "-email", "Ana@Example.com", "-role", "admin", "-days", "3")
	second := mustSucceed(t, env, "", "invite", "create", "-company", strings.ToUpper(companyID), "-email", "bob@example.com")
	if !isUUID(first) || !isUUID(second) {
		t.Fatalf("invite create printed %q and %q, want only the invitations' ids", first, second)
	}
	if inv, err := store.OpenInvitation(ctx, "ana@example.com", companyID); err != nil || inv.ID != first || inv.Role != "admin" {
		t.Fatalf("OpenInvitation = %+v, %v; want %s with role admin", inv, err, first)
	}

	lines := strings.Split(mustSucceed(t, env, "", "invite", "list", "-company", companyID), "\n")
	want := []struct {
		id, email, role string
		days            int
	}{{second, "bob@example.com", "user", 7}, {first, "Ana@Example.com", "admin", 3}} // newest first
	if len(lines) != len(want) {
		t.Fatalf("invite list printed %d lines, want %d: %q", len(lines), len(want), lines)
	}
	for i, w := range want {
		fields := strings.Split(lines[i], "\t")
		if len(fields) != 4 || fields[0] != w.id || fields[1] != w.email || fields[2] != w.role {
			t.Fatalf("line %d = %q, want %s, %s, %s and the expiry", i, lines[i], w.id, w.email, w.role)
		}
		expires, err := time.Parse(time.RFC3339, fields[3])
		wantExpiry := start.Add(time.Duration(w.days) * 24 * time.Hour)
		if err != nil || expires.Before(wantExpiry.Add(-time.Second)) || expires.After(time.Now().Add(time.Duration(w.days)*24*time.Hour)) {
			t.Fatalf("line %d expiry %q (%v), want about %v", i, fields[3], err, wantExpiry)
		}
	}

	if out := mustSucceed(t, env, "", "invite", "revoke", "-company", companyID, "-id", strings.ToUpper(second)); out != "invitation "+second+" revoked" {
		t.Fatalf("invite revoke printed %q", out)
	}
	if out := mustSucceed(t, env, "", "invite", "list", "-company", companyID); !strings.HasPrefix(out, first+"\t") || strings.Contains(out, "\n") {
		t.Fatalf("invite list after revoking printed %q, want only %s", out, first)
	}
	empty := mustSucceed(t, env, "", "company", "create", "-name", "Nobody invited")
	if out := mustSucceed(t, env, "", "invite", "list", "-company", empty); out != "" {
		t.Fatalf("invite list of a company without invitations printed %q", out)
	}
}

func TestCLIDomainAddRemove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testDatabaseURL(t)
	env := postgresEnv(t, dbURL)
	store := openPostgresAt(t, dbURL, testDBTimeout)
	acme := mustSucceed(t, env, "", "company", "create", "-name", "Acme")
	other := mustSucceed(t, env, "", "company", "create", "-name", "Other")

	if out := mustSucceed(t, env, "", "domain", "add", "-company", acme, "-domain", "@Example.COM"); out != "domain example.com registered for company "+acme {
		t.Fatalf("domain add printed %q", out)
	}
	if got, err := store.CompanyForDomain(ctx, "example.com"); err != nil || got != acme {
		t.Fatalf("CompanyForDomain = %q, %v; want %s", got, err, acme)
	}
	mustSucceed(t, env, "", "domain", "add", "-company", acme, "-domain", "example.com") // again: nothing changes

	r := runCLI(env, "", "domain", "add", "-company", other, "-domain", "example.com")
	if r.code != 1 || !errors.Is(r.err, errDuplicate) || !strings.Contains(r.err.Error(), "belongs to another company") ||
		!strings.Contains(r.err.Error(), acme) {
		t.Fatalf("domain add of another company's domain: exit %d: %v", r.code, r.err)
	}
	r = runCLI(env, "", "domain", "remove", "-company", other, "-domain", "example.com")
	if r.code != 1 || !errors.Is(r.err, errNotFound) || !strings.Contains(r.err.Error(), "company "+other+" has no domain example.com") {
		t.Fatalf("domain remove by a company without it: exit %d: %v", r.code, r.err)
	}

	if out := mustSucceed(t, env, "", "domain", "remove", "-company", acme, "-domain", "EXAMPLE.com"); out != "domain example.com removed from company "+acme {
		t.Fatalf("domain remove printed %q", out)
	}
	if got, err := store.CompanyForDomain(ctx, "example.com"); !errors.Is(err, errNotFound) {
		t.Fatalf("CompanyForDomain after remove = %q, %v; want errNotFound", got, err)
	}
	mustSucceed(t, env, "", "domain", "add", "-company", other, "-domain", "example.com") // free again
}

func TestCLIUserRevokeSessionsRevokesTokens(t *testing.T) {
	t.Parallel()
	dbURL := testDatabaseURL(t)
	env := postgresEnv(t, dbURL)
	store := openPostgresAt(t, dbURL, testDBTimeout)
	if _, err := store.CreateUser(context.Background(), NewUser{Email: "leaky@example.com", HashedPassword: "x"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out := mustSucceed(t, env, "", "user", "revoke-sessions", "-email", "LEAKY@example.com")
	at := storedUser(t, dbURL, "leaky@example.com").TokensValidAfter
	checkRevokedNow(t, "user revoke-sessions", at, start)
	if want := "tokens issued before " + at.UTC().Format(time.RFC3339) + " are refused"; !strings.Contains(out, want) {
		t.Fatalf("revoke-sessions printed %q, want it to say %q", out, want)
	}
}

func TestCLITenancyCommandsRefuseBadUsageAndMissingRows(t *testing.T) {
	t.Parallel()
	dbURL := testDatabaseURL(t)
	store := openPostgresAt(t, dbURL, testDBTimeout)
	ctx := context.Background()
	co, err := store.CreateCompany(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	inv, err := store.CreateInvitation(ctx, Invitation{CompanyID: co.ID, Email: "kept@example.com", ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.AddDomain(ctx, "kept.example", co.ID); err != nil {
		t.Fatal(err)
	}
	const missing = "7d3f0a52-5b1e-4c7e-9a59-1f7f3f0b9a11"

	cases := []struct {
		name     string
		args     []string
		code     int
		want     []string
		sentinel error
	}{
		{"activate without id", []string{"company", "activate"}, 2, []string{"company activate", "-id is required"}, nil},
		{"deactivate with bad id", []string{"company", "deactivate", "-id", "acme"}, 2, []string{`-id "acme" is not a UUID`}, nil},
		{"deactivate missing company", []string{"company", "deactivate", "-id", missing}, 1, []string{"company deactivate: no company with id " + missing}, errNotFound},
		{"activate missing company", []string{"company", "activate", "-id", missing}, 1, []string{"no company with id " + missing}, errNotFound},
		{"invite without company", []string{"invite", "create", "-email", "a@example.com"}, 2, []string{"-company is required"}, nil},
		{"invite with bad company", []string{"invite", "create", "-company", "acme", "-email", "a@example.com"}, 2, []string{`-company "acme" is not a UUID`}, nil},
		{"invite without email", []string{"invite", "create", "-company", missing}, 2, []string{"-email is required"}, nil},
		{"invite with bad email", []string{"invite", "create", "-company", missing, "-email", "nobody"}, 2, []string{`-email "nobody" is not a valid email`}, nil},
		{"invite with unknown role", []string{"invite", "create", "-company", missing, "-email", "a@example.com", "-role", "owner"}, 2, []string{`-role "owner" must be user or admin`}, nil},
		{"invite for no days", []string{"invite", "create", "-company", missing, "-email", "a@example.com", "-days", "0"}, 2, []string{"-days 0 must be between 1 and 365"}, nil},
		{"invite for too long", []string{"invite", "create", "-company", missing, "-email", "a@example.com", "-days", "366"}, 2, []string{"-days 366"}, nil},
		{"invite with days not a number", []string{"invite", "create", "-company", missing, "-email", "a@example.com", "-days", "week"}, 2, []string{"-days"}, nil},
		{"invite to missing company", []string{"invite", "create", "-company", missing, "-email", "a@example.com"}, 1, []string{"invite create: no company with id " + missing}, errNotFound},
		{"list missing company", []string{"invite", "list", "-company", missing}, 1, []string{"invite list: no company with id " + missing}, errNotFound},
		{"revoke without id", []string{"invite", "revoke", "-company", co.ID}, 2, []string{"-id is required"}, nil},
		{"revoke unknown invitation", []string{"invite", "revoke", "-company", co.ID, "-id", missing}, 1, []string{"no open invitation " + missing, "invite list"}, errNotFound},
		{"revoke invitation of another company", []string{"invite", "revoke", "-company", missing, "-id", inv.ID}, 1, []string{"no open invitation " + inv.ID}, errNotFound},
		{"domain without domain", []string{"domain", "add", "-company", co.ID}, 2, []string{"-domain is required"}, nil},
		{"domain without dot", []string{"domain", "add", "-company", co.ID, "-domain", "localhost"}, 2, []string{`-domain "localhost" is not a domain name`}, nil},
		{"domain with underscore", []string{"domain", "add", "-company", co.ID, "-domain", "my_company.com"}, 2, []string{"is not a domain name"}, nil},
		{"domain with empty label", []string{"domain", "add", "-company", co.ID, "-domain", "example..com"}, 2, []string{"is not a domain name"}, nil},
		{"domain with leading hyphen", []string{"domain", "remove", "-company", co.ID, "-domain", "-example.com"}, 2, []string{"is not a domain name"}, nil},
		{"domain that is an address", []string{"domain", "add", "-company", co.ID, "-domain", "ana@example.com"}, 2, []string{"is not a domain name"}, nil},
		{"domain with bad company", []string{"domain", "add", "-company", "acme", "-domain", "example.com"}, 2, []string{`-company "acme" is not a UUID`}, nil},
		{"domain to missing company", []string{"domain", "add", "-company", missing, "-domain", "example.com"}, 1, []string{"domain add: no company with id " + missing}, errNotFound},
		{"remove domain the company lacks", []string{"domain", "remove", "-company", co.ID, "-domain", "other.example"}, 1, []string{"company " + co.ID + " has no domain other.example"}, errNotFound},
		{"revoke sessions without email", []string{"user", "revoke-sessions"}, 2, []string{"-email is required"}, nil},
		{"revoke sessions of unknown user", []string{"user", "revoke-sessions", "-email", "ghost@example.com"}, 1, []string{"user revoke-sessions: no user with email ghost@example.com"}, errNotFound},
		{"invite takes no password", []string{"invite", "list", "-company", co.ID, "-password", "hunter2-hunter2"}, 2, []string{"invite list takes no password"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := postgresEnv(t, dbURL)
			env["GATEWAY_DB_TIMEOUT"] = "2s"
			checkRefused(t, runCLI(env, "", tc.args...), tc.code, tc.want, tc.sentinel)
		})
	}

	// None of the refused commands changed anything.
	if open, err := store.ListOpenInvitations(ctx, co.ID); err != nil || len(open) != 1 || open[0].ID != inv.ID {
		t.Errorf("invitations after refused commands: %+v, %v; want only %s", open, err, inv.ID)
	}
	if got, err := store.CompanyForDomain(ctx, "kept.example"); err != nil || got != co.ID {
		t.Errorf("domain after refused commands: %q, %v", got, err)
	}
	if active, err := store.CompanyActive(ctx, co.ID); err != nil || !active {
		t.Errorf("company after refused commands: active %v, %v", active, err)
	}
}

func TestCLITenancyCommandsOnPreviousSchemaAskForMigrate(t *testing.T) {
	t.Parallel()
	dbURL := emptyTestDatabaseURL(t)
	mustExec(t, sqlConn(t, dbURL), previousSchemaSQL)
	env := postgresEnv(t, dbURL)
	mustExec(t, sqlConn(t, dbURL), "INSERT INTO users (email, hashed_password) VALUES ('old@example.com', 'x')")
	for _, args := range [][]string{
		{"invite", "list", "-company", "7d3f0a52-5b1e-4c7e-9a59-1f7f3f0b9a11"},
		{"domain", "add", "-company", "7d3f0a52-5b1e-4c7e-9a59-1f7f3f0b9a11", "-domain", "example.com"},
		{"user", "revoke-sessions", "-email", "old@example.com"},
	} {
		r := runCLI(env, "", args...)
		if r.code != 1 || !strings.Contains(r.err.Error(), "run `atenex-api-gateway migrate` first") {
			t.Errorf("%s on the previous schema: exit %d: %v; want exit 1 asking to run migrate", strings.Join(args[:2], " "), r.code, r.err)
		}
	}
}
