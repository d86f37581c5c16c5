// clientip.go: which address a request is attributed to, and when X-Forwarded-For counts.
package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// setClientAddr sets info's client address fields; X-Forwarded-For counts only from a
// trusted proxy.
func setClientAddr(info *requestInfo, r *http.Request, trusted []netip.Prefix, warn *untrustedProxyWarning) {
	xff := r.Header["X-Forwarded-For"]
	info.PeerTrusted = peerTrusted(r.RemoteAddr, trusted)
	if !info.PeerTrusted {
		if len(xff) > 0 {
			warn.observe(r.RemoteAddr)
		}
		xff = nil // never believed from an untrusted peer
	}
	client := clientIP(r.RemoteAddr, xff, trusted)
	if client.IsValid() {
		info.ClientIP = client.String()
	}
	info.ClientIsProxy = info.PeerTrusted && inPrefixes(client, trusted)
}

// untrustedProxyWarning says, at most once per every, that a private or loopback peer sent
// X-Forwarded-For untrusted: an ingress missing from GATEWAY_TRUSTED_PROXIES. A public one forges.
type untrustedProxyWarning struct {
	log   *slog.Logger
	now   func() time.Time
	every time.Duration
	next  atomic.Int64 // unix nanoseconds before which nothing more is logged
}

func (u *untrustedProxyWarning) observe(remoteAddr string) {
	peer, ok := parseIPEntry(remoteAddr)
	if !ok || !(peer.IsPrivate() || peer.IsLoopback()) {
		return
	}
	now := u.now().UnixNano()
	next := u.next.Load()
	if now < next || !u.next.CompareAndSwap(next, now+int64(u.every)) {
		return
	}
	u.log.LogAttrs(context.Background(), slog.LevelWarn,
		"X-Forwarded-For from a private address that is not in GATEWAY_TRUSTED_PROXIES: "+
			"the header is ignored and login limits are keyed on that proxy's address, so one client's failures "+
			"lock out everyone behind it; add the proxy's range to GATEWAY_TRUSTED_PROXIES",
		slog.String("peer", peer.String()),
		slog.String("setting", "GATEWAY_TRUSTED_PROXIES"),
		slog.String("header", "X-Forwarded-For"),
	)
}

// clientIP is the TCP peer unless it is a trusted proxy: then the first untrusted entry of
// X-Forwarded-For from the right (anything left of it may be forged). An unparseable entry stops
// the walk at the last trusted hop. The zero Addr means the peer address is unparseable.
func clientIP(remoteAddr string, xff []string, trusted []netip.Prefix) netip.Addr {
	peer, ok := parseIPEntry(remoteAddr)
	if !ok || !inPrefixes(peer, trusted) {
		return peer
	}
	var entries []string
	for _, line := range xff {
		entries = append(entries, strings.Split(line, ",")...)
	}
	last := peer
	for i := len(entries) - 1; i >= 0; i-- {
		entry := strings.Trim(entries[i], " \t")
		if entry == "" {
			continue // empty list items are legal
		}
		a, ok := parseIPEntry(entry)
		if !ok {
			return last
		}
		if !inPrefixes(a, trusted) {
			return a
		}
		last = a
	}
	return last
}

// parseIPEntry parses an address with or without a port and brackets, unmapping IPv4-mapped
// IPv6 and dropping any zone so one client has one key.
func parseIPEntry(s string) (netip.Addr, bool) {
	host := s
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		host = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone(""), true
}

// peerTrusted is the one place that decides whether X-Forwarded-* may be believed.
func peerTrusted(remoteAddr string, trusted []netip.Prefix) bool {
	peer, ok := parseIPEntry(remoteAddr)
	return ok && inPrefixes(peer, trusted)
}

func inPrefixes(a netip.Addr, prefixes []netip.Prefix) bool {
	return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
}
