// db.go: the user store: SQL and pgxpool only; the in-memory development store beside it.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// errNotFound is returned by a store when the user or company does not exist. Any other
// store error means the database could not answer (the caller answers 503).
var errNotFound = errors.New("not found")

// errInvitationClosed is returned by JoinCompany when the invitation was accepted, revoked or
// expired meanwhile.
var errInvitationClosed = errors.New("invitation no longer open")

// errSchemaNotMigrated is returned by CheckSchema when migrate has not been run.
var errSchemaNotMigrated = errors.New("database schema is not migrated")

// errDuplicate is returned (wrapped) by CreateUser when a user with the same email, in any
// letter case, already exists, and by AddDomain when another company has the domain.
var errDuplicate = errors.New("already exists")

// errInvalidInput is returned (wrapped) when a write carries a value the caller should have
// refused (an unknown invitation role, an empty email): a client mistake, not an outage.
var errInvalidInput = errors.New("invalid input")

// User is a row of the users table.
type User struct {
	ID             string // canonical lower-case UUID
	CompanyID      string // "" when NULL
	Email          string
	HashedPassword string
	FullName       string // "" when NULL
	Role           string
	IsActive       bool
	// TokensValidAfter revokes every token issued (iat, whole seconds) before it; zero when
	// NULL. Stored truncated to the second.
	TokensValidAfter time.Time
	CompanyActive    bool // the company's is_active; false when the user has no company
}

// Invitation is a row of company_invitations. Open means not accepted, not revoked and not
// expired.
type Invitation struct {
	ID         string
	CompanyID  string
	Email      string
	Role       string
	CreatedBy  string // "" when NULL
	CreatedAt  time.Time
	ExpiresAt  time.Time
	AcceptedAt time.Time // zero when NULL
	RevokedAt  time.Time // zero when NULL
}

// StoreChange names a users or companies row that changed, as the database notifies it.
type StoreChange struct {
	Table string // "users" or "companies"
	ID    string
}

// WatchHooks receive what Store.Watch sees. Each may be nil. Lost and Listening alternate: a
// listener that keeps failing to reconnect reports Lost once, not at every attempt. pgStore
// calls every hook from Watch's goroutine; the memory store calls Changed from the goroutine
// that made the change, so Changed must be safe for concurrent use.
type WatchHooks struct {
	Changed   func(StoreChange)
	Lost      func(err error) // notifications stopped: changes may go unseen until Listening
	Listening func()          // notifications flow (again): anything cached before may be stale
}

// Company is a row of the companies table.
type Company struct {
	ID        string
	Name      string
	IsActive  bool
	CreatedAt time.Time // zero when NULL
}

// NewUser is what an operator gives to create a user.
type NewUser struct {
	Email          string
	HashedPassword string
	FullName       string
	Role           string // "" means "user"
	CompanyID      string // "" means none
}

// PoolStats is a snapshot of the connection pool, for metrics.
type PoolStats struct {
	Total, Idle, Acquired int32
}

// Store is the one seam of the gateway: PostgreSQL in production, memory in -dev.
// Every method applies its own deadline (Config.DBTimeout).
type Store interface {
	UserByEmail(ctx context.Context, email string) (User, error) // case-insensitive
	UserByID(ctx context.Context, id string) (User, error)
	SetUserCompany(ctx context.Context, userID, companyID string) error
	TouchLastLogin(ctx context.Context, userID string) error
	CompanyActive(ctx context.Context, id string) (bool, error) // false, nil: missing or inactive
	Ping(ctx context.Context) error

	// Tenancy (SPEC §7).
	// OpenInvitation returns the newest open invitation of email (any letter case) to an
	// active company, to companyID only when it is not ""; errNotFound when there is none.
	OpenInvitation(ctx context.Context, email, companyID string) (Invitation, error)
	// CompanyForDomain returns the active company registered for the email domain (any
	// letter case); errNotFound when none.
	CompanyForDomain(ctx context.Context, domain string) (string, error)
	// JoinCompany moves the user into the company. With an invitationID it also accepts that
	// invitation and gives the user its role, in one transaction (errInvitationClosed when it
	// is no longer open; nothing changes then). errNotFound when the user or company is gone.
	JoinCompany(ctx context.Context, userID, companyID, invitationID string) (User, error)
	// RevokeSessions sets tokens_valid_after to now (truncated to the second) and returns it.
	RevokeSessions(ctx context.Context, userID string) (time.Time, error)
	// CheckSchema returns errSchemaNotMigrated (wrapped, naming what is missing) when migrate
	// has not been applied; another error when the database cannot answer.
	CheckSchema(ctx context.Context) error
	// Watch reports changes to users and companies made by anyone, until ctx ends,
	// reconnecting by itself; it returns when ctx ends.
	Watch(ctx context.Context, hooks WatchHooks)

	CreateCompany(ctx context.Context, name string) (Company, error)
	CreateUser(ctx context.Context, u NewUser) (User, error)
	SetPassword(ctx context.Context, email, hashedPassword string) error // revokes older tokens too
	SetActive(ctx context.Context, email string, active bool) error      // deactivation revokes tokens too
	SetCompanyActive(ctx context.Context, id string, active bool) error
	CreateInvitation(ctx context.Context, inv Invitation) (Invitation, error) // fills ID and CreatedAt
	ListOpenInvitations(ctx context.Context, companyID string) ([]Invitation, error)
	RevokeInvitation(ctx context.Context, companyID, invitationID string) error // errNotFound when not open
	AddDomain(ctx context.Context, domain, companyID string) error              // errDuplicate when another company has it
	RemoveDomain(ctx context.Context, domain, companyID string) error           // errNotFound

	AdminStore // the administration API's reads and writes, at the end of this file

	Stats() PoolStats
	Close()
}

// schemaSQL creates the tables the gateway reads; applied only by migrate.
//
//go:embed schema.sql
var schemaSQL string

// postgresConnString builds the pgx URL for cfg, TLS settings included (sslmode prefer when
// unset), for the gateway and the operator subcommands alike. Every part is escaped, so a
// password holding '@', ':', '/' or '%' reaches the server unchanged.
func postgresConnString(cfg *Config) string {
	q := url.Values{"sslmode": {cmp.Or(cfg.PostgresSSLMode, "prefer")}}
	if cfg.PostgresSSLRootCert != "" {
		q.Set("sslrootcert", cfg.PostgresSSLRootCert)
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(cfg.PostgresUser, cfg.PostgresPassword),
		Host:     net.JoinHostPort(cfg.PostgresServer, strconv.Itoa(cfg.PostgresPort)),
		Path:     "/" + cfg.PostgresDB,
		RawPath:  "/" + url.PathEscape(cfg.PostgresDB),
		RawQuery: q.Encode(),
	}
	return u.String()
}

// migrate applies schema.sql in one transaction; the whole run, connection included, is
// bounded by timeout. Concurrent runs are serialised by an advisory lock, because two
// CREATE TABLE IF NOT EXISTS racing each other can still collide in the catalog.
func migrate(ctx context.Context, connString string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	cfg.ConnectTimeout = timeout
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('atenex-api-gateway migrate'))"); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if _, err := tx.Exec(ctx, schemaSQL); err != nil {
			return fmt.Errorf("apply schema.sql: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// pgStore is the production Store on a pgxpool pool.
type pgStore struct {
	pool     *pgxpool.Pool
	timeout  time.Duration // deadline of every call
	attempts int           // how many connections one idempotent call may try
	// watchIdle is how long Watch waits for a notification before it pings the server: a
	// database that hangs (TCP alive, no answers) would otherwise keep it waiting forever.
	watchIdle time.Duration
}

// pgMaxConns bounds the pool. A proxied request needs at most one short indexed query (and
// usually none: the user check is cached), so 16 connections serve thousands of requests per
// second, while several gateway replicas together stay well inside PostgreSQL's default
// max_connections of 100, which the platform's other services share.
const pgMaxConns = 16

// openPostgres builds the pool without connecting: a database that is down at start costs
// nothing here, each call then fails within timeout, and the pool reconnects on its own once
// the database is back.
func openPostgres(ctx context.Context, connString string, timeout time.Duration) (*pgStore, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("postgres settings: %w", err)
	}
	cfg.MaxConns = pgMaxConns
	cfg.MinConns = 0 // connect lazily: never block or fail at start
	// A dial to a host that drops packets would otherwise hold a pool slot for the driver's
	// default of two minutes after the caller has given up.
	cfg.ConnConfig.ConnectTimeout = timeout
	// Idle connections are checked (and expired ones closed) this often; a dead one is also
	// pinged when acquired after a second of idleness, and replaced by withConn otherwise.
	cfg.HealthCheckPeriod = 30 * time.Second
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "atenex-api-gateway"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres pool: %w", err)
	}
	return &pgStore{pool: pool, timeout: timeout, attempts: pgMaxConns + 1, watchIdle: defaultWatchIdle}, nil
}

// withConn runs f on a pooled connection under the store's deadline. When the connection
// turns out to be dead — the database restarted, or a network path dropped it while it sat
// idle — f runs again on another one: the pool may hold up to pgMaxConns such connections,
// and each would otherwise fail one request after the database is back. A failed connect is
// not retried (the database is down: answer now). Calls that are not idempotent retry only
// when nothing reached the server.
func (s *pgStore) withConn(ctx context.Context, idempotent bool, f func(ctx context.Context, c *pgx.Conn) error) (err error) {
	sp := startDBSpan(ctx) // nil unless the request is traced
	defer sp.finishDB(&err)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		pc, err := s.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		err = f(ctx, pc.Conn())
		dead := err != nil && pc.Conn().IsClosed()
		pc.Release() // destroys a closed connection
		if !dead || attempt >= s.attempts || ctx.Err() != nil || (!idempotent && !pgconn.SafeToRetry(err)) {
			return err
		}
	}
}

// userColumns is every User field, read from userFrom, NULLs mapped as User documents them.
// A NULL is_active (the user's or the company's) reads as inactive: when in doubt, refuse.
const userColumns = `u.id::text, coalesce(u.company_id::text, ''), u.email, u.hashed_password,
	coalesce(u.full_name, ''), coalesce(u.role, 'user'), coalesce(u.is_active, false),
	u.tokens_valid_after, coalesce(c.is_active, false)`

// userFrom joins the user's company, so that the one round trip that loads a user also says
// whether their company is active.
const userFrom = ` FROM users u LEFT JOIN companies c ON c.id = u.company_id`

func scanUser(row pgx.Row, u *User) error {
	var validAfter pgtype.Timestamptz
	err := row.Scan(&u.ID, &u.CompanyID, &u.Email, &u.HashedPassword, &u.FullName, &u.Role, &u.IsActive,
		&validAfter, &u.CompanyActive)
	if err != nil {
		return err
	}
	u.TokensValidAfter = pgTime(validAfter)
	return nil
}

// farFuture stands for 'infinity': every token was issued before it.
var farFuture = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// pgTime maps a nullable timestamptz to a time.Time: zero for NULL and '-infinity' (nothing
// revoked, never accepted), farFuture for 'infinity'.
func pgTime(t pgtype.Timestamptz) time.Time {
	switch {
	case !t.Valid || t.InfinityModifier == pgtype.NegativeInfinity:
		return time.Time{}
	case t.InfinityModifier == pgtype.Infinity:
		return farFuture
	}
	return t.Time
}

// sqlText reports whether PostgreSQL can hold s as text: it refuses NUL bytes and invalid
// UTF-8 with an error that must not be mistaken for an outage.
func sqlText(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// UserByID is on the path of every proxied request whose user check is not cached: one
// round trip on a prepared statement.
func (s *pgStore) UserByID(ctx context.Context, id string) (User, error) {
	if !isUUID(id) {
		return User{}, errNotFound // cannot exist; never let the server's syntax error look like an outage
	}
	var u User
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		return scanUser(c.QueryRow(ctx, "SELECT "+userColumns+userFrom+" WHERE u.id = $1", id), &u)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, errNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("user by id %s: %w", id, err)
	}
	return u, nil
}

// UserByEmail matches case-insensitively. Should a legacy database hold two emails differing
// only in case (no users_email_lower_key index there), the exact spelling wins.
func (s *pgStore) UserByEmail(ctx context.Context, email string) (User, error) {
	if !sqlText(email) {
		return User{}, errNotFound
	}
	var u User
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		return scanUser(c.QueryRow(ctx, "SELECT "+userColumns+userFrom+
			" WHERE lower(u.email) = lower($1) ORDER BY u.email = $1 DESC LIMIT 1", email), &u)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, errNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("user by email %s: %w", email, err)
	}
	return u, nil
}

// SetUserCompany sets the user's company; "" clears it. errNotFound when the user or the
// company does not exist.
func (s *pgStore) SetUserCompany(ctx context.Context, userID, companyID string) error {
	if !isUUID(userID) {
		return errNotFound
	}
	var company any // NULL for ""
	if companyID != "" {
		if !isUUID(companyID) {
			return errNotFound
		}
		company = companyID
	}
	var tag pgconn.CommandTag
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) (err error) {
		tag, err = c.Exec(ctx, "UPDATE users SET company_id = $2, updated_at = now() WHERE id = $1", userID, company)
		return err
	})
	if isPgCode(err, "23503") { // foreign_key_violation: no such company
		return errNotFound
	}
	if err != nil {
		return fmt.Errorf("set company %s of user %s: %w", companyID, userID, err)
	}
	if tag.RowsAffected() == 0 {
		return errNotFound
	}
	return nil
}

// TouchLastLogin records a successful login.
func (s *pgStore) TouchLastLogin(ctx context.Context, userID string) error {
	if !isUUID(userID) {
		return errNotFound
	}
	var tag pgconn.CommandTag
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) (err error) {
		tag, err = c.Exec(ctx, "UPDATE users SET last_login = now() WHERE id = $1", userID)
		return err
	})
	if err != nil {
		return fmt.Errorf("touch last login of user %s: %w", userID, err)
	}
	if tag.RowsAffected() == 0 {
		return errNotFound
	}
	return nil
}

// CompanyActive reports whether the company exists and is active.
func (s *pgStore) CompanyActive(ctx context.Context, id string) (bool, error) {
	if !isUUID(id) {
		return false, nil
	}
	var active bool
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT coalesce(is_active, false) FROM companies WHERE id = $1", id).Scan(&active)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("company %s active: %w", id, err)
	}
	return active, nil
}

// Ping asks the database for an answer within the store's deadline (readiness).
func (s *pgStore) Ping(ctx context.Context) error {
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SELECT 1")
		return err
	})
	if err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// CreateCompany inserts an active company.
func (s *pgStore) CreateCompany(ctx context.Context, name string) (Company, error) {
	var co Company
	err := s.withConn(ctx, false, func(ctx context.Context, c *pgx.Conn) error {
		return scanCompany(c.QueryRow(ctx, "INSERT INTO companies AS c (name) VALUES ($1) RETURNING "+companyColumns, name), &co)
	})
	if err != nil {
		return Company{}, fmt.Errorf("create company %q: %w", name, err)
	}
	return co, nil
}

// CreateUser inserts an active user. The NOT EXISTS guard refuses an email differing only in
// case even on a database without users_email_lower_key; the unique indexes close the race.
// The insert sits in a CTE so that the same statement reads the company's is_active.
func (s *pgStore) CreateUser(ctx context.Context, nu NewUser) (User, error) {
	role := nu.Role
	if role == "" {
		role = "user"
	}
	var company, fullName any // NULL for ""
	if nu.CompanyID != "" {
		if !isUUID(nu.CompanyID) {
			return User{}, fmt.Errorf("create user %s: company %q: %w", nu.Email, nu.CompanyID, errNotFound)
		}
		company = nu.CompanyID
	}
	if nu.FullName != "" {
		fullName = nu.FullName
	}
	var u User
	err := s.withConn(ctx, false, func(ctx context.Context, c *pgx.Conn) error {
		return scanUser(c.QueryRow(ctx, `WITH u AS (
				INSERT INTO users (email, hashed_password, full_name, role, company_id)
				SELECT $1::text, $2::text, $3::text, $4::text, $5::uuid
				WHERE NOT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1::text))
				RETURNING *)
			SELECT `+userColumns+` FROM u LEFT JOIN companies c ON c.id = u.company_id`,
			nu.Email, nu.HashedPassword, fullName, role, company), &u)
	})
	switch {
	case err == nil:
		return u, nil
	case errors.Is(err, pgx.ErrNoRows) || isPgCode(err, "23505"): // guard or unique_violation
		return User{}, fmt.Errorf("create user %s: %w", nu.Email, errDuplicate)
	case isPgCode(err, "23503"): // foreign_key_violation
		return User{}, fmt.Errorf("create user %s: company %s: %w", nu.Email, nu.CompanyID, errNotFound)
	default:
		return User{}, fmt.Errorf("create user %s: %w", nu.Email, err)
	}
}

// SetPassword replaces the password hash of the user with that email (any letter case) and
// revokes every token issued before: whoever knew the old password may hold one.
func (s *pgStore) SetPassword(ctx context.Context, email, hashedPassword string) error {
	return s.updateByEmail(ctx, "set password", email, `UPDATE users
		SET hashed_password = $2, updated_at = now(), tokens_valid_after = date_trunc('second', now())
		WHERE lower(email) = lower($1)`, hashedPassword)
}

// SetActive activates or deactivates the user with that email (any letter case). A
// deactivation also revokes every token issued before it, so that activating the user
// again does not bring back the sessions of whoever got them deactivated.
func (s *pgStore) SetActive(ctx context.Context, email string, active bool) error {
	return s.updateByEmail(ctx, "set active", email, `UPDATE users
		SET is_active = $2, updated_at = now(),
			tokens_valid_after = CASE WHEN $2 THEN tokens_valid_after ELSE date_trunc('second', now()) END
		WHERE lower(email) = lower($1)`, active)
}

func (s *pgStore) updateByEmail(ctx context.Context, what, email, sql string, value any) error {
	if !sqlText(email) {
		return errNotFound
	}
	var tag pgconn.CommandTag
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) (err error) {
		tag, err = c.Exec(ctx, sql, email, value)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s of user %s: %w", what, email, err)
	}
	if tag.RowsAffected() == 0 {
		return errNotFound
	}
	return nil
}

// SetCompanyActive activates or deactivates a company. Its users' tokens are refused while it
// is inactive and work again once it is active: nothing is revoked.
func (s *pgStore) SetCompanyActive(ctx context.Context, id string, active bool) error {
	if !isUUID(id) {
		return errNotFound
	}
	var tag pgconn.CommandTag
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) (err error) {
		tag, err = c.Exec(ctx, "UPDATE companies SET is_active = $2 WHERE id = $1", id, active)
		return err
	})
	if err != nil {
		return fmt.Errorf("set active of company %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return errNotFound
	}
	return nil
}

// RevokeSessions refuses every token of the user issued before now. The value is truncated to
// the second because tokens carry iat in whole seconds: a token issued in the same second
// stays valid, which lets the user sign in again at once.
func (s *pgStore) RevokeSessions(ctx context.Context, userID string) (time.Time, error) {
	if !isUUID(userID) {
		return time.Time{}, errNotFound
	}
	var validAfter pgtype.Timestamptz
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `UPDATE users SET tokens_valid_after = date_trunc('second', now()), updated_at = now()
			WHERE id = $1 RETURNING tokens_valid_after`, userID).Scan(&validAfter)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, errNotFound
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("revoke sessions of user %s: %w", userID, err)
	}
	return pgTime(validAfter), nil
}

// invitationColumns is every Invitation field of company_invitations i.
const invitationColumns = `i.id::text, i.company_id::text, i.email, i.role, coalesce(i.created_by::text, ''),
	i.created_at, i.expires_at, i.accepted_at, i.revoked_at`

// invitationOpen is the SQL condition of an open invitation i.
const invitationOpen = `i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > now()`

func scanInvitation(row pgx.Row, inv *Invitation) error {
	var accepted, revoked pgtype.Timestamptz
	err := row.Scan(&inv.ID, &inv.CompanyID, &inv.Email, &inv.Role, &inv.CreatedBy,
		&inv.CreatedAt, &inv.ExpiresAt, &accepted, &revoked)
	if err != nil {
		return err
	}
	inv.AcceptedAt, inv.RevokedAt = pgTime(accepted), pgTime(revoked)
	return nil
}

// OpenInvitation returns the newest open invitation of email to an active company. The
// condition matches the partial index company_invitations_open_email.
func (s *pgStore) OpenInvitation(ctx context.Context, email, companyID string) (Invitation, error) {
	var company any // NULL: any company
	if companyID != "" {
		if !isUUID(companyID) {
			return Invitation{}, errNotFound
		}
		company = companyID
	}
	if !sqlText(email) {
		return Invitation{}, errNotFound
	}
	var inv Invitation
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		return scanInvitation(c.QueryRow(ctx, `SELECT `+invitationColumns+`
			FROM company_invitations i JOIN companies c ON c.id = i.company_id
			WHERE lower(i.email) = lower($1) AND `+invitationOpen+`
				AND ($2::uuid IS NULL OR i.company_id = $2::uuid) AND coalesce(c.is_active, false)
			ORDER BY i.created_at DESC, i.id DESC LIMIT 1`, email, company), &inv)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Invitation{}, errNotFound
	}
	if err != nil {
		return Invitation{}, fmt.Errorf("open invitation of %s: %w", email, err)
	}
	return inv, nil
}

// CompanyForDomain returns the active company registered for domain.
func (s *pgStore) CompanyForDomain(ctx context.Context, domain string) (string, error) {
	if !sqlText(domain) {
		return "", errNotFound
	}
	var id string
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT d.company_id::text
			FROM company_domains d JOIN companies c ON c.id = d.company_id
			WHERE d.domain = lower($1) AND coalesce(c.is_active, false)`, strings.ToLower(domain)).Scan(&id)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return "", errNotFound
	}
	if err != nil {
		return "", fmt.Errorf("company for domain %s: %w", domain, err)
	}
	return id, nil
}

// JoinCompany moves the user, accepting the invitation when there is one, in one
// transaction: the invitation row is locked, so two requests cannot both accept it, and an
// invitation revoked meanwhile is never accepted. Not retried on another connection once
// sent: a commit whose answer was lost would otherwise report the invitation closed.
func (s *pgStore) JoinCompany(ctx context.Context, userID, companyID, invitationID string) (User, error) {
	if !isUUID(userID) || !isUUID(companyID) {
		return User{}, errNotFound
	}
	if invitationID != "" && !isUUID(invitationID) {
		return User{}, errInvitationClosed // no such invitation can be open
	}
	var u User
	err := s.withConn(ctx, false, func(ctx context.Context, c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			return joinCompanyTx(ctx, tx, userID, companyID, invitationID, &u)
		})
	})
	switch {
	case errors.Is(err, errNotFound) || errors.Is(err, errInvitationClosed):
		return User{}, err
	case err != nil:
		return User{}, fmt.Errorf("user %s join company %s (invitation %q): %w", userID, companyID, invitationID, err)
	}
	return u, nil
}

func joinCompanyTx(ctx context.Context, tx pgx.Tx, userID, companyID, invitationID string, u *User) error {
	// The user first: the row is updated below anyway, and its email decides the invitation.
	var email string
	err := tx.QueryRow(ctx, "SELECT email FROM users WHERE id = $1 FOR UPDATE", userID).Scan(&email)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNotFound
	}
	if err != nil {
		return fmt.Errorf("lock user: %w", err)
	}
	var role any // NULL keeps the user's role
	if invitationID != "" {
		var invRole string
		var usable bool
		err := tx.QueryRow(ctx, `SELECT i.role, `+invitationOpen+` AND i.company_id = $2 AND lower(i.email) = lower($3)
			FROM company_invitations i WHERE i.id = $1 FOR UPDATE`, invitationID, companyID, email).Scan(&invRole, &usable)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && !usable {
			return errInvitationClosed
		}
		if err != nil {
			return fmt.Errorf("lock invitation: %w", err)
		}
		if _, err := tx.Exec(ctx, "UPDATE company_invitations SET accepted_at = now() WHERE id = $1", invitationID); err != nil {
			return fmt.Errorf("accept invitation: %w", err)
		}
		role = invRole
	}
	// FOR SHARE holds off a concurrent deactivation until the user is in.
	var active bool
	err = tx.QueryRow(ctx, "SELECT coalesce(is_active, false) FROM companies WHERE id = $1 FOR SHARE", companyID).Scan(&active)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && !active {
		return errNotFound
	}
	if err != nil {
		return fmt.Errorf("lock company: %w", err)
	}
	err = scanUser(tx.QueryRow(ctx, `WITH u AS (
			UPDATE users SET company_id = $2, role = coalesce($3::text, role), updated_at = now()
			WHERE id = $1 RETURNING *)
		SELECT `+userColumns+` FROM u LEFT JOIN companies c ON c.id = u.company_id`, userID, companyID, role), u)
	if err != nil {
		return fmt.Errorf("move user: %w", err)
	}
	return nil
}

// schemaParts lists what the gateway needs, as CheckSchema names it when missing. to_regclass
// resolves names through search_path, as the gateway's queries do.
const schemaPartsSQL = `SELECT what FROM (VALUES
	(1, 'table companies', to_regclass('companies') IS NOT NULL),
	(2, 'table users', to_regclass('users') IS NOT NULL),
	(3, 'column users.tokens_valid_after', EXISTS (SELECT 1 FROM pg_attribute
		WHERE attrelid = to_regclass('users') AND attname = 'tokens_valid_after' AND NOT attisdropped)),
	(4, 'table company_invitations', to_regclass('company_invitations') IS NOT NULL),
	(5, 'table company_domains', to_regclass('company_domains') IS NOT NULL),
	(6, 'trigger atenex_gateway_users_changed', EXISTS (SELECT 1 FROM pg_trigger
		WHERE tgrelid = to_regclass('users') AND tgname = 'atenex_gateway_users_changed' AND tgenabled <> 'D')),
	(7, 'trigger atenex_gateway_users_deleted', EXISTS (SELECT 1 FROM pg_trigger
		WHERE tgrelid = to_regclass('users') AND tgname = 'atenex_gateway_users_deleted' AND tgenabled <> 'D')),
	(8, 'trigger atenex_gateway_companies_changed', EXISTS (SELECT 1 FROM pg_trigger
		WHERE tgrelid = to_regclass('companies') AND tgname = 'atenex_gateway_companies_changed' AND tgenabled <> 'D')),
	(9, 'trigger atenex_gateway_companies_deleted', EXISTS (SELECT 1 FROM pg_trigger
		WHERE tgrelid = to_regclass('companies') AND tgname = 'atenex_gateway_companies_deleted' AND tgenabled <> 'D'))
) AS parts(n, what, present) WHERE NOT present ORDER BY n`

// CheckSchema looks in the catalog, in one round trip, for every table, column and trigger
// the gateway relies on; a disabled trigger counts as missing, since replicas would then
// miss changes silently.
func (s *pgStore) CheckSchema(ctx context.Context) error {
	var missing []string
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, schemaPartsSQL)
		if err != nil {
			return err
		}
		missing, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return fmt.Errorf("check schema: %w", err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", errSchemaNotMigrated, strings.Join(missing, ", "))
	}
	return nil
}

// invitationRole returns the stored role of a new invitation ("" means "user"): only the
// two roles the gateway knows may be handed out.
func invitationRole(role string) (string, error) {
	switch role {
	case "":
		return "user", nil
	case "user", "admin":
		return role, nil
	}
	return "", fmt.Errorf("role %q is neither user nor admin: %w", role, errInvalidInput)
}

// checkNewInvitation validates inv for CreateInvitation and returns its stored role.
func checkNewInvitation(inv Invitation) (string, error) {
	if !isUUID(inv.CompanyID) {
		return "", fmt.Errorf("company %q: %w", inv.CompanyID, errNotFound)
	}
	if inv.CreatedBy != "" && !isUUID(inv.CreatedBy) {
		return "", fmt.Errorf("creator %q: %w", inv.CreatedBy, errNotFound)
	}
	if inv.Email == "" || !sqlText(inv.Email) {
		return "", fmt.Errorf("email %q: %w", inv.Email, errInvalidInput)
	}
	if inv.ExpiresAt.IsZero() {
		return "", fmt.Errorf("no expiry: %w", errInvalidInput)
	}
	return invitationRole(inv.Role)
}

// CreateInvitation stores an invitation of inv.Email (as given; matched ignoring case) to
// inv.CompanyID until inv.ExpiresAt. The company need not be active: the invitation opens
// when it is.
func (s *pgStore) CreateInvitation(ctx context.Context, inv Invitation) (Invitation, error) {
	role, err := checkNewInvitation(inv)
	if err != nil {
		return Invitation{}, fmt.Errorf("create invitation of %s: %w", inv.Email, err)
	}
	var createdBy any // NULL for ""
	if inv.CreatedBy != "" {
		createdBy = inv.CreatedBy
	}
	var out Invitation
	err = s.withConn(ctx, false, func(ctx context.Context, c *pgx.Conn) error {
		return scanInvitation(c.QueryRow(ctx, `INSERT INTO company_invitations AS i
			(company_id, email, role, created_by, expires_at) VALUES ($1, $2, $3, $4, $5)
			RETURNING `+invitationColumns, inv.CompanyID, inv.Email, role, createdBy, inv.ExpiresAt), &out)
	})
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return out, nil
	case errors.As(err, &pgErr) && pgErr.Code == "23503" && strings.Contains(pgErr.ConstraintName, "created_by"):
		return Invitation{}, fmt.Errorf("create invitation of %s: creator %s: %w", inv.Email, inv.CreatedBy, errNotFound)
	case isPgCode(err, "23503"): // foreign_key_violation: no such company
		return Invitation{}, fmt.Errorf("create invitation of %s: company %s: %w", inv.Email, inv.CompanyID, errNotFound)
	default:
		return Invitation{}, fmt.Errorf("create invitation of %s to company %s: %w", inv.Email, inv.CompanyID, err)
	}
}

// ListOpenInvitations returns the company's open invitations, newest first; errNotFound
// when the company does not exist.
func (s *pgStore) ListOpenInvitations(ctx context.Context, companyID string) ([]Invitation, error) {
	if !isUUID(companyID) {
		return nil, errNotFound
	}
	var invs []Invitation
	var exists bool
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT `+invitationColumns+` FROM company_invitations i
			WHERE i.company_id = $1 AND `+invitationOpen+` ORDER BY i.created_at DESC, i.id DESC`, companyID)
		if err != nil {
			return err
		}
		invs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Invitation, error) {
			var inv Invitation
			err := scanInvitation(row, &inv)
			return inv, err
		})
		if err != nil || len(invs) > 0 {
			exists = true
			return err
		}
		// Only an empty list needs telling "no such company" from "nothing open".
		return c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM companies WHERE id = $1)", companyID).Scan(&exists)
	})
	if err != nil {
		return nil, fmt.Errorf("open invitations of company %s: %w", companyID, err)
	}
	if !exists {
		return nil, errNotFound
	}
	return invs, nil
}

// RevokeInvitation closes an open invitation of the company.
func (s *pgStore) RevokeInvitation(ctx context.Context, companyID, invitationID string) error {
	if !isUUID(companyID) || !isUUID(invitationID) {
		return errNotFound
	}
	var tag pgconn.CommandTag
	err := s.withConn(ctx, false, func(ctx context.Context, c *pgx.Conn) (err error) {
		tag, err = c.Exec(ctx, `UPDATE company_invitations i SET revoked_at = now()
			WHERE i.id = $1 AND i.company_id = $2 AND `+invitationOpen, invitationID, companyID)
		return err
	})
	if err != nil {
		return fmt.Errorf("revoke invitation %s of company %s: %w", invitationID, companyID, err)
	}
	if tag.RowsAffected() == 0 {
		return errNotFound
	}
	return nil
}

// AddDomain registers domain (stored in lower case) for the company. One statement decides
// every case without a race: no row when the company does not exist, and on a conflict the
// no-op update locks and returns the row that holds the domain, even one committed by a
// concurrent AddDomain after this statement began.
func (s *pgStore) AddDomain(ctx context.Context, domain, companyID string) error {
	if !isUUID(companyID) {
		return errNotFound
	}
	if domain == "" || !sqlText(domain) {
		return fmt.Errorf("add domain %q: %w", domain, errInvalidInput)
	}
	domain = strings.ToLower(domain)
	var holder string
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `INSERT INTO company_domains (domain, company_id)
			SELECT lower($1), id FROM companies WHERE id = $2
			ON CONFLICT (domain) DO UPDATE SET company_id = company_domains.company_id
			RETURNING company_id::text`, domain, companyID).Scan(&holder)
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows) || isPgCode(err, "23503"): // no such company (or deleted meanwhile)
		return errNotFound
	case err != nil:
		return fmt.Errorf("add domain %s to company %s: %w", domain, companyID, err)
	case holder != strings.ToLower(companyID):
		return fmt.Errorf("add domain %s to company %s: registered to company %s: %w", domain, companyID, holder, errDuplicate)
	}
	return nil
}

// RemoveDomain unregisters domain from the company.
func (s *pgStore) RemoveDomain(ctx context.Context, domain, companyID string) error {
	if !isUUID(companyID) || !sqlText(domain) {
		return errNotFound
	}
	var tag pgconn.CommandTag
	// Not retried once sent: a delete whose answer was lost would then report errNotFound.
	err := s.withConn(ctx, false, func(ctx context.Context, c *pgx.Conn) (err error) {
		tag, err = c.Exec(ctx, "DELETE FROM company_domains WHERE domain = lower($1) AND company_id = $2",
			strings.ToLower(domain), companyID)
		return err
	})
	if err != nil {
		return fmt.Errorf("remove domain %s of company %s: %w", domain, companyID, err)
	}
	if tag.RowsAffected() == 0 {
		return errNotFound
	}
	return nil
}

// watchChannel is the channel schema.sql's triggers notify.
const watchChannel = "atenex_gateway_changes"

// listenerAppName tells the listener connection apart in pg_stat_activity.
const listenerAppName = "atenex-api-gateway-listener"

const (
	// defaultWatchIdle: a quiet listener pings this often; a hanging server is noticed
	// within defaultWatchIdle plus the store's deadline. Meanwhile the cache TTL bounds
	// staleness, as during any outage.
	defaultWatchIdle = 5 * time.Second
	// The first reconnection is quick (a restarted server or a killed backend is usually
	// back at once); later ones slow down to a few a second per replica at most.
	watchMinBackoff = 100 * time.Millisecond
	watchMaxBackoff = 2 * time.Second
)

// Watch keeps one connection of its own (a pooled one would be handed to queries, and
// LISTEN belongs to a session) listening on watchChannel until ctx ends.
func (s *pgStore) Watch(ctx context.Context, hooks WatchHooks) {
	cfg := s.pool.Config().ConnConfig // already a copy
	cfg.ConnectTimeout = s.timeout
	cfg.RuntimeParams["application_name"] = listenerAppName
	backoff := watchMinBackoff
	lost := false // whether Lost was the last hook called
	for {
		var since time.Time // when notifications began to flow, zero when they never did
		err := s.listen(ctx, cfg, hooks, func() {
			since, lost = time.Now(), false
			if hooks.Listening != nil {
				hooks.Listening()
			}
		})
		if ctx.Err() != nil {
			return
		}
		if !lost {
			lost = true
			if hooks.Lost != nil {
				hooks.Lost(err)
			}
		}
		// A connection that served a while starts over quickly; one that keeps failing
		// right after connecting does not turn into a loop.
		if !since.IsZero() && time.Since(since) >= watchMaxBackoff {
			backoff = watchMinBackoff
		}
		wait := time.NewTimer(backoff - backoff/4 + mathrand.N(backoff/2)) // jitter: replicas do not reconnect in step
		select {
		case <-ctx.Done():
			wait.Stop()
			return
		case <-wait.C:
		}
		backoff = min(2*backoff, watchMaxBackoff)
	}
}

// listen runs one connection: connect, LISTEN, call listening, deliver notifications. It
// returns why it stopped (nil when ctx ended).
func (s *pgStore) listen(ctx context.Context, cfg *pgx.ConnConfig, hooks WatchHooks, listening func()) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("watch: connect: %w", err)
	}
	defer func() {
		// Bounded: a hanging server must not hold the reconnection up.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		conn.Close(cctx)
		cancel()
	}()
	lctx, cancel := context.WithTimeout(ctx, s.timeout)
	_, err = conn.Exec(lctx, "LISTEN "+watchChannel)
	cancel()
	if err != nil {
		return fmt.Errorf("watch: listen: %w", err)
	}
	listening()
	for {
		wctx, cancel := context.WithTimeout(ctx, s.watchIdle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			if change, ok := parseStoreChange(n.Channel, n.Payload); ok && hooks.Changed != nil {
				hooks.Changed(change)
			}
		case ctx.Err() != nil:
			return nil
		case wctx.Err() != nil && !conn.IsClosed():
			// Quiet for watchIdle: a timed-out read leaves the connection usable, so ask
			// the server whether it is still there.
			pctx, cancel := context.WithTimeout(ctx, s.timeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watch: ping: %w", err)
			}
		default:
			return fmt.Errorf("watch: wait for notification: %w", err)
		}
	}
}

// parseStoreChange reads a payload of schema.sql's triggers: "users:<uuid>" or
// "companies:<uuid>". Anything else (another sender on the channel) is ignored.
func parseStoreChange(channel, payload string) (StoreChange, bool) {
	table, id, ok := strings.Cut(payload, ":")
	if channel != watchChannel || !ok || table != "users" && table != "companies" || !isUUID(id) {
		return StoreChange{}, false
	}
	return StoreChange{Table: table, ID: strings.ToLower(id)}, true
}

// Stats reports the pool's connections, for metrics.
func (s *pgStore) Stats() PoolStats {
	st := s.pool.Stat()
	return PoolStats{Total: st.TotalConns(), Idle: st.IdleConns(), Acquired: st.AcquiredConns()}
}

// Close closes the pool, waiting for connections in use to be released.
func (s *pgStore) Close() { s.pool.Close() }

// isPgCode reports whether err is a PostgreSQL error with that SQLSTATE.
func isPgCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// memoryStore is the -dev Store: the same contract as pgStore, held in memory.
type memoryStore struct {
	mu          sync.RWMutex
	users       map[string]*memoryUser       // by id
	byEmail     map[string]string            // lower(email) → id
	companies   map[string]*Company          // by id
	invitations map[string]*memoryInvitation // by id
	invSeq      uint64                       // orders invitations created in the same instant
	domains     map[string]string            // lower(domain) → company id

	watchMu  sync.Mutex
	watchers map[*WatchHooks]struct{}
}

type memoryUser struct {
	User                            // CompanyActive is filled in when read, from companies
	createdAt, updatedAt, lastLogin time.Time
}

type memoryInvitation struct {
	Invitation
	seq uint64
}

func newMemoryStore() *memoryStore {
	return &memoryStore{
		users:       make(map[string]*memoryUser),
		byEmail:     make(map[string]string),
		companies:   make(map[string]*Company),
		invitations: make(map[string]*memoryInvitation),
		domains:     make(map[string]string),
		watchers:    make(map[*WatchHooks]struct{}),
	}
}

// UUIDs arrive in either case, as PostgreSQL accepts them; keys are lower-case.
func memoryKey(id string) string { return strings.ToLower(id) }

// memoryTime keeps what PostgreSQL's timestamptz keeps: microseconds, no monotonic reading.
func memoryTime(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// userLocked is u as the store returns it; m.mu must be held.
func (m *memoryStore) userLocked(u *memoryUser) User {
	out := u.User
	c, ok := m.companies[u.CompanyID]
	out.CompanyActive = ok && u.CompanyID != "" && c.IsActive
	return out
}

func (m *memoryStore) UserByID(ctx context.Context, id string) (User, error) {
	if err := ctx.Err(); err != nil {
		return User{}, fmt.Errorf("user by id %s: %w", id, err)
	}
	if !isUUID(id) {
		return User{}, errNotFound
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	u, ok := m.users[memoryKey(id)]
	if !ok {
		return User{}, errNotFound
	}
	return m.userLocked(u), nil
}

func (m *memoryStore) UserByEmail(ctx context.Context, email string) (User, error) {
	if err := ctx.Err(); err != nil {
		return User{}, fmt.Errorf("user by email %s: %w", email, err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	id, ok := m.byEmail[strings.ToLower(email)]
	if !ok {
		return User{}, errNotFound
	}
	return m.userLocked(m.users[id]), nil
}

func (m *memoryStore) SetUserCompany(ctx context.Context, userID, companyID string) error {
	if companyID != "" && !isUUID(companyID) {
		return errNotFound
	}
	companyID = memoryKey(companyID)
	changed := false
	err := m.updateByID(ctx, "set company "+companyID, userID, func(u *memoryUser) error {
		if _, ok := m.companies[companyID]; companyID != "" && !ok {
			return errNotFound
		}
		changed = u.CompanyID != companyID
		u.CompanyID, u.updatedAt = companyID, time.Now()
		return nil
	})
	if changed {
		m.notify("users", memoryKey(userID))
	}
	return err
}

func (m *memoryStore) TouchLastLogin(ctx context.Context, userID string) error {
	// Not notified, as the database's trigger ignores last_login: no cache holds it.
	return m.updateByID(ctx, "touch last login", userID, func(u *memoryUser) error {
		u.lastLogin = time.Now()
		return nil
	})
}

// updateByID applies update to the user with id under the write lock; errNotFound when
// there is none.
func (m *memoryStore) updateByID(ctx context.Context, what, id string, update func(*memoryUser) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s of user %s: %w", what, id, err)
	}
	if !isUUID(id) {
		return errNotFound
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[memoryKey(id)]
	if !ok {
		return errNotFound
	}
	return update(u)
}

func (m *memoryStore) CompanyActive(ctx context.Context, id string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("company %s active: %w", id, err)
	}
	if !isUUID(id) {
		return false, nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	c, ok := m.companies[memoryKey(id)]
	return ok && c.IsActive, nil
}

func (m *memoryStore) Ping(ctx context.Context) error { return nil }

func (m *memoryStore) CreateCompany(ctx context.Context, name string) (Company, error) {
	if err := ctx.Err(); err != nil {
		return Company{}, fmt.Errorf("create company %q: %w", name, err)
	}
	c := Company{ID: newUUID(), Name: name, IsActive: true, CreatedAt: memoryTime(time.Now())}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.companies[c.ID] = &c
	return c, nil
}

func (m *memoryStore) CreateUser(ctx context.Context, nu NewUser) (User, error) {
	if err := ctx.Err(); err != nil {
		return User{}, fmt.Errorf("create user %s: %w", nu.Email, err)
	}
	if nu.CompanyID != "" && !isUUID(nu.CompanyID) {
		return User{}, fmt.Errorf("create user %s: company %q: %w", nu.Email, nu.CompanyID, errNotFound)
	}
	u := User{
		ID:             newUUID(),
		CompanyID:      memoryKey(nu.CompanyID),
		Email:          nu.Email,
		HashedPassword: nu.HashedPassword,
		FullName:       nu.FullName,
		Role:           nu.Role,
		IsActive:       true,
	}
	if u.Role == "" {
		u.Role = "user"
	}
	key := strings.ToLower(nu.Email)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byEmail[key]; ok {
		return User{}, fmt.Errorf("create user %s: %w", nu.Email, errDuplicate)
	}
	if _, ok := m.companies[u.CompanyID]; u.CompanyID != "" && !ok {
		return User{}, fmt.Errorf("create user %s: company %s: %w", nu.Email, nu.CompanyID, errNotFound)
	}
	now := time.Now()
	mu := &memoryUser{User: u, createdAt: memoryTime(now), updatedAt: now}
	m.users[u.ID] = mu
	m.byEmail[key] = u.ID
	return m.userLocked(mu), nil
}

// revokeNow is tokens_valid_after as the database stores it: now, in whole seconds.
func revokeNow() time.Time { return time.Now().Truncate(time.Second) }

func (m *memoryStore) SetPassword(ctx context.Context, email, hashedPassword string) error {
	return m.updateByEmail(ctx, "set password", email, func(u *memoryUser) {
		u.HashedPassword, u.TokensValidAfter = hashedPassword, revokeNow()
	})
}

func (m *memoryStore) SetActive(ctx context.Context, email string, active bool) error {
	return m.updateByEmail(ctx, "set active", email, func(u *memoryUser) {
		u.IsActive = active
		if !active {
			u.TokensValidAfter = revokeNow()
		}
	})
}

func (m *memoryStore) updateByEmail(ctx context.Context, what, email string, update func(*memoryUser)) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s of user %s: %w", what, email, err)
	}
	m.mu.Lock()
	id, ok := m.byEmail[strings.ToLower(email)]
	changed := false
	if ok {
		u := m.users[id]
		before := u.User
		update(u)
		u.updatedAt = time.Now()
		changed = u.User != before
	}
	m.mu.Unlock()
	if !ok {
		return errNotFound
	}
	if changed {
		m.notify("users", id)
	}
	return nil
}

// SetCompanyActive activates or deactivates a company.
func (m *memoryStore) SetCompanyActive(ctx context.Context, id string, active bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("set active of company %s: %w", id, err)
	}
	if !isUUID(id) {
		return errNotFound
	}
	id = memoryKey(id)
	m.mu.Lock()
	c, ok := m.companies[id]
	changed := ok && c.IsActive != active
	if ok {
		c.IsActive = active
	}
	m.mu.Unlock()
	if !ok {
		return errNotFound
	}
	if changed {
		m.notify("companies", id)
	}
	return nil
}

func (m *memoryStore) RevokeSessions(ctx context.Context, userID string) (time.Time, error) {
	var validAfter time.Time
	changed := false
	err := m.updateByID(ctx, "revoke sessions", userID, func(u *memoryUser) error {
		validAfter = revokeNow()
		changed = !u.TokensValidAfter.Equal(validAfter)
		u.TokensValidAfter, u.updatedAt = validAfter, time.Now()
		return nil
	})
	if err != nil {
		return time.Time{}, err
	}
	if changed {
		m.notify("users", memoryKey(userID))
	}
	return validAfter, nil
}

// open reports whether inv is open at now; m.mu must be held.
func (inv *memoryInvitation) open(now time.Time) bool {
	return inv.AcceptedAt.IsZero() && inv.RevokedAt.IsZero() && inv.ExpiresAt.After(now)
}

// newer orders invitations newest first, as ORDER BY created_at DESC does.
func (inv *memoryInvitation) newer(than *memoryInvitation) bool {
	if !inv.CreatedAt.Equal(than.CreatedAt) {
		return inv.CreatedAt.After(than.CreatedAt)
	}
	return inv.seq > than.seq
}

func (m *memoryStore) OpenInvitation(ctx context.Context, email, companyID string) (Invitation, error) {
	if err := ctx.Err(); err != nil {
		return Invitation{}, fmt.Errorf("open invitation of %s: %w", email, err)
	}
	if companyID != "" && !isUUID(companyID) {
		return Invitation{}, errNotFound
	}
	companyID, email = memoryKey(companyID), strings.ToLower(email)
	now := time.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	var best *memoryInvitation
	for _, inv := range m.invitations {
		if !inv.open(now) || strings.ToLower(inv.Email) != email || companyID != "" && inv.CompanyID != companyID {
			continue
		}
		if c := m.companies[inv.CompanyID]; c == nil || !c.IsActive {
			continue
		}
		if best == nil || inv.newer(best) {
			best = inv
		}
	}
	if best == nil {
		return Invitation{}, errNotFound
	}
	return best.Invitation, nil
}

func (m *memoryStore) CompanyForDomain(ctx context.Context, domain string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("company for domain %s: %w", domain, err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	id, ok := m.domains[strings.ToLower(domain)]
	if c := m.companies[id]; !ok || c == nil || !c.IsActive {
		return "", errNotFound
	}
	return id, nil
}

// JoinCompany checks and changes everything under one write lock: all or nothing, as the
// database's transaction.
func (m *memoryStore) JoinCompany(ctx context.Context, userID, companyID, invitationID string) (User, error) {
	if err := ctx.Err(); err != nil {
		return User{}, fmt.Errorf("user %s join company %s: %w", userID, companyID, err)
	}
	if !isUUID(userID) || !isUUID(companyID) {
		return User{}, errNotFound
	}
	if invitationID != "" && !isUUID(invitationID) {
		return User{}, errInvitationClosed
	}
	userID, companyID, invitationID = memoryKey(userID), memoryKey(companyID), memoryKey(invitationID)
	m.mu.Lock()
	before := m.users[userID]
	var old User
	if before != nil {
		old = before.User
	}
	u, err := m.joinLocked(userID, companyID, invitationID)
	m.mu.Unlock()
	if err != nil {
		return User{}, err
	}
	if u.CompanyID != old.CompanyID || u.Role != old.Role {
		m.notify("users", userID)
	}
	return u, nil
}

// joinLocked checks in the order pgStore does: user, invitation, company.
func (m *memoryStore) joinLocked(userID, companyID, invitationID string) (User, error) {
	u, ok := m.users[userID]
	if !ok {
		return User{}, errNotFound
	}
	var inv *memoryInvitation
	if invitationID != "" {
		inv = m.invitations[invitationID]
		if inv == nil || !inv.open(time.Now()) || inv.CompanyID != companyID ||
			strings.ToLower(inv.Email) != strings.ToLower(u.Email) {
			return User{}, errInvitationClosed
		}
	}
	if c, ok := m.companies[companyID]; !ok || !c.IsActive {
		return User{}, errNotFound
	}
	now := time.Now()
	if inv != nil {
		inv.AcceptedAt = memoryTime(now)
		u.Role = inv.Role
	}
	u.CompanyID, u.updatedAt = companyID, now
	return m.userLocked(u), nil
}

func (m *memoryStore) CheckSchema(ctx context.Context) error { return nil }

// Watch reports every change from the goroutine that made it, after the store's lock is
// released, so a hook may call the store.
func (m *memoryStore) Watch(ctx context.Context, hooks WatchHooks) {
	h := &hooks
	m.watchMu.Lock()
	if m.watchers == nil {
		m.watchers = make(map[*WatchHooks]struct{})
	}
	m.watchers[h] = struct{}{}
	m.watchMu.Unlock()
	defer func() {
		m.watchMu.Lock()
		delete(m.watchers, h)
		m.watchMu.Unlock()
	}()
	// Registered first: a change made meanwhile is reported, never lost.
	if hooks.Listening != nil {
		hooks.Listening()
	}
	<-ctx.Done()
}

// notify tells every watcher that the row changed, as the database's triggers do: only when a
// value changed. m.mu must not be held.
func (m *memoryStore) notify(table, id string) {
	m.watchMu.Lock()
	changed := make([]func(StoreChange), 0, len(m.watchers))
	for h := range m.watchers {
		if h.Changed != nil {
			changed = append(changed, h.Changed)
		}
	}
	m.watchMu.Unlock()
	for _, f := range changed {
		f(StoreChange{Table: table, ID: id})
	}
}

func (m *memoryStore) CreateInvitation(ctx context.Context, inv Invitation) (Invitation, error) {
	if err := ctx.Err(); err != nil {
		return Invitation{}, fmt.Errorf("create invitation of %s: %w", inv.Email, err)
	}
	role, err := checkNewInvitation(inv)
	if err != nil {
		return Invitation{}, fmt.Errorf("create invitation of %s: %w", inv.Email, err)
	}
	stored := Invitation{
		ID:        newUUID(),
		CompanyID: memoryKey(inv.CompanyID),
		Email:     inv.Email,
		Role:      role,
		CreatedBy: memoryKey(inv.CreatedBy),
		CreatedAt: memoryTime(time.Now()),
		ExpiresAt: memoryTime(inv.ExpiresAt),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.companies[stored.CompanyID]; !ok {
		return Invitation{}, fmt.Errorf("create invitation of %s: company %s: %w", inv.Email, inv.CompanyID, errNotFound)
	}
	if _, ok := m.users[stored.CreatedBy]; stored.CreatedBy != "" && !ok {
		return Invitation{}, fmt.Errorf("create invitation of %s: creator %s: %w", inv.Email, inv.CreatedBy, errNotFound)
	}
	m.invSeq++
	m.invitations[stored.ID] = &memoryInvitation{Invitation: stored, seq: m.invSeq}
	return stored, nil
}

func (m *memoryStore) ListOpenInvitations(ctx context.Context, companyID string) ([]Invitation, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open invitations of company %s: %w", companyID, err)
	}
	if !isUUID(companyID) {
		return nil, errNotFound
	}
	companyID = memoryKey(companyID)
	now := time.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	if _, ok := m.companies[companyID]; !ok {
		return nil, errNotFound
	}
	var open []*memoryInvitation
	for _, inv := range m.invitations {
		if inv.CompanyID == companyID && inv.open(now) {
			open = append(open, inv)
		}
	}
	slices.SortFunc(open, func(a, b *memoryInvitation) int {
		if a.newer(b) {
			return -1
		}
		return 1
	})
	invs := make([]Invitation, len(open))
	for i, inv := range open {
		invs[i] = inv.Invitation
	}
	return invs, nil
}

func (m *memoryStore) RevokeInvitation(ctx context.Context, companyID, invitationID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("revoke invitation %s of company %s: %w", invitationID, companyID, err)
	}
	if !isUUID(companyID) || !isUUID(invitationID) {
		return errNotFound
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	inv := m.invitations[memoryKey(invitationID)]
	if inv == nil || inv.CompanyID != memoryKey(companyID) || !inv.open(now) {
		return errNotFound
	}
	inv.RevokedAt = memoryTime(now)
	return nil
}

func (m *memoryStore) AddDomain(ctx context.Context, domain, companyID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add domain %s to company %s: %w", domain, companyID, err)
	}
	if !isUUID(companyID) {
		return errNotFound
	}
	if domain == "" || !sqlText(domain) {
		return fmt.Errorf("add domain %q: %w", domain, errInvalidInput)
	}
	domain, companyID = strings.ToLower(domain), memoryKey(companyID)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.companies[companyID]; !ok {
		return errNotFound
	}
	if holder, ok := m.domains[domain]; ok && holder != companyID {
		return fmt.Errorf("add domain %s to company %s: registered to company %s: %w", domain, companyID, holder, errDuplicate)
	}
	m.domains[domain] = companyID
	return nil
}

func (m *memoryStore) RemoveDomain(ctx context.Context, domain, companyID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove domain %s of company %s: %w", domain, companyID, err)
	}
	if !isUUID(companyID) {
		return errNotFound
	}
	domain, companyID = strings.ToLower(domain), memoryKey(companyID)
	m.mu.Lock()
	defer m.mu.Unlock()
	if holder, ok := m.domains[domain]; !ok || holder != companyID {
		return errNotFound
	}
	delete(m.domains, domain)
	return nil
}

func (m *memoryStore) Stats() PoolStats { return PoolStats{} }

func (m *memoryStore) Close() {}

// newUUID returns a random (version 4) UUID in canonical lower-case form.
func newUUID() string {
	var b [16]byte
	// Never fails: crypto/rand aborts the program rather than return short.
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	const hexDigits = "0123456789abcdef"
	var out [36]byte
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hexDigits[c>>4], hexDigits[c&0x0f]
		j += 2
	}
	return string(out[:])
}

// Administration (SPEC §7): what the administration API reads and writes beyond the rest of
// Store. Both stores implement it; the contract tests are in store_admin_test.go.

// Account is a user as the administration API shows it: never the password hash.
type Account struct {
	ID        string
	Email     string
	FullName  string // "" when NULL
	CompanyID string // "" when NULL
	Role      string
	IsActive  bool
	CreatedAt time.Time // zero when NULL
}

// AccountChange is a partial update of a user; nil fields are left as they are.
type AccountChange struct {
	FullName  *string // "" stores NULL
	Role      *string // "user" or "admin"
	CompanyID *string // "" takes the user out of their company; otherwise an active company
	IsActive  *bool   // false also revokes every token issued before now, as SetActive does
}

// CompanyChange is a partial update of a company; nil fields are left as they are.
type CompanyChange struct {
	Name     *string
	IsActive *bool
}

// CompanyUsers is an active company and how many active users it has.
type CompanyUsers struct {
	CompanyID string
	Name      string
	Users     int
}

// PlatformStats is the administration dashboard's overview: every active company (also those
// without users), ordered as ActiveCompanies orders them.
type PlatformStats struct {
	Companies []CompanyUsers
}

// errCompanyUnavailable is returned (wrapped) by CreateAccount and UpdateAccount when the
// company the user should be in does not exist or is inactive; nothing is written then.
var errCompanyUnavailable = errors.New("company does not exist or is inactive")

// AdminStore is the part of Store the administration API uses. Every write is one statement
// or one transaction: a request that fails leaves nothing half-written.
type AdminStore interface {
	PlatformStats(ctx context.Context) (PlatformStats, error)
	// ActiveCompanies returns the active companies by name (case-insensitively, then byte
	// order, then id, so both stores agree whatever the database's collation).
	ActiveCompanies(ctx context.Context) ([]Company, error)
	CompanyByID(ctx context.Context, id string) (Company, error) // errNotFound
	// UpdateCompany applies ch (errNotFound: no such company; errInvalidInput: empty name).
	UpdateCompany(ctx context.Context, id string, ch CompanyChange) (Company, error)
	// CreateAccount inserts an active user with nu's company, which must be active when set:
	// errDuplicate when the email is taken in any letter case, errCompanyUnavailable.
	CreateAccount(ctx context.Context, nu NewUser) (Account, error)
	AccountByID(ctx context.Context, id string) (Account, error) // errNotFound
	// AccountsByCompany returns the company's users, active or not, ordered by email (lower
	// case), limit from offset; errNotFound when the company does not exist.
	AccountsByCompany(ctx context.Context, companyID string, limit, offset int) ([]Account, error)
	// UpdateAccount applies ch in one transaction: errNotFound (no such user),
	// errCompanyUnavailable, errInvalidInput (a role other than user or admin, bad text).
	UpdateAccount(ctx context.Context, id string, ch AccountChange) (Account, error)
}

// knownRole reports whether the administration API may hand out role.
func knownRole(role string) bool { return role == "user" || role == "admin" }

// checkAccountChange refuses values no database row should get.
func checkAccountChange(ch AccountChange) error {
	switch {
	case ch.Role != nil && !knownRole(*ch.Role):
		return fmt.Errorf("role %q is neither user nor admin: %w", *ch.Role, errInvalidInput)
	case ch.FullName != nil && !sqlText(*ch.FullName):
		return fmt.Errorf("full name: %w", errInvalidInput)
	case ch.CompanyID != nil && *ch.CompanyID != "" && !isUUID(*ch.CompanyID):
		return fmt.Errorf("company %q: %w", *ch.CompanyID, errCompanyUnavailable)
	}
	return nil
}

// checkNewAccount refuses what CreateAccount must not store.
func checkNewAccount(nu NewUser) error {
	switch {
	case nu.Email == "" || !sqlText(nu.Email) || !sqlText(nu.FullName) || !sqlText(nu.HashedPassword):
		return fmt.Errorf("email, name or hash: %w", errInvalidInput)
	case nu.Role != "" && !knownRole(nu.Role):
		return fmt.Errorf("role %q is neither user nor admin: %w", nu.Role, errInvalidInput)
	case nu.CompanyID != "" && !isUUID(nu.CompanyID):
		return fmt.Errorf("company %q: %w", nu.CompanyID, errCompanyUnavailable)
	}
	return nil
}

// companyColumns is every Company field of companies c, read by scanCompany.
const companyColumns = `c.id::text, c.name, coalesce(c.is_active, false), c.created_at`

// companyOrder is ActiveCompanies' order; COLLATE "C" makes it the same as the memory
// store's byte order whatever the database's locale.
const companyOrder = ` ORDER BY lower(c.name) COLLATE "C", c.name COLLATE "C", c.id`

func scanCompany(row pgx.Row, co *Company) error {
	var created pgtype.Timestamptz
	if err := row.Scan(&co.ID, &co.Name, &co.IsActive, &created); err != nil {
		return err
	}
	co.CreatedAt = pgTime(created)
	return nil
}

// accountColumns is every Account field of users u, NULLs mapped as Account documents them.
// Every column is coalesced, so that a LEFT JOIN that found no row scans too (ID "").
const accountColumns = `coalesce(u.id::text, ''), coalesce(u.email, ''), coalesce(u.full_name, ''),
	coalesce(u.company_id::text, ''), coalesce(u.role, 'user'), coalesce(u.is_active, false), u.created_at`

func scanAccount(row pgx.Row, a *Account) error {
	var created pgtype.Timestamptz
	if err := row.Scan(&a.ID, &a.Email, &a.FullName, &a.CompanyID, &a.Role, &a.IsActive, &created); err != nil {
		return err
	}
	a.CreatedAt = pgTime(created)
	return nil
}

func collectAccounts(rows pgx.Rows) ([]Account, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Account, error) {
		var a Account
		err := scanAccount(row, &a)
		return a, err
	})
}

// PlatformStats counts in one statement, so the numbers are of one moment.
func (s *pgStore) PlatformStats(ctx context.Context) (PlatformStats, error) {
	var stats PlatformStats
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT c.id::text, c.name, count(u.id)
			FROM companies c LEFT JOIN users u ON u.company_id = c.id AND coalesce(u.is_active, false)
			WHERE coalesce(c.is_active, false)
			GROUP BY c.id`+companyOrder)
		if err != nil {
			return err
		}
		stats.Companies, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (CompanyUsers, error) {
			var cu CompanyUsers
			err := row.Scan(&cu.CompanyID, &cu.Name, &cu.Users)
			return cu, err
		})
		return err
	})
	if err != nil {
		return PlatformStats{}, fmt.Errorf("platform stats: %w", err)
	}
	return stats, nil
}

func (s *pgStore) ActiveCompanies(ctx context.Context) ([]Company, error) {
	var companies []Company
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT `+companyColumns+` FROM companies c WHERE coalesce(c.is_active, false)`+companyOrder)
		if err != nil {
			return err
		}
		companies, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Company, error) {
			var co Company
			err := scanCompany(row, &co)
			return co, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("active companies: %w", err)
	}
	return companies, nil
}

func (s *pgStore) CompanyByID(ctx context.Context, id string) (Company, error) {
	if !isUUID(id) {
		return Company{}, errNotFound
	}
	var co Company
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		return scanCompany(c.QueryRow(ctx, `SELECT `+companyColumns+` FROM companies c WHERE c.id = $1`, id), &co)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Company{}, errNotFound
	}
	if err != nil {
		return Company{}, fmt.Errorf("company %s: %w", id, err)
	}
	return co, nil
}

// UpdateCompany changes what ch sets in one statement. Deactivating a company revokes
// nothing: its users are refused while it is inactive (SetCompanyActive).
func (s *pgStore) UpdateCompany(ctx context.Context, id string, ch CompanyChange) (Company, error) {
	if !isUUID(id) {
		return Company{}, errNotFound
	}
	var name any // NULL keeps the name
	if ch.Name != nil {
		if *ch.Name == "" || !sqlText(*ch.Name) {
			return Company{}, fmt.Errorf("update company %s: name: %w", id, errInvalidInput)
		}
		name = *ch.Name
	}
	var co Company
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		return scanCompany(c.QueryRow(ctx, `UPDATE companies c
			SET name = coalesce($2::text, c.name), is_active = coalesce($3::boolean, c.is_active)
			WHERE c.id = $1 RETURNING `+companyColumns, id, name, ch.IsActive), &co)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Company{}, errNotFound
	}
	if err != nil {
		return Company{}, fmt.Errorf("update company %s: %w", id, err)
	}
	return co, nil
}

// CreateAccount decides everything in one statement: whether the email is taken, whether
// the company is active, and the insert, so a refused request writes nothing. The unique
// index on lower(email) and the foreign key close the races the checks leave open.
func (s *pgStore) CreateAccount(ctx context.Context, nu NewUser) (Account, error) {
	if err := checkNewAccount(nu); err != nil {
		return Account{}, fmt.Errorf("create account %s: %w", nu.Email, err)
	}
	role := cmp.Or(nu.Role, "user")
	var company, fullName any // NULL for ""
	if nu.CompanyID != "" {
		company = nu.CompanyID
	}
	if nu.FullName != "" {
		fullName = nu.FullName
	}
	var taken, companyOK bool
	var a Account
	err := s.withConn(ctx, false, func(ctx context.Context, c *pgx.Conn) error {
		row := c.QueryRow(ctx, `WITH taken AS (
				SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1::text)) AS yes
			), company AS (
				SELECT $5::uuid IS NULL OR EXISTS (SELECT 1 FROM companies
					WHERE id = $5::uuid AND coalesce(is_active, false)) AS ok
			), u AS (
				INSERT INTO users (email, hashed_password, full_name, role, company_id)
				SELECT $1::text, $2::text, $3::text, $4::text, $5::uuid FROM taken, company
				WHERE NOT taken.yes AND company.ok
				RETURNING *)
			SELECT taken.yes, company.ok, `+accountColumns+` FROM taken CROSS JOIN company LEFT JOIN u ON true`,
			nu.Email, nu.HashedPassword, fullName, role, company)
		var created pgtype.Timestamptz
		if err := row.Scan(&taken, &companyOK, &a.ID, &a.Email, &a.FullName, &a.CompanyID, &a.Role, &a.IsActive, &created); err != nil {
			return err
		}
		a.CreatedAt = pgTime(created)
		return nil
	})
	switch {
	case err == nil && taken, isPgCode(err, "23505"): // unique_violation: created meanwhile
		return Account{}, fmt.Errorf("create account %s: %w", nu.Email, errDuplicate)
	case err == nil && !companyOK, isPgCode(err, "23503"): // foreign_key_violation: deleted meanwhile
		return Account{}, fmt.Errorf("create account %s: company %s: %w", nu.Email, nu.CompanyID, errCompanyUnavailable)
	case err != nil:
		return Account{}, fmt.Errorf("create account %s: %w", nu.Email, err)
	}
	return a, nil
}

func (s *pgStore) AccountByID(ctx context.Context, id string) (Account, error) {
	if !isUUID(id) {
		return Account{}, errNotFound
	}
	var a Account
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		return scanAccount(c.QueryRow(ctx, `SELECT `+accountColumns+` FROM users u WHERE u.id = $1`, id), &a)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, errNotFound
	}
	if err != nil {
		return Account{}, fmt.Errorf("account %s: %w", id, err)
	}
	return a, nil
}

// AccountsByCompany reads one page; only an empty page needs a second query to tell "no such
// company" from "no users there".
func (s *pgStore) AccountsByCompany(ctx context.Context, companyID string, limit, offset int) ([]Account, error) {
	if !isUUID(companyID) {
		return nil, errNotFound
	}
	if limit < 1 || offset < 0 {
		return nil, fmt.Errorf("accounts of company %s: limit %d, offset %d: %w", companyID, limit, offset, errInvalidInput)
	}
	var accounts []Account
	exists := true
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT `+accountColumns+` FROM users u WHERE u.company_id = $1
			ORDER BY lower(u.email) COLLATE "C", u.id LIMIT $2 OFFSET $3`, companyID, limit, offset)
		if err != nil {
			return err
		}
		if accounts, err = collectAccounts(rows); err != nil || len(accounts) > 0 {
			return err
		}
		return c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM companies WHERE id = $1)", companyID).Scan(&exists)
	})
	if err != nil {
		return nil, fmt.Errorf("accounts of company %s: %w", companyID, err)
	}
	if !exists {
		return nil, errNotFound
	}
	return accounts, nil
}

// UpdateAccount changes the user in one transaction. A new company is locked FOR SHARE, as
// JoinCompany does, so a concurrent deactivation cannot slip in between the check and the
// move. Not retried once sent: a commit whose answer was lost is reported as an outage.
func (s *pgStore) UpdateAccount(ctx context.Context, id string, ch AccountChange) (Account, error) {
	if !isUUID(id) {
		return Account{}, errNotFound
	}
	if err := checkAccountChange(ch); err != nil {
		return Account{}, fmt.Errorf("update account %s: %w", id, err)
	}
	var fullName, company any // NULL stores NULL; setName and setCompany say whether to store
	if ch.FullName != nil && *ch.FullName != "" {
		fullName = *ch.FullName
	}
	if ch.CompanyID != nil && *ch.CompanyID != "" {
		company = *ch.CompanyID
	}
	var a Account
	err := s.withConn(ctx, false, func(ctx context.Context, c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if company != nil {
				var active bool
				err := tx.QueryRow(ctx, "SELECT coalesce(is_active, false) FROM companies WHERE id = $1 FOR SHARE", company).Scan(&active)
				if errors.Is(err, pgx.ErrNoRows) || err == nil && !active {
					return errCompanyUnavailable
				}
				if err != nil {
					return fmt.Errorf("lock company: %w", err)
				}
			}
			return scanAccount(tx.QueryRow(ctx, `UPDATE users u SET
					full_name = CASE WHEN $2::boolean THEN $3::text ELSE u.full_name END,
					role = coalesce($4::text, u.role),
					company_id = CASE WHEN $5::boolean THEN $6::uuid ELSE u.company_id END,
					is_active = coalesce($7::boolean, u.is_active),
					tokens_valid_after = CASE WHEN $7::boolean IS FALSE THEN date_trunc('second', now())
						ELSE u.tokens_valid_after END,
					updated_at = now()
				WHERE u.id = $1 RETURNING `+accountColumns,
				id, ch.FullName != nil, fullName, ch.Role, ch.CompanyID != nil, company, ch.IsActive), &a)
		})
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Account{}, errNotFound
	case errors.Is(err, errCompanyUnavailable), isPgCode(err, "23503"):
		return Account{}, fmt.Errorf("update account %s: company %v: %w", id, company, errCompanyUnavailable)
	case err != nil:
		return Account{}, fmt.Errorf("update account %s: %w", id, err)
	}
	return a, nil
}

// accountLocked is u as the administration API shows it; m.mu must be held.
func accountLocked(u *memoryUser) Account {
	return Account{ID: u.ID, Email: u.Email, FullName: u.FullName, CompanyID: u.CompanyID,
		Role: u.Role, IsActive: u.IsActive, CreatedAt: u.createdAt}
}

// companyLess is ActiveCompanies' order, as pgStore's companyOrder sorts.
func companyLess(a, b Company) int {
	if c := strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)); c != 0 {
		return c
	}
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

func (m *memoryStore) PlatformStats(ctx context.Context) (PlatformStats, error) {
	if err := ctx.Err(); err != nil {
		return PlatformStats{}, fmt.Errorf("platform stats: %w", err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	users := make(map[string]int)
	for _, u := range m.users {
		if u.IsActive && u.CompanyID != "" {
			users[u.CompanyID]++
		}
	}
	var stats PlatformStats
	for _, co := range m.activeCompaniesLocked() {
		stats.Companies = append(stats.Companies, CompanyUsers{CompanyID: co.ID, Name: co.Name, Users: users[co.ID]})
	}
	return stats, nil
}

// activeCompaniesLocked returns the active companies in order; m.mu must be held.
func (m *memoryStore) activeCompaniesLocked() []Company {
	var companies []Company
	for _, c := range m.companies {
		if c.IsActive {
			companies = append(companies, *c)
		}
	}
	slices.SortFunc(companies, companyLess)
	return companies
}

func (m *memoryStore) ActiveCompanies(ctx context.Context) ([]Company, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("active companies: %w", err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.activeCompaniesLocked(), nil
}

func (m *memoryStore) CompanyByID(ctx context.Context, id string) (Company, error) {
	if err := ctx.Err(); err != nil {
		return Company{}, fmt.Errorf("company %s: %w", id, err)
	}
	if !isUUID(id) {
		return Company{}, errNotFound
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	c, ok := m.companies[memoryKey(id)]
	if !ok {
		return Company{}, errNotFound
	}
	return *c, nil
}

func (m *memoryStore) UpdateCompany(ctx context.Context, id string, ch CompanyChange) (Company, error) {
	if err := ctx.Err(); err != nil {
		return Company{}, fmt.Errorf("update company %s: %w", id, err)
	}
	if !isUUID(id) {
		return Company{}, errNotFound
	}
	if ch.Name != nil && (*ch.Name == "" || !sqlText(*ch.Name)) {
		return Company{}, fmt.Errorf("update company %s: name: %w", id, errInvalidInput)
	}
	id = memoryKey(id)
	m.mu.Lock()
	c, ok := m.companies[id]
	var before, after Company
	if ok {
		before = *c
		if ch.Name != nil {
			c.Name = *ch.Name
		}
		if ch.IsActive != nil {
			c.IsActive = *ch.IsActive
		}
		after = *c
	}
	m.mu.Unlock()
	if !ok {
		return Company{}, errNotFound
	}
	if before.IsActive != after.IsActive { // the only column the database's trigger watches
		m.notify("companies", id)
	}
	return after, nil
}

func (m *memoryStore) CreateAccount(ctx context.Context, nu NewUser) (Account, error) {
	if err := ctx.Err(); err != nil {
		return Account{}, fmt.Errorf("create account %s: %w", nu.Email, err)
	}
	if err := checkNewAccount(nu); err != nil {
		return Account{}, fmt.Errorf("create account %s: %w", nu.Email, err)
	}
	now := time.Now()
	u := &memoryUser{User: User{
		ID: newUUID(), CompanyID: memoryKey(nu.CompanyID), Email: nu.Email, HashedPassword: nu.HashedPassword,
		FullName: nu.FullName, Role: cmp.Or(nu.Role, "user"), IsActive: true,
	}, createdAt: memoryTime(now), updatedAt: now}
	key := strings.ToLower(nu.Email)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byEmail[key]; ok {
		return Account{}, fmt.Errorf("create account %s: %w", nu.Email, errDuplicate)
	}
	if c, ok := m.companies[u.CompanyID]; u.CompanyID != "" && (!ok || !c.IsActive) {
		return Account{}, fmt.Errorf("create account %s: company %s: %w", nu.Email, nu.CompanyID, errCompanyUnavailable)
	}
	m.users[u.ID] = u
	m.byEmail[key] = u.ID
	return accountLocked(u), nil
}

func (m *memoryStore) AccountByID(ctx context.Context, id string) (Account, error) {
	if err := ctx.Err(); err != nil {
		return Account{}, fmt.Errorf("account %s: %w", id, err)
	}
	if !isUUID(id) {
		return Account{}, errNotFound
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	u, ok := m.users[memoryKey(id)]
	if !ok {
		return Account{}, errNotFound
	}
	return accountLocked(u), nil
}

func (m *memoryStore) AccountsByCompany(ctx context.Context, companyID string, limit, offset int) ([]Account, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("accounts of company %s: %w", companyID, err)
	}
	if !isUUID(companyID) {
		return nil, errNotFound
	}
	if limit < 1 || offset < 0 {
		return nil, fmt.Errorf("accounts of company %s: limit %d, offset %d: %w", companyID, limit, offset, errInvalidInput)
	}
	companyID = memoryKey(companyID)
	m.mu.RLock()
	defer m.mu.RUnlock()
	if _, ok := m.companies[companyID]; !ok {
		return nil, errNotFound
	}
	var accounts []Account
	for _, u := range m.users {
		if u.CompanyID == companyID {
			accounts = append(accounts, accountLocked(u))
		}
	}
	slices.SortFunc(accounts, func(a, b Account) int {
		if c := strings.Compare(strings.ToLower(a.Email), strings.ToLower(b.Email)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if offset >= len(accounts) {
		return nil, nil
	}
	return accounts[offset:min(offset+limit, len(accounts))], nil
}

// UpdateAccount checks and changes everything under one write lock: all or nothing, as the
// database's transaction.
func (m *memoryStore) UpdateAccount(ctx context.Context, id string, ch AccountChange) (Account, error) {
	if err := ctx.Err(); err != nil {
		return Account{}, fmt.Errorf("update account %s: %w", id, err)
	}
	if !isUUID(id) {
		return Account{}, errNotFound
	}
	if err := checkAccountChange(ch); err != nil {
		return Account{}, fmt.Errorf("update account %s: %w", id, err)
	}
	id = memoryKey(id)
	m.mu.Lock()
	u, ok := m.users[id]
	if !ok {
		m.mu.Unlock()
		return Account{}, errNotFound
	}
	if ch.CompanyID != nil && *ch.CompanyID != "" {
		if c, ok := m.companies[memoryKey(*ch.CompanyID)]; !ok || !c.IsActive {
			m.mu.Unlock()
			return Account{}, fmt.Errorf("update account %s: company %s: %w", id, *ch.CompanyID, errCompanyUnavailable)
		}
	}
	before := u.User
	if ch.FullName != nil {
		u.FullName = *ch.FullName
	}
	if ch.Role != nil {
		u.Role = *ch.Role
	}
	if ch.CompanyID != nil {
		u.CompanyID = memoryKey(*ch.CompanyID)
	}
	if ch.IsActive != nil {
		u.IsActive = *ch.IsActive
		if !*ch.IsActive {
			u.TokensValidAfter = revokeNow()
		}
	}
	u.updatedAt = time.Now()
	a, changed := accountLocked(u), u.User != before
	m.mu.Unlock()
	if changed {
		m.notify("users", id)
	}
	return a, nil
}
