// admin.go: the admin dashboard's API (SPEC §7), handlers only; adminAuth (auth.go) decides who
// may call it: an administrator of every company, by database row alone (never a token claim),
// so the first one is made with the CLI: `atenex-api-gateway user create -role admin …`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	// maxNameBytes bounds a company or person name: longer ones are mistakes or abuse.
	maxNameBytes = 200
	// Page size of the users-by-company list (the dashboard asks for 50).
	defaultPageLimit = 50
	maxPageLimit     = 200
)

type companyView struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	IsActive  bool       `json:"is_active"`
	CreatedAt *time.Time `json:"created_at"`
}

// createdCompanyView is the answer to a company creation: exactly what the dashboard reads.
type createdCompanyView struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	CreatedAt *time.Time `json:"created_at"`
}

type companyOptionView struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type companyUsersView struct {
	CompanyID string `json:"company_id"`
	Name      string `json:"name"`
	UserCount int    `json:"user_count"`
}

type statsView struct {
	CompanyCount    int                `json:"company_count"`
	UsersPerCompany []companyUsersView `json:"users_per_company"`
}

// userView is a user as the administration API shows it: one role, as a list.
type userView struct {
	ID        string     `json:"id"`
	Email     string     `json:"email"`
	Name      *string    `json:"name"`
	CompanyID *string    `json:"company_id"`
	Roles     []string   `json:"roles"`
	IsActive  bool       `json:"is_active"`
	CreatedAt *time.Time `json:"created_at"`
}

type invitationView struct {
	ID        string     `json:"id"`
	CompanyID string     `json:"company_id"`
	Email     string     `json:"email"`
	Role      string     `json:"role"`
	CreatedBy *string    `json:"created_by"`
	CreatedAt *time.Time `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
}

type domainView struct {
	Domain    string `json:"domain"`
	CompanyID string `json:"company_id"`
}

// timeView is t in UTC, or nil (JSON null) for a NULL column.
func timeView(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func userViewOf(a Account) userView {
	return userView{ID: a.ID, Email: a.Email, Name: nullable(a.FullName), CompanyID: nullable(a.CompanyID),
		Roles: []string{a.Role}, IsActive: a.IsActive, CreatedAt: timeView(a.CreatedAt)}
}

func invitationViewOf(inv Invitation) invitationView {
	return invitationView{ID: inv.ID, CompanyID: inv.CompanyID, Email: inv.Email, Role: inv.Role,
		CreatedBy: nullable(inv.CreatedBy), CreatedAt: timeView(inv.CreatedAt), ExpiresAt: timeView(inv.ExpiresAt)}
}

// audit logs who changed what, with the values set (never a password), whatever
// GATEWAY_LOG_LEVEL says: quieting the logs must not lose that record.
func (g *gateway) audit(r *http.Request, action, targetID string, attrs ...slog.Attr) {
	id, _ := identityFrom(r.Context())
	rec := slog.NewRecord(time.Now(), slog.LevelInfo, "admin change", 0)
	rec.AddAttrs(slog.Bool("audit", true), slog.String("action", action), slog.String("actor_id", id.UserID),
		slog.String("target_id", targetID), slog.String("request_id", requestInfoFrom(r.Context()).ID))
	rec.AddAttrs(attrs...)
	// A log line that cannot be written is not a reason to fail a change already made.
	_ = g.log.Handler().Handle(context.WithoutCancel(r.Context()), rec)
}

// Answers several administrative actions share.
var (
	companyNotFound = newError(http.StatusNotFound, codeCompanyNotFound, "Company not found")
	companyUnusable = newError(http.StatusUnprocessableEntity, codeCompanyNotFound, "Company not found or inactive")
	emailTaken      = newError(http.StatusConflict, codeAlreadyExists, "Email already registered")
	userNotFound    = newError(http.StatusNotFound, codeNotFound, "User not found")
)

// on pairs a store error with the answer an action gives for it.
type on struct {
	err    error
	answer *apiError
}

// adminStoreError answers a store error with the first matching answer, else 503.
func adminStoreError(action string, err error, answers ...on) error {
	for _, a := range answers {
		if errors.Is(err, a.err) {
			return a.answer
		}
	}
	return databaseUnavailable("Database temporarily unavailable; try again shortly", "admin "+action, err)
}

// changed audits a change made, then answers status and body (none when nil).
func (g *gateway) changed(w http.ResponseWriter, r *http.Request, action, targetID string, status int, body any, attrs ...slog.Attr) error {
	g.audit(r, action, targetID, attrs...)
	if body == nil {
		w.WriteHeader(status)
	} else {
		writeJSON(w, status, body)
	}
	return nil
}

// answerList answers 200 with items as view shows each ([] for none).
func answerList[T, V any](w http.ResponseWriter, items []T, view func(T) V) error {
	resp := make([]V, 0, len(items))
	for _, item := range items {
		resp = append(resp, view(item))
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// pathUUID reads a UUID path parameter, in lower case as the store returns ids.
func (in *input) pathUUID(name string) string {
	v := in.r.PathValue(name)
	in.check(isUUID(v), "Path parameter %s must be a UUID", name)
	return strings.ToLower(v)
}

// pathDomain reads the domain path parameter as company_domains stores it.
func (in *input) pathDomain() string {
	d, ok := normalizeDomain(in.r.PathValue("domain"))
	in.check(ok, "Path parameter domain must be a domain name like example.com")
	return d
}

// queryInt reads the query parameter name as a whole number in lo..hi, def when absent.
func (in *input) queryInt(name string, def, lo, hi int) int {
	v := in.r.URL.Query().Get(name)
	if v == "" || in.err != nil {
		return def
	}
	n, err := strconv.Atoi(v)
	in.check(err == nil && n >= lo && n <= hi, "Query parameter %s must be a whole number from %d to %d", name, lo, hi)
	return n
}

// name reads a trimmed, printable name; absent or null is nil unless required, which refuses "".
func (in *input) name(field string, required bool) *string {
	if !in.has(field) && !required {
		return nil
	}
	s := strings.TrimSpace(in.str(field, required))
	in.check(!required || s != "", "Field %s must not be empty", field)
	in.check(len(s) <= maxNameBytes && utf8.ValidString(s) && !strings.ContainsFunc(s, func(c rune) bool { return c < ' ' || c == 0x7f }),
		"Field %s must be printable text of at most %d bytes", field, maxNameBytes)
	return &s
}

// boolean reads a boolean field; absent is nil, null is refused.
func (in *input) boolean(name string) *bool {
	raw, ok := in.fields[name]
	if !ok || in.err != nil {
		return nil
	}
	var b bool
	in.check(string(raw) != "null" && json.Unmarshal(raw, &b) == nil, "Field %s must be true or false", name)
	return &b
}

// roles reads the roles list (absent or null: nil) as the one role the database keeps.
func (in *input) roles() *string {
	if !in.has("roles") || in.err != nil {
		return nil
	}
	var roles []string
	in.check(json.Unmarshal(in.fields["roles"], &roles) == nil && len(roles) > 0, `Field roles must be a non-empty list of "user" and "admin"`)
	role := "user"
	for _, r := range roles {
		in.check(knownRole(r), `Field roles may hold only "user" and "admin", not %q`, r)
		if r == "admin" {
			role = "admin"
		}
	}
	return &role
}

// companyID reads an optional company id: absent is nil, null is "" (no company).
func (in *input) companyID(name string) *string {
	raw, ok := in.fields[name]
	if !ok || in.err != nil {
		return nil
	}
	var s string
	in.check(string(raw) == "null" || json.Unmarshal(raw, &s) == nil && isUUID(s), "Field %s must be a UUID or null", name)
	s = strings.ToLower(s)
	return &s
}

func (g *gateway) handleAdminStats() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		stats, err := g.store.PlatformStats(r.Context())
		if err != nil {
			return adminStoreError("stats", err)
		}
		resp := statsView{CompanyCount: len(stats.Companies), UsersPerCompany: make([]companyUsersView, 0, len(stats.Companies))}
		for _, c := range stats.Companies {
			resp.UsersPerCompany = append(resp.UsersPerCompany, companyUsersView{CompanyID: c.CompanyID, Name: c.Name, UserCount: c.Users})
		}
		writeJSON(w, http.StatusOK, resp)
		return nil
	})
}

// handleAdminCreateCompany creates an active company; names need not be unique (ids are).
func (g *gateway) handleAdminCreateCompany() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		in := g.readBody(w, &input{r: r}, false)
		name := in.name("name", true)
		if in.err != nil {
			return in.err
		}
		co, err := g.store.CreateCompany(r.Context(), *name)
		if err != nil {
			return adminStoreError("company.create", err)
		}
		return g.changed(w, r, "company.create", co.ID, http.StatusCreated,
			createdCompanyView{ID: co.ID, Name: co.Name, CreatedAt: timeView(co.CreatedAt)}, slog.String("name", co.Name))
	})
}

func (g *gateway) handleAdminCompanySelect() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		companies, err := g.store.ActiveCompanies(r.Context())
		if err != nil {
			return adminStoreError("companies.select", err)
		}
		return answerList(w, companies, func(c Company) companyOptionView { return companyOptionView{ID: c.ID, Name: c.Name} })
	})
}

// handleAdminUpdateCompany renames, deactivates or activates a company; reactivation lets its
// users' unexpired tokens work again.
func (g *gateway) handleAdminUpdateCompany() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		in := &input{r: r}
		id := in.pathUUID("id")
		g.readBody(w, in, false, "name", "is_active")
		var ch CompanyChange
		ch.Name = in.name("name", false)
		in.check(ch.Name == nil || *ch.Name != "", "Field name must not be empty")
		ch.IsActive = in.boolean("is_active")
		in.check(ch.Name != nil || ch.IsActive != nil, "Nothing to change: give name or is_active")
		if in.err != nil {
			return in.err
		}
		if caller, _ := identityFrom(r.Context()); ch.IsActive != nil && !*ch.IsActive && caller.CompanyID == id {
			return newError(http.StatusConflict, codeSelfLockout, "You cannot deactivate your own company")
		}
		co, err := g.store.UpdateCompany(r.Context(), id, ch)
		if err != nil {
			return adminStoreError("company.update", err, on{errNotFound, companyNotFound}, on{errInvalidInput, unprocessable("Invalid company name")})
		}
		if ch.IsActive != nil {
			g.users.forgetCompany(id)
		}
		view := companyView{ID: co.ID, Name: co.Name, IsActive: co.IsActive, CreatedAt: timeView(co.CreatedAt)}
		return g.changed(w, r, "company.update", id, http.StatusOK, view, changeAttrs("name", ch.Name, "is_active", ch.IsActive)...)
	})
}

// changeAttrs returns a log attribute per pair (name, *string or *bool) whose value is set.
func changeAttrs(pairs ...any) []slog.Attr {
	var attrs []slog.Attr
	for i := 0; i+1 < len(pairs); i += 2 {
		name := pairs[i].(string)
		switch v := pairs[i+1].(type) {
		case *string:
			if v != nil {
				attrs = append(attrs, slog.String(name, *v))
			}
		case *bool:
			if v != nil {
				attrs = append(attrs, slog.Bool(name, *v))
			}
		}
	}
	return attrs
}

// handleAdminCreateUser creates an active user in an active company, or none (joined at the
// first sign-in by invitation or email domain).
func (g *gateway) handleAdminCreateUser() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		in := g.readBody(w, &input{r: r}, false)
		email := in.str("email", true)
		in.check(validEmail(email), "Field email must be a valid email address")
		password := in.str("password", true)
		in.check(len(password) >= minUserPasswordBytes && len(password) <= maxPasswordBytes && strings.IndexByte(password, 0) < 0,
			"Field password must be %d to %d bytes, without NUL", minUserPasswordBytes, maxPasswordBytes)
		name := in.name("name", false)
		companyID := in.companyID("company_id")
		role := in.roles()
		if in.err != nil {
			return in.err
		}
		nu := NewUser{Email: email, Role: "user"}
		setIf(&nu.FullName, name)
		setIf(&nu.CompanyID, companyID)
		setIf(&nu.Role, role)

		// Checked before the slow hash; CreateAccount still refuses what changes meanwhile.
		ctx := r.Context()
		if _, err := g.store.UserByEmail(ctx, email); err == nil {
			return emailTaken
		} else if !errors.Is(err, errNotFound) {
			return adminStoreError("user.create", err)
		}
		if nu.CompanyID != "" {
			active, err := g.store.CompanyActive(ctx, nu.CompanyID)
			if err != nil {
				return adminStoreError("user.create", err)
			}
			if !active {
				return companyUnusable
			}
		}
		hash, err := g.hashes.hash(ctx, password)
		switch {
		case errors.Is(err, errHashBusy):
			return &apiError{status: http.StatusServiceUnavailable, code: codeLoginBusy,
				detail: "Too many password operations in progress; try again shortly", retryAfter: "1"}
		case err != nil && ctx.Err() != nil:
			return nil // the client left while waiting for a hashing worker; nobody reads an answer
		case err != nil:
			return fmt.Errorf("admin: hash password: %w", err)
		}
		nu.HashedPassword = hash

		acct, err := g.store.CreateAccount(ctx, nu)
		if err != nil {
			return adminStoreError("user.create", err, on{errDuplicate, emailTaken}, on{errCompanyUnavailable, companyUnusable},
				on{errInvalidInput, unprocessable("Invalid user")})
		}
		return g.changed(w, r, "user.create", acct.ID, http.StatusCreated, userViewOf(acct),
			slog.String("email", acct.Email), slog.String("company_id", acct.CompanyID), slog.String("role", acct.Role))
	})
}

func (g *gateway) handleAdminUsersByCompany() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		in := &input{r: r}
		companyID := in.pathUUID("company_id")
		limit := in.queryInt("limit", defaultPageLimit, 1, maxPageLimit)
		offset := in.queryInt("offset", 0, 0, 1_000_000_000)
		if in.err != nil {
			return in.err
		}
		accounts, err := g.store.AccountsByCompany(r.Context(), companyID, limit, offset)
		if err != nil {
			return adminStoreError("users.by_company", err, on{errNotFound, companyNotFound})
		}
		return answerList(w, accounts, userViewOf)
	})
}

// handleAdminUpdateUser changes a user's name, activity, role or company. A deactivation revokes
// older tokens, so reactivation brings no session back; a moved user's tokens turn stale.
func (g *gateway) handleAdminUpdateUser() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		in := &input{r: r}
		id := in.pathUUID("id")
		g.readBody(w, in, false, "name", "is_active", "roles", "company_id")
		var ch AccountChange
		if raw, ok := in.fields["name"]; ok && string(raw) == "null" {
			ch.FullName = new(string) // null clears the name
		} else {
			ch.FullName = in.name("name", false)
		}
		ch.IsActive = in.boolean("is_active")
		ch.Role = in.roles()
		ch.CompanyID = in.companyID("company_id")
		in.check(ch != (AccountChange{}), "Nothing to change: give name, is_active, roles or company_id")
		if in.err != nil {
			return in.err
		}
		// An administrator who deactivated or demoted themselves could not undo it: the API
		// must never leave the platform without a way in.
		if caller, _ := identityFrom(r.Context()); caller.UserID == id &&
			(ch.IsActive != nil && !*ch.IsActive || ch.Role != nil && *ch.Role != "admin") {
			return newError(http.StatusConflict, codeSelfLockout, "You cannot deactivate yourself or remove your own administrator role")
		}
		acct, err := g.store.UpdateAccount(r.Context(), id, ch)
		if err != nil {
			return adminStoreError("user.update", err, on{errNotFound, userNotFound}, on{errCompanyUnavailable, companyUnusable},
				on{errInvalidInput, unprocessable("Invalid change")})
		}
		g.users.forget(id)
		return g.changed(w, r, "user.update", id, http.StatusOK, userViewOf(acct),
			changeAttrs("name", ch.FullName, "is_active", ch.IsActive, "role", ch.Role, "company_id", ch.CompanyID)...)
	})
}

// handleAdminCreateInvitation invites an email into the company; the user joins with its role
// at their next sign-in (or ensure-company).
func (g *gateway) handleAdminCreateInvitation() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		in := &input{r: r}
		companyID := in.pathUUID("id")
		g.readBody(w, in, false)
		email := in.str("email", true)
		in.check(validEmail(email), "Field email must be a valid email address")
		role := in.str("role", false)
		if !in.has("role") {
			role = "user"
		}
		in.check(knownRole(role), `Field role must be "user" or "admin"`)
		days := defaultInvitationDays
		if in.err == nil && in.has("expires_in_days") {
			in.check(json.Unmarshal(in.fields["expires_in_days"], &days) == nil && days >= 1 && days <= maxInvitationDays,
				"Field expires_in_days must be a whole number from 1 to %d", maxInvitationDays)
		}
		if in.err != nil {
			return in.err
		}
		caller, _ := identityFrom(r.Context())
		inv, err := g.store.CreateInvitation(r.Context(), Invitation{
			CompanyID: companyID, Email: email, Role: role, CreatedBy: caller.UserID,
			ExpiresAt: g.now().Add(time.Duration(days) * 24 * time.Hour),
		})
		if err != nil {
			return adminStoreError("invitation.create", err, on{errNotFound, companyNotFound}, on{errInvalidInput, unprocessable("Invalid invitation")})
		}
		return g.changed(w, r, "invitation.create", inv.ID, http.StatusCreated, invitationViewOf(inv), slog.String("company_id", companyID),
			slog.String("email", inv.Email), slog.String("role", inv.Role), slog.Time("expires_at", inv.ExpiresAt))
	})
}

func (g *gateway) handleAdminListInvitations() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		in := &input{r: r}
		companyID := in.pathUUID("id")
		if in.err != nil {
			return in.err
		}
		invs, err := g.store.ListOpenInvitations(r.Context(), companyID)
		if err != nil {
			return adminStoreError("invitations.list", err, on{errNotFound, companyNotFound})
		}
		return answerList(w, invs, invitationViewOf)
	})
}

// handleAdminRevokeInvitation closes an open invitation of the company; any other is not found.
func (g *gateway) handleAdminRevokeInvitation() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		in := &input{r: r}
		companyID, invitationID := in.pathUUID("id"), in.pathUUID("inv")
		if in.err != nil {
			return in.err
		}
		if err := g.store.RevokeInvitation(r.Context(), companyID, invitationID); err != nil {
			return adminStoreError("invitation.revoke", err,
				on{errNotFound, newError(http.StatusNotFound, codeNotFound, "No open invitation with this id in this company")})
		}
		return g.changed(w, r, "invitation.revoke", invitationID, http.StatusNoContent, nil, slog.String("company_id", companyID))
	})
}

// handleAdminPutDomain registers an email domain whose users without a company join it at sign-in.
func (g *gateway) handleAdminPutDomain() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		in := &input{r: r}
		companyID, domain := in.pathUUID("id"), in.pathDomain()
		if in.err != nil {
			return in.err
		}
		if err := g.store.AddDomain(r.Context(), domain, companyID); err != nil {
			return adminStoreError("domain.add", err, on{errNotFound, companyNotFound},
				on{errDuplicate, newError(http.StatusConflict, codeAlreadyExists, "Domain is registered to another company")},
				on{errInvalidInput, unprocessable("Invalid domain")})
		}
		return g.changed(w, r, "domain.add", companyID, http.StatusOK, domainView{Domain: domain, CompanyID: companyID}, slog.String("domain", domain))
	})
}

// handleAdminDeleteDomain unregisters a domain of the company; another's is not found.
func (g *gateway) handleAdminDeleteDomain() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		in := &input{r: r}
		companyID, domain := in.pathUUID("id"), in.pathDomain()
		if in.err != nil {
			return in.err
		}
		if err := g.store.RemoveDomain(r.Context(), domain, companyID); err != nil {
			return adminStoreError("domain.remove", err,
				on{errNotFound, newError(http.StatusNotFound, codeNotFound, "Domain is not registered to this company")})
		}
		return g.changed(w, r, "domain.remove", companyID, http.StatusNoContent, nil, slog.String("domain", domain))
	})
}

// handleAdminRevokeSessions signs a user out everywhere: every older token is refused.
func (g *gateway) handleAdminRevokeSessions() http.Handler {
	return g.handle(func(w http.ResponseWriter, r *http.Request) error {
		in := &input{r: r}
		id := in.pathUUID("id")
		if in.err != nil {
			return in.err
		}
		if _, err := g.store.RevokeSessions(r.Context(), id); err != nil {
			return adminStoreError("user.revoke_sessions", err, on{errNotFound, userNotFound})
		}
		g.users.forget(id)
		return g.changed(w, r, "user.revoke_sessions", id, http.StatusNoContent, nil)
	})
}
