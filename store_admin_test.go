// store_admin_test.go: the administration part of the store contract (stats, company and
// account reads and partial updates) for both stores, and what a database outage does to it.
package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// runAdminContract is the administration behaviour both stores must show; runStoreContract
// runs it.
func runAdminContract(t *testing.T, s Store, mustCreate func(*testing.T, NewUser) User) {
	ctx := context.Background()
	newCompany := func(t *testing.T, name string) Company { return mustCreateCompany(t, s, name) }
	setCompanyActive := func(t *testing.T, id string, active bool) {
		t.Helper()
		if err := s.SetCompanyActive(ctx, id, active); err != nil {
			t.Fatalf("SetCompanyActive: %v", err)
		}
	}
	ptr := func(s string) *string { return &s }
	yes, no := true, false

	t.Run("CreatedCompanyHasCreationTime", func(t *testing.T) {
		before := time.Now().Add(-time.Second)
		co := newCompany(t, "Timed")
		if co.CreatedAt.Before(before) || co.CreatedAt.After(time.Now().Add(time.Second)) {
			t.Fatalf("created_at = %v, want about now", co.CreatedAt)
		}
		if got := activeCompany(t, s, co.ID); got != co {
			t.Fatalf("ActiveCompanies lists %+v; want %+v", got, co)
		}
	})

	t.Run("ActiveCompaniesByNameWithoutInactiveOnes", func(t *testing.T) {
		// Mixed case: the order is case-insensitive in both stores, whatever the collation.
		zulu, alpha, beta := newCompany(t, "zz Zulu"), newCompany(t, "ZZ alpha"), newCompany(t, "zz Beta")
		closed := newCompany(t, "zz Closed")
		setCompanyActive(t, closed.ID, false)
		companies, err := s.ActiveCompanies(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ours []string
		for _, c := range companies {
			if c.ID == closed.ID || !c.IsActive {
				t.Fatalf("inactive company listed: %+v", c)
			}
			if c.ID == zulu.ID || c.ID == alpha.ID || c.ID == beta.ID {
				ours = append(ours, c.Name)
			}
		}
		if want := []string{"ZZ alpha", "zz Beta", "zz Zulu"}; fmt.Sprint(ours) != fmt.Sprint(want) {
			t.Fatalf("order = %q, want %q", ours, want)
		}
	})

	t.Run("PlatformStatsCountActiveUsersOfActiveCompanies", func(t *testing.T) {
		busy, empty, closed := newCompany(t, "Stats busy"), newCompany(t, "Stats empty"), newCompany(t, "Stats closed")
		mustCreate(t, NewUser{Email: "stats-a@example.com", CompanyID: busy.ID})
		mustCreate(t, NewUser{Email: "stats-b@example.com", CompanyID: busy.ID})
		gone := mustCreate(t, NewUser{Email: "stats-gone@example.com", CompanyID: busy.ID})
		if err := s.SetActive(ctx, gone.Email, false); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, NewUser{Email: "stats-closed@example.com", CompanyID: closed.ID})
		setCompanyActive(t, closed.ID, false)

		stats, err := s.PlatformStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		active, err := s.ActiveCompanies(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(stats.Companies) != len(active) {
			t.Fatalf("stats list %d companies, %d are active", len(stats.Companies), len(active))
		}
		counts := map[string]int{}
		for i, cu := range stats.Companies {
			if cu.CompanyID != active[i].ID || cu.Name != active[i].Name {
				t.Fatalf("stats row %d = %+v, want company %+v (same order as ActiveCompanies)", i, cu, active[i])
			}
			counts[cu.CompanyID] = cu.Users
		}
		if counts[busy.ID] != 2 {
			t.Errorf("busy company counts %d users, want 2 (the inactive one left out)", counts[busy.ID])
		}
		if n, ok := counts[empty.ID]; !ok || n != 0 {
			t.Errorf("company without users: listed %v with %d, want listed with 0", ok, n)
		}
		if _, ok := counts[closed.ID]; ok {
			t.Error("inactive company listed in the stats")
		}
	})

	t.Run("UpdateCompanyChangesOnlyWhatIsSet", func(t *testing.T) {
		co := newCompany(t, "Before")
		renamed, err := s.UpdateCompany(ctx, co.ID, CompanyChange{Name: ptr("After")})
		if err != nil || renamed.Name != "After" || !renamed.IsActive || !renamed.CreatedAt.Equal(co.CreatedAt) {
			t.Fatalf("rename = %+v, %v", renamed, err)
		}
		closed, err := s.UpdateCompany(ctx, co.ID, CompanyChange{IsActive: &no})
		if err != nil || closed.Name != "After" || closed.IsActive {
			t.Fatalf("deactivate = %+v, %v", closed, err)
		}
		if active, _ := s.CompanyActive(ctx, co.ID); active {
			t.Fatal("CompanyActive still true after UpdateCompany deactivated it")
		}
		both, err := s.UpdateCompany(ctx, co.ID, CompanyChange{Name: ptr("Again"), IsActive: &yes})
		if err != nil || both.Name != "Again" || !both.IsActive {
			t.Fatalf("update both = %+v, %v", both, err)
		}
		unchanged, err := s.UpdateCompany(ctx, co.ID, CompanyChange{})
		if err != nil || unchanged != both {
			t.Fatalf("empty change = %+v, %v; want %+v", unchanged, err, both)
		}
	})

	t.Run("UpdateCompanyRefusals", func(t *testing.T) {
		co := newCompany(t, "Refusing")
		for _, name := range []string{"", "nul\x00byte", "bad \xff utf-8"} {
			if _, err := s.UpdateCompany(ctx, co.ID, CompanyChange{Name: ptr(name)}); !errors.Is(err, errInvalidInput) {
				t.Errorf("name %q: error %v, want errInvalidInput", name, err)
			}
		}
		for _, id := range []string{newUUID(), "nope"} {
			if _, err := s.UpdateCompany(ctx, id, CompanyChange{IsActive: &no}); err != errNotFound {
				t.Errorf("company %q: error %v, want errNotFound", id, err)
			}
		}
		if got := activeCompany(t, s, co.ID); got != co {
			t.Fatalf("refused updates changed the company: %+v", got)
		}
	})

	t.Run("CreateAccountIsActiveWithCreationTime", func(t *testing.T) {
		co := newCompany(t, "Accounts")
		before := time.Now().Add(-time.Second)
		a, err := s.CreateAccount(ctx, NewUser{Email: "Account@Example.com", HashedPassword: "$2b$12$x",
			FullName: "Ana", Role: "admin", CompanyID: strings.ToUpper(co.ID)})
		if err != nil {
			t.Fatal(err)
		}
		want := Account{ID: a.ID, Email: "Account@Example.com", FullName: "Ana", CompanyID: co.ID, Role: "admin",
			IsActive: true, CreatedAt: a.CreatedAt}
		if a != want || !isUUID(a.ID) || a.CreatedAt.Before(before) || a.CreatedAt.After(time.Now().Add(time.Second)) {
			t.Fatalf("created %+v, want %+v created about now", a, want)
		}
		if got, err := s.AccountByID(ctx, a.ID); err != nil || got != a {
			t.Fatalf("AccountByID = %+v, %v; want %+v", got, err, a)
		}
		// The same row through the login path: the hash is stored, the user may sign in.
		u, err := s.UserByEmail(ctx, "account@example.com")
		if err != nil || u.ID != a.ID || u.HashedPassword != "$2b$12$x" || !u.CompanyActive {
			t.Fatalf("UserByEmail = %+v, %v", u, err)
		}
		plain, err := s.CreateAccount(ctx, NewUser{Email: "nocompany@example.com", HashedPassword: "$2b$12$y"})
		if err != nil || plain.Role != "user" || plain.CompanyID != "" || plain.FullName != "" {
			t.Fatalf("account without company, name or role = %+v, %v", plain, err)
		}
	})

	t.Run("CreateAccountRefusalsWriteNothing", func(t *testing.T) {
		co, closed := newCompany(t, "Refuse accounts"), newCompany(t, "Refuse closed")
		setCompanyActive(t, closed.ID, false)
		mustCreate(t, NewUser{Email: "taken@example.com", CompanyID: co.ID})
		cases := []struct {
			name string
			nu   NewUser
			want error
		}{
			{"duplicate email in another case", NewUser{Email: "TAKEN@example.com", CompanyID: co.ID}, errDuplicate},
			{"duplicate wins over a bad company", NewUser{Email: "taken@example.com", CompanyID: newUUID()}, errDuplicate},
			{"unknown company", NewUser{Email: "fresh1@example.com", CompanyID: newUUID()}, errCompanyUnavailable},
			{"inactive company", NewUser{Email: "fresh2@example.com", CompanyID: closed.ID}, errCompanyUnavailable},
			{"malformed company", NewUser{Email: "fresh3@example.com", CompanyID: "acme"}, errCompanyUnavailable},
			{"unknown role", NewUser{Email: "fresh4@example.com", Role: "superuser"}, errInvalidInput},
			{"empty email", NewUser{Email: ""}, errInvalidInput},
			{"NUL in name", NewUser{Email: "fresh5@example.com", FullName: "a\x00b"}, errInvalidInput},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				tc.nu.HashedPassword = "$2b$12$z"
				if _, err := s.CreateAccount(ctx, tc.nu); !errors.Is(err, tc.want) {
					t.Fatalf("error %v, want %v", err, tc.want)
				}
				if tc.want != errDuplicate && tc.nu.Email != "" {
					if _, err := s.UserByEmail(ctx, tc.nu.Email); err != errNotFound {
						t.Fatalf("a refused account was written: UserByEmail error %v", err)
					}
				}
			})
		}
	})

	t.Run("AccountByIDOfUnknownOrMalformedIsNotFound", func(t *testing.T) {
		for _, id := range []string{newUUID(), "x", ""} {
			if _, err := s.AccountByID(ctx, id); err != errNotFound {
				t.Errorf("AccountByID(%q): error %v, want errNotFound", id, err)
			}
		}
	})

	t.Run("AccountsByCompanyPagesByEmail", func(t *testing.T) {
		co, other := newCompany(t, "Paged"), newCompany(t, "Paged other")
		var want []string
		for _, email := range []string{"page-c@example.com", "Page-A@example.com", "page-b@example.com", "page-d@example.com"} {
			mustCreate(t, NewUser{Email: email, CompanyID: co.ID})
		}
		mustCreate(t, NewUser{Email: "page-0@example.com", CompanyID: other.ID})
		gone := mustCreate(t, NewUser{Email: "page-e@example.com", CompanyID: co.ID})
		if err := s.SetActive(ctx, gone.Email, false); err != nil {
			t.Fatal(err)
		}
		want = []string{"Page-A@example.com", "page-b@example.com", "page-c@example.com", "page-d@example.com", "page-e@example.com"}
		emails := func(limit, offset int) []string {
			t.Helper()
			accounts, err := s.AccountsByCompany(ctx, strings.ToUpper(co.ID), limit, offset)
			if err != nil {
				t.Fatalf("AccountsByCompany(%d, %d): %v", limit, offset, err)
			}
			var out []string
			for _, a := range accounts {
				if a.CompanyID != co.ID {
					t.Fatalf("another company's user listed: %+v", a)
				}
				if a.Email == gone.Email && a.IsActive {
					t.Fatalf("deactivated user listed as active: %+v", a)
				}
				out = append(out, a.Email)
			}
			return out
		}
		pages := []struct {
			limit, offset int
			want          []string
		}{
			{50, 0, want},
			{2, 0, want[:2]},
			{2, 2, want[2:4]},
			{2, 4, want[4:]},
			{2, 5, nil},
			{10, 100, nil},
		}
		for _, p := range pages {
			if got := emails(p.limit, p.offset); fmt.Sprint(got) != fmt.Sprint(p.want) {
				t.Errorf("limit %d offset %d = %q, want %q", p.limit, p.offset, got, p.want)
			}
		}
	})

	t.Run("AccountsByCompanyOfUnknownCompanyIsNotFoundOfEmptyOneIsEmpty", func(t *testing.T) {
		if _, err := s.AccountsByCompany(ctx, newUUID(), 50, 0); err != errNotFound {
			t.Fatalf("unknown company: error %v, want errNotFound", err)
		}
		if _, err := s.AccountsByCompany(ctx, "not-a-uuid", 50, 0); err != errNotFound {
			t.Fatalf("malformed company: error %v, want errNotFound", err)
		}
		closed := newCompany(t, "Empty and closed")
		setCompanyActive(t, closed.ID, false)
		if accounts, err := s.AccountsByCompany(ctx, closed.ID, 50, 0); err != nil || len(accounts) != 0 {
			t.Fatalf("empty inactive company = %v, %v; want none, no error", accounts, err)
		}
		for _, bad := range [][2]int{{0, 0}, {-1, 0}, {1, -1}} {
			if _, err := s.AccountsByCompany(ctx, closed.ID, bad[0], bad[1]); !errors.Is(err, errInvalidInput) {
				t.Errorf("limit %d offset %d: error %v, want errInvalidInput", bad[0], bad[1], err)
			}
		}
	})

	t.Run("UpdateAccountChangesOnlyWhatIsSet", func(t *testing.T) {
		home, away := newCompany(t, "Update home"), newCompany(t, "Update away")
		u := mustCreate(t, NewUser{Email: "update@example.com", FullName: "Old", CompanyID: home.ID})
		before, err := s.AccountByID(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			name   string
			change AccountChange
			want   func(a *Account)
		}{
			{"name", AccountChange{FullName: ptr("New")}, func(a *Account) { a.FullName = "New" }},
			{"clear name", AccountChange{FullName: ptr("")}, func(a *Account) { a.FullName = "" }},
			{"role", AccountChange{Role: ptr("admin")}, func(a *Account) { a.Role = "admin" }},
			{"company", AccountChange{CompanyID: ptr(strings.ToUpper(away.ID))}, func(a *Account) { a.CompanyID = away.ID }},
			{"no company", AccountChange{CompanyID: ptr("")}, func(a *Account) { a.CompanyID = "" }},
			{"everything", AccountChange{FullName: ptr("All"), Role: ptr("user"), CompanyID: ptr(home.ID), IsActive: &yes},
				func(a *Account) { a.FullName, a.Role, a.CompanyID = "All", "user", home.ID }},
			{"nothing", AccountChange{}, func(a *Account) {}},
		}
		want := before
		for _, step := range steps {
			step.want(&want)
			got, err := s.UpdateAccount(ctx, u.ID, step.change)
			if err != nil || got != want {
				t.Fatalf("%s: UpdateAccount = %+v, %v; want %+v", step.name, got, err, want)
			}
			if again, _ := s.AccountByID(ctx, u.ID); again != want {
				t.Fatalf("%s: AccountByID = %+v; want %+v", step.name, again, want)
			}
		}
		if got := mustUser(t, s, u.ID); !got.TokensValidAfter.IsZero() || got.HashedPassword != u.HashedPassword {
			t.Fatalf("updates other than a deactivation touched revocation or password: %+v", got)
		}
	})

	t.Run("UpdateAccountDeactivationRevokesTokens", func(t *testing.T) {
		co := newCompany(t, "Deactivation")
		u := mustCreate(t, NewUser{Email: "deactivate@example.com", CompanyID: co.ID})
		called := time.Now()
		a, err := s.UpdateAccount(ctx, u.ID, AccountChange{IsActive: &no})
		if err != nil || a.IsActive {
			t.Fatalf("deactivate = %+v, %v", a, err)
		}
		got := mustUser(t, s, u.ID)
		checkRevokedNow(t, "UpdateAccount is_active=false", got.TokensValidAfter, called)
		// Activating again keeps the revocation: the old sessions stay dead.
		if _, err := s.UpdateAccount(ctx, u.ID, AccountChange{IsActive: &yes}); err != nil {
			t.Fatal(err)
		}
		if again := mustUser(t, s, u.ID); !again.IsActive || !again.TokensValidAfter.Equal(got.TokensValidAfter) {
			t.Fatalf("after activation %+v; want active with tokens_valid_after %v kept", again, got.TokensValidAfter)
		}
	})

	t.Run("UpdateAccountRefusalsChangeNothing", func(t *testing.T) {
		co, closed := newCompany(t, "Refuse update"), newCompany(t, "Refuse update closed")
		setCompanyActive(t, closed.ID, false)
		u := mustCreate(t, NewUser{Email: "refuse-update@example.com", FullName: "Kept", CompanyID: co.ID})
		before, err := s.AccountByID(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name   string
			id     string
			change AccountChange
			want   error
		}{
			{"unknown user", newUUID(), AccountChange{FullName: ptr("x")}, errNotFound},
			{"malformed user", "nope", AccountChange{FullName: ptr("x")}, errNotFound},
			// A refused company must undo the rest of the change, name and deactivation included.
			{"unknown company", u.ID, AccountChange{FullName: ptr("x"), IsActive: &no, CompanyID: ptr(newUUID())}, errCompanyUnavailable},
			{"inactive company", u.ID, AccountChange{FullName: ptr("x"), IsActive: &no, CompanyID: ptr(closed.ID)}, errCompanyUnavailable},
			{"malformed company", u.ID, AccountChange{FullName: ptr("x"), CompanyID: ptr("acme")}, errCompanyUnavailable},
			{"unknown role", u.ID, AccountChange{FullName: ptr("x"), Role: ptr("root")}, errInvalidInput},
			{"empty role", u.ID, AccountChange{Role: ptr("")}, errInvalidInput},
			{"NUL in name", u.ID, AccountChange{FullName: ptr("a\x00")}, errInvalidInput},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := s.UpdateAccount(ctx, tc.id, tc.change); !errors.Is(err, tc.want) {
					t.Fatalf("error %v, want %v", err, tc.want)
				}
				if after, _ := s.AccountByID(ctx, u.ID); after != before {
					t.Fatalf("refused update changed the account: %+v, was %+v", after, before)
				}
				if got := mustUser(t, s, u.ID); !got.TokensValidAfter.IsZero() {
					t.Fatal("refused deactivation revoked tokens")
				}
			})
		}
	})

	t.Run("AdminChangesAreWatched", func(t *testing.T) {
		w := startWatch(t, s)
		w.waitListening(t, 10*time.Second)
		co := newCompany(t, "Admin watched")
		u := mustCreate(t, NewUser{Email: "admin-watched@example.com", CompanyID: co.ID})
		cases := []struct {
			name string
			do   func() error
			want StoreChange
		}{
			{"role", func() error { _, err := s.UpdateAccount(ctx, u.ID, AccountChange{Role: ptr("admin")}); return err },
				StoreChange{"users", u.ID}},
			{"deactivation", func() error { _, err := s.UpdateAccount(ctx, u.ID, AccountChange{IsActive: &no}); return err },
				StoreChange{"users", u.ID}},
			{"company deactivation", func() error { _, err := s.UpdateCompany(ctx, co.ID, CompanyChange{IsActive: &no}); return err },
				StoreChange{"companies", co.ID}},
		}
		for _, tc := range cases {
			if err := tc.do(); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if got, _ := w.nextChange(t, 5*time.Second); got != tc.want {
				t.Fatalf("%s: change reported = %+v, want %+v", tc.name, got, tc.want)
			}
		}
	})
}

func mustUser(t *testing.T, s Store, id string) User {
	t.Helper()
	u, err := s.UserByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// activeCompany is the active company id as ActiveCompanies lists it.
func activeCompany(t *testing.T, s Store, id string) Company {
	t.Helper()
	companies, err := s.ActiveCompanies(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range companies {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("company %s not among the active ones", id)
	return Company{}
}

// adminStoreCalls are the administration methods called with valid arguments naming rows that
// may exist, for the outage tests.
func adminStoreCalls(userID, companyID string) []storeCall {
	name, active := "Renamed", false
	return []storeCall{
		{"PlatformStats", func(ctx context.Context, s Store) error { _, err := s.PlatformStats(ctx); return err }},
		{"ActiveCompanies", func(ctx context.Context, s Store) error { _, err := s.ActiveCompanies(ctx); return err }},
		{"UpdateCompany", func(ctx context.Context, s Store) error {
			_, err := s.UpdateCompany(ctx, companyID, CompanyChange{Name: &name})
			return err
		}},
		{"CreateAccount", func(ctx context.Context, s Store) error {
			_, err := s.CreateAccount(ctx, NewUser{Email: "outage@example.com", HashedPassword: "x", CompanyID: companyID})
			return err
		}},
		{"AccountByID", func(ctx context.Context, s Store) error { _, err := s.AccountByID(ctx, userID); return err }},
		{"AccountsByCompany", func(ctx context.Context, s Store) error {
			_, err := s.AccountsByCompany(ctx, companyID, 50, 0)
			return err
		}},
		{"UpdateAccount", func(ctx context.Context, s Store) error {
			_, err := s.UpdateAccount(ctx, userID, AccountChange{IsActive: &active, CompanyID: &companyID})
			return err
		}},
	}
}

// TestPostgresAdminStoreReportsOutagesNotAnswers: a database that is down must never look
// like "no such company" or "email taken", which the API would turn into a 404, 409 or 422.
func TestPostgresAdminStoreReportsOutagesNotAnswers(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s, err := openPostgres(context.Background(), withHost(t, testServerURL(), closedLoopbackAddr(t)), timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	calls := adminStoreCalls(newUUID(), newUUID())
	expectOutage(t, s, calls, timeout)
	for _, c := range calls {
		if err := c.call(context.Background(), s); errors.Is(err, errCompanyUnavailable) || errors.Is(err, errInvalidInput) {
			t.Errorf("%s during an outage: error %v, want a database error", c.name, err)
		}
	}
}
