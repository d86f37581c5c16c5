// db_test.go: the store contract (PostgreSQL and memory), migrations, outages, and the
// PostgreSQL test helpers (fresh database per test, TCP relay) other tests reuse.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// defaultTestDatabaseURL is the server tests create their databases on, unless
// GATEWAY_TEST_DATABASE_URL names another.
const defaultTestDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

func testServerURL() string {
	if u := os.Getenv("GATEWAY_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return defaultTestDatabaseURL
}

// emptyTestDatabaseURL creates a fresh, empty database on the test server and drops it when
// the test ends. An unreachable server skips the test with one line saying so, except under
// CI=true or GATEWAY_TEST_REQUIRE_DB=1, where it fails it: there a skip would prove nothing.
func emptyTestDatabaseURL(t testing.TB) string {
	t.Helper()
	server := testServerURL()
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "postgres" && u.Scheme != "postgresql" {
		t.Fatalf("GATEWAY_TEST_DATABASE_URL must be a postgres:// URL")
	}
	var b [8]byte
	rand.Read(b[:])
	name := "gateway_test_" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := execOnServer(ctx, server, "CREATE DATABASE "+name); err != nil {
		if os.Getenv("CI") != "true" && os.Getenv("GATEWAY_TEST_REQUIRE_DB") != "1" {
			t.Skipf("skipped: needs PostgreSQL at %s, which is unreachable (start it or set GATEWAY_TEST_DATABASE_URL; CI=true or GATEWAY_TEST_REQUIRE_DB=1 makes this a failure)", u.Redacted())
		}
		t.Fatalf("test PostgreSQL server %s is unreachable or refused CREATE DATABASE "+
			"(start it, or point GATEWAY_TEST_DATABASE_URL at one): %v", u.Redacted(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := execOnServer(ctx, server, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u.Path, u.RawPath = "/"+name, ""
	return u.String()
}

// testDatabaseURL is emptyTestDatabaseURL with the schema migrated.
func testDatabaseURL(t testing.TB) string {
	t.Helper()
	dbURL := emptyTestDatabaseURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := migrate(ctx, dbURL, 30*time.Second); err != nil {
		t.Fatalf("migrate test database: %v", err)
	}
	return dbURL
}

// execOnServer runs one statement on its own connection (CREATE/DROP DATABASE cannot run in
// a transaction or through a pool that might hold the database open).
func execOnServer(ctx context.Context, connString, sql string) error {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return err
	}
	cfg.ConnectTimeout = 10 * time.Second
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// openTestPostgres returns a store on a fresh database, closed when the test ends.
func openTestPostgres(t testing.TB) *pgStore {
	t.Helper()
	return openPostgresAt(t, testDatabaseURL(t), testDBTimeout)
}

// postgresWithUser is a fresh store holding the company Acme and a user of no company.
func postgresWithUser(t testing.TB, email string) (*pgStore, Company, User) {
	t.Helper()
	s := openTestPostgres(t)
	co, err := s.CreateCompany(context.Background(), "Acme")
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.CreateUser(context.Background(), NewUser{Email: email, HashedPassword: "x"})
	if err != nil {
		t.Fatal(err)
	}
	return s, co, u
}

// withHost returns connString with its host:port replaced.
func withHost(t testing.TB, connString, hostport string) string {
	t.Helper()
	u, err := url.Parse(connString)
	if err != nil {
		t.Fatalf("parse %q: %v", connString, err)
	}
	u.Host = hostport
	return u.String()
}

// tcpRelay forwards loopback TCP connections to target and can cut them, to play a database
// (or any upstream) that goes away and comes back at the same address.
type tcpRelay struct {
	target  string
	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	severed bool
	stalled bool       // bytes are held, not forwarded: a database that hangs
	resumed *sync.Cond // broadcast when stalled turns false
	conns   map[net.Conn]struct{}
	// accepted counts the connections made to the relay, e.g. reconnection attempts.
	accepted atomic.Int32
}

// newTCPRelay listens on 127.0.0.1:0 and relays to target until the test ends.
func newTCPRelay(t testing.TB, target string) *tcpRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("relay listen: %v", err)
	}
	r := &tcpRelay{target: target, ln: ln, conns: make(map[net.Conn]struct{})}
	r.resumed = sync.NewCond(&r.mu)
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(func() {
		ln.Close()
		r.Restore() // releases stalled goroutines
		r.Sever()
		r.wg.Wait()
	})
	return r
}

// Addr is the relay's host:port.
func (r *tcpRelay) Addr() string { return r.ln.Addr().String() }

// Sever closes every relayed connection and closes new ones as soon as they are accepted,
// until Restore.
func (r *tcpRelay) Sever() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.severed = true
	for c := range r.conns {
		c.Close()
		delete(r.conns, c)
	}
}

// Stall keeps every connection open but forwards nothing more, until Restore: a database
// host that hangs.
func (r *tcpRelay) Stall() {
	r.mu.Lock()
	r.stalled = true
	r.mu.Unlock()
}

// Restore relays new connections again. Connections held by Stall are closed, as a restarted
// database would close them.
func (r *tcpRelay) Restore() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stalled {
		for c := range r.conns {
			c.Close()
			delete(r.conns, c)
		}
	}
	r.severed, r.stalled = false, false
	r.resumed.Broadcast()
}

// forward waits while the relay is stalled.
func (r *tcpRelay) forward() {
	r.mu.Lock()
	for r.stalled {
		r.resumed.Wait()
	}
	r.mu.Unlock()
}

// track registers c for Sever, or closes it when the relay is severed.
func (r *tcpRelay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.severed {
		c.Close()
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *tcpRelay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

func (r *tcpRelay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.accepted.Add(1)
		if !r.track(c) {
			continue
		}
		r.wg.Add(1)
		go r.relay(c)
	}
}

func (r *tcpRelay) relay(client net.Conn) {
	defer r.wg.Done()
	defer r.untrack(client)
	upstream, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil || !r.track(upstream) {
		return
	}
	defer r.untrack(upstream)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				r.forward()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(upstream, client)
	go pipe(client, upstream)
	<-done
	<-done
}

// runStoreContract is the one behaviour both stores must show.
func runStoreContract(t *testing.T, newStore func(t *testing.T) Store) {
	ctx := context.Background()
	s := newStore(t)
	acme, err := s.CreateCompany(ctx, "Acme")
	if err != nil {
		t.Fatalf("CreateCompany: %v", err)
	}
	mustCreate := func(t *testing.T, nu NewUser) User {
		t.Helper()
		if nu.HashedPassword == "" {
			nu.HashedPassword = "$2b$12$hash-of-" + nu.Email
		}
		u, err := s.CreateUser(ctx, nu)
		if err != nil {
			t.Fatalf("CreateUser(%s): %v", nu.Email, err)
		}
		return u
	}
	unknownID := newUUID()

	t.Run("CreatedCompanyIsActiveWithCanonicalID", func(t *testing.T) {
		if !isUUID(acme.ID) || acme.ID != strings.ToLower(acme.ID) || acme.Name != "Acme" || !acme.IsActive {
			t.Fatalf("company = %+v", acme)
		}
		if active, err := s.CompanyActive(ctx, acme.ID); err != nil || !active {
			t.Fatalf("CompanyActive = %v, %v; want true", active, err)
		}
	})

	t.Run("CreatedUserHasDefaultsAndEmptyNullColumns", func(t *testing.T) {
		u := mustCreate(t, NewUser{Email: "plain@example.com", HashedPassword: "$2b$12$x"})
		want := User{ID: u.ID, Email: "plain@example.com", HashedPassword: "$2b$12$x", Role: "user", IsActive: true}
		if u != want {
			t.Fatalf("created %+v, want %+v", u, want)
		}
		if !isUUID(u.ID) || u.ID != strings.ToLower(u.ID) {
			t.Fatalf("id %q is not a canonical lower-case UUID", u.ID)
		}
		got, err := s.UserByID(ctx, u.ID)
		if err != nil || got != want {
			t.Fatalf("UserByID = %+v, %v; want %+v", got, err, want)
		}
	})

	t.Run("CreatedUserKeepsNameRoleAndCompany", func(t *testing.T) {
		u := mustCreate(t, NewUser{Email: "full@example.com", FullName: "Ana Pérez", Role: "admin",
			CompanyID: strings.ToUpper(acme.ID)})
		if u.FullName != "Ana Pérez" || u.Role != "admin" || u.CompanyID != acme.ID {
			t.Fatalf("created %+v", u)
		}
		if got, err := s.UserByEmail(ctx, "full@example.com"); err != nil || got != u {
			t.Fatalf("UserByEmail = %+v, %v; want %+v", got, err, u)
		}
	})

	t.Run("UserIsFoundByEmailInAnyLetterCase", func(t *testing.T) {
		u := mustCreate(t, NewUser{Email: "Ana.Maria@Example.COM"})
		for _, email := range []string{"Ana.Maria@Example.COM", "ana.maria@example.com", "ANA.MARIA@EXAMPLE.COM"} {
			got, err := s.UserByEmail(ctx, email)
			if err != nil || got != u {
				t.Errorf("UserByEmail(%q) = %+v, %v; want %+v", email, got, err, u)
			}
		}
	})

	t.Run("UserIsFoundByIDInEitherCase", func(t *testing.T) {
		u := mustCreate(t, NewUser{Email: "byid@example.com"})
		for _, id := range []string{u.ID, strings.ToUpper(u.ID)} {
			got, err := s.UserByID(ctx, id)
			if err != nil || got != u {
				t.Errorf("UserByID(%q) = %+v, %v; want %+v", id, got, err, u)
			}
		}
	})

	t.Run("UnknownUserIsNotFound", func(t *testing.T) {
		if _, err := s.UserByEmail(ctx, "nobody@example.com"); !errors.Is(err, errNotFound) {
			t.Errorf("UserByEmail(unknown) error = %v, want errNotFound", err)
		}
		if _, err := s.UserByEmail(ctx, ""); !errors.Is(err, errNotFound) {
			t.Errorf("UserByEmail(\"\") error = %v, want errNotFound", err)
		}
		if _, err := s.UserByID(ctx, unknownID); !errors.Is(err, errNotFound) {
			t.Errorf("UserByID(unknown) error = %v, want errNotFound", err)
		}
		if err := s.TouchLastLogin(ctx, unknownID); !errors.Is(err, errNotFound) {
			t.Errorf("TouchLastLogin(unknown) error = %v, want errNotFound", err)
		}
		if err := s.SetUserCompany(ctx, unknownID, acme.ID); !errors.Is(err, errNotFound) {
			t.Errorf("SetUserCompany(unknown user) error = %v, want errNotFound", err)
		}
	})

	t.Run("NonUUIDIDIsNotFoundRatherThanAnError", func(t *testing.T) {
		u := mustCreate(t, NewUser{Email: "nonuuid@example.com"})
		for _, id := range []string{"", "not-a-uuid", "'; DROP TABLE users; --", u.ID + "0", u.ID[:35],
			strings.ReplaceAll(u.ID, "-", ""), "{" + u.ID + "}", strings.Replace(u.ID, "-", "_", 1)} {
			if _, err := s.UserByID(ctx, id); err != errNotFound {
				t.Errorf("UserByID(%q) error = %v, want errNotFound", id, err)
			}
			if err := s.TouchLastLogin(ctx, id); err != errNotFound {
				t.Errorf("TouchLastLogin(%q) error = %v, want errNotFound", id, err)
			}
			if err := s.SetUserCompany(ctx, id, acme.ID); err != errNotFound {
				t.Errorf("SetUserCompany(%q, company) error = %v, want errNotFound", id, err)
			}
			if id != "" {
				if err := s.SetUserCompany(ctx, u.ID, id); err != errNotFound {
					t.Errorf("SetUserCompany(user, %q) error = %v, want errNotFound", id, err)
				}
			}
			if active, err := s.CompanyActive(ctx, id); active || err != nil {
				t.Errorf("CompanyActive(%q) = %v, %v; want false, nil", id, active, err)
			}
		}
	})

	t.Run("SetUserCompanyIsVisibleInUserByID", func(t *testing.T) {
		u := mustCreate(t, NewUser{Email: "mover@example.com"})
		other, err := s.CreateCompany(ctx, "Other")
		if err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			company string
			want    string
		}{
			{acme.ID, acme.ID},
			{strings.ToUpper(other.ID), other.ID},
			{"", ""},
		}
		for _, st := range steps {
			if err := s.SetUserCompany(ctx, u.ID, st.company); err != nil {
				t.Fatalf("SetUserCompany(%q): %v", st.company, err)
			}
			got, err := s.UserByID(ctx, u.ID)
			if err != nil || got.CompanyID != st.want {
				t.Fatalf("after SetUserCompany(%q): UserByID = %+v, %v; want company %q", st.company, got, err, st.want)
			}
		}
		if err := s.SetUserCompany(ctx, u.ID, unknownID); !errors.Is(err, errNotFound) {
			t.Errorf("SetUserCompany(missing company) error = %v, want errNotFound", err)
		}
		if got, _ := s.UserByID(ctx, u.ID); got.CompanyID != "" {
			t.Errorf("a refused SetUserCompany changed the company to %q", got.CompanyID)
		}
	})

	t.Run("TouchLastLoginAcceptsExistingUser", func(t *testing.T) {
		u := mustCreate(t, NewUser{Email: "touch@example.com"})
		if err := s.TouchLastLogin(ctx, u.ID); err != nil {
			t.Fatalf("TouchLastLogin: %v", err)
		}
		if got, err := s.UserByID(ctx, u.ID); err != nil || got != u {
			t.Fatalf("TouchLastLogin changed the user: %+v, %v", got, err)
		}
	})

	t.Run("CompanyActiveIsFalseWhenInactiveOrMissing", func(t *testing.T) {
		co, err := s.CreateCompany(ctx, "Dormant")
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range []struct {
			active bool
		}{{false}, {true}, {false}} {
			if err := s.SetCompanyActive(ctx, co.ID, st.active); err != nil {
				t.Fatal(err)
			}
			if got, err := s.CompanyActive(ctx, co.ID); err != nil || got != st.active {
				t.Fatalf("CompanyActive = %v, %v; want %v", got, err, st.active)
			}
		}
		if got, err := s.CompanyActive(ctx, unknownID); err != nil || got {
			t.Fatalf("CompanyActive(missing) = %v, %v; want false, nil", got, err)
		}
		if err := s.SetCompanyActive(ctx, unknownID, true); !errors.Is(err, errNotFound) {
			t.Fatalf("SetCompanyActive(missing) error = %v, want errNotFound", err)
		}
	})

	t.Run("DuplicateEmailInAnyCaseIsRefused", func(t *testing.T) {
		orig := mustCreate(t, NewUser{Email: "dup@example.com", HashedPassword: "$2b$12$orig"})
		for _, email := range []string{"dup@example.com", "DUP@Example.com"} {
			_, err := s.CreateUser(ctx, NewUser{Email: email, HashedPassword: "$2b$12$other"})
			if !errors.Is(err, errDuplicate) {
				t.Errorf("CreateUser(%q) error = %v, want errDuplicate", email, err)
			}
		}
		if got, err := s.UserByEmail(ctx, "dup@example.com"); err != nil || got != orig {
			t.Errorf("the original user changed: %+v, %v; want %+v", got, err, orig)
		}
	})

	t.Run("CreateUserInMissingCompanyIsNotFound", func(t *testing.T) {
		for _, company := range []string{unknownID, "not-a-uuid"} {
			_, err := s.CreateUser(ctx, NewUser{Email: "orphan@example.com", HashedPassword: "x", CompanyID: company})
			if !errors.Is(err, errNotFound) {
				t.Errorf("CreateUser(company %q) error = %v, want errNotFound", company, err)
			}
		}
		if _, err := s.UserByEmail(ctx, "orphan@example.com"); !errors.Is(err, errNotFound) {
			t.Errorf("a refused user was stored: %v", err)
		}
	})

	t.Run("SetPasswordByEmailInAnyCase", func(t *testing.T) {
		u := mustCreate(t, NewUser{Email: "pw@example.com", HashedPassword: "$2b$12$old"})
		if err := s.SetPassword(ctx, "PW@EXAMPLE.COM", "$2b$12$new"); err != nil {
			t.Fatalf("SetPassword: %v", err)
		}
		got, err := s.UserByID(ctx, u.ID)
		if err != nil || got.HashedPassword != "$2b$12$new" {
			t.Fatalf("after SetPassword: %+v, %v", got, err)
		}
		if err := s.SetPassword(ctx, "nobody@example.com", "$2b$12$new"); !errors.Is(err, errNotFound) {
			t.Fatalf("SetPassword(unknown) error = %v, want errNotFound", err)
		}
	})

	t.Run("SetActiveByEmailInAnyCase", func(t *testing.T) {
		u := mustCreate(t, NewUser{Email: "Active@example.com"})
		for _, active := range []bool{false, true, false} {
			if err := s.SetActive(ctx, "active@EXAMPLE.com", active); err != nil {
				t.Fatalf("SetActive(%v): %v", active, err)
			}
			if got, err := s.UserByEmail(ctx, "ACTIVE@example.com"); err != nil || got.IsActive != active {
				t.Fatalf("after SetActive(%v): %+v, %v", active, got, err)
			}
		}
		if got, _ := s.UserByID(ctx, u.ID); got.IsActive {
			t.Fatal("UserByID still reports the user active")
		}
		if err := s.SetActive(ctx, "nobody@example.com", true); !errors.Is(err, errNotFound) {
			t.Fatalf("SetActive(unknown) error = %v, want errNotFound", err)
		}
	})

	t.Run("CancelledCallIsAnErrorNotNotFound", func(t *testing.T) {
		u := mustCreate(t, NewUser{Email: "cancel@example.com"})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.UserByID(cctx, u.ID); err == nil || errors.Is(err, errNotFound) {
			t.Errorf("UserByID(cancelled) error = %v", err)
		}
		if _, err := s.UserByEmail(cctx, u.Email); err == nil || errors.Is(err, errNotFound) {
			t.Errorf("UserByEmail(cancelled) error = %v", err)
		}
		if active, err := s.CompanyActive(cctx, acme.ID); err == nil || active {
			t.Errorf("CompanyActive(cancelled) = %v, %v", active, err)
		}
	})

	t.Run("PingAnswers", func(t *testing.T) {
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})

	runTenancyContract(t, s, mustCreate)
	runAdminContract(t, s, mustCreate)
}

func TestPostgresStoreContract(t *testing.T) {
	t.Parallel()
	runStoreContract(t, func(t *testing.T) Store { return openTestPostgres(t) })
}

func TestMemoryStoreContract(t *testing.T) {
	runStoreContract(t, func(t *testing.T) Store { return newMemoryStore() })
}

func TestPostgresTouchLastLoginSetsColumn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestPostgres(t)
	u, err := s.CreateUser(ctx, NewUser{Email: "last@example.com", HashedPassword: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var lastLogin *time.Time
	if err := s.pool.QueryRow(ctx, "SELECT last_login FROM users WHERE id = $1", u.ID).Scan(&lastLogin); err != nil {
		t.Fatal(err)
	}
	if lastLogin != nil {
		t.Fatalf("a new user has last_login %v", lastLogin)
	}
	if err := s.TouchLastLogin(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	var inWindow bool
	if err := s.pool.QueryRow(ctx, "SELECT last_login > now() - interval '1 minute' FROM users WHERE id = $1",
		u.ID).Scan(&inWindow); err != nil || !inWindow {
		t.Fatalf("last_login not set to now: %v, %v", inWindow, err)
	}
}

func TestPostgresUserUpdatesBumpUpdatedAt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, co, u := postgresWithUser(t, "upd@example.com")
	updates := []struct {
		name string
		do   func() error
	}{
		{"SetUserCompany", func() error { return s.SetUserCompany(ctx, u.ID, co.ID) }},
		{"SetPassword", func() error { return s.SetPassword(ctx, u.Email, "y") }},
		{"SetActive", func() error { return s.SetActive(ctx, u.Email, false) }},
	}
	for _, up := range updates {
		if _, err := s.pool.Exec(ctx, "UPDATE users SET updated_at = '2000-01-01' WHERE id = $1", u.ID); err != nil {
			t.Fatal(err)
		}
		if err := up.do(); err != nil {
			t.Fatalf("%s: %v", up.name, err)
		}
		var recent bool
		if err := s.pool.QueryRow(ctx, "SELECT updated_at > now() - interval '1 minute' FROM users WHERE id = $1",
			u.ID).Scan(&recent); err != nil || !recent {
			t.Errorf("%s did not set updated_at: %v, %v", up.name, recent, err)
		}
	}
}

// Rows written by other services may hold NULL where the gateway's own inserts never do.
func TestPostgresStoreReadsLegacyNullColumns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestPostgres(t)
	var id string
	err := s.pool.QueryRow(ctx, `INSERT INTO users (email, hashed_password, full_name, role, company_id, is_active)
		VALUES ('legacy@example.com', 'x', NULL, NULL, NULL, NULL) RETURNING id::text`).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.UserByEmail(ctx, "LEGACY@example.com")
	want := User{ID: id, Email: "legacy@example.com", HashedPassword: "x", Role: "user", IsActive: false}
	if err != nil || got != want {
		t.Fatalf("UserByEmail = %+v, %v; want %+v (NULL is_active reads as inactive)", got, err, want)
	}
	var coID string
	if err := s.pool.QueryRow(ctx, "INSERT INTO companies (name, is_active) VALUES ('c', NULL) RETURNING id::text").Scan(&coID); err != nil {
		t.Fatal(err)
	}
	if active, err := s.CompanyActive(ctx, coID); err != nil || active {
		t.Fatalf("CompanyActive(NULL is_active) = %v, %v; want false, nil", active, err)
	}
	// The gateway's own inserts store NULL, not "", for an absent name and company.
	u, err := s.CreateUser(ctx, NewUser{Email: "fresh@example.com", HashedPassword: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var nulls bool
	if err := s.pool.QueryRow(ctx, "SELECT full_name IS NULL AND company_id IS NULL FROM users WHERE id = $1",
		u.ID).Scan(&nulls); err != nil || !nulls {
		t.Fatalf("CreateUser stored non-NULL name/company: %v, %v", nulls, err)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testDatabaseURL(t) // migrated once already
	s, err := openPostgres(ctx, dbURL, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	co, err := s.CreateCompany(ctx, "Kept")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := migrate(ctx, dbURL, 10*time.Second); err != nil {
			t.Fatalf("migrate run %d: %v", i+2, err)
		}
	}
	if active, err := s.CompanyActive(ctx, co.ID); err != nil || !active {
		t.Fatalf("data lost across migrations: %v, %v", active, err)
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes
		WHERE tablename = 'users' AND indexname = 'users_email_lower_key'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("users_email_lower_key indexes = %d, %v; want 1", n, err)
	}
}

func TestMigrateFailsFastWhenDatabaseDown(t *testing.T) {
	url := withHost(t, testServerURL(), closedLoopbackAddr(t))
	start := time.Now()
	err := migrate(context.Background(), url, time.Second)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("migrate against a closed port: %v after %v", err, time.Since(start))
	}
}

// closedLoopbackAddr is a loopback address nothing listens on.
func closedLoopbackAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// silentLoopbackAddr accepts connections and never answers: a database host that hangs.
func silentLoopbackAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// storeCall is one Store method called with valid arguments naming rows that may exist.
type storeCall struct {
	name string
	call func(ctx context.Context, s Store) error
}

func storeCalls(userID, email, companyID string) []storeCall {
	return []storeCall{
		{"UserByID", func(ctx context.Context, s Store) error { _, err := s.UserByID(ctx, userID); return err }},
		{"UserByEmail", func(ctx context.Context, s Store) error { _, err := s.UserByEmail(ctx, email); return err }},
		{"SetUserCompany", func(ctx context.Context, s Store) error { return s.SetUserCompany(ctx, userID, companyID) }},
		{"TouchLastLogin", func(ctx context.Context, s Store) error { return s.TouchLastLogin(ctx, userID) }},
		{"CompanyActive", func(ctx context.Context, s Store) error {
			active, err := s.CompanyActive(ctx, companyID)
			if err != nil && active {
				return errors.New("CompanyActive reported true with an error")
			}
			return err
		}},
		{"Ping", func(ctx context.Context, s Store) error { return s.Ping(ctx) }},
		{"CreateCompany", func(ctx context.Context, s Store) error { _, err := s.CreateCompany(ctx, "c"); return err }},
		{"CreateUser", func(ctx context.Context, s Store) error {
			_, err := s.CreateUser(ctx, NewUser{Email: "n-" + newUUID() + "@example.com", HashedPassword: "x"})
			return err
		}},
		{"SetPassword", func(ctx context.Context, s Store) error { return s.SetPassword(ctx, email, "x") }},
		{"SetActive", func(ctx context.Context, s Store) error { return s.SetActive(ctx, email, true) }},
	}
}

// expectOutage checks that every call fails, not with an answer about the rows (errNotFound,
// errDuplicate, errInvitationClosed, errSchemaNotMigrated), within timeout plus a second.
func expectOutage(t *testing.T, s Store, calls []storeCall, timeout time.Duration) {
	t.Helper()
	for _, c := range calls {
		start := time.Now()
		err := c.call(context.Background(), s)
		elapsed := time.Since(start)
		if err == nil || errors.Is(err, errNotFound) || errors.Is(err, errDuplicate) ||
			errors.Is(err, errInvitationClosed) || errors.Is(err, errSchemaNotMigrated) {
			t.Errorf("%s during an outage: error %v, want a database error", c.name, err)
		}
		if elapsed > timeout+time.Second {
			t.Errorf("%s took %v during an outage; the deadline is %v", c.name, elapsed, timeout)
		}
	}
}

func TestPostgresStoreAnswersErrorNotHangWhenDatabaseDown(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	downs := []struct {
		name string
		addr func(t testing.TB) string
	}{
		{"ConnectionRefused", closedLoopbackAddr},
		{"ServerSilent", silentLoopbackAddr},
	}
	for _, down := range downs {
		t.Run(down.name, func(t *testing.T) {
			t.Parallel()
			connString := withHost(t, testServerURL(), down.addr(t))
			// With a long deadline, a start that waited for the database would show.
			start := time.Now()
			patient, err := openPostgres(context.Background(), connString, 10*time.Second)
			if err != nil {
				t.Fatalf("openPostgres must not need the database: %v", err)
			}
			patient.Close()
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("openPostgres blocked for %v", d)
			}
			s, err := openPostgres(context.Background(), connString, timeout)
			if err != nil {
				t.Fatalf("openPostgres must not need the database: %v", err)
			}
			defer s.Close()
			calls := storeCalls(newUUID(), "someone@example.com", newUUID())
			calls = append(calls, tenancyStoreCalls(newUUID(), "someone@example.com", newUUID(), newUUID())...)
			expectOutage(t, s, calls, timeout)
			_ = s.Stats()
		})
	}
}

func TestPostgresStoreRecoversWhenDatabaseReturns(t *testing.T) {
	const timeout = 3 * time.Second
	ctx := context.Background()
	s, relay, _ := relayedTestPostgres(t, timeout)
	co, err := s.CreateCompany(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	user, err := s.CreateUser(ctx, NewUser{Email: "back@example.com", HashedPassword: "x", CompanyID: co.ID})
	if err != nil {
		t.Fatal(err)
	}
	calls := storeCalls(user.ID, user.Email, co.ID)
	expectServed := func(t *testing.T) {
		t.Helper()
		for _, c := range calls {
			if err := c.call(ctx, s); err != nil {
				t.Errorf("%s after the database returned: %v", c.name, err)
			}
		}
	}
	fillPool := func(t *testing.T, n int) {
		t.Helper()
		for i := 0; i < n; i++ { // held together, so the pool opens n connections
			c, err := s.pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Release()
		}
	}

	t.Run("DeadIdleConnectionsCostNoRequest", func(t *testing.T) {
		fillPool(t, 4)
		relay.Sever()
		relay.Restore()
		expectServed(t)
	})

	t.Run("CallsFailFastWhileDownAndSucceedAfter", func(t *testing.T) {
		fillPool(t, 4)
		relay.Sever()
		expectOutage(t, s, calls, timeout)
		expectOutage(t, s, calls, timeout) // now with no connection left at all
		relay.Restore()
		expectServed(t)
		if st := s.Stats(); st.Total < 1 {
			t.Errorf("pool stats after recovery = %+v", st)
		}
	})
}

func TestPostgresConnStringKeepsEverySetting(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"Plain", Config{PostgresUser: "postgres", PostgresPassword: "secret", PostgresServer: "db.internal", PostgresPort: 5432, PostgresDB: "atenex"}},
		{"ReservedCharacters", Config{PostgresUser: "u@x:y", PostgresPassword: "p@ss:w/rd?#%20&=+ é", PostgresServer: "127.0.0.1", PostgresPort: 6543, PostgresDB: "my db/x?y"}},
		{"IPv6Server", Config{PostgresUser: "postgres", PostgresPassword: "p", PostgresServer: "::1", PostgresPort: 5432, PostgresDB: "atenex"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkConnStringRoundTrip(t, &tc.cfg)
		})
	}
}

func checkConnStringRoundTrip(t *testing.T, cfg *Config) {
	t.Helper()
	s := postgresConnString(cfg)
	pc, err := pgx.ParseConfig(s)
	if err != nil {
		t.Fatalf("pgx cannot parse the connection string: %v", err)
	}
	if pc.User != cfg.PostgresUser || pc.Password != cfg.PostgresPassword || pc.Host != cfg.PostgresServer ||
		int(pc.Port) != cfg.PostgresPort || pc.Database != cfg.PostgresDB {
		t.Fatalf("round trip: user %q password ok=%v host %q port %d db %q; want %q %q %d %q",
			pc.User, pc.Password == cfg.PostgresPassword, pc.Host, pc.Port, pc.Database,
			cfg.PostgresUser, cfg.PostgresServer, cfg.PostgresPort, cfg.PostgresDB)
	}
}

// FuzzPostgresConnString: any user, password and database name survive the URL form.
func FuzzPostgresConnString(f *testing.F) {
	f.Add("postgres", "secret", "atenex", uint16(5432))
	f.Add("u@x:y", "p@ss:w/rd?#%20&=+ é", "my db/x?y", uint16(1))
	f.Add("üser", "%zz%", "a%2Fb", uint16(65535))
	f.Fuzz(func(t *testing.T, user, password, db string, port uint16) {
		// pgx cannot express these (it falls back to defaults or trims the leading slash);
		// configuration never produces them.
		if user == "" || db == "" || strings.HasPrefix(db, "/") || port == 0 ||
			strings.ContainsRune(user+password+db, 0) {
			t.Skip()
		}
		checkConnStringRoundTrip(t, &Config{PostgresUser: user, PostgresPassword: password,
			PostgresServer: "db.internal", PostgresPort: int(port), PostgresDB: db})
	})
}

func TestNewUUIDIsCanonicalVersion4(t *testing.T) {
	seen := make(map[string]bool)
	for i := 0; i < 1000; i++ {
		id := newUUID()
		if !isUUID(id) || id != strings.ToLower(id) || id[14] != '4' || !strings.ContainsRune("89ab", rune(id[19])) {
			t.Fatalf("newUUID() = %q, want a canonical lower-case version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("newUUID repeated %q", id)
		}
		seen[id] = true
	}
}

func TestMemoryStoreTouchLastLoginRecordsTime(t *testing.T) {
	ctx := context.Background()
	m := newMemoryStore()
	u, err := m.CreateUser(ctx, NewUser{Email: "m@example.com", HashedPassword: "x"})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := m.TouchLastLogin(ctx, strings.ToUpper(u.ID)); err != nil {
		t.Fatal(err)
	}
	if got := m.users[u.ID].lastLogin; got.Before(before) {
		t.Fatalf("lastLogin = %v, want ≥ %v", got, before)
	}
}

func BenchmarkPostgresUserByID(b *testing.B) {
	ctx := context.Background()
	s := openTestPostgres(b)
	u, err := s.CreateUser(ctx, NewUser{Email: "bench@example.com", HashedPassword: "x", FullName: "Bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.UserByID(ctx, u.ID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMemoryUserByID(b *testing.B) {
	ctx := context.Background()
	m := newMemoryStore()
	u, err := m.CreateUser(ctx, NewUser{Email: "bench@example.com", HashedPassword: "x"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.UserByID(ctx, u.ID); err != nil {
			b.Fatal(err)
		}
	}
}
