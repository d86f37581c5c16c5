// auth.go: StrictAuth / InitialAuth wrappers and the user-active cache. Token
// signing and verification live in jwt.go.
package main

import "context"

// identity is the verified caller, put in the request context by the auth wrappers.
type identity struct {
	UserID    string
	CompanyID string // "" when the token has none (InitialAuth only)
	Email     string
}

type identityKey struct{}

func withIdentity(ctx context.Context, id identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

func identityFrom(ctx context.Context) (identity, bool) {
	id, ok := ctx.Value(identityKey{}).(identity)
	return id, ok
}
