// ratelimit.go: keyed token-bucket limiters (failed logins per IP and per email, requests
// per company) with memory bounded under attack from many keys.
package main

import (
	"hash/maphash"
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
// least-recently-touched bucket of its shard) and, when a shard is full of busy keys, the
// least-recently-touched one is dropped rather than the table growing. An attacker who
// spreads requests over more keys than maxKeys can therefore only make the limiter forget
// the oldest buckets, never make it allocate without bound.
type limiter struct {
	interval int64 // nanoseconds per token
	maxAhead int64 // allow while tat-now <= maxAhead: (burst-1) intervals
	epoch    time.Time
	seed     maphash.Seed
	mask     uint64
	shards   []limiterShard
}

// limiterShard is one independently locked part of the key space. Buckets live in a
// slice linked into a most-recently-touched list by index, so an existing key costs no
// allocation and a bucket is no heap object of its own (only its key string is).
type limiterShard struct {
	mu   sync.Mutex
	idx  map[string]int32
	ent  []limiterEntry
	free int32 // first free slot in ent (linked through next), -1 when none
	head int32 // most recently touched, -1 when empty
	tail int32 // least recently touched, -1 when empty
	max  int
	_    [64]byte // keep neighbouring shards' locks off one cache line
}

type limiterEntry struct {
	key        string
	tat        int64 // nanoseconds since limiter.epoch at which the bucket is full again
	prev, next int32
}

const (
	// defaultLimiterKeys bounds the table when the caller gives no bound: about 100k
	// entries is a few MB, enough for every client of a busy gateway at once.
	defaultLimiterKeys = 100_000
	// limiterMinPerShard keeps shards big enough that evicting "the oldest of a shard" is
	// still close to evicting the oldest overall.
	limiterMinPerShard = 1024
	limiterMaxShards   = 32
	// limiterSweep is how many idle buckets one call may drop: bounded work per request,
	// yet faster than new keys can arrive (one per call at most).
	limiterSweep = 2
)

// newLimiter returns a limiter of burst tokens per key refilled at perSecond, holding at
// most maxKeys keys (defaultLimiterKeys when maxKeys <= 0). It returns nil — the limit is
// off — when burst <= 0 or perSecond <= 0.
func newLimiter(perSecond float64, burst int, maxKeys int) *limiter {
	if maxKeys <= 0 {
		maxKeys = defaultLimiterKeys
	}
	shards := 1
	for shards*2 <= limiterMaxShards && shards*2*limiterMinPerShard <= maxKeys {
		shards *= 2
	}
	return newLimiterShards(perSecond, burst, maxKeys, shards)
}

// newLimiterShards is newLimiter with an explicit shard count (a power of two), so the
// benchmark can compare one lock against several.
func newLimiterShards(perSecond float64, burst int, maxKeys int, shards int) *limiter {
	if burst <= 0 || perSecond <= 0 || math.IsNaN(perSecond) {
		return nil
	}
	if shards < 1 || shards&(shards-1) != 0 || shards > maxKeys {
		shards = 1
	}
	// Clamp the interval so 2*burst intervals still fit an int64 with room to spare;
	// only absurd settings (one token per century) reach either bound.
	iv := math.Round(1e9 / perSecond)
	if hi := float64(int64(1)<<60) / float64(burst); iv > hi {
		iv = hi
	}
	interval := max(int64(iv), 1)
	l := &limiter{
		interval: interval,
		maxAhead: int64(burst-1) * interval,
		epoch:    time.Now(),
		seed:     maphash.MakeSeed(),
		mask:     uint64(shards - 1),
		shards:   make([]limiterShard, shards),
	}
	per := maxKeys / shards // floor, so the sum over shards never exceeds maxKeys
	for i := range l.shards {
		s := &l.shards[i]
		s.idx = make(map[string]int32)
		s.free, s.head, s.tail = -1, -1, -1
		s.max = per
	}
	return l
}

// nanos places now on the limiter's own time line. Sub uses the monotonic clock when both
// times carry it (real calls) and the wall clock otherwise (tests with a fake now).
func (l *limiter) nanos(now time.Time) int64 { return int64(now.Sub(l.epoch)) }

func (l *limiter) shard(key string) *limiterShard {
	return &l.shards[maphash.String(l.seed, key)&l.mask]
}

// allow takes one token from key's bucket. When none is available it takes nothing and
// returns false with the time until one will be.
func (l *limiter) allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	t := l.nanos(now)
	s := l.shard(key)
	s.mu.Lock()
	i, found := s.idx[key]
	if !found {
		i = s.insert(key, t)
	}
	e := &s.ent[i]
	tat := max(e.tat, t)
	if ahead := tat - t; ahead > l.maxAhead {
		retryAfter = time.Duration(ahead - l.maxAhead)
	} else {
		e.tat = tat + l.interval
		ok = true
	}
	s.touch(i)
	s.sweep(t, i)
	s.mu.Unlock()
	return ok, retryAfter
}

// check reports whether allow would succeed now, without taking a token or creating a
// bucket (an unknown key has a full bucket).
func (l *limiter) check(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	t := l.nanos(now)
	s := l.shard(key)
	s.mu.Lock()
	ok = true
	i, found := s.idx[key]
	if found {
		if ahead := max(s.ent[i].tat, t) - t; ahead > l.maxAhead {
			ok, retryAfter = false, time.Duration(ahead-l.maxAhead)
		}
	} else {
		i = -1
	}
	s.sweep(t, i)
	s.mu.Unlock()
	return ok, retryAfter
}

// refund gives back one token that allow took, for an attempt that turned out not to need
// limiting (a login that succeeded, or one the gateway could not serve).
func (l *limiter) refund(key string) {
	if l == nil {
		return
	}
	s := l.shard(key)
	s.mu.Lock()
	if i, found := s.idx[key]; found {
		s.ent[i].tat -= l.interval
	}
	s.mu.Unlock()
}

// reset forgets key, giving it a full bucket again (e.g. after a successful login).
func (l *limiter) reset(key string) {
	if l == nil {
		return
	}
	s := l.shard(key)
	s.mu.Lock()
	if i, found := s.idx[key]; found {
		s.remove(i)
	}
	s.mu.Unlock()
}

// len is the number of buckets held, for tests and metrics.
func (l *limiter) len() int {
	if l == nil {
		return 0
	}
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.idx)
		s.mu.Unlock()
	}
	return n
}

// insert adds key with a full bucket at time t and returns its slot, first dropping the
// least recently touched bucket when the shard is at its bound.
func (s *limiterShard) insert(key string, t int64) int32 {
	if len(s.idx) >= s.max && s.tail >= 0 {
		s.remove(s.tail)
	}
	var i int32
	if s.free >= 0 {
		i = s.free
		s.free = s.ent[i].next
	} else {
		s.ent = append(s.ent, limiterEntry{})
		i = int32(len(s.ent) - 1)
	}
	// Clone: the caller's key may be a slice of a much larger string (a request body or
	// header block) that the table must not keep alive.
	key = strings.Clone(key)
	s.ent[i] = limiterEntry{key: key, tat: t, prev: -1, next: s.head}
	if s.head >= 0 {
		s.ent[s.head].prev = i
	}
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
	s.idx[key] = i
	return i
}

// touch moves slot i to the front of the recency list.
func (s *limiterShard) touch(i int32) {
	if s.head == i {
		return
	}
	s.unlink(i)
	s.ent[i].prev, s.ent[i].next = -1, s.head
	if s.head >= 0 {
		s.ent[s.head].prev = i
	}
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
}

func (s *limiterShard) unlink(i int32) {
	e := &s.ent[i]
	if e.prev >= 0 {
		s.ent[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.ent[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (s *limiterShard) remove(i int32) {
	delete(s.idx, s.ent[i].key)
	s.unlink(i)
	s.ent[i] = limiterEntry{prev: -1, next: s.free} // drop the key string for the GC
	s.free = i
}

// sweep drops up to limiterSweep idle buckets (full again at t) from the old end of the
// recency list, never the slot keep the caller is using.
func (s *limiterShard) sweep(t int64, keep int32) {
	for n := 0; n < limiterSweep; n++ {
		i := s.tail
		if i < 0 || i == keep || s.ent[i].tat > t {
			return
		}
		s.remove(i)
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
