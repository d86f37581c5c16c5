// bench_test.go: hot-path benchmarks of the whole gateway (StrictAuth with a warm user
// cache, one authenticated proxied request over loopback) and the proof that the hot path
// makes no database round trip once the cache is warm.
package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// countingStore counts the user lookups that reach the real store underneath.
type countingStore struct {
	Store
	userByID atomic.Int64
}

func (s *countingStore) UserByID(ctx context.Context, id string) (User, error) {
	s.userByID.Add(1)
	return s.Store.UserByID(ctx, id)
}

// hotPath is a gateway on PostgreSQL in front of a loopback upstream, with one user and a
// valid token, logging at the production level.
type hotPath struct {
	store  *countingStore
	gw     *gateway
	srv    *httptest.Server
	token  string
	client *http.Client
}

func newHotPath(tb testing.TB) *hotPath {
	tb.Helper()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"chats":[]}`)
	}))
	tb.Cleanup(upstream.Close)

	pg := openTestPostgres(tb)
	store := &countingStore{Store: pg}
	company, err := store.CreateCompany(context.Background(), "Bench Co")
	if err != nil {
		tb.Fatal(err)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw-pw-pw-pw"), bcrypt.MinCost)
	user, err := store.CreateUser(context.Background(), NewUser{Email: "hot@example.com", HashedPassword: string(hash), CompanyID: company.ID})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := testConfig(tb, map[string]string{"GATEWAY_QUERY_SERVICE_URL": upstream.URL, "GATEWAY_LOG_LEVEL": "INFO"})
	gw := newGateway(cfg, slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})), store, newMetrics())
	tb.Cleanup(gw.close)
	srv := httptest.NewServer(gw.routes())
	tb.Cleanup(srv.Close)
	token, err := gw.issueToken(user, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return &hotPath{store: store, gw: gw, srv: srv, token: token, client: srv.Client()}
}

func (h *hotPath) get(tb testing.TB) {
	req, _ := http.NewRequest("GET", h.srv.URL+"/api/v1/query/chats?limit=20", nil)
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := h.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("status %d", resp.StatusCode)
	}
}

func TestHotPathMakesNoDatabaseRoundTrips(t *testing.T) {
	h := newHotPath(t)
	// Notifications empty the cache when they start flowing; warm it after that.
	waitFor(t, 5*time.Second, "notifications up", func() bool { return h.gw.metrics.notifyUp.Load() })
	h.get(t) // warms the user cache: one lookup
	before := h.store.userByID.Load()
	for range 200 {
		h.get(t)
	}
	if n := h.store.userByID.Load() - before; n != 0 {
		t.Fatalf("%d database round trips for 200 requests with a warm cache, want 0", n)
	}
}

// BenchmarkStrictAuthWarmCache: token verification plus the cached user check, the work
// StrictAuth adds to every proxied request.
func BenchmarkStrictAuthWarmCache(b *testing.B) {
	h := newHotPath(b)
	req := httptest.NewRequest("GET", "/api/v1/query/chats", nil)
	req.Header.Set("Authorization", "Bearer "+h.token)
	ok := h.gw.requireAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), authStrict)
	w := httptest.NewRecorder()
	ok.ServeHTTP(w, req.WithContext(withRequestInfo(req.Context(), &requestInfo{})))
	before := h.store.userByID.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ok.ServeHTTP(w, req.WithContext(withRequestInfo(req.Context(), &requestInfo{})))
	}
	b.ReportMetric(float64(h.store.userByID.Load()-before)/float64(b.N), "db_roundtrips/op")
}

// BenchmarkAuthenticatedProxyRequest: one whole request through the gateway (middleware,
// StrictAuth, proxy) to a loopback upstream and back, client and upstream included.
func BenchmarkAuthenticatedProxyRequest(b *testing.B) {
	h := newHotPath(b)
	h.get(b)
	before := h.store.userByID.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.get(b)
	}
	b.ReportMetric(float64(h.store.userByID.Load()-before)/float64(b.N), "db_roundtrips/op")
}

// BenchmarkAuthenticatedProxyRequestParallel: the same with concurrent clients.
func BenchmarkAuthenticatedProxyRequestParallel(b *testing.B) {
	h := newHotPath(b)
	h.get(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.get(b)
		}
	})
}
