// ratelimit_test.go: token-bucket timing, key isolation, the memory bound and concurrent use.
package main

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var limiterT0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// limiterStep is one call at limiterT0+at; want* describe its result.
type limiterStep struct {
	at        time.Duration
	op        string // allow, check, refund, reset
	key       string // "" means "k"
	wantOK    bool
	wantRetry time.Duration
}

func runLimiterSteps(t *testing.T, l *limiter, steps []limiterStep) {
	t.Helper()
	for n, st := range steps {
		key := st.key
		if key == "" {
			key = "k"
		}
		now := limiterT0.Add(st.at)
		var ok bool
		var retry time.Duration
		switch st.op {
		case "allow":
			ok, retry = l.allow(key, now)
		case "check":
			ok, retry = l.check(key, now)
		case "refund":
			l.refund(key)
			continue
		case "reset":
			l.reset(key)
			continue
		default:
			t.Fatalf("step %d: unknown op %q", n, st.op)
		}
		if ok != st.wantOK || retry != st.wantRetry {
			t.Fatalf("step %d (%s %s at +%v): got (%v, %v), want (%v, %v)",
				n, st.op, key, st.at, ok, retry, st.wantOK, st.wantRetry)
		}
	}
}

func TestLimiterBurstThenRefill(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name      string
		perSecond float64
		burst     int
		steps     []limiterStep
	}{
		{"burst of three then one per second", 1, 3, []limiterStep{
			{at: 0, op: "allow", wantOK: true},
			{at: 0, op: "allow", wantOK: true},
			{at: 0, op: "allow", wantOK: true},
			{at: 0, op: "allow", wantRetry: time.Second},
			{at: 400 * ms, op: "allow", wantRetry: 600 * ms},
			{at: 999 * ms, op: "allow", wantRetry: ms},
			{at: time.Second, op: "allow", wantOK: true},
			{at: time.Second, op: "allow", wantRetry: time.Second},
			{at: 3 * time.Second, op: "allow", wantOK: true},
			{at: 3 * time.Second, op: "allow", wantOK: true},
			{at: 3 * time.Second, op: "allow", wantRetry: time.Second},
		}},
		{"refill never exceeds the burst", 10, 2, []limiterStep{
			{at: 0, op: "allow", wantOK: true},
			{at: time.Hour, op: "allow", wantOK: true},
			{at: time.Hour, op: "allow", wantOK: true},
			{at: time.Hour, op: "allow", wantRetry: 100 * ms},
		}},
		{"thirty failed logins a minute", 0.5, 30, append(
			repeatStep(limiterStep{at: 0, op: "allow", wantOK: true}, 30),
			limiterStep{at: 0, op: "allow", wantRetry: 2 * time.Second},
			limiterStep{at: 2 * time.Second, op: "allow", wantOK: true},
		)},
		{"check looks without taking", 1, 1, []limiterStep{
			{at: 0, op: "check", wantOK: true},
			{at: 0, op: "check", wantOK: true},
			{at: 0, op: "allow", wantOK: true},
			{at: 0, op: "check", wantRetry: time.Second},
			{at: 250 * ms, op: "check", wantRetry: 750 * ms},
			{at: time.Second, op: "check", wantOK: true},
		}},
		{"refund gives back one token", 1, 2, []limiterStep{
			{at: 0, op: "allow", wantOK: true},
			{at: 0, op: "allow", wantOK: true},
			{at: 0, op: "allow", wantRetry: time.Second},
			{at: 0, op: "refund"},
			{at: 0, op: "allow", wantOK: true},
			{at: 0, op: "allow", wantRetry: time.Second},
		}},
		{"refunds never fill past the burst", 1, 2, append(
			append([]limiterStep{{at: 0, op: "allow", wantOK: true}}, repeatStep(limiterStep{at: 0, op: "refund"}, 10)...),
			limiterStep{at: 0, op: "allow", wantOK: true},
			limiterStep{at: 0, op: "allow", wantOK: true},
			limiterStep{at: 0, op: "allow", wantRetry: time.Second},
		)},
		{"reset gives a full bucket back", 1, 2, []limiterStep{
			{at: 0, op: "allow", wantOK: true},
			{at: 0, op: "allow", wantOK: true},
			{at: 0, op: "allow", wantRetry: time.Second},
			{at: 0, op: "reset"},
			{at: 0, op: "allow", wantOK: true},
			{at: 0, op: "allow", wantOK: true},
		}},
		{"a clock that steps back refills nothing", 1, 1, []limiterStep{
			{at: 10 * time.Second, op: "allow", wantOK: true},
			{at: 0, op: "allow", wantRetry: 11 * time.Second},
			{at: 11 * time.Second, op: "allow", wantOK: true},
		}},
		{"fractional rate", 3, 1, []limiterStep{
			{at: 0, op: "allow", wantOK: true},
			{at: 0, op: "allow", wantRetry: 333333333},
			{at: 333333333, op: "allow", wantOK: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runLimiterSteps(t, newLimiter(tt.perSecond, tt.burst, 0), tt.steps)
		})
	}
}

func repeatStep(s limiterStep, n int) []limiterStep {
	out := make([]limiterStep, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestLimiterKeysAreIsolated(t *testing.T) {
	l := newLimiter(1, 2, 0)
	runLimiterSteps(t, l, []limiterStep{
		{op: "allow", key: "10.0.0.1", wantOK: true},
		{op: "allow", key: "10.0.0.1", wantOK: true},
		{op: "allow", key: "10.0.0.1", wantRetry: time.Second},
		// Another client is untouched by the first one's exhaustion.
		{op: "allow", key: "10.0.0.2", wantOK: true},
		{op: "check", key: "10.0.0.2", wantOK: true},
		{op: "allow", key: "10.0.0.3", wantOK: true},
		{op: "allow", key: "10.0.0.3", wantOK: true},
		{op: "check", key: "10.0.0.3", wantRetry: time.Second},
		{op: "reset", key: "10.0.0.3"},
		{op: "check", key: "10.0.0.1", wantRetry: time.Second},
		{op: "allow", key: "10.0.0.2", wantOK: true},
		{op: "allow", key: "10.0.0.2", wantRetry: time.Second},
	})
}

func TestLimiterOffWhenRateOrBurstIsZero(t *testing.T) {
	for _, c := range []struct {
		perSecond float64
		burst     int
	}{{0, 10}, {1, 0}, {-1, 10}, {1, -5}} {
		if l := newLimiter(c.perSecond, c.burst, 100); l != nil {
			t.Errorf("newLimiter(%v, %d) = %p, want nil (limit off)", c.perSecond, c.burst, l)
		}
	}
	var l *limiter
	for i := 0; i < 1000; i++ {
		if ok, retry := l.allow("k", limiterT0); !ok || retry != 0 {
			t.Fatalf("nil limiter allow = (%v, %v), want (true, 0)", ok, retry)
		}
		if ok, _ := l.check("k", limiterT0); !ok {
			t.Fatal("nil limiter check refused")
		}
		l.refund("k")
	}
	l.reset("k")
	if l.len() != 0 {
		t.Fatal("nil limiter holds keys")
	}
}

func TestLimiterStaysWithinMaxKeysUnder100kKeys(t *testing.T) {
	for _, maxKeys := range []int{1, 1000, 5000, 40_000} {
		t.Run(strconv.Itoa(maxKeys), func(t *testing.T) {
			l := newLimiter(1, 1, maxKeys)
			peak := 0
			for i := 0; i < 100_000; i++ {
				// Every key is drained, so none is idle: the bound must hold by eviction.
				if ok, _ := l.allow("attacker-"+strconv.Itoa(i), limiterT0); !ok {
					t.Fatalf("fresh key %d refused", i)
				}
				if i%997 == 0 {
					peak = max(peak, l.len())
				}
			}
			peak = max(peak, l.len())
			if peak > maxKeys {
				t.Fatalf("limiter held %d keys, bound is %d", peak, maxKeys)
			}
			// The newest key is still limited: eviction took the oldest, not the latest.
			if ok, _ := l.check("attacker-99999", limiterT0); ok {
				t.Error("most recently used key was evicted")
			}
			checkLimiterInvariants(t, l)
		})
	}
}

func TestLimiterEvictsOldestTouchedWhenFull(t *testing.T) {
	l := newLimiter(1, 1, 3)
	for _, k := range []string{"a", "b", "c"} {
		l.allow(k, limiterT0)
	}
	l.allow("a", limiterT0) // touch a (refused, but touched): b is now the oldest
	l.allow("d", limiterT0)
	if got := l.len(); got != 3 {
		t.Fatalf("len = %d, want 3", got)
	}
	for k, wantLimited := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		ok, _ := l.check(k, limiterT0)
		if ok == wantLimited {
			t.Errorf("key %s limited = %v, want %v", k, !ok, wantLimited)
		}
	}
}

func TestLimiterDropsIdleBuckets(t *testing.T) {
	l := newLimiter(1, 2, 100_000)
	for i := 0; i < 5000; i++ {
		l.allow("ip-"+strconv.Itoa(i), limiterT0)
	}
	if got := l.len(); got != 5000 {
		t.Fatalf("len = %d, want 5000", got)
	}
	// Not yet idle: a bucket with a token missing is still state worth keeping.
	for i := 0; i < 5000; i++ {
		l.check("probe-"+strconv.Itoa(i), limiterT0.Add(500*time.Millisecond))
	}
	if got := l.len(); got != 5000 {
		t.Fatalf("len after early probes = %d, want 5000", got)
	}
	// Once refilled, ordinary traffic (lookups of other keys) sweeps them away.
	for i := 0; i < 5000; i++ {
		l.check("probe-"+strconv.Itoa(i), limiterT0.Add(2*time.Second))
	}
	if got := l.len(); got != 0 {
		t.Fatalf("len after idle sweep = %d, want 0", got)
	}
	checkLimiterInvariants(t, l)
}

// TestLimiterConcurrentUse runs every method from many goroutines (meant for -race) and
// checks that one key still hands out exactly its burst at a fixed instant.
func TestLimiterConcurrentUse(t *testing.T) {
	const burst = 50
	l := newLimiter(0.001, burst, 2048)
	var granted atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				if ok, _ := l.allow("shared", limiterT0); ok {
					granted.Add(1)
				}
				k := fmt.Sprintf("g%d-%d", g, i%300)
				l.allow(k, limiterT0.Add(time.Duration(i)*time.Millisecond))
				l.check(k, limiterT0)
				if i%7 == 0 {
					l.refund(k)
				}
				if i%11 == 0 {
					l.reset(k)
				}
			}
		}()
	}
	wg.Wait()
	if got := granted.Load(); got != burst {
		t.Fatalf("shared key granted %d tokens, want exactly %d", got, burst)
	}
	if n := l.len(); n > 2048 {
		t.Fatalf("len = %d over bound 2048", n)
	}
	checkLimiterInvariants(t, l)
}

func TestRetryAfterSecondsRoundsUpToWholeSeconds(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "1"},
		{-time.Second, "1"},
		{time.Nanosecond, "1"},
		{time.Second, "1"},
		{time.Second + time.Nanosecond, "2"},
		{1500 * time.Millisecond, "2"},
		{2 * time.Second, "2"},
		{59*time.Second + 1, "60"},
		{time.Hour, "3600"},
		{time.Duration(1<<63 - 1), "9223372037"},
	} {
		if got := retryAfterSeconds(c.d); got != c.want {
			t.Errorf("retryAfterSeconds(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

// checkLimiterInvariants checks that the recency list and the index agree and stay within
// the bound.
func checkLimiterInvariants(t *testing.T, l *limiter) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.recent.Len(); n != len(l.buckets) {
		t.Fatalf("recency list has %d buckets, index %d", n, len(l.buckets))
	}
	for e := l.recent.Front(); e != nil; e = e.Next() {
		if l.buckets[e.Value.(*bucket).key] != e {
			t.Fatalf("bucket %q not indexed to its list element", e.Value.(*bucket).key)
		}
	}
	if len(l.buckets) > l.maxKeys {
		t.Fatalf("%d keys over bound %d", len(l.buckets), l.maxKeys)
	}
}

// FuzzLimiterOps drives a small limiter with an arbitrary sequence of calls and checks
// that allow agrees with check, keys stay within the bound and the lists stay consistent.
func FuzzLimiterOps(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, uint8(3), uint8(2))
	f.Add([]byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), uint8(1), uint8(1))
	f.Add([]byte{0x80, 0x81, 0x42, 0xff, 0x00, 0x13, 0x37, 0xc0, 0xde}, uint8(4), uint8(7))
	f.Fuzz(func(t *testing.T, ops []byte, maxKeys uint8, burst uint8) {
		l := newLimiter(2, int(burst%8)+1, int(maxKeys%9)+1)
		now := limiterT0
		for _, b := range ops {
			key := "k" + strconv.Itoa(int(b&0x0f))
			switch b >> 4 % 5 {
			case 0:
				cok, cretry := l.check(key, now)
				aok, aretry := l.allow(key, now)
				if cok != aok || cretry != aretry {
					t.Fatalf("check (%v,%v) disagrees with allow (%v,%v)", cok, cretry, aok, aretry)
				}
				if !aok && aretry <= 0 {
					t.Fatalf("refused with retryAfter %v", aretry)
				}
			case 1:
				l.refund(key)
			case 2:
				l.reset(key)
				if ok, _ := l.check(key, now); !ok {
					t.Fatal("reset key still limited")
				}
			case 3:
				now = now.Add(time.Duration(b&0x0f) * 100 * time.Millisecond)
			case 4:
				now = now.Add(-time.Duration(b&0x0f) * 10 * time.Millisecond)
			}
		}
		checkLimiterInvariants(t, l)
	})
}

// BenchmarkLimiterAllow measures allow on existing keys from parallel goroutines.
func BenchmarkLimiterAllow(b *testing.B) {
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = "203.0.113." + strconv.Itoa(i)
	}
	l := newLimiter(1, 1<<20, 100_000)
	for _, k := range keys {
		l.allow(k, time.Now())
	}
	var seq atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 977
		for pb.Next() {
			l.allow(keys[i%len(keys)], time.Now())
			i++
		}
	})
}

func (l *limiter) len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
