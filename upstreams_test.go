package main

import (
	"net/http"
	"net/http/httptest"
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

// The gateway owns CORS: a backend's own Access-Control-* headers never reach the browser,
// whatever origin asks.
func TestUpstreamCORSHeadersNeverReachTheClient(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Set("Access-Control-Expose-Headers", "X-Secret")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(up.Close)
	e := startGateway(t, withStore(newMemoryStore(), ""), withUpstream(up.URL),
		withEnv(map[string]string{"GATEWAY_CORS_ALLOWED_ORIGINS": "https://app.example.com"}))
	u := e.createUser("ana@example.com", "a-long-password", e.createCompany("Acme"), 4)
	for _, origin := range []string{"", "https://evil.example", "https://app.example.com"} {
		var hdr []string
		if origin != "" {
			hdr = []string{"Origin", origin}
		}
		r := e.do(http.MethodGet, "/api/v1/query/chats", e.token(u), "", hdr...)
		mustStatus(t, r, http.StatusOK)
		var cors []string
		for k, v := range r.header {
			if strings.HasPrefix(k, "Access-Control-") {
				cors = append(cors, k+": "+strings.Join(v, ","))
			}
		}
		slices.Sort(cors)
		want := []string(nil)
		if origin == "https://app.example.com" {
			want = []string{"Access-Control-Allow-Credentials: true", "Access-Control-Allow-Origin: " + origin,
				"Access-Control-Expose-Headers: X-Request-ID, X-Process-Time"}
		}
		if !slices.Equal(cors, want) {
			t.Errorf("origin %q: CORS headers %q, want only the gateway's %q", origin, cors, want)
		}
	}
}
