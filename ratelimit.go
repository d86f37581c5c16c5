// ratelimit.go: keyed token-bucket limiters (failed logins per IP and per email, requests
// per company) with memory bounded under attack from many keys.
package main

import (
	"container/list"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// limiter is a set of token buckets, one per key, each holding at most burst tokens and
// refilled at perSecond tokens a second. A nil *limiter is a limit that is off: every
// method is safe on nil and allows everything.
//
// Each bucket is stored as a single "theoretical arrival time" (the GCRA form of a token
// bucket): tat is the instant the bucket would be full again. tat <= now means a full
// bucket; every token taken pushes tat one interval further. That keeps the state one
// int64 per key and the arithmetic exact, with no float drift between refill steps.
//
// Memory is bounded: at most maxKeys buckets exist. A bucket that is full again is the
// same as no bucket, so idle ones are dropped lazily (each call looks at the
// least-recently-touched buckets) and, when the table is full of busy keys, the
// least-recently-touched one is dropped rather than the table growing. An attacker who
// spreads requests over more keys than maxKeys can therefore only make the limiter forget
// the oldest buckets, never make it allocate without bound.
type limiter struct {
	interval int64 // nanoseconds per token
	maxAhead int64 // allow while tat-now <= maxAhead: (burst-1) intervals
	epoch    time.Time
	maxKeys  int

	mu      sync.Mutex
	buckets map[string]*list.Element // of *bucket
	recent  list.List                // front: most recently touched
}

type bucket struct {
	key string
	tat int64 // nanoseconds since limiter.epoch at which the bucket is full again
}

const (
	// defaultLimiterKeys bounds the table when the caller gives no bound: about 100k
	// entries is a few MB, enough for every client of a busy gateway at once.
	defaultLimiterKeys = 100_000
	// limiterSweep is how many idle buckets one call may drop: bounded work per request,
	// yet faster than new keys can arrive (one per call at most).
	limiterSweep = 2
)

// newLimiter returns a limiter of burst tokens per key refilled at perSecond, holding at
// most maxKeys keys (defaultLimiterKeys when maxKeys <= 0). It returns nil — the limit is
// off — when burst <= 0 or perSecond <= 0.
func newLimiter(perSecond float64, burst int, maxKeys int) *limiter {
	if burst <= 0 || perSecond <= 0 || math.IsNaN(perSecond) {
		return nil
	}
	if maxKeys <= 0 {
		maxKeys = defaultLimiterKeys
	}
	// Clamp the interval so 2*burst intervals still fit an int64 with room to spare;
	// only absurd settings (one token per century) reach either bound.
	iv := math.Round(1e9 / perSecond)
	if hi := float64(int64(1)<<60) / float64(burst); iv > hi {
		iv = hi
	}
	interval := max(int64(iv), 1)
	return &limiter{
		interval: interval,
		maxAhead: int64(burst-1) * interval,
		epoch:    time.Now(),
		maxKeys:  maxKeys,
		buckets:  make(map[string]*list.Element),
	}
}

// nanos places now on the limiter's own time line. Sub uses the monotonic clock when both
// times carry it (real calls) and the wall clock otherwise (tests with a fake now).
func (l *limiter) nanos(now time.Time) int64 { return int64(now.Sub(l.epoch)) }

// allow takes one token from key's bucket. When none is available it takes nothing and
// returns false with the time until one will be.
func (l *limiter) allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	t := l.nanos(now)
	l.mu.Lock()
	defer l.mu.Unlock()
	e, found := l.buckets[key]
	if found {
		l.recent.MoveToFront(e)
	} else {
		if len(l.buckets) >= l.maxKeys {
			l.remove(l.recent.Back())
		}
		// Clone: the caller's key may be a slice of a much larger string (a request body or
		// header block) that the table must not keep alive.
		key = strings.Clone(key)
		e = l.recent.PushFront(&bucket{key: key, tat: t})
		l.buckets[key] = e
	}
	b := e.Value.(*bucket)
	tat := max(b.tat, t)
	if ahead := tat - t; ahead > l.maxAhead {
		retryAfter = time.Duration(ahead - l.maxAhead)
	} else {
		b.tat = tat + l.interval
		ok = true
	}
	l.sweep(t)
	return ok, retryAfter
}

// check reports whether allow would succeed now, without taking a token or creating a
// bucket (an unknown key has a full bucket).
func (l *limiter) check(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	t := l.nanos(now)
	l.mu.Lock()
	defer l.mu.Unlock()
	ok = true
	if e, found := l.buckets[key]; found {
		if ahead := max(e.Value.(*bucket).tat, t) - t; ahead > l.maxAhead {
			ok, retryAfter = false, time.Duration(ahead-l.maxAhead)
		}
	}
	l.sweep(t)
	return ok, retryAfter
}

// refund gives back one token that allow took, for an attempt that turned out not to need
// limiting (a login that succeeded, or one the gateway could not serve).
func (l *limiter) refund(key string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, found := l.buckets[key]; found {
		e.Value.(*bucket).tat -= l.interval
	}
}

// reset forgets key, giving it a full bucket again (e.g. after a successful login).
func (l *limiter) reset(key string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, found := l.buckets[key]; found {
		l.remove(e)
	}
}

// len is the number of buckets held, for tests and metrics.
func (l *limiter) len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

func (l *limiter) remove(e *list.Element) {
	delete(l.buckets, e.Value.(*bucket).key)
	l.recent.Remove(e)
}

// sweep drops up to limiterSweep idle buckets (full again at t) from the old end of the
// recency list. An idle bucket is the same as none, so dropping even the caller's own,
// after its answer was decided, changes nothing.
func (l *limiter) sweep(t int64) {
	for range limiterSweep {
		e := l.recent.Back()
		if e == nil || e.Value.(*bucket).tat > t {
			return
		}
		l.remove(e)
	}
}

// retryAfterSeconds formats d for a Retry-After header: whole seconds, rounded up, at
// least 1 (a client told "0" would retry at once and meet the limit again).
func retryAfterSeconds(d time.Duration) string {
	secs := int64(d / time.Second)
	if d%time.Second > 0 {
		secs++
	}
	return strconv.FormatInt(max(secs, 1), 10)
}

// knownClients remembers, for a bounded time, the client addresses each email has logged
// in from. The per-email failure limit does not apply to them: failures from elsewhere can
// then delay a user's login only from an address that user has never logged in from, while
// a password-guessing botnet spread over many addresses still meets the email limit.
type knownClients struct {
	ttl  time.Duration
	max  int
	mu   sync.Mutex
	seen map[string]time.Time // email + "\x00" + ip → last successful login
}

func newKnownClients(ttl time.Duration, max int) *knownClients {
	return &knownClients{ttl: ttl, max: max, seen: make(map[string]time.Time)}
}

func knownClientKey(email, ip string) string { return email + "\x00" + ip }

// has reports whether email logged in successfully from ip within the TTL.
func (k *knownClients) has(email, ip string, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	last, ok := k.seen[knownClientKey(email, ip)]
	return ok && now.Sub(last) < k.ttl
}

// add records a successful login. When full, expired entries go first, then everything:
// forgetting only costs a returning user the exemption until their next login.
func (k *knownClients) add(email, ip string, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.seen) >= k.max {
		for key, last := range k.seen {
			if now.Sub(last) >= k.ttl {
				delete(k.seen, key)
			}
		}
		if len(k.seen) >= k.max {
			clear(k.seen)
		}
	}
	k.seen[knownClientKey(email, ip)] = now
}

// loginClientKey is the key an address's failed logins count against: the address itself
// for IPv4, its /64 for IPv6. One IPv6 subscriber (a home line, a VM) is routed a whole
// /64 and can rotate through its 2^64 addresses for free; keyed one by one, each would
// bring a fresh bucket.
func loginClientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is6() || a.Is4In6() {
		return ip
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// loginCharge is what one login attempt took from the failed-login limits before its
// password was checked.
type loginCharge struct {
	ip, email string
	// known: this (email, address) pair logged in successfully before. Such a login is
	// exempt from the email and global limits (failures from elsewhere must not lock the
	// user out) and goes first in the hashing queue (a flood delays strangers, not
	// returning users). The per-address limit still applies, so a known pair cannot be
	// used to guess at will.
	known       bool
	tookEmail   bool
	tookGlobal  bool
	tookAddress bool
}

// chargeLogin takes one token from each failed-login limit that applies to (ipKey,
// emailKey), before any bcrypt work, so simultaneous guesses cannot all pass a check made
// before any of them is charged. When a limit is empty it takes nothing at all and returns
// the limit's name (a rejection label) and the wait until a token is back.
//
// proxy reports that ipKey is a trusted proxy's own address (requestInfo.ClientIsProxy):
// everyone behind that proxy shares it, so failures never count against it — one client
// would otherwise lock out all the others. The email and per-replica limits still apply.
func (g *gateway) chargeLogin(ipKey, emailKey string, proxy bool, now time.Time) (c loginCharge, limit string, wait time.Duration) {
	c = loginCharge{ip: ipKey, email: emailKey, known: g.knownClients.has(emailKey, ipKey, now)}
	if !proxy {
		ok, wait := g.loginByIP.allow(ipKey, now)
		if !ok {
			return loginCharge{}, "login_ip", wait
		}
		c.tookAddress = true
	}
	if !c.known {
		if ok, wait := g.loginByEmail.allow(emailKey, now); !ok {
			g.refundLogin(c)
			return loginCharge{}, "login_email", wait
		}
		c.tookEmail = true
		// Last, so an attempt another limit refuses costs the shared budget nothing.
		if ok, wait := g.loginGlobal.allow(loginGlobalKey, now); !ok {
			g.refundLogin(c)
			return loginCharge{}, "login_global", wait
		}
		c.tookGlobal = true
	}
	return c, "", 0
}

// refundLogin gives back every token c took, for an attempt that turned out not to be a
// failed login (the database was down, or a returning user could not get a hashing slot).
func (g *gateway) refundLogin(c loginCharge) {
	if c.tookAddress {
		g.loginByIP.refund(c.ip)
	}
	if c.tookEmail {
		g.loginByEmail.refund(c.email)
	}
	if c.tookGlobal {
		g.loginGlobal.refund(loginGlobalKey)
	}
}

// loginHashFailed settles c after the password could not be checked (no hashing slot in
// time, or the client left while waiting). A returning pair gets its tokens back: the
// gateway, not the user, failed. An unknown pair keeps paying: otherwise a flood that
// saturates hashing would be refunded for every attempt it makes, and cost nothing.
func (g *gateway) loginHashFailed(c loginCharge) {
	if c.known {
		g.refundLogin(c)
	}
}

// loginPasswordChecked settles the per-replica budget once the password was checked: a
// correct one was no failure and gives its token back. The per-address and per-email
// buckets are settled by the success path itself.
func (g *gateway) loginPasswordChecked(c loginCharge, correct bool) {
	if correct && c.tookGlobal {
		g.loginGlobal.refund(loginGlobalKey)
	}
}

// loginGlobalKey is the one key of the per-replica failed-login budget.
const loginGlobalKey = "*"
