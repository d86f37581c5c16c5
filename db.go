// db.go: the user store: SQL and pgxpool only; the in-memory development store beside it.
package main

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgxpool"
)

// errNotFound is returned by a store when the user or company does not exist. Any other
// store error means the database could not answer (the caller answers 503).
var errNotFound = errors.New("not found")

// User is a row of the users table.
type User struct {
	ID             string // canonical lower-case UUID
	CompanyID      string // "" when NULL
	Email          string
	HashedPassword string
	FullName       string // "" when NULL
	Role           string
	IsActive       bool
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

	CreateCompany(ctx context.Context, name string) (Company, error)
	CreateUser(ctx context.Context, u NewUser) (User, error)
	SetPassword(ctx context.Context, email, hashedPassword string) error
	SetActive(ctx context.Context, email string, active bool) error

	Stats() PoolStats
	Close()
}

var _ = pgxpool.New
