// jwt.go: HS256 JSON Web Tokens on crypto/hmac: signToken, and the tokenVerifier the gateway
// builds once from its secret.
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Claims is what the gateway reads from and writes into a token.
type Claims struct {
	Subject   string   // sub: user UUID
	Email     string   // email ("" when absent)
	CompanyID string   // company_id ("" when absent or null)
	Name      string   // name ("" when absent)
	Roles     []string // roles (nil when absent)
	ExpiresAt int64    // exp, Unix seconds
	IssuedAt  int64    // iat, Unix seconds (0 when absent)
	NotBefore int64    // nbf, Unix seconds (0 when absent)
	AuthTime  int64    // auth_time, Unix seconds of the original sign-in (0 when absent)
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

	maxJSONDepth   = 32 // nesting bound for values of members we skip; keeps recursion shallow
	maxJSONMembers = 64 // members per header/payload; bounds the quadratic duplicate-name check
	maxTokenRoles  = 64
	// maxNumericDate is 9999-12-31T23:59:59Z; anything later (or negative) is not a real date.
	maxNumericDate = 253402300799
)

// b64url is the only base64 the tokens use: URL alphabet, no padding, and Strict so that
// non-zero trailing bits are refused (otherwise several texts decode to one signature).
var b64url = base64.RawURLEncoding.Strict()

// tokenHeaderSegment is the encoded header of every token signToken issues.
var tokenHeaderSegment = b64url.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// tokenError carries a fixed reason next to its sentinel. Reasons never quote the token,
// so errors are safe to log.
type tokenError struct {
	kind   error
	reason string
}

func (e *tokenError) Error() string { return e.kind.Error() + ": " + e.reason }
func (e *tokenError) Unwrap() error { return e.kind }

func tokenErr(kind error, reason string) error { return &tokenError{kind: kind, reason: reason} }

// signToken returns a compact HS256 JWS of c. UUIDs are written in lower case; company_id,
// name, roles and nbf are written only when set.
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
	if c.ExpiresAt <= 0 || c.ExpiresAt > maxNumericDate || c.IssuedAt < 0 || c.IssuedAt > maxNumericDate ||
		c.NotBefore < 0 || c.NotBefore > maxNumericDate || c.AuthTime < 0 || c.AuthTime > maxNumericDate {
		return "", errors.New("sign token: date out of range")
	}
	if len(c.Roles) > maxTokenRoles {
		return "", errors.New("sign token: too many roles")
	}
	// verifyToken would refuse it (sub and company_id are UUIDs, so ASCII).
	if !utf8.ValidString(c.Email) || !utf8.ValidString(c.Name) ||
		slices.ContainsFunc(c.Roles, func(r string) bool { return !utf8.ValidString(r) }) {
		return "", errors.New("sign token: claim is not valid UTF-8")
	}

	p := appendJSONString(append(make([]byte, 0, 256), `{"sub":`...), strings.ToLower(c.Subject))
	p = appendJSONString(append(p, `,"email":`...), c.Email)
	p = strconv.AppendInt(append(p, `,"exp":`...), c.ExpiresAt, 10)
	p = strconv.AppendInt(append(p, `,"iat":`...), c.IssuedAt, 10)
	if c.NotBefore != 0 {
		p = strconv.AppendInt(append(p, `,"nbf":`...), c.NotBefore, 10)
	}
	if c.AuthTime != 0 {
		p = strconv.AppendInt(append(p, `,"auth_time":`...), c.AuthTime, 10)
	}
	if c.CompanyID != "" {
		p = appendJSONString(append(p, `,"company_id":`...), strings.ToLower(c.CompanyID))
	}
	if c.Name != "" {
		p = appendJSONString(append(p, `,"name":`...), c.Name)
	}
	if len(c.Roles) > 0 {
		p = append(p, `,"roles":[`...)
		for i, r := range c.Roles {
			if i > 0 {
				p = append(p, ',')
			}
			p = appendJSONString(p, r)
		}
		p = append(p, ']')
	}
	p = append(p, '}')

	tok := make([]byte, 0, len(tokenHeaderSegment)+b64url.EncodedLen(len(p))+b64url.EncodedLen(sha256.Size)+2)
	tok = append(tok, tokenHeaderSegment...)
	tok = append(tok, '.')
	tok = b64url.AppendEncode(tok, p)
	mac := hmac.New(sha256.New, secret)
	mac.Write(tok)
	var sum [sha256.Size]byte
	tok = append(tok, '.')
	tok = b64url.AppendEncode(tok, mac.Sum(sum[:0]))
	if len(tok) > maxTokenBytes {
		return "", errors.New("sign token: token too large")
	}
	return string(tok), nil
}

// tokenScratch is verify's working memory: a verification allocates only the claims it returns.
type tokenScratch struct {
	mac     hash.Hash // HMAC-SHA256 keyed with its pool's secret
	sum     [sha256.Size]byte
	msg     [maxTokenBytes]byte // signing input, copied so that mac.Write does not allocate
	dec     [maxTokenBytes]byte // decoded header, then signature, then payload
	members [maxJSONMembers]jsonMember
	roles   [maxTokenRoles]span
}

// tokenVerifier keeps scratch whose HMAC is already keyed with its secret: keying costs seven
// allocations and half a verification.
type tokenVerifier struct {
	secret []byte
	pool   sync.Pool // of *tokenScratch keyed with secret
}

func newTokenVerifier(secret []byte) *tokenVerifier {
	v := &tokenVerifier{secret: bytes.Clone(secret)}
	v.pool.New = func() any { return &tokenScratch{mac: hmac.New(sha256.New, v.secret)} }
	return v
}

// verify bounds the size before any work, refuses any header but HS256 (alg "none", algorithm
// confusion) and ignores key-bearing ones (kid, jwk, jku, ...); the signature is compared in
// constant time before the payload is read.
func (v *tokenVerifier) verify(token string, now time.Time) (Claims, error) {
	if len(token) > maxTokenBytes {
		return Claims{}, tokenErr(errTokenTooLarge, "longer than 8192 bytes")
	}
	headerSeg, rest, ok1 := strings.Cut(token, ".")
	payloadSeg, sigSeg, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(sigSeg, '.') >= 0 {
		return Claims{}, tokenErr(errTokenMalformed, "not three segments")
	}
	if headerSeg == "" || payloadSeg == "" {
		return Claims{}, tokenErr(errTokenMalformed, "empty segment")
	}
	if len(v.secret) == 0 {
		return Claims{}, tokenErr(errTokenSignature, "no secret to verify with")
	}

	s := v.pool.Get().(*tokenScratch)
	defer v.pool.Put(s)

	header, ok := decodeSegment(s.dec[:], headerSeg)
	if !ok {
		return Claims{}, tokenErr(errTokenMalformed, "header is not canonical base64url")
	}
	if err := checkTokenHeader(s, header); err != nil {
		return Claims{}, err
	}

	sig, ok := decodeSegment(s.dec[:], sigSeg)
	if !ok {
		return Claims{}, tokenErr(errTokenMalformed, "signature is not canonical base64url")
	}
	n := copy(s.msg[:], token[:len(token)-len(sigSeg)-1]) // header.payload
	s.mac.Reset()
	s.mac.Write(s.msg[:n])
	if !hmac.Equal(s.mac.Sum(s.sum[:0]), sig) {
		return Claims{}, tokenErr(errTokenSignature, "signature does not match")
	}

	payload, ok := decodeSegment(s.dec[:], payloadSeg)
	if !ok {
		return Claims{}, tokenErr(errTokenMalformed, "payload is not canonical base64url")
	}
	return readTokenClaims(s, payload, now)
}

func decodeSegment(dst []byte, seg string) ([]byte, bool) {
	// encoding/base64 skips CR and LF even in Strict mode; a token has no place for them.
	if strings.IndexByte(seg, '\n') >= 0 || strings.IndexByte(seg, '\r') >= 0 || b64url.DecodedLen(len(seg)) > len(dst) {
		return nil, false
	}
	n, err := b64url.Decode(dst, []byte(seg))
	if err != nil {
		return nil, false
	}
	return dst[:n], true
}

// checkTokenHeader refuses every header but an HS256 one without critical extensions.
func checkTokenHeader(s *tokenScratch, b []byte) error {
	n, end, ok := scanJSONObject(b, skipJSONSpace(b, 0), 1, &s.members)
	if !ok || skipJSONSpace(b, end) != len(b) {
		return tokenErr(errTokenMalformed, "header is not a JSON object")
	}
	var alg, typ *jsonMember
	crit := false
	for i := range s.members[:n] {
		m := &s.members[i]
		switch string(m.name.of(b)) {
		case "alg":
			alg = m
		case "typ":
			typ = m
		case "crit":
			crit = true
		}
	}
	if alg == nil || alg.kind != jsonString || string(alg.val.of(b)) != "HS256" {
		return tokenErr(errTokenAlgorithm, "alg is not HS256")
	}
	if crit {
		return tokenErr(errTokenHeader, "crit is not supported")
	}
	if typ != nil && (typ.kind != jsonString || !isJWTType(typ.val.of(b))) {
		return tokenErr(errTokenHeader, "typ is not JWT")
	}
	return nil
}

// isJWTType reports whether v is "JWT" in any ASCII letter case (no Unicode folding).
func isJWTType(v []byte) bool {
	return len(v) == 3 && v[0]|0x20 == 'j' && v[1]|0x20 == 'w' && v[2]|0x20 == 't'
}

// readTokenClaims interprets an authenticated payload.
func readTokenClaims(s *tokenScratch, b []byte, now time.Time) (Claims, error) {
	n, end, ok := scanJSONObject(b, skipJSONSpace(b, 0), 1, &s.members)
	if !ok || skipJSONSpace(b, end) != len(b) {
		return Claims{}, tokenErr(errTokenMalformed, "payload is not a JSON object")
	}
	var sub, email, company, name, roles, exp, iat, nbf, authTime *jsonMember
	for i := range s.members[:n] {
		m := &s.members[i]
		switch string(m.name.of(b)) {
		case "sub":
			sub = m
		case "email":
			email = m
		case "company_id":
			company = m
		case "name":
			name = m
		case "roles":
			roles = m
		case "exp":
			exp = m
		case "iat":
			iat = m
		case "nbf":
			nbf = m
		case "auth_time":
			authTime = m
		}
	}

	var c Claims
	if sub == nil || sub.kind != jsonString || !isUUID(sub.val.of(b)) {
		return Claims{}, tokenErr(errTokenClaims, "sub is not a UUID")
	}
	if company.present() && (company.kind != jsonString || !isUUID(company.val.of(b))) {
		return Claims{}, tokenErr(errTokenClaims, "company_id is not a UUID")
	}
	if email.present() && email.kind != jsonString {
		return Claims{}, tokenErr(errTokenClaims, "email is not a string")
	}
	if name.present() && name.kind != jsonString {
		return Claims{}, tokenErr(errTokenClaims, "name is not a string")
	}
	nRoles := 0
	if roles.present() {
		if nRoles, ok = scanJSONStringArray(b, roles, &s.roles); !ok {
			return Claims{}, tokenErr(errTokenClaims, "roles is not an array of strings")
		}
	}
	if !exp.present() {
		return Claims{}, tokenErr(errTokenClaims, "exp is missing")
	}
	if c.ExpiresAt, ok = numericDate(b, exp); !ok {
		return Claims{}, tokenErr(errTokenClaims, "exp is not a date")
	}
	if iat.present() {
		if c.IssuedAt, ok = numericDate(b, iat); !ok {
			return Claims{}, tokenErr(errTokenClaims, "iat is not a date")
		}
	}
	if nbf.present() {
		if c.NotBefore, ok = numericDate(b, nbf); !ok {
			return Claims{}, tokenErr(errTokenClaims, "nbf is not a date")
		}
	}
	if authTime.present() {
		if c.AuthTime, ok = numericDate(b, authTime); !ok {
			return Claims{}, tokenErr(errTokenClaims, "auth_time is not a date")
		}
	}

	// Whole seconds are exact here: for an integer t, now < t exactly when now.Unix() < t.
	// Valid while now < exp+leeway; not yet valid while now < nbf-leeway (same for iat).
	nowSec, leeway := now.Unix(), int64(tokenLeeway/time.Second)
	if nowSec >= c.ExpiresAt+leeway {
		return Claims{}, tokenErr(errTokenExpired, "exp is past")
	}
	if nbf.present() && nowSec < c.NotBefore-leeway {
		return Claims{}, tokenErr(errTokenNotYetValid, "nbf is in the future")
	}
	if iat.present() && nowSec < c.IssuedAt-leeway {
		return Claims{}, tokenErr(errTokenNotYetValid, "iat is in the future")
	}

	// Every string claim is cut from one allocation.
	subText := sub.val.of(b)
	lowerASCII(subText)
	var emailText, companyText, nameText []byte
	if email.present() {
		emailText = email.val.of(b)
	}
	if company.present() {
		companyText = company.val.of(b)
		lowerASCII(companyText)
	}
	if name.present() {
		nameText = name.val.of(b)
	}
	size := len(subText) + len(emailText) + len(companyText) + len(nameText)
	for _, r := range s.roles[:nRoles] {
		size += r.end - r.start
	}
	var sb strings.Builder
	sb.Grow(size)
	sb.Write(subText)
	sb.Write(emailText)
	sb.Write(companyText)
	sb.Write(nameText)
	for _, r := range s.roles[:nRoles] {
		sb.Write(r.of(b))
	}
	all := sb.String()
	cut := func(n int) string {
		v := all[:n]
		all = all[n:]
		return v
	}
	c.Subject = cut(len(subText))
	c.Email = cut(len(emailText))
	c.CompanyID = cut(len(companyText))
	c.Name = cut(len(nameText))
	if nRoles > 0 {
		c.Roles = make([]string, nRoles)
		for i, r := range s.roles[:nRoles] {
			c.Roles[i] = cut(r.end - r.start)
		}
	}
	return c, nil
}

// numericDate reads seconds since the epoch within [0, maxNumericDate]. Fractions are
// truncated, which can only bring an expiry forward, by less than a second.
func numericDate(b []byte, m *jsonMember) (int64, bool) {
	if m.kind != jsonNumber {
		return 0, false
	}
	text := m.val.of(b)
	if len(text) <= 12 { // plain integers, as every known issuer writes them
		var v int64
		plain := true
		for _, c := range text {
			if c < '0' || c > '9' {
				plain = false
				break
			}
			v = v*10 + int64(c-'0')
		}
		if plain {
			return v, v <= maxNumericDate
		}
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return 0, false
	}
	return int64(f), true
}

// isUUID reports whether s is a UUID in the canonical 8-4-4-4-12 hex form (either case).
func isUUID[T string | []byte](s T) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if hexDigitValue[c] < 0 {
				return false
			}
		}
	}
	return true
}

func lowerASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
}

// A strict in-place JSON reader for the flat header and payload: encoding/json costs a dozen
// allocations per token. It refuses duplicate names, invalid UTF-8, lone surrogates, deep nesting.

const (
	jsonString byte = iota + 1
	jsonNumber
	jsonBool
	jsonNull
	jsonArray
	jsonObject
)

type span struct{ start, end int }

func (s span) of(b []byte) []byte { return b[s.start:s.end] }

// jsonMember is one top-level member: names and string values decoded in place, anything else
// as its (validated) text.
type jsonMember struct {
	name span
	kind byte
	val  span
}

// present reports whether the member is there and not null (null means absent).
func (m *jsonMember) present() bool { return m != nil && m.kind != jsonNull }

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanJSONObject reads the object at b[i]: its member count and the index past it. With ms
// set it records the members (names unique) and decodes their strings; without, it only validates.
func scanJSONObject(b []byte, i, depth int, ms *[maxJSONMembers]jsonMember) (n, next int, ok bool) {
	if depth > maxJSONDepth || i >= len(b) || b[i] != '{' {
		return 0, 0, false
	}
	decode := ms != nil
	i = skipJSONSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return 0, i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, 0, false
		}
		nameEnd, after, ok := scanJSONString(b, i, decode)
		if !ok {
			return 0, 0, false
		}
		name := span{i + 1, nameEnd}
		i = skipJSONSpace(b, after)
		if i >= len(b) || b[i] != ':' {
			return 0, 0, false
		}
		i = skipJSONSpace(b, i+1)
		kind, valEnd, after, ok := scanJSONValue(b, i, depth, decode)
		if !ok {
			return 0, 0, false
		}
		if decode {
			if n == maxJSONMembers {
				return 0, 0, false
			}
			for _, o := range ms[:n] {
				if bytes.Equal(o.name.of(b), name.of(b)) {
					return 0, 0, false
				}
			}
			start := i
			if kind == jsonString {
				start++
			}
			ms[n] = jsonMember{name: name, kind: kind, val: span{start, valEnd}}
		}
		n++
		i = skipJSONSpace(b, after)
		if i < len(b) && b[i] == ',' {
			i = skipJSONSpace(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' {
			return n, i + 1, true
		}
		return 0, 0, false
	}
}

// scanJSONArray validates the array starting at b[i] and returns the index just past it.
func scanJSONArray(b []byte, i, depth int) (next int, ok bool) {
	if depth > maxJSONDepth || i >= len(b) || b[i] != '[' {
		return 0, false
	}
	i = skipJSONSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	for {
		_, _, after, ok := scanJSONValue(b, i, depth, false)
		if !ok {
			return 0, false
		}
		var more bool
		i, more, ok = afterArrayItem(b, after)
		if !ok || !more {
			return i, ok
		}
	}
}

// afterArrayItem reads what follows an array element at b[i]: a comma (more is true, next is
// the following element) or the closing bracket (next is just past it).
func afterArrayItem(b []byte, i int) (next int, more, ok bool) {
	i = skipJSONSpace(b, i)
	switch {
	case i < len(b) && b[i] == ',':
		return skipJSONSpace(b, i+1), true, true
	case i < len(b) && b[i] == ']':
		return i + 1, false, true
	}
	return 0, false, false
}

// scanJSONStringArray decodes in place the strings of the array member m (at most maxTokenRoles).
func scanJSONStringArray(b []byte, m *jsonMember, out *[maxTokenRoles]span) (int, bool) {
	if m.kind != jsonArray {
		return 0, false
	}
	i := skipJSONSpace(b, m.val.start+1)
	if i < len(b) && b[i] == ']' {
		return 0, true
	}
	for n := 0; n < maxTokenRoles; n++ {
		if i >= len(b) || b[i] != '"' {
			return 0, false
		}
		end, after, ok := scanJSONString(b, i, true)
		if !ok {
			return 0, false
		}
		out[n] = span{i + 1, end}
		var more bool
		i, more, ok = afterArrayItem(b, after)
		if !ok {
			return 0, false
		}
		if !more {
			return n + 1, true
		}
	}
	return 0, false
}

// scanJSONValue reads the value starting at b[i]. For a string, end is the end of its
// decoded text (meaningful only with decode); for anything else end == next.
func scanJSONValue(b []byte, i, depth int, decode bool) (kind byte, end, next int, ok bool) {
	if i >= len(b) {
		return 0, 0, 0, false
	}
	switch c := b[i]; {
	case c == '"':
		end, next, ok = scanJSONString(b, i, decode)
		return jsonString, end, next, ok
	case c == '{':
		_, next, ok = scanJSONObject(b, i, depth+1, nil)
		return jsonObject, next, next, ok
	case c == '[':
		next, ok = scanJSONArray(b, i, depth+1)
		return jsonArray, next, next, ok
	case c == 't':
		return jsonBool, i + 4, i + 4, bytes.HasPrefix(b[i:], []byte("true"))
	case c == 'f':
		return jsonBool, i + 5, i + 5, bytes.HasPrefix(b[i:], []byte("false"))
	case c == 'n':
		return jsonNull, i + 4, i + 4, bytes.HasPrefix(b[i:], []byte("null"))
	case c == '-' || '0' <= c && c <= '9':
		next, ok = scanJSONNumber(b, i)
		return jsonNumber, next, next, ok
	}
	return 0, 0, 0, false
}

// scanJSONNumber reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? starting at b[i].
func scanJSONNumber(b []byte, i int) (next int, ok bool) {
	digits := func(i int) (int, bool) {
		start := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i, i > start
	}
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i, _ = digits(i)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		if i, ok = digits(i + 1); !ok {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i, ok = digits(i); !ok {
			return 0, false
		}
	}
	return i, true
}

// scanJSONString reads the string at b[i] == '"'; with decode it unescapes it in place into
// b[i+1:end], which is safe since unescaping never lengthens text. Invalid UTF-8 and lone
// surrogates are refused (encoding/json would replace them with U+FFFD).
func scanJSONString(b []byte, i int, decode bool) (end, next int, ok bool) {
	// Until the first escape nothing moves, so plain ASCII is only skipped over.
	r := i + 1
	for r < len(b) && jsonPlainASCII[b[r]] {
		r++
	}
	w := r
	for r < len(b) {
		c := b[r]
		switch {
		case jsonPlainASCII[c]:
			if decode {
				b[w] = c
				w++
			}
			r++
		case c == '"':
			return w, r + 1, true
		case c < 0x20:
			return 0, 0, false
		case c == '\\':
			if r+1 >= len(b) {
				return 0, 0, false
			}
			var rn rune
			switch b[r+1] {
			case '"', '\\', '/':
				rn = rune(b[r+1])
			case 'b':
				rn = '\b'
			case 'f':
				rn = '\f'
			case 'n':
				rn = '\n'
			case 'r':
				rn = '\r'
			case 't':
				rn = '\t'
			case 'u':
				if rn = hex4(b, r+2); rn < 0 {
					return 0, 0, false
				}
				if utf16.IsSurrogate(rn) {
					lo := rune(-1)
					if rn < 0xdc00 && r+7 < len(b) && b[r+6] == '\\' && b[r+7] == 'u' {
						lo = hex4(b, r+8)
					}
					if lo < 0xdc00 || lo > 0xdfff {
						return 0, 0, false
					}
					rn = utf16.DecodeRune(rn, lo)
					r += 6
				}
				r += 4
			default:
				return 0, 0, false
			}
			r += 2
			if decode {
				w += utf8.EncodeRune(b[w:], rn)
			}
		default:
			rn, size := utf8.DecodeRune(b[r:])
			if rn == utf8.RuneError && size == 1 {
				return 0, 0, false
			}
			if decode {
				w += copy(b[w:], b[r:r+size])
			}
			r += size
		}
	}
	return 0, 0, false
}

// hex4 reads four hex digits at b[i:], or returns -1.
func hex4(b []byte, i int) rune {
	if i+4 > len(b) {
		return -1
	}
	var v rune
	for _, c := range b[i : i+4] {
		d := hexDigitValue[c]
		if d < 0 {
			return -1
		}
		v = v<<4 | rune(d)
	}
	return v
}

// jsonPlainASCII marks the bytes a JSON string holds as they are.
var jsonPlainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// hexDigitValue maps hex digits to their value, anything else to -1. Not init: package-level
// initialisers calling isUUID must see it filled.
var hexDigitValue = func() (t [256]int8) {
	for c := range t {
		t[c] = -1
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = int8(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c], t[c-'a'+'A'] = int8(c-'a'+10), int8(c-'a'+10)
	}
	return t
}()
