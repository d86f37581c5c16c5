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

// requestError is a client mistake in a request body, answered with status and detail.
type requestError struct {
	status int
	code   string
	detail string
}

func (e *requestError) Error() string { return e.detail }

// write answers the request with the error.
func (e *requestError) write(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, e.status, e.code, e.detail)
}

func unprocessable(format string, args ...any) *requestError {
	return &requestError{http.StatusUnprocessableEntity, codeValidation, fmt.Sprintf(format, args...)}
}

// readJSONObject reads a JSON object body of at most maxBytes, arriving within wait, into
// fields. An empty body is allowed only when optional is true (fields is then nil).
//
// The wait matters because the server has no ReadTimeout (it would cut slow proxied
// uploads): without it a client that sends the headers and then no body, or a byte now and
// then, would hold a connection and a goroutine for as long as it likes.
func readJSONObject(w http.ResponseWriter, r *http.Request, maxBytes int64, wait time.Duration, optional bool) (map[string]json.RawMessage, *requestError) {
	rc := http.NewResponseController(w)
	deadline := wait > 0 && rc.SetReadDeadline(time.Now().Add(wait)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	if err != nil {
		// The connection cannot carry another request after a broken body, and closing it
		// keeps net/http from waiting to discard the rest of a body that may never come.
		w.Header().Set("Connection", "close")
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &requestError{http.StatusRequestEntityTooLarge, codeBodyTooLarge, fmt.Sprintf("Request body too large (limit %d bytes)", maxBytes)}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &requestError{http.StatusRequestTimeout, codeRequestTimeout, "Request body not received in time"}
		}
		return nil, &requestError{http.StatusBadRequest, codeValidation, "Could not read request body"}
	}
	if deadline {
		// Lifted once the body is in: left in place, it would end net/http's background read
		// of the connection mid-handler, and that cancels the request's context.
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

// stringField reads fields[name] as a string; null counts as absent.
func stringField(fields map[string]json.RawMessage, name string, required bool) (string, bool, *requestError) {
	raw, ok := fields[name]
	if !ok || string(raw) == "null" {
		if required {
			return "", false, unprocessable("Field required: %s", name)
		}
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, unprocessable("Field %s must be a string", name)
	}
	return s, true, nil
}

// validEmail is a deliberately plain check: one '@', a non-empty local part, a dotted
// domain, no spaces or control characters. The database lookup decides the rest.
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

// issueToken builds a token from the user's current row for a session that began at
// signedIn (Unix seconds; 0 means now, a new sign-in). The token never outlives the session:
// its exp is capped at signedIn + GATEWAY_SESSION_MAX_AGE.
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

// handleLogin checks email and password. Unknown email, wrong password and inactive user
// get the same 401 body after the same bcrypt work, so neither the answer nor its timing
// tells which emails exist.
func (g *gateway) handleLogin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A body of at most MaxBodyBytes has as long to arrive as the headers had.
		fields, reqErr := readJSONObject(w, r, g.cfg.MaxBodyBytes, g.cfg.ReadHeaderTimeout, false)
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		email, _, reqErr := stringField(fields, "email", true)
		if reqErr == nil && !validEmail(email) {
			reqErr = unprocessable("Field email must be a valid email address")
		}
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		password, _, reqErr := stringField(fields, "password", true)
		if reqErr == nil && (password == "" || len(password) > maxPasswordBytes) {
			reqErr = unprocessable("Field password must be 1 to %d bytes", maxPasswordBytes)
		}
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}

		// IPv6 clients count by /64 (loginClientKey): one host holds a whole /64.
		client := requestInfoFrom(r.Context())
		ipKey, emailKey := loginClientKey(client.ClientIP), strings.ToLower(email)
		now := g.now()
		// Tokens are taken before bcrypt, so simultaneous guesses cannot all pass a check made
		// before any of them is charged; whatever turns out not to be a failed login gives
		// them back. An address this email has logged in from before is exempt from the email
		// and per-replica limits, so others' failures cannot lock the user out of it (see
		// knownClients), and is served first when hashing is saturated.
		charge, limit, wait := g.chargeLogin(ipKey, emailKey, client.ClientIsProxy, now)
		if limit != "" {
			g.refuseLogin(w, r, limit, wait)
			return
		}

		user, err := g.store.UserByEmail(r.Context(), email)
		if err != nil && !errors.Is(err, errNotFound) {
			g.refundLogin(charge)
			g.metrics.login("unavailable")
			g.databaseUnavailable(w, r, "login", err)
			return
		}
		hash := user.HashedPassword
		if err != nil {
			hash = dummyHash
		}
		class := hashOrdinary
		if charge.known {
			class = hashFirst
		}
		match, err := g.hashes.compareAs(r.Context(), class, hash, password)
		if err != nil {
			// Only a returning pair is refunded: a flood that keeps hashing saturated must
			// pay for every attempt it makes, answered or not.
			g.loginHashFailed(charge)
			if !errors.Is(err, errHashBusy) {
				// The only other error is the request's: its client left while the login
				// waited for a worker. Nobody reads an answer, and it says nothing of the
				// pool's capacity, which the "busy" count is watched for.
				g.metrics.login("client_gone")
				return
			}
			g.metrics.login("busy")
			writeHashBusy(w, r)
			return
		}
		g.loginPasswordChecked(charge, match && user.ID != "" && user.IsActive)
		if !match || user.ID == "" || !user.IsActive {
			g.metrics.login("failure")
			w.Header().Set("WWW-Authenticate", challengeBearer)
			writeError(w, r, http.StatusUnauthorized, codeInvalidCredentials, detailBadCredentials)
			return
		}
		g.loginByIP.refund(ipKey)
		g.loginByEmail.reset(emailKey)
		g.knownClients.add(emailKey, ipKey, now)

		if user.CompanyID == "" {
			// The frontend never calls ensure-company: an invited user, or one whose email
			// domain belongs to a company, must land in it straight from the login form.
			joined, err := g.joinEntitledCompany(r.Context(), user)
			if err != nil {
				g.metrics.login("unavailable")
				g.databaseUnavailable(w, r, "login", err)
				return
			}
			user = joined
		}
		if user.CompanyID != "" && !user.CompanyActive {
			// Only after the right password: a wrong one gets the usual 401, so this answer
			// tells nothing to someone who does not know the password.
			g.metrics.login("company_inactive")
			writeError(w, r, http.StatusForbidden, codeCompanyInactive, "Company is inactive")
			return
		}

		if err := g.store.TouchLastLogin(r.Context(), user.ID); err != nil {
			// The login itself is valid; only the bookkeeping column missed this one.
			g.log.Warn("login: could not update last_login", "user_id", user.ID, "error", err.Error())
		}
		token, err := g.issueToken(user, 0)
		if err != nil {
			g.log.Error("login: issue token", "error", err.Error())
			writeError(w, r, http.StatusInternalServerError, codeInternal, "Internal server error")
			return
		}
		info := requestInfoFrom(r.Context())
		info.UserID, info.CompanyID = user.ID, user.CompanyID
		g.metrics.login("success")
		writeJSON(w, http.StatusOK, loginResponse{
			AccessToken: token, TokenType: "bearer", UserID: user.ID, Email: user.Email,
			FullName: nullable(user.FullName), Role: user.Role, CompanyID: nullable(user.CompanyID),
		})
	})
}

// refuseLogin answers a login refused by the failed-login limit named limit.
func (g *gateway) refuseLogin(w http.ResponseWriter, r *http.Request, limit string, wait time.Duration) {
	g.metrics.rateLimitRejection(limit)
	g.metrics.login("rate_limited")
	w.Header().Set("Retry-After", retryAfterSeconds(wait))
	writeError(w, r, http.StatusTooManyRequests, codeLoginRateLimited, "Too many failed login attempts; try again later")
}

// currentUser loads the authenticated caller's row and applies the token rules to it (the
// cached state the wrapper checked may be a moment older), answering a failure itself.
func (g *gateway) currentUser(w http.ResponseWriter, r *http.Request) (User, bool) {
	id, _ := identityFrom(r.Context())
	user, err := g.store.UserByID(r.Context(), id.UserID)
	if err != nil && !errors.Is(err, errNotFound) {
		g.databaseUnavailable(w, r, "load user", err)
		return User{}, false
	}
	var state userState
	if err == nil {
		state = stateOf(user)
	}
	if failure := checkTokenAgainstUser(Claims{IssuedAt: id.IssuedAt}, state, initialRule); failure != nil {
		g.users.forget(id.UserID)
		g.metrics.authFailure(failure.reason)
		failure.respond(w, r)
		return User{}, false
	}
	return user, true
}

// joinEntitledCompany moves a user without a company into the one they are entitled to
// without asking (SPEC §7 steps 3–5): their newest open invitation (accepting it), else the
// active company registered for their email's domain, else GATEWAY_DEFAULT_COMPANY_ID. It
// returns the user unchanged when none applies. An error means the database failed.
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

// entitledCompany finds the company of steps 3–5 and the invitation that grants it ("" when
// a domain or the default grants it); "" and no error when nothing does.
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

// sessionExpired answers 401 session_expired when the caller's sign-in is older than
// GATEWAY_SESSION_MAX_AGE: a new token would extend a session that has to end.
func (g *gateway) sessionExpired(w http.ResponseWriter, r *http.Request) bool {
	id, _ := identityFrom(r.Context())
	if g.now().Unix()-id.SignedInAt < int64(g.cfg.SessionMaxAge/time.Second) {
		return false
	}
	g.metrics.authFailure("session_expired")
	w.Header().Set("WWW-Authenticate", challengeInvalidToken)
	writeError(w, r, http.StatusUnauthorized, codeSessionExpired, "Session has expired; sign in again")
	return true
}

type ensureCompanyResponse struct {
	UserID         string `json:"user_id"`
	CompanyID      string `json:"company_id"`
	Message        string `json:"message"`
	NewAccessToken string `json:"new_access_token"`
	TokenType      string `json:"token_type"`
}

// handleEnsureCompany puts the caller in a company they are entitled to and returns a token
// carrying it (SPEC §7). A body company_id is honoured only when it is the caller's current
// company, they hold an open invitation to it, or their database role is admin; without a
// body the current company stays, and a user without one gets their invitation, their
// domain's company or the default company.
func (g *gateway) handleEnsureCompany() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fields, reqErr := readJSONObject(w, r, g.cfg.MaxBodyBytes, g.cfg.ReadHeaderTimeout, true)
		var requested string
		if reqErr == nil {
			requested, _, reqErr = stringField(fields, "company_id", false)
		}
		if reqErr == nil && requested != "" && !isUUID(requested) {
			reqErr = unprocessable("Field company_id must be a UUID")
		}
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		requested = strings.ToLower(requested)

		user, ok := g.currentUser(w, r)
		if !ok || g.sessionExpired(w, r) {
			return
		}
		ctx := r.Context()

		message := "User is already associated with this company"
		switch {
		case requested != "" && requested != user.CompanyID:
			active, err := g.store.CompanyActive(ctx, requested)
			if err != nil {
				g.databaseUnavailable(w, r, "ensure-company", err)
				return
			}
			if !active {
				writeError(w, r, http.StatusBadRequest, codeCompanyNotFound, "Company not found or inactive")
				return
			}
			invitationID := ""
			inv, err := g.store.OpenInvitation(ctx, user.Email, requested)
			switch {
			case err == nil:
				invitationID = inv.ID
			case !errors.Is(err, errNotFound):
				g.databaseUnavailable(w, r, "ensure-company", err)
				return
			case user.Role != "admin":
				g.log.Warn("ensure-company refused: not entitled", "user_id", user.ID, "company_id", requested)
				writeError(w, r, http.StatusForbidden, codeCompanyForbidden, "Not allowed to join this company")
				return
			}
			joined, err := g.store.JoinCompany(ctx, user.ID, requested, invitationID)
			switch {
			case errors.Is(err, errInvitationClosed):
				writeError(w, r, http.StatusForbidden, codeCompanyForbidden, "Not allowed to join this company")
				return
			case errors.Is(err, errNotFound):
				writeError(w, r, http.StatusBadRequest, codeCompanyNotFound, "Company not found or inactive")
				return
			case err != nil:
				g.databaseUnavailable(w, r, "ensure-company", err)
				return
			}
			g.users.forget(user.ID)
			g.log.Info("user joined company", "user_id", user.ID, "company_id", requested, "invitation_id", invitationID)
			user, message = joined, "Company association updated"
		case user.CompanyID == "":
			joined, err := g.joinEntitledCompany(ctx, user)
			if err != nil {
				g.databaseUnavailable(w, r, "ensure-company", err)
				return
			}
			if joined.CompanyID == "" {
				writeError(w, r, http.StatusBadRequest, codeCompanyRequired, "No company_id given, the user has none and no invitation, email domain or default company applies")
				return
			}
			user, message = joined, "Company association updated"
		}
		id, _ := identityFrom(ctx)
		token, err := g.issueToken(user, id.SignedInAt)
		if err != nil {
			g.log.Error("ensure-company: issue token", "error", err.Error())
			writeError(w, r, http.StatusInternalServerError, codeInternal, "Internal server error")
			return
		}
		requestInfoFrom(ctx).CompanyID = user.CompanyID
		writeJSON(w, http.StatusOK, ensureCompanyResponse{
			UserID: user.ID, CompanyID: user.CompanyID, Message: message, NewAccessToken: token, TokenType: "bearer",
		})
	})
}

type refreshResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
}

// handleRefresh issues a fresh token from the user's current database row, so a changed
// company, name or role reaches the token; the session keeps its original sign-in time and
// ends GATEWAY_SESSION_MAX_AGE after it.
func (g *gateway) handleRefresh() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, ok := g.currentUser(w, r)
		if !ok || g.sessionExpired(w, r) {
			return
		}
		id, _ := identityFrom(r.Context())
		token, err := g.issueToken(user, id.SignedInAt)
		if err != nil {
			g.log.Error("refresh: issue token", "error", err.Error())
			writeError(w, r, http.StatusInternalServerError, codeInternal, "Internal server error")
			return
		}
		writeJSON(w, http.StatusOK, refreshResponse{AccessToken: token, TokenType: "bearer"})
	})
}

// handleLogout signs the caller out everywhere: every token issued before now is revoked,
// on every replica within the notification delay.
func (g *gateway) handleLogout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := identityFrom(r.Context())
		if _, err := g.store.RevokeSessions(r.Context(), id.UserID); err != nil {
			g.userWriteFailed(w, r, "logout", err)
			return
		}
		g.users.forget(id.UserID)
		g.log.Info("sessions revoked", "user_id", id.UserID, "by", "logout")
		w.WriteHeader(http.StatusNoContent)
	})
}

// userWriteFailed answers a failed change to the caller's own row: gone meanwhile (401), or
// the database did not answer (503).
func (g *gateway) userWriteFailed(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, errNotFound) {
		w.Header().Set("WWW-Authenticate", challengeInvalidToken)
		writeError(w, r, http.StatusUnauthorized, codeInvalidToken, "User not found or inactive")
		return
	}
	g.databaseUnavailable(w, r, what, err)
}

// databaseUnavailable answers 503 for a user route whose database call failed, logging why
// (the client gets only the short detail).
func (g *gateway) databaseUnavailable(w http.ResponseWriter, r *http.Request, what string, err error) {
	g.log.Warn(what+": database unavailable", "error", err.Error())
	writeError(w, r, http.StatusServiceUnavailable, codeDatabaseUnavailable, detailDBUnavailable)
}

// writeHashBusy answers a request that found no free hashing worker in time.
func writeHashBusy(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "1")
	writeError(w, r, http.StatusServiceUnavailable, codeLoginBusy, "Too many logins in progress; try again shortly")
}

// minUserPasswordBytes is the shortest password a user may choose.
const minUserPasswordBytes = 8

// handleChangePassword replaces the caller's password after checking the current one. The
// check is a login attempt: it counts against the login limits and waits for a hashing
// slot. Success revokes every older token, this one included, and returns no token: the
// user signs in again with the new password.
func (g *gateway) handleChangePassword() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fields, reqErr := readJSONObject(w, r, g.cfg.MaxBodyBytes, g.cfg.ReadHeaderTimeout, false)
		var current, next string
		if reqErr == nil {
			current, _, reqErr = stringField(fields, "current_password", true)
		}
		if reqErr == nil && (current == "" || len(current) > maxPasswordBytes) {
			reqErr = unprocessable("Field current_password must be 1 to %d bytes", maxPasswordBytes)
		}
		if reqErr == nil {
			next, _, reqErr = stringField(fields, "new_password", true)
		}
		if reqErr == nil && (len(next) < minUserPasswordBytes || len(next) > maxPasswordBytes) {
			reqErr = unprocessable("Field new_password must be %d to %d bytes", minUserPasswordBytes, maxPasswordBytes)
		}
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		user, ok := g.currentUser(w, r)
		if !ok {
			return
		}

		// The same limits as a login: a stolen token must not turn this into a password oracle.
		client := requestInfoFrom(r.Context())
		charge, limit, wait := g.chargeLogin(loginClientKey(client.ClientIP), strings.ToLower(user.Email), client.ClientIsProxy, g.now())
		if limit != "" {
			g.refuseLogin(w, r, limit, wait)
			return
		}
		class := hashOrdinary
		if charge.known {
			class = hashFirst
		}
		match, err := g.hashes.compareAs(r.Context(), class, user.HashedPassword, current)
		if err != nil {
			g.loginHashFailed(charge)
			if errors.Is(err, errHashBusy) {
				writeHashBusy(w, r)
			}
			return
		}
		if !match {
			writeError(w, r, http.StatusBadRequest, codeInvalidCredentials, "Current password is incorrect")
			return
		}
		g.refundLogin(charge) // not a failure
		hash, err := g.hashes.hash(r.Context(), next)
		if err != nil {
			if errors.Is(err, errHashBusy) {
				writeHashBusy(w, r)
			}
			return
		}
		if err := g.store.SetPassword(r.Context(), user.Email, hash); err != nil {
			g.userWriteFailed(w, r, "change password", err)
			return
		}
		g.users.forget(user.ID)
		g.log.Info("sessions revoked", "user_id", user.ID, "by", "password_change")
		w.WriteHeader(http.StatusNoContent)
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
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, ok := g.currentUser(w, r)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, meResponse{
			UserID: user.ID, Email: user.Email, FullName: nullable(user.FullName),
			Role: user.Role, CompanyID: nullable(user.CompanyID), IsActive: user.IsActive,
		})
	})
}
