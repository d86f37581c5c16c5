// memstore.go: the in-memory Store of -dev and of tests without PostgreSQL.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

type memoryStore struct {
	mu          sync.RWMutex
	users       map[string]*memoryUser       // by id
	byEmail     map[string]string            // lower(email) → id
	companies   map[string]*Company          // by id
	invitations map[string]*memoryInvitation // by id
	invSeq      uint64                       // orders invitations created in the same instant
	domains     map[string]string            // lower(domain) → company id
	watchers    sync.Map                     // *WatchHooks → nil
}

type memoryUser struct {
	User                 // CompanyActive is filled in when read, from companies
	createdAt, lastLogin time.Time
}

type memoryInvitation struct {
	Invitation
	seq uint64
}

func newMemoryStore() *memoryStore {
	return &memoryStore{
		users:       make(map[string]*memoryUser),
		byEmail:     make(map[string]string),
		companies:   make(map[string]*Company),
		invitations: make(map[string]*memoryInvitation),
		domains:     make(map[string]string),
	}
}

// UUIDs arrive in either case, as PostgreSQL accepts them; keys are lower-case.
func memoryKey(id string) string { return strings.ToLower(id) }

// memoryTime keeps what PostgreSQL's timestamptz keeps: microseconds, no monotonic reading.
func memoryTime(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// revokeNow is tokens_valid_after as the database stores it: now, in whole seconds.
func revokeNow() time.Time { return time.Now().Truncate(time.Second) }

// memRead runs f under the read lock, failing first, as a database call, once ctx has ended;
// what's parts are joined only then: no allocation otherwise.
func memRead[T any](ctx context.Context, m *memoryStore, f func() (T, error), what ...string) (T, error) {
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, fmt.Errorf("%s: %w", strings.Join(what, ""), err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return f() // every f answers the zero value with an error
}

// memWrite is memRead for writes. f also names the row whose watched columns it changed, told
// to watchers after the lock is released, so that a hook may call the store.
func memWrite[T any](ctx context.Context, m *memoryStore, f func() (T, StoreChange, error), what ...string) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, fmt.Errorf("%s: %w", strings.Join(what, ""), err)
	}
	m.mu.Lock()
	v, ch, err := f()
	m.mu.Unlock()
	if err != nil {
		return zero, err
	}
	if ch.Table != "" {
		m.notify(ch)
	}
	return v, nil
}

// write is memWrite for a change no trigger reports.
func (m *memoryStore) write(ctx context.Context, f func() error, what ...string) error {
	_, err := memWrite(ctx, m, func() (any, StoreChange, error) { return nil, StoreChange{}, f() }, what...)
	return err
}

// userLocked is u as the store returns it, errNotFound for nil; m.mu must be held.
func (m *memoryStore) userLocked(u *memoryUser) (User, error) {
	if u == nil {
		return User{}, errNotFound
	}
	out := u.User
	out.CompanyActive = m.activeCompanyLocked(u.CompanyID)
	return out, nil
}

func (u *memoryUser) asAccount() Account { return u.User.account(u.createdAt) }

// userByIDLocked is the user with id, or nil; m.mu must be held.
func (m *memoryStore) userByIDLocked(id string) *memoryUser {
	if !isUUID(id) {
		return nil
	}
	return m.users[memoryKey(id)]
}

// userByEmailLocked is the user with that email (any letter case), or nil; m.mu must be held.
func (m *memoryStore) userByEmailLocked(email string) *memoryUser {
	return m.users[m.byEmail[strings.ToLower(email)]]
}

// activeCompanyLocked: the company with that lower-case id exists and is active; m.mu held.
func (m *memoryStore) activeCompanyLocked(id string) bool {
	c := m.companies[id]
	return c != nil && c.IsActive
}

func (m *memoryStore) UserByID(ctx context.Context, id string) (User, error) {
	return memRead(ctx, m, func() (User, error) { return m.userLocked(m.userByIDLocked(id)) }, "user by id ", id)
}

func (m *memoryStore) UserByEmail(ctx context.Context, email string) (User, error) {
	return memRead(ctx, m, func() (User, error) { return m.userLocked(m.userByEmailLocked(email)) }, "user by email ", email)
}

// updateUser applies update to the user find returns for key, telling a change as the trigger would.
func (m *memoryStore) updateUser(ctx context.Context, key string, find func(string) *memoryUser,
	update func(*memoryUser) error, what ...string) error {
	_, err := memWrite(ctx, m, func() (any, StoreChange, error) {
		u := find(key)
		if u == nil {
			return nil, StoreChange{}, errNotFound
		}
		before := u.User
		if err := update(u); err != nil || u.User == before {
			return nil, StoreChange{}, err
		}
		return nil, StoreChange{Table: "users", ID: u.ID}, nil
	}, what...)
	return err
}

func (m *memoryStore) SetUserCompany(ctx context.Context, userID, companyID string) error {
	if companyID != "" && !isUUID(companyID) {
		return errNotFound
	}
	companyID = memoryKey(companyID)
	return m.updateUser(ctx, userID, m.userByIDLocked, func(u *memoryUser) error {
		if _, ok := m.companies[companyID]; companyID != "" && !ok {
			return errNotFound
		}
		u.CompanyID = companyID
		return nil
	}, "set company ", companyID, " of user ", userID)
}

func (m *memoryStore) TouchLastLogin(ctx context.Context, userID string) error {
	// last_login is no column the users trigger watches: no cache holds it.
	return m.updateUser(ctx, userID, m.userByIDLocked, func(u *memoryUser) error {
		u.lastLogin = time.Now()
		return nil
	}, "touch last login of user ", userID)
}

func (m *memoryStore) RevokeSessions(ctx context.Context, userID string) (validAfter time.Time, err error) {
	err = m.updateUser(ctx, userID, m.userByIDLocked, func(u *memoryUser) error {
		validAfter = revokeNow()
		u.TokensValidAfter = validAfter
		return nil
	}, "revoke sessions of user ", userID)
	return validAfter, err // zero when err is set: the update ran only if it succeeded
}

func (m *memoryStore) CompanyActive(ctx context.Context, id string) (bool, error) {
	return memRead(ctx, m, func() (bool, error) { return isUUID(id) && m.activeCompanyLocked(memoryKey(id)), nil },
		"company ", id, " active")
}

func (m *memoryStore) Ping(ctx context.Context) error        { return nil }
func (m *memoryStore) CheckSchema(ctx context.Context) error { return nil }
func (m *memoryStore) Stats() PoolStats                      { return PoolStats{} }
func (m *memoryStore) Close()                                {}

func (m *memoryStore) CreateCompany(ctx context.Context, name string) (Company, error) {
	return memWrite(ctx, m, func() (Company, StoreChange, error) {
		c := Company{ID: newUUID(), Name: name, IsActive: true, CreatedAt: memoryTime(time.Now())}
		m.companies[c.ID] = &c
		return c, StoreChange{}, nil
	}, fmt.Sprintf("create company %q", name))
}

// insertUser adds an active user to a company that exists (active too, when activeCompany).
func (m *memoryStore) insertUser(ctx context.Context, what string, nu NewUser, activeCompany bool, noCompany error) (out User, created time.Time, err error) {
	err = m.write(ctx, func() error {
		key, companyID := strings.ToLower(nu.Email), memoryKey(nu.CompanyID)
		if _, ok := m.byEmail[key]; ok {
			return fmt.Errorf("%s %s: %w", what, nu.Email, errDuplicate)
		}
		if c, ok := m.companies[companyID]; companyID != "" && (!ok || activeCompany && !c.IsActive) {
			return fmt.Errorf("%s %s: company %s: %w", what, nu.Email, nu.CompanyID, noCompany)
		}
		u := &memoryUser{User: User{ID: newUUID(), CompanyID: companyID, Email: nu.Email, HashedPassword: nu.HashedPassword,
			FullName: nu.FullName, Role: cmp.Or(nu.Role, "user"), IsActive: true}, createdAt: memoryTime(time.Now())}
		m.users[u.ID] = u
		m.byEmail[key] = u.ID
		out, _ = m.userLocked(u)
		created = u.createdAt
		return nil
	}, what, " ", nu.Email)
	return out, created, err
}

func (m *memoryStore) CreateUser(ctx context.Context, nu NewUser) (User, error) {
	if err := checkNewUser(nu); err != nil {
		return User{}, err
	}
	u, _, err := m.insertUser(ctx, "create user", nu, false, errNotFound)
	return u, err
}

func (m *memoryStore) CreateAccount(ctx context.Context, nu NewUser) (Account, error) {
	if err := checkNewAccount(nu); err != nil {
		return Account{}, err
	}
	u, created, err := m.insertUser(ctx, "create account", nu, true, errCompanyUnavailable)
	return u.account(created), err // zero when err is set: insertUser fills u and created only on success
}

func (m *memoryStore) SetPassword(ctx context.Context, email, hashedPassword string) error {
	return m.updateUser(ctx, email, m.userByEmailLocked, func(u *memoryUser) error {
		u.HashedPassword, u.TokensValidAfter = hashedPassword, revokeNow()
		return nil
	}, "set password of user ", email)
}

func (m *memoryStore) SetActive(ctx context.Context, email string, active bool) error {
	return m.updateUser(ctx, email, m.userByEmailLocked, func(u *memoryUser) error {
		u.IsActive = active
		if !active {
			u.TokensValidAfter = revokeNow()
		}
		return nil
	}, "set active of user ", email)
}

func (m *memoryStore) SetCompanyActive(ctx context.Context, id string, active bool) error {
	_, err := m.UpdateCompany(ctx, id, CompanyChange{IsActive: &active})
	return err
}

// open reports whether inv is open at now; m.mu must be held.
func (inv *memoryInvitation) open(now time.Time) bool {
	return inv.AcceptedAt.IsZero() && inv.RevokedAt.IsZero() && inv.ExpiresAt.After(now)
}

// openInvitationsLocked returns the open invitations keep accepts, newest first; m.mu held.
func (m *memoryStore) openInvitationsLocked(keep func(*memoryInvitation) bool) []Invitation {
	now := time.Now()
	var open []*memoryInvitation
	for _, inv := range m.invitations {
		if inv.open(now) && keep(inv) {
			open = append(open, inv)
		}
	}
	slices.SortFunc(open, func(a, b *memoryInvitation) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.seq, a.seq))
	})
	invs := make([]Invitation, len(open))
	for i, inv := range open {
		invs[i] = inv.Invitation
	}
	return invs
}

func (m *memoryStore) OpenInvitation(ctx context.Context, email, companyID string) (Invitation, error) {
	if companyID != "" && !isUUID(companyID) {
		return Invitation{}, errNotFound
	}
	companyID = memoryKey(companyID)
	return memRead(ctx, m, func() (Invitation, error) {
		invs := m.openInvitationsLocked(func(inv *memoryInvitation) bool {
			return strings.ToLower(inv.Email) == strings.ToLower(email) && (companyID == "" || inv.CompanyID == companyID) &&
				m.activeCompanyLocked(inv.CompanyID)
		})
		if len(invs) == 0 {
			return Invitation{}, errNotFound
		}
		return invs[0], nil
	}, "open invitation of ", email)
}

func (m *memoryStore) CompanyForDomain(ctx context.Context, domain string) (string, error) {
	return memRead(ctx, m, func() (string, error) {
		id, ok := m.domains[strings.ToLower(domain)]
		if !ok || !m.activeCompanyLocked(id) {
			return "", errNotFound
		}
		return id, nil
	}, "company for domain ", domain)
}

// JoinCompany is all or nothing, checking in pgStore's order: user, invitation, company.
func (m *memoryStore) JoinCompany(ctx context.Context, userID, companyID, invitationID string) (User, error) {
	if err := checkJoinCompany(userID, companyID, invitationID); err != nil {
		return User{}, err
	}
	companyID = memoryKey(companyID)
	var out User
	err := m.updateUser(ctx, userID, m.userByIDLocked, func(u *memoryUser) error {
		inv := m.invitations[memoryKey(invitationID)]
		if invitationID != "" && (inv == nil || !inv.open(time.Now()) || inv.CompanyID != companyID ||
			strings.ToLower(inv.Email) != strings.ToLower(u.Email)) {
			return errInvitationClosed
		}
		if !m.activeCompanyLocked(companyID) {
			return errNotFound
		}
		if inv != nil {
			inv.AcceptedAt = memoryTime(time.Now())
			u.Role = inv.Role
		}
		u.CompanyID = companyID
		out, _ = m.userLocked(u)
		return nil
	}, "user ", userID, " join company ", companyID)
	return out, err // zero when err is set: out is filled only on success
}

// Watch reports each change from the goroutine that made it, once the lock is released.
func (m *memoryStore) Watch(ctx context.Context, hooks WatchHooks) {
	h := &hooks
	m.watchers.Store(h, nil)
	defer m.watchers.Delete(h)
	// Registered first: a change made meanwhile is reported, never lost.
	if hooks.Listening != nil {
		hooks.Listening()
	}
	<-ctx.Done()
}

// notify tells every watcher that the row changed. m.mu must not be held.
func (m *memoryStore) notify(ch StoreChange) {
	m.watchers.Range(func(h, _ any) bool {
		if changed := h.(*WatchHooks).Changed; changed != nil {
			changed(ch)
		}
		return true
	})
}

func (m *memoryStore) CreateInvitation(ctx context.Context, inv Invitation) (Invitation, error) {
	role, err := checkNewInvitation(inv)
	if err != nil {
		return Invitation{}, err
	}
	return memWrite(ctx, m, func() (Invitation, StoreChange, error) {
		companyID, createdBy := memoryKey(inv.CompanyID), memoryKey(inv.CreatedBy)
		if _, ok := m.companies[companyID]; !ok {
			return Invitation{}, StoreChange{}, fmt.Errorf("create invitation of %s: company %s: %w", inv.Email, inv.CompanyID, errNotFound)
		}
		if _, ok := m.users[createdBy]; createdBy != "" && !ok {
			return Invitation{}, StoreChange{}, fmt.Errorf("create invitation of %s: creator %s: %w", inv.Email, inv.CreatedBy, errNotFound)
		}
		stored := Invitation{ID: newUUID(), CompanyID: companyID, Email: inv.Email, Role: role, CreatedBy: createdBy,
			CreatedAt: memoryTime(time.Now()), ExpiresAt: memoryTime(inv.ExpiresAt)}
		m.invSeq++
		m.invitations[stored.ID] = &memoryInvitation{Invitation: stored, seq: m.invSeq}
		return stored, StoreChange{}, nil
	}, "create invitation of ", inv.Email)
}

func (m *memoryStore) ListOpenInvitations(ctx context.Context, companyID string) ([]Invitation, error) {
	if !isUUID(companyID) {
		return nil, errNotFound
	}
	companyID = memoryKey(companyID)
	return memRead(ctx, m, func() ([]Invitation, error) {
		if _, ok := m.companies[companyID]; !ok {
			return nil, errNotFound
		}
		return m.openInvitationsLocked(func(inv *memoryInvitation) bool { return inv.CompanyID == companyID }), nil
	}, "open invitations of company ", companyID)
}

func (m *memoryStore) RevokeInvitation(ctx context.Context, companyID, invitationID string) error {
	if !isUUID(companyID) || !isUUID(invitationID) {
		return errNotFound
	}
	return m.write(ctx, func() error {
		now := time.Now()
		inv := m.invitations[memoryKey(invitationID)]
		if inv == nil || inv.CompanyID != memoryKey(companyID) || !inv.open(now) {
			return errNotFound
		}
		inv.RevokedAt = memoryTime(now)
		return nil
	}, "revoke invitation ", invitationID, " of company ", companyID)
}

func (m *memoryStore) AddDomain(ctx context.Context, domain, companyID string) error {
	if err := checkNewDomain(domain, companyID); err != nil {
		return err
	}
	domain, companyID = strings.ToLower(domain), memoryKey(companyID)
	return m.write(ctx, func() error {
		if _, ok := m.companies[companyID]; !ok {
			return errNotFound
		}
		if holder, ok := m.domains[domain]; ok && holder != companyID {
			return fmt.Errorf("add domain %s to company %s: registered to company %s: %w", domain, companyID, holder, errDuplicate)
		}
		m.domains[domain] = companyID
		return nil
	}, "add domain ", domain, " to company ", companyID)
}

func (m *memoryStore) RemoveDomain(ctx context.Context, domain, companyID string) error {
	if !isUUID(companyID) {
		return errNotFound
	}
	domain, companyID = strings.ToLower(domain), memoryKey(companyID)
	return m.write(ctx, func() error {
		if holder, ok := m.domains[domain]; !ok || holder != companyID {
			return errNotFound
		}
		delete(m.domains, domain)
		return nil
	}, "remove domain ", domain, " of company ", companyID)
}

// activeCompaniesLocked returns the active companies in pgStore's companyOrder; m.mu held.
func (m *memoryStore) activeCompaniesLocked() []Company {
	var companies []Company
	for _, c := range m.companies {
		if c.IsActive {
			companies = append(companies, *c)
		}
	}
	slices.SortFunc(companies, func(a, b Company) int {
		return cmp.Or(strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)),
			strings.Compare(a.Name, b.Name), strings.Compare(a.ID, b.ID))
	})
	return companies
}

func (m *memoryStore) PlatformStats(ctx context.Context) (PlatformStats, error) {
	return memRead(ctx, m, func() (stats PlatformStats, _ error) {
		users := make(map[string]int)
		for _, u := range m.users {
			if u.IsActive && u.CompanyID != "" {
				users[u.CompanyID]++
			}
		}
		for _, co := range m.activeCompaniesLocked() {
			stats.Companies = append(stats.Companies, CompanyUsers{CompanyID: co.ID, Name: co.Name, Users: users[co.ID]})
		}
		return stats, nil
	}, "platform stats")
}

func (m *memoryStore) ActiveCompanies(ctx context.Context) ([]Company, error) {
	return memRead(ctx, m, func() ([]Company, error) { return m.activeCompaniesLocked(), nil }, "active companies")
}

func (m *memoryStore) UpdateCompany(ctx context.Context, id string, ch CompanyChange) (Company, error) {
	if err := checkCompanyChange(id, ch); err != nil {
		return Company{}, err
	}
	id = memoryKey(id)
	return memWrite(ctx, m, func() (Company, StoreChange, error) {
		c, ok := m.companies[id]
		if !ok {
			return Company{}, StoreChange{}, errNotFound
		}
		wasActive := c.IsActive
		setIf(&c.Name, ch.Name)
		setIf(&c.IsActive, ch.IsActive)
		if c.IsActive == wasActive { // the only column the database's trigger watches
			return *c, StoreChange{}, nil
		}
		return *c, StoreChange{Table: "companies", ID: id}, nil
	}, "update company ", id)
}

func (m *memoryStore) AccountByID(ctx context.Context, id string) (Account, error) {
	return memRead(ctx, m, func() (Account, error) {
		if u := m.userByIDLocked(id); u != nil {
			return u.asAccount(), nil
		}
		return Account{}, errNotFound
	}, "account ", id)
}

func (m *memoryStore) AccountsByCompany(ctx context.Context, companyID string, limit, offset int) ([]Account, error) {
	if err := checkAccountPage(companyID, limit, offset); err != nil {
		return nil, err
	}
	companyID = memoryKey(companyID)
	return memRead(ctx, m, func() ([]Account, error) {
		if _, ok := m.companies[companyID]; !ok {
			return nil, errNotFound
		}
		var accounts []Account
		for _, u := range m.users {
			if u.CompanyID == companyID {
				accounts = append(accounts, u.asAccount())
			}
		}
		slices.SortFunc(accounts, func(a, b Account) int {
			return cmp.Or(strings.Compare(strings.ToLower(a.Email), strings.ToLower(b.Email)), strings.Compare(a.ID, b.ID))
		})
		if offset >= len(accounts) {
			return nil, nil
		}
		return accounts[offset:min(offset+limit, len(accounts))], nil
	}, "accounts of company ", companyID)
}

// UpdateAccount is all or nothing under one lock, as the database's transaction.
func (m *memoryStore) UpdateAccount(ctx context.Context, id string, ch AccountChange) (a Account, err error) {
	if err := checkAccountChange(id, ch); err != nil {
		return Account{}, err
	}
	err = m.updateUser(ctx, id, m.userByIDLocked, func(u *memoryUser) error {
		if ch.CompanyID != nil && *ch.CompanyID != "" && !m.activeCompanyLocked(memoryKey(*ch.CompanyID)) {
			return fmt.Errorf("update account %s: company %s: %w", id, *ch.CompanyID, errCompanyUnavailable)
		}
		setIf(&u.FullName, ch.FullName)
		setIf(&u.Role, ch.Role)
		if ch.CompanyID != nil {
			u.CompanyID = memoryKey(*ch.CompanyID)
		}
		setIf(&u.IsActive, ch.IsActive)
		if ch.IsActive != nil && !*ch.IsActive {
			u.TokensValidAfter = revokeNow()
		}
		a = u.asAccount()
		return nil
	}, "update account of user ", id)
	return a, err // zero when err is set: a is filled only on success
}

// newUUID returns a random (version 4) UUID in canonical lower-case form.
func newUUID() string {
	var b [16]byte
	// Never fails: crypto/rand aborts the program rather than return short.
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
