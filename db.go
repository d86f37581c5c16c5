// db.go: the user store: SQL and pgxpool only; the in-memory development store beside it.
package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
// letter case, already exists.
var errDuplicate = errors.New("already exists")

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

// WatchHooks receive what Store.Watch sees. Each may be nil.
type WatchHooks struct {
	Changed   func(StoreChange)
	Lost      func(err error) // notifications stopped: changes may go unseen until Listening
	Listening func()          // notifications flow (again): anything cached before may be stale
}

// Company is a row of the companies table.
type Company struct {
	ID       string
	Name     string
	IsActive bool
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

	Stats() PoolStats
	Close()
}

// schemaSQL creates the tables the gateway reads; applied only by migrate.
//
//go:embed schema.sql
var schemaSQL string

// postgresConnString builds the pgx URL for cfg. Every part is escaped, so a password holding
// '@', ':', '/' or '%' reaches the server unchanged.
func postgresConnString(cfg *Config) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(cfg.PostgresUser, cfg.PostgresPassword),
		Host:     net.JoinHostPort(cfg.PostgresServer, strconv.Itoa(cfg.PostgresPort)),
		Path:     "/" + cfg.PostgresDB,
		RawPath:  "/" + url.PathEscape(cfg.PostgresDB),
		RawQuery: "sslmode=prefer",
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
	return &pgStore{pool: pool, timeout: timeout, attempts: pgMaxConns + 1}, nil
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

// userColumns is every User field, NULLs mapped as User documents them. A NULL is_active
// reads as inactive: when in doubt, refuse.
const userColumns = `id::text, coalesce(company_id::text, ''), email, hashed_password,
	coalesce(full_name, ''), coalesce(role, 'user'), coalesce(is_active, false)`

func scanUser(row pgx.Row, u *User) error {
	return row.Scan(&u.ID, &u.CompanyID, &u.Email, &u.HashedPassword, &u.FullName, &u.Role, &u.IsActive)
}

// UserByID is on the path of every proxied request whose user check is not cached: one
// round trip on a prepared statement.
func (s *pgStore) UserByID(ctx context.Context, id string) (User, error) {
	if !isUUID(id) {
		return User{}, errNotFound // cannot exist; never let the server's syntax error look like an outage
	}
	var u User
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		return scanUser(c.QueryRow(ctx, "SELECT "+userColumns+" FROM users WHERE id = $1", id), &u)
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
	var u User
	err := s.withConn(ctx, true, func(ctx context.Context, c *pgx.Conn) error {
		return scanUser(c.QueryRow(ctx, "SELECT "+userColumns+
			" FROM users WHERE lower(email) = lower($1) ORDER BY email = $1 DESC LIMIT 1", email), &u)
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
		return c.QueryRow(ctx, "INSERT INTO companies (name) VALUES ($1) RETURNING id::text, name, coalesce(is_active, false)",
			name).Scan(&co.ID, &co.Name, &co.IsActive)
	})
	if err != nil {
		return Company{}, fmt.Errorf("create company %q: %w", name, err)
	}
	return co, nil
}

// CreateUser inserts an active user. The NOT EXISTS guard refuses an email differing only in
// case even on a database without users_email_lower_key; the unique indexes close the race.
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
		return scanUser(c.QueryRow(ctx, `INSERT INTO users (email, hashed_password, full_name, role, company_id)
			SELECT $1::text, $2::text, $3::text, $4::text, $5::uuid
			WHERE NOT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1::text))
			RETURNING `+userColumns, nu.Email, nu.HashedPassword, fullName, role, company), &u)
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

// SetPassword replaces the password hash of the user with that email (any letter case).
func (s *pgStore) SetPassword(ctx context.Context, email, hashedPassword string) error {
	return s.updateByEmail(ctx, "set password", email,
		"UPDATE users SET hashed_password = $2, updated_at = now() WHERE lower(email) = lower($1)", hashedPassword)
}

// SetActive activates or deactivates the user with that email (any letter case).
func (s *pgStore) SetActive(ctx context.Context, email string, active bool) error {
	return s.updateByEmail(ctx, "set active", email,
		"UPDATE users SET is_active = $2, updated_at = now() WHERE lower(email) = lower($1)", active)
}

func (s *pgStore) updateByEmail(ctx context.Context, what, email, sql string, value any) error {
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

// SetCompanyActive activates or deactivates a company (operators; not part of Store).
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
	mu        sync.RWMutex
	users     map[string]*memoryUser // by id
	byEmail   map[string]string      // lower(email) → id
	companies map[string]*Company    // by id
}

type memoryUser struct {
	User
	updatedAt, lastLogin time.Time
}

func newMemoryStore() *memoryStore {
	return &memoryStore{
		users:     make(map[string]*memoryUser),
		byEmail:   make(map[string]string),
		companies: make(map[string]*Company),
	}
}

// UUIDs arrive in either case, as PostgreSQL accepts them; keys are lower-case.
func memoryKey(id string) string { return strings.ToLower(id) }

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
	return u.User, nil
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
	return m.users[id].User, nil
}

func (m *memoryStore) SetUserCompany(ctx context.Context, userID, companyID string) error {
	if companyID != "" && !isUUID(companyID) {
		return errNotFound
	}
	companyID = memoryKey(companyID)
	return m.updateByID(ctx, "set company "+companyID, userID, func(u *memoryUser) error {
		if _, ok := m.companies[companyID]; companyID != "" && !ok {
			return errNotFound
		}
		u.CompanyID, u.updatedAt = companyID, time.Now()
		return nil
	})
}

func (m *memoryStore) TouchLastLogin(ctx context.Context, userID string) error {
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
	c := Company{ID: newUUID(), Name: name, IsActive: true}
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
	m.users[u.ID] = &memoryUser{User: u, updatedAt: time.Now()}
	m.byEmail[key] = u.ID
	return u, nil
}

func (m *memoryStore) SetPassword(ctx context.Context, email, hashedPassword string) error {
	return m.updateByEmail(ctx, "set password", email, func(u *memoryUser) { u.HashedPassword = hashedPassword })
}

func (m *memoryStore) SetActive(ctx context.Context, email string, active bool) error {
	return m.updateByEmail(ctx, "set active", email, func(u *memoryUser) { u.IsActive = active })
}

func (m *memoryStore) updateByEmail(ctx context.Context, what, email string, update func(*memoryUser)) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s of user %s: %w", what, email, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.byEmail[strings.ToLower(email)]
	if !ok {
		return errNotFound
	}
	u := m.users[id]
	update(u)
	u.updatedAt = time.Now()
	return nil
}

// SetCompanyActive activates or deactivates a company (operators; not part of Store).
func (m *memoryStore) SetCompanyActive(ctx context.Context, id string, active bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("set active of company %s: %w", id, err)
	}
	if !isUUID(id) {
		return errNotFound
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.companies[memoryKey(id)]
	if !ok {
		return errNotFound
	}
	c.IsActive = active
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

// TODO(tenancy-store): the stubs below are replaced by the real implementations.
var errNotImplemented = errors.New("not implemented")

func (s *pgStore) OpenInvitation(ctx context.Context, email, companyID string) (Invitation, error) {
	return Invitation{}, errNotImplemented
}
func (s *pgStore) CompanyForDomain(ctx context.Context, domain string) (string, error) {
	return "", errNotImplemented
}
func (s *pgStore) JoinCompany(ctx context.Context, userID, companyID, invitationID string) (User, error) {
	return User{}, errNotImplemented
}
func (s *pgStore) RevokeSessions(ctx context.Context, userID string) (time.Time, error) {
	return time.Time{}, errNotImplemented
}
func (s *pgStore) CheckSchema(ctx context.Context) error       { return nil }
func (s *pgStore) Watch(ctx context.Context, hooks WatchHooks) { <-ctx.Done() }
func (s *pgStore) CreateInvitation(ctx context.Context, inv Invitation) (Invitation, error) {
	return Invitation{}, errNotImplemented
}
func (s *pgStore) ListOpenInvitations(ctx context.Context, companyID string) ([]Invitation, error) {
	return nil, errNotImplemented
}
func (s *pgStore) RevokeInvitation(ctx context.Context, companyID, invitationID string) error {
	return errNotImplemented
}
func (s *pgStore) AddDomain(ctx context.Context, domain, companyID string) error {
	return errNotImplemented
}
func (s *pgStore) RemoveDomain(ctx context.Context, domain, companyID string) error {
	return errNotImplemented
}

func (m *memoryStore) OpenInvitation(ctx context.Context, email, companyID string) (Invitation, error) {
	return Invitation{}, errNotImplemented
}
func (m *memoryStore) CompanyForDomain(ctx context.Context, domain string) (string, error) {
	return "", errNotImplemented
}
func (m *memoryStore) JoinCompany(ctx context.Context, userID, companyID, invitationID string) (User, error) {
	return User{}, errNotImplemented
}
func (m *memoryStore) RevokeSessions(ctx context.Context, userID string) (time.Time, error) {
	return time.Time{}, errNotImplemented
}
func (m *memoryStore) CheckSchema(ctx context.Context) error       { return nil }
func (m *memoryStore) Watch(ctx context.Context, hooks WatchHooks) { <-ctx.Done() }
func (m *memoryStore) CreateInvitation(ctx context.Context, inv Invitation) (Invitation, error) {
	return Invitation{}, errNotImplemented
}
func (m *memoryStore) ListOpenInvitations(ctx context.Context, companyID string) ([]Invitation, error) {
	return nil, errNotImplemented
}
func (m *memoryStore) RevokeInvitation(ctx context.Context, companyID, invitationID string) error {
	return errNotImplemented
}
func (m *memoryStore) AddDomain(ctx context.Context, domain, companyID string) error {
	return errNotImplemented
}
func (m *memoryStore) RemoveDomain(ctx context.Context, domain, companyID string) error {
	return errNotImplemented
}
