// hashing.go: bcrypt bounded to a fixed pool of low-priority worker threads, so a login
// flood can neither queue without bound nor starve proxied requests of CPU.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// errHashBusy: no worker was free within the queue wait; callers answer 503 so clients retry.
var errHashBusy = errors.New("password hashing busy")

const (
	// hashCost is passlib's default, which every production hash was written with.
	hashCost = 12
	// maxCompareCost refuses stored hashes that would hold a worker for many seconds.
	maxCompareCost = 16
	// bcryptMaxPassword: x/crypto/bcrypt refuses longer; passlib truncated silently, as we do.
	bcryptMaxPassword = 72
	// hashNiceDelta: at +10 the kernel weighs a normal thread about 9× a hashing one.
	hashNiceDelta = 10
)

// dummyHash is a cost-12 hash of a password nobody knows: an unknown email costs the same
// bcrypt as a wrong password, so timing does not tell which emails exist.
const dummyHash = "$2b$12$ZIwsTXTgG/cvROR82YcpxuYaaWcvl1OpYTYfdZ7PJeRWxre4US4xS"

// hashPool runs bcrypt on threads of lowered priority (the Go scheduler knows none), with
// GOMAXPROCS raised by the worker count so workers never hold the proxy's Ps. A caller waits at
// most queueWait for a free worker; returning users' logins go first, so a flood delays strangers.
type hashPool struct {
	cost      int         // of the hashes it writes: hashCost
	dummy     string      // compared instead of a missing or malformed hash; of the same cost
	jobs      chan func() // unbuffered: a send succeeds only when a worker is free
	first     chan func() // the same, for first-class jobs, which workers prefer
	waiting   [2]atomic.Int32
	queueWait time.Duration
	quit      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	procs     int // GOMAXPROCS added, given back by close
}

// hashPolicy is how the pool shares the CPU; the benchmark compares the alternatives.
type hashPolicy struct {
	niceDelta int  // added to the worker threads' nice value; 0 keeps their priority
	ownProcs  bool // raise GOMAXPROCS by the number of workers
}

var defaultHashPolicy = hashPolicy{niceDelta: hashNiceDelta, ownProcs: true}

// poolProcs is what live pools added to GOMAXPROCS; procsMu guards it and GOMAXPROCS's
// read-modify-write.
var (
	procsMu   sync.Mutex
	poolProcs int
)

// newHashPool starts workers workers; callers wait at most queueWait. With workers <= 0 it
// starts one per processor the program has without the pools' additions, so pools alive at
// once do not size themselves from each other.
func newHashPool(workers int, queueWait time.Duration) *hashPool {
	return newHashPoolWith(workers, queueWait, defaultHashPolicy)
}

func newHashPoolWith(workers int, queueWait time.Duration, policy hashPolicy) *hashPool {
	if workers <= 0 {
		procsMu.Lock()
		workers = max(runtime.GOMAXPROCS(0)-poolProcs, 1)
		procsMu.Unlock()
	}
	p := &hashPool{
		cost:      hashCost,
		dummy:     dummyHash,
		jobs:      make(chan func()),
		first:     make(chan func()),
		queueWait: queueWait,
		quit:      make(chan struct{}),
	}
	if policy.ownProcs {
		p.procs = workers
		addProcs(workers)
	}
	var ready sync.WaitGroup
	ready.Add(workers)
	p.wg.Add(workers)
	for range workers {
		go p.work(policy.niceDelta, &ready)
	}
	ready.Wait() // every worker is on its own thread at its own priority before use
	return p
}

func addProcs(delta int) {
	procsMu.Lock()
	poolProcs += delta
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0)+delta, 1))
	procsMu.Unlock()
}

func (p *hashPool) work(niceDelta int, ready *sync.WaitGroup) {
	// Never unlocked: the runtime ends the thread with this goroutine, so the lowered
	// priority cannot leak to ordinary goroutines.
	runtime.LockOSThread()
	if niceDelta > 0 && onMainThread() {
		// The runtime never ends the main thread, so start again on another one (the new
		// goroutine cannot be scheduled on the thread this one holds).
		moved := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(moved)
			p.work(niceDelta, ready)
		}()
		<-moved
		runtime.UnlockOSThread()
		return
	}
	defer p.wg.Done()
	if niceDelta > 0 {
		lowerThreadPriority(niceDelta)
	}
	ready.Done()
	for {
		// A waiting first-class job first: the blocking select below picks at random.
		select {
		case job := <-p.first:
			job()
			continue
		default:
		}
		select {
		case job := <-p.first:
			job()
		case job := <-p.jobs:
			job()
		case <-p.quit:
			return
		}
	}
}

// lowerThreadPriority raises the calling thread's nice value by delta (at most 19). Only on
// Linux is setpriority per thread; elsewhere it would renice the process.
func lowerThreadPriority(delta int) {
	if runtime.GOOS != "linux" {
		return
	}
	// The raw Linux getpriority returns 20-nice.
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		return
	}
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, min(20-prio+delta, 19))
}

// onMainThread reports whether the calling locked goroutine runs on the main thread (tid == pid).
func onMainThread() bool {
	if runtime.GOOS != "linux" {
		return false // lowerThreadPriority does nothing elsewhere
	}
	self, err := os.Readlink("/proc/thread-self") // "<pid>/task/<tid>"
	return err == nil && strings.HasSuffix(self, "/task/"+strconv.Itoa(os.Getpid()))
}

// close stops the workers after any bcrypt in progress and gives back their GOMAXPROCS share.
func (p *hashPool) close() {
	p.closeOnce.Do(func() {
		close(p.quit)
		p.wg.Wait()
		if p.procs > 0 {
			addProcs(-p.procs)
		}
	})
}

type hashClass int

const (
	hashOrdinary hashClass = iota
	hashFirst              // served before any ordinary caller: returning users' logins
)

// compare reports whether password matches the stored bcrypt hash. A missing or malformed hash
// is a mismatch, after a real comparison against the dummy. The error wraps errHashBusy or ctx's.
func (p *hashPool) compare(ctx context.Context, class hashClass, hash string, password string) (bool, error) {
	wellFormed := wellFormedBcrypt(hash)
	if !wellFormed {
		hash = p.dummy // one real comparison: fails in the time of a wrong password
	}
	var match bool
	err := p.run(ctx, class, func() {
		match = bcrypt.CompareHashAndPassword([]byte(hash), bcryptPassword(password)) == nil
	})
	if err != nil {
		return false, err
	}
	return match && wellFormed, nil
}

// hash returns a new bcrypt hash of password in passlib's "$2b$" form, for operator commands.
func (p *hashPool) hash(ctx context.Context, password string) (string, error) {
	// passlib refuses NUL bytes (C bcrypt would stop reading at one), so a hash of such
	// a password could never be verified by the other services sharing the table.
	if strings.IndexByte(password, 0) >= 0 {
		return "", errors.New("hash password: contains a NUL byte")
	}
	var out []byte
	var herr error
	if err := p.run(ctx, hashOrdinary, func() {
		out, herr = bcrypt.GenerateFromPassword(bcryptPassword(password), p.cost)
	}); err != nil {
		return "", err
	}
	if herr != nil {
		return "", fmt.Errorf("hash password: %w", herr)
	}
	// x/crypto writes "$2a$"; for passwords of at most 72 bytes "$2b$" is the same hash,
	// and it is the prefix passlib writes and every existing row has.
	return "$2b$" + strings.TrimPrefix(string(out), "$2a$"), nil
}

// run hands fn to a free worker, waiting at most queueWait for one, and waits for fn to
// finish or ctx to end. fn may still be running (bcrypt cannot be interrupted) when run
// returns ctx's error; it then writes only to variables nobody reads any more.
func (p *hashPool) run(ctx context.Context, class hashClass, fn func()) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("password hashing: %w", err)
	}
	done := make(chan struct{})
	job := func() {
		fn()
		close(done)
	}
	queue := p.jobs
	if class == hashFirst {
		queue = p.first
	}
	select {
	case queue <- job: // a worker was idle: no timer needed
	default:
		wait := startSpan(ctx, "bcrypt wait", spanKindInternal) // nil unless traced
		p.waiting[class].Add(1)
		err := p.wait(ctx, queue, job)
		p.waiting[class].Add(-1)
		wait.finishErr(err)
		if err != nil {
			return err
		}
	}
	work := startSpan(ctx, "bcrypt", spanKindInternal)
	defer work.finish()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("password hashing: %w", ctx.Err())
	}
}

func (p *hashPool) wait(ctx context.Context, queue chan func(), job func()) error {
	if p.queueWait <= 0 {
		return fmt.Errorf("no hashing worker free: %w", errHashBusy)
	}
	t := time.NewTimer(p.queueWait)
	defer t.Stop()
	select {
	case queue <- job:
		return nil
	case <-t.C:
		return fmt.Errorf("no hashing worker free within %v: %w", p.queueWait, errHashBusy)
	case <-ctx.Done():
		return fmt.Errorf("wait for a hashing worker: %w", ctx.Err())
	case <-p.quit:
		return fmt.Errorf("hash pool closed: %w", errHashBusy)
	}
}

func bcryptPassword(password string) []byte {
	return []byte(password[:min(len(password), bcryptMaxPassword)])
}

// bcryptHash is exactly a bcrypt hash of cost 04 to 16 (maxCompareCost): x/crypto/bcrypt
// alone would accept trailing bytes and any version letter.
var bcryptHash = regexp.MustCompile(`^\$2[aby]\$(0[4-9]|1[0-6])\$[./A-Za-z0-9]{53}$`)

func wellFormedBcrypt(h string) bool { return bcryptHash.MatchString(h) }
