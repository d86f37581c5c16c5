// cors.go: which browser origins may call the gateway, preflight answers, and the CORS headers
// of every other response.
package main

import (
	"net/http"
	"strconv"
	"strings"
)

// corsPolicy decides which browser origins may call the gateway with credentials.
type corsPolicy struct {
	origins       map[string]struct{}
	previewPrefix string // "https://<project>-" when VercelFrontendURL is a vercel.app project
	// previewSuffix is ".vercel.app", or "-<team>.vercel.app" with CORSVercelTeam: without
	// the team, any Vercel account can deploy a project whose name starts with ours.
	previewSuffix string
}

const vercelAppSuffix = ".vercel.app"

// newCORSPolicy builds the allowed origins of SPEC §4 and §8.
func newCORSPolicy(cfg *Config) *corsPolicy {
	p := &corsPolicy{origins: make(map[string]struct{}), previewSuffix: vercelAppSuffix}
	if cfg.CORSVercelTeam != "" {
		p.previewSuffix = "-" + cfg.CORSVercelTeam + vercelAppSuffix
	}
	if cfg.CORSAllowLocalhost {
		for port := 3000; port <= 3009; port++ {
			p.origins["http://localhost:"+strconv.Itoa(port)] = struct{}{}
		}
	}
	for _, o := range append([]string{cfg.VercelFrontendURL}, cfg.CORSAllowedOrigins...) {
		o = strings.TrimSuffix(strings.TrimSpace(o), "/") // a browser's Origin never ends in '/'
		// "null" is what sandboxed iframes and file:// pages send; allowing it with
		// credentials would let any such page in.
		if o != "" && o != "null" {
			p.origins[o] = struct{}{}
		}
	}

	vercel := strings.TrimSuffix(strings.TrimSpace(cfg.VercelFrontendURL), "/")
	if rest, ok := strings.CutPrefix(vercel, "https://"); ok {
		if project, ok := strings.CutSuffix(rest, vercelAppSuffix); ok && validDNSLabel(project) &&
			len(project) <= 61 { // room for "-" and at least one suffix character
			p.previewPrefix = "https://" + project + "-"
		}
	}
	return p
}

// allowed: a configured origin, or a preview https://<project>-<suffix>.vercel.app with one DNS
// label before .vercel.app. SPEC asks for that shape, although any project "<project>-…" matches.
func (p *corsPolicy) allowed(origin string) bool {
	if _, ok := p.origins[origin]; ok {
		return true
	}
	// previewPrefix starts with "https://", so the label is the whole host before .vercel.app.
	label, ok := strings.CutSuffix(strings.TrimPrefix(origin, "https://"), vercelAppSuffix)
	return p.previewPrefix != "" && ok && strings.HasPrefix(origin, p.previewPrefix) &&
		strings.HasSuffix(origin, p.previewSuffix) && len(label) <= 63 && validDNSLabel(label) &&
		// something between the project and the suffix, the two not overlapping
		len(origin) > len(p.previewPrefix)+len(p.previewSuffix)
}

// validDNSLabel: one or more [a-z0-9-], not starting or ending with '-'. Lower case only:
// browsers send the host lower-cased, so anything else is not a browser's Origin.
func validDNSLabel(s string) bool {
	return s != "" && s[0] != '-' && s[len(s)-1] != '-' && !strings.ContainsFunc(s, func(c rune) bool {
		return !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-')
	})
}

const corsAllowedMethods = "GET, POST, PUT, PATCH, DELETE, OPTIONS"

// handle answers a preflight itself (reporting true): preflights never reach a backend and
// never need a token. Otherwise it notes an allowed Origin for setCORSHeaders.
func (p *corsPolicy) handle(tw *trackingWriter, r *http.Request) bool {
	originValues := r.Header["Origin"]
	if len(originValues) == 0 {
		return false
	}
	origin := ""
	if len(originValues) == 1 { // several Origin lines are not from a browser: allow none
		origin = originValues[0]
	}
	reqMethod, isPreflight := r.Header["Access-Control-Request-Method"]
	if r.Method != http.MethodOptions || !isPreflight {
		if origin != "" && p.allowed(origin) {
			tw.corsOrigin = origin
		}
		return false
	}

	tw.corsDone = true
	h := tw.Header()
	h.Set("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	if origin == "" || !p.allowed(origin) {
		writeError(tw, r, http.StatusBadRequest, codeCORSRejected, "Disallowed CORS origin")
		return true
	}
	if len(reqMethod) != 1 || !corsMethodAllowed(reqMethod[0]) {
		writeError(tw, r, http.StatusBadRequest, codeCORSRejected, "Disallowed CORS method")
		return true
	}
	reqHeaders := r.Header["Access-Control-Request-Headers"]
	if anyListItem(reqHeaders, func(item string) bool { // not a list of RFC 9110 tokens
		return strings.ContainsFunc(item, func(c rune) bool { return c >= 0x80 || !isTokenChar(byte(c)) })
	}) {
		writeError(tw, r, http.StatusBadRequest, codeCORSRejected, "Disallowed CORS headers")
		return true
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Allow-Methods", corsAllowedMethods)
	if allowHeaders := strings.Join(reqHeaders, ", "); strings.Trim(allowHeaders, " \t,") != "" {
		h.Set("Access-Control-Allow-Headers", allowHeaders)
	}
	h.Set("Access-Control-Max-Age", "600")
	tw.WriteHeader(http.StatusNoContent)
	return true
}

// setCORSHeaders replaces any Access-Control-* header: a backend's own would contradict the
// policy or duplicate Access-Control-Allow-Origin, which browsers reject.
func setCORSHeaders(h http.Header, origin string) {
	const prefix = "Access-Control-"
	for k := range h {
		if len(k) > len(prefix) && strings.EqualFold(k[:len(prefix)], prefix) {
			delete(h, k)
		}
	}
	if origin != "" {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Set("Access-Control-Expose-Headers", "X-Request-ID, X-Process-Time")
	}
}

// corsMethodAllowed matches exactly: browsers upper-case the standard methods themselves,
// and "patch" is not PATCH to them either.
func corsMethodAllowed(m string) bool {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodOptions:
		return true
	}
	return false
}

func varyHasOrigin(values []string) bool {
	return anyListItem(values, func(item string) bool { return item == "*" || strings.EqualFold(item, "Origin") })
}

// anyListItem reports whether f holds for a trimmed item of comma-separated header values.
func anyListItem(values []string, f func(item string) bool) bool {
	for _, v := range values {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			if f(strings.Trim(item, " \t")) {
				return true
			}
		}
	}
	return false
}

func isTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
