// admin.go: the administration API the platform's admin dashboard calls (SPEC §7): handlers
// only; the store does the SQL and adminAuth (auth.go) decides who may call them.
//
// An administrator is platform-wide: a user whose role in the database is admin manages every
// company, not only their own, since the dashboard lists, counts and creates companies. The
// right comes from the database row alone (never a token claim), so the first administrator
// is made with the CLI: `atenex-api-gateway user create -role admin …`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	detailAdminDBUnavailable = "Database temporarily unavailable; try again shortly"
	// maxNameBytes bounds a company or person name: longer ones are mistakes or abuse.
	maxNameBytes = 200
	// Page size of the users-by-company list (the dashboard asks for 50).
	defaultPageLimit = 50
	maxPageLimit     = 200
)

// companyView is a company as the administration API shows it.
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

// userView is a user as the administration API shows it. The database keeps one role per
// user; the dashboard reads a list.
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

func companyViewOf(c Company) companyView {
	return companyView{ID: c.ID, Name: c.Name, IsActive: c.IsActive, CreatedAt: timeView(c.CreatedAt)}
}

func userViewOf(a Account) userView {
	return userView{ID: a.ID, Email: a.Email, Name: nullable(a.FullName), CompanyID: nullable(a.CompanyID),
		Roles: []string{a.Role}, IsActive: a.IsActive, CreatedAt: timeView(a.CreatedAt)}
}

func invitationViewOf(inv Invitation) invitationView {
	return invitationView{ID: inv.ID, CompanyID: inv.CompanyID, Email: inv.Email, Role: inv.Role,
		CreatedBy: nullable(inv.CreatedBy), CreatedAt: timeView(inv.CreatedAt), ExpiresAt: timeView(inv.ExpiresAt)}
}

// audit writes the one log line of an administrative change: who (actor_id), what (action)
// to what (target_id), and the values set — never a password. It is written whatever
// GATEWAY_LOG_LEVEL says: quieting the logs must not lose the record of who changed what.
func (g *gateway) audit(r *http.Request, action, targetID string, attrs ...slog.Attr) {
	id, _ := identityFrom(r.Context())
	rec := slog.NewRecord(time.Now(), slog.LevelInfo, "admin change", 0)
	rec.AddAttrs(slog.Bool("audit", true), slog.String("action", action), slog.String("actor_id", id.UserID),
		slog.String("target_id", targetID), slog.String("request_id", requestInfoFrom(r.Context()).ID))
	rec.AddAttrs(attrs...)
	// A log line that cannot be written is not a reason to fail a change already made.
	_ = g.log.Handler().Handle(context.WithoutCancel(r.Context()), rec)
}

// adminUnavailable answers a store error that is not an answer about the rows: the database
// did not answer in time.
func (g *gateway) adminUnavailable(w http.ResponseWriter, r *http.Request, action string, err error) {
	g.log.Warn("admin: database unavailable", "action", action, "error", err.Error())
	writeError(w, r, http.StatusServiceUnavailable, codeDatabaseUnavailable, detailAdminDBUnavailable)
}

// pathUUID reads the path parameter name, which must be a UUID; lower case, as the store
// returns ids.
func pathUUID(r *http.Request, name string) (string, *requestError) {
	v := r.PathValue(name)
	if !isUUID(v) {
		return "", unprocessable("Path parameter %s must be a UUID", name)
	}
	return strings.ToLower(v), nil
}

// readAdminBody reads a JSON object body and refuses fields outside allowed: a misspelt
// field of a partial update would otherwise change nothing and still answer 200.
func (g *gateway) readAdminBody(w http.ResponseWriter, r *http.Request, allowed ...string) (map[string]json.RawMessage, *requestError) {
	fields, reqErr := readJSONObject(w, r, g.cfg.MaxBodyBytes, g.cfg.ReadHeaderTimeout, false)
	if reqErr != nil {
		return nil, reqErr
	}
	for name := range fields {
		if !slices.Contains(allowed, name) {
			return nil, unprocessable("Unknown field: %s (expected %s)", name, strings.Join(allowed, ", "))
		}
	}
	return fields, nil
}

// nameField reads a company or person name: trimmed, at most maxNameBytes, printable. An
// absent or null field is (nil, nil); required refuses it and an empty name.
func nameField(fields map[string]json.RawMessage, field string, required bool) (*string, *requestError) {
	s, ok, reqErr := stringField(fields, field, required)
	if reqErr != nil || !ok {
		return nil, reqErr
	}
	s = strings.TrimSpace(s)
	if required && s == "" {
		return nil, unprocessable("Field %s must not be empty", field)
	}
	if len(s) > maxNameBytes || !utf8.ValidString(s) || strings.ContainsFunc(s, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		return nil, unprocessable("Field %s must be printable text of at most %d bytes", field, maxNameBytes)
	}
	return &s, nil
}

// boolField reads fields[name] as a boolean; absent is nil, null is refused.
func boolField(fields map[string]json.RawMessage, name string) (*bool, *requestError) {
	raw, ok := fields[name]
	if !ok {
		return nil, nil
	}
	var b bool
	if string(raw) == "null" || json.Unmarshal(raw, &b) != nil {
		return nil, unprocessable("Field %s must be true or false", name)
	}
	return &b, nil
}

// rolesField reads the roles list (absent or null: nil) and returns the one role the
// database keeps: admin when the list holds it, else user.
func rolesField(fields map[string]json.RawMessage) (*string, *requestError) {
	raw, ok := fields["roles"]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var roles []string
	if json.Unmarshal(raw, &roles) != nil || len(roles) == 0 {
		return nil, unprocessable(`Field roles must be a non-empty list of "user" and "admin"`)
	}
	role := "user"
	for _, r := range roles {
		if !knownRole(r) {
			return nil, unprocessable(`Field roles may hold only "user" and "admin", not %q`, r)
		}
		if r == "admin" {
			role = "admin"
		}
	}
	return &role, nil
}

// companyIDField reads an optional company id: absent is nil, null is "" (no company).
func companyIDField(fields map[string]json.RawMessage, name string) (*string, *requestError) {
	raw, ok := fields[name]
	if !ok {
		return nil, nil
	}
	none := ""
	if string(raw) == "null" {
		return &none, nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil || !isUUID(s) {
		return nil, unprocessable("Field %s must be a UUID or null", name)
	}
	s = strings.ToLower(s)
	return &s, nil
}

// handleAdminStats counts the active companies and the active users of each.
func (g *gateway) handleAdminStats() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stats, err := g.store.PlatformStats(r.Context())
		if err != nil {
			g.adminUnavailable(w, r, "stats", err)
			return
		}
		resp := statsView{CompanyCount: len(stats.Companies), UsersPerCompany: make([]companyUsersView, 0, len(stats.Companies))}
		for _, c := range stats.Companies {
			resp.UsersPerCompany = append(resp.UsersPerCompany, companyUsersView{CompanyID: c.CompanyID, Name: c.Name, UserCount: c.Users})
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

// handleAdminCreateCompany creates an active company. Names need not be unique: the schema
// never required it, and companies are told apart by id.
func (g *gateway) handleAdminCreateCompany() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fields, reqErr := readJSONObject(w, r, g.cfg.MaxBodyBytes, g.cfg.ReadHeaderTimeout, false)
		var name *string
		if reqErr == nil {
			name, reqErr = nameField(fields, "name", true)
		}
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		co, err := g.store.CreateCompany(r.Context(), *name)
		if err != nil {
			g.adminUnavailable(w, r, "company.create", err)
			return
		}
		g.audit(r, "company.create", co.ID, slog.String("name", co.Name))
		writeJSON(w, http.StatusCreated, createdCompanyView{ID: co.ID, Name: co.Name, CreatedAt: timeView(co.CreatedAt)})
	})
}

// handleAdminCompanySelect lists the active companies by name, for the dashboard's selector.
func (g *gateway) handleAdminCompanySelect() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		companies, err := g.store.ActiveCompanies(r.Context())
		if err != nil {
			g.adminUnavailable(w, r, "companies.select", err)
			return
		}
		resp := make([]companyOptionView, 0, len(companies))
		for _, c := range companies {
			resp = append(resp, companyOptionView{ID: c.ID, Name: c.Name})
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

// handleAdminUpdateCompany renames, deactivates or activates a company. A deactivation takes
// effect at once: every user of the company is refused (403 company_inactive) on this replica
// now and on the others within the notification delay; activating it again lets their
// unexpired tokens work again, as the CLI's `company activate` does.
func (g *gateway) handleAdminUpdateCompany() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, reqErr := pathUUID(r, "id")
		var fields map[string]json.RawMessage
		if reqErr == nil {
			fields, reqErr = g.readAdminBody(w, r, "name", "is_active")
		}
		var ch CompanyChange
		if reqErr == nil {
			ch.Name, reqErr = nameField(fields, "name", false)
		}
		if reqErr == nil && ch.Name != nil && *ch.Name == "" {
			reqErr = unprocessable("Field name must not be empty")
		}
		if reqErr == nil {
			ch.IsActive, reqErr = boolField(fields, "is_active")
		}
		if reqErr == nil && ch.Name == nil && ch.IsActive == nil {
			reqErr = unprocessable("Nothing to change: give name or is_active")
		}
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		if caller, _ := identityFrom(r.Context()); ch.IsActive != nil && !*ch.IsActive && caller.CompanyID == id {
			writeError(w, r, http.StatusConflict, codeSelfLockout, "You cannot deactivate your own company")
			return
		}
		co, err := g.store.UpdateCompany(r.Context(), id, ch)
		switch {
		case errors.Is(err, errNotFound):
			writeError(w, r, http.StatusNotFound, codeCompanyNotFound, "Company not found")
			return
		case errors.Is(err, errInvalidInput):
			writeError(w, r, http.StatusUnprocessableEntity, codeValidation, "Invalid company name")
			return
		case err != nil:
			g.adminUnavailable(w, r, "company.update", err)
			return
		}
		if ch.IsActive != nil {
			g.users.forgetCompany(id)
		}
		g.audit(r, "company.update", id, changeAttrs("name", ch.Name, "is_active", ch.IsActive)...)
		writeJSON(w, http.StatusOK, companyViewOf(co))
	})
}

// changeAttrs returns one log attribute per pair (name, *string or *bool) whose value is set.
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

// handleAdminCreateUser creates an active user with a bcrypt-hashed password, in an active
// company or in none (then the user joins one through an invitation or their email domain at
// their first sign-in).
func (g *gateway) handleAdminCreateUser() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fields, reqErr := readJSONObject(w, r, g.cfg.MaxBodyBytes, g.cfg.ReadHeaderTimeout, false)
		var email, password string
		var name, role, companyID *string
		if reqErr == nil {
			email, _, reqErr = stringField(fields, "email", true)
		}
		if reqErr == nil && !validEmail(email) {
			reqErr = unprocessable("Field email must be a valid email address")
		}
		if reqErr == nil {
			password, _, reqErr = stringField(fields, "password", true)
		}
		if reqErr == nil && (len(password) < minUserPasswordBytes || len(password) > maxPasswordBytes || strings.IndexByte(password, 0) >= 0) {
			reqErr = unprocessable("Field password must be %d to %d bytes, without NUL", minUserPasswordBytes, maxPasswordBytes)
		}
		if reqErr == nil {
			name, reqErr = nameField(fields, "name", false)
		}
		if reqErr == nil {
			companyID, reqErr = companyIDField(fields, "company_id")
		}
		if reqErr == nil {
			role, reqErr = rolesField(fields)
		}
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		nu := NewUser{Email: email, Role: "user"}
		if name != nil {
			nu.FullName = *name
		}
		if companyID != nil {
			nu.CompanyID = *companyID
		}
		if role != nil {
			nu.Role = *role
		}

		// Checked before the slow hash, as the CLI does; CreateAccount still refuses whatever
		// changes meanwhile.
		ctx := r.Context()
		_, err := g.store.UserByEmail(ctx, email)
		switch {
		case err == nil:
			writeError(w, r, http.StatusConflict, codeAlreadyExists, "Email already registered")
			return
		case !errors.Is(err, errNotFound):
			g.adminUnavailable(w, r, "user.create", err)
			return
		}
		if nu.CompanyID != "" {
			active, err := g.store.CompanyActive(ctx, nu.CompanyID)
			if err != nil {
				g.adminUnavailable(w, r, "user.create", err)
				return
			}
			if !active {
				writeError(w, r, http.StatusUnprocessableEntity, codeCompanyNotFound, "Company not found or inactive")
				return
			}
		}
		hash, err := g.hashes.hash(ctx, password)
		switch {
		case errors.Is(err, errHashBusy):
			w.Header().Set("Retry-After", "1")
			writeError(w, r, http.StatusServiceUnavailable, codeLoginBusy, "Too many password operations in progress; try again shortly")
			return
		case err != nil && ctx.Err() != nil:
			return // the client left while waiting for a hashing worker; nobody reads an answer
		case err != nil:
			g.log.Error("admin: hash password", "error", err.Error())
			writeError(w, r, http.StatusInternalServerError, codeInternal, "Internal server error")
			return
		}
		nu.HashedPassword = hash

		acct, err := g.store.CreateAccount(ctx, nu)
		switch {
		case errors.Is(err, errDuplicate):
			writeError(w, r, http.StatusConflict, codeAlreadyExists, "Email already registered")
			return
		case errors.Is(err, errCompanyUnavailable):
			writeError(w, r, http.StatusUnprocessableEntity, codeCompanyNotFound, "Company not found or inactive")
			return
		case errors.Is(err, errInvalidInput):
			writeError(w, r, http.StatusUnprocessableEntity, codeValidation, "Invalid user")
			return
		case err != nil:
			g.adminUnavailable(w, r, "user.create", err)
			return
		}
		g.audit(r, "user.create", acct.ID, slog.String("email", acct.Email), slog.String("company_id", acct.CompanyID),
			slog.String("role", acct.Role))
		writeJSON(w, http.StatusCreated, userViewOf(acct))
	})
}

// queryInt reads the query parameter name as a whole number in lo..hi, def when absent.
func queryInt(r *http.Request, name string, def, lo, hi int) (int, *requestError) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, unprocessable("Query parameter %s must be a whole number from %d to %d", name, lo, hi)
	}
	return n, nil
}

// handleAdminUsersByCompany lists a page of the company's users, active or not, by email.
func (g *gateway) handleAdminUsersByCompany() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		companyID, reqErr := pathUUID(r, "company_id")
		var limit, offset int
		if reqErr == nil {
			limit, reqErr = queryInt(r, "limit", defaultPageLimit, 1, maxPageLimit)
		}
		if reqErr == nil {
			offset, reqErr = queryInt(r, "offset", 0, 0, 1_000_000_000)
		}
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		accounts, err := g.store.AccountsByCompany(r.Context(), companyID, limit, offset)
		switch {
		case errors.Is(err, errNotFound):
			writeError(w, r, http.StatusNotFound, codeCompanyNotFound, "Company not found")
			return
		case err != nil:
			g.adminUnavailable(w, r, "users.by_company", err)
			return
		}
		resp := make([]userView, 0, len(accounts))
		for _, a := range accounts {
			resp = append(resp, userViewOf(a))
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

// handleAdminUpdateUser renames, activates or deactivates a user, changes their role or
// moves them. A deactivation revokes every token issued before it (and the cache entry is
// dropped here at once), so activating the user again does not bring old sessions back. A
// user moved to another company keeps their tokens but gets 401 token_stale on proxied routes
// until they sign in again.
func (g *gateway) handleAdminUpdateUser() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, reqErr := pathUUID(r, "id")
		var fields map[string]json.RawMessage
		if reqErr == nil {
			fields, reqErr = g.readAdminBody(w, r, "name", "is_active", "roles", "company_id")
		}
		var ch AccountChange
		if reqErr == nil {
			if raw, ok := fields["name"]; ok && string(raw) == "null" {
				none := ""
				ch.FullName = &none
			} else {
				ch.FullName, reqErr = nameField(fields, "name", false)
			}
		}
		if reqErr == nil {
			ch.IsActive, reqErr = boolField(fields, "is_active")
		}
		if reqErr == nil {
			ch.Role, reqErr = rolesField(fields)
		}
		if reqErr == nil {
			ch.CompanyID, reqErr = companyIDField(fields, "company_id")
		}
		if reqErr == nil && ch == (AccountChange{}) {
			reqErr = unprocessable("Nothing to change: give name, is_active, roles or company_id")
		}
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		// The API must never leave the platform without a way in: an administrator who
		// deactivated or demoted themselves could not undo it. Another administrator, or
		// the CLI, can.
		if caller, _ := identityFrom(r.Context()); caller.UserID == id &&
			(ch.IsActive != nil && !*ch.IsActive || ch.Role != nil && *ch.Role != "admin") {
			writeError(w, r, http.StatusConflict, codeSelfLockout, "You cannot deactivate yourself or remove your own administrator role")
			return
		}
		acct, err := g.store.UpdateAccount(r.Context(), id, ch)
		switch {
		case errors.Is(err, errNotFound):
			writeError(w, r, http.StatusNotFound, codeNotFound, "User not found")
			return
		case errors.Is(err, errCompanyUnavailable):
			writeError(w, r, http.StatusUnprocessableEntity, codeCompanyNotFound, "Company not found or inactive")
			return
		case errors.Is(err, errInvalidInput):
			writeError(w, r, http.StatusUnprocessableEntity, codeValidation, "Invalid change")
			return
		case err != nil:
			g.adminUnavailable(w, r, "user.update", err)
			return
		}
		g.users.forget(id)
		g.audit(r, "user.update", id, changeAttrs("name", ch.FullName, "is_active", ch.IsActive, "role", ch.Role,
			"company_id", ch.CompanyID)...)
		writeJSON(w, http.StatusOK, userViewOf(acct))
	})
}

// handleAdminCreateInvitation invites an email into the company, for expires_in_days days
// (the CLI's default and bound: defaultInvitationDays, maxInvitationDays). The invited user joins at their next sign-in (or ensure-company) with the invitation's role.
func (g *gateway) handleAdminCreateInvitation() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		companyID, reqErr := pathUUID(r, "id")
		var fields map[string]json.RawMessage
		if reqErr == nil {
			fields, reqErr = readJSONObject(w, r, g.cfg.MaxBodyBytes, g.cfg.ReadHeaderTimeout, false)
		}
		var email, role string
		var hasRole bool
		if reqErr == nil {
			email, _, reqErr = stringField(fields, "email", true)
		}
		if reqErr == nil && !validEmail(email) {
			reqErr = unprocessable("Field email must be a valid email address")
		}
		if reqErr == nil {
			role, hasRole, reqErr = stringField(fields, "role", false)
		}
		if reqErr == nil && !hasRole {
			role = "user"
		}
		if reqErr == nil && !knownRole(role) {
			reqErr = unprocessable(`Field role must be "user" or "admin"`)
		}
		days := defaultInvitationDays
		if raw, ok := fields["expires_in_days"]; reqErr == nil && ok && string(raw) != "null" {
			if json.Unmarshal(raw, &days) != nil || days < 1 || days > maxInvitationDays {
				reqErr = unprocessable("Field expires_in_days must be a whole number from 1 to %d", maxInvitationDays)
			}
		}
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		caller, _ := identityFrom(r.Context())
		inv, err := g.store.CreateInvitation(r.Context(), Invitation{
			CompanyID: companyID, Email: email, Role: role, CreatedBy: caller.UserID,
			ExpiresAt: g.now().Add(time.Duration(days) * 24 * time.Hour),
		})
		switch {
		case errors.Is(err, errNotFound):
			writeError(w, r, http.StatusNotFound, codeCompanyNotFound, "Company not found")
			return
		case errors.Is(err, errInvalidInput):
			writeError(w, r, http.StatusUnprocessableEntity, codeValidation, "Invalid invitation")
			return
		case err != nil:
			g.adminUnavailable(w, r, "invitation.create", err)
			return
		}
		g.audit(r, "invitation.create", inv.ID, slog.String("company_id", companyID), slog.String("email", inv.Email),
			slog.String("role", inv.Role), slog.Time("expires_at", inv.ExpiresAt))
		writeJSON(w, http.StatusCreated, invitationViewOf(inv))
	})
}

// handleAdminListInvitations lists the company's open invitations, newest first.
func (g *gateway) handleAdminListInvitations() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		companyID, reqErr := pathUUID(r, "id")
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		invs, err := g.store.ListOpenInvitations(r.Context(), companyID)
		switch {
		case errors.Is(err, errNotFound):
			writeError(w, r, http.StatusNotFound, codeCompanyNotFound, "Company not found")
			return
		case err != nil:
			g.adminUnavailable(w, r, "invitations.list", err)
			return
		}
		resp := make([]invitationView, 0, len(invs))
		for _, inv := range invs {
			resp = append(resp, invitationViewOf(inv))
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

// handleAdminRevokeInvitation closes an open invitation of the company: one of another
// company, or one already accepted, revoked or expired, is not found.
func (g *gateway) handleAdminRevokeInvitation() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		companyID, reqErr := pathUUID(r, "id")
		var invitationID string
		if reqErr == nil {
			invitationID, reqErr = pathUUID(r, "inv")
		}
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		err := g.store.RevokeInvitation(r.Context(), companyID, invitationID)
		switch {
		case errors.Is(err, errNotFound):
			writeError(w, r, http.StatusNotFound, codeNotFound, "No open invitation with this id in this company")
			return
		case err != nil:
			g.adminUnavailable(w, r, "invitation.revoke", err)
			return
		}
		g.audit(r, "invitation.revoke", invitationID, slog.String("company_id", companyID))
		w.WriteHeader(http.StatusNoContent)
	})
}

// pathDomain reads the domain path parameter as company_domains stores it.
func pathDomain(r *http.Request) (string, *requestError) {
	d, ok := normalizeDomain(r.PathValue("domain"))
	if !ok {
		return "", unprocessable("Path parameter domain must be a domain name like example.com")
	}
	return d, nil
}

// handleAdminPutDomain registers an email domain for the company: users signing in with an
// address of that domain and no company join it. Idempotent; one company per domain.
func (g *gateway) handleAdminPutDomain() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		companyID, reqErr := pathUUID(r, "id")
		var domain string
		if reqErr == nil {
			domain, reqErr = pathDomain(r)
		}
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		err := g.store.AddDomain(r.Context(), domain, companyID)
		switch {
		case errors.Is(err, errNotFound):
			writeError(w, r, http.StatusNotFound, codeCompanyNotFound, "Company not found")
			return
		case errors.Is(err, errDuplicate):
			writeError(w, r, http.StatusConflict, codeAlreadyExists, "Domain is registered to another company")
			return
		case errors.Is(err, errInvalidInput):
			writeError(w, r, http.StatusUnprocessableEntity, codeValidation, "Invalid domain")
			return
		case err != nil:
			g.adminUnavailable(w, r, "domain.add", err)
			return
		}
		g.audit(r, "domain.add", companyID, slog.String("domain", domain))
		writeJSON(w, http.StatusOK, domainView{Domain: domain, CompanyID: companyID})
	})
}

// handleAdminDeleteDomain unregisters an email domain of the company; a domain of another
// company is not found.
func (g *gateway) handleAdminDeleteDomain() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		companyID, reqErr := pathUUID(r, "id")
		var domain string
		if reqErr == nil {
			domain, reqErr = pathDomain(r)
		}
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		err := g.store.RemoveDomain(r.Context(), domain, companyID)
		switch {
		case errors.Is(err, errNotFound):
			writeError(w, r, http.StatusNotFound, codeNotFound, "Domain is not registered to this company")
			return
		case err != nil:
			g.adminUnavailable(w, r, "domain.remove", err)
			return
		}
		g.audit(r, "domain.remove", companyID, slog.String("domain", domain))
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleAdminRevokeSessions signs a user out everywhere: every token issued before now is
// refused, here at once and on every replica within the notification delay.
func (g *gateway) handleAdminRevokeSessions() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, reqErr := pathUUID(r, "id")
		if reqErr != nil {
			reqErr.write(w, r)
			return
		}
		_, err := g.store.RevokeSessions(r.Context(), id)
		switch {
		case errors.Is(err, errNotFound):
			writeError(w, r, http.StatusNotFound, codeNotFound, "User not found")
			return
		case err != nil:
			g.adminUnavailable(w, r, "user.revoke_sessions", err)
			return
		}
		g.users.forget(id)
		g.audit(r, "user.revoke_sessions", id)
		w.WriteHeader(http.StatusNoContent)
	})
}
