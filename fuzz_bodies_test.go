// fuzz_bodies_test.go: hostile bodies and path parameters on the routes that parse them
// (ensure-company, password change, the admin API) never get a 5xx, and always a JSON detail.
package main

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// FuzzUserAndAdminBodiesNeverServerError sends arbitrary bodies and path segments to every
// route that reads one, as a database admin (so the admin handlers parse them too), on the
// in-memory store.
func FuzzUserAndAdminBodiesNeverServerError(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `null`, `[]`, `{"company_id":null}`, `{"company_id":"acme"}`,
		`{"company_id":"00000000-0000-4000-8000-000000000000"}`,
		`{"current_password":"x","new_password":"y"}`, `{"current_password":1}`,
		`{"name":"Acme"}`, `{"name":""}`, `{"email":"a@b.co","password":"12345678","name":"A","company_id":null,"roles":["admin"]}`,
		`{"roles":["root"]}`, `{"is_active":"yes"}`, `{"is_active":false,"name":"x"}`,
		`{"email":"x@y.z","role":"user","expires_in_days":-1}`, `{"expires_in_days":1e309}`,
		"{\"name\":\"\xff\"}", `{"a":` + strings.Repeat("[", 5000),
	} {
		f.Add(seed, "example.com")
	}
	f.Add(`{}`, "..")
	f.Add(`{}`, "%00")
	f.Add(`{}`, "EXAMPLE.com.")

	mem := newMemoryStore()
	ctx := context.Background()
	co, err := mem.CreateCompany(ctx, "Acme")
	if err != nil {
		f.Fatal(err)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("right-password"), bcrypt.MinCost)
	admin, err := mem.CreateUser(ctx, NewUser{Email: "admin@acme.example", HashedPassword: string(hash), Role: "admin", CompanyID: co.ID})
	if err != nil {
		f.Fatal(err)
	}
	cfg := testConfig(f, map[string]string{"GATEWAY_LOGIN_IP_BURST": "0", "GATEWAY_LOGIN_EMAIL_BURST": "0", "GATEWAY_LOGIN_GLOBAL_BURST": "0"})
	e := serveTestEnv(f, cfg, mem, "", nil)
	token := e.token(admin)

	f.Fuzz(func(t *testing.T, body, segment string) {
		e.t = t
		seg := url.PathEscape(segment)
		for _, rt := range []struct{ method, path string }{
			{"POST", "/api/v1/users/me/ensure-company"},
			{"POST", "/api/v1/admin/companies"},
			{"POST", "/api/v1/admin/users"},
			{"PATCH", "/api/v1/admin/companies/" + seg},
			{"PATCH", "/api/v1/admin/users/" + seg},
			{"POST", "/api/v1/admin/companies/" + co.ID + "/invitations"},
			{"PUT", "/api/v1/admin/companies/" + co.ID + "/domains/" + seg},
			{"GET", "/api/v1/admin/users/by_company/" + seg + "?limit=" + seg},
		} {
			r := e.do(rt.method, rt.path, token, body)
			if r.status >= 500 {
				t.Fatalf("%s %s with %q: %d %s", rt.method, rt.path, body, r.status, r.body)
			}
			if r.status >= 400 && r.json(t)["detail"] == nil {
				t.Fatalf("%s %s: %d without detail: %s", rt.method, rt.path, r.status, r.body)
			}
		}
	})
}

// FuzzNormalizeDomain: a domain is either refused or comes back lower-case, without a
// leading '@', stable under a second normalisation.
func FuzzNormalizeDomain(f *testing.F) {
	for _, s := range []string{"example.com", "@Example.COM", " a-b.c ", "-a.com", "a..b", "ä.com", "x", strings.Repeat("a.", 200) + "com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := normalizeDomain(s)
		if !ok {
			return
		}
		if d != strings.ToLower(d) || strings.HasPrefix(d, "@") || !strings.Contains(d, ".") || len(d) > 253 {
			t.Fatalf("normalizeDomain(%q) = %q", s, d)
		}
		if again, ok := normalizeDomain(d); !ok || again != d {
			t.Fatalf("not stable: %q → %q → %q (%v)", s, d, again, ok)
		}
	})
}
