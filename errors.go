// errors.go: how the gateway answers with an error: the stable codes clients rely on, the
// apiError handlers return, and the wrapper that writes it.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
)

// Error codes: clients branch on these, never on the human-readable detail.
const (
	codeNotAuthenticated    = "not_authenticated"
	codeInvalidToken        = "invalid_token"
	codeTokenExpired        = "token_expired"
	codeTokenStale          = "token_stale"
	codeTokenRevoked        = "token_revoked"
	codeSessionExpired      = "session_expired"
	codeCompanyRequired     = "company_required"
	codeCompanyInactive     = "company_inactive"
	codeCompanyForbidden    = "company_forbidden"
	codeCompanyNotFound     = "company_not_found"
	codeAdminRequired       = "admin_required"
	codeAlreadyExists       = "already_exists"
	codeSelfLockout         = "self_lockout"
	codeInvalidCredentials  = "invalid_credentials"
	codeLoginRateLimited    = "login_rate_limited"
	codeLoginBusy           = "login_busy"
	codeRateLimited         = "rate_limited"
	codeValidation          = "validation_error"
	codeInvalidPath         = "invalid_path"
	codeCORSRejected        = "cors_rejected"
	codeDatabaseUnavailable = "database_unavailable"
	codeUpstreamUnavailable = "upstream_unavailable"
	codeUpstreamTimeout     = "upstream_timeout"
	codeUpstreamError       = "upstream_error"
	codeUpstreamBusy        = "upstream_busy"
	codeNotFound            = "not_found"
	codeMethodNotAllowed    = "method_not_allowed"
	codeBodyTooLarge        = "body_too_large"
	codeRequestTimeout      = "request_timeout"
	codeInternal            = "internal_error"
)

type errorCode struct {
	Code     string
	Statuses []int
	Meaning  string
}

// errorCodes is every code the gateway writes; the README's error table and the OpenAPI
// document are checked against it, and it against the constants above.
var errorCodes = []errorCode{
	{codeNotAuthenticated, []int{401}, "no `Authorization: Bearer` token was sent"},
	{codeInvalidToken, []int{401}, "the token is malformed, badly signed, or its user is unknown or inactive; sign in again"},
	{codeTokenExpired, []int{401}, "the token's `exp` has passed; refresh or sign in again"},
	{codeTokenStale, []int{401}, "the user was moved to another company after this token was issued; sign in again (or refresh)"},
	{codeTokenRevoked, []int{401}, "the user's sessions were revoked (password change, logout everywhere, deactivation, admin) after this token was issued; sign in again"},
	{codeSessionExpired, []int{401}, "refresh refused: the sign-in is older than `GATEWAY_SESSION_MAX_AGE`; sign in again"},
	{codeCompanyRequired, []int{400, 403}, "the route needs a company and the token or user has none"},
	{codeCompanyInactive, []int{403}, "the user's company is deactivated"},
	{codeCompanyForbidden, []int{403}, "the caller is not entitled to join that company"},
	{codeCompanyNotFound, []int{400, 404, 422}, "the company does not exist or is inactive"},
	{codeAdminRequired, []int{403}, "the route needs a user whose database role is `admin`"},
	{codeAlreadyExists, []int{409}, "the email is taken by another user, or the email domain is registered to another company"},
	{codeSelfLockout, []int{409}, "an administrator cannot deactivate or demote themselves, or deactivate their own company, through the API (the CLI can)"},
	{codeInvalidCredentials, []int{400, 401}, "wrong email or password (the same answer for unknown emails and inactive users); 400 for a wrong current password when changing it"},
	{codeLoginRateLimited, []int{429}, "too many failed logins from this address or for this email; wait `Retry-After` seconds"},
	{codeLoginBusy, []int{503}, "every password-hashing slot is busy; retry after `Retry-After`"},
	{codeRateLimited, []int{429}, "the company's request rate limit is exceeded; wait `Retry-After` seconds"},
	{codeValidation, []int{400, 422}, "the request body or a parameter is malformed; `detail` says which field"},
	{codeInvalidPath, []int{400}, "the path has dot segments, encoded slashes or other forms that could escape a route"},
	{codeCORSRejected, []int{400}, "a CORS preflight from an origin, method or header that is not allowed"},
	{codeDatabaseUnavailable, []int{503}, "the database did not answer in time; retry shortly"},
	{codeUpstreamUnavailable, []int{503}, "the backend service could not be reached"},
	{codeUpstreamTimeout, []int{504}, "the backend service sent no response headers within `GATEWAY_HTTP_CLIENT_TIMEOUT`"},
	{codeUpstreamError, []int{502}, "the backend service failed mid-exchange"},
	{codeUpstreamBusy, []int{503}, "no connection to the backend service became free in time"},
	{codeNotFound, []int{404}, "no such route (or no such object)"},
	{codeMethodNotAllowed, []int{405}, "the route exists for other methods (see `Allow`)"},
	{codeBodyTooLarge, []int{413}, "the body is larger than the route accepts"},
	{codeRequestTimeout, []int{408}, "the body did not arrive in time"},
	{codeInternal, []int{500}, "a bug in the gateway; the request id finds it in the logs"},
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"detail":"Internal server error"}`)
	}
	writeJSONBody(w, status, append(body, '\n'))
}

func writeJSONBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

type errorBody struct {
	Detail    string `json:"detail"`
	Code      string `json:"code,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// writeError writes {"detail": detail, "code": code, "request_id": …}; code is one of errorCodes.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, detail string) {
	writeJSON(w, status, errorBody{Detail: detail, Code: code, RequestID: requestInfoFrom(r.Context()).ID})
}

// appendJSONString appends s as a JSON string, escaped as encoding/json escapes it (HTML
// characters, U+2028/U+2029, invalid UTF-8 as U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}

// apiError is an answer given instead of the one asked for; only the log sees its cause.
type apiError struct {
	status     int
	code       string // one of errorCodes
	detail     string
	challenge  string // WWW-Authenticate, for a refused caller
	retryAfter string // Retry-After seconds
	cause      error
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.detail + ": " + e.cause.Error()
	}
	return e.detail
}

func (e *apiError) Unwrap() error { return e.cause }

func newError(status int, code, detail string) *apiError {
	return &apiError{status: status, code: code, detail: detail}
}

// unprocessable is a 422 validation_error whose detail names the field at fault.
func unprocessable(format string, args ...any) *apiError {
	return newError(http.StatusUnprocessableEntity, codeValidation, fmt.Sprintf(format, args...))
}

// databaseUnavailable is the 503 of a failed database call; what names the call in the log.
func databaseUnavailable(detail, what string, err error) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: codeDatabaseUnavailable, detail: detail,
		cause: fmt.Errorf("%s: database unavailable: %w", what, err)}
}

// handle adapts a handler that returns its failure instead of writing it.
func (g *gateway) handle(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeAPIError(w, r, g.log, err)
		}
	})
}

// writeAPIError answers with err, a 500 unless it is an *apiError. A 5xx's cause is logged, never
// sent; causes say what failed, never what was sent (no password, no token).
func writeAPIError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		e = &apiError{status: http.StatusInternalServerError, code: codeInternal, detail: "Internal server error", cause: err}
	}
	if e.status >= 500 && e.cause != nil && log != nil {
		level := slog.LevelError
		if e.status == http.StatusServiceUnavailable {
			level = slog.LevelWarn // the database or a pool, not a bug
		}
		log.LogAttrs(r.Context(), level, "request failed", slog.String("request_id", requestInfoFrom(r.Context()).ID),
			slog.Int("status", e.status), slog.String("error", e.cause.Error()))
	}
	if e.challenge != "" {
		w.Header().Set("WWW-Authenticate", e.challenge)
	}
	if e.retryAfter != "" {
		w.Header().Set("Retry-After", e.retryAfter)
	}
	writeError(w, r, e.status, e.code, e.detail)
}
