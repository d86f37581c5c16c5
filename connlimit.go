// connlimit.go: the cap on open client connections (GATEWAY_MAX_CONNECTIONS), so a flood of
// idle or half-open connections cannot grow the process past its memory limit.
package main

import (
	"container/list"
	"net"
	"net/http"
	"sync"
)

// connLimiter keeps at most max connections open (0: only counts). At the cap, the one doing
// nothing for longest (new, or idle keep-alive) is closed, as nginx does: an attacker's idle
// connections last only until newer ones arrive. Busy ones are never closed; if all are, the
// newcomer is refused.
type connLimiter struct {
	net.Listener
	max int
	m   *metrics

	mu      sync.Mutex
	open    int       // connections holding a place under max
	waiting list.List // of *trackedConn doing nothing, oldest (evicted first) in front
}

func newConnLimiter(ln net.Listener, max int, m *metrics) *connLimiter {
	return &connLimiter{Listener: ln, max: max, m: m}
}

type trackedConn struct {
	net.Conn
	l         *connLimiter
	waiting   *list.Element // in l.waiting, nil when busy
	idle      bool          // waiting because it is between requests (not new)
	counted   bool          // holds one of l.open
	closeOnce sync.Once
}

// Shedding reasons, as counted in gateway_client_connections_shed_total{reason}.
const (
	shedIdle    = "evicted_idle" // keep-alive connection between requests
	shedNew     = "evicted_new"  // accepted, no request sent yet
	shedRefused = "refused"      // every connection was busy with a request
)

// Accept returns the next connection that may stay open, closing whatever the cap refuses.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: c, l: l}
		victim, ok := l.admit(tc)
		if !ok {
			c.Close()
			l.m.connShed(shedRefused)
			continue
		}
		if victim != nil {
			reason := shedNew
			if victim.idle {
				reason = shedIdle
			}
			victim.Close() // its goroutine in net/http sees the error and ends
			l.m.connShed(reason)
		}
		l.m.clientConnsAdd(1) // after the victim's -1: the gauge never shows more than max
		return tc, nil
	}
}

// admit gives tc a place, at the cap taking it from the oldest connection doing nothing (the
// victim, for the caller to close); ok is false when every connection is busy.
func (l *connLimiter) admit(tc *trackedConn) (victim *trackedConn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.open >= l.max {
		oldest := l.waiting.Front()
		if oldest == nil {
			return nil, false
		}
		victim = oldest.Value.(*trackedConn)
		l.unlist(victim)
		victim.counted = false // its place passes to tc
		l.open--
	}
	l.open++
	tc.counted = true
	tc.waiting, tc.idle = l.waiting.PushBack(tc), false
	return victim, true
}

// connState follows net/http's view of each connection (http.Server.ConnState).
func (l *connLimiter) connState(c net.Conn, state http.ConnState) {
	tc, ok := c.(*trackedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch state {
	case http.StateIdle:
		l.unlist(tc)
		if tc.counted { // not already evicted
			tc.waiting, tc.idle = l.waiting.PushBack(tc), true
		}
	case http.StateActive, http.StateHijacked, http.StateClosed:
		// Not a candidate for eviction; a hijacked connection keeps its place until closed.
		l.unlist(tc)
	}
}

// Close releases the connection's place once, however often it is called.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		l := c.l
		l.mu.Lock()
		l.unlist(c)
		if c.counted {
			c.counted = false
			l.open--
		}
		l.mu.Unlock()
		l.m.clientConnsAdd(-1)
	})
	return err
}

// unlist removes tc from the waiting list if it is there. Callers hold l.mu.
func (l *connLimiter) unlist(tc *trackedConn) {
	if tc.waiting != nil {
		l.waiting.Remove(tc.waiting)
		tc.waiting = nil
	}
}
