// auth.go: StrictAuth / InitialAuth wrappers (a token checked against the user's current
// state) and the per-company rate limit. Token signing and verification live in jwt.go, the
// user cache in usercache.go.
package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

// identity is the verified caller, put in the request context by the auth wrappers.
type identity struct {
	UserID     string
	CompanyID  string // the token's; "" when it has none (InitialAuth only)
	Email      string
	Role       string // the user's role in the database (never the token's roles claim)
	IssuedAt   int64  // the token's iat
	SignedInAt int64  // the original sign-in: auth_time, else iat
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

// authRule is what a route asks of its caller beyond a valid token of an active user.
type authRule int

const (
	// initialRule (InitialAuth): the user routes, which work from the database row; a token
	// without a company, or with a company the user has since left, is enough.
	initialRule authRule = iota
	// strictRule (StrictAuth): the proxied routes; the token's company must be the user's
	// current company.
	strictRule
)

// authenticate verifies the request's token and checks it against the user's current state
// (from the user cache: no database round trip at steady state).
func (g *gateway) authenticate(r *http.Request, rule authRule) (Claims, userState, *authFailure) {
	token, ok := bearerToken(r)
	if !ok {
		return Claims{}, userState{}, &authFailure{http.StatusUnauthorized, codeNotAuthenticated, "Not authenticated", challengeBearer, "missing_token"}
	}
	claims, err := g.tokens.verify(token, g.now())
	if err != nil {
		code, detail, reason := codeInvalidToken, "Could not validate credentials", "invalid_token"
		switch {
		case errors.Is(err, errTokenExpired):
			code, detail, reason = codeTokenExpired, "Token has expired", "expired_token"
		case errors.Is(err, errTokenSignature):
			reason = "bad_signature"
		}
		return Claims{}, userState{}, &authFailure{http.StatusUnauthorized, code, detail, challengeInvalidToken, reason}
	}
	if rule == strictRule && claims.CompanyID == "" {
		return Claims{}, userState{}, &authFailure{http.StatusForbidden, codeCompanyRequired, "User is not associated with a company", challengeInsufficientScope, "no_company"}
	}
	state, err := g.users.get(r.Context(), claims.Subject)
	if err != nil {
		g.log.Warn("user check failed: database unavailable", "user_id", claims.Subject, "error", err.Error())
		return Claims{}, userState{}, &authFailure{http.StatusServiceUnavailable, codeDatabaseUnavailable, detailDBUnavailable, "", "database_unavailable"}
	}
	if failure := checkTokenAgainstUser(claims, state, rule); failure != nil {
		return Claims{}, userState{}, failure
	}
	return claims, state, nil
}

// checkTokenAgainstUser applies the rules that make a token follow the database: the user
// is active, the token was issued after the user's last revocation, the company is active,
// and (strictRule) the token's company is still the user's. Both the cached state and a
// freshly read row go through it.
func checkTokenAgainstUser(claims Claims, state userState, rule authRule) *authFailure {
	switch {
	case !state.Found || !state.Active:
		return &authFailure{http.StatusUnauthorized, codeInvalidToken, "User not found or inactive", challengeInvalidToken, "inactive_user"}
	case state.TokensValidAfter != 0 && claims.IssuedAt < state.TokensValidAfter:
		// Whole seconds: a token issued in the second of the revocation stays valid, so a
		// sign-in right after a password change is not refused.
		return &authFailure{http.StatusUnauthorized, codeTokenRevoked, "Token has been revoked; sign in again", challengeInvalidToken, "revoked_token"}
	case state.CompanyID != "" && !state.CompanyActive:
		return &authFailure{http.StatusForbidden, codeCompanyInactive, "Company is inactive", "", "company_inactive"}
	case rule == strictRule && claims.CompanyID != state.CompanyID:
		return &authFailure{http.StatusUnauthorized, codeTokenStale, "Token is for a company the user no longer belongs to; sign in again", challengeInvalidToken, "stale_token"}
	}
	return nil
}

// requireAuth wraps next so it runs only for a verified caller, with the identity in the
// request context and in the request's log fields.
func (g *gateway) requireAuth(next http.Handler, rule authRule) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, state, failure := g.authenticate(r, rule)
		if failure != nil {
			g.metrics.authFailure(failure.reason)
			failure.respond(w, r)
			return
		}
		signedIn := claims.AuthTime
		if signedIn == 0 {
			signedIn = claims.IssuedAt // tokens from before auth_time count from their issue
		}
		withIdentity(r.Context(), identity{
			UserID: claims.Subject, CompanyID: claims.CompanyID, Email: claims.Email,
			Role: state.Role, IssuedAt: claims.IssuedAt, SignedInAt: signedIn,
		})
		next.ServeHTTP(w, r)
	})
}

// strictAuth is for the proxied routes: the token must carry the user's current company.
func (g *gateway) strictAuth(next http.Handler) http.Handler { return g.requireAuth(next, strictRule) }

// detailAdminRequired is what the platform's admin dashboard shows a non-administrator.
const detailAdminRequired = "Insufficient permissions. Administrator role required."

// adminAuth is for the administration API: StrictAuth's rules, and the user's role in the
// database must be admin. The role comes from the user cache, which the database's change
// notifications keep within a second of the database; the token's roles claim is never
// read, so a token issued before a demotion (or a forged claim) grants nothing.
func (g *gateway) adminAuth(next http.Handler) http.Handler {
	return g.strictAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, _ := identityFrom(r.Context()); id.Role != "admin" {
			g.metrics.authFailure("not_admin")
			writeError(w, r, http.StatusForbidden, codeAdminRequired, detailAdminRequired)
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// initialAuth is for the user routes: a token without a company is enough.
func (g *gateway) initialAuth(next http.Handler) http.Handler {
	return g.requireAuth(next, initialRule)
}

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
