// config.go: every setting of the gateway, its default, its validation, in one table.
package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the validated configuration. Every field is set by loadConfig; nothing else
// reads the environment.
type Config struct {
	Dev bool // -dev flag: development shortcuts allowed (each announced in DevShortcuts)

	Port     int
	LogLevel slog.Level

	IngestURL *url.URL // nil only in -dev when unset: the built-in echo upstream is used
	QueryURL  *url.URL // nil only in -dev when unset: the built-in echo upstream is used
	AuthURL   *url.URL // nil: /api/v1/auth/* answers 404

	JWTSecret []byte
	JWTExpire time.Duration

	PostgresUser     string
	PostgresPassword string
	PostgresServer   string
	PostgresPort     int
	PostgresDB       string
	UseMemoryStore   bool // only in -dev when no PostgreSQL password is configured

	DefaultCompanyID string // "" or a canonical lower-case UUID

	HTTPClientTimeout   time.Duration // response-header timeout for upstreams
	MaxConnsPerHost     int
	MaxIdleConnsPerHost int

	VercelFrontendURL  string   // "" or an origin (scheme://host[:port])
	CORSAllowedOrigins []string // exact origins

	// Beyond the SPEC table.
	DBTimeout         time.Duration  // GATEWAY_DB_TIMEOUT: deadline of every database call
	UserCacheTTL      time.Duration  // GATEWAY_USER_CACHE_TTL: 0 = check the database on every request
	UserStaleIfError  time.Duration  // GATEWAY_USER_CACHE_STALE_IF_ERROR: serve a known user this long past the TTL while the database fails
	SessionMaxAge     time.Duration  // GATEWAY_SESSION_MAX_AGE: refresh never extends a session past sign-in + this
	AdminPort         int            // GATEWAY_ADMIN_PORT: 0 disables the admin listener
	Docs              bool           // GATEWAY_DOCS: serve /openapi.json and /docs
	ShutdownGrace     time.Duration  // GATEWAY_SHUTDOWN_GRACE: bound on draining in-flight requests
	DrainDelay        time.Duration  // GATEWAY_DRAIN_DELAY: keep accepting while load balancers notice not-ready
	ReadHeaderTimeout time.Duration  // GATEWAY_READ_HEADER_TIMEOUT
	IdleTimeout       time.Duration  // GATEWAY_IDLE_TIMEOUT
	MaxBodyBytes      int64          // GATEWAY_MAX_BODY_BYTES: body limit of the gateway's own JSON endpoints
	TrustedProxies    []netip.Prefix // GATEWAY_TRUSTED_PROXIES

	LoginIPBurst        int     // GATEWAY_LOGIN_IP_BURST: failed logins allowed at once per client IP (0 = off)
	LoginIPPerMinute    float64 // GATEWAY_LOGIN_IP_PER_MINUTE: refill rate of that bucket
	LoginEmailBurst     int     // GATEWAY_LOGIN_EMAIL_BURST (0 = off)
	LoginEmailPerMinute float64 // GATEWAY_LOGIN_EMAIL_PER_MINUTE
	BcryptQueueWait     time.Duration

	CompanyRPS   float64 // GATEWAY_RATE_LIMIT_COMPANY_RPS (0 = off)
	CompanyBurst int     // GATEWAY_RATE_LIMIT_COMPANY_BURST

	GCPercent       int   // GATEWAY_GC_PERCENT
	MemoryLimit     int64 // GATEWAY_MEMORY_LIMIT bytes (0 = none); unused when MemoryLimitAuto
	MemoryLimitAuto bool  // GATEWAY_MEMORY_LIMIT auto (the default): derived at start, see memlimit.go

	OTLPEndpoint     *url.URL     // GATEWAY_OTLP_ENDPOINT: nil = no span export
	OTLPHeaders      []otlpHeader // GATEWAY_OTLP_HEADERS
	TraceSampleRatio float64      // GATEWAY_TRACE_SAMPLE_RATIO: share of new traces exported

	// The edge under abuse (SPEC §8).
	LoginGlobalBurst     int           // GATEWAY_LOGIN_GLOBAL_BURST: failed logins at once per replica, any address (0 = off)
	LoginGlobalPerMinute float64       // GATEWAY_LOGIN_GLOBAL_PER_MINUTE
	ProxyIdleTimeout     time.Duration // GATEWAY_PROXY_IDLE_TIMEOUT: a proxied body that moves no byte this long is cut (0 = off, tests only)
	UpstreamQueueWait    time.Duration // GATEWAY_UPSTREAM_QUEUE_WAIT: wait for a free upstream connection before 503
	CompanyMaxInflight   int           // GATEWAY_COMPANY_MAX_INFLIGHT: proxied requests in flight per company (0 = off)
	MaxConnections       int           // GATEWAY_MAX_CONNECTIONS: open client connections (0 = no cap)
	ForwardCredentials   bool          // GATEWAY_PROXY_FORWARD_CREDENTIALS: pass Authorization and Cookie to authenticated backends
	PProf                bool          // GATEWAY_PPROF: serve /debug/pprof/ on the admin listener
	PostgresSSLMode      string        // GATEWAY_POSTGRES_SSLMODE: libpq sslmode ("" = prefer, for configurations built by hand)
	PostgresSSLRootCert  string        // GATEWAY_POSTGRES_SSLROOTCERT: CA bundle for verify-ca / verify-full
	CORSAllowLocalhost   bool          // GATEWAY_CORS_ALLOW_LOCALHOST: allow http://localhost:3000…3009
	CORSVercelTeam       string        // GATEWAY_CORS_VERCEL_TEAM: preview origins must end in -<team>.vercel.app

	DevShortcuts []string // each development shortcut taken, to be announced at WARN
}

// setting is one row of the configuration table: the environment variable, its default,
// whether production must provide it, and whether it is a secret (masked in logs, kept in the
// Kubernetes Secret rather than the ConfigMap).
type setting struct {
	Name     string
	Default  string // "" = none
	Required bool   // must be provided outside -dev
	Secret   bool
	Doc      string
}

// settings lists every setting the gateway reads; the README's configuration table and the
// Kubernetes manifests are checked against it.
var settings = []setting{
	// The SPEC table.
	{Name: "PORT", Default: "8080",
		Doc: "TCP port of the public listener (all interfaces), 1..65535"},
	{Name: "GATEWAY_LOG_LEVEL", Default: "INFO",
		Doc: "DEBUG, INFO, WARNING (or WARN) or ERROR, in any letter case"},
	{Name: "GATEWAY_INGEST_SERVICE_URL", Default: "http://ingest-api-service.nyro-develop.svc.cluster.local:80",
		Doc: "base URL of the Ingest service (absolute http/https); in -dev, unset means a built-in echo upstream"},
	{Name: "GATEWAY_QUERY_SERVICE_URL", Default: "http://query-service.nyro-develop.svc.cluster.local:80",
		Doc: "base URL of the Query service (absolute http/https); in -dev, unset means a built-in echo upstream"},
	{Name: "GATEWAY_AUTH_SERVICE_URL",
		Doc: "optional base URL of an auth service; when set /api/v1/auth/* is proxied to it, otherwise it answers 404"},
	{Name: "GATEWAY_JWT_SECRET", Required: true, Secret: true,
		Doc: "HS256 key, at least 32 random bytes, never a placeholder; in -dev, unset means an ephemeral key"},
	{Name: "GATEWAY_JWT_ALGORITHM", Default: "HS256",
		Doc: "token algorithm; only HS256 is accepted"},
	{Name: "GATEWAY_JWT_EXPIRE_MINUTES", Default: "1440",
		Doc: "lifetime of issued tokens in minutes, 1..525600 (one year)"},
	{Name: "GATEWAY_POSTGRES_USER", Default: "postgres",
		Doc: "PostgreSQL user"},
	{Name: "GATEWAY_POSTGRES_PASSWORD", Required: true, Secret: true,
		Doc: "PostgreSQL password (an empty one refuses to start); in -dev, unset means an in-memory store with a demo user"},
	{Name: "GATEWAY_POSTGRES_SERVER", Default: "postgresql.nyro-develop.svc.cluster.local",
		Doc: "PostgreSQL host name or IP address"},
	{Name: "GATEWAY_POSTGRES_PORT", Default: "5432",
		Doc: "PostgreSQL port, 1..65535"},
	{Name: "GATEWAY_POSTGRES_DB", Default: "atenex",
		Doc: "PostgreSQL database name"},
	{Name: "GATEWAY_DEFAULT_COMPANY_ID",
		Doc: "optional company UUID that ensure-company assigns to users without a company"},
	{Name: "GATEWAY_HTTP_CLIENT_TIMEOUT", Default: "60",
		Doc: "seconds to wait for an upstream's response headers (decimals or a duration like 90s work); streams may last longer"},
	{Name: "GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS", Default: "200",
		Doc: "connections per upstream host, at least 1"},
	{Name: "GATEWAY_HTTP_CLIENT_MAX_KEEPALIVE_CONNECTIONS", Default: "100",
		Doc: "idle keep-alive connections per upstream host, 0..GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS"},
	{Name: "VERCEL_FRONTEND_URL",
		Doc: "CORS: the frontend origin (scheme://host[:port]); its Vercel preview deployments are allowed too"},
	{Name: "GATEWAY_CORS_ALLOWED_ORIGINS",
		Doc: "CORS: extra exact origins, comma-separated; \"*\" is refused because credentials are allowed"},

	// Beyond the SPEC table.
	{Name: "GATEWAY_DB_TIMEOUT", Default: "2s",
		Doc: "deadline of every database call, 1ms..1m"},
	{Name: "GATEWAY_USER_CACHE_TTL", Default: "60s",
		Doc: "how long a user's state (active, company, role, revocations) is cached, 0..60s; 0 checks the database on every request. Changes reach every replica within a second through database notifications; the TTL bounds staleness only while those are down"},
	{Name: "GATEWAY_USER_CACHE_STALE_IF_ERROR", Default: "10m",
		Doc: "while the database cannot answer, users seen before keep being served from their last known state for this long past the TTL, 0..24h; 0 = never (every expired user then gets 503). A change made during an outage takes effect when it ends"},
	{Name: "GATEWAY_SESSION_MAX_AGE", Default: "168h",
		Doc: "refresh never extends a session beyond this time after the original sign-in (auth_time), 1m..8760h; past it the user signs in again"},
	{Name: "GATEWAY_ADMIN_PORT", Default: "9090",
		Doc: "port of the admin listener (/metrics, pprof), never the public one; 0 disables it"},
	{Name: "GATEWAY_DOCS", Default: "true",
		Doc: "true serves the OpenAPI description at /openapi.json and a page rendering it at /docs on the public port; false makes both answer 404"},
	{Name: "GATEWAY_SHUTDOWN_GRACE", Default: "25s",
		Doc: "bound on finishing in-flight requests after SIGTERM, 1s..10m; keep it below the pod's termination grace"},
	{Name: "GATEWAY_DRAIN_DELAY", Default: "10s",
		Doc: "after SIGTERM, time spent reporting not-ready on /readyz while still serving, so load balancers stop routing; longer than the readiness probe takes to notice (k8s: 2s period x 2 failures + 2s timeout = 6s) and shorter than GATEWAY_SHUTDOWN_GRACE"},
	{Name: "GATEWAY_READ_HEADER_TIMEOUT", Default: "10s",
		Doc: "time a client has to send its request headers, and the body of a login or ensure-company (408 after it), 1ms..5m"},
	{Name: "GATEWAY_IDLE_TIMEOUT", Default: "30s",
		Doc: "how long an idle client keep-alive connection stays open, 1ms..1h; keep the ingress's upstream keep-alive timeout below it"},
	{Name: "GATEWAY_MAX_BODY_BYTES", Default: "16384",
		Doc: "body limit of the gateway's own JSON endpoints (413 above it), 1KiB..1MiB; proxied bodies are not limited"},
	{Name: "GATEWAY_TRUSTED_PROXIES",
		Doc: "comma-separated CIDRs or IPs of proxies whose X-Forwarded-For is believed; empty trusts none"},
	{Name: "GATEWAY_LOGIN_IP_BURST", Default: "10",
		Doc: "failed logins allowed at once per client IP; 0 turns this limit off"},
	{Name: "GATEWAY_LOGIN_IP_PER_MINUTE", Default: "10",
		Doc: "failed logins per minute regained per client IP (decimal allowed)"},
	{Name: "GATEWAY_LOGIN_EMAIL_BURST", Default: "10",
		Doc: "failed logins allowed at once per email; 0 turns this limit off"},
	{Name: "GATEWAY_LOGIN_EMAIL_PER_MINUTE", Default: "5",
		Doc: "failed logins per minute regained per email (decimal allowed)"},
	{Name: "GATEWAY_BCRYPT_QUEUE_WAIT", Default: "1s",
		Doc: "how long a login waits for a free bcrypt slot before a 503, 0..30s"},
	{Name: "GATEWAY_RATE_LIMIT_COMPANY_RPS", Default: "0",
		Doc: "proxied requests per second allowed per company (decimal allowed); 0 turns the limit off"},
	{Name: "GATEWAY_RATE_LIMIT_COMPANY_BURST", Default: "0",
		Doc: "proxied requests allowed at once per company; 0 means ceil(GATEWAY_RATE_LIMIT_COMPANY_RPS)"},
	{Name: "GATEWAY_GC_PERCENT", Default: "100",
		Doc: "Go garbage-collector target percentage (like GOGC), -1..10000; -1 or off relies on GATEWAY_MEMORY_LIMIT alone. Chosen with the memory limit: at 100 the heap stays near twice the live heap, which meets the limit only at about 1000 concurrent clients"},
	{Name: "GATEWAY_MEMORY_LIMIT", Default: "auto",
		Doc: "soft memory limit of the Go runtime (like GOMEMLIMIT), in bytes or with B/KiB/MiB/GiB/TiB; 0 = none. auto (or unset) = 75% of the container's cgroup memory limit, or 96MiB when there is none"},
	{Name: "GATEWAY_OTLP_ENDPOINT",
		Doc: "base URL of an OpenTelemetry collector's OTLP/HTTP receiver (e.g. http://otel-collector:4318); spans are posted as JSON to {this}/v1/traces. Unset = no export (traceparent is propagated all the same)"},
	{Name: "GATEWAY_OTLP_HEADERS", Secret: true,
		Doc: "extra headers of the export requests, comma-separated key=value (values may be percent-encoded), e.g. a collector's API key"},
	{Name: "GATEWAY_TRACE_SAMPLE_RATIO", Default: "1.0",
		Doc: "share of the traces this gateway starts that are exported, 0..1; a request with a valid traceparent follows its sampled flag instead"},

	// The edge under abuse (SPEC §8).
	{Name: "GATEWAY_LOGIN_GLOBAL_BURST", Default: "60",
		Doc: "failed logins allowed at once per replica from addresses that never logged in with that email (a password spray over many addresses meets it); 0 turns this limit off"},
	{Name: "GATEWAY_LOGIN_GLOBAL_PER_MINUTE", Default: "120",
		Doc: "failed logins per minute regained by the per-replica budget (decimal allowed)"},
	{Name: "GATEWAY_PROXY_IDLE_TIMEOUT", Default: "30s",
		Doc: "a proxied request body that sends no byte, or a client that reads no byte of a proxied response, for this long is cut, 1ms..1h; a stream that keeps moving is never cut"},
	{Name: "GATEWAY_UPSTREAM_QUEUE_WAIT", Default: "5s",
		Doc: "how long a proxied request waits for a free upstream connection before 503 upstream_busy, 0..1m"},
	{Name: "GATEWAY_COMPANY_MAX_INFLIGHT",
		Doc: "proxied requests in flight at once per company (429 rate_limited above it), at most GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS; unset means half of GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS; 0 turns the cap off"},
	{Name: "GATEWAY_MAX_CONNECTIONS", Default: "2048",
		Doc: "open client connections at most; past it the connection idle for longest is closed to make room; 0 = no cap. Sized for the 128Mi pod (see Performance)"},
	{Name: "GATEWAY_PROXY_FORWARD_CREDENTIALS", Default: "false",
		Doc: "true forwards the client's Authorization and Cookie headers to the ingest and query backends; by default they get only the identity headers"},
	{Name: "GATEWAY_PPROF", Default: "false",
		Doc: "true serves /debug/pprof/ on the admin listener (GATEWAY_ADMIN_PORT)"},
	{Name: "GATEWAY_POSTGRES_SSLMODE", Default: "prefer",
		Doc: "PostgreSQL TLS: disable, allow, prefer, require, verify-ca or verify-full (libpq's meanings)"},
	{Name: "GATEWAY_POSTGRES_SSLROOTCERT",
		Doc: "path of the CA certificate(s) that sign the PostgreSQL server's certificate, for verify-ca and verify-full"},
	{Name: "GATEWAY_CORS_ALLOW_LOCALHOST",
		Doc: "CORS: true allows http://localhost:3000…3009 (a developer's frontend); unset means true with -dev and false otherwise"},
	{Name: "GATEWAY_CORS_VERCEL_TEAM",
		Doc: "CORS: the Vercel team slug; when set, preview origins must also end in -<team>.vercel.app"},
}

// lookupSetting returns the row of the table named name.
func lookupSetting(name string) (setting, bool) {
	for _, s := range settings {
		if s.Name == name {
			return s, true
		}
	}
	return setting{}, false
}

// Placeholders that have appeared in documentation and examples; a deployment that copied
// one would sign tokens anybody can forge.
var jwtSecretPlaceholders = []string{
	"TU_CLAVE_SECRETA_JWT_DE_PRODUCCION_MUY_SEGURA",
	"una-clave-secreta-muy-fuerte-para-desarrollo-local-1234567890",
	"YOUR_JWT_SECRET_KEY_NEEDS_TO_BE_SET_IN_ENV",
	"CHANGE_ME_to_a_random_secret_of_at_least_32_bytes",
}

// minJWTSecretBytes is the HS256 key length below which brute force becomes plausible
// (RFC 7518 §3.2 asks for at least the hash size).
const minJWTSecretBytes = 32

// settingError is one configuration problem: the variable and what is wrong with it.
type settingError struct {
	Name    string
	Problem string
}

func (e *settingError) Error() string { return e.Name + ": " + e.Problem }

// envReader reads settings through getenv, applies the table's defaults and collects every
// problem, so an operator fixes them all in one pass instead of one restart per mistake.
type envReader struct {
	getenv func(string) string
	errs   []error
}

// get returns the value of name (its default when unset) and whether it was set. Values
// other than secrets are trimmed: a stray space or newline from a YAML block must not change
// a port, while a secret is used byte for byte so tokens signed elsewhere keep verifying.
func (r *envReader) get(name string) (value string, set bool) {
	s, _ := lookupSetting(name)
	v := r.getenv(name)
	if !s.Secret {
		v = strings.TrimSpace(v)
	}
	if v == "" {
		return s.Default, false
	}
	return v, true
}

func (r *envReader) fail(name, format string, args ...any) {
	r.errs = append(r.errs, &settingError{Name: name, Problem: fmt.Sprintf(format, args...)})
}

func (r *envReader) err() error { return errors.Join(r.errs...) }

// show quotes a non-secret value for an error line, shortened so one line stays one line.
func show(v string) string {
	const max = 64
	if len(v) > max {
		return strconv.Quote(v[:max]) + "..."
	}
	return strconv.Quote(v)
}

// showURL is show for values that may carry credentials (user:password@host).
func showURL(v string) string {
	if strings.Contains(v, "@") {
		return "the value"
	}
	return show(v)
}

func (r *envReader) integer(name string, lo, hi int, expect string) (int, bool) {
	v, _ := r.get(name)
	n, err := strconv.Atoi(v)
	switch {
	case err != nil:
		r.fail(name, "%s is not a whole number; expected %s", show(v), expect)
		return 0, false
	case n < lo || n > hi:
		r.fail(name, "%d is out of range; expected %s", n, expect)
		return 0, false
	}
	return n, true
}

func (r *envReader) number(name string, lo, hi float64, expect string) (float64, bool) {
	v, _ := r.get(name)
	f, err := strconv.ParseFloat(v, 64)
	switch {
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
		r.fail(name, "%s is not a number; expected %s", show(v), expect)
		return 0, false
	case f < lo || f > hi:
		r.fail(name, "%s is out of range; expected %s", show(v), expect)
		return 0, false
	}
	return f, true
}

func (r *envReader) duration(name string, lo, hi time.Duration, expect string) (time.Duration, bool) {
	v, _ := r.get(name)
	d, err := parseDuration(v)
	switch {
	case err != nil:
		r.fail(name, "%s %v; expected %s", show(v), err, expect)
		return 0, false
	case d < lo || d > hi:
		r.fail(name, "%s is out of range; expected %s", show(v), expect)
		return 0, false
	}
	return d, true
}

func (r *envReader) size(name string, lo, hi int64, zeroOK bool, expect string) (int64, bool) {
	v, _ := r.get(name)
	n, err := parseSize(v)
	switch {
	case err != nil:
		r.fail(name, "%s %v; expected %s", show(v), err, expect)
		return 0, false
	case n == 0 && zeroOK:
	case n < lo || n > hi:
		r.fail(name, "%s is out of range; expected %s", show(v), expect)
		return 0, false
	}
	return n, true
}

// serviceURL reads an upstream base URL; nil when it is unset and has no default.
func (r *envReader) serviceURL(name string) (u *url.URL, set bool) {
	v, set := r.get(name)
	if v == "" {
		return nil, set
	}
	u, err := parseServiceURL(v)
	if err != nil {
		r.fail(name, "%s %v; expected an absolute http or https URL such as http://query-service:80", showURL(v), err)
		return nil, set
	}
	return u, set
}

// parseDuration accepts a Go duration ("250ms", "1m30s") or a bare number of seconds ("5",
// "0.5"), the form the original configuration used. Negative values are refused.
func parseDuration(v string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		switch {
		case math.IsNaN(f) || math.IsInf(f, 0):
			return 0, errors.New("is not a number of seconds")
		case f < 0:
			return 0, errors.New("is negative")
		case f > float64(math.MaxInt64/int64(time.Second)):
			return 0, errors.New("is too large")
		}
		return time.Duration(math.Round(f * float64(time.Second))), nil
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return 0, errors.New("is neither a duration nor a number of seconds")
	case d < 0:
		return 0, errors.New("is negative")
	}
	return d, nil
}

// parseSize accepts a byte count with an optional binary unit, as GOMEMLIMIT does:
// "16384", "512KiB", "64MiB", "1GiB" (units in any letter case).
func parseSize(v string) (int64, error) {
	i := len(v)
	for i > 0 && ('a' <= v[i-1]|0x20 && v[i-1]|0x20 <= 'z') {
		i--
	}
	num, unit := strings.TrimSpace(v[:i]), strings.ToLower(v[i:])
	if num == "" {
		return 0, errors.New("is not a size")
	}
	var mult int64
	switch unit {
	case "", "b":
		mult = 1
	case "kib":
		mult = 1 << 10
	case "mib":
		mult = 1 << 20
	case "gib":
		mult = 1 << 30
	case "tib":
		mult = 1 << 40
	default:
		return 0, errors.New("has an unknown unit (B, KiB, MiB, GiB or TiB are understood)")
	}
	n, err := strconv.ParseInt(num, 10, 64)
	switch {
	case err != nil && errors.Is(err, strconv.ErrRange):
		return 0, errors.New("is too large")
	case err != nil:
		return 0, errors.New("is not a size")
	case n < 0:
		return 0, errors.New("is negative")
	case n > math.MaxInt64/mult:
		return 0, errors.New("is too large")
	}
	return n * mult, nil
}

// parseServiceURL validates an upstream base URL and trims the trailing '/' of its path, so
// the proxy can append route paths without doubling slashes.
func parseServiceURL(v string) (*url.URL, error) {
	// '?' and '#' only ever delimit a query or fragment, even empty ones url.Parse forgets.
	if strings.ContainsAny(v, "?#") {
		return nil, errors.New("has a query or fragment")
	}
	u, err := url.Parse(v)
	switch {
	case err != nil || !u.IsAbs() || u.Opaque != "":
		return nil, errors.New("is not an absolute URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("has scheme %q", u.Scheme)
	case u.User != nil:
		return nil, errors.New("contains credentials (user:password@), which are not allowed")
	}
	host, err := checkHost(u.Host)
	if err != nil {
		return nil, err
	}
	u.Host = host
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}

// parseOrigin validates a browser origin (scheme://host[:port], an optional trailing '/')
// and returns it the way browsers send it in the Origin header: lower-case, without a
// default port, without the slash. CORS matching is exact, so this is where it is made
// forgiving.
func parseOrigin(v string) (string, error) {
	if v == "*" {
		return "", errors.New("is a wildcard, refused because credentials are allowed")
	}
	if strings.ContainsAny(v, "?#") {
		return "", errors.New("has a query or fragment")
	}
	u, err := url.Parse(v)
	switch {
	case err != nil || !u.IsAbs() || u.Opaque != "":
		return "", errors.New("is not an origin")
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("has scheme %q", u.Scheme)
	case u.User != nil:
		return "", errors.New("contains credentials (user:password@), which are not allowed")
	case u.Path != "" && u.Path != "/":
		return "", errors.New("has a path")
	}
	host, err := checkHost(u.Host)
	if err != nil {
		return "", err
	}
	if u.Scheme == "http" {
		host = strings.TrimSuffix(host, ":80")
	} else {
		host = strings.TrimSuffix(host, ":443")
	}
	return u.Scheme + "://" + host, nil
}

// checkHost validates host[:port] as a DNS name, IPv4 address or bracketed IPv6 address
// with an optional port 1..65535 and returns it in lower case.
func checkHost(hostport string) (string, error) {
	if hostport == "" {
		return "", errors.New("has no host")
	}
	host, port, hasPort := hostport, "", false
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return "", errors.New("has an invalid host")
		}
		host = hostport[:end+1]
		switch rest := hostport[end+1:]; {
		case rest == "":
		case rest[0] == ':':
			port, hasPort = rest[1:], true
		default:
			return "", errors.New("has an invalid host")
		}
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", errors.New("has an invalid IPv6 host")
		}
	} else {
		if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
			host, port, hasPort = hostport[:i], hostport[i+1:], true
		}
		if !validHostName(host) {
			return "", errors.New("has an invalid host name")
		}
	}
	if hasPort {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '+' {
			return "", errors.New("has an invalid port")
		}
	}
	return strings.ToLower(hostport), nil
}

// validHostName reports whether h is made of dot-separated labels of letters, digits, '-'
// and '_' (the latter exists in the wild); it rules out wildcards and escapes.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i] | 0x20
			if !('a' <= c && c <= 'z' || '0' <= label[i] && label[i] <= '9' || label[i] == '-' || label[i] == '_') {
				return false
			}
		}
	}
	return true
}

// parseTrustedProxy reads one CIDR or bare IP; a bare IP is a single-address prefix.
// IPv4-mapped IPv6 forms are unmapped because the server sees IPv4 peers as IPv4.
func parseTrustedProxy(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, errors.New("is not a CIDR")
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, errors.New("is neither an IP address nor a CIDR")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkJWTSecret refuses keys an attacker could guess. The message never contains the key.
func checkJWTSecret(secret string) error {
	const expect = "expected at least 32 random bytes (e.g. from: openssl rand -base64 48)"
	lower := strings.ToLower(secret)
	for _, p := range jwtSecretPlaceholders {
		if strings.EqualFold(strings.TrimSpace(secret), p) {
			return fmt.Errorf("is a published placeholder, so anybody could forge tokens; %s", expect)
		}
	}
	for _, marker := range []string{"change_me", "changeme", "change-me"} {
		if strings.Contains(lower, marker) {
			return fmt.Errorf("contains %q, so it is a placeholder; %s", strings.ToUpper(marker), expect)
		}
	}
	if len(secret) < minJWTSecretBytes {
		return fmt.Errorf("is only %d bytes long; %s", len(secret), expect)
	}
	// Length alone lets "aaaa…a" through: a key of a few distinct bytes is guessed from a
	// tiny space whatever its length. Random keys of 32 bytes have about 30 distinct bytes
	// (base64 text about 25), so the bound only ever refuses hand-typed keys.
	if n := distinctBytes(secret); n < minJWTSecretDistinct {
		return fmt.Errorf("has only %d distinct bytes (at least %d are needed: a repeated pattern is guessable whatever its length); %s", n, minJWTSecretDistinct, expect)
	}
	return nil
}

// minJWTSecretDistinct is the fewest distinct bytes a JWT secret may have.
const minJWTSecretDistinct = 16

func distinctBytes(s string) int {
	var seen [256]bool
	n := 0
	for i := 0; i < len(s); i++ {
		if !seen[s[i]] {
			seen[s[i]] = true
			n++
		}
	}
	return n
}

// checkTrustedProxies refuses a list that trusts every address. With it, any client's
// X-Forwarded-For is believed, so the login limits key on whatever the client writes there
// and one attacker can rotate through fresh addresses for free. Single catch-all prefixes
// (0.0.0.0/0, ::/0, ::ffff:0:0/96) and lists whose union covers a whole address family
// (0.0.0.0/1 + 128.0.0.0/1) are both caught.
func checkTrustedProxies(ps []netip.Prefix) error {
	for _, p := range ps {
		if p.Bits() == 0 {
			return fmt.Errorf("%s trusts every address, so any client could forge X-Forwarded-For and choose the address its login failures count against", p)
		}
	}
	for _, v4 := range []bool{true, false} {
		if coversFamily(ps, v4) {
			family := "IPv6"
			if v4 {
				family = "IPv4"
			}
			return fmt.Errorf("together covers every %s address, so any client could forge X-Forwarded-For and choose the address its login failures count against", family)
		}
	}
	return nil
}

// coversFamily reports whether the union of ps covers every IPv4 (v4) or IPv6 address.
func coversFamily(ps []netip.Prefix, v4 bool) bool {
	type span struct{ lo, hi netip.Addr }
	var spans []span
	for _, p := range ps {
		if p.Addr().Is4() != v4 {
			continue
		}
		lo := p.Masked().Addr()
		hi := lo
		b := hi.AsSlice()
		for i := p.Bits(); i < len(b)*8; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		hi, _ = netip.AddrFromSlice(b)
		spans = append(spans, span{lo, hi})
	}
	slices.SortFunc(spans, func(a, b span) int { return a.lo.Compare(b.lo) })
	next := netip.IPv6Unspecified()
	if v4 {
		next = netip.IPv4Unspecified()
	}
	for _, s := range spans {
		if s.lo.Compare(next) > 0 {
			return false // a gap before s
		}
		if s.hi.Compare(next) >= 0 {
			if n := s.hi.Next(); n.IsValid() {
				next = n
			} else {
				return true // s reaches the last address of the family
			}
		}
	}
	return false
}

// checkPostgresName validates a user or database name: PostgreSQL identifiers are at most
// 63 bytes, and control characters only ever come from a broken manifest.
func checkPostgresName(v string) error {
	if len(v) > 63 {
		return fmt.Errorf("is %d bytes long; expected at most 63", len(v))
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return errors.New("contains a control character")
		}
	}
	return nil
}

// readDatabase fills the PostgreSQL settings; the password problem is left to the caller,
// which alone knows whether -dev may replace the database.
func (r *envReader) readDatabase(cfg *Config) (passwordSet bool) {
	cfg.PostgresUser, _ = r.get("GATEWAY_POSTGRES_USER")
	if err := checkPostgresName(cfg.PostgresUser); err != nil {
		r.fail("GATEWAY_POSTGRES_USER", "%v; expected a PostgreSQL role name", err)
	}
	cfg.PostgresPassword, passwordSet = r.get("GATEWAY_POSTGRES_PASSWORD")

	const serverName = "GATEWAY_POSTGRES_SERVER"
	cfg.PostgresServer, _ = r.get(serverName)
	if _, err := netip.ParseAddr(cfg.PostgresServer); err != nil && !validHostName(cfg.PostgresServer) {
		r.fail(serverName, "%s is not a host name or IP address; expected e.g. localhost or postgresql.nyro-develop.svc.cluster.local", show(cfg.PostgresServer))
	}
	cfg.PostgresPort, _ = r.integer("GATEWAY_POSTGRES_PORT", 1, 65535, "a TCP port from 1 to 65535")
	cfg.PostgresDB, _ = r.get("GATEWAY_POSTGRES_DB")
	if err := checkPostgresName(cfg.PostgresDB); err != nil {
		r.fail("GATEWAY_POSTGRES_DB", "%v; expected a PostgreSQL database name", err)
	}
	cfg.DBTimeout, _ = r.duration("GATEWAY_DB_TIMEOUT", time.Millisecond, time.Minute,
		`a duration from 1ms to 1m, e.g. "2s"`)

	const modeExpect = "disable, allow, prefer, require, verify-ca or verify-full"
	mode, _ := r.get("GATEWAY_POSTGRES_SSLMODE")
	switch mode = strings.ToLower(mode); mode {
	case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
		cfg.PostgresSSLMode = mode
	default:
		r.fail("GATEWAY_POSTGRES_SSLMODE", "%s is not an sslmode; expected %s", show(mode), modeExpect)
	}
	if path, set := r.get("GATEWAY_POSTGRES_SSLROOTCERT"); set {
		switch {
		case !strings.HasPrefix(path, "/"):
			r.fail("GATEWAY_POSTGRES_SSLROOTCERT", "%s is not an absolute path; expected the path of a PEM file, e.g. /etc/atenex/postgres-ca/ca.crt", show(path))
		case cfg.PostgresSSLMode == "disable":
			r.fail("GATEWAY_POSTGRES_SSLROOTCERT", "is set but GATEWAY_POSTGRES_SSLMODE is disable; expected verify-full (or verify-ca) to use it, or leave it unset")
		default:
			cfg.PostgresSSLRootCert = path
		}
	}
	return passwordSet
}

// loadDatabaseConfig validates only what the database needs (GATEWAY_POSTGRES_* and
// GATEWAY_DB_TIMEOUT), for the migrate and operator subcommands, which must run without a
// JWT secret.
func loadDatabaseConfig(getenv func(string) string) (*Config, error) {
	r := &envReader{getenv: getenv}
	cfg := &Config{}
	if !r.readDatabase(cfg) {
		r.fail("GATEWAY_POSTGRES_PASSWORD", "is not set; expected the PostgreSQL password (an empty one is refused)")
	}
	if err := r.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// loadConfig reads and validates every setting through getenv ("" means unset). The error
// joins one line per problem, each naming its variable and never showing a secret. With
// dev, a missing JWT secret, PostgreSQL password or upstream URL is replaced by a
// development shortcut recorded in DevShortcuts; without dev none of them can happen.
func loadConfig(getenv func(string) string, dev bool) (*Config, error) {
	r := &envReader{getenv: getenv}
	cfg := &Config{Dev: dev}

	port, portOK := r.integer("PORT", 1, 65535, "a TCP port from 1 to 65535")
	cfg.Port = port

	switch v, _ := r.get("GATEWAY_LOG_LEVEL"); strings.ToUpper(v) {
	case "DEBUG":
		cfg.LogLevel = slog.LevelDebug
	case "INFO":
		cfg.LogLevel = slog.LevelInfo
	case "WARNING", "WARN":
		cfg.LogLevel = slog.LevelWarn
	case "ERROR":
		cfg.LogLevel = slog.LevelError
	default:
		r.fail("GATEWAY_LOG_LEVEL", "%s is not a log level; expected DEBUG, INFO, WARNING (or WARN) or ERROR", show(v))
	}

	// Upstreams: in -dev an unset URL means the built-in echo upstream, not the cluster default.
	for _, up := range []struct {
		name, what string
		dst        **url.URL
	}{
		{"GATEWAY_INGEST_SERVICE_URL", "ingest", &cfg.IngestURL},
		{"GATEWAY_QUERY_SERVICE_URL", "query", &cfg.QueryURL},
	} {
		if dev && strings.TrimSpace(r.getenv(up.name)) == "" {
			cfg.DevShortcuts = append(cfg.DevShortcuts, fmt.Sprintf(
				"built-in echo upstream for %s (%s unset)", up.what, up.name))
			continue
		}
		*up.dst, _ = r.serviceURL(up.name)
	}
	cfg.AuthURL, _ = r.serviceURL("GATEWAY_AUTH_SERVICE_URL")

	switch secret, set := r.get("GATEWAY_JWT_SECRET"); {
	case set:
		if err := checkJWTSecret(secret); err != nil {
			r.fail("GATEWAY_JWT_SECRET", "%v", err)
		} else {
			cfg.JWTSecret = []byte(secret)
		}
	case dev:
		cfg.JWTSecret = make([]byte, minJWTSecretBytes)
		if _, err := rand.Read(cfg.JWTSecret); err != nil {
			return nil, fmt.Errorf("generate development JWT secret: %w", err)
		}
		cfg.DevShortcuts = append(cfg.DevShortcuts,
			"ephemeral JWT secret: tokens die with the process (GATEWAY_JWT_SECRET unset)")
	default:
		r.fail("GATEWAY_JWT_SECRET", "is not set; expected at least 32 random bytes (e.g. from: openssl rand -base64 48), or run with -dev for an ephemeral one")
	}
	if v, _ := r.get("GATEWAY_JWT_ALGORITHM"); v != "HS256" {
		r.fail("GATEWAY_JWT_ALGORITHM", "%s is not supported; expected HS256", show(v))
	}
	if m, ok := r.integer("GATEWAY_JWT_EXPIRE_MINUTES", 1, 525600, "minutes from 1 to 525600 (one year)"); ok {
		cfg.JWTExpire = time.Duration(m) * time.Minute
	}

	switch passwordSet := r.readDatabase(cfg); {
	case passwordSet:
	case dev:
		cfg.UseMemoryStore = true
		cfg.DevShortcuts = append(cfg.DevShortcuts,
			"in-memory user store with a demo company and user (GATEWAY_POSTGRES_PASSWORD unset)")
	default:
		r.fail("GATEWAY_POSTGRES_PASSWORD", "is not set; expected the PostgreSQL password (an empty one is refused), or run with -dev for an in-memory store")
	}

	if v, set := r.get("GATEWAY_DEFAULT_COMPANY_ID"); set {
		if isUUID(v) {
			cfg.DefaultCompanyID = strings.ToLower(v)
		} else {
			r.fail("GATEWAY_DEFAULT_COMPANY_ID", "%s is not a UUID; expected a company id like 0f8fad5b-d9cb-469f-a165-70867728950e, or leave it unset", show(v))
		}
	}

	cfg.HTTPClientTimeout, _ = r.duration("GATEWAY_HTTP_CLIENT_TIMEOUT", time.Millisecond, time.Hour,
		`seconds greater than 0 and at most 3600, e.g. "60" or "2.5"`)
	maxConns, connsOK := r.integer("GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS", 1, 100000, "a whole number from 1 to 100000")
	cfg.MaxConnsPerHost = maxConns
	if idle, ok := r.integer("GATEWAY_HTTP_CLIENT_MAX_KEEPALIVE_CONNECTIONS", 0, 100000, "a whole number from 0 to GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS"); ok {
		cfg.MaxIdleConnsPerHost = idle
		if connsOK && idle > maxConns {
			r.fail("GATEWAY_HTTP_CLIENT_MAX_KEEPALIVE_CONNECTIONS", "%d is more than GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS (%d); expected at most that", idle, maxConns)
		}
	}

	const originExpect = "an origin such as https://app.example.com (scheme, host, optional port, nothing else)"
	if v, set := r.get("VERCEL_FRONTEND_URL"); set {
		if o, err := parseOrigin(v); err != nil {
			r.fail("VERCEL_FRONTEND_URL", "%s %v; expected %s", showURL(v), err, originExpect)
		} else {
			cfg.VercelFrontendURL = o
		}
	}
	if v, _ := r.get("GATEWAY_CORS_ALLOWED_ORIGINS"); v != "" {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			o, err := parseOrigin(item)
			if err != nil {
				r.fail("GATEWAY_CORS_ALLOWED_ORIGINS", "item %s %v; expected comma-separated exact origins, each %s", showURL(item), err, originExpect)
				continue
			}
			if !containsString(cfg.CORSAllowedOrigins, o) {
				cfg.CORSAllowedOrigins = append(cfg.CORSAllowedOrigins, o)
			}
		}
	}

	cfg.UserCacheTTL, _ = r.duration("GATEWAY_USER_CACHE_TTL", 0, time.Minute,
		`a duration from 0 (check every request) to 60s, e.g. "60s"`)
	cfg.UserStaleIfError, _ = r.duration("GATEWAY_USER_CACHE_STALE_IF_ERROR", 0, 24*time.Hour,
		`a duration from 0 (off) to 24h, e.g. "10m"`)
	cfg.SessionMaxAge, _ = r.duration("GATEWAY_SESSION_MAX_AGE", time.Minute, 8760*time.Hour,
		`a duration from 1m to 8760h (one year), e.g. "168h"`)
	if p, ok := r.integer("GATEWAY_ADMIN_PORT", 0, 65535, "a TCP port from 1 to 65535, or 0 to disable the admin listener"); ok {
		cfg.AdminPort = p
		if p != 0 && portOK && p == port {
			r.fail("GATEWAY_ADMIN_PORT", "%d is also PORT; expected a different port (metrics and pprof never share the public listener), or 0 to disable", p)
		}
	}
	docs, _ := r.get("GATEWAY_DOCS")
	var docsErr error
	if cfg.Docs, docsErr = strconv.ParseBool(docs); docsErr != nil {
		r.fail("GATEWAY_DOCS", "%s is not a boolean; expected true or false", show(docs))
	}
	grace, graceOK := r.duration("GATEWAY_SHUTDOWN_GRACE", time.Second, 10*time.Minute,
		`a duration from 1s to 10m, e.g. "25s"`)
	cfg.ShutdownGrace = grace
	if d, ok := r.duration("GATEWAY_DRAIN_DELAY", 0, 10*time.Minute, `a duration shorter than GATEWAY_SHUTDOWN_GRACE, e.g. "10s"`); ok {
		cfg.DrainDelay = d
		if graceOK && d >= grace {
			r.fail("GATEWAY_DRAIN_DELAY", "%v is not shorter than GATEWAY_SHUTDOWN_GRACE (%v); expected a shorter delay so in-flight requests still get time to finish", d, grace)
		}
	}
	cfg.ReadHeaderTimeout, _ = r.duration("GATEWAY_READ_HEADER_TIMEOUT", time.Millisecond, 5*time.Minute,
		`a duration from 1ms to 5m, e.g. "10s"`)
	cfg.IdleTimeout, _ = r.duration("GATEWAY_IDLE_TIMEOUT", time.Millisecond, time.Hour,
		`a duration from 1ms to 1h, e.g. "120s"`)
	cfg.MaxBodyBytes, _ = r.size("GATEWAY_MAX_BODY_BYTES", 1<<10, 1<<20, false,
		"a size from 1KiB to 1MiB, in bytes or with a unit (e.g. 16384 or 16KiB)")

	if v, _ := r.get("GATEWAY_TRUSTED_PROXIES"); v != "" {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			p, err := parseTrustedProxy(item)
			if err != nil {
				r.fail("GATEWAY_TRUSTED_PROXIES", "item %s %v; expected comma-separated CIDRs or IP addresses, e.g. 10.0.0.0/8, 192.168.1.5", show(item), err)
				continue
			}
			cfg.TrustedProxies = append(cfg.TrustedProxies, p)
		}
		if err := checkTrustedProxies(cfg.TrustedProxies); err != nil {
			r.fail("GATEWAY_TRUSTED_PROXIES", "%v; expected the addresses your ingress or load balancer connects from, e.g. 10.244.0.0/16", err)
		}
	}

	const burstExpect = "a whole number from 0 (limit off) to 1000000"
	const perMinuteExpect = "failed logins per minute, from 0.01 to 1000000 (set the burst to 0 to turn the limit off)"
	cfg.LoginIPBurst, _ = r.integer("GATEWAY_LOGIN_IP_BURST", 0, 1000000, burstExpect)
	cfg.LoginIPPerMinute, _ = r.number("GATEWAY_LOGIN_IP_PER_MINUTE", 0.01, 1000000, perMinuteExpect)
	cfg.LoginEmailBurst, _ = r.integer("GATEWAY_LOGIN_EMAIL_BURST", 0, 1000000, burstExpect)
	cfg.LoginEmailPerMinute, _ = r.number("GATEWAY_LOGIN_EMAIL_PER_MINUTE", 0.01, 1000000, perMinuteExpect)
	cfg.BcryptQueueWait, _ = r.duration("GATEWAY_BCRYPT_QUEUE_WAIT", 0, 30*time.Second,
		`a duration from 0 to 30s, e.g. "1s"`)

	cfg.CompanyRPS, _ = r.number("GATEWAY_RATE_LIMIT_COMPANY_RPS", 0, 1000000,
		"requests per second from 0 (limit off) to 1000000")
	cfg.CompanyBurst, _ = r.integer("GATEWAY_RATE_LIMIT_COMPANY_BURST", 0, 1000000,
		"a whole number from 0 (one second's worth of GATEWAY_RATE_LIMIT_COMPANY_RPS) to 1000000")
	if cfg.CompanyBurst == 0 && cfg.CompanyRPS > 0 {
		// A bucket smaller than one second's allowance would refuse a steady client.
		cfg.CompanyBurst = int(math.Ceil(cfg.CompanyRPS))
	}

	if v, _ := r.get("GATEWAY_GC_PERCENT"); strings.EqualFold(v, "off") {
		cfg.GCPercent = -1
	} else {
		cfg.GCPercent, _ = r.integer("GATEWAY_GC_PERCENT", -1, 10000, "a percentage from -1 (off) to 10000, like GOGC")
	}
	// auto is resolved at start (applyRuntimeLimits): it reads the container's cgroup, and
	// always ends with a limit, so it never leaves a collector that is off unbounded.
	if v, _ := r.get("GATEWAY_MEMORY_LIMIT"); strings.EqualFold(v, "auto") {
		cfg.MemoryLimitAuto = true
	} else if limit, ok := r.size("GATEWAY_MEMORY_LIMIT", 1<<20, math.MaxInt64, true,
		"auto, 0 (none) or a size of at least 1MiB, in bytes or with a unit (e.g. 512MiB or 1GiB)"); ok {
		cfg.MemoryLimit = limit
		if limit == 0 && cfg.GCPercent == -1 {
			r.fail("GATEWAY_GC_PERCENT", "-1 turns the garbage collector off and GATEWAY_MEMORY_LIMIT is 0, so memory would grow without bound; expected a percentage, or set GATEWAY_MEMORY_LIMIT")
		}
	}

	r.readTracing(cfg)
	r.readEdge(cfg, dev, maxConns, connsOK)

	if err := r.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// readEdge reads the settings that keep the edge standing under abuse (SPEC §8).
func (r *envReader) readEdge(cfg *Config, dev bool, maxConnsPerHost int, connsOK bool) {
	const burstExpect = "a whole number from 0 (limit off) to 1000000"
	cfg.LoginGlobalBurst, _ = r.integer("GATEWAY_LOGIN_GLOBAL_BURST", 0, 1000000, burstExpect)
	cfg.LoginGlobalPerMinute, _ = r.number("GATEWAY_LOGIN_GLOBAL_PER_MINUTE", 0.01, 1000000,
		"failed logins per minute, from 0.01 to 1000000 (set the burst to 0 to turn the limit off)")

	cfg.ProxyIdleTimeout, _ = r.duration("GATEWAY_PROXY_IDLE_TIMEOUT", time.Millisecond, time.Hour,
		`a duration from 1ms to 1h, e.g. "30s"`)
	cfg.UpstreamQueueWait, _ = r.duration("GATEWAY_UPSTREAM_QUEUE_WAIT", 0, time.Minute,
		`a duration from 0 to 1m, e.g. "5s"`)

	const inflightExpect = "a whole number from 0 (cap off) to GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS"
	if _, set := r.get("GATEWAY_COMPANY_MAX_INFLIGHT"); !set {
		// Half the pool: one company may use a lot of it, never all of it.
		cfg.CompanyMaxInflight = max(maxConnsPerHost/2, 1)
	} else if n, ok := r.integer("GATEWAY_COMPANY_MAX_INFLIGHT", 0, 100000, inflightExpect); ok {
		cfg.CompanyMaxInflight = n
		if connsOK && n > maxConnsPerHost {
			r.fail("GATEWAY_COMPANY_MAX_INFLIGHT", "%d is more than GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS (%d), so one company could hold every upstream connection; expected at most that, or 0 to turn the cap off", n, maxConnsPerHost)
		}
	}
	cfg.MaxConnections, _ = r.integer("GATEWAY_MAX_CONNECTIONS", 0, 1000000,
		"a whole number from 16 to 1000000, or 0 for no cap")
	if n := cfg.MaxConnections; n > 0 && n < 16 {
		r.fail("GATEWAY_MAX_CONNECTIONS", "%d is too few to serve a load balancer's keep-alive pool; expected at least 16, or 0 for no cap", n)
	}

	cfg.ForwardCredentials, _ = r.boolean("GATEWAY_PROXY_FORWARD_CREDENTIALS")
	cfg.PProf, _ = r.boolean("GATEWAY_PPROF")

	// The frontend's dev server is on localhost; a production gateway allowing it would let
	// any page a user's machine serves there call the API with their credentials.
	if allow, set := r.boolean("GATEWAY_CORS_ALLOW_LOCALHOST"); set {
		cfg.CORSAllowLocalhost = allow
	} else {
		cfg.CORSAllowLocalhost = dev
	}
	if team, set := r.get("GATEWAY_CORS_VERCEL_TEAM"); set {
		team = strings.ToLower(team)
		if len(team) > 48 || !validDNSLabel(team) {
			r.fail("GATEWAY_CORS_VERCEL_TEAM", "%s is not a Vercel team slug; expected lower-case letters, digits and '-', as in https://<project>-<hash>-<team>.vercel.app", show(team))
		} else {
			cfg.CORSVercelTeam = team
		}
	}
}

// boolean reads a true/false setting (also 1/0, yes/no, on/off, in any letter case); set
// reports whether it was given.
func (r *envReader) boolean(name string) (value, set bool) {
	v, set := r.get(name)
	if !set && v == "" {
		return false, false
	}
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on":
		return true, set
	case "false", "0", "no", "off":
		return false, set
	}
	r.fail(name, "%s is not a boolean; expected true or false", show(v))
	return false, set
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// LogValue renders the effective configuration for the start-up log line, keyed by variable
// name. Secrets are masked: the JWT secret shows only its length, the password only "***".
func (c *Config) LogValue() slog.Value {
	if c == nil {
		return slog.StringValue("<nil>")
	}
	upstream := func(u *url.URL) string {
		if u == nil {
			return "built-in echo upstream"
		}
		return u.String()
	}
	auth := "unset (auth routes answer 404)"
	if c.AuthURL != nil {
		auth = c.AuthURL.String()
	}
	secret := "unset"
	if len(c.JWTSecret) > 0 {
		secret = fmt.Sprintf("set (%d bytes)", len(c.JWTSecret))
	}
	password := "***"
	if c.PostgresPassword == "" {
		password = "unset"
	}
	proxies := make([]string, len(c.TrustedProxies))
	for i, p := range c.TrustedProxies {
		proxies[i] = p.String()
	}
	origins := c.CORSAllowedOrigins
	if origins == nil {
		origins = []string{}
	}
	store := "postgres"
	if c.UseMemoryStore {
		store = "memory"
	}
	return slog.GroupValue(
		slog.Bool("dev", c.Dev),
		slog.Int("PORT", c.Port),
		slog.String("GATEWAY_LOG_LEVEL", c.LogLevel.String()),
		slog.String("GATEWAY_INGEST_SERVICE_URL", upstream(c.IngestURL)),
		slog.String("GATEWAY_QUERY_SERVICE_URL", upstream(c.QueryURL)),
		slog.String("GATEWAY_AUTH_SERVICE_URL", auth),
		slog.String("GATEWAY_JWT_SECRET", secret),
		slog.String("GATEWAY_JWT_ALGORITHM", "HS256"),
		slog.Int64("GATEWAY_JWT_EXPIRE_MINUTES", int64(c.JWTExpire/time.Minute)),
		slog.String("store", store),
		slog.String("GATEWAY_POSTGRES_USER", c.PostgresUser),
		slog.String("GATEWAY_POSTGRES_PASSWORD", password),
		slog.String("GATEWAY_POSTGRES_SERVER", c.PostgresServer),
		slog.Int("GATEWAY_POSTGRES_PORT", c.PostgresPort),
		slog.String("GATEWAY_POSTGRES_DB", c.PostgresDB),
		slog.String("GATEWAY_DEFAULT_COMPANY_ID", c.DefaultCompanyID),
		slog.String("GATEWAY_HTTP_CLIENT_TIMEOUT", c.HTTPClientTimeout.String()),
		slog.Int("GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS", c.MaxConnsPerHost),
		slog.Int("GATEWAY_HTTP_CLIENT_MAX_KEEPALIVE_CONNECTIONS", c.MaxIdleConnsPerHost),
		slog.String("VERCEL_FRONTEND_URL", c.VercelFrontendURL),
		slog.Any("GATEWAY_CORS_ALLOWED_ORIGINS", origins),
		slog.String("GATEWAY_DB_TIMEOUT", c.DBTimeout.String()),
		slog.String("GATEWAY_USER_CACHE_TTL", c.UserCacheTTL.String()),
		slog.String("GATEWAY_USER_CACHE_STALE_IF_ERROR", c.UserStaleIfError.String()),
		slog.String("GATEWAY_SESSION_MAX_AGE", c.SessionMaxAge.String()),
		slog.Int("GATEWAY_ADMIN_PORT", c.AdminPort),
		slog.Bool("GATEWAY_DOCS", c.Docs),
		slog.String("GATEWAY_SHUTDOWN_GRACE", c.ShutdownGrace.String()),
		slog.String("GATEWAY_DRAIN_DELAY", c.DrainDelay.String()),
		slog.String("GATEWAY_READ_HEADER_TIMEOUT", c.ReadHeaderTimeout.String()),
		slog.String("GATEWAY_IDLE_TIMEOUT", c.IdleTimeout.String()),
		slog.Int64("GATEWAY_MAX_BODY_BYTES", c.MaxBodyBytes),
		slog.Any("GATEWAY_TRUSTED_PROXIES", proxies),
		slog.Int("GATEWAY_LOGIN_IP_BURST", c.LoginIPBurst),
		slog.Float64("GATEWAY_LOGIN_IP_PER_MINUTE", c.LoginIPPerMinute),
		slog.Int("GATEWAY_LOGIN_EMAIL_BURST", c.LoginEmailBurst),
		slog.Float64("GATEWAY_LOGIN_EMAIL_PER_MINUTE", c.LoginEmailPerMinute),
		slog.String("GATEWAY_BCRYPT_QUEUE_WAIT", c.BcryptQueueWait.String()),
		slog.Float64("GATEWAY_RATE_LIMIT_COMPANY_RPS", c.CompanyRPS),
		slog.Int("GATEWAY_RATE_LIMIT_COMPANY_BURST", c.CompanyBurst),
		slog.Int("GATEWAY_GC_PERCENT", c.GCPercent),
		slog.String("GATEWAY_MEMORY_LIMIT", memoryLimitText(c)),
		slog.String("GATEWAY_OTLP_ENDPOINT", c.otlpEndpointText()),
		slog.String("GATEWAY_OTLP_HEADERS", c.otlpHeadersText()),
		slog.Float64("GATEWAY_TRACE_SAMPLE_RATIO", c.TraceSampleRatio),
		slog.Int("GATEWAY_LOGIN_GLOBAL_BURST", c.LoginGlobalBurst),
		slog.Float64("GATEWAY_LOGIN_GLOBAL_PER_MINUTE", c.LoginGlobalPerMinute),
		slog.String("GATEWAY_PROXY_IDLE_TIMEOUT", c.ProxyIdleTimeout.String()),
		slog.String("GATEWAY_UPSTREAM_QUEUE_WAIT", c.UpstreamQueueWait.String()),
		slog.Int("GATEWAY_COMPANY_MAX_INFLIGHT", c.CompanyMaxInflight),
		slog.Int("GATEWAY_MAX_CONNECTIONS", c.MaxConnections),
		slog.Bool("GATEWAY_PROXY_FORWARD_CREDENTIALS", c.ForwardCredentials),
		slog.Bool("GATEWAY_PPROF", c.PProf),
		slog.String("GATEWAY_POSTGRES_SSLMODE", c.PostgresSSLMode),
		slog.String("GATEWAY_POSTGRES_SSLROOTCERT", c.PostgresSSLRootCert),
		slog.Bool("GATEWAY_CORS_ALLOW_LOCALHOST", c.CORSAllowLocalhost),
		slog.String("GATEWAY_CORS_VERCEL_TEAM", c.CORSVercelTeam),
	)
}

// memoryLimitText renders GATEWAY_MEMORY_LIMIT for the start-up log: "auto" (the value it
// resolves to is logged beside it, on the "runtime" line) or the configured bytes.
func memoryLimitText(c *Config) string {
	if c.MemoryLimitAuto {
		return "auto"
	}
	return strconv.FormatInt(c.MemoryLimit, 10)
}

// maxDotEnvBytes bounds the .env file: it holds a few dozen settings, never megabytes.
const maxDotEnvBytes = 1 << 20

// Problems parseDotEnv reports. They are fixed strings on purpose: a malformed line may be a
// secret pasted in the wrong place, so no part of it is ever echoed.
const (
	dotEnvNoEquals       = "expected KEY=VALUE"
	dotEnvBadName        = "invalid variable name (letters, digits and '_', not starting with a digit)"
	dotEnvUnterminated   = "unterminated quoted value"
	dotEnvAfterQuote     = "unexpected text after the closing quote"
	dotEnvNUL            = "contains a NUL byte"
	dotEnvFileTooLarge   = "file larger than 1 MiB"
	dotEnvFileLineNumber = 0 // Line of a problem that concerns the whole file
)

// dotEnvError is a malformed .env line: its number and a fixed description.
type dotEnvError struct {
	Line    int
	Problem string
}

func (e *dotEnvError) Error() string {
	if e.Line == dotEnvFileLineNumber {
		return e.Problem
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Problem)
}

// parseDotEnv reads a .env file: KEY=VALUE lines, an optional "export " prefix, blank lines
// and '#' comments. A value is either double-quoted (escapes \n, \" and \\; any other
// backslash is kept), single-quoted (taken literally), or bare (a " #" starts a comment;
// surrounding spaces are trimmed). Nothing is expanded. A later KEY wins over an earlier one.
func parseDotEnv(data []byte) (map[string]string, error) {
	if len(data) > maxDotEnvBytes {
		return nil, &dotEnvError{Line: dotEnvFileLineNumber, Problem: dotEnvFileTooLarge}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte-order mark from Windows editors
	env := map[string]string{}
	for n := 1; len(data) > 0; n++ {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		key, value, problem := parseDotEnvLine(string(line))
		if problem != "" {
			return nil, &dotEnvError{Line: n, Problem: problem}
		}
		if key != "" {
			env[key] = value
		}
	}
	return env, nil
}

// parseDotEnvLine parses one line; an empty key means a blank or comment line.
func parseDotEnvLine(line string) (key, value, problem string) {
	if strings.IndexByte(line, 0) >= 0 {
		return "", "", dotEnvNUL
	}
	line = strings.TrimSuffix(line, "\r")
	line = strings.TrimLeft(line, " \t")
	if line == "" || line[0] == '#' {
		return "", "", ""
	}
	if rest, ok := strings.CutPrefix(line, "export"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
		line = strings.TrimLeft(rest, " \t")
	}
	key, raw, ok := strings.Cut(line, "=")
	if !ok {
		return "", "", dotEnvNoEquals
	}
	key = strings.TrimRight(key, " \t")
	if !validEnvName(key) {
		return "", "", dotEnvBadName
	}
	spaced := raw != "" && (raw[0] == ' ' || raw[0] == '\t')
	raw = strings.TrimLeft(raw, " \t")
	switch {
	case strings.HasPrefix(raw, `"`):
		var b strings.Builder
		i := 1
		for ; i < len(raw) && raw[i] != '"'; i++ {
			if raw[i] == '\\' && i+1 < len(raw) {
				switch raw[i+1] {
				case 'n':
					b.WriteByte('\n')
					i++
					continue
				case '"', '\\':
					b.WriteByte(raw[i+1])
					i++
					continue
				}
			}
			b.WriteByte(raw[i])
		}
		if i >= len(raw) {
			return "", "", dotEnvUnterminated
		}
		if !onlyComment(raw[i+1:]) {
			return "", "", dotEnvAfterQuote
		}
		return key, b.String(), ""
	case strings.HasPrefix(raw, "'"):
		end := strings.IndexByte(raw[1:], '\'')
		if end < 0 {
			return "", "", dotEnvUnterminated
		}
		if !onlyComment(raw[1+end+1:]) {
			return "", "", dotEnvAfterQuote
		}
		return key, raw[1 : 1+end], ""
	}
	if spaced && strings.HasPrefix(raw, "#") { // KEY= # comment
		return key, "", ""
	}
	for i := 1; i < len(raw); i++ {
		if raw[i] == '#' && (raw[i-1] == ' ' || raw[i-1] == '\t') {
			raw = raw[:i]
			break
		}
	}
	return key, strings.TrimSpace(raw), ""
}

// onlyComment reports whether what follows a closing quote is blank or a comment.
func onlyComment(s string) bool {
	s = strings.TrimLeft(s, " \t")
	return s == "" || s[0] == '#'
}

// validEnvName reports whether s is a portable environment variable name.
func validEnvName(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// readDotEnv reads and parses the .env file at path; a missing file is an empty map.
func readDotEnv(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	env, err := parseDotEnv(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return env, nil
}

// layeredGetenv looks a name up in the real environment first and in the .env values
// second: a deployment overrides a developer's file, never the reverse.
func layeredGetenv(getenv func(string) string, dotenv map[string]string) func(string) string {
	return func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return dotenv[name]
	}
}
