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

// setCaller records the verified caller on the request's info (installed by the middleware, so
// no request copy is needed); the auth wrappers are its only writers.
func (info *requestInfo) setCaller(id identity) {
	info.Caller, info.Authenticated = id, true
	info.UserID, info.CompanyID = id.UserID, id.CompanyID
}

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

// checkTokenAgainstUser makes a token follow the database: it returns the reason (refusals) a
// token is refused by the user's current state, or "".
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

// requireAuth runs next only for a verified token that the user's current state (from the user
// cache: no database round trip at steady state) still allows.
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

// detailAdminRequired is what the platform's admin dashboard shows a non-administrator.
const detailAdminRequired = "Insufficient permissions. Administrator role required."

// adminAuth adds to StrictAuth that the user's database role (from the user cache) is admin:
// the token's roles claim is never read, so one issued before a demotion, or forged, grants nothing.
func (g *gateway) adminAuth(next http.Handler) http.Handler {
	return g.requireAuth(g.handle(func(w http.ResponseWriter, r *http.Request) error {
		if id, _ := identityFrom(r.Context()); id.Role != "admin" {
			return g.refuse("not_admin")
		}
		next.ServeHTTP(w, r)
		return nil
	}), authStrict)
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
