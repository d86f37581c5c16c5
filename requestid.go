// requestid.go: the request id and the W3C trace context every request carries.
package main

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"strings"
)

const hdrRequestID = "X-Request-Id"

// setRequestIDs keeps the client's X-Request-ID and trace id when valid, else makes new ones
// (a new trace sampled by tr's ratio), with a new span id for this hop.
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

// randomHex is n random non-zero 64-bit words as 16 hex digits each. math/rand/v2's
// ChaCha8 source is unpredictable enough for request and trace ids.
func randomHex(n int) string {
	b := make([]byte, 8*n)
	for i := range n {
		binary.BigEndian.PutUint64(b[8*i:], rand.Uint64()|1) // never all zeros, which W3C forbids for ids
	}
	return hex.EncodeToString(b)
}

// validRequestID accepts 1–128 visible ASCII characters: nothing that could split a header
// or a log line.
func validRequestID(s string) bool {
	return len(s) > 0 && len(s) <= 128 && !strings.ContainsFunc(s, func(c rune) bool { return c < 0x21 || c > 0x7e })
}

const traceParentLen = 55

// parseTraceParent parses a W3C traceparent. Version 00 is exactly traceParentLen long; a
// later version may append "-…" fields. Version ff, upper-case hex and zero ids are invalid.
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
	return !strings.ContainsFunc(s, func(c rune) bool { return !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') })
}
