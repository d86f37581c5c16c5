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

// limiter is a token bucket per key (a GCRA "theoretical arrival time", so the arithmetic is
// exact); nil allows everything. Full buckets are dropped lazily, and past maxKeys the least
// recent goes: an attacker spreading over many keys makes it forget, never grow unbounded.
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
	// defaultLimiterKeys: a few MB, enough for every client of a busy gateway at once.
	defaultLimiterKeys = 100_000
	// limiterSweep idle buckets dropped per call: bounded, yet faster than keys arrive (≤ 1).
	limiterSweep = 2
)

// newLimiter returns nil (no limit) when burst or perSecond is not positive.
func newLimiter(perSecond float64, burst int, maxKeys int) *limiter {
	if burst <= 0 || perSecond <= 0 || math.IsNaN(perSecond) {
		return nil
	}
	if maxKeys <= 0 {
		maxKeys = defaultLimiterKeys
	}
	// Clamped so 2*burst intervals still fit an int64; only absurd settings reach a bound.
	interval := max(int64(min(math.Round(1e9/perSecond), float64(int64(1)<<60)/float64(burst))), 1)
	return &limiter{
		interval: interval,
		maxAhead: int64(burst-1) * interval,
		epoch:    time.Now(),
		maxKeys:  maxKeys,
		buckets:  make(map[string]*list.Element),
	}
}

// nanos uses the monotonic clock when now carries it, the wall clock for a fake now.
func (l *limiter) nanos(now time.Time) int64 { return int64(now.Sub(l.epoch)) }

// allow takes one token from key's bucket, or reports the wait until one is there.
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
		// The key may be a slice of a request body the table must not keep alive.
		key = strings.Clone(key)
		e = l.recent.PushFront(&bucket{key: key, tat: t})
		l.buckets[key] = e
	}
	b := e.Value.(*bucket)
	if retryAfter = l.wait(b.tat, t); retryAfter == 0 {
		b.tat = max(b.tat, t) + l.interval
	}
	l.sweep(t)
	return retryAfter == 0, retryAfter
}

// wait is how long a bucket at tat needs at t until it holds a token; 0 when it has one.
func (l *limiter) wait(tat, t int64) time.Duration {
	return time.Duration(max(max(tat, t)-t-l.maxAhead, 0))
}

// check reports whether allow would succeed now, without taking a token or creating a bucket.
func (l *limiter) check(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	t := l.nanos(now)
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, found := l.buckets[key]; found {
		retryAfter = l.wait(e.Value.(*bucket).tat, t)
	}
	l.sweep(t)
	return retryAfter == 0, retryAfter
}

// refund gives back one token that allow took.
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

// reset gives key a full bucket again.
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

func (l *limiter) remove(e *list.Element) {
	delete(l.buckets, e.Value.(*bucket).key)
	l.recent.Remove(e)
}

// sweep drops up to limiterSweep buckets full again at t from the old end (a full one is as none).
func (l *limiter) sweep(t int64) {
	for range limiterSweep {
		e := l.recent.Back()
		if e == nil || e.Value.(*bucket).tat > t {
			return
		}
		l.remove(e)
	}
}

// retryAfterSeconds rounds d up to whole seconds, at least 1: a client told "0" would retry
// at once and meet the limit again.
func retryAfterSeconds(d time.Duration) string {
	secs := int64(d / time.Second)
	if d%time.Second > 0 {
		secs++
	}
	return strconv.FormatInt(max(secs, 1), 10)
}

// knownClients remembers for ttl the addresses each email logged in from, which the per-email
// limit spares: failures elsewhere cannot lock a user out there; a botnet still meets the limit.
type knownClients struct {
	ttl  time.Duration
	max  int
	mu   sync.Mutex
	seen map[string]time.Time // email + "\x00" + ip → last successful login
}

func newKnownClients(ttl time.Duration, max int) *knownClients {
	return &knownClients{ttl: ttl, max: max, seen: make(map[string]time.Time)}
}

func (k *knownClients) has(email, ip string, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	last, ok := k.seen[email+"\x00"+ip]
	return ok && now.Sub(last) < k.ttl
}

// add records a successful login. When full, expired entries go, then everything:
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
	k.seen[email+"\x00"+ip] = now
}

// loginClientKey is the key an address's failed logins count against: its /64 for IPv6,
// since one subscriber is routed a whole /64 and could rotate through it for fresh buckets.
func loginClientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is6() || a.Is4In6() {
		return ip
	}
	p, _ := a.Prefix(64) // cannot fail for an IPv6 address
	return p.String()
}

// loginCharge is what one login attempt took from the failed-login limits.
type loginCharge struct {
	ip, email string
	// known: this (email, address) pair logged in before: exempt from the email and global
	// limits and first in the hashing queue, yet still under the per-address limit.
	known       bool
	tookEmail   bool
	tookGlobal  bool
	tookAddress bool
}

// chargeLogin takes a token from each applicable limit before any bcrypt, so simultaneous guesses
// cannot all pass; a refusal takes nothing. A trusted proxy (proxy) is never charged: one
// client's failures would lock out everyone behind it.
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

// refundLogin gives back every token c took, for an attempt that was not a failed login.
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

// loginGlobalKey is the one key of the per-replica failed-login budget.
const loginGlobalKey = "*"
