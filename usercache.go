// usercache.go: each token's user's state, kept off the database on the hot path, dropped
// by its change notifications, and served stale while it cannot answer.
package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// userState is what authorisation needs of a user's row; the zero value is "no such user".
type userState struct {
	Found            bool
	Active           bool
	Email            string
	CompanyID        string // "" when the user has none
	CompanyActive    bool
	Role             string
	TokensValidAfter int64 // Unix seconds; tokens with an earlier iat are revoked (0: none)
}

func stateOf(u User) userState {
	s := userState{Found: true, Active: u.IsActive, Email: u.Email, CompanyID: u.CompanyID,
		CompanyActive: u.CompanyActive, Role: u.Role}
	if !u.TokensValidAfter.IsZero() {
		s.TokensValidAfter = u.TokensValidAfter.Unix()
	}
	return s
}

const (
	// userCacheMaxEntries bounds the cache, cleared rather than grown past it (only holders of
	// a validly signed token add entries).
	userCacheMaxEntries = 100_000
	// staleRefreshWait is how long a refresh is awaited before the last known state is served:
	// a healthy database answers well inside it, a hanging one costs no more.
	staleRefreshWait = 50 * time.Millisecond
)

// userCache keeps each user's state for ttl; notifications drop changed ones, so the TTL
// bounds staleness only while they are down. Expired entries are served for staleIfError
// more while the database fails. Concurrent misses for one user share one query.
type userCache struct {
	store        Store
	ttl          time.Duration
	staleIfError time.Duration
	max          int
	now          func() time.Time
	breaker      *failFast
	metrics      *metrics

	mu      sync.RWMutex
	entries map[string]userCacheEntry
	loading map[string]*userLoad
	// gen changes at every invalidation; a load started before does not store its result.
	gen uint64
}

type userCacheEntry struct {
	state   userState
	fetched time.Time
}

// userLoad is one database lookup that every concurrent request for the user waits on.
type userLoad struct {
	done  chan struct{}
	state userState
	err   error
}

func newUserCache(store Store, ttl, staleIfError time.Duration, max int, m *metrics) *userCache {
	return &userCache{
		store: store, ttl: ttl, staleIfError: staleIfError, max: max, now: time.Now,
		breaker: &failFast{}, metrics: m,
		entries: make(map[string]userCacheEntry), loading: make(map[string]*userLoad),
	}
}

// get returns the user's state; an error means the database failed and no usable state was known.
func (c *userCache) get(ctx context.Context, userID string) (userState, error) {
	now := c.now()
	c.mu.RLock()
	e, cached := c.entries[userID]
	c.mu.RUnlock()
	if cached && now.Sub(e.fetched) < c.ttl {
		return e.state, nil
	}
	stale := cached && c.staleIfError > 0 && now.Sub(e.fetched) < c.ttl+c.staleIfError
	// The lookup itself runs detached from any request; this span is the request's wait.
	sp := startSpan(ctx, "user lookup", spanKindInternal)
	defer sp.finish()

	l := c.load(userID, now)
	var slow <-chan time.Time
	if stale {
		t := time.NewTimer(staleRefreshWait)
		defer t.Stop()
		slow = t.C
	}
	select {
	case <-l.done:
		if l.err == nil || !stale {
			return l.state, l.err // the zero state with an error
		}
	case <-slow:
	case <-ctx.Done():
		return userState{}, ctx.Err()
	}
	c.metrics.userCacheEvent("stale_served")
	return e.state, nil
}

// load starts the lookup of userID, or joins the one already running.
func (c *userCache) load(userID string, now time.Time) *userLoad {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.loading[userID]; ok {
		return l
	}
	l := &userLoad{done: make(chan struct{})}
	// A lookup that finished since the caller's miss already answered: no second query.
	if e, ok := c.entries[userID]; ok && now.Sub(e.fetched) < c.ttl {
		l.state = e.state
		close(l.done)
		return l
	}
	c.loading[userID] = l
	// Detached: a waiter that gives up must not cancel the lookup others wait on; the store's
	// deadline bounds it.
	go c.fetch(userID, l, c.gen)
	return l
}

func (c *userCache) fetch(userID string, l *userLoad, gen uint64) {
	var err error
	if !c.breaker.allow(c.now()) {
		c.metrics.userCacheEvent("fail_fast")
		err = errDatabaseFailingFast
	} else {
		var u User
		u, err = c.store.UserByID(context.Background(), userID)
		switch {
		case err == nil:
			l.state = stateOf(u)
		case errors.Is(err, errNotFound):
			err = nil // an answer: no such user
		}
		c.breaker.record(err == nil, c.now())
	}
	l.err = err

	c.mu.Lock()
	delete(c.loading, userID)
	if err == nil && c.gen == gen {
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
		c.entries[userID] = userCacheEntry{state: l.state, fetched: c.now()}
	}
	c.mu.Unlock()
	close(l.done)
}

// probe pings the database for a health check; like a lookup's, its answer feeds the breaker.
func (c *userCache) probe(ctx context.Context) error {
	err := c.store.Ping(ctx)
	c.breaker.record(err == nil, c.now())
	return err
}

// invalidate runs drop under the lock; a load that started before does not store its result.
func (c *userCache) invalidate(drop func()) {
	c.mu.Lock()
	drop()
	c.gen++
	c.mu.Unlock()
}

func (c *userCache) forget(userID string) { c.invalidate(func() { delete(c.entries, userID) }) }

// forgetCompany drops every user of the company (its active flag is part of their state).
func (c *userCache) forgetCompany(companyID string) {
	c.invalidate(func() {
		for id, e := range c.entries {
			if e.state.CompanyID == companyID {
				delete(c.entries, id)
			}
		}
	})
}

// clear drops everything: notifications may have been missed.
func (c *userCache) clear() { c.invalidate(func() { clear(c.entries) }) }

// errDatabaseFailingFast is what a lookup gets while the breaker is open.
var errDatabaseFailingFast = errors.New("database failing: not asked until the next probe")

// After failFastAfter failures in a row, the database is not asked for failFastMin, doubling
// up to failFastMax while probes keep failing.
const (
	failFastAfter = 3
	failFastMin   = 250 * time.Millisecond
	failFastMax   = 8 * time.Second
)

// failFast spares lookups a full deadline each while the database keeps failing: once open,
// they fail at once until the interval ends; then one probes, and its success closes it.
type failFast struct {
	mu        sync.Mutex
	failures  int
	interval  time.Duration
	openUntil time.Time
	probing   bool
}

func (b *failFast) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < failFastAfter {
		return true
	}
	if b.probing || now.Before(b.openUntil) {
		return false
	}
	b.probing = true
	return true
}

func (b *failFast) record(ok bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if ok {
		b.failures, b.interval = 0, 0
		return
	}
	b.failures++
	if b.failures >= failFastAfter {
		b.interval = min(max(2*b.interval, failFastMin), failFastMax)
		b.openUntil = now.Add(b.interval)
	}
}

// watchUsers keeps the cache in step with the database until ctx ends. While notifications are
// down a WARN and a gauge say so; on their return the cache is emptied, as changes were missed.
func (c *userCache) watchUsers(ctx context.Context, log *slog.Logger) {
	var lost atomic.Bool
	c.store.Watch(ctx, WatchHooks{
		Changed: func(ch StoreChange) {
			switch ch.Table {
			case "users":
				c.forget(ch.ID)
			case "companies":
				c.forgetCompany(ch.ID)
			}
		},
		Lost: func(err error) {
			if !lost.Swap(true) {
				log.Warn("user change notifications lost: changes to users and companies now reach this replica only when GATEWAY_USER_CACHE_TTL expires",
					"ttl", c.ttl.String(), "error", err.Error())
			}
			// After the WARN: whoever sees the gauge at 0 finds the line already written.
			c.metrics.userCacheEvent("notifications_lost")
			c.metrics.setNotificationsUp(false)
		},
		Listening: func() {
			c.clear()
			c.metrics.setNotificationsUp(true)
			if lost.Swap(false) {
				log.Info("user change notifications restored; user cache emptied")
			}
		},
	})
}
