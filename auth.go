// auth.go: StrictAuth / InitialAuth wrappers, the user-active cache and the per-company
// rate limit. Token signing and verification live in jwt.go (pure functions).
package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
)

// identity is the verified caller, put in the request context by the auth wrappers.
type identity struct {
	UserID    string
	CompanyID string // "" when the token has none (InitialAuth only)
	Email     string
}

// withIdentity records the verified caller in the request's info, so no request copy is
// needed on the hot path; a context without info gets a fresh one.
func withIdentity(ctx context.Context, id identity) context.Context {
	info, ok := ctx.Value(requestInfoKey{}).(*requestInfo)
	if !ok {
		info = &requestInfo{}
		ctx = withRequestInfo(ctx, info)
	}
	info.Caller, info.Authenticated = id, true
	info.UserID, info.CompanyID = id.UserID, id.CompanyID
	return ctx
}

// identityFrom returns the verified caller, if the auth wrappers found one.
func identityFrom(ctx context.Context) (identity, bool) {
	info, ok := ctx.Value(requestInfoKey{}).(*requestInfo)
	if !ok || !info.Authenticated {
		return identity{}, false
	}
	return info.Caller, true
}

// Challenges sent in WWW-Authenticate (RFC 6750 §3).
const (
	challengeBearer            = `Bearer`
	challengeInvalidToken      = `Bearer error="invalid_token"`
	challengeInsufficientScope = `Bearer error="insufficient_scope"`
)

// authFailure is why a request was refused; authenticate decides it, respond writes it.
type authFailure struct {
	status    int
	code      string
	detail    string
	challenge string
	reason    string // metrics label
}

func (f *authFailure) respond(w http.ResponseWriter, r *http.Request) {
	if f.challenge != "" {
		w.Header().Set("WWW-Authenticate", f.challenge)
	}
	writeError(w, r, f.status, f.code, f.detail)
}

// bearerToken extracts the token of an "Authorization: Bearer <token>" header (the scheme is
// case-insensitive, RFC 7235 §2.1).
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	token := strings.TrimSpace(h[7:])
	return token, token != ""
}

// authenticate verifies the request's token and that its user exists and is active.
// requireCompany is StrictAuth's extra rule: the token must carry a company_id.
func (g *gateway) authenticate(r *http.Request, requireCompany bool) (Claims, *authFailure) {
	token, ok := bearerToken(r)
	if !ok {
		return Claims{}, &authFailure{http.StatusUnauthorized, codeNotAuthenticated, "Not authenticated", challengeBearer, "missing_token"}
	}
	claims, err := verifyToken(g.cfg.JWTSecret, token, g.now())
	if err != nil {
		code, detail, reason := codeInvalidToken, "Could not validate credentials", "invalid_token"
		switch {
		case errors.Is(err, errTokenExpired):
			code, detail, reason = codeTokenExpired, "Token has expired", "expired_token"
		case errors.Is(err, errTokenSignature):
			reason = "bad_signature"
		}
		return Claims{}, &authFailure{http.StatusUnauthorized, code, detail, challengeInvalidToken, reason}
	}
	if requireCompany && claims.CompanyID == "" {
		return Claims{}, &authFailure{http.StatusForbidden, codeCompanyRequired, "User is not associated with a company", challengeInsufficientScope, "no_company"}
	}
	active, err := g.users.active(r.Context(), claims.Subject)
	if err != nil {
		g.log.Warn("user check failed: database unavailable", "user_id", claims.Subject, "error", err.Error())
		return Claims{}, &authFailure{http.StatusServiceUnavailable, codeDatabaseUnavailable, "Authentication temporarily unavailable; try again shortly", "", "database_unavailable"}
	}
	if !active {
		return Claims{}, &authFailure{http.StatusUnauthorized, codeInvalidToken, "User not found or inactive", challengeInvalidToken, "inactive_user"}
	}
	return claims, nil
}

// requireAuth wraps next so it runs only for a verified caller, with the identity in the
// request context and in the request's log fields.
func (g *gateway) requireAuth(next http.Handler, requireCompany bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, failure := g.authenticate(r, requireCompany)
		if failure != nil {
			g.metrics.authFailure(failure.reason)
			failure.respond(w, r)
			return
		}
		withIdentity(r.Context(), identity{UserID: claims.Subject, CompanyID: claims.CompanyID, Email: claims.Email})
		next.ServeHTTP(w, r)
	})
}

// strictAuth is for the proxied routes: the token must carry a company.
func (g *gateway) strictAuth(next http.Handler) http.Handler { return g.requireAuth(next, true) }

// initialAuth is for the user routes: a token without a company is enough.
func (g *gateway) initialAuth(next http.Handler) http.Handler { return g.requireAuth(next, false) }

// limitCompany applies the optional per-company rate limit (off unless configured).
func (g *gateway) limitCompany(next http.Handler) http.Handler {
	if g.companyRate == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := identityFrom(r.Context())
		if ok, wait := g.companyRate.allow(id.CompanyID, g.now()); !ok {
			g.metrics.rateLimitRejection("company")
			w.Header().Set("Retry-After", retryAfterSeconds(wait))
			writeError(w, r, http.StatusTooManyRequests, codeRateLimited, "Rate limit exceeded for this company; retry later")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// userCacheMaxEntries bounds the cache; past it, the cache is cleared rather than grown
// (only callers holding a validly signed token can add entries).
const userCacheMaxEntries = 100_000

// userCache remembers for ttl whether a user exists and is active, keeping the database
// off the hot path. A user deactivated in the database is refused at most ttl later;
// ttl 0 checks the database on every request.
type userCache struct {
	store Store
	ttl   time.Duration
	max   int
	now   func() time.Time

	mu      sync.RWMutex
	entries map[string]userCacheEntry
}

type userCacheEntry struct {
	active  bool
	expires time.Time
}

func newUserCache(store Store, ttl time.Duration, max int) *userCache {
	return &userCache{store: store, ttl: ttl, max: max, now: time.Now, entries: make(map[string]userCacheEntry)}
}

// active reports whether the user exists and is active. An error means the database could
// not answer; it is never cached.
func (c *userCache) active(ctx context.Context, userID string) (bool, error) {
	if c.ttl > 0 {
		c.mu.RLock()
		e, ok := c.entries[userID]
		c.mu.RUnlock()
		if ok && c.now().Before(e.expires) {
			return e.active, nil
		}
	}
	user, err := c.store.UserByID(ctx, userID)
	active := err == nil && user.IsActive
	if err != nil && !errors.Is(err, errNotFound) {
		return false, err
	}
	if c.ttl > 0 {
		c.mu.Lock()
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
		c.entries[userID] = userCacheEntry{active: active, expires: c.now().Add(c.ttl)}
		c.mu.Unlock()
	}
	return active, nil
}

// forget drops a user's entry so a change the gateway itself made is seen at once.
func (c *userCache) forget(userID string) {
	c.mu.Lock()
	delete(c.entries, userID)
	c.mu.Unlock()
}
