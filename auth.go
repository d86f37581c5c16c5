// auth.go: StrictAuth / InitialAuth wrappers (a token checked against the user's current
// state) and the per-company rate limit. Token signing and verification live in jwt.go, the
// user cache in usercache.go.
package main

import (
	"cmp"
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

// setCaller records the verified caller on the request's info, which the middleware installs
// before any route runs, so the identity needs no request copy; the auth wrappers are its only writers.
func (info *requestInfo) setCaller(id identity) {
	info.Caller, info.Authenticated = id, true
	info.UserID, info.CompanyID = id.UserID, id.CompanyID
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

// refusals is the answer to every reason a caller is refused, by the reason counted in
// gateway_auth_failures_total{reason}.
var refusals = map[string]*apiError{
	"missing_token":        {status: 401, code: codeNotAuthenticated, detail: "Not authenticated", challenge: challengeBearer},
	"invalid_token":        {status: 401, code: codeInvalidToken, detail: "Could not validate credentials", challenge: challengeInvalidToken},
	"bad_signature":        {status: 401, code: codeInvalidToken, detail: "Could not validate credentials", challenge: challengeInvalidToken},
	"expired_token":        {status: 401, code: codeTokenExpired, detail: "Token has expired", challenge: challengeInvalidToken},
	"no_company":           {status: 403, code: codeCompanyRequired, detail: "User is not associated with a company", challenge: challengeInsufficientScope},
	"database_unavailable": {status: 503, code: codeDatabaseUnavailable, detail: detailDBUnavailable},
	"inactive_user":        {status: 401, code: codeInvalidToken, detail: "User not found or inactive", challenge: challengeInvalidToken},
	"revoked_token":        {status: 401, code: codeTokenRevoked, detail: "Token has been revoked; sign in again", challenge: challengeInvalidToken},
	"company_inactive":     {status: 403, code: codeCompanyInactive, detail: "Company is inactive"},
	"stale_token":          {status: 401, code: codeTokenStale, detail: "Token is for a company the user no longer belongs to; sign in again", challenge: challengeInvalidToken},
	"not_admin":            {status: 403, code: codeAdminRequired, detail: detailAdminRequired},
	"session_expired":      {status: 401, code: codeSessionExpired, detail: "Session has expired; sign in again", challenge: challengeInvalidToken},
}

// refuse counts a refused caller and returns the answer.
func (g *gateway) refuse(reason string) *apiError {
	g.metrics.authFailure(reason)
	return refusals[reason]
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

// checkTokenAgainstUser applies the rules that make a token follow the database: the user
// is active, the token was issued after the user's last revocation, the company is active,
// and (StrictAuth and above) the token's company is still the user's. Both the cached state and a
// freshly read row go through it. A refusal is its reason (refusals).
func checkTokenAgainstUser(claims Claims, state userState, rule routeAuth) string {
	switch {
	case !state.Found || !state.Active:
		return "inactive_user"
	case state.TokensValidAfter != 0 && claims.IssuedAt < state.TokensValidAfter:
		// Whole seconds: a token issued in the second of the revocation stays valid, so a
		// sign-in right after a password change is not refused.
		return "revoked_token"
	case state.CompanyID != "" && !state.CompanyActive:
		return "company_inactive"
	case rule >= authStrict && claims.CompanyID != state.CompanyID:
		return "stale_token"
	}
	return ""
}

// requireAuth wraps next so it runs only for a verified caller: the token is verified, then
// checked against the user's current state (from the user cache: no database round trip at
// steady state), and the caller recorded on the request's info (setCaller).
func (g *gateway) requireAuth(next http.Handler, rule routeAuth) http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		token, ok := bearerToken(r)
		if !ok {
			return g.refuse("missing_token")
		}
		claims, err := g.tokens.verify(token, g.now())
		switch {
		case errors.Is(err, errTokenExpired):
			return g.refuse("expired_token")
		case errors.Is(err, errTokenSignature):
			return g.refuse("bad_signature")
		case err != nil:
			return g.refuse("invalid_token")
		case rule >= authStrict && claims.CompanyID == "":
			return g.refuse("no_company")
		}
		state, err := g.users.get(r.Context(), claims.Subject)
		if err != nil {
			g.log.Warn("user check failed: database unavailable", "user_id", claims.Subject, "error", err.Error())
			return g.refuse("database_unavailable")
		}
		if reason := checkTokenAgainstUser(claims, state, rule); reason != "" {
			return g.refuse(reason)
		}
		requestInfoFrom(r.Context()).setCaller(identity{
			UserID: claims.Subject, CompanyID: claims.CompanyID, Email: claims.Email, Role: state.Role,
			IssuedAt: claims.IssuedAt, SignedInAt: cmp.Or(claims.AuthTime, claims.IssuedAt),
		})
		next.ServeHTTP(w, r)
		return nil
	})
}

// strictAuth is for the proxied routes: the token must carry the user's current company.
func (g *gateway) strictAuth(next http.Handler) http.Handler { return g.requireAuth(next, authStrict) }

// detailAdminRequired is what the platform's admin dashboard shows a non-administrator.
const detailAdminRequired = "Insufficient permissions. Administrator role required."

// adminAuth is for the administration API: StrictAuth's rules, and the user's role in the
// database must be admin. The role comes from the user cache, which the database's change
// notifications keep within a second of the database; the token's roles claim is never
// read, so a token issued before a demotion (or a forged claim) grants nothing.
func (g *gateway) adminAuth(next http.Handler) http.Handler {
	return g.strictAuth(g.handle(func(w http.ResponseWriter, r *http.Request) error {
		if id, _ := identityFrom(r.Context()); id.Role != "admin" {
			return g.refuse("not_admin")
		}
		next.ServeHTTP(w, r)
		return nil
	}))
}

// limitCompany applies the optional per-company rate limit (off unless configured).
func (g *gateway) limitCompany(next http.Handler) http.Handler {
	if g.companyRate == nil {
		return next
	}
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		id, _ := identityFrom(r.Context())
		if ok, wait := g.companyRate.allow(id.CompanyID, g.now()); !ok {
			g.metrics.rateLimitRejection("company")
			return &apiError{status: http.StatusTooManyRequests, code: codeRateLimited,
				detail: "Rate limit exceeded for this company; retry later", retryAfter: retryAfterSeconds(wait)}
		}
		next.ServeHTTP(w, r)
		return nil
	})
}
