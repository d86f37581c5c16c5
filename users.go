// users.go: login, ensure-company, refresh and me (handlers only; no SQL here).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	detailBadCredentials = "Incorrect email or password"
	detailDBUnavailable  = "Authentication temporarily unavailable; try again shortly"
	// maxPasswordBytes caps what a client may send; bcrypt itself reads only 72 bytes.
	maxPasswordBytes = 1024
	maxEmailBytes    = 254 // RFC 5321 path limit
)

// input reads a request's parameters and JSON body fields, keeping the first error (as
// bufio.Scanner does): a handler reads everything, then checks err once.
type input struct {
	r      *http.Request
	fields map[string]json.RawMessage
	err    error
}

// readBody reads the JSON object body into in. Given allowed names, it refuses any other field:
// a misspelt field of a partial update would otherwise change nothing and still answer 200.
func (g *gateway) readBody(w http.ResponseWriter, in *input, optional bool, allowed ...string) *input {
	if in.err != nil {
		return in
	}
	in.fields, in.err = readJSONObject(w, in.r, g.cfg.MaxBodyBytes, g.cfg.ReadHeaderTimeout, optional)
	for name := range in.fields {
		if len(allowed) > 0 && !slices.Contains(allowed, name) {
			in.check(false, "Unknown field: %s (expected %s)", name, strings.Join(allowed, ", "))
		}
	}
	return in
}

// check sets err to a 422 with the formatted detail unless ok (or err is already set).
func (in *input) check(ok bool, format string, args ...any) {
	if !ok && in.err == nil {
		in.err = unprocessable(format, args...)
	}
}

// readJSONObject reads a JSON object body of at most maxBytes, arriving within wait: the server
// has no ReadTimeout (it would cut slow uploads), so a trickled body would hold a goroutine.
func readJSONObject(w http.ResponseWriter, r *http.Request, maxBytes int64, wait time.Duration, optional bool) (map[string]json.RawMessage, error) {
	rc := http.NewResponseController(w)
	deadline := wait > 0 && rc.SetReadDeadline(time.Now().Add(wait)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	if err != nil {
		// Closing keeps net/http from waiting to discard the rest of a body that may never come.
		w.Header().Set("Connection", "close")
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, newError(http.StatusRequestEntityTooLarge, codeBodyTooLarge, fmt.Sprintf("Request body too large (limit %d bytes)", maxBytes))
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, newError(http.StatusRequestTimeout, codeRequestTimeout, "Request body not received in time")
		}
		return nil, newError(http.StatusBadRequest, codeValidation, "Could not read request body")
	}
	if deadline {
		// Left in place, it would end net/http's background read, cancelling the request's context.
		rc.SetReadDeadline(time.Time{})
	}
	body = bytes.TrimSpace(body)
	if optional && (len(body) == 0 || string(body) == "null") {
		return nil, nil
	}
	if len(body) == 0 {
		return nil, unprocessable("Request body is required (a JSON object)")
	}
	if !json.Valid(body) {
		return nil, unprocessable("Request body is not valid JSON")
	}
	var fields map[string]json.RawMessage
	if body[0] != '{' || json.Unmarshal(body, &fields) != nil {
		return nil, unprocessable("Request body must be a JSON object")
	}
	return fields, nil
}

// has reports whether the body holds the field with a value other than null.
func (in *input) has(name string) bool {
	raw, ok := in.fields[name]
	return ok && string(raw) != "null"
}

// str reads a string field; absent and null read as "", refused when required.
func (in *input) str(name string, required bool) string {
	if in.err != nil {
		return ""
	}
	if !in.has(name) {
		in.check(!required, "Field required: %s", name)
		return ""
	}
	var s string
	if err := json.Unmarshal(in.fields[name], &s); err != nil {
		in.err = unprocessable("Field %s must be a string", name)
	}
	return s
}

// validEmail is deliberately plain; the database lookup decides the rest.
func validEmail(s string) bool {
	if len(s) < 3 || len(s) > maxEmailBytes || !utf8.ValidString(s) {
		return false
	}
	at := strings.IndexByte(s, '@')
	if at <= 0 || at != strings.LastIndexByte(s, '@') || at == len(s)-1 {
		return false
	}
	domain := s[at+1:]
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

type loginResponse struct {
	AccessToken string  `json:"access_token"`
	TokenType   string  `json:"token_type"`
	UserID      string  `json:"user_id"`
	Email       string  `json:"email"`
	FullName    *string `json:"full_name"`
	Role        string  `json:"role"`
	CompanyID   *string `json:"company_id"`
}

// nullable returns nil for "" so JSON shows null.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// issueToken signs the user's row for a session begun at signedIn (Unix seconds; 0: now). The
// token never outlives the session: exp is capped at signedIn + GATEWAY_SESSION_MAX_AGE.
func (g *gateway) issueToken(u User, signedIn int64) (string, error) {
	now := g.now()
	if signedIn == 0 {
		signedIn = now.Unix()
	}
	c := Claims{
		Subject:   u.ID,
		Email:     u.Email,
		CompanyID: u.CompanyID,
		Name:      u.FullName,
		IssuedAt:  now.Unix(),
		ExpiresAt: min(now.Add(g.cfg.JWTExpire).Unix(), signedIn+int64(g.cfg.SessionMaxAge/time.Second)),
		AuthTime:  signedIn,
	}
	if u.Role != "" {
		c.Roles = []string{u.Role}
	}
	token, err := signToken(g.cfg.JWTSecret, c)
	if err != nil {
		return "", fmt.Errorf("sign token for user %s: %w", u.ID, err)
	}
	return token, nil
}

// handleLogin: unknown email, wrong password and inactive user get the same 401 after the same
// bcrypt work, so neither answer nor timing tells which emails exist.
func (g *gateway) handleLogin() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		in := g.readBody(w, &input{r: r}, false)
		email := in.str("email", true)
		in.check(validEmail(email), "Field email must be a valid email address")
		password := in.str("password", true)
		in.check(password != "" && len(password) <= maxPasswordBytes, "Field password must be 1 to %d bytes", maxPasswordBytes)
		if in.err != nil {
			return in.err
		}

		// IPv6 clients count by /64 (loginClientKey): one host holds a whole /64.
		client := requestInfoFrom(r.Context())
		ipKey, emailKey := loginClientKey(client.ClientIP), strings.ToLower(email)
		now := g.now()
		// Charged before bcrypt (see chargeLogin); the outcome below settles the charge.
		charge, limit, wait := g.chargeLogin(ipKey, emailKey, client.ClientIsProxy, now)
		if limit != "" {
			return g.refuseLogin(limit, wait)
		}

		user, err := g.store.UserByEmail(r.Context(), email)
		if err != nil && !errors.Is(err, errNotFound) {
			g.refundLogin(charge)
			g.metrics.login("unavailable")
			return dbUnavailable("login", err)
		}
		// An unknown user has no hash: the pool compares its dummy, in a wrong password's time.
		match, err := g.comparePassword(r.Context(), charge, user.HashedPassword, password)
		if err != nil {
			// The client left while waiting: nothing to do with the pool's capacity.
			outcome := "client_gone"
			if errors.Is(err, errHashBusy) {
				outcome = "busy"
			}
			g.metrics.login(outcome)
			return hashFailed(err)
		}
		if !match || user.ID == "" || !user.IsActive {
			g.metrics.login("failure")
			return &apiError{status: http.StatusUnauthorized, code: codeInvalidCredentials, detail: detailBadCredentials, challenge: challengeBearer}
		}
		g.loginByIP.refund(ipKey)
		g.loginByEmail.reset(emailKey)
		if charge.tookGlobal {
			g.loginGlobal.refund(loginGlobalKey)
		}
		g.knownClients.add(emailKey, ipKey, now)

		if user.CompanyID == "" {
			// The frontend never calls ensure-company: an entitled user joins at login.
			if user, err = g.joinEntitledCompany(r.Context(), user); err != nil {
				g.metrics.login("unavailable")
				return dbUnavailable("login", err)
			}
		}
		if user.CompanyID != "" && !user.CompanyActive {
			// Only after the right password, so it tells nothing to someone without it.
			g.metrics.login("company_inactive")
			return newError(http.StatusForbidden, codeCompanyInactive, "Company is inactive")
		}

		if err := g.store.TouchLastLogin(r.Context(), user.ID); err != nil {
			// The login itself is valid; only the bookkeeping column missed this one.
			g.log.Warn("login: could not update last_login", "user_id", user.ID, "error", err.Error())
		}
		token, err := g.issueToken(user, 0)
		if err != nil {
			return fmt.Errorf("login: %w", err)
		}
		client.UserID, client.CompanyID = user.ID, user.CompanyID
		g.metrics.login("success")
		writeJSON(w, http.StatusOK, loginResponse{
			AccessToken: token, TokenType: "bearer", UserID: user.ID, Email: user.Email,
			FullName: nullable(user.FullName), Role: user.Role, CompanyID: nullable(user.CompanyID),
		})
		return nil
	})
}

func (g *gateway) refuseLogin(limit string, wait time.Duration) error {
	g.metrics.rateLimitRejection(limit)
	g.metrics.login("rate_limited")
	return &apiError{status: http.StatusTooManyRequests, code: codeLoginRateLimited,
		detail: "Too many failed login attempts; try again later", retryAfter: retryAfterSeconds(wait)}
}

// comparePassword puts a returning pair first. When the pool fails only a returning pair is
// refunded, so a flood that keeps hashing saturated pays for every attempt, answered or not.
func (g *gateway) comparePassword(ctx context.Context, charge loginCharge, hash, password string) (bool, error) {
	class := hashOrdinary
	if charge.known {
		class = hashFirst
	}
	match, err := g.hashes.compare(ctx, class, hash, password)
	if err != nil && charge.known {
		g.refundLogin(charge)
	}
	return match, err
}

// hashFailed answers a failed hashing call: busy, or nothing when the client left.
func hashFailed(err error) error {
	if errors.Is(err, errHashBusy) {
		return &apiError{status: http.StatusServiceUnavailable, code: codeLoginBusy,
			detail: "Too many logins in progress; try again shortly", retryAfter: "1"}
	}
	return nil
}

// currentUser loads the caller's row and applies the token rules again (the cache may be older).
func (g *gateway) currentUser(r *http.Request) (User, error) {
	id, _ := identityFrom(r.Context())
	user, err := g.store.UserByID(r.Context(), id.UserID)
	if err != nil && !errors.Is(err, errNotFound) {
		return User{}, dbUnavailable("load user", err)
	}
	var state userState
	if err == nil {
		state = stateOf(user)
	}
	if reason := checkTokenAgainstUser(Claims{IssuedAt: id.IssuedAt}, state, authInitial); reason != "" {
		g.users.forget(id.UserID)
		return User{}, g.refuse(reason)
	}
	return user, nil
}

// sessionUser is currentUser for a route that issues a new token, with the session's sign-in
// time; it refuses a session older than GATEWAY_SESSION_MAX_AGE, which a new token would extend.
func (g *gateway) sessionUser(r *http.Request) (user User, signedIn int64, err error) {
	if user, err = g.currentUser(r); err != nil {
		return User{}, 0, err
	}
	id, _ := identityFrom(r.Context())
	if g.now().Unix()-id.SignedInAt >= int64(g.cfg.SessionMaxAge/time.Second) {
		return User{}, 0, g.refuse("session_expired")
	}
	return user, id.SignedInAt, nil
}

// joinEntitledCompany moves a user without a company into the one of entitledCompany (SPEC §7
// steps 3–5), or returns them unchanged when none applies. An error means the database failed.
func (g *gateway) joinEntitledCompany(ctx context.Context, user User) (User, error) {
	for attempt := 0; attempt < 3; attempt++ {
		companyID, invitationID, err := g.entitledCompany(ctx, user)
		if err != nil || companyID == "" {
			return user, err
		}
		joined, err := g.store.JoinCompany(ctx, user.ID, companyID, invitationID)
		switch {
		case err == nil:
			g.users.forget(user.ID)
			g.log.Info("user joined company", "user_id", user.ID, "company_id", companyID, "invitation_id", invitationID)
			return joined, nil
		case errors.Is(err, errInvitationClosed) || errors.Is(err, errNotFound):
			// Revoked, accepted or deactivated between the lookup and the join: look again.
			continue
		default:
			return user, err
		}
	}
	return user, nil
}

// entitledCompany is the newest open invitation's company, else the email domain's, else
// GATEWAY_DEFAULT_COMPANY_ID if active; invitationID is "" unless an invitation grants it.
func (g *gateway) entitledCompany(ctx context.Context, user User) (companyID, invitationID string, err error) {
	inv, err := g.store.OpenInvitation(ctx, user.Email, "")
	switch {
	case err == nil:
		return inv.CompanyID, inv.ID, nil
	case !errors.Is(err, errNotFound):
		return "", "", err
	}
	if at := strings.LastIndexByte(user.Email, '@'); at >= 0 {
		companyID, err := g.store.CompanyForDomain(ctx, strings.ToLower(user.Email[at+1:]))
		switch {
		case err == nil:
			return companyID, "", nil
		case !errors.Is(err, errNotFound):
			return "", "", err
		}
	}
	if g.cfg.DefaultCompanyID != "" {
		active, err := g.store.CompanyActive(ctx, g.cfg.DefaultCompanyID)
		if err != nil || !active {
			return "", "", err
		}
		return g.cfg.DefaultCompanyID, "", nil
	}
	return "", "", nil
}

type ensureCompanyResponse struct {
	UserID         string `json:"user_id"`
	CompanyID      string `json:"company_id"`
	Message        string `json:"message"`
	NewAccessToken string `json:"new_access_token"`
	TokenType      string `json:"token_type"`
}

// handleEnsureCompany (SPEC §7) honours a body company_id only when it is the caller's current
// company, they hold an open invitation to it, or they are admin; without one, a caller with no
// company gets the one they are entitled to. It returns a token carrying the company.
func (g *gateway) handleEnsureCompany() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		in := g.readBody(w, &input{r: r}, true)
		requested := in.str("company_id", false)
		in.check(requested == "" || isUUID(requested), "Field company_id must be a UUID")
		if in.err != nil {
			return in.err
		}
		requested = strings.ToLower(requested)
		user, signedIn, err := g.sessionUser(r)
		if err != nil {
			return err
		}
		ctx := r.Context()
		notFound := newError(http.StatusBadRequest, codeCompanyNotFound, "Company not found or inactive")
		forbidden := newError(http.StatusForbidden, codeCompanyForbidden, "Not allowed to join this company")

		message := "User is already associated with this company"
		switch {
		case requested != "" && requested != user.CompanyID:
			active, err := g.store.CompanyActive(ctx, requested)
			if err != nil {
				return dbUnavailable("ensure-company", err)
			}
			if !active {
				return notFound
			}
			invitationID := ""
			inv, err := g.store.OpenInvitation(ctx, user.Email, requested)
			switch {
			case err == nil:
				invitationID = inv.ID
			case !errors.Is(err, errNotFound):
				return dbUnavailable("ensure-company", err)
			case user.Role != "admin":
				g.log.Warn("ensure-company refused: not entitled", "user_id", user.ID, "company_id", requested)
				return forbidden
			}
			joined, err := g.store.JoinCompany(ctx, user.ID, requested, invitationID)
			switch {
			case errors.Is(err, errInvitationClosed):
				return forbidden
			case errors.Is(err, errNotFound):
				return notFound
			case err != nil:
				return dbUnavailable("ensure-company", err)
			}
			g.users.forget(user.ID)
			g.log.Info("user joined company", "user_id", user.ID, "company_id", requested, "invitation_id", invitationID)
			user, message = joined, "Company association updated"
		case user.CompanyID == "":
			joined, err := g.joinEntitledCompany(ctx, user)
			if err != nil {
				return dbUnavailable("ensure-company", err)
			}
			if joined.CompanyID == "" {
				return newError(http.StatusBadRequest, codeCompanyRequired, "No company_id given, the user has none and no invitation, email domain or default company applies")
			}
			user, message = joined, "Company association updated"
		}
		token, err := g.issueToken(user, signedIn)
		if err != nil {
			return fmt.Errorf("ensure-company: %w", err)
		}
		requestInfoFrom(ctx).CompanyID = user.CompanyID
		writeJSON(w, http.StatusOK, ensureCompanyResponse{
			UserID: user.ID, CompanyID: user.CompanyID, Message: message, NewAccessToken: token, TokenType: "bearer",
		})
		return nil
	})
}

type refreshResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
}

// handleRefresh signs the user's current row, so a changed company, name or role reaches the
// token; the session keeps its original sign-in time.
func (g *gateway) handleRefresh() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		user, signedIn, err := g.sessionUser(r)
		if err != nil {
			return err
		}
		token, err := g.issueToken(user, signedIn)
		if err != nil {
			return fmt.Errorf("refresh: %w", err)
		}
		writeJSON(w, http.StatusOK, refreshResponse{AccessToken: token, TokenType: "bearer"})
		return nil
	})
}

// handleLogout revokes every token issued before now, on every replica within the notification delay.
func (g *gateway) handleLogout() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		id, _ := identityFrom(r.Context())
		if _, err := g.store.RevokeSessions(r.Context(), id.UserID); err != nil {
			return userWriteFailed("logout", err)
		}
		g.users.forget(id.UserID)
		g.log.Info("sessions revoked", "user_id", id.UserID, "by", "logout")
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// userWriteFailed answers a failed change to the caller's row: gone meanwhile (401), or 503.
func userWriteFailed(what string, err error) error {
	if errors.Is(err, errNotFound) {
		return refusals["inactive_user"]
	}
	return dbUnavailable(what, err)
}

func dbUnavailable(what string, err error) error {
	return databaseUnavailable(detailDBUnavailable, what, err)
}

const minUserPasswordBytes = 8

// handleChangePassword checks the current password as a login attempt would. Success revokes
// every older token, this one included, and returns none: the user signs in again.
func (g *gateway) handleChangePassword() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		in := g.readBody(w, &input{r: r}, false)
		current := in.str("current_password", true)
		in.check(current != "" && len(current) <= maxPasswordBytes, "Field current_password must be 1 to %d bytes", maxPasswordBytes)
		next := in.str("new_password", true)
		in.check(len(next) >= minUserPasswordBytes && len(next) <= maxPasswordBytes,
			"Field new_password must be %d to %d bytes", minUserPasswordBytes, maxPasswordBytes)
		if in.err != nil {
			return in.err
		}
		user, err := g.currentUser(r)
		if err != nil {
			return err
		}

		// The same limits as a login: a stolen token must not turn this into a password oracle.
		client := requestInfoFrom(r.Context())
		charge, limit, wait := g.chargeLogin(loginClientKey(client.ClientIP), strings.ToLower(user.Email), client.ClientIsProxy, g.now())
		if limit != "" {
			return g.refuseLogin(limit, wait)
		}
		match, err := g.comparePassword(r.Context(), charge, user.HashedPassword, current)
		if err != nil {
			return hashFailed(err)
		}
		if !match {
			return newError(http.StatusBadRequest, codeInvalidCredentials, "Current password is incorrect")
		}
		g.refundLogin(charge) // not a failure
		hash, err := g.hashes.hash(r.Context(), next)
		if err != nil {
			return hashFailed(err)
		}
		if err := g.store.SetPassword(r.Context(), user.Email, hash); err != nil {
			return userWriteFailed("change password", err)
		}
		g.users.forget(user.ID)
		g.log.Info("sessions revoked", "user_id", user.ID, "by", "password_change")
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

type meResponse struct {
	UserID    string  `json:"user_id"`
	Email     string  `json:"email"`
	FullName  *string `json:"full_name"`
	Role      string  `json:"role"`
	CompanyID *string `json:"company_id"`
	IsActive  bool    `json:"is_active"`
}

// handleMe returns the caller's profile from the database (never the password hash).
func (g *gateway) handleMe() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		user, err := g.currentUser(r)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, meResponse{
			UserID: user.ID, Email: user.Email, FullName: nullable(user.FullName),
			Role: user.Role, CompanyID: nullable(user.CompanyID), IsActive: user.IsActive,
		})
		return nil
	})
}
