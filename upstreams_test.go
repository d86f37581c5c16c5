package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// A new backend is one row of upstreamServices: its URL setting is read and documented, its
// routes are served behind the row's auth with the path mapped, and left unset (it has no
// default) its routes answer 404.
func TestOneUpstreamRowBringsItsSettingAndRoutes(t *testing.T) {
	saved := upstreamServices
	t.Cleanup(func() { upstreamServices = saved })
	upstreamServices = append(slices.Clone(saved), upstreamService{
		name: "reports", setting: "GATEWAY_REPORTS_SERVICE_URL", doc: "base URL of the reports service",
		auth: authStrict, routes: []upstreamRoute{
			{"/api/v1/reports/", "/v2/", []string{"/api/v1/reports/{path...}"}},
		}})

	up, last := recordingUpstream(t)
	e := startGateway(t, withStore(newMemoryStore(), ""), withEnv(map[string]string{"GATEWAY_REPORTS_SERVICE_URL": up.URL}))
	company := e.createCompany("Acme")
	u := e.createUser("ana@example.com", "a-long-password", company, 4)

	mustStatus(t, e.do(http.MethodGet, "/api/v1/reports/monthly?year=2026", "", ""), http.StatusUnauthorized)
	mustStatus(t, e.do(http.MethodGet, "/api/v1/reports/monthly?year=2026", e.token(u), ""), http.StatusOK)
	got := last()
	if got.URL.Path != "/v2/monthly" || got.URL.RawQuery != "year=2026" || got.Header.Get("X-Company-ID") != company {
		t.Errorf("upstream got %s ?%s with X-Company-ID %q, want /v2/monthly ?year=2026 with %q",
			got.URL.Path, got.URL.RawQuery, got.Header.Get("X-Company-ID"), company)
	}
	if configured := e.cfg.Upstreams["reports"].String(); configured != up.URL {
		t.Errorf("configured URL %q, want %q", configured, up.URL)
	}
	var row *setting
	for _, s := range settingsOf(new(Config)) {
		if s.Name == "GATEWAY_REPORTS_SERVICE_URL" {
			row = &s
		}
	}
	if row == nil || !strings.Contains(row.Doc, "reports") {
		t.Errorf("the settings table has no documented row for the new service: %+v", row)
	}

	unset := startGateway(t, withStore(newMemoryStore(), ""))
	other := unset.createUser("bea@example.com", "a-long-password", unset.createCompany("Globex"), 4)
	mustStatus(t, unset.do(http.MethodGet, "/api/v1/reports/monthly", unset.token(other), ""), http.StatusNotFound)
}
