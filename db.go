// db.go: the user store's interface and types, and its PostgreSQL implementation.
package main

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The store's answers; any other error means the database could not answer (503).
var (
	errNotFound          = errors.New("not found")
	errInvitationClosed  = errors.New("invitation no longer open")
	errSchemaNotMigrated = errors.New("database schema is not migrated")
	// These three come wrapped; errInvalidInput is a value the caller should have refused.
	errDuplicate          = errors.New("already exists")
	errInvalidInput       = errors.New("invalid input")
	errCompanyUnavailable = errors.New("company does not exist or is inactive")
)

type User struct {
	ID               string // canonical lower-case UUID
	CompanyID        string // "" when NULL
	Email            string
	HashedPassword   string
	FullName         string // "" when NULL
	Role             string
	IsActive         bool
	TokensValidAfter time.Time // tokens with an earlier iat are revoked; whole seconds, zero when NULL
	CompanyActive    bool      // the company's is_active; false when the user has no company
}

// Invitation is a row of company_invitations; open means not accepted, revoked or expired.
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

// WatchHooks receive what Store.Watch sees; each may be nil. Lost and Listening alternate (a
// listener failing to reconnect reports Lost once). Changed must be safe for concurrent use.
type WatchHooks struct {
	Changed   func(StoreChange)
	Lost      func(err error) // notifications stopped: changes may go unseen until Listening
	Listening func()          // notifications flow (again): anything cached before may be stale
}

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

type PoolStats struct {
	Total, Idle, Acquired int32
}

// Store is PostgreSQL in production, memory in -dev; every method applies Config.DBTimeout.
// Emails and domains match in any case; a malformed id is errNotFound, never an outage.
type Store interface {
	UserByEmail(ctx context.Context, email string) (User, error)
	UserByID(ctx context.Context, id string) (User, error)
	SetUserCompany(ctx context.Context, userID, companyID string) error // "" clears; errNotFound: user or company
	TouchLastLogin(ctx context.Context, userID string) error
	CompanyActive(ctx context.Context, id string) (bool, error) // false, nil: missing or inactive
	Ping(ctx context.Context) error

	// Tenancy (SPEC §7). OpenInvitation: email's newest to an active company (companyID unless "").
	OpenInvitation(ctx context.Context, email, companyID string) (Invitation, error)
	CompanyForDomain(ctx context.Context, domain string) (string, error) // an active company's; errNotFound
	// JoinCompany with an invitationID also accepts it and gives its role, all or nothing
	// (errInvitationClosed); errNotFound when the user or company is gone.
	JoinCompany(ctx context.Context, userID, companyID, invitationID string) (User, error)
	// RevokeSessions: tokens_valid_after is now in whole seconds (iat's unit): sign-in works at once.
	RevokeSessions(ctx context.Context, userID string) (time.Time, error)
	// CheckSchema: errSchemaNotMigrated (wrapped, naming what is missing) until migrate ran.
	CheckSchema(ctx context.Context) error
	// Watch reports anyone's changes to users and companies, reconnecting, until ctx ends.
	Watch(ctx context.Context, hooks WatchHooks)

	CreateCompany(ctx context.Context, name string) (Company, error) // active
	// CreateUser: an active user, in a company that exists (errNotFound); errDuplicate.
	CreateUser(ctx context.Context, u NewUser) (User, error)
	// SetPassword also revokes every older token: whoever knew the old password may hold one.
	SetPassword(ctx context.Context, email, hashedPassword string) error
	// SetActive(false) also revokes every older token, so reactivation brings no session back.
	SetActive(ctx context.Context, email string, active bool) error
	// SetCompanyActive revokes nothing: tokens are refused only while the company is inactive.
	SetCompanyActive(ctx context.Context, id string, active bool) error
	// CreateInvitation fills ID and CreatedAt; the company need not be active yet.
	CreateInvitation(ctx context.Context, inv Invitation) (Invitation, error)
	ListOpenInvitations(ctx context.Context, companyID string) ([]Invitation, error) // newest first; errNotFound
	RevokeInvitation(ctx context.Context, companyID, invitationID string) error      // errNotFound when not open
	AddDomain(ctx context.Context, domain, companyID string) error                   // errDuplicate when another company has it
	RemoveDomain(ctx context.Context, domain, companyID string) error                // errNotFound

	// Administration (SPEC §7). Every write is one statement or transaction: nothing half-written.
	PlatformStats(ctx context.Context) (PlatformStats, error)
	// ActiveCompanies orders by lower-case name, name, id in byte order: both stores agree.
	ActiveCompanies(ctx context.Context) ([]Company, error)
	// UpdateCompany applies ch (errNotFound: no such company; errInvalidInput: empty name).
	UpdateCompany(ctx context.Context, id string, ch CompanyChange) (Company, error)
	// CreateAccount: an active user, in an active company or none (errCompanyUnavailable); errDuplicate.
	CreateAccount(ctx context.Context, nu NewUser) (Account, error)
	AccountByID(ctx context.Context, id string) (Account, error) // errNotFound
	// AccountsByCompany: a page of the company's users by lower-case email; errNotFound.
	AccountsByCompany(ctx context.Context, companyID string, limit, offset int) ([]Account, error)
	// UpdateAccount applies ch in one transaction: errNotFound, errCompanyUnavailable, errInvalidInput.
	UpdateAccount(ctx context.Context, id string, ch AccountChange) (Account, error)

	Stats() PoolStats // the connection pool, for metrics
	Close()           // waits for connections in use to be released
}

//go:embed schema.sql
var schemaSQL string // creates the tables the gateway reads; applied only by migrate

// postgresConnString builds the pgx URL for cfg (sslmode prefer when unset). Every part is
// escaped, so a password holding '@', ':', '/' or '%' reaches the server unchanged.
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

// migrate applies schema.sql in one transaction within timeout. An advisory lock serialises
// runs: two racing CREATE TABLE IF NOT EXISTS can still collide in the catalog.
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

func setIf[T any](dst, v *T) {
	if v != nil {
		*dst = *v
	}
}

// CompanyUsers is an active company and how many active users it has.
type CompanyUsers struct {
	CompanyID string
	Name      string
	Users     int
}

// PlatformStats lists every active company, users or not, in ActiveCompanies' order.
type PlatformStats struct {
	Companies []CompanyUsers
}

type pgStore struct {
	pool    *pgxpool.Pool
	timeout time.Duration // deadline of every call
	// watchIdle: a quiet Watch pings after it, or a hanging database would hold it forever.
	watchIdle time.Duration
}

// pgMaxConns: a proxied request needs at most one short query (usually none: cached), and
// several replicas stay well inside PostgreSQL's default max_connections of 100.
const pgMaxConns = 16

// openPostgres does not connect: a database down at start fails only the calls until it is back.
func openPostgres(ctx context.Context, connString string, timeout time.Duration) (*pgStore, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("postgres settings: %w", err)
	}
	cfg.MaxConns = pgMaxConns
	cfg.MinConns = 0 // connect lazily: never block or fail at start
	// Else a dial to a host dropping packets holds a slot for the driver's two minutes.
	cfg.ConnConfig.ConnectTimeout = timeout
	cfg.HealthCheckPeriod = 30 * time.Second // idle ones; withConn replaces dead ones in use
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "atenex-api-gateway"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres pool: %w", err)
	}
	return &pgStore{pool: pool, timeout: timeout, watchIdle: defaultWatchIdle}, nil
}

// withConn runs f under the store's deadline, again on another connection when this one was
// dead (else each of pgMaxConns would fail a request once the database is back); a call not
// idempotent only when nothing reached the server. A failed connect is not retried: the
// database is down. Store methods call it directly: the span is named after the caller.
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
		if !dead || attempt > pgMaxConns || ctx.Err() != nil || (!idempotent && !pgconn.SafeToRetry(err)) {
			return err
		}
	}
}

// queryRow is a withConn body that scans the one row sql returns into dst.
func queryRow[T any](dst *T, scan func(pgx.Row, *T) error, sql string, args ...any) func(context.Context, *pgx.Conn) error {
	return func(ctx context.Context, c *pgx.Conn) error { return scan(c.QueryRow(ctx, sql, args...), dst) }
}

// queryRows is a withConn body that scans every row sql returns into dst.
func queryRows[T any](dst *[]T, scan func(pgx.Row, *T) error, sql string, args ...any) func(context.Context, *pgx.Conn) error {
	return func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		*dst, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) {
			var v T
			err := scan(row, &v)
			return v, err
		})
		return err
	}
}

// execRow is a withConn body running sql; changing no row is pgx.ErrNoRows, an answer.
func execRow(sql string, args ...any) func(context.Context, *pgx.Conn) error {
	return func(ctx context.Context, c *pgx.Conn) error {
		tag, err := c.Exec(ctx, sql, args...)
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	}
}

func scanValue[T any](row pgx.Row, v *T) error { return row.Scan(v) }

// dbErr is errNotFound for no row, any other error wrapped with what the call was doing.
func dbErr(err error, format string, args ...any) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return errNotFound
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}

// dbResult is v and dbErr(err): the zero value whenever there is an error.
func dbResult[T any](v T, err error, format string, args ...any) (T, error) {
	if err = dbErr(err, format, args...); err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

func sqlNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func isPgCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// userColumns is every User field, for scanUser. A NULL is_active reads as inactive: when in
// doubt, refuse. NOT NULL ones are coalesced too, so a LEFT JOIN that found no user scans (ID "").
const userColumns = `coalesce(u.id::text, ''), coalesce(u.company_id::text, ''), coalesce(u.email, ''),
	coalesce(u.hashed_password, ''), coalesce(u.full_name, ''), coalesce(u.role, 'user'), coalesce(u.is_active, false),
	u.tokens_valid_after, coalesce(c.is_active, false)`

// userFrom joins the user's company, so one round trip says whether it is active.
const (
	userFrom    = ` FROM users u LEFT JOIN companies c ON c.id = u.company_id`
	userFromCTE = ` FROM u LEFT JOIN companies c ON c.id = u.company_id`
)

func scanUser(row pgx.Row, u *User) error { return scanUserAnd(row, u) }

// scanUserAnd reads userColumns, then more (e.g. u.created_at for an account).
func scanUserAnd(row pgx.Row, u *User, more ...any) error {
	var validAfter pgtype.Timestamptz
	dst := append([]any{&u.ID, &u.CompanyID, &u.Email, &u.HashedPassword, &u.FullName, &u.Role, &u.IsActive,
		&validAfter, &u.CompanyActive}, more...)
	err := row.Scan(dst...)
	u.TokensValidAfter = pgTime(validAfter)
	return err
}

// farFuture stands for 'infinity': every token was issued before it.
var farFuture = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// pgTime maps a timestamptz: zero for NULL and '-infinity', farFuture for 'infinity'.
func pgTime(t pgtype.Timestamptz) time.Time {
	switch {
	case !t.Valid || t.InfinityModifier == pgtype.NegativeInfinity:
		return time.Time{}
	case t.InfinityModifier == pgtype.Infinity:
		return farFuture
	}
	return t.Time
}

// sqlText: PostgreSQL text refuses NUL bytes and invalid UTF-8, which must not look like an outage.
func sqlText(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// UserByID serves every uncached proxied request: one round trip on a prepared statement.
func (s *pgStore) UserByID(ctx context.Context, id string) (User, error) {
	if !isUUID(id) {
		return User{}, errNotFound // cannot exist; the server's syntax error would look like an outage
	}
	var u User
	err := s.withConn(ctx, true, queryRow(&u, scanUser, "SELECT "+userColumns+userFrom+" WHERE u.id = $1", id))
	return dbResult(u, err, "user by id %s", id)
}

// UserByEmail matches in any case; should a legacy database (no users_email_lower_key) hold
// two spellings, the exact one wins.
func (s *pgStore) UserByEmail(ctx context.Context, email string) (User, error) {
	if !sqlText(email) {
		return User{}, errNotFound
	}
	var u User
	err := s.withConn(ctx, true, queryRow(&u, scanUser, "SELECT "+userColumns+userFrom+
		" WHERE lower(u.email) = lower($1) ORDER BY u.email = $1 DESC LIMIT 1", email))
	return dbResult(u, err, "user by email %s", email)
}

func (s *pgStore) SetUserCompany(ctx context.Context, userID, companyID string) error {
	if !isUUID(userID) || companyID != "" && !isUUID(companyID) {
		return errNotFound
	}
	err := s.withConn(ctx, true, execRow("UPDATE users SET company_id = $2, updated_at = now() WHERE id = $1",
		userID, sqlNull(companyID)))
	if isPgCode(err, "23503") { // foreign_key_violation: no such company
		return errNotFound
	}
	return dbErr(err, "set company %s of user %s", companyID, userID)
}

func (s *pgStore) TouchLastLogin(ctx context.Context, userID string) error {
	if !isUUID(userID) {
		return errNotFound
	}
	err := s.withConn(ctx, true, execRow("UPDATE users SET last_login = now() WHERE id = $1", userID))
	return dbErr(err, "touch last login of user %s", userID)
}

func (s *pgStore) CompanyActive(ctx context.Context, id string) (bool, error) {
	if !isUUID(id) {
		return false, nil
	}
	var active bool
	err := s.withConn(ctx, true, queryRow(&active, scanValue, "SELECT EXISTS (SELECT 1 FROM companies WHERE id = $1 AND is_active)", id))
	return dbResult(active, err, "company %s active", id)
}

func (s *pgStore) Ping(ctx context.Context) error {
	var one int
	err := s.withConn(ctx, true, queryRow(&one, scanValue, "SELECT 1"))
	return dbErr(err, "ping database")
}

func (s *pgStore) CreateCompany(ctx context.Context, name string) (Company, error) {
	var co Company
	err := s.withConn(ctx, false, queryRow(&co, scanCompany,
		"INSERT INTO companies AS c (name) VALUES ($1) RETURNING "+companyColumns, name))
	return dbResult(co, err, "create company %q", name)
}

type insertedUser struct {
	user             User
	created          pgtype.Timestamptz
	taken, companyOK bool
}

// insertUser checks in the same statement that the email is free in any case and the company
// exists (and is active, when activeCompany); unique indexes and the foreign key close races.
func insertUser(nu NewUser, activeCompany bool, out *insertedUser) func(context.Context, *pgx.Conn) error {
	return func(ctx context.Context, c *pgx.Conn) error {
		return scanUserAnd(c.QueryRow(ctx, `WITH taken AS (
				SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1::text)) AS yes
			), company AS (
				SELECT $5::uuid IS NULL OR EXISTS (SELECT 1 FROM companies
					WHERE id = $5::uuid AND (coalesce(is_active, false) OR NOT $6::boolean)) AS ok
			), u AS (
				INSERT INTO users (email, hashed_password, full_name, role, company_id)
				SELECT $1::text, $2::text, $3::text, $4::text, $5::uuid FROM taken, company
				WHERE NOT taken.yes AND company.ok
				RETURNING *)
			SELECT `+userColumns+`, u.created_at, taken.yes, company.ok
			FROM taken CROSS JOIN company LEFT JOIN u ON true LEFT JOIN companies c ON c.id = u.company_id`,
			nu.Email, nu.HashedPassword, sqlNull(nu.FullName), cmp.Or(nu.Role, "user"), sqlNull(nu.CompanyID), activeCompany),
			&out.user, &out.created, &out.taken, &out.companyOK)
	}
}

// result maps insertUser's outcome for CreateUser or CreateAccount (what).
func (in *insertedUser) result(err error, what string, nu NewUser, noCompany error) (User, error) {
	switch {
	case err == nil && in.taken, isPgCode(err, "23505"): // unique_violation: created meanwhile
		return User{}, fmt.Errorf("%s %s: %w", what, nu.Email, errDuplicate)
	case err == nil && !in.companyOK, isPgCode(err, "23503"): // foreign_key_violation: deleted meanwhile
		return User{}, fmt.Errorf("%s %s: company %s: %w", what, nu.Email, nu.CompanyID, noCompany)
	case err != nil:
		return User{}, fmt.Errorf("%s %s: %w", what, nu.Email, err)
	}
	return in.user, nil
}

func (s *pgStore) CreateUser(ctx context.Context, nu NewUser) (User, error) {
	if err := checkNewUser(nu); err != nil {
		return User{}, err
	}
	var in insertedUser
	err := s.withConn(ctx, false, insertUser(nu, false, &in))
	return in.result(err, "create user", nu, errNotFound)
}

func (s *pgStore) SetPassword(ctx context.Context, email, hashedPassword string) error {
	if !sqlText(email) {
		return errNotFound
	}
	err := s.withConn(ctx, true, execRow(`UPDATE users
		SET hashed_password = $2, updated_at = now(), tokens_valid_after = date_trunc('second', now())
		WHERE lower(email) = lower($1)`, email, hashedPassword))
	return dbErr(err, "set password of user %s", email)
}

func (s *pgStore) SetActive(ctx context.Context, email string, active bool) error {
	if !sqlText(email) {
		return errNotFound
	}
	err := s.withConn(ctx, true, execRow(`UPDATE users
		SET is_active = $2, updated_at = now(),
			tokens_valid_after = CASE WHEN $2 THEN tokens_valid_after ELSE date_trunc('second', now()) END
		WHERE lower(email) = lower($1)`, email, active))
	return dbErr(err, "set active of user %s", email)
}

func (s *pgStore) SetCompanyActive(ctx context.Context, id string, active bool) error {
	if !isUUID(id) {
		return errNotFound
	}
	err := s.withConn(ctx, true, execRow("UPDATE companies SET is_active = $2 WHERE id = $1", id, active))
	return dbErr(err, "set active of company %s", id)
}

func (s *pgStore) RevokeSessions(ctx context.Context, userID string) (time.Time, error) {
	if !isUUID(userID) {
		return time.Time{}, errNotFound
	}
	var validAfter pgtype.Timestamptz
	err := s.withConn(ctx, true, queryRow(&validAfter, scanValue, `UPDATE users
		SET tokens_valid_after = date_trunc('second', now()), updated_at = now()
		WHERE id = $1 RETURNING tokens_valid_after`, userID))
	return dbResult(pgTime(validAfter), err, "revoke sessions of user %s", userID)
}

// Every Invitation field of company_invitations i, and the condition it is open.
const (
	invitationColumns = `i.id::text, i.company_id::text, i.email, i.role, coalesce(i.created_by::text, ''),
	i.created_at, i.expires_at, i.accepted_at, i.revoked_at`
	invitationOpen = `i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > now()`
)

func scanInvitation(row pgx.Row, inv *Invitation) error {
	var accepted, revoked pgtype.Timestamptz
	err := row.Scan(&inv.ID, &inv.CompanyID, &inv.Email, &inv.Role, &inv.CreatedBy,
		&inv.CreatedAt, &inv.ExpiresAt, &accepted, &revoked)
	inv.AcceptedAt, inv.RevokedAt = pgTime(accepted), pgTime(revoked)
	return err
}

// OpenInvitation's condition matches the partial index company_invitations_open_email.
func (s *pgStore) OpenInvitation(ctx context.Context, email, companyID string) (Invitation, error) {
	if companyID != "" && !isUUID(companyID) || !sqlText(email) {
		return Invitation{}, errNotFound
	}
	var inv Invitation
	err := s.withConn(ctx, true, queryRow(&inv, scanInvitation, `SELECT `+invitationColumns+`
		FROM company_invitations i JOIN companies c ON c.id = i.company_id
		WHERE lower(i.email) = lower($1) AND `+invitationOpen+`
			AND ($2::uuid IS NULL OR i.company_id = $2::uuid) AND coalesce(c.is_active, false)
		ORDER BY i.created_at DESC, i.id DESC LIMIT 1`, email, sqlNull(companyID)))
	return dbResult(inv, err, "open invitation of %s", email)
}

func (s *pgStore) CompanyForDomain(ctx context.Context, domain string) (string, error) {
	if !sqlText(domain) {
		return "", errNotFound
	}
	var id string
	err := s.withConn(ctx, true, queryRow(&id, scanValue, `SELECT d.company_id::text
		FROM company_domains d JOIN companies c ON c.id = d.company_id
		WHERE d.domain = lower($1) AND coalesce(c.is_active, false)`, strings.ToLower(domain)))
	return dbResult(id, err, "company for domain %s", domain)
}

// JoinCompany locks the invitation row, so two requests cannot both accept it nor one
// accept it revoked. Not retried once sent: a lost commit would then report it closed.
func (s *pgStore) JoinCompany(ctx context.Context, userID, companyID, invitationID string) (User, error) {
	if err := checkJoinCompany(userID, companyID, invitationID); err != nil {
		return User{}, err
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
	if err := lockActiveCompany(ctx, tx, companyID, errNotFound); err != nil {
		return err
	}
	err = scanUser(tx.QueryRow(ctx, `WITH u AS (
			UPDATE users SET company_id = $2, role = coalesce($3::text, role), updated_at = now()
			WHERE id = $1 RETURNING *)
		SELECT `+userColumns+userFromCTE, userID, companyID, role), u)
	if err != nil {
		return fmt.Errorf("move user: %w", err)
	}
	return nil
}

// lockActiveCompany holds off a deactivation (FOR SHARE) until the user is moved in; else gone.
func lockActiveCompany(ctx context.Context, tx pgx.Tx, id string, gone error) error {
	var active bool
	err := tx.QueryRow(ctx, "SELECT coalesce(is_active, false) FROM companies WHERE id = $1 FOR SHARE", id).Scan(&active)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && !active {
		return gone
	}
	if err != nil {
		return fmt.Errorf("lock company: %w", err)
	}
	return nil
}

// schemaPartsSQL names what the gateway needs and is missing; to_regclass resolves names
// through search_path, as the gateway's queries do.
const schemaPartsSQL = `SELECT what FROM (VALUES
	(1, 'table companies', to_regclass('companies') IS NOT NULL),
	(2, 'table users', to_regclass('users') IS NOT NULL),
	(3, 'column users.tokens_valid_after', EXISTS (SELECT 1 FROM pg_attribute
		WHERE attrelid = to_regclass('users') AND attname = 'tokens_valid_after' AND NOT attisdropped)),
	(4, 'table company_invitations', to_regclass('company_invitations') IS NOT NULL),
	(5, 'table company_domains', to_regclass('company_domains') IS NOT NULL)
	UNION ALL SELECT 5 + n, 'trigger ' || tg, EXISTS (SELECT 1 FROM pg_trigger
		WHERE tgrelid = to_regclass(tbl) AND tgname = tg AND tgenabled <> 'D')
	FROM (VALUES (1, 'users', 'atenex_gateway_users_changed'), (2, 'users', 'atenex_gateway_users_deleted'),
		(3, 'companies', 'atenex_gateway_companies_changed'), (4, 'companies', 'atenex_gateway_companies_deleted'))
		AS triggers(n, tbl, tg)
) AS parts(n, what, present) WHERE NOT present ORDER BY n`

// CheckSchema counts a disabled trigger as missing: replicas would miss changes silently.
func (s *pgStore) CheckSchema(ctx context.Context) error {
	var missing []string
	if err := s.withConn(ctx, true, queryRows(&missing, scanValue, schemaPartsSQL)); err != nil {
		return fmt.Errorf("check schema: %w", err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", errSchemaNotMigrated, strings.Join(missing, ", "))
	}
	return nil
}

func (s *pgStore) CreateInvitation(ctx context.Context, inv Invitation) (Invitation, error) {
	role, err := checkNewInvitation(inv)
	if err != nil {
		return Invitation{}, err
	}
	var out Invitation
	err = s.withConn(ctx, false, queryRow(&out, scanInvitation, `INSERT INTO company_invitations AS i
		(company_id, email, role, created_by, expires_at) VALUES ($1, $2, $3, $4, $5)
		RETURNING `+invitationColumns, inv.CompanyID, inv.Email, role, sqlNull(inv.CreatedBy), inv.ExpiresAt))
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return out, nil
	case errors.As(err, &pgErr) && pgErr.Code == "23503" && strings.Contains(pgErr.ConstraintName, "created_by"):
		return Invitation{}, fmt.Errorf("create invitation of %s: creator %s: %w", inv.Email, inv.CreatedBy, errNotFound)
	case isPgCode(err, "23503"): // foreign_key_violation: no such company
		return Invitation{}, fmt.Errorf("create invitation of %s: company %s: %w", inv.Email, inv.CompanyID, errNotFound)
	}
	return Invitation{}, fmt.Errorf("create invitation of %s to company %s: %w", inv.Email, inv.CompanyID, err)
}

// companyRows is queryRows for company $1; an empty list takes a second query to tell no
// such company (pgx.ErrNoRows) from nothing there.
func companyRows[T any](dst *[]T, scan func(pgx.Row, *T) error, sql, companyID string, args ...any) func(context.Context, *pgx.Conn) error {
	return func(ctx context.Context, c *pgx.Conn) error {
		err := queryRows(dst, scan, sql, append([]any{companyID}, args...)...)(ctx, c)
		if err != nil || len(*dst) > 0 {
			return err
		}
		var exists bool
		if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM companies WHERE id = $1)", companyID).Scan(&exists); err != nil || exists {
			return err
		}
		return pgx.ErrNoRows
	}
}

func (s *pgStore) ListOpenInvitations(ctx context.Context, companyID string) ([]Invitation, error) {
	if !isUUID(companyID) {
		return nil, errNotFound
	}
	var invs []Invitation
	err := s.withConn(ctx, true, companyRows(&invs, scanInvitation, `SELECT `+invitationColumns+` FROM company_invitations i
		WHERE i.company_id = $1 AND `+invitationOpen+` ORDER BY i.created_at DESC, i.id DESC`, companyID))
	return dbResult(invs, err, "open invitations of company %s", companyID)
}

func (s *pgStore) RevokeInvitation(ctx context.Context, companyID, invitationID string) error {
	if !isUUID(companyID) || !isUUID(invitationID) {
		return errNotFound
	}
	err := s.withConn(ctx, false, execRow(`UPDATE company_invitations i SET revoked_at = now()
		WHERE i.id = $1 AND i.company_id = $2 AND `+invitationOpen, invitationID, companyID))
	return dbErr(err, "revoke invitation %s of company %s", invitationID, companyID)
}

// AddDomain decides in one statement, without a race: no row when the company does not
// exist; on a conflict the no-op update returns the holder, even one committed meanwhile.
func (s *pgStore) AddDomain(ctx context.Context, domain, companyID string) error {
	if err := checkNewDomain(domain, companyID); err != nil {
		return err
	}
	domain = strings.ToLower(domain)
	var holder string
	err := s.withConn(ctx, true, queryRow(&holder, scanValue, `INSERT INTO company_domains (domain, company_id)
		SELECT lower($1), id FROM companies WHERE id = $2
		ON CONFLICT (domain) DO UPDATE SET company_id = company_domains.company_id
		RETURNING company_id::text`, domain, companyID))
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

// RemoveDomain is not retried once sent: a lost delete would then report errNotFound.
func (s *pgStore) RemoveDomain(ctx context.Context, domain, companyID string) error {
	if !isUUID(companyID) || !sqlText(domain) {
		return errNotFound
	}
	err := s.withConn(ctx, false, execRow("DELETE FROM company_domains WHERE domain = lower($1) AND company_id = $2",
		strings.ToLower(domain), companyID))
	return dbErr(err, "remove domain %s of company %s", domain, companyID)
}

// The checks below are the refusals both stores make before touching any data.

// knownRole reports whether role may be handed out: only the two roles the gateway knows.
func knownRole(role string) bool { return role == "user" || role == "admin" }

func checkNewUser(nu NewUser) error {
	if nu.CompanyID != "" && !isUUID(nu.CompanyID) {
		return fmt.Errorf("create user %s: company %q: %w", nu.Email, nu.CompanyID, errNotFound)
	}
	return nil
}

func checkJoinCompany(userID, companyID, invitationID string) error {
	switch {
	case !isUUID(userID) || !isUUID(companyID):
		return errNotFound
	case invitationID != "" && !isUUID(invitationID):
		return errInvitationClosed // no such invitation can be open
	}
	return nil
}

func checkNewDomain(domain, companyID string) error {
	switch {
	case !isUUID(companyID):
		return errNotFound
	case domain == "" || !sqlText(domain):
		return fmt.Errorf("add domain %q: %w", domain, errInvalidInput)
	}
	return nil
}

func checkCompanyChange(id string, ch CompanyChange) error {
	switch {
	case !isUUID(id):
		return errNotFound
	case ch.Name != nil && (*ch.Name == "" || !sqlText(*ch.Name)):
		return fmt.Errorf("update company %s: name: %w", id, errInvalidInput)
	}
	return nil
}

func checkAccountPage(companyID string, limit, offset int) error {
	switch {
	case !isUUID(companyID):
		return errNotFound
	case limit < 1 || offset < 0:
		return fmt.Errorf("accounts of company %s: limit %d, offset %d: %w", companyID, limit, offset, errInvalidInput)
	}
	return nil
}

// checkNewInvitation returns inv's stored role ("" means "user").
func checkNewInvitation(inv Invitation) (string, error) {
	var err error
	switch {
	case !isUUID(inv.CompanyID):
		err = fmt.Errorf("company %q: %w", inv.CompanyID, errNotFound)
	case inv.CreatedBy != "" && !isUUID(inv.CreatedBy):
		err = fmt.Errorf("creator %q: %w", inv.CreatedBy, errNotFound)
	case inv.Email == "" || !sqlText(inv.Email):
		err = fmt.Errorf("email %q: %w", inv.Email, errInvalidInput)
	case inv.ExpiresAt.IsZero():
		err = fmt.Errorf("no expiry: %w", errInvalidInput)
	case inv.Role != "" && !knownRole(inv.Role):
		err = fmt.Errorf("role %q is neither user nor admin: %w", inv.Role, errInvalidInput)
	default:
		return cmp.Or(inv.Role, "user"), nil
	}
	return "", fmt.Errorf("create invitation of %s: %w", inv.Email, err)
}

func checkAccountChange(id string, ch AccountChange) error {
	var err error
	switch {
	case !isUUID(id):
		return errNotFound
	case ch.Role != nil && !knownRole(*ch.Role):
		err = fmt.Errorf("role %q is neither user nor admin: %w", *ch.Role, errInvalidInput)
	case ch.FullName != nil && !sqlText(*ch.FullName):
		err = fmt.Errorf("full name: %w", errInvalidInput)
	case ch.CompanyID != nil && *ch.CompanyID != "" && !isUUID(*ch.CompanyID):
		err = fmt.Errorf("company %q: %w", *ch.CompanyID, errCompanyUnavailable)
	default:
		return nil
	}
	return fmt.Errorf("update account %s: %w", id, err)
}

func checkNewAccount(nu NewUser) error {
	var err error
	switch {
	case nu.Email == "" || !sqlText(nu.Email) || !sqlText(nu.FullName) || !sqlText(nu.HashedPassword):
		err = fmt.Errorf("email, name or hash: %w", errInvalidInput)
	case nu.Role != "" && !knownRole(nu.Role):
		err = fmt.Errorf("role %q is neither user nor admin: %w", nu.Role, errInvalidInput)
	case nu.CompanyID != "" && !isUUID(nu.CompanyID):
		err = fmt.Errorf("company %q: %w", nu.CompanyID, errCompanyUnavailable)
	default:
		return nil
	}
	return fmt.Errorf("create account %s: %w", nu.Email, err)
}

func (u User) account(created time.Time) Account {
	return Account{ID: u.ID, Email: u.Email, FullName: u.FullName, CompanyID: u.CompanyID,
		Role: u.Role, IsActive: u.IsActive, CreatedAt: created}
}

// Every Company field of companies c; ActiveCompanies' order, COLLATE "C" being memoryStore's.
const (
	companyColumns = `c.id::text, c.name, coalesce(c.is_active, false), c.created_at`
	companyOrder   = ` ORDER BY lower(c.name) COLLATE "C", c.name COLLATE "C", c.id`
)

func scanCompany(row pgx.Row, co *Company) error {
	var created pgtype.Timestamptz
	err := row.Scan(&co.ID, &co.Name, &co.IsActive, &created)
	co.CreatedAt = pgTime(created)
	return err
}

const accountColumns = userColumns + `, u.created_at`

func scanAccount(row pgx.Row, a *Account) error {
	var u User
	var created pgtype.Timestamptz
	err := scanUserAnd(row, &u, &created)
	*a = u.account(pgTime(created))
	return err
}

// PlatformStats counts in one statement, so the numbers are of one moment.
func (s *pgStore) PlatformStats(ctx context.Context) (PlatformStats, error) {
	var stats PlatformStats
	err := s.withConn(ctx, true, queryRows(&stats.Companies, func(row pgx.Row, cu *CompanyUsers) error {
		return row.Scan(&cu.CompanyID, &cu.Name, &cu.Users)
	}, `SELECT c.id::text, c.name, count(u.id)
		FROM companies c LEFT JOIN users u ON u.company_id = c.id AND coalesce(u.is_active, false)
		WHERE coalesce(c.is_active, false)
		GROUP BY c.id`+companyOrder))
	return dbResult(stats, err, "platform stats")
}

func (s *pgStore) ActiveCompanies(ctx context.Context) ([]Company, error) {
	var companies []Company
	err := s.withConn(ctx, true, queryRows(&companies, scanCompany,
		`SELECT `+companyColumns+` FROM companies c WHERE coalesce(c.is_active, false)`+companyOrder))
	return dbResult(companies, err, "active companies")
}

// UpdateCompany revokes nothing, as SetCompanyActive.
func (s *pgStore) UpdateCompany(ctx context.Context, id string, ch CompanyChange) (Company, error) {
	if err := checkCompanyChange(id, ch); err != nil {
		return Company{}, err
	}
	var co Company
	err := s.withConn(ctx, true, queryRow(&co, scanCompany, `UPDATE companies c
		SET name = coalesce($2::text, c.name), is_active = coalesce($3::boolean, c.is_active)
		WHERE c.id = $1 RETURNING `+companyColumns, id, ch.Name, ch.IsActive))
	return dbResult(co, err, "update company %s", id)
}

func (s *pgStore) CreateAccount(ctx context.Context, nu NewUser) (Account, error) {
	if err := checkNewAccount(nu); err != nil {
		return Account{}, err
	}
	var in insertedUser
	err := s.withConn(ctx, false, insertUser(nu, true, &in))
	u, err := in.result(err, "create account", nu, errCompanyUnavailable)
	if err != nil {
		return Account{}, err
	}
	return u.account(pgTime(in.created)), nil
}

func (s *pgStore) AccountByID(ctx context.Context, id string) (Account, error) {
	if !isUUID(id) {
		return Account{}, errNotFound
	}
	var a Account
	err := s.withConn(ctx, true, queryRow(&a, scanAccount, `SELECT `+accountColumns+userFrom+` WHERE u.id = $1`, id))
	return dbResult(a, err, "account %s", id)
}

func (s *pgStore) AccountsByCompany(ctx context.Context, companyID string, limit, offset int) ([]Account, error) {
	if err := checkAccountPage(companyID, limit, offset); err != nil {
		return nil, err
	}
	var accounts []Account
	err := s.withConn(ctx, true, companyRows(&accounts, scanAccount, `SELECT `+accountColumns+userFrom+`
		WHERE u.company_id = $1 ORDER BY lower(u.email) COLLATE "C", u.id LIMIT $2 OFFSET $3`, companyID, limit, offset))
	return dbResult(accounts, err, "accounts of company %s", companyID)
}

// UpdateAccount locks a new company FOR SHARE, as JoinCompany, so no deactivation slips in
// between check and move. Not retried once sent: a lost commit is reported as an outage.
func (s *pgStore) UpdateAccount(ctx context.Context, id string, ch AccountChange) (Account, error) {
	if err := checkAccountChange(id, ch); err != nil {
		return Account{}, err
	}
	// A nil field is NULL, kept as it is; "" stores NULL.
	moving := ch.CompanyID != nil && *ch.CompanyID != ""
	var a Account
	err := s.withConn(ctx, false, func(ctx context.Context, c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if moving {
				if err := lockActiveCompany(ctx, tx, *ch.CompanyID, errCompanyUnavailable); err != nil {
					return err
				}
			}
			return scanAccount(tx.QueryRow(ctx, `WITH u AS (UPDATE users u SET
					full_name = CASE WHEN $2::text IS NULL THEN u.full_name ELSE nullif($2::text, '') END,
					role = coalesce($3::text, u.role),
					company_id = CASE WHEN $4::text IS NULL THEN u.company_id ELSE nullif($4::text, '')::uuid END,
					is_active = coalesce($5::boolean, u.is_active),
					tokens_valid_after = CASE WHEN $5::boolean IS FALSE THEN date_trunc('second', now())
						ELSE u.tokens_valid_after END,
					updated_at = now()
				WHERE u.id = $1 RETURNING u.*)
				SELECT `+accountColumns+userFromCTE, id, ch.FullName, ch.Role, ch.CompanyID, ch.IsActive), &a)
		})
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Account{}, errNotFound
	case moving && (errors.Is(err, errCompanyUnavailable) || isPgCode(err, "23503")):
		return Account{}, fmt.Errorf("update account %s: company %s: %w", id, *ch.CompanyID, errCompanyUnavailable)
	case err != nil:
		return Account{}, fmt.Errorf("update account %s: %w", id, err)
	}
	return a, nil
}

const (
	watchChannel    = "atenex_gateway_changes"      // schema.sql's triggers notify it
	listenerAppName = "atenex-api-gateway-listener" // for pg_stat_activity
	// A quiet listener pings this often, so a hanging server is noticed within it plus the deadline.
	defaultWatchIdle = 5 * time.Second
	// A restarted server is usually back at once; later reconnections slow down.
	watchMinBackoff = 100 * time.Millisecond
	watchMaxBackoff = 2 * time.Second
)

// Watch LISTENs on a connection of its own: LISTEN belongs to a session, pooled ones to queries.
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
		// Start over quickly after a connection that served a while, never in a tight loop.
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

// listen runs one connection and returns why it stopped (nil when ctx ended).
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
			// Quiet for watchIdle (the connection stays usable): is the server still there?
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

// parseStoreChange reads a trigger's "users:<uuid>" or "companies:<uuid>", ignoring other senders.
func parseStoreChange(channel, payload string) (StoreChange, bool) {
	table, id, ok := strings.Cut(payload, ":")
	if channel != watchChannel || !ok || table != "users" && table != "companies" || !isUUID(id) {
		return StoreChange{}, false
	}
	return StoreChange{Table: table, ID: strings.ToLower(id)}, true
}

func (s *pgStore) Stats() PoolStats {
	st := s.pool.Stat()
	return PoolStats{Total: st.TotalConns(), Idle: st.IdleConns(), Acquired: st.AcquiredConns()}
}

func (s *pgStore) Close() { s.pool.Close() }
