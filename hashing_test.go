// hashing_test.go: passlib compatibility, the bounded queue, cancellation, worker threads
// and login throughput of the bcrypt pool.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

type passlibVector struct{ password, hash string }

func loadPasslibVectors(t testing.TB) []passlibVector {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "passlib_bcrypt_vectors.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []passlibVector
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pw, hash, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("vector line without a tab: %q", line)
		}
		out = append(out, passlibVector{pw, hash})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 3 {
		t.Fatalf("only %d passlib vectors", len(out))
	}
	return out
}

// compareCase is one comparison expected to give want.
type compareCase struct {
	name, hash, password string
	want                 bool
}

// runCompares runs every case through p concurrently and checks each result. Under the
// race detector bcrypt is about 40× slower (ten seconds a cost-12 compare), and the
// detector's concern is the pool, not bcrypt's arithmetic: there only the first two costly
// cases of a table run; cheap (cost < 10) hashes always run.
func runCompares(t *testing.T, p *hashPool, cases []compareCase) {
	t.Helper()
	var wg sync.WaitGroup
	costly := 0
	for _, c := range cases {
		if raceEnabled && !cheapHash(c.hash) {
			if costly++; costly > 2 {
				t.Logf("race detector on: skipping %q", c.name)
				continue
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := p.compare(context.Background(), hashOrdinary, c.hash, c.password)
			if err != nil {
				t.Errorf("%s: compare error %v", c.name, err)
				return
			}
			if got != c.want {
				t.Errorf("%s: compare(%.20q, %.20q) = %v, want %v", c.name, c.hash, c.password, got, c.want)
			}
		}()
	}
	wg.Wait()
}

// raceEnabled reports whether the test binary was built with -race.
var raceEnabled = func() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}()

func cheapHash(h string) bool {
	cost, err := bcrypt.Cost([]byte(h))
	return wellFormedBcrypt(h) && err == nil && cost < 10
}

// bcryptOf hashes password at cost with x/crypto directly (not through the pool), as an
// independent reference.
func bcryptOf(t testing.TB, password string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func newTestHashPool(t testing.TB, workers int, queueWait time.Duration) *hashPool {
	p := newHashPool(workers, queueWait)
	t.Cleanup(p.close)
	return p
}

func TestPasslibVectorsVerify(t *testing.T) {
	t.Parallel()
	vectors := loadPasslibVectors(t)
	p := newTestHashPool(t, runtime.NumCPU(), time.Hour)
	// Each hash with its own password, and one with another's: more wrong-password checks
	// would each cost seconds under the race detector and show nothing new.
	cases := []compareCase{{"vector 0 with password of 1", vectors[0].hash, vectors[1].password, false}}
	for i, v := range vectors {
		cases = append(cases, compareCase{fmt.Sprintf("vector %d own password", i), v.hash, v.password, true})
	}
	runCompares(t, p, cases)
}

func TestCompareAcceptsAllBcryptPrefixes(t *testing.T) {
	const pw = "Sup3r-Secret!"
	ref := bcryptOf(t, pw, 4)
	p := newTestHashPool(t, runtime.NumCPU(), time.Hour)
	var cases []compareCase
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		h := prefix + ref[4:]
		cases = append(cases,
			compareCase{prefix + " right password", h, pw, true},
			compareCase{prefix + " wrong password", h, pw + "!", false})
	}
	runCompares(t, p, cases)
}

// TestCompareUsesOnlyFirst72Bytes pins passlib's behaviour: bytes after the 72nd never
// matter, while any change within them does.
func TestCompareUsesOnlyFirst72Bytes(t *testing.T) {
	t.Parallel()
	p := newTestHashPool(t, runtime.NumCPU(), time.Hour)
	var long72 string
	for _, v := range loadPasslibVectors(t) {
		if len(v.password) == 72 {
			long72 = v.hash
		}
	}
	if long72 == "" {
		t.Fatal("no 72-byte passlib vector")
	}
	base := strings.Repeat("ñ", 36) // 72 bytes of two-byte runes
	h := bcryptOf(t, base, 4)
	runCompares(t, p, []compareCase{
		{"same first 72 bytes", h, base + "a different tail", true},
		{"exactly the first 72 bytes", h, base, true},
		{"72nd byte differs", h, base[:71] + "n", false},
		{"first 71 bytes", h, base[:71], false},
		{"passlib 72-byte vector, 300 bytes", long72, strings.Repeat("x", 300), true},
		{"passlib 72-byte vector, 71 bytes", long72, strings.Repeat("x", 71), false},
	})
}

func TestWellFormedBcrypt(t *testing.T) {
	good := "$2b$12$/gRBviUAsGjNwVs8el1WiuNlG64kwwH5pu.H1b7QRPceA828MSNVq"
	tests := []struct {
		name string
		hash string
		want bool
	}{
		{"passlib 2b", good, true},
		{"2a", "$2a$" + good[4:], true},
		{"2y", "$2y$" + good[4:], true},
		{"cost 04", good[:4] + "04" + good[6:], true},
		{"cost 16", good[:4] + "16" + good[6:], true},
		{"empty", "", false},
		{"plain text", "correct horse battery staple", false},
		{"truncated", good[:59], false},
		{"trailing byte", good + "x", false},
		{"leading space", " " + good[:59], false},
		{"2x", "$2x$" + good[4:], false},
		{"2 without minor", "$2$12$" + good[7:] + "a", false},
		{"3b", "$3b$" + good[4:], false},
		{"argon2", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", false},
		{"cost 03", good[:4] + "03" + good[6:], false},
		{"cost 17", good[:4] + "17" + good[6:], false},
		{"cost 31", good[:4] + "31" + good[6:], false},
		{"cost not digits", good[:4] + "1a" + good[6:], false},
		{"cost sign", good[:4] + "+9" + good[6:], false},
		{"no dollar after cost", good[:6] + "x" + good[7:], false},
		{"bad alphabet char", good[:30] + "+" + good[31:], false},
		{"NUL in hash", good[:30] + "\x00" + good[31:], false},
		{"non-ASCII", good[:58] + "é", false},
	}
	for _, tt := range tests {
		if got := wellFormedBcrypt(tt.hash); got != tt.want {
			t.Errorf("%s: wellFormedBcrypt(%q) = %v, want %v", tt.name, tt.hash, got, tt.want)
		}
	}
}

// TestCompareMalformedHashIsMismatch: a broken stored hash is a failed login, never a
// panic or an error, and it still costs a bcrypt (the dummy one).
func TestCompareMalformedHashIsMismatch(t *testing.T) {
	t.Parallel()
	p := newTestHashPool(t, runtime.NumCPU(), time.Hour)
	p.cost, p.dummy = bcrypt.MinCost, fastDummyHash() // the subject is the mismatch, not the cost
	good := loadPasslibVectors(t)[0]
	runCompares(t, p, []compareCase{
		{"empty hash", "", good.password, false},
		{"plain text equal to the password", good.password, good.password, false},
		{"trailing garbage", good.hash + "garbage", good.password, false},
		{"cost over the cap", good.hash[:4] + "31" + good.hash[6:], good.password, false},
		{"2x prefix", "$2x$" + good.hash[4:], good.password, false},
		{"short", good.hash[:20], good.password, false},
	})
}

func TestDummyHashIsARealCost12Hash(t *testing.T) {
	t.Parallel()
	if !wellFormedBcrypt(dummyHash) {
		t.Fatalf("dummyHash %q is not a well-formed bcrypt hash", dummyHash)
	}
	if cost, err := bcrypt.Cost([]byte(dummyHash)); err != nil || cost != hashCost {
		t.Fatalf("dummyHash cost = %d, %v; want %d", cost, err, hashCost)
	}
	p := newTestHashPool(t, runtime.NumCPU(), time.Hour)
	if p.dummy != dummyHash || p.cost != hashCost {
		t.Fatalf("a production pool compares against %q and hashes at cost %d", p.dummy, p.cost)
	}
	runCompares(t, p, []compareCase{{"a guess", dummyHash, "password", false}})
}

func TestHashWritesPasslibStyleCost12(t *testing.T) {
	t.Parallel()
	p := newTestHashPool(t, runtime.NumCPU(), time.Hour)
	ctx := context.Background()
	const pw = "n3w-operator-password"
	var h, h2 string
	var err, err2 error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); h, err = p.hash(ctx, pw) }()
	go func() { defer wg.Done(); h2, err2 = p.hash(ctx, pw) }()
	wg.Wait()
	if err != nil || err2 != nil {
		t.Fatal(err, err2)
	}
	if !strings.HasPrefix(h, "$2b$12$") || !wellFormedBcrypt(h) {
		t.Fatalf("hash = %q, want a well-formed $2b$12$ hash", h)
	}
	if h2 == h {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
	// x/crypto itself, outside the pool, must agree the hash is of this password.
	if err := bcrypt.CompareHashAndPassword([]byte(h), []byte(pw)); err != nil {
		t.Fatalf("reference bcrypt rejects the pool's hash: %v", err)
	}
	// The pool's own comparison of its hashes is what the cost-12 login tests exercise.
	if _, err := p.hash(ctx, "nul\x00byte"); err == nil {
		t.Fatal("hash accepted a password with a NUL byte")
	}
}

// A pool sized by default takes one worker per processor the program has, not counting what
// other live pools added to GOMAXPROCS: gateways alive at once would otherwise compound.
func TestPoolsAliveTogetherDoNotSizeEachOther(t *testing.T) {
	first := newTestHashPool(t, 0, time.Second)
	second := newTestHashPool(t, 0, time.Second)
	if first.procs != second.procs || first.procs != runtime.GOMAXPROCS(0)-first.procs-second.procs {
		t.Fatalf("pools of %d and %d workers with GOMAXPROCS %d; want equal pools, one worker per processor",
			first.procs, second.procs, runtime.GOMAXPROCS(0))
	}
}

// holdWorkers occupies every worker of p until release is closed.
func holdWorkers(t *testing.T, p *hashPool, n int) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		go p.run(context.Background(), hashOrdinary, func() { started.Done(); <-gate })
	}
	started.Wait()
	var once sync.Once
	return func() { once.Do(func() { close(gate) }) }
}

func TestHashPoolBusyAfterQueueWait(t *testing.T) {
	const wait = 50 * time.Millisecond
	p := newTestHashPool(t, 1, wait)
	release := holdWorkers(t, p, 1)
	defer release()

	start := time.Now()
	const callers = 8
	errs := make(chan error, callers)
	for range callers {
		go func() {
			_, err := p.compare(context.Background(), hashOrdinary, dummyHash, "guess")
			errs <- err
		}()
	}
	for range callers {
		// The worker stays held, so every caller must give up by itself after the wait.
		if err := <-errs; !errors.Is(err, errHashBusy) {
			t.Fatalf("compare with no free worker: err = %v, want errHashBusy", err)
		}
	}
	if el := time.Since(start); el < wait {
		t.Fatalf("callers gave up after %v, before the %v queue wait", el, wait)
	}

	// A burst of real compares against one worker: some wait and finish, the rest are
	// turned away rather than queued. Cost 10 takes longer than the wait even unloaded.
	slow := bcryptOf(t, "guess", 10)
	release()
	var ok, busy atomic.Int32
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.compare(context.Background(), hashOrdinary, slow, "guess")
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, errHashBusy):
				busy.Add(1)
			default:
				t.Errorf("unexpected error %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() == 0 || busy.Load() == 0 {
		t.Fatalf("burst of %d on one worker: %d done, %d busy; want some of each", callers, ok.Load(), busy.Load())
	}
}

func TestHashPoolHonoursContext(t *testing.T) {
	p := newTestHashPool(t, 1, time.Hour)
	v := passlibVector{"pw", bcryptOf(t, "pw", 4)}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.compare(cancelled, hashOrdinary, v.hash, v.password); !errors.Is(err, context.Canceled) {
		t.Fatalf("already cancelled: err = %v, want context.Canceled", err)
	}

	// Cancelled while waiting for a worker (the queue wait alone would take an hour).
	release := holdWorkers(t, p, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := p.compare(ctx, hashOrdinary, v.hash, v.password); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline while queued: err = %v, want context.DeadlineExceeded", err)
	}
	release()

	// Cancelled while the worker computes: the caller is released before bcrypt ends.
	ctx, cancel = context.WithCancel(context.Background())
	entered := make(chan struct{})
	gate := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- p.run(ctx, hashOrdinary, func() { close(entered); <-gate })
	}()
	<-entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while computing: err = %v, want context.Canceled", err)
	}
	close(gate)
	// The worker is free again afterwards.
	if got, err := p.compare(context.Background(), hashOrdinary, v.hash, v.password); err != nil || !got {
		t.Fatalf("compare after cancellations = %v, %v; want true, nil", got, err)
	}
}

func TestHashPoolClose(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	p := newHashPool(2, time.Second)
	if got := runtime.GOMAXPROCS(0); got != before+2 {
		t.Errorf("GOMAXPROCS with pool = %d, want %d", got, before+2)
	}
	p.close()
	p.close() // idempotent
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS after close = %d, want %d", got, before)
	}
	start := time.Now()
	if _, err := p.compare(context.Background(), hashOrdinary, dummyHash, "x"); !errors.Is(err, errHashBusy) {
		t.Fatalf("compare after close: err = %v, want errHashBusy", err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Fatalf("compare after close took %v; a closed pool must answer at once", el)
	}
}

// threadNice returns the nice value of the calling OS thread.
func threadNice(t *testing.T) int {
	t.Helper()
	stat, err := os.ReadFile("/proc/thread-self/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the parenthesised command: state is field 3, nice field 19.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	nice, err := strconv.Atoi(fields[16])
	if err != nil {
		t.Fatal(err)
	}
	return nice
}

// TestHashWorkersRunOnLowPriorityThreads looks at the workers' own threads from inside
// jobs, so pools of other tests running in parallel cannot disturb the count.
func TestHashWorkersRunOnLowPriorityThreads(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("per-thread nice values are a Linux feature")
	}
	var base int
	func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		base = threadNice(t)
	}()
	if base != 0 {
		t.Skip("process is not running at nice 0")
	}
	const workers = 3
	p := newHashPool(workers, time.Second)
	var (
		mu    sync.Mutex
		tids  = map[int]int{} // thread id → nice
		ready sync.WaitGroup
		wg    sync.WaitGroup
	)
	ready.Add(workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.run(context.Background(), hashOrdinary, func() {
				nice := threadNice(t)
				mu.Lock()
				tids[syscall.Gettid()] = nice
				mu.Unlock()
				ready.Done()
				ready.Wait() // hold this worker until every worker has a job
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(tids) != workers {
		t.Fatalf("jobs ran on %d threads, want one per worker (%d)", len(tids), workers)
	}
	for tid, nice := range tids {
		if tid == os.Getpid() {
			t.Errorf("a worker runs on the main thread, which outlives it at a lowered priority")
		}
		if nice != hashNiceDelta {
			t.Errorf("worker thread %d at nice %d, want %d", tid, nice, hashNiceDelta)
		}
	}

	// Work on other goroutines still runs at normal priority.
	var normal atomic.Int32
	var others sync.WaitGroup
	for range 8 {
		others.Add(1)
		go func() {
			defer others.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if threadNice(t) == 0 {
				normal.Add(1)
			}
		}()
	}
	others.Wait()
	if normal.Load() != 8 {
		t.Errorf("%d of 8 ordinary goroutines ran on a normal-priority thread", normal.Load())
	}

	p.close()
	// The workers' threads end with them rather than returning to the pool of threads.
	deadline := time.Now().Add(5 * time.Second)
	for tid := range tids {
		for {
			if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid)); os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("low-priority thread %d still alive after close", tid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// FuzzWellFormedBcrypt checks that the hash check never panics, accepts only 60-byte
// "$2[aby]$" strings, and that whatever it accepts bcrypt can compare without panicking.
func FuzzWellFormedBcrypt(f *testing.F) {
	f.Add("$2b$04$/gRBviUAsGjNwVs8el1WiuNlG64kwwH5pu.H1b7QRPceA828MSNVq", "pw")
	f.Add("$2y$05$SesIGk3CyG4l2yHnWNfvbuDyp5EYXPar1nBbMOBxCUR2Le0/f05tK", "ñandú")
	f.Add("$2a$04$"+strings.Repeat(".", 53), "")
	f.Add("$2b$12$short", "x")
	f.Add("", "")
	f.Add("$2b$99$"+strings.Repeat("A", 53), strings.Repeat("p", 100))
	f.Fuzz(func(t *testing.T, hash, password string) {
		if !wellFormedBcrypt(hash) {
			return
		}
		if len(hash) != 60 || !strings.HasPrefix(hash, "$2") || !strings.ContainsRune("aby", rune(hash[2])) {
			t.Fatalf("accepted %q", hash)
		}
		if cost, err := bcrypt.Cost([]byte(hash)); err != nil || cost > maxCompareCost {
			t.Fatalf("accepted %q: cost %d, %v", hash, cost, err)
		} else if cost > 6 {
			return // well formed; too slow to compare on every fuzz input
		}
		_ = bcrypt.CompareHashAndPassword([]byte(hash), bcryptPassword(password))
	})
}

// BenchmarkBcryptCompare is one cost-12 comparison through the pool.
func BenchmarkBcryptCompare(b *testing.B) {
	v := loadPasslibVectors(b)[0]
	p := newTestHashPool(b, runtime.NumCPU(), time.Hour)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := p.compare(ctx, hashOrdinary, v.hash, v.password); err != nil || !ok {
			b.Fatalf("compare = %v, %v", ok, err)
		}
	}
}

// BenchmarkLoginThroughput measures how close logins through the pool come to the bcrypt
// bound, NumCPU ÷ (time of one compare): NumCPU callers compare in parallel, as logins
// on an otherwise idle machine would. Reported as logins/s, bound/s and %bound, for the
// default policy and for workers at normal priority (which other processes on the machine
// cannot push aside, so the pair shows whether a shortfall is the pool or outside load).
func BenchmarkLoginThroughput(b *testing.B) {
	v := loadPasslibVectors(b)[0]
	ncpu := runtime.NumCPU()
	for _, c := range []struct {
		name   string
		policy hashPolicy
	}{
		{"default", defaultHashPolicy},
		{"normal-priority", hashPolicy{ownProcs: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			// One compare alone, on an ordinary thread: the best of a few runs.
			one := time.Duration(1<<63 - 1)
			for range 3 {
				start := time.Now()
				_ = bcrypt.CompareHashAndPassword([]byte(v.hash), []byte(v.password))
				one = min(one, time.Since(start))
			}
			p := newHashPoolWith(ncpu, time.Hour, c.policy)
			defer p.close()
			ctx := context.Background()
			var next atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range ncpu {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if _, err := p.compare(ctx, hashOrdinary, v.hash, "wrong password"); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			rate := float64(b.N) / elapsed.Seconds()
			bound := float64(ncpu) / one.Seconds()
			b.ReportMetric(rate, "logins/s")
			b.ReportMetric(bound, "bound/s")
			b.ReportMetric(100*rate/bound, "%bound")
		})
	}
}

// BenchmarkLatencyDuringLoginFlood measures the latency of light HTTP requests served by
// this process while 32 clients keep the pool busy with wrong passwords, for each way of
// sharing the CPU: idle (no flood), workers at normal priority on the program's own Ps
// (plain), lowered thread priority alone, their own GOMAXPROCS share alone, and the
// default (both). Reported as p50 and p99 in milliseconds.
func BenchmarkLatencyDuringLoginFlood(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()
	client := srv.Client()
	v := loadPasslibVectors(b)[0]

	for _, c := range []struct {
		name   string
		flood  bool
		policy hashPolicy
	}{
		{"idle", false, defaultHashPolicy},
		{"flood/plain", true, hashPolicy{}},
		{"flood/nice", true, hashPolicy{niceDelta: hashNiceDelta}},
		{"flood/procs", true, hashPolicy{ownProcs: true}},
		{"flood/nice+procs", true, defaultHashPolicy},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := newHashPoolWith(runtime.NumCPU(), time.Second, c.policy)
			defer p.close()
			ctx, stop := context.WithCancel(context.Background())
			var flood sync.WaitGroup
			if c.flood {
				for range 32 {
					flood.Add(1)
					go func() {
						defer flood.Done()
						for ctx.Err() == nil {
							p.compare(ctx, hashOrdinary, v.hash, "wrong password")
						}
					}()
				}
				time.Sleep(500 * time.Millisecond) // let the flood fill the workers
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				resp, err := client.Get(srv.URL)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			stop()
			flood.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
		})
	}
}
