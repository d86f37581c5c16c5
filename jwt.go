// jwt.go: hand-written HS256 JSON Web Tokens on crypto/hmac (sign and verify; pure functions).
package main

import (
	"errors"
	"time"
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

// signToken returns a compact HS256 JWS of c.
func signToken(secret []byte, c Claims) (string, error) {
	return "", errors.New("unimplemented")
}

// verifyToken checks token against secret at time now and returns its claims.
func verifyToken(secret []byte, token string, now time.Time) (Claims, error) {
	return Claims{}, errTokenMalformed
}

// isUUID reports whether s is a UUID in the canonical 8-4-4-4-12 hex form (either case).
func isUUID(s string) bool {
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
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
