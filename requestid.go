// requestid.go: the request id and the W3C trace context every request carries.
package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
)

// hdrRequestID is the request id header in canonical form, as the header map keys it.
const hdrRequestID = "X-Request-Id"

// setRequestIDs sets info's request id and trace context from r: the client's X-Request-ID
// when valid, else a generated one; the client's trace id when its traceparent is valid, else
// a new trace (sampled by tr's ratio when tracing); and a new span id for this hop.
func setRequestIDs(info *requestInfo, r *http.Request, tr *tracer) {
	traceID, flags := "", "01"
	if tp := r.Header["Traceparent"]; len(tp) == 1 { // several traceparent lines are invalid
		if id, _, fl, ok := parseTraceParent(tp[0]); ok {
			traceID, flags = id, fl
			info.KeepTraceState = true
		}
	}
	if traceID == "" {
		traceID = randomHex(2)
		if tr != nil {
			flags = tr.rootFlags() // a trace this gateway starts is sampled by its ratio
		}
	}
	info.TraceID = traceID
	info.TraceParent = "00-" + traceID + "-" + randomHex(1) + "-" + flags // this hop's span id

	if v := r.Header["X-Request-Id"]; len(v) == 1 && validRequestID(v[0]) {
		info.ID = v[0]
	} else {
		info.ID = randomHex(2)
	}
}

// randomHex returns n random non-zero 64-bit words as 16 lower-case hex digits each.
func randomHex(n int) string { return string(appendRandomHex(nil, n)) }

// appendRandomHex appends n random non-zero 64-bit words as 16 lower-case hex digits each.
// math/rand/v2's global source is ChaCha8 seeded by the runtime: unpredictable enough for
// request and trace IDs, and it needs no system call or lock.
func appendRandomHex(b []byte, n int) []byte {
	for range n {
		b = fmt.Appendf(b, "%016x", rand.Uint64()|1) // never all zeros, which W3C forbids for ids
	}
	return b
}

// validRequestID accepts 1–128 visible ASCII characters (0x21–0x7E): enough for any UUID or
// tracing ID, nothing that could split a header or a log line.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// traceParentLen is the length of a version-00 traceparent.
const traceParentLen = 55

// parseTraceParent parses a W3C Trace Context (level 1) traceparent header
// "version-traceid-parentid-flags". Version 00 must be exactly 55 characters; a later
// version may append "-…" fields, which are ignored. Version ff, upper-case hex and all-zero
// ids are invalid.
func parseTraceParent(s string) (traceID, parentID, flags string, ok bool) {
	if len(s) < traceParentLen || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return "", "", "", false
	}
	version := s[:2]
	if !isLowerHex(version) || version == "ff" {
		return "", "", "", false
	}
	if len(s) > traceParentLen && (version == "00" || s[traceParentLen] != '-') {
		return "", "", "", false
	}
	traceID, parentID, flags = s[3:35], s[36:52], s[53:55]
	if !isLowerHex(traceID) || strings.Trim(traceID, "0") == "" || !isLowerHex(parentID) ||
		strings.Trim(parentID, "0") == "" || !isLowerHex(flags) {
		return "", "", "", false
	}
	return traceID, parentID, flags, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
