// usercache_test.go: the user cache's time rules on the in-memory store and a fake clock:
// TTL, stale-if-error bound, fail-fast breaker, invalidation.
package main

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// flakyStore fails UserByID while down is set, and counts the calls that reached it.
type flakyStore struct {
	Store
	down  atomic.Bool
	calls atomic.Int64
}

var errTestOutage = errors.New("test outage: database down")

func (s *flakyStore) UserByID(ctx context.Context, id string) (User, error) {
	s.calls.Add(1)
	if s.down.Load() {
		return User{}, errTestOutage
	}
	return s.Store.UserByID(ctx, id)
}

func newCacheOnMemory(t *testing.T, ttl, stale time.Duration) (*userCache, *flakyStore, *fakeClock, User) {
	t.Helper()
	mem := newMemoryStore()
	ctx := context.Background()
	co, err := mem.CreateCompany(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	u, err := mem.CreateUser(ctx, NewUser{Email: "cache@example.com", HashedPassword: "x", CompanyID: co.ID})
	if err != nil {
		t.Fatal(err)
	}
	store := &flakyStore{Store: mem}
	clk := newFakeClock()
	c := newUserCache(store, ttl, stale, 100, nil)
	c.now = clk.Now
	return c, store, clk, u
}

func TestUserCacheServesStaleStateOnlyWithinTheBound(t *testing.T) {
	c, store, clk, u := newCacheOnMemory(t, time.Minute, 10*time.Minute)
	ctx := context.Background()
	if s, err := c.get(ctx, u.ID); err != nil || !s.Active || s.CompanyID != u.CompanyID {
		t.Fatalf("first lookup: %+v %v", s, err)
	}
	store.down.Store(true)
	clk.Advance(time.Minute + time.Second) // expired, inside the stale bound
	if s, err := c.get(ctx, u.ID); err != nil || !s.Active {
		t.Fatalf("database down, user seen a minute ago: %+v %v (want the last known state)", s, err)
	}
	clk.Advance(10 * time.Minute) // past TTL + stale bound
	if _, err := c.get(ctx, u.ID); err == nil {
		t.Fatal("a state older than TTL + GATEWAY_USER_CACHE_STALE_IF_ERROR was served")
	}
	if _, err := c.get(ctx, newUUID()); err == nil {
		t.Fatal("a user never seen was served while the database was down")
	}
}

func TestUserCacheWithoutStaleBoundAnswersErrors(t *testing.T) {
	c, store, clk, u := newCacheOnMemory(t, time.Minute, 0)
	ctx := context.Background()
	if _, err := c.get(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	store.down.Store(true)
	clk.Advance(time.Minute)
	if _, err := c.get(ctx, u.ID); !errors.Is(err, errTestOutage) {
		t.Fatalf("err = %v, want the outage", err)
	}
}

func TestUserCacheStopsAskingAFailingDatabaseUntilAProbeSucceeds(t *testing.T) {
	c, store, clk, _ := newCacheOnMemory(t, 0, 0)
	ctx := context.Background()
	store.down.Store(true)
	for range failFastAfter {
		if _, err := c.get(ctx, newUUID()); !errors.Is(err, errTestOutage) {
			t.Fatalf("err = %v, want the outage", err)
		}
	}
	asked := store.calls.Load()
	for range 20 {
		if _, err := c.get(ctx, newUUID()); !errors.Is(err, errDatabaseFailingFast) {
			t.Fatalf("err = %v while the breaker is open, want fail-fast", err)
		}
	}
	if store.calls.Load() != asked {
		t.Fatalf("the database was asked %d more times while failing fast", store.calls.Load()-asked)
	}
	// The interval ends: one probe goes through; it fails, and the next interval is longer.
	clk.Advance(failFastMin)
	if _, err := c.get(ctx, newUUID()); !errors.Is(err, errTestOutage) {
		t.Fatalf("probe: err = %v, want the outage", err)
	}
	clk.Advance(failFastMin)
	if _, err := c.get(ctx, newUUID()); !errors.Is(err, errDatabaseFailingFast) {
		t.Fatalf("after a failed probe the interval must grow: err = %v", err)
	}
	// The database is back: the next probe closes the breaker.
	store.down.Store(false)
	clk.Advance(2 * failFastMin)
	if _, err := c.get(ctx, newUUID()); err != nil {
		t.Fatalf("probe after recovery: %v", err)
	}
	if c.breaker.failing() {
		t.Fatal("breaker still open after a successful probe")
	}
	for range 3 {
		if _, err := c.get(ctx, newUUID()); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	}
	if failFastMax < failFastMin || failFastAfter < 2 {
		t.Fatal("breaker constants out of order")
	}
}

func TestUserCacheForgetsNotifiedChanges(t *testing.T) {
	c, store, _, u := newCacheOnMemory(t, time.Hour, 0)
	ctx := context.Background()
	mem := store.Store.(*memoryStore)
	watchCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); c.watchUsers(watchCtx, slog.New(slog.DiscardHandler)) }()
	defer func() { stop(); <-done }()

	if s, _ := c.get(ctx, u.ID); !s.Active {
		t.Fatal("user inactive")
	}
	if err := mem.SetActive(ctx, u.Email, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "deactivation seen within the hour-long TTL", func() bool {
		s, err := c.get(ctx, u.ID)
		return err == nil && !s.Active
	})
	if err := mem.SetActive(ctx, u.Email, true); err != nil {
		t.Fatal(err)
	}
	if err := mem.SetCompanyActive(ctx, u.CompanyID, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "company deactivation seen", func() bool {
		s, err := c.get(ctx, u.ID)
		return err == nil && s.Active && !s.CompanyActive
	})
}

// failing reports whether the breaker is open (or probing).
func (b *failFast) failing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failures >= failFastAfter
}
