// jwt.go: HS256 JSON Web Tokens on crypto/hmac: signToken, and the tokenVerifier the gateway
// builds once from its secret.
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Claims is what the gateway reads from and writes into a token; absent or null members are
// zero, dates Unix seconds.
type Claims struct {
	Subject   string // sub: user UUID
	Email     string
	CompanyID string // company_id
	Name      string
	Roles     []string
	ExpiresAt int64 // exp
	IssuedAt  int64 // iat
	NotBefore int64 // nbf
	AuthTime  int64 // auth_time: the original sign-in
}

// Verification failures; verifyToken wraps exactly one of them.
var (
	errTokenMalformed   = errors.New("malformed token")
	errTokenTooLarge    = errors.New("token too large")
	errTokenAlgorithm   = errors.New("unsupported token algorithm")
	errTokenHeader      = errors.New("unsupported token header")
	errTokenSignature   = errors.New("invalid token signature")
	errTokenExpired     = errors.New("token expired")
	errTokenNotYetValid = errors.New("token not yet valid")
	errTokenClaims      = errors.New("invalid token claims")
)

const (
	// maxTokenBytes bounds all work done on an untrusted token; real tokens are ~300 bytes.
	maxTokenBytes = 8192
	// tokenLeeway absorbs clock skew between the gateway and whoever issued the token.
	tokenLeeway = 30 * time.Second

	maxJSONDepth   = 32 // counting the header or payload object itself
	maxJSONMembers = 64
	maxTokenRoles  = 64
	// maxNumericDate is 9999-12-31T23:59:59Z; anything later (or negative) is not a real date.
	maxNumericDate = 253402300799
)

// b64url is the only base64 the tokens use: URL alphabet, no padding, and Strict so that
// non-zero trailing bits are refused (otherwise several texts decode to one signature).
var b64url = base64.RawURLEncoding.Strict()

var tokenHeaderSegment = b64url.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// tokenErr wraps kind with a fixed reason: never quoting the token, errors are safe to log.
func tokenErr(kind error, reason string) error { return fmt.Errorf("%w: %s", kind, reason) }

// signToken returns a compact HS256 JWS of c. UUIDs are written in lower case; company_id,
// name, roles, nbf and auth_time are written only when set.
func signToken(secret []byte, c Claims) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("sign token: empty secret")
	}
	if !isUUID(c.Subject) {
		return "", errors.New("sign token: subject is not a UUID")
	}
	if c.CompanyID != "" && !isUUID(c.CompanyID) {
		return "", errors.New("sign token: company_id is not a UUID")
	}
	for _, d := range []int64{c.ExpiresAt, c.IssuedAt, c.NotBefore, c.AuthTime} {
		if d < 0 || d > maxNumericDate {
			return "", errors.New("sign token: date out of range")
		}
	}
	if c.ExpiresAt == 0 {
		return "", errors.New("sign token: no expiry")
	}
	if len(c.Roles) > maxTokenRoles {
		return "", errors.New("sign token: too many roles")
	}
	// encoding/json would write invalid UTF-8 as U+FFFD: the token would not say what the
	// caller asked for.
	for _, s := range append([]string{c.Email, c.Name}, c.Roles...) {
		if !utf8.ValidString(s) {
			return "", errors.New("sign token: claim is not valid UTF-8")
		}
	}
	payload, err := json.Marshal(struct {
		Sub       string   `json:"sub"`
		Email     string   `json:"email"`
		Exp       int64    `json:"exp"`
		Iat       int64    `json:"iat"`
		Nbf       int64    `json:"nbf,omitempty"`
		AuthTime  int64    `json:"auth_time,omitempty"`
		CompanyID string   `json:"company_id,omitempty"`
		Name      string   `json:"name,omitempty"`
		Roles     []string `json:"roles,omitempty"`
	}{strings.ToLower(c.Subject), c.Email, c.ExpiresAt, c.IssuedAt, c.NotBefore, c.AuthTime,
		strings.ToLower(c.CompanyID), c.Name, c.Roles})
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	signingInput := tokenHeaderSegment + "." + b64url.EncodeToString(payload)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signingInput))
	tok := signingInput + "." + b64url.EncodeToString(mac.Sum(nil))
	if len(tok) > maxTokenBytes {
		return "", errors.New("sign token: token too large")
	}
	return tok, nil
}

// tokenVerifier checks tokens against the one secret the gateway was configured with.
type tokenVerifier struct{ secret []byte }

func newTokenVerifier(secret []byte) *tokenVerifier {
	return &tokenVerifier{secret: bytes.Clone(secret)}
}

// verifyToken checks one token; the gateway keeps its own verifier instead.
func verifyToken(secret []byte, token string, now time.Time) (Claims, error) {
	return newTokenVerifier(secret).verify(token, now)
}

// verify checks token at time now and returns its claims. The order matters: the size bound
// before any work; the header only to refuse anything but HS256 (alg "none", algorithm
// confusion) and critical extensions; the signature in constant time before any byte of the
// payload is read. Key-bearing headers (kid, jwk, jku, x5u, x5c) are ignored: the only key is
// the secret.
func (v *tokenVerifier) verify(token string, now time.Time) (Claims, error) {
	if len(token) > maxTokenBytes {
		return Claims{}, tokenErr(errTokenTooLarge, "longer than 8192 bytes")
	}
	headerSeg, rest, ok1 := strings.Cut(token, ".")
	payloadSeg, sigSeg, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sigSeg, ".") {
		return Claims{}, tokenErr(errTokenMalformed, "not three segments")
	}
	if headerSeg == "" || payloadSeg == "" {
		return Claims{}, tokenErr(errTokenMalformed, "empty segment")
	}
	if len(v.secret) == 0 {
		return Claims{}, tokenErr(errTokenSignature, "no secret to verify with")
	}

	if header, ok := decodeSegment(headerSeg); !ok {
		return Claims{}, tokenErr(errTokenMalformed, "header is not canonical base64url")
	} else if err := checkTokenHeader(header); err != nil {
		return Claims{}, err
	}
	sig, ok := decodeSegment(sigSeg)
	if !ok {
		return Claims{}, tokenErr(errTokenMalformed, "signature is not canonical base64url")
	}
	mac := hmac.New(sha256.New, v.secret)
	mac.Write([]byte(token[:len(headerSeg)+1+len(payloadSeg)]))
	if !hmac.Equal(mac.Sum(nil), sig) {
		return Claims{}, tokenErr(errTokenSignature, "signature does not match")
	}

	payload, ok := decodeSegment(payloadSeg)
	if !ok {
		return Claims{}, tokenErr(errTokenMalformed, "payload is not canonical base64url")
	}
	return readTokenClaims(payload, now)
}

// decodeSegment decodes one unpadded base64url segment. encoding/base64 skips CR and LF even
// in Strict mode; a token has no place for them.
func decodeSegment(seg string) ([]byte, bool) {
	if strings.ContainsAny(seg, "\r\n") {
		return nil, false
	}
	b, err := b64url.DecodeString(seg)
	return b, err == nil
}

// checkTokenHeader refuses every header but an HS256 one without critical extensions.
func checkTokenHeader(b []byte) error {
	h, ok := decodeJSONObject(b)
	if !ok {
		return tokenErr(errTokenMalformed, "header is not a JSON object")
	}
	if alg, ok := stringMember(h, "alg"); !ok || alg == nil || *alg != "HS256" {
		return tokenErr(errTokenAlgorithm, "alg is not HS256")
	}
	if _, crit := h["crit"]; crit {
		return tokenErr(errTokenHeader, "crit is not supported")
	}
	if _, present := h["typ"]; present {
		// "JWT" in any ASCII letter case; three bytes rule out Unicode folding.
		if typ, ok := stringMember(h, "typ"); !ok || typ == nil || len(*typ) != 3 || !strings.EqualFold(*typ, "JWT") {
			return tokenErr(errTokenHeader, "typ is not JWT")
		}
	}
	return nil
}

// readTokenClaims interprets an authenticated payload; a null member counts as absent.
func readTokenClaims(b []byte, now time.Time) (Claims, error) {
	p, ok := decodeJSONObject(b)
	if !ok {
		return Claims{}, tokenErr(errTokenMalformed, "payload is not a JSON object")
	}
	sub, ok := stringMember(p, "sub")
	if !ok || sub == nil || !isUUID(*sub) {
		return Claims{}, tokenErr(errTokenClaims, "sub is not a UUID")
	}
	c := Claims{Subject: strings.ToLower(*sub)}
	company, ok := stringMember(p, "company_id")
	if !ok || company != nil && !isUUID(*company) {
		return Claims{}, tokenErr(errTokenClaims, "company_id is not a UUID")
	}
	if company != nil {
		c.CompanyID = strings.ToLower(*company)
	}
	for _, m := range []struct {
		name string
		dst  *string
	}{{"email", &c.Email}, {"name", &c.Name}} {
		s, ok := stringMember(p, m.name)
		if !ok {
			return Claims{}, tokenErr(errTokenClaims, m.name+" is not a string")
		}
		if s != nil {
			*m.dst = *s
		}
	}
	if raw, found := p["roles"]; found {
		var roles []*string // a pointer per element, so that a null role is refused
		if json.Unmarshal(raw, &roles) != nil || len(roles) > maxTokenRoles || slices.Contains(roles, nil) {
			return Claims{}, tokenErr(errTokenClaims, "roles is not an array of strings")
		}
		for _, r := range roles {
			c.Roles = append(c.Roles, *r)
		}
	}
	if raw := p["exp"]; raw == nil || string(raw) == "null" {
		return Claims{}, tokenErr(errTokenClaims, "exp is missing")
	}
	for _, d := range []struct {
		name string
		dst  *int64
	}{{"exp", &c.ExpiresAt}, {"iat", &c.IssuedAt}, {"nbf", &c.NotBefore}, {"auth_time", &c.AuthTime}} {
		var ok bool
		if *d.dst, ok = numericDate(p[d.name]); !ok {
			return Claims{}, tokenErr(errTokenClaims, d.name+" is not a date")
		}
	}

	// Whole seconds are exact here: for an integer t, now < t exactly when now.Unix() < t.
	// An absent nbf or iat is 0, which no clock after 1970 is before.
	nowSec, leeway := now.Unix(), int64(tokenLeeway/time.Second)
	if nowSec >= c.ExpiresAt+leeway {
		return Claims{}, tokenErr(errTokenExpired, "exp is past")
	}
	if nowSec < c.NotBefore-leeway {
		return Claims{}, tokenErr(errTokenNotYetValid, "nbf is in the future")
	}
	if nowSec < c.IssuedAt-leeway {
		return Claims{}, tokenErr(errTokenNotYetValid, "iat is in the future")
	}
	return c, nil
}

// stringMember reads member name as a string: nil when absent or null, !ok when not a string.
func stringMember(m map[string]json.RawMessage, name string) (s *string, ok bool) {
	raw, found := m[name]
	if !found {
		return nil, true
	}
	return s, json.Unmarshal(raw, &s) == nil
}

// numericDate reads a NumericDate in [0, maxNumericDate]; absent or null is 0. Fractions are
// truncated, which can only bring an expiry forward.
func numericDate(raw json.RawMessage) (int64, bool) {
	if raw == nil || string(raw) == "null" {
		return 0, true
	}
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') { // a number, not a string holding one
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return int64(f), err == nil && f >= 0 && f <= maxNumericDate
}

// decodeJSONObject decodes an object into its members' raw text. encoding/json would take the
// last of duplicate names ({"alg":"HS256","alg":"none"} could read differently elsewhere),
// replace invalid UTF-8 and lone surrogates, and nest 10 000 deep: here each is refused.
func decodeJSONObject(b []byte) (map[string]json.RawMessage, bool) {
	if !json.Valid(b) || !utf8.Valid(b) || !plainJSONText(b) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	m := make(map[string]json.RawMessage)
	for dec.More() {
		t, err := dec.Token()
		name, isName := t.(string)
		if _, dup := m[name]; err != nil || !isName || dup || len(m) == maxJSONMembers {
			return nil, false
		}
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return nil, false
		}
		m[name] = v
	}
	return m, true // json.Valid has seen the closing brace and nothing after it
}

// plainJSONText reports whether valid JSON text b nests at most maxJSONDepth deep and
// escapes surrogates only in pairs.
func plainJSONText(b []byte) bool {
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inString && c == '\\':
			if b[i+1] == 'u' {
				r := hex4(b[i+2:])
				if utf16.IsSurrogate(r) {
					if r >= 0xdc00 || i+12 > len(b) || b[i+6] != '\\' || b[i+7] != 'u' ||
						utf16.DecodeRune(r, hex4(b[i+8:])) == utf8.RuneError {
						return false
					}
					i += 6
				}
				i += 4
			}
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			if depth++; depth > maxJSONDepth {
				return false
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return true
}

func hex4(b []byte) rune {
	v, _ := strconv.ParseUint(string(b[:4]), 16, 16)
	return rune(v)
}

// isUUID reports whether s is a UUID in the canonical 8-4-4-4-12 hex form (either case).
func isUUID(s string) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	_, err := hex.DecodeString(s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:])
	return err == nil
}
