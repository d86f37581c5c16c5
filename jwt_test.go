// jwt_test.go: HS256 token rules, interoperability vectors, fuzzing and benchmarks.
package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testTokenSecret = []byte("gateway-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz")
	otherSecret     = []byte("someone-elses-secret-0123456789-abcdefghijklmnopqrstuvwxyz")
	testNow         = time.Unix(1_750_000_000, 0)
)

const (
	testSub     = "6f1c2b1e-3c2a-4e7b-9a51-2f0a8f1d2c33"
	testCompany = "0b6b8c8e-1d2f-4a3b-8c9d-0e1f2a3b4c5d"
	hs256Header = `{"alg":"HS256","typ":"JWT"}`

	b64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)

var tokenSentinels = []error{
	errTokenMalformed, errTokenTooLarge, errTokenAlgorithm, errTokenHeader,
	errTokenSignature, errTokenExpired, errTokenNotYetValid, errTokenClaims,
}

func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func hs256(secret []byte, signingInput string) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signingInput))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// signSegments signs already-encoded segments, so that malformed encodings still carry a
// valid signature and are refused for what they are, not for a wrong signature.
func signSegments(secret []byte, headerSeg, payloadSeg string) string {
	return headerSeg + "." + payloadSeg + "." + hs256(secret, headerSeg+"."+payloadSeg)
}

// signJSON signs arbitrary header and payload JSON text.
func signJSON(secret []byte, header, payload string) string {
	return signSegments(secret, enc(header), enc(payload))
}

// payloadJSON is a valid payload at testNow with the given members appended or, when
// the name is already there, replaced (a nil value removes the member).
func payloadJSON(overrides ...any) string {
	type kv struct {
		k string
		v any
	}
	members := []kv{{"sub", `"` + testSub + `"`}, {"email", `"ana@example.com"`},
		{"exp", fmt.Sprint(testNow.Unix() + 3600)}, {"iat", fmt.Sprint(testNow.Unix() - 60)}}
	for i := 0; i < len(overrides); i += 2 {
		k, v := overrides[i].(string), overrides[i+1]
		replaced := false
		for j := range members {
			if members[j].k == k {
				members[j].v, replaced = v, true
			}
		}
		if !replaced {
			members = append(members, kv{k, v})
		}
	}
	var sb strings.Builder
	sb.WriteByte('{')
	first := true
	for _, m := range members {
		if m.v == nil {
			continue
		}
		if !first {
			sb.WriteByte(',')
		}
		first = false
		fmt.Fprintf(&sb, "%q:%v", m.k, m.v)
	}
	sb.WriteByte('}')
	return sb.String()
}

func unixJSON(t time.Time) string { return fmt.Sprint(t.Unix()) }

type tokenCase struct {
	name  string
	token string
	want  error // nil: accepted
}

// tokenCases is every rule of verifyToken, as crafted tokens verified at testNow with
// testTokenSecret.
func tokenCases(tb testing.TB) []tokenCase {
	good := signJSON(testTokenSecret, hs256Header, payloadJSON())
	goodParts := strings.Split(good, ".")
	otherPayload := enc(payloadJSON("sub", `"11111111-2222-4333-8444-555555555555"`))
	zeroSig := base64.RawURLEncoding.EncodeToString(make([]byte, 32))

	// The last character of a 32-byte signature carries 4 bits, the low 2 of which must be
	// zero; setting them decodes to the same bytes under a lenient decoder.
	nonCanonicalSig := goodParts[2]
	nonCanonicalSig = nonCanonicalSig[:42] + string(b64URLAlphabet[strings.IndexByte(b64URLAlphabet, nonCanonicalSig[42])|1])
	if lenient, _ := base64.RawURLEncoding.DecodeString(nonCanonicalSig); !hmac.Equal(lenient, mustDecode(tb, goodParts[2])) {
		tb.Fatal("non-canonical signature does not decode to the real one; the case would prove nothing")
	}
	// A payload whose encoding ends in a character with non-zero trailing bits, signed as is.
	var payloadOf2Mod3 string
	for n := 1; len(payloadOf2Mod3)%3 != 2; n++ {
		payloadOf2Mod3 = payloadJSON("pad", `"`+strings.Repeat("x", n)+`"`)
	}
	ncPayload := enc(payloadOf2Mod3)
	ncPayload = ncPayload[:len(ncPayload)-1] + string(b64URLAlphabet[strings.IndexByte(b64URLAlphabet, ncPayload[len(ncPayload)-1])|1])
	// A payload whose standard-alphabet encoding uses '+' or '/'.
	var stdPayload string
	for n := 0; !strings.ContainsAny(stdPayload, "+/"); n++ {
		stdPayload = base64.RawStdEncoding.EncodeToString([]byte(payloadJSON("name", `"`+strings.Repeat("?", n)+`>>>???"`)))
	}

	attackerJWK := `{"kty":"oct","k":"` + enc(string(otherSecret)) + `"}`
	deep := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	shallow := strings.Repeat(`{"a":[`, 10) + strings.Repeat(`]}`, 10)

	return []tokenCase{
		{"valid token", good, nil},
		{"lower-case typ accepted", signJSON(testTokenSecret, `{"alg":"HS256","typ":"jwt"}`, payloadJSON()), nil},
		{"no typ accepted", signJSON(testTokenSecret, `{"alg":"HS256"}`, payloadJSON()), nil},
		{"whitespace and escapes accepted", signJSON(testTokenSecret, " {\r\n \"\\u0061lg\" : \"HS\\u0032\\u00356\" }\t", payloadJSON("name", `"Ana \"Ñ\" \ud83d\ude00\n"`)), nil},

		{"too large before any parsing", strings.Repeat("a", maxTokenBytes+1), errTokenTooLarge},
		{"too large though signed", signJSON(testTokenSecret, hs256Header, payloadJSON("name", `"`+strings.Repeat("n", maxTokenBytes)+`"`)), errTokenTooLarge},

		{"alg none", enc(`{"alg":"none","typ":"JWT"}`) + "." + goodParts[1] + ".", errTokenAlgorithm},
		{"alg NONE", enc(`{"alg":"NONE"}`) + "." + goodParts[1] + ".", errTokenAlgorithm},
		{"alg nOnE", enc(`{"alg":"nOnE"}`) + "." + goodParts[1] + ".", errTokenAlgorithm},
		{"alg None with a signature", signJSON(testTokenSecret, `{"alg":"None"}`, payloadJSON()), errTokenAlgorithm},
		{"alg HS384", signJSON(testTokenSecret, `{"alg":"HS384","typ":"JWT"}`, payloadJSON()), errTokenAlgorithm},
		{"alg RS256", signJSON(testTokenSecret, `{"alg":"RS256","typ":"JWT"}`, payloadJSON()), errTokenAlgorithm},
		{"alg lower-case hs256", signJSON(testTokenSecret, `{"alg":"hs256"}`, payloadJSON()), errTokenAlgorithm},
		{"alg missing", signJSON(testTokenSecret, `{"typ":"JWT"}`, payloadJSON()), errTokenAlgorithm},
		{"alg not a string", signJSON(testTokenSecret, `{"alg":256}`, payloadJSON()), errTokenAlgorithm},
		{"alg null", signJSON(testTokenSecret, `{"alg":null}`, payloadJSON()), errTokenAlgorithm},
		{"alg array", signJSON(testTokenSecret, `{"alg":["HS256"]}`, payloadJSON()), errTokenAlgorithm},

		{"crit present", signJSON(testTokenSecret, `{"alg":"HS256","crit":["exp"],"exp":1}`, payloadJSON()), errTokenHeader},
		{"crit empty", signJSON(testTokenSecret, `{"alg":"HS256","crit":[]}`, payloadJSON()), errTokenHeader},
		{"typ JOSE+JSON", signJSON(testTokenSecret, `{"alg":"HS256","typ":"JOSE+JSON"}`, payloadJSON()), errTokenHeader},
		{"typ not a string", signJSON(testTokenSecret, `{"alg":"HS256","typ":1}`, payloadJSON()), errTokenHeader},

		{"kid pointing elsewhere still verified with the secret", signJSON(testTokenSecret, `{"alg":"HS256","kid":"../../attacker"}`, payloadJSON()), nil},
		{"kid pointing elsewhere signed with its key", signJSON(otherSecret, `{"alg":"HS256","kid":"attacker"}`, payloadJSON()), errTokenSignature},
		{"jwk carrying the signing key", signJSON(otherSecret, `{"alg":"HS256","jwk":`+attackerJWK+`}`, payloadJSON()), errTokenSignature},
		{"jwk header still verified with the secret", signJSON(testTokenSecret, `{"alg":"HS256","jwk":`+attackerJWK+`}`, payloadJSON()), nil},
		{"jku and x5u signed elsewhere", signJSON(otherSecret, `{"alg":"HS256","jku":"https://evil.example/k","x5u":"https://evil.example/c"}`, payloadJSON()), errTokenSignature},
		{"x5c signed elsewhere", signJSON(otherSecret, `{"alg":"HS256","x5c":["MIIB"]}`, payloadJSON()), errTokenSignature},

		{"tampered payload", goodParts[0] + "." + otherPayload + "." + goodParts[2], errTokenSignature},
		{"all-zero signature", goodParts[0] + "." + goodParts[1] + "." + zeroSig, errTokenSignature},
		{"empty signature", goodParts[0] + "." + goodParts[1] + ".", errTokenSignature},
		{"truncated signature", goodParts[0] + "." + goodParts[1] + "." + base64.RawURLEncoding.EncodeToString(mustDecode(tb, goodParts[2])[:16]), errTokenSignature},
		{"signature of another secret", signJSON(otherSecret, hs256Header, payloadJSON()), errTokenSignature},

		{"empty token", "", errTokenMalformed},
		{"one segment", goodParts[0], errTokenMalformed},
		{"two segments", goodParts[0] + "." + goodParts[1], errTokenMalformed},
		{"four segments", good + "." + goodParts[2], errTokenMalformed},
		{"empty segments", "..", errTokenMalformed},
		{"empty header", "." + goodParts[1] + "." + goodParts[2], errTokenMalformed},
		{"empty payload", goodParts[0] + ".." + goodParts[2], errTokenMalformed},
		{"padded signature", good + "=", errTokenMalformed},
		{"padded payload", signSegments(testTokenSecret, goodParts[0], base64.URLEncoding.EncodeToString([]byte(payloadOf2Mod3))), errTokenMalformed},
		{"padded header", signSegments(testTokenSecret, base64.URLEncoding.EncodeToString([]byte(`{"alg":"HS256"} `)), goodParts[1]), errTokenMalformed},
		{"non-canonical signature", goodParts[0] + "." + goodParts[1] + "." + nonCanonicalSig, errTokenMalformed},
		{"non-canonical payload", signSegments(testTokenSecret, goodParts[0], ncPayload), errTokenMalformed},
		{"standard alphabet", signSegments(testTokenSecret, goodParts[0], stdPayload), errTokenMalformed},
		{"newline inside a segment", signSegments(testTokenSecret, goodParts[0], goodParts[1][:10]+"\n"+goodParts[1][10:]), errTokenMalformed},
		{"header not JSON", signJSON(testTokenSecret, `{"alg":"HS256",}`, payloadJSON()), errTokenMalformed},
		{"header an array", signJSON(testTokenSecret, `["HS256"]`, payloadJSON()), errTokenMalformed},
		{"header duplicate alg", signJSON(testTokenSecret, `{"alg":"HS256","alg":"none"}`, payloadJSON()), errTokenMalformed},
		{"header duplicate alg through an escape", signJSON(testTokenSecret, `{"alg":"HS256","\u0061lg":"none"}`, payloadJSON()), errTokenMalformed},
		{"header trailing garbage", signJSON(testTokenSecret, `{"alg":"HS256"}x`, payloadJSON()), errTokenMalformed},
		{"payload duplicate sub", signJSON(testTokenSecret, hs256Header, payloadJSON("sub", `"`+testSub+`","sub":"11111111-2222-4333-8444-555555555555"`)), errTokenMalformed},
		{"payload trailing garbage", signJSON(testTokenSecret, hs256Header, payloadJSON()+"{}"), errTokenMalformed},
		{"payload not JSON", signJSON(testTokenSecret, hs256Header, `{"sub":`), errTokenMalformed},
		{"payload a string", signJSON(testTokenSecret, hs256Header, `"`+testSub+`"`), errTokenMalformed},
		{"payload invalid UTF-8", signJSON(testTokenSecret, hs256Header, payloadJSON("name", "\"\xff\"")), errTokenMalformed},
		{"payload lone surrogate", signJSON(testTokenSecret, hs256Header, payloadJSON("name", `"\ud800"`)), errTokenMalformed},
		{"payload control character", signJSON(testTokenSecret, hs256Header, payloadJSON("name", "\"a\tb\"")), errTokenMalformed},
		{"payload leading zero", signJSON(testTokenSecret, hs256Header, payloadJSON("exp", "01750003600")), errTokenMalformed},
		{"payload nested too deep", signJSON(testTokenSecret, hs256Header, payloadJSON("x", deep)), errTokenMalformed},
		{"payload nested unknown claims accepted", signJSON(testTokenSecret, hs256Header, payloadJSON("x", shallow, "aud", `["a","b"]`, "admin", "true", "n", "null", "f", "-1.5e3")), nil},

		{"exp missing", signJSON(testTokenSecret, hs256Header, payloadJSON("exp", nil)), errTokenClaims},
		{"exp null", signJSON(testTokenSecret, hs256Header, payloadJSON("exp", "null")), errTokenClaims},
		{"exp a string", signJSON(testTokenSecret, hs256Header, payloadJSON("exp", `"1750003600"`)), errTokenClaims},
		{"exp negative", signJSON(testTokenSecret, hs256Header, payloadJSON("exp", "-1")), errTokenClaims},
		{"exp absurd", signJSON(testTokenSecret, hs256Header, payloadJSON("exp", "1e20")), errTokenClaims},
		{"exp overflowing float", signJSON(testTokenSecret, hs256Header, payloadJSON("exp", "1e400")), errTokenClaims},
		{"exp past the leeway", signJSON(testTokenSecret, hs256Header, payloadJSON("exp", unixJSON(testNow.Add(-31*time.Second)))), errTokenExpired},
		{"exp exactly at the leeway", signJSON(testTokenSecret, hs256Header, payloadJSON("exp", unixJSON(testNow.Add(-tokenLeeway)))), errTokenExpired},
		{"exp just inside the leeway accepted", signJSON(testTokenSecret, hs256Header, payloadJSON("exp", unixJSON(testNow.Add(-29*time.Second)))), nil},
		{"exp as a fraction accepted", signJSON(testTokenSecret, hs256Header, payloadJSON("exp", "1750003600.5")), nil},
		{"exp with an exponent accepted", signJSON(testTokenSecret, hs256Header, payloadJSON("exp", "1.7500036E9")), nil},
		{"nbf beyond the leeway", signJSON(testTokenSecret, hs256Header, payloadJSON("nbf", unixJSON(testNow.Add(31*time.Second)))), errTokenNotYetValid},
		{"nbf inside the leeway accepted", signJSON(testTokenSecret, hs256Header, payloadJSON("nbf", unixJSON(testNow.Add(29*time.Second)))), nil},
		{"nbf a string", signJSON(testTokenSecret, hs256Header, payloadJSON("nbf", `"soon"`)), errTokenClaims},
		{"iat beyond the leeway", signJSON(testTokenSecret, hs256Header, payloadJSON("iat", unixJSON(testNow.Add(31*time.Second)))), errTokenNotYetValid},
		{"iat inside the leeway accepted", signJSON(testTokenSecret, hs256Header, payloadJSON("iat", unixJSON(testNow.Add(29*time.Second)))), nil},
		{"iat missing accepted", signJSON(testTokenSecret, hs256Header, payloadJSON("iat", nil)), nil},
		{"iat a bool", signJSON(testTokenSecret, hs256Header, payloadJSON("iat", "true")), errTokenClaims},
		{"auth_time accepted", signJSON(testTokenSecret, hs256Header, payloadJSON("auth_time", unixJSON(testNow.Add(-time.Hour)))), nil},
		{"auth_time a string", signJSON(testTokenSecret, hs256Header, payloadJSON("auth_time", `"yesterday"`)), errTokenClaims},
		{"auth_time negative", signJSON(testTokenSecret, hs256Header, payloadJSON("auth_time", "-5")), errTokenClaims},

		{"sub missing", signJSON(testTokenSecret, hs256Header, payloadJSON("sub", nil)), errTokenClaims},
		{"sub not a UUID", signJSON(testTokenSecret, hs256Header, payloadJSON("sub", `"alice"`)), errTokenClaims},
		{"sub UUID without dashes", signJSON(testTokenSecret, hs256Header, payloadJSON("sub", `"6f1c2b1e3c2a4e7b9a512f0a8f1d2c33"`)), errTokenClaims},
		{"sub a number", signJSON(testTokenSecret, hs256Header, payloadJSON("sub", "42")), errTokenClaims},
		{"sub null", signJSON(testTokenSecret, hs256Header, payloadJSON("sub", "null")), errTokenClaims},
		{"company_id not a UUID", signJSON(testTokenSecret, hs256Header, payloadJSON("company_id", `"acme"`)), errTokenClaims},
		{"company_id a number", signJSON(testTokenSecret, hs256Header, payloadJSON("company_id", "7")), errTokenClaims},
		{"company_id empty", signJSON(testTokenSecret, hs256Header, payloadJSON("company_id", `""`)), errTokenClaims},
		{"company_id null accepted as absent", signJSON(testTokenSecret, hs256Header, payloadJSON("company_id", "null")), nil},
		{"email a number", signJSON(testTokenSecret, hs256Header, payloadJSON("email", "1")), errTokenClaims},
		{"name an array", signJSON(testTokenSecret, hs256Header, payloadJSON("name", `["a"]`)), errTokenClaims},
		{"roles a string", signJSON(testTokenSecret, hs256Header, payloadJSON("roles", `"admin"`)), errTokenClaims},
		{"roles with a number", signJSON(testTokenSecret, hs256Header, payloadJSON("roles", `["admin",1]`)), errTokenClaims},
		{"roles with null", signJSON(testTokenSecret, hs256Header, payloadJSON("roles", `["admin",null]`)), errTokenClaims},
		{"roles too many", signJSON(testTokenSecret, hs256Header, payloadJSON("roles", `[`+strings.Repeat(`"r",`, maxTokenRoles)+`"r"]`)), errTokenClaims},
		{"roles accepted", signJSON(testTokenSecret, hs256Header, payloadJSON("roles", `[ "admin" , "us\u0065r" ]`)), nil},
	}
}

func mustDecode(tb testing.TB, s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// checkOneSentinel fails unless err wraps exactly one token sentinel.
func checkOneSentinel(tb testing.TB, err error) {
	n := 0
	for _, s := range tokenSentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		tb.Fatalf("error %q wraps %d token sentinels, want exactly 1", err, n)
	}
}

func TestVerifyTokenRules(t *testing.T) {
	for _, tc := range tokenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			c, err := verifyToken(testTokenSecret, tc.token, testNow)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("verifyToken: %v, want accepted", err)
				}
				if c.Subject != testSub {
					t.Fatalf("Subject = %q, want %q", c.Subject, testSub)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("verifyToken error = %v, want %v", err, tc.want)
			}
			checkOneSentinel(t, err)
			if c.Subject != "" || c.ExpiresAt != 0 {
				t.Fatalf("rejected token returned claims %+v", c)
			}
		})
	}
}

func TestVerifyTokenAcceptsTokenOfExactlyMaxSize(t *testing.T) {
	// Start a little below the name length the base64 expansion (4/3) predicts.
	var token string
	for n := maxTokenBytes*3/4 - len(payloadJSON("name", `""`)) - 200; n < maxTokenBytes; n++ {
		token = signJSON(testTokenSecret, hs256Header, payloadJSON("name", `"`+strings.Repeat("n", n)+`"`))
		if len(token) >= maxTokenBytes {
			break
		}
	}
	if len(token) != maxTokenBytes {
		t.Fatalf("could not build a token of exactly %d bytes (got %d)", maxTokenBytes, len(token))
	}
	if _, err := verifyToken(testTokenSecret, token, testNow); err != nil {
		t.Fatalf("token of exactly %d bytes: %v", maxTokenBytes, err)
	}
	if _, err := verifyToken(testTokenSecret, token+"A", testNow); !errors.Is(err, errTokenTooLarge) {
		t.Fatalf("token of %d bytes: %v, want %v", maxTokenBytes+1, err, errTokenTooLarge)
	}
}

func TestVerifyTokenRefusesEverythingWithoutSecret(t *testing.T) {
	token := signJSON(nil, hs256Header, payloadJSON()) // HMAC with an empty key
	if _, err := verifyToken(nil, token, testNow); !errors.Is(err, errTokenSignature) {
		t.Fatalf("verify with empty secret: %v, want %v", err, errTokenSignature)
	}
	if _, err := signToken(nil, Claims{Subject: testSub, ExpiresAt: testNow.Unix() + 60}); err == nil {
		t.Fatal("signToken with an empty secret succeeded")
	}
}

func TestSignTokenRoundTrip(t *testing.T) {
	cases := []Claims{
		{Subject: testSub, Email: "ana@example.com", ExpiresAt: testNow.Unix() + 3600, IssuedAt: testNow.Unix()},
		{Subject: testSub, Email: "ana@example.com", CompanyID: testCompany, ExpiresAt: testNow.Unix() + 3600, IssuedAt: testNow.Unix()},
		{Subject: testSub, Email: "ana@example.com", CompanyID: testCompany, Name: `Ana "Ñ" O'Neil` + "\n\x01 😀",
			Roles: []string{"admin", "user", `we"ird\`}, ExpiresAt: testNow.Unix() + 60, IssuedAt: testNow.Unix() - 10, NotBefore: testNow.Unix() - 10},
		{Subject: testSub, CompanyID: testCompany, ExpiresAt: testNow.Unix() + 60, IssuedAt: testNow.Unix(), AuthTime: testNow.Unix() - 86400},
		{Subject: strings.ToUpper(testSub), CompanyID: strings.ToUpper(testCompany), ExpiresAt: testNow.Unix() + 1},
	}
	for i, want := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			token, err := signToken(testTokenSecret, want)
			if err != nil {
				t.Fatal(err)
			}
			if h := strings.SplitN(token, ".", 2)[0]; string(mustDecode(t, h)) != hs256Header {
				t.Fatalf("header = %s, want %s", mustDecode(t, h), hs256Header)
			}
			got, err := verifyToken(testTokenSecret, token, testNow)
			if err != nil {
				t.Fatalf("verifyToken(signToken(c)): %v", err)
			}
			want.Subject, want.CompanyID = strings.ToLower(want.Subject), strings.ToLower(want.CompanyID)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
			crossCheckWithEncodingJSON(t, token, got)
		})
	}
}

func TestSignTokenOmitsEmptyOptionalClaims(t *testing.T) {
	token, err := signToken(testTokenSecret, Claims{Subject: testSub, Email: "a@b.c", ExpiresAt: 2000000000, IssuedAt: 1999999000})
	if err != nil {
		t.Fatal(err)
	}
	got := string(mustDecode(t, strings.Split(token, ".")[1]))
	want := `{"sub":"` + testSub + `","email":"a@b.c","exp":2000000000,"iat":1999999000}`
	if got != want {
		t.Fatalf("payload = %s, want %s", got, want)
	}
}

func TestSignTokenRefusesClaimsVerifyWouldReject(t *testing.T) {
	base := Claims{Subject: testSub, ExpiresAt: testNow.Unix() + 60}
	for name, mutate := range map[string]func(*Claims){
		"sub not a UUID":        func(c *Claims) { c.Subject = "alice" },
		"company_id not a UUID": func(c *Claims) { c.CompanyID = "acme" },
		"no exp":                func(c *Claims) { c.ExpiresAt = 0 },
		"exp absurd":            func(c *Claims) { c.ExpiresAt = math.MaxInt64 },
		"invalid UTF-8 name":    func(c *Claims) { c.Name = "\xff" },
		"too many roles":        func(c *Claims) { c.Roles = make([]string, maxTokenRoles+1) },
		"too large":             func(c *Claims) { c.Name = strings.Repeat("n", maxTokenBytes) },
	} {
		c := base
		mutate(&c)
		if _, err := signToken(testTokenSecret, c); err == nil {
			t.Errorf("%s: signToken succeeded", name)
		}
	}
}

// RFC 7515 Appendix A.1: the HS256 example, checked byte for byte against the RFC's key.
func TestVerifyTokenRFC7515Example(t *testing.T) {
	key := mustDecode(t, "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
	const token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	beforeExp := time.Unix(1300819380-60, 0)

	// The payload has no sub: refused for its claims, which proves the signature passed.
	if _, err := verifyToken(key, token, beforeExp); !errors.Is(err, errTokenClaims) {
		t.Fatalf("RFC 7515 A.1 with its key: %v, want %v", err, errTokenClaims)
	}
	wrong := append([]byte(nil), key...)
	wrong[0] ^= 1
	if _, err := verifyToken(wrong, token, beforeExp); !errors.Is(err, errTokenSignature) {
		t.Fatalf("RFC 7515 A.1 with a one-byte-different key: %v, want %v", err, errTokenSignature)
	}
}

type joseVector struct{ name, token string }

// readPythonJoseVectors reads testdata/python_jose_hs256_vectors.tsv and its secret.
func readPythonJoseVectors(tb testing.TB) (secret []byte, vectors []joseVector) {
	f, err := os.Open("testdata/python_jose_hs256_vectors.tsv")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			if _, s, ok := strings.Cut(line, "Secret: "); ok {
				secret = []byte(strings.TrimSpace(s))
			}
			continue
		}
		if name, token, ok := strings.Cut(line, "\t"); ok {
			vectors = append(vectors, joseVector{name, token})
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(secret) == 0 || len(vectors) == 0 {
		tb.Fatal("python-jose vectors: no secret or no vectors")
	}
	return secret, vectors
}

func TestVerifyTokenAcceptsPythonJoseTokens(t *testing.T) {
	secret, vectors := readPythonJoseVectors(t)
	now := time.Unix(1_750_000_000, 0)
	seen := map[string]bool{}
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			seen[v.name] = true
			c, err := verifyToken(secret, v.token, now)
			switch {
			case v.name == "expired":
				if !errors.Is(err, errTokenExpired) {
					t.Fatalf("verifyToken: %v, want %v", err, errTokenExpired)
				}
			case strings.HasPrefix(v.name, "valid_"):
				if err != nil {
					t.Fatalf("verifyToken: %v", err)
				}
				want := Claims{Subject: testSub, Email: "ana@example.com", ExpiresAt: 4102444800, IssuedAt: 1744900000}
				if v.name == "valid_with_company" {
					want.CompanyID = testCompany
				}
				if !reflect.DeepEqual(c, want) {
					t.Fatalf("claims:\n got %+v\nwant %+v", c, want)
				}
			default:
				t.Fatalf("unknown vector %q", v.name)
			}
		})
	}
	for _, name := range []string{"valid_with_company", "valid_without_company", "expired"} {
		if !seen[name] {
			t.Errorf("vector %q missing", name)
		}
	}
}

// Verifiers of different secrets used at the same time must each use their own key.
func TestVerifyTokenUsesOnlyItsOwnSecretUnderConcurrency(t *testing.T) {
	verifiers := []*tokenVerifier{newTokenVerifier(testTokenSecret), newTokenVerifier(otherSecret)}
	tokens := []string{signJSON(testTokenSecret, hs256Header, payloadJSON()), signJSON(otherSecret, hs256Header, payloadJSON())}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				k := (g + i) % 2
				if _, err := verifiers[k].verify(tokens[k], testNow); err != nil {
					errs <- fmt.Errorf("own secret: %w", err)
					return
				}
				if _, err := verifiers[k].verify(tokens[1-k], testNow); !errors.Is(err, errTokenSignature) {
					errs <- fmt.Errorf("other secret: %v, want %v", err, errTokenSignature)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// crossCheckWithEncodingJSON fails unless encoding/json agrees that token's header and
// payload are valid JSON and reads the same claims from them.
func crossCheckWithEncodingJSON(tb testing.TB, token string, got Claims) {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		tb.Fatalf("accepted token has %d segments", len(parts))
	}
	header, payload := mustDecode(tb, parts[0]), mustDecode(tb, parts[1])
	if !json.Valid(header) || !json.Valid(payload) {
		tb.Fatalf("accepted token that encoding/json finds invalid: header %q payload %q", header, payload)
	}
	var h map[string]any
	if err := json.Unmarshal(header, &h); err != nil {
		tb.Fatalf("accepted header %q: encoding/json: %v", header, err)
	}
	if h["alg"] != "HS256" {
		tb.Fatalf("accepted header %q: alg %v", header, h["alg"])
	}
	if _, ok := h["crit"]; ok {
		tb.Fatalf("accepted header %q with crit", header)
	}
	if typ, ok := h["typ"]; ok {
		if s, _ := typ.(string); !strings.EqualFold(s, "JWT") {
			tb.Fatalf("accepted header %q with typ %v", header, typ)
		}
	}
	// Numbers stay text: an unknown member may overflow float64 and still be valid JSON.
	var p map[string]any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		tb.Fatalf("accepted payload %q: encoding/json: %v", payload, err)
	}
	var want Claims
	str := func(k string) string {
		switch v := p[k].(type) {
		case nil:
			return ""
		case string:
			return v
		default:
			tb.Fatalf("accepted payload %q: %s is %T", payload, k, v)
			return ""
		}
	}
	date := func(k string, required bool) int64 {
		switch v := p[k].(type) {
		case nil:
			if required {
				tb.Fatalf("accepted payload %q without %s", payload, k)
			}
			return 0
		case json.Number:
			f, err := v.Float64()
			if err != nil {
				tb.Fatalf("accepted payload %q: %s: %v", payload, k, err)
			}
			return int64(math.Floor(f))
		default:
			tb.Fatalf("accepted payload %q: %s is %T", payload, k, v)
			return 0
		}
	}
	want.Subject = strings.ToLower(str("sub"))
	want.Email = str("email")
	want.CompanyID = strings.ToLower(str("company_id"))
	want.Name = str("name")
	if roles, ok := p["roles"].([]any); ok {
		for _, r := range roles {
			s, ok := r.(string)
			if !ok {
				tb.Fatalf("accepted payload %q: role %v is %T", payload, r, r)
			}
			want.Roles = append(want.Roles, s)
		}
	} else if p["roles"] != nil {
		tb.Fatalf("accepted payload %q: roles is %T", payload, p["roles"])
	}
	want.ExpiresAt = date("exp", true)
	want.IssuedAt = date("iat", false)
	want.NotBefore = date("nbf", false)
	want.AuthTime = date("auth_time", false)
	if !reflect.DeepEqual(got, want) {
		tb.Fatalf("claims differ from encoding/json for payload %q:\n got %+v\nwant %+v", payload, got, want)
	}
}

// checkVerifyOutcome re-verifies an accepted token and cross-checks it with encoding/json;
// a rejection must wrap exactly one sentinel.
func checkVerifyOutcome(t *testing.T, token string) {
	c, err := verifyToken(testTokenSecret, token, testNow)
	if err != nil {
		checkOneSentinel(t, err)
		return
	}
	again, err := verifyToken(testTokenSecret, token, testNow)
	if err != nil || !reflect.DeepEqual(again, c) {
		t.Fatalf("re-verification differs: %+v, %v; first %+v", again, err, c)
	}
	crossCheckWithEncodingJSON(t, token, c)
}

func addTokenSeeds(f *testing.F, add func(token string)) {
	for _, tc := range tokenCases(f) {
		add(tc.token)
	}
	_, vectors := readPythonJoseVectors(f)
	for _, v := range vectors {
		add(v.token)
	}
}

// FuzzVerifyToken feeds arbitrary tokens, and the same tokens re-signed with the test
// secret so that the fuzzer also reaches the payload reader behind the signature check.
func FuzzVerifyToken(f *testing.F) {
	addTokenSeeds(f, func(token string) { f.Add(token) })
	// Found by fuzzing: an unknown member holding a number beyond float64 (valid JSON).
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0Y0ZBY0Y0Yy00Y0ZBLTBBY0YtY0Y0Yy00YzBBZGY0ZDBBY0YiLCJ0YCI6Im00XyIsImV4cCI6My40NzA0MzA0RTksIm00YCI6CTY0ZTA0OTA0MX0")
	f.Fuzz(func(t *testing.T, token string) {
		checkVerifyOutcome(t, token)
		if h, rest, ok := strings.Cut(token, "."); ok {
			p, _, _ := strings.Cut(rest, ".")
			checkVerifyOutcome(t, signSegments(testTokenSecret, h, p))
		}
	})
}

// FuzzVerifyTokenJSON mutates the decoded header and payload JSON directly, signed, and
// holds the token reader to encoding/json.
func FuzzVerifyTokenJSON(f *testing.F) {
	addTokenSeeds(f, func(token string) {
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			return
		}
		h, errH := base64.RawURLEncoding.DecodeString(parts[0])
		p, errP := base64.RawURLEncoding.DecodeString(parts[1])
		if errH == nil && errP == nil {
			f.Add(h, p)
		}
	})
	f.Fuzz(func(t *testing.T, header, payload []byte) {
		checkVerifyOutcome(t, signJSON(testTokenSecret, string(header), string(payload)))
	})
}

func BenchmarkVerifyToken(b *testing.B) {
	secret, vectors := readPythonJoseVectors(b)
	rich, err := signToken(testTokenSecret, Claims{Subject: testSub, Email: "ana@example.com", CompanyID: testCompany,
		Name: "Ana", Roles: []string{"admin", "user"}, ExpiresAt: testNow.Unix() + 3600, IssuedAt: testNow.Unix()})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		secret []byte
		token  string
	}{
		{"python-jose", secret, vectors[0].token},
		{"name-and-roles", testTokenSecret, rich},
	} {
		b.Run(bc.name, func(b *testing.B) {
			v := newTokenVerifier(bc.secret)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.verify(bc.token, testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSignToken(b *testing.B) {
	c := Claims{Subject: testSub, Email: "ana@example.com", CompanyID: testCompany, ExpiresAt: testNow.Unix() + 3600, IssuedAt: testNow.Unix()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := signToken(testTokenSecret, c); err != nil {
			b.Fatal(err)
		}
	}
}

// verifyToken checks one token with a verifier built for the purpose.
func verifyToken(secret []byte, token string, now time.Time) (Claims, error) {
	return newTokenVerifier(secret).verify(token, now)
}
