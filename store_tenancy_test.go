// store_tenancy_test.go: the tenancy part of the store contract (invitations, email domains,
// joining a company, revoked sessions, change notifications) for both stores, and what only
// PostgreSQL can show: changes made with plain SQL reach Watch, the listener survives being
// killed or a hanging server, and the schema check and the expand-only migration.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// tenancyStoreCalls are the tenancy methods called with valid arguments naming rows that may
// exist, for the outage tests.
func tenancyStoreCalls(userID, email, companyID, invitationID string) []storeCall {
	return []storeCall{
		{"OpenInvitation", func(ctx context.Context, s Store) error {
			_, err := s.OpenInvitation(ctx, email, companyID)
			return err
		}},
		{"CompanyForDomain", func(ctx context.Context, s Store) error { _, err := s.CompanyForDomain(ctx, "example.com"); return err }},
		{"JoinCompany", func(ctx context.Context, s Store) error {
			_, err := s.JoinCompany(ctx, userID, companyID, invitationID)
			return err
		}},
		{"RevokeSessions", func(ctx context.Context, s Store) error { _, err := s.RevokeSessions(ctx, userID); return err }},
		{"CheckSchema", func(ctx context.Context, s Store) error { return s.CheckSchema(ctx) }},
		{"SetCompanyActive", func(ctx context.Context, s Store) error { return s.SetCompanyActive(ctx, companyID, true) }},
		{"CreateInvitation", func(ctx context.Context, s Store) error {
			_, err := s.CreateInvitation(ctx, Invitation{CompanyID: companyID, Email: email, ExpiresAt: time.Now().Add(time.Hour)})
			return err
		}},
		{"ListOpenInvitations", func(ctx context.Context, s Store) error { _, err := s.ListOpenInvitations(ctx, companyID); return err }},
		{"RevokeInvitation", func(ctx context.Context, s Store) error { return s.RevokeInvitation(ctx, companyID, invitationID) }},
		{"AddDomain", func(ctx context.Context, s Store) error { return s.AddDomain(ctx, "example.com", companyID) }},
		{"RemoveDomain", func(ctx context.Context, s Store) error { return s.RemoveDomain(ctx, "example.com", companyID) }},
	}
}

// setTokensValidAfter writes the column directly, so a test can tell "left alone" from "set
// again within the same second".
func setTokensValidAfter(t *testing.T, s Store, userID string, at time.Time) {
	t.Helper()
	switch s := s.(type) {
	case *pgStore:
		if _, err := s.pool.Exec(context.Background(), "UPDATE users SET tokens_valid_after = $2 WHERE id = $1", userID, at); err != nil {
			t.Fatal(err)
		}
	case *memoryStore:
		s.mu.Lock()
		s.users[userID].TokensValidAfter = at
		s.mu.Unlock()
	default:
		t.Fatalf("no way to set tokens_valid_after in %T", s)
	}
}

// checkRevokedNow fails unless at is a whole second between before (truncated) and now.
func checkRevokedNow(t *testing.T, what string, at, before time.Time) {
	t.Helper()
	if at.IsZero() || at.Nanosecond() != 0 || at.After(time.Now()) || at.Before(before.Truncate(time.Second)) {
		t.Errorf("%s: tokens_valid_after = %v, want now in whole seconds (called at %v)", what, at, before)
	}
}

// mustCreateCompany creates an active company in s or fails the test.
func mustCreateCompany(t *testing.T, s Store, name string) Company {
	t.Helper()
	c, err := s.CreateCompany(context.Background(), name)
	if err != nil {
		t.Fatalf("CreateCompany: %v", err)
	}
	return c
}

// runTenancyContract is the tenancy behaviour both stores must show; runStoreContract runs it.
func runTenancyContract(t *testing.T, s Store, mustCreate func(*testing.T, NewUser) User) {
	ctx := context.Background()
	newCompany := func(t *testing.T, name string) Company { return mustCreateCompany(t, s, name) }
	invite := func(t *testing.T, companyID, email, role string, expiresIn time.Duration) Invitation {
		t.Helper()
		inv, err := s.CreateInvitation(ctx, Invitation{CompanyID: companyID, Email: email, Role: role, ExpiresAt: time.Now().Add(expiresIn)})
		if err != nil {
			t.Fatalf("CreateInvitation(%s to %s): %v", email, companyID, err)
		}
		return inv
	}
	setActive := func(t *testing.T, companyID string, active bool) {
		t.Helper()
		if err := s.SetCompanyActive(ctx, companyID, active); err != nil {
			t.Fatalf("SetCompanyActive: %v", err)
		}
	}
	const day = 24 * time.Hour

	t.Run("UserCarriesCompanyActiveAndNoRevocation", func(t *testing.T) {
		co := newCompany(t, "Carrier")
		u := mustCreate(t, NewUser{Email: "carrier@example.com", CompanyID: co.ID})
		if !u.CompanyActive || !u.TokensValidAfter.IsZero() {
			t.Fatalf("created %+v; want CompanyActive and no tokens_valid_after", u)
		}
		setActive(t, co.ID, false)
		byID, err := s.UserByID(ctx, u.ID)
		if err != nil || byID.CompanyActive {
			t.Fatalf("UserByID after the company's deactivation = %+v, %v", byID, err)
		}
		if byEmail, err := s.UserByEmail(ctx, u.Email); err != nil || byEmail != byID {
			t.Fatalf("UserByEmail = %+v, %v; want %+v", byEmail, err, byID)
		}
		setActive(t, co.ID, true)
		if got, err := s.UserByID(ctx, u.ID); err != nil || !got.CompanyActive {
			t.Fatalf("UserByID after reactivation = %+v, %v", got, err)
		}
		if loner := mustCreate(t, NewUser{Email: "loner@example.com"}); loner.CompanyActive {
			t.Fatalf("a user without a company has CompanyActive: %+v", loner)
		}
	})

	t.Run("RevokeSessionsStoresNowInWholeSeconds", func(t *testing.T) {
		u := mustCreate(t, NewUser{Email: "revoke@example.com"})
		before := time.Now()
		at, err := s.RevokeSessions(ctx, strings.ToUpper(u.ID))
		if err != nil {
			t.Fatalf("RevokeSessions: %v", err)
		}
		checkRevokedNow(t, "RevokeSessions", at, before)
		if got, err := s.UserByID(ctx, u.ID); err != nil || !got.TokensValidAfter.Equal(at) {
			t.Fatalf("UserByID = %+v, %v; want tokens_valid_after %v", got, err, at)
		}
		for _, id := range []string{newUUID(), "not-a-uuid", ""} {
			if _, err := s.RevokeSessions(ctx, id); err != errNotFound {
				t.Errorf("RevokeSessions(%q) error = %v, want errNotFound", id, err)
			}
		}
	})

	t.Run("PasswordChangeAndDeactivationRevokeTokensOtherUpdatesDoNot", func(t *testing.T) {
		co := newCompany(t, "Revokers")
		long := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
		cases := []struct {
			name    string
			do      func(u User) error
			revokes bool
		}{
			{"SetPassword", func(u User) error { return s.SetPassword(ctx, u.Email, "$2b$12$new") }, true},
			{"SetActiveFalse", func(u User) error { return s.SetActive(ctx, u.Email, false) }, true},
			{"SetActiveTrue", func(u User) error { return s.SetActive(ctx, u.Email, true) }, false},
			{"SetUserCompany", func(u User) error { return s.SetUserCompany(ctx, u.ID, co.ID) }, false},
			{"TouchLastLogin", func(u User) error { return s.TouchLastLogin(ctx, u.ID) }, false},
			{"SetCompanyActive", func(u User) error { return s.SetCompanyActive(ctx, co.ID, false) }, false},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				u := mustCreate(t, NewUser{Email: fmt.Sprintf("revoker%d@example.com", i), CompanyID: co.ID})
				setTokensValidAfter(t, s, u.ID, long)
				before := time.Now()
				if err := tc.do(u); err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				got, err := s.UserByID(ctx, u.ID)
				if err != nil {
					t.Fatal(err)
				}
				if tc.revokes {
					checkRevokedNow(t, tc.name, got.TokensValidAfter, before)
				} else if !got.TokensValidAfter.Equal(long) {
					t.Errorf("%s changed tokens_valid_after to %v", tc.name, got.TokensValidAfter)
				}
			})
		}
		setActive(t, co.ID, true)
	})

	t.Run("OpenInvitationRules", func(t *testing.T) {
		type invSpec struct {
			company string        // "A" or "B"
			email   string        // without the case's prefix
			expires time.Duration // from now; negative: expired
			close   string        // "", "revoke" or "accept"
		}
		cases := []struct {
			name     string
			invites  []invSpec
			inactive string // company deactivated before the lookup
			email    string // looked up, without the case's prefix
			company  string // filter: "", "A", "B" or taken literally
			want     int    // index into invites; -1: errNotFound
		}{
			{"OpenIsFound", []invSpec{{"A", "ana@example.com", day, ""}}, "", "ana@example.com", "", 0},
			{"InvitedEmailInMixedCase", []invSpec{{"A", "Ana.Maria@Example.COM", day, ""}}, "", "ana.maria@example.com", "", 0},
			{"LookedUpEmailInUpperCase", []invSpec{{"A", "bob@example.com", day, ""}}, "", "BOB@EXAMPLE.COM", "", 0},
			{"ExpiredIsClosed", []invSpec{{"A", "late@example.com", -time.Minute, ""}}, "", "late@example.com", "", -1},
			{"RevokedIsClosed", []invSpec{{"A", "gone@example.com", day, "revoke"}}, "", "gone@example.com", "", -1},
			{"AcceptedIsClosed", []invSpec{{"A", "Done@Example.com", day, "accept"}}, "", "done@example.com", "", -1},
			{"InactiveCompanyHidesIt", []invSpec{{"A", "dormant@example.com", day, ""}}, "A", "dormant@example.com", "", -1},
			{"OtherEmailIsNotFound", []invSpec{{"A", "someone@example.com", day, ""}}, "", "someone.else@example.com", "", -1},
			{"CompanyFilterMatches", []invSpec{{"A", "filter@example.com", day, ""}}, "", "filter@example.com", "A", 0},
			{"CompanyFilterExcludesOtherCompanies", []invSpec{{"A", "other@example.com", day, ""}}, "", "other@example.com", "B", -1},
			{"MalformedCompanyFilterIsNotFound", []invSpec{{"A", "bad@example.com", day, ""}}, "", "bad@example.com", "not-a-uuid", -1},
			{"NewestWins", []invSpec{{"A", "two@example.com", day, ""}, {"B", "TWO@example.com", day, ""}}, "", "two@example.com", "", 1},
			{"NewestOpenWinsOverNewerClosed", []invSpec{{"A", "mixed@example.com", day, ""}, {"B", "mixed@example.com", day, "revoke"}}, "", "mixed@example.com", "", 0},
			{"FilterPicksOlderInvitationOfThatCompany", []invSpec{{"A", "pick@example.com", day, ""}, {"B", "pick@example.com", day, ""}}, "", "pick@example.com", "A", 0},
			{"NewestToAnActiveCompanyWins", []invSpec{{"A", "active@example.com", day, ""}, {"B", "active@example.com", day, ""}}, "B", "active@example.com", "", 0},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				companies := map[string]Company{"A": newCompany(t, "A"), "B": newCompany(t, "B")}
				prefix := fmt.Sprintf("inv%d-", i)
				var invs []Invitation
				for _, spec := range tc.invites {
					co := companies[spec.company]
					inv := invite(t, co.ID, prefix+spec.email, "user", spec.expires)
					switch spec.close {
					case "revoke":
						if err := s.RevokeInvitation(ctx, co.ID, inv.ID); err != nil {
							t.Fatalf("RevokeInvitation: %v", err)
						}
					case "accept":
						u := mustCreate(t, NewUser{Email: strings.ToUpper(prefix + spec.email)})
						if _, err := s.JoinCompany(ctx, u.ID, co.ID, inv.ID); err != nil {
							t.Fatalf("JoinCompany: %v", err)
						}
					}
					invs = append(invs, inv)
				}
				if tc.inactive != "" {
					setActive(t, companies[tc.inactive].ID, false)
				}
				filter := tc.company
				if co, ok := companies[filter]; ok {
					filter = co.ID
				}
				got, err := s.OpenInvitation(ctx, prefix+tc.email, filter)
				if tc.want < 0 {
					if err != errNotFound {
						t.Fatalf("OpenInvitation = %+v, %v; want errNotFound", got, err)
					}
					return
				}
				if err != nil || got != invs[tc.want] {
					t.Fatalf("OpenInvitation = %+v, %v; want %+v", got, err, invs[tc.want])
				}
			})
		}
	})

	t.Run("CompanyForDomainRules", func(t *testing.T) {
		type step struct {
			op      string // "add", "remove", "lookup" or "deactivate"
			domain  string
			company string // "A", "B", "missing" or "malformed"
			want    error  // nil, errNotFound, errDuplicate or errInvalidInput
			holder  string // lookup: the company found
		}
		cases := []struct {
			name  string
			steps []step
		}{
			{"RegisteredDomainIsFoundInAnyCase", []step{
				{op: "add", domain: "Example.ORG", company: "A"},
				{op: "lookup", domain: "example.org", holder: "A"},
				{op: "lookup", domain: "EXAMPLE.org", holder: "A"},
			}},
			{"UnknownDomainIsNotFound", []step{
				{op: "lookup", domain: "nobody.example", want: errNotFound},
			}},
			{"InactiveCompanyIsNotFound", []step{
				{op: "add", domain: "dormant.example", company: "A"},
				{op: "deactivate", company: "A"},
				{op: "lookup", domain: "dormant.example", want: errNotFound},
			}},
			{"OneCompanyPerDomain", []step{
				{op: "add", domain: "taken.example", company: "A"},
				{op: "add", domain: "TAKEN.example", company: "B", want: errDuplicate},
				{op: "lookup", domain: "taken.example", holder: "A"},
			}},
			{"AddingAgainIsIdempotent", []step{
				{op: "add", domain: "twice.example", company: "A"},
				{op: "add", domain: "Twice.Example", company: "A"},
				{op: "lookup", domain: "twice.example", holder: "A"},
			}},
			{"RemovedDomainIsNotFoundAndFreeAgain", []step{
				{op: "add", domain: "moving.example", company: "A"},
				{op: "remove", domain: "MOVING.example", company: "A"},
				{op: "lookup", domain: "moving.example", want: errNotFound},
				{op: "remove", domain: "moving.example", company: "A", want: errNotFound},
				{op: "add", domain: "moving.example", company: "B"},
				{op: "lookup", domain: "moving.example", holder: "B"},
			}},
			{"OnlyTheHolderRemovesADomain", []step{
				{op: "add", domain: "kept.example", company: "A"},
				{op: "remove", domain: "kept.example", company: "B", want: errNotFound},
				{op: "remove", domain: "kept.example", company: "malformed", want: errNotFound},
				{op: "lookup", domain: "kept.example", holder: "A"},
			}},
			{"MissingOrMalformedCompanyIsNotFound", []step{
				{op: "add", domain: "orphan.example", company: "missing", want: errNotFound},
				{op: "add", domain: "orphan.example", company: "malformed", want: errNotFound},
				{op: "lookup", domain: "orphan.example", want: errNotFound},
			}},
			{"EmptyOrBinaryDomainIsInvalidInput", []step{
				{op: "add", domain: "", company: "A", want: errInvalidInput},
				{op: "add", domain: "nul\x00.example", company: "A", want: errInvalidInput},
				{op: "lookup", domain: "nul\x00.example", want: errNotFound},
				{op: "lookup", domain: "\xff.example", want: errNotFound},
			}},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ids := map[string]string{"A": newCompany(t, "A").ID, "B": newCompany(t, "B").ID,
					"missing": newUUID(), "malformed": "not-a-uuid"}
				prefix := fmt.Sprintf("dom%d-", i)
				for n, st := range tc.steps {
					var err error
					domain := prefix + st.domain
					if st.domain == "" {
						domain = ""
					}
					switch st.op {
					case "add":
						err = s.AddDomain(ctx, domain, ids[st.company])
					case "remove":
						err = s.RemoveDomain(ctx, domain, ids[st.company])
					case "deactivate":
						err = s.SetCompanyActive(ctx, ids[st.company], false)
					case "lookup":
						var got string
						got, err = s.CompanyForDomain(ctx, domain)
						if st.want == nil && got != ids[st.holder] {
							t.Errorf("step %d: CompanyForDomain(%q) = %q, want company %s (%s)", n, domain, got, st.holder, ids[st.holder])
						}
					}
					if st.want == nil && err != nil || st.want != nil && !errors.Is(err, st.want) {
						t.Fatalf("step %d: %s %q (company %s): error %v, want %v", n, st.op, domain, st.company, err, st.want)
					}
				}
			})
		}
	})

	t.Run("JoinCompanyWithInvitationAcceptsItAndTakesItsRole", func(t *testing.T) {
		co := newCompany(t, "Joined")
		u := mustCreate(t, NewUser{Email: "Joiner@Example.com"})
		inv := invite(t, co.ID, "joiner@EXAMPLE.com", "admin", day)
		got, err := s.JoinCompany(ctx, u.ID, strings.ToUpper(co.ID), strings.ToUpper(inv.ID))
		if err != nil {
			t.Fatalf("JoinCompany: %v", err)
		}
		want := u
		want.CompanyID, want.Role, want.CompanyActive = co.ID, "admin", true
		if got != want {
			t.Fatalf("JoinCompany = %+v, want %+v", got, want)
		}
		if byID, err := s.UserByID(ctx, u.ID); err != nil || byID != want {
			t.Fatalf("UserByID = %+v, %v; want %+v", byID, err, want)
		}
		if open, err := s.OpenInvitation(ctx, u.Email, ""); err != errNotFound {
			t.Fatalf("the accepted invitation is still open: %+v, %v", open, err)
		}
		if _, err := s.JoinCompany(ctx, u.ID, co.ID, inv.ID); err != errInvitationClosed {
			t.Fatalf("accepting it again: error %v, want errInvitationClosed", err)
		}
	})

	t.Run("JoinCompanyWithoutInvitationKeepsRole", func(t *testing.T) {
		co := newCompany(t, "Plain join")
		u := mustCreate(t, NewUser{Email: "plainjoin@example.com", Role: "admin"})
		got, err := s.JoinCompany(ctx, u.ID, co.ID, "")
		if err != nil || got.CompanyID != co.ID || got.Role != "admin" || !got.CompanyActive {
			t.Fatalf("JoinCompany = %+v, %v", got, err)
		}
	})

	t.Run("JoinCompanyWithClosedInvitationChangesNothing", func(t *testing.T) {
		co, other := newCompany(t, "Closed"), newCompany(t, "Elsewhere")
		cases := []struct {
			name     string
			make     func(t *testing.T, email string) string // the invitation id
			stayOpen bool                                    // the invitation is open, just not for this join
		}{
			{"Expired", func(t *testing.T, email string) string { return invite(t, co.ID, email, "admin", -time.Second).ID }, false},
			{"Revoked", func(t *testing.T, email string) string {
				inv := invite(t, co.ID, email, "admin", day)
				if err := s.RevokeInvitation(ctx, co.ID, inv.ID); err != nil {
					t.Fatal(err)
				}
				return inv.ID
			}, false},
			{"AlreadyAccepted", func(t *testing.T, email string) string {
				inv := invite(t, co.ID, email, "admin", day)
				u, err := s.UserByEmail(ctx, email)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.JoinCompany(ctx, u.ID, co.ID, inv.ID); err != nil {
					t.Fatal(err)
				}
				// Back out, so that a second acceptance would show as a move.
				if err := s.SetUserCompany(ctx, u.ID, ""); err != nil {
					t.Fatal(err)
				}
				return inv.ID
			}, false},
			{"ForAnotherCompany", func(t *testing.T, email string) string { return invite(t, other.ID, email, "admin", day).ID }, true},
			{"ForAnotherEmail", func(t *testing.T, email string) string {
				return invite(t, co.ID, "someone-else-"+email, "admin", day).ID
			}, true},
			{"Unknown", func(t *testing.T, email string) string { return newUUID() }, false},
			{"Malformed", func(t *testing.T, email string) string { return "not-a-uuid" }, false},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				u := mustCreate(t, NewUser{Email: fmt.Sprintf("closed%d@example.com", i)})
				invID := tc.make(t, u.Email)
				before, err := s.UserByID(ctx, u.ID)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.JoinCompany(ctx, u.ID, co.ID, invID); err != errInvitationClosed {
					t.Fatalf("JoinCompany error = %v, want errInvitationClosed", err)
				}
				if after, err := s.UserByID(ctx, u.ID); err != nil || after != before {
					t.Fatalf("a refused join changed the user: %+v, %v; was %+v", after, err, before)
				}
				if tc.stayOpen {
					open, err := s.ListOpenInvitations(ctx, other.ID)
					if err != nil {
						t.Fatal(err)
					}
					mine, err := s.ListOpenInvitations(ctx, co.ID)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.ContainsFunc(append(open, mine...), func(inv Invitation) bool { return inv.ID == invID }) {
						t.Fatalf("a refused join closed invitation %s", invID)
					}
				}
			})
		}
	})

	t.Run("JoinCompanyIntoInactiveOrMissingCompanyIsNotFound", func(t *testing.T) {
		co := newCompany(t, "Sleeping")
		u := mustCreate(t, NewUser{Email: "sleeper@example.com"})
		inv := invite(t, co.ID, u.Email, "admin", day)
		setActive(t, co.ID, false)
		for _, tc := range []struct{ name, company, invitation string }{
			{"InactiveWithInvitation", co.ID, inv.ID},
			{"Inactive", co.ID, ""},
			{"Missing", newUUID(), ""},
			{"Malformed", "not-a-uuid", ""},
		} {
			if _, err := s.JoinCompany(ctx, u.ID, tc.company, tc.invitation); err != errNotFound {
				t.Errorf("%s: JoinCompany error = %v, want errNotFound", tc.name, err)
			}
		}
		if got, err := s.UserByID(ctx, u.ID); err != nil || got.CompanyID != "" || got.Role != "user" {
			t.Fatalf("a refused join changed the user: %+v, %v", got, err)
		}
		// Nothing was half-written: once the company is back, the invitation is still open.
		setActive(t, co.ID, true)
		if open, err := s.OpenInvitation(ctx, u.Email, co.ID); err != nil || open.ID != inv.ID {
			t.Fatalf("OpenInvitation after the refused join = %+v, %v; want %s", open, err, inv.ID)
		}
		for _, id := range []string{newUUID(), "not-a-uuid"} {
			if _, err := s.JoinCompany(ctx, id, co.ID, ""); err != errNotFound {
				t.Errorf("JoinCompany(user %q) error = %v, want errNotFound", id, err)
			}
		}
	})

	t.Run("InvitationIsAcceptedOnceUnderConcurrentJoins", func(t *testing.T) {
		co := newCompany(t, "Race")
		u := mustCreate(t, NewUser{Email: "racer@example.com"})
		inv := invite(t, co.ID, u.Email, "admin", day)
		const n = 8
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.JoinCompany(ctx, u.ID, co.ID, inv.ID)
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		accepted := 0
		for err := range errs {
			switch {
			case err == nil:
				accepted++
			case err != errInvitationClosed:
				t.Errorf("JoinCompany error = %v, want nil or errInvitationClosed", err)
			}
		}
		if accepted != 1 {
			t.Fatalf("%d joins accepted the invitation, want exactly 1", accepted)
		}
	})

	t.Run("CreateInvitationStoresWhatItWasGiven", func(t *testing.T) {
		co := newCompany(t, "Inviter")
		admin := mustCreate(t, NewUser{Email: "inviter@example.com", Role: "admin", CompanyID: co.ID})
		expires := time.Now().Add(7 * day)
		before := time.Now()
		inv, err := s.CreateInvitation(ctx, Invitation{CompanyID: strings.ToUpper(co.ID), Email: "New.Hire@Example.com",
			CreatedBy: admin.ID, ExpiresAt: expires})
		if err != nil {
			t.Fatalf("CreateInvitation: %v", err)
		}
		if !isUUID(inv.ID) || inv.ID != strings.ToLower(inv.ID) || inv.CompanyID != co.ID || inv.Email != "New.Hire@Example.com" ||
			inv.Role != "user" || inv.CreatedBy != admin.ID || !inv.AcceptedAt.IsZero() || !inv.RevokedAt.IsZero() {
			t.Fatalf("created %+v", inv)
		}
		if inv.CreatedAt.Before(before.Add(-time.Second)) || inv.CreatedAt.After(time.Now()) {
			t.Errorf("CreatedAt = %v, want now", inv.CreatedAt)
		}
		if d := inv.ExpiresAt.Sub(expires); d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("ExpiresAt = %v, want %v", inv.ExpiresAt, expires)
		}
		if got, err := s.OpenInvitation(ctx, "new.hire@example.com", ""); err != nil || got != inv {
			t.Fatalf("OpenInvitation = %+v, %v; want %+v", got, err, inv)
		}
	})

	t.Run("CreateInvitationRefusesBadInput", func(t *testing.T) {
		co := newCompany(t, "Picky")
		ok := Invitation{CompanyID: co.ID, Email: "picky@example.com", Role: "admin", ExpiresAt: time.Now().Add(day)}
		cases := []struct {
			name   string
			change func(inv *Invitation)
			want   error
		}{
			{"UnknownRole", func(inv *Invitation) { inv.Role = "owner" }, errInvalidInput},
			{"RoleInOtherCase", func(inv *Invitation) { inv.Role = "Admin" }, errInvalidInput},
			{"NoEmail", func(inv *Invitation) { inv.Email = "" }, errInvalidInput},
			{"NoExpiry", func(inv *Invitation) { inv.ExpiresAt = time.Time{} }, errInvalidInput},
			{"MissingCompany", func(inv *Invitation) { inv.CompanyID = newUUID() }, errNotFound},
			{"MalformedCompany", func(inv *Invitation) { inv.CompanyID = "acme" }, errNotFound},
			{"MissingCreator", func(inv *Invitation) { inv.CreatedBy = newUUID() }, errNotFound},
			{"MalformedCreator", func(inv *Invitation) { inv.CreatedBy = "root" }, errNotFound},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				inv := ok
				tc.change(&inv)
				if got, err := s.CreateInvitation(ctx, inv); !errors.Is(err, tc.want) {
					t.Fatalf("CreateInvitation = %+v, %v; want %v", got, err, tc.want)
				}
			})
		}
		if open, err := s.ListOpenInvitations(ctx, co.ID); err != nil || len(open) != 0 {
			t.Fatalf("refused invitations were stored: %+v, %v", open, err)
		}
	})

	t.Run("ListOpenInvitationsNewestFirst", func(t *testing.T) {
		co, other := newCompany(t, "Lister"), newCompany(t, "Not listed")
		oldest := invite(t, co.ID, "l1@example.com", "user", day)
		invite(t, co.ID, "l2@example.com", "user", -time.Second) // expired
		revoked := invite(t, co.ID, "l3@example.com", "user", day)
		accepted := invite(t, co.ID, "l4@example.com", "user", day)
		newest := invite(t, co.ID, "l5@example.com", "admin", day)
		invite(t, other.ID, "l6@example.com", "user", day)
		if err := s.RevokeInvitation(ctx, co.ID, revoked.ID); err != nil {
			t.Fatal(err)
		}
		u := mustCreate(t, NewUser{Email: "l4@example.com"})
		if _, err := s.JoinCompany(ctx, u.ID, co.ID, accepted.ID); err != nil {
			t.Fatal(err)
		}
		got, err := s.ListOpenInvitations(ctx, strings.ToUpper(co.ID))
		if err != nil || !slices.Equal(got, []Invitation{newest, oldest}) {
			t.Fatalf("ListOpenInvitations = %+v, %v; want %+v", got, err, []Invitation{newest, oldest})
		}
		empty := newCompany(t, "Nobody invited")
		if got, err := s.ListOpenInvitations(ctx, empty.ID); err != nil || len(got) != 0 {
			t.Fatalf("ListOpenInvitations(no invitations) = %+v, %v; want none", got, err)
		}
		for _, id := range []string{newUUID(), "not-a-uuid"} {
			if _, err := s.ListOpenInvitations(ctx, id); err != errNotFound {
				t.Errorf("ListOpenInvitations(%q) error = %v, want errNotFound", id, err)
			}
		}
	})

	t.Run("RevokeInvitationOnlyClosesAnOpenOneOfThatCompany", func(t *testing.T) {
		co, other := newCompany(t, "Revoker"), newCompany(t, "Bystander")
		inv := invite(t, co.ID, "revokee@example.com", "user", day)
		expired := invite(t, co.ID, "expired@example.com", "user", -time.Second)
		for _, tc := range []struct{ name, company, invitation string }{
			{"OtherCompany", other.ID, inv.ID},
			{"MissingInvitation", co.ID, newUUID()},
			{"MalformedInvitation", co.ID, "not-a-uuid"},
			{"MalformedCompany", "not-a-uuid", inv.ID},
			{"Expired", co.ID, expired.ID},
		} {
			if err := s.RevokeInvitation(ctx, tc.company, tc.invitation); err != errNotFound {
				t.Errorf("%s: RevokeInvitation error = %v, want errNotFound", tc.name, err)
			}
		}
		if _, err := s.OpenInvitation(ctx, inv.Email, co.ID); err != nil {
			t.Fatalf("refused revocations closed the invitation: %v", err)
		}
		if err := s.RevokeInvitation(ctx, strings.ToUpper(co.ID), strings.ToUpper(inv.ID)); err != nil {
			t.Fatalf("RevokeInvitation: %v", err)
		}
		if _, err := s.OpenInvitation(ctx, inv.Email, ""); err != errNotFound {
			t.Fatalf("OpenInvitation after revoking: %v, want errNotFound", err)
		}
		if err := s.RevokeInvitation(ctx, co.ID, inv.ID); err != errNotFound {
			t.Fatalf("revoking twice: error %v, want errNotFound", err)
		}
	})

	t.Run("WatchReportsChangesOfUsersAndCompanies", func(t *testing.T) {
		w := startWatch(t, s)
		w.waitListening(t, 10*time.Second)
		co := newCompany(t, "Watched")
		target := newCompany(t, "Watched target")
		cases := []struct {
			name  string
			do    func(u User) error
			table string // "users": the user's id; "companies": co's
		}{
			{"SetUserCompany", func(u User) error { return s.SetUserCompany(ctx, u.ID, target.ID) }, "users"},
			{"JoinCompany", func(u User) error { _, err := s.JoinCompany(ctx, u.ID, target.ID, ""); return err }, "users"},
			{"SetActiveFalse", func(u User) error { return s.SetActive(ctx, u.Email, false) }, "users"},
			{"SetPassword", func(u User) error { return s.SetPassword(ctx, u.Email, "$2b$12$other") }, "users"},
			{"RevokeSessions", func(u User) error { _, err := s.RevokeSessions(ctx, u.ID); return err }, "users"},
			{"SetCompanyActive", func(u User) error { return s.SetCompanyActive(ctx, co.ID, false) }, "companies"},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				u := mustCreate(t, NewUser{Email: fmt.Sprintf("watched%d@example.com", i), CompanyID: co.ID})
				// A login changes nothing any cache holds: it must not be reported. The change
				// after it is, so seeing that one first proves the login was not.
				if err := s.TouchLastLogin(ctx, u.ID); err != nil {
					t.Fatal(err)
				}
				if err := tc.do(u); err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				want := StoreChange{Table: tc.table, ID: u.ID}
				if tc.table == "companies" {
					want.ID = co.ID
				}
				if got, _ := w.nextChange(t, 5*time.Second); got != want {
					t.Fatalf("first change reported = %+v, want %+v", got, want)
				}
			})
		}
	})

	t.Run("WatchWithNilHooksReturnsWhenContextEnds", func(t *testing.T) {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Watch(wctx, WatchHooks{})
		}()
		co := newCompany(t, "Unwatched")
		if err := s.SetCompanyActive(ctx, co.ID, false); err != nil {
			t.Fatal(err)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Watch did not return after its context ended")
		}
	})
}

// watchRecorder records what Watch reports, each with the time the hook was called.
type watchRecorder struct {
	changes   chan timedChange
	listening chan struct{}
	lost      chan error
	lostCount atomic.Int32
}

type timedChange struct {
	StoreChange
	at time.Time
}

// startWatch runs s.Watch until the test ends, and then checks that it returns.
func startWatch(t *testing.T, s Store) *watchRecorder {
	t.Helper()
	w := &watchRecorder{
		changes:   make(chan timedChange, 1000),
		listening: make(chan struct{}, 100),
		lost:      make(chan error, 100),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, WatchHooks{
			Changed:   func(c StoreChange) { w.changes <- timedChange{c, time.Now()} },
			Lost:      func(err error) { w.lostCount.Add(1); w.lost <- err },
			Listening: func() { w.listening <- struct{}{} },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Watch did not return after its context ended")
		}
	})
	return w
}

func (w *watchRecorder) waitListening(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-w.listening:
	case <-time.After(within):
		t.Fatalf("Watch did not report Listening within %v", within)
	}
}

func (w *watchRecorder) waitLost(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-w.lost:
		return err
	case <-time.After(within):
		t.Fatalf("Watch did not report Lost within %v", within)
		return nil
	}
}

// nextChange returns the next change reported and when its hook was called.
func (w *watchRecorder) nextChange(t *testing.T, within time.Duration) (StoreChange, time.Time) {
	t.Helper()
	select {
	case c := <-w.changes:
		return c.StoreChange, c.at
	case <-time.After(within):
		t.Fatalf("no change reported within %v", within)
		return StoreChange{}, time.Time{}
	}
}

// sqlConn is a plain connection to dbURL, as an operator's psql would be.
func sqlConn(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// openPostgresAt opens a store on dbURL, closed when the test ends.
func openPostgresAt(t testing.TB, dbURL string, timeout time.Duration) *pgStore {
	t.Helper()
	s, err := openPostgres(context.Background(), dbURL, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// relayedTestPostgres opens a store on a fresh test database through a tcpRelay, so that the
// test can cut or stall the database; dbURL reaches the server directly.
func relayedTestPostgres(t *testing.T, timeout time.Duration) (s *pgStore, relay *tcpRelay, dbURL string) {
	t.Helper()
	dbURL = testDatabaseURL(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	relay = newTCPRelay(t, u.Host)
	return openPostgresAt(t, withHost(t, dbURL, relay.Addr()), timeout), relay, dbURL
}

func TestPostgresWatchSeesPlainSQLChangesWithinASecond(t *testing.T) {
	ctx := context.Background()
	dbURL := testDatabaseURL(t)
	s := openPostgresAt(t, dbURL, testDBTimeout)
	psql := sqlConn(t, dbURL)
	w := startWatch(t, s)
	w.waitListening(t, 10*time.Second)

	acme, err := s.CreateCompany(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.CreateCompany(ctx, "Other")
	if err != nil {
		t.Fatal(err)
	}
	doomed, err := s.CreateCompany(ctx, "Doomed")
	if err != nil {
		t.Fatal(err)
	}
	users := make([]User, 6)
	for i := range users {
		if users[i], err = s.CreateUser(ctx, NewUser{Email: fmt.Sprintf("psql%d@example.com", i), HashedPassword: "x", CompanyID: acme.ID}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		sql  string
		arg  string
		want StoreChange
	}{
		{"DeactivateUser", "UPDATE users SET is_active = false WHERE id = $1", users[0].ID, StoreChange{"users", users[0].ID}},
		{"MoveUser", "UPDATE users SET company_id = '" + other.ID + "' WHERE id = $1", users[1].ID, StoreChange{"users", users[1].ID}},
		{"ChangeRole", "UPDATE users SET role = 'admin' WHERE id = $1", users[2].ID, StoreChange{"users", users[2].ID}},
		{"RevokeTokens", "UPDATE users SET tokens_valid_after = now() WHERE id = $1", users[3].ID, StoreChange{"users", users[3].ID}},
		{"DeleteUser", "DELETE FROM users WHERE id = $1", users[4].ID, StoreChange{"users", users[4].ID}},
		{"DeactivateCompany", "UPDATE companies SET is_active = false WHERE id = $1", acme.ID, StoreChange{"companies", acme.ID}},
		{"DeleteCompany", "DELETE FROM companies WHERE id = $1", doomed.ID, StoreChange{"companies", doomed.ID}},
	}
	// Writes that change nothing a cache holds; each case runs them first and must see its
	// own change reported first.
	quiet := []string{
		"UPDATE users SET last_login = now() WHERE id = $1",
		"UPDATE users SET updated_at = now() WHERE id = $1",
		"UPDATE users SET is_active = is_active WHERE id = $1",
		"UPDATE companies SET name = name || ' renamed' WHERE id <> (SELECT company_id FROM users WHERE id = $1)",
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, q := range quiet {
				mustExec(t, psql, q, users[5].ID)
			}
			// Measured from when the statement is sent: the notification may well arrive
			// before the statement's own answer.
			sent := time.Now()
			mustExec(t, psql, tc.sql, tc.arg)
			got, at := w.nextChange(t, 5*time.Second)
			delay := at.Sub(sent)
			t.Logf("%s reached Watch %v after the statement was sent", tc.name, delay)
			if got != tc.want {
				t.Fatalf("first change reported = %+v, want %+v", got, tc.want)
			}
			if delay > time.Second {
				t.Fatalf("%s took %v to reach Watch, want under 1s", tc.name, delay)
			}
		})
	}
}

// terminateListener kills the database's end of the store's listener connection, as an
// operator's pg_terminate_backend would, and returns how many backends it killed.
func terminateListener(t *testing.T, psql *pgx.Conn) int {
	t.Helper()
	var n int
	err := psql.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`, listenerAppName).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPostgresWatchReconnectsByItselfAfterListenerIsKilled(t *testing.T) {
	dbURL := testDatabaseURL(t)
	s := openPostgresAt(t, dbURL, testDBTimeout)
	psql := sqlConn(t, dbURL)
	co, err := s.CreateCompany(context.Background(), "Acme")
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, s)
	w.waitListening(t, 10*time.Second)

	if n := terminateListener(t, psql); n != 1 {
		t.Fatalf("terminated %d listener backends, want 1", n)
	}
	killed := time.Now()
	lostErr := w.waitLost(t, 5*time.Second)
	w.waitListening(t, 5*time.Second)
	t.Logf("listener lost (%v) and listening again %v after pg_terminate_backend", lostErr, time.Since(killed))

	mustExec(t, psql, "UPDATE companies SET is_active = false WHERE id = $1", co.ID)
	if got, _ := w.nextChange(t, 5*time.Second); got != (StoreChange{"companies", co.ID}) {
		t.Fatalf("change after reconnecting = %+v", got)
	}
	if n := w.lostCount.Load(); n != 1 {
		t.Errorf("Lost reported %d times, want 1", n)
	}
}

func TestPostgresWatchNoticesHangingDatabaseAndRecovers(t *testing.T) {
	const timeout = 500 * time.Millisecond
	s, relay, dbURL := relayedTestPostgres(t, timeout)
	s.watchIdle = 200 * time.Millisecond
	psql := sqlConn(t, dbURL) // straight to the server: changes are made while the relay hangs
	co, err := s.CreateCompany(context.Background(), "Acme")
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, s)
	w.waitListening(t, 10*time.Second)

	relay.Stall()
	frozen := time.Now()
	w.waitLost(t, 10*time.Second)
	noticed := time.Since(frozen)
	t.Logf("hanging database noticed after %v (idle wait %v + deadline %v)", noticed, s.watchIdle, timeout)
	if noticed > s.watchIdle+timeout+2*time.Second {
		t.Errorf("hang noticed after %v", noticed)
	}
	// Reconnection attempts keep failing against the hanging server; Lost is not repeated.
	attempts := relay.accepted.Load()
	deadline := time.Now().Add(15 * time.Second)
	for relay.accepted.Load() < attempts+2 {
		if time.Now().After(deadline) {
			t.Fatalf("Watch stopped trying to reconnect: %d connections", relay.accepted.Load())
		}
		time.Sleep(20 * time.Millisecond) // polling for the attempts, not proving a bound
	}
	mustExec(t, psql, "UPDATE companies SET is_active = false WHERE id = $1", co.ID) // unseen: the listener is down

	relay.Restore()
	w.waitListening(t, 10*time.Second)
	if n := w.lostCount.Load(); n != 1 {
		t.Errorf("Lost reported %d times for one outage, want 1", n)
	}
	mustExec(t, psql, "UPDATE companies SET is_active = true WHERE id = $1", co.ID)
	if got, _ := w.nextChange(t, 5*time.Second); got != (StoreChange{"companies", co.ID}) {
		t.Fatalf("change after recovery = %+v", got)
	}
}

func TestPostgresWatchStartsWhileDatabaseIsDown(t *testing.T) {
	s, relay, dbURL := relayedTestPostgres(t, 500*time.Millisecond)
	relay.Sever()
	w := startWatch(t, s)
	if err := w.waitLost(t, 5*time.Second); err == nil {
		t.Error("Lost reported a nil error")
	}
	relay.Restore()
	w.waitListening(t, 10*time.Second)
	psql := sqlConn(t, dbURL)
	co, err := s.CreateCompany(context.Background(), "Acme")
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, psql, "DELETE FROM companies WHERE id = $1", co.ID)
	if got, _ := w.nextChange(t, 5*time.Second); got != (StoreChange{"companies", co.ID}) {
		t.Fatalf("change after the database came up = %+v", got)
	}
}

func TestParseStoreChangeIgnoresMalformedPayloads(t *testing.T) {
	id := newUUID()
	cases := []struct {
		channel, payload string
		want             StoreChange
		ok               bool
	}{
		{watchChannel, "users:" + id, StoreChange{"users", id}, true},
		{watchChannel, "companies:" + strings.ToUpper(id), StoreChange{"companies", id}, true},
		{watchChannel, "company_domains:" + id, StoreChange{}, false},
		{watchChannel, "users:" + id + "x", StoreChange{}, false},
		{watchChannel, "users", StoreChange{}, false},
		{watchChannel, "", StoreChange{}, false},
		{watchChannel, ":" + id, StoreChange{}, false},
		{"another_channel", "users:" + id, StoreChange{}, false},
	}
	for _, tc := range cases {
		if got, ok := parseStoreChange(tc.channel, tc.payload); got != tc.want || ok != tc.ok {
			t.Errorf("parseStoreChange(%q, %q) = %+v, %v; want %+v, %v", tc.channel, tc.payload, got, ok, tc.want, tc.ok)
		}
	}
}

func TestPostgresJoinCompanySetsAcceptedAtToNow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, co, u := postgresWithUser(t, "accept@example.com")
	inv, err := s.CreateInvitation(ctx, Invitation{CompanyID: co.ID, Email: u.Email, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, "UPDATE users SET updated_at = '2000-01-01' WHERE id = $1", u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.JoinCompany(ctx, u.ID, co.ID, inv.ID); err != nil {
		t.Fatal(err)
	}
	var acceptedNow, updatedNow bool
	err = s.pool.QueryRow(ctx, `SELECT i.accepted_at > now() - interval '1 minute', u.updated_at > now() - interval '1 minute'
		FROM company_invitations i, users u WHERE i.id = $1 AND u.id = $2`, inv.ID, u.ID).Scan(&acceptedNow, &updatedNow)
	if err != nil || !acceptedNow || !updatedNow {
		t.Fatalf("accepted_at now: %v, updated_at now: %v, %v", acceptedNow, updatedNow, err)
	}
}

// previousSchemaSQL is what the previous gateway's migrate created (schema.sql of 76af7ec).
const previousSchemaSQL = `
CREATE TABLE IF NOT EXISTS companies (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    created_at timestamptz DEFAULT now(),
    is_active  boolean DEFAULT true
);
CREATE TABLE IF NOT EXISTS users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id      uuid NULL REFERENCES companies (id),
    email           text UNIQUE NOT NULL,
    hashed_password text NOT NULL,
    full_name       text,
    role            text DEFAULT 'user',
    created_at      timestamptz DEFAULT now(),
    updated_at      timestamptz DEFAULT now(),
    last_login      timestamptz,
    is_active       boolean DEFAULT true
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_lower_key ON users (lower(email));`

func TestCheckSchemaRefusesUnmigratedDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	migrated := func(t testing.TB) string { return testDatabaseURL(t) }
	cases := []struct {
		name        string
		dbURL       func(t testing.TB) string
		setup       string
		wantMissing []string // nil: migrated
	}{
		{"EmptyDatabase", emptyTestDatabaseURL, "", []string{"table companies", "table users", "table company_invitations",
			"trigger atenex_gateway_users_changed"}},
		{"PreviousGatewaySchema", emptyTestDatabaseURL, previousSchemaSQL, []string{"column users.tokens_valid_after",
			"table company_invitations", "table company_domains", "trigger atenex_gateway_users_changed",
			"trigger atenex_gateway_users_deleted", "trigger atenex_gateway_companies_changed", "trigger atenex_gateway_companies_deleted"}},
		{"DisabledTrigger", migrated, "ALTER TABLE companies DISABLE TRIGGER atenex_gateway_companies_changed",
			[]string{"trigger atenex_gateway_companies_changed"}},
		{"Migrated", migrated, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dbURL := tc.dbURL(t)
			if tc.setup != "" {
				mustExec(t, sqlConn(t, dbURL), tc.setup)
			}
			err := openPostgresAt(t, dbURL, testDBTimeout).CheckSchema(ctx)
			if tc.wantMissing == nil {
				if err != nil {
					t.Fatalf("CheckSchema on a migrated database: %v", err)
				}
				return
			}
			if !errors.Is(err, errSchemaNotMigrated) {
				t.Fatalf("CheckSchema error = %v, want errSchemaNotMigrated", err)
			}
			for _, part := range tc.wantMissing {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error does not name %q: %v", part, err)
				}
			}
			if tc.name == "PreviousGatewaySchema" && strings.Contains(err.Error(), "table users") {
				t.Errorf("error names a table that exists: %v", err)
			}
		})
	}
}

func TestCheckSchemaDatabaseDownIsNotAnUnmigratedSchema(t *testing.T) {
	s := openPostgresAt(t, withHost(t, testServerURL(), closedLoopbackAddr(t)), 500*time.Millisecond)
	err := s.CheckSchema(context.Background())
	if err == nil || errors.Is(err, errSchemaNotMigrated) {
		t.Fatalf("CheckSchema with the database down: %v; want a connection error", err)
	}
}

func TestMigrateUpgradesPreviousGatewayDatabaseKeepingItsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := emptyTestDatabaseURL(t)
	psql := sqlConn(t, dbURL)
	mustExec(t, psql, previousSchemaSQL)
	var companyID, userID string
	if err := psql.QueryRow(ctx, "INSERT INTO companies (name) VALUES ('Old') RETURNING id::text").Scan(&companyID); err != nil {
		t.Fatal(err)
	}
	if err := psql.QueryRow(ctx, `INSERT INTO users (email, hashed_password, company_id) VALUES ('old@example.com', 'x', $1)
		RETURNING id::text`, companyID).Scan(&userID); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ { // the second run finds everything in place
		if err := migrate(ctx, dbURL, 30*time.Second); err != nil {
			t.Fatalf("migrate run %d: %v", i, err)
		}
	}
	s := openPostgresAt(t, dbURL, testDBTimeout)
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema after migrate: %v", err)
	}
	u, err := s.UserByID(ctx, userID)
	want := User{ID: userID, CompanyID: companyID, Email: "old@example.com", HashedPassword: "x", Role: "user",
		IsActive: true, CompanyActive: true}
	if err != nil || u != want {
		t.Fatalf("user written before the migration = %+v, %v; want %+v", u, err, want)
	}
	var triggers int
	if err := psql.QueryRow(ctx, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'atenex_gateway_%'").Scan(&triggers); err != nil || triggers != 4 {
		t.Fatalf("triggers after two migrations = %d, %v; want 4", triggers, err)
	}
}

// The previous gateway's queries (db.go of 76af7ec), verbatim: a migrated database must
// still serve it, so that rolling back stays possible.
const (
	previousUserColumns = `id::text, coalesce(company_id::text, ''), email, hashed_password,
	coalesce(full_name, ''), coalesce(role, 'user'), coalesce(is_active, false)`
	previousCreateUser = `INSERT INTO users (email, hashed_password, full_name, role, company_id)
			SELECT $1::text, $2::text, $3::text, $4::text, $5::uuid
			WHERE NOT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1::text))
			RETURNING ` + previousUserColumns
)

func TestPreviousGatewaySQLRunsOnMigratedDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testDatabaseURL(t)
	old := openPostgresAt(t, dbURL, testDBTimeout).pool
	var co Company
	if err := old.QueryRow(ctx, "INSERT INTO companies (name) VALUES ($1) RETURNING id::text, name, coalesce(is_active, false)",
		"Old").Scan(&co.ID, &co.Name, &co.IsActive); err != nil {
		t.Fatalf("previous CreateCompany: %v", err)
	}
	scanOld := func(row pgx.Row) (User, error) {
		var u User
		err := row.Scan(&u.ID, &u.CompanyID, &u.Email, &u.HashedPassword, &u.FullName, &u.Role, &u.IsActive)
		return u, err
	}
	created, err := scanOld(old.QueryRow(ctx, previousCreateUser, "Old@Example.com", "x", "Old Timer", "user", co.ID))
	if err != nil {
		t.Fatalf("previous CreateUser: %v", err)
	}
	byID, err := scanOld(old.QueryRow(ctx, "SELECT "+previousUserColumns+" FROM users WHERE id = $1", created.ID))
	if err != nil || byID != created {
		t.Fatalf("previous UserByID = %+v, %v; want %+v", byID, err, created)
	}
	byEmail, err := scanOld(old.QueryRow(ctx, "SELECT "+previousUserColumns+
		" FROM users WHERE lower(email) = lower($1) ORDER BY email = $1 DESC LIMIT 1", "old@example.com"))
	if err != nil || byEmail != created {
		t.Fatalf("previous UserByEmail = %+v, %v; want %+v", byEmail, err, created)
	}
	updates := []struct {
		sql  string
		args []any
	}{
		{"UPDATE users SET company_id = $2, updated_at = now() WHERE id = $1", []any{created.ID, nil}},
		{"UPDATE users SET company_id = $2, updated_at = now() WHERE id = $1", []any{created.ID, co.ID}},
		{"UPDATE users SET last_login = now() WHERE id = $1", []any{created.ID}},
		{"UPDATE users SET hashed_password = $2, updated_at = now() WHERE lower(email) = lower($1)", []any{"old@example.com", "y"}},
		{"UPDATE users SET is_active = $2, updated_at = now() WHERE lower(email) = lower($1)", []any{"old@example.com", false}},
		{"UPDATE companies SET is_active = $2 WHERE id = $1", []any{co.ID, false}},
	}
	for _, up := range updates {
		tag, err := old.Exec(ctx, up.sql, up.args...)
		if err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("previous %q: %v rows, %v", up.sql, tag.RowsAffected(), err)
		}
	}
	var active bool
	if err := old.QueryRow(ctx, "SELECT coalesce(is_active, false) FROM companies WHERE id = $1", co.ID).Scan(&active); err != nil || active {
		t.Fatalf("previous CompanyActive = %v, %v", active, err)
	}
	// And the new store reads what the old SQL wrote.
	s := openPostgresAt(t, dbURL, testDBTimeout)
	got, err := s.UserByEmail(ctx, "OLD@example.com")
	want := User{ID: created.ID, CompanyID: co.ID, Email: "Old@Example.com", HashedPassword: "y", FullName: "Old Timer",
		Role: "user"}
	if err != nil || got != want {
		t.Fatalf("UserByEmail after the previous gateway's writes = %+v, %v; want %+v", got, err, want)
	}
}

func TestMemoryWatchHookMayCallTheStoreAndStopsWhenContextEnds(t *testing.T) {
	ctx := context.Background()
	m := newMemoryStore()
	u, err := m.CreateUser(ctx, NewUser{Email: "hooked@example.com", HashedPassword: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	wctx, cancel := context.WithCancel(ctx)
	listening, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		m.Watch(wctx, WatchHooks{
			Listening: func() { close(listening) },
			Changed: func(c StoreChange) {
				// A cache reloads the row from inside the hook: the store's lock is free.
				if _, err := m.UserByID(ctx, c.ID); err != nil {
					t.Errorf("UserByID from the hook: %v", err)
				}
				calls.Add(1)
			},
		})
	}()
	<-listening
	if _, err := m.RevokeSessions(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 { // reported synchronously, before RevokeSessions returns
		t.Fatalf("Changed called %d times, want 1", n)
	}
	cancel()
	<-done
	if err := m.SetActive(ctx, u.Email, false); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("Changed called after Watch returned: %d calls", n)
	}
}
