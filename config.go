// config.go: every setting of the gateway, one row each: name, default, doc and parser.
package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the validated configuration; settingsOf says which variable fills each field.
type Config struct {
	Dev          bool     // -dev flag: development shortcuts allowed
	DevShortcuts []string // each development shortcut taken, to be announced at WARN

	Port, AdminPort int
	LogLevel        slog.Level
	Docs, PProf     bool

	// Upstreams is each upstreamServices row's base URL by name; absent: an optional service
	// left unset (its routes answer 404), or in -dev the built-in echo upstream.
	Upstreams map[string]*url.URL

	JWTSecret                []byte
	JWTExpire, SessionMaxAge time.Duration

	PostgresUser, PostgresPassword, PostgresServer, PostgresDB string
	PostgresPort                                               int
	PostgresSSLMode, PostgresSSLRootCert                       string // sslmode "" = prefer, for configurations built by hand
	UseMemoryStore                                             bool   // only in -dev when no PostgreSQL password is configured
	DBTimeout, UserCacheTTL, UserStaleIfError                  time.Duration
	DefaultCompanyID                                           string // "" or a canonical lower-case UUID

	HTTPClientTimeout, UpstreamQueueWait, ProxyIdleTimeout   time.Duration
	MaxConnsPerHost, MaxIdleConnsPerHost, CompanyMaxInflight int
	ForwardCredentials                                       bool
	CompanyRPS                                               float64
	CompanyBurst                                             int

	VercelFrontendURL  string   // "" or an origin (scheme://host[:port])
	CORSAllowedOrigins []string // exact origins
	CORSAllowLocalhost bool
	CORSVercelTeam     string

	ShutdownGrace, DrainDelay, ReadHeaderTimeout, IdleTimeout time.Duration
	MaxBodyBytes                                              int64
	MaxConnections                                            int
	TrustedProxies                                            []netip.Prefix

	LoginIPBurst, LoginEmailBurst, LoginGlobalBurst             int
	LoginIPPerMinute, LoginEmailPerMinute, LoginGlobalPerMinute float64
	BcryptQueueWait                                             time.Duration

	GCPercent       int
	MemoryLimit     int64 // bytes (0 = none); unused when MemoryLimitAuto
	MemoryLimitAuto bool  // resolved at start, see memlimit.go

	OTLPEndpoint     *url.URL // nil = no span export
	OTLPHeaders      []otlpHeader
	TraceSampleRatio float64
}

// setting is one row of the configuration table; like a flag.Value, parse stores into a field.
type setting struct {
	Name, Default, Doc string // Default "" = none
	Required           bool   // must be provided outside -dev
	Secret             bool   // masked in logs, kept in the Kubernetes Secret rather than the ConfigMap
	Database           bool   // also read by loadDatabaseConfig

	parse func(v string) error // v is the value or the default, never ""
	show  func() slog.Value
}

func bind[T any](p *T, name, def, doc string, parse func(string) (T, error), show func(T) slog.Value) setting {
	return setting{Name: name, Default: def, Doc: doc,
		parse: func(v string) (err error) { *p, err = parse(v); return err },
		show:  func() slog.Value { return show(*p) }}
}

// ranged makes a row whose value, read by parse, must lie in lo..hi; expect ends each problem.
func ranged[T int64 | float64 | time.Duration](p *T, name, def string, lo, hi T, expect, doc string, parse func(string) (T, error), log func(T) slog.Value) setting {
	parse = explain(parse, show, expect)
	return bind(p, name, def, doc, func(v string) (T, error) {
		x, err := parse(v)
		if err == nil && (x < lo || x > hi) {
			return 0, fmt.Errorf("%s is out of range; expected %s", show(v), expect)
		}
		return x, err
	}, log)
}

func intRow(p *int, name, def string, lo, hi int, expect, doc string) setting {
	return bind(p, name, def, doc, func(v string) (int, error) { return parseInt(v, lo, hi, expect) }, slog.IntValue)
}

func floatRow(p *float64, name, def string, lo, hi float64, expect, doc string) setting {
	return ranged(p, name, def, lo, hi, expect, doc, func(v string) (float64, error) {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, errors.New("is not a number")
		}
		return f, nil
	}, slog.Float64Value)
}

func durationRow(p *time.Duration, name, def string, lo, hi time.Duration, expect, doc string) setting {
	return ranged(p, name, def, lo, hi, expect, doc, parseDuration, func(d time.Duration) slog.Value { return slog.StringValue(d.String()) })
}

// boolRow reads true/false, also 1/0, yes/no, on/off, in any letter case.
func boolRow(p *bool, name, def, doc string) setting {
	return bind(p, name, def, doc, func(v string) (bool, error) {
		switch strings.ToLower(v) {
		case "true", "1", "yes", "on":
			return true, nil
		case "false", "0", "no", "off":
			return false, nil
		}
		return false, fmt.Errorf("%s is not a boolean; expected true or false", show(v))
	}, slog.BoolValue)
}

func stringRow(p *string, name, def, doc string, check func(string) (string, error)) setting {
	return bind(p, name, def, doc, check, slog.StringValue)
}

// checkedRow keeps v, put in normal form by norm (nil: as given), when ok accepts it.
func checkedRow(p *string, name, def, doc string, norm func(string) string, ok func(string) bool, problem string) setting {
	return stringRow(p, name, def, doc, func(v string) (string, error) {
		if norm != nil {
			v = norm(v)
		}
		if !ok(v) {
			return "", fmt.Errorf("%s %s", show(v), problem)
		}
		return v, nil
	})
}

var parseBaseURL = explain(parseServiceURL, showURL, "an absolute http or https URL such as http://query-service:80")

func showBaseURL(u *url.URL, unset string) slog.Value {
	if u == nil {
		return slog.StringValue(unset)
	}
	return slog.StringValue(u.String())
}

// upstreamService is one backend: its URL setting, its -dev stand-in and the paths that reach it.
type upstreamService struct {
	name, setting, defaultURL, doc string
	devEcho                        bool // in -dev, unset means the built-in echo upstream; otherwise unset answers 404
	auth                           routeAuth
	routes                         []upstreamRoute
}

// upstreamRoute maps the gateway paths under gatewayPrefix to upstreamPrefix on the service.
type upstreamRoute struct {
	gatewayPrefix, upstreamPrefix string
	patterns                      []string
}

// upstreamServices: adding a backend is a row here (and its test); its setting, -dev echo and
// routes all come from the row.
var upstreamServices = []upstreamService{
	{name: "ingest", setting: "GATEWAY_INGEST_SERVICE_URL", defaultURL: "http://ingest-api-service.nyro-develop.svc.cluster.local:80",
		doc:     "base URL of the Ingest service (absolute http/https); in -dev, unset means a built-in echo upstream",
		devEcho: true, auth: authStrict, routes: []upstreamRoute{
			{"/api/v1/ingest/", "/api/v1/ingest/", []string{"/api/v1/ingest/{path...}", "/api/v1/ingest"}},
			// The document statistics live on the ingest service; only the one path is routed.
			{"/api/v1/documents/", "/api/v1/ingest/", []string{"GET /api/v1/documents/stats"}},
		}},
	{name: "query", setting: "GATEWAY_QUERY_SERVICE_URL", defaultURL: "http://query-service.nyro-develop.svc.cluster.local:80",
		doc:     "base URL of the Query service (absolute http/https); in -dev, unset means a built-in echo upstream",
		devEcho: true, auth: authStrict, routes: []upstreamRoute{
			{"/api/v1/query/", "/api/v1/", []string{"/api/v1/query/{path...}", "/api/v1/query"}},
		}},
	// The auth service checks its own callers, and is optional.
	{name: "auth", setting: "GATEWAY_AUTH_SERVICE_URL",
		doc:  "optional base URL of an auth service; when set /api/v1/auth/* is proxied to it, otherwise it answers 404",
		auth: authNone, routes: []upstreamRoute{
			{"/api/v1/auth/", "/api/v1/auth/", []string{"/api/v1/auth/{path...}", "/api/v1/auth"}},
		}},
}

func upstreamRow(c *Config, up upstreamService) setting {
	unset := "unset (" + up.name + " routes answer 404)"
	if up.devEcho {
		unset = "built-in echo upstream"
	}
	return setting{Name: up.setting, Default: up.defaultURL, Doc: up.doc,
		parse: func(v string) (err error) { c.Upstreams[up.name], err = parseBaseURL(v); return err },
		show:  func() slog.Value { return showBaseURL(c.Upstreams[up.name], unset) }}
}

// explain puts the value (quoted by quote) and what was expected around parse's problem.
func explain[T any](parse func(string) (T, error), quote func(string) string, expect string) func(string) (T, error) {
	return func(v string) (T, error) {
		x, err := parse(v)
		if err != nil {
			return x, fmt.Errorf("%s %v; expected %s", quote(v), err, expect)
		}
		return x, nil
	}
}

// secret marks a row as a secret, rendered by masked in the log.
func (s setting) secret(masked func() slog.Value) setting {
	s.Secret, s.show = true, masked
	return s
}

func (s setting) required() setting { s.Required = true; return s }
func (s setting) database() setting { s.Database = true; return s }

// settingsOf binds the table to c. A new setting is a Config field, one row here and its README
// line; rules relating two settings are in loadConfig.
func settingsOf(c *Config) []setting {
	const (
		originExpect    = "an origin such as https://app.example.com (scheme, host, optional port, nothing else)"
		burstExpect     = "a whole number from 0 (limit off) to 1000000"
		perMinuteExpect = "failed logins per minute, from 0.01 to 1000000 (set the burst to 0 to turn the limit off)"
	)
	if c.Upstreams == nil {
		c.Upstreams = map[string]*url.URL{}
	}
	rows := []setting{
		// The SPEC table.
		intRow(&c.Port, "PORT", "8080", 1, 65535, "a TCP port from 1 to 65535",
			"TCP port of the public listener (all interfaces), 1..65535"),
		bind(&c.LogLevel, "GATEWAY_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING (or WARN) or ERROR, in any letter case",
			func(v string) (slog.Level, error) {
				level, ok := map[string]slog.Level{"DEBUG": slog.LevelDebug, "INFO": slog.LevelInfo,
					"WARNING": slog.LevelWarn, "WARN": slog.LevelWarn, "ERROR": slog.LevelError}[strings.ToUpper(v)]
				if !ok {
					return 0, fmt.Errorf("%s is not a log level; expected DEBUG, INFO, WARNING (or WARN) or ERROR", show(v))
				}
				return level, nil
			}, func(l slog.Level) slog.Value { return slog.StringValue(l.String()) }),
	}
	for _, up := range upstreamServices {
		rows = append(rows, upstreamRow(c, up))
	}
	return append(rows, []setting{
		bind(&c.JWTSecret, "GATEWAY_JWT_SECRET", "", "HS256 key, at least 32 random bytes, never a placeholder; in -dev, unset means an ephemeral key",
			func(v string) ([]byte, error) { return []byte(v), checkJWTSecret(v) }, nil).required().secret(func() slog.Value {
			if len(c.JWTSecret) == 0 {
				return slog.StringValue("unset")
			}
			return slog.StringValue(fmt.Sprintf("set (%d bytes)", len(c.JWTSecret)))
		}),
		checkedRow(new(string), "GATEWAY_JWT_ALGORITHM", "HS256", "token algorithm; only HS256 is accepted",
			nil, func(v string) bool { return v == "HS256" }, "is not supported; expected HS256"),
		{Name: "GATEWAY_JWT_EXPIRE_MINUTES", Default: "1440",
			Doc: "lifetime of issued tokens in minutes, 1..525600 (one year)",
			parse: func(v string) error {
				m, err := parseInt(v, 1, 525600, "minutes from 1 to 525600 (one year)")
				c.JWTExpire = time.Duration(m) * time.Minute
				return err
			},
			show: func() slog.Value { return slog.Int64Value(int64(c.JWTExpire / time.Minute)) }},
		stringRow(&c.PostgresUser, "GATEWAY_POSTGRES_USER", "postgres", "PostgreSQL user",
			postgresName("role")).database(),
		stringRow(&c.PostgresPassword, "GATEWAY_POSTGRES_PASSWORD", "",
			"PostgreSQL password (an empty one refuses to start); in -dev, unset means an in-memory store with a demo user",
			func(v string) (string, error) { return v, nil }).required().database().secret(func() slog.Value {
			if c.PostgresPassword == "" {
				return slog.StringValue("unset")
			}
			return slog.StringValue("***")
		}),
		checkedRow(&c.PostgresServer, "GATEWAY_POSTGRES_SERVER", "postgresql.nyro-develop.svc.cluster.local", "PostgreSQL host name or IP address",
			nil, func(v string) bool { _, err := netip.ParseAddr(v); return err == nil || validHostName(v) },
			"is not a host name or IP address; expected e.g. localhost or postgresql.nyro-develop.svc.cluster.local").database(),
		intRow(&c.PostgresPort, "GATEWAY_POSTGRES_PORT", "5432", 1, 65535, "a TCP port from 1 to 65535",
			"PostgreSQL port, 1..65535").database(),
		stringRow(&c.PostgresDB, "GATEWAY_POSTGRES_DB", "atenex", "PostgreSQL database name",
			postgresName("database")).database(),
		stringRow(&c.DefaultCompanyID, "GATEWAY_DEFAULT_COMPANY_ID", "",
			"optional company UUID that ensure-company assigns to users without a company", func(v string) (string, error) {
				if !isUUID(v) {
					return "", fmt.Errorf("%s is not a UUID; expected a company id like 0f8fad5b-d9cb-469f-a165-70867728950e, or leave it unset", show(v))
				}
				return strings.ToLower(v), nil
			}),
		durationRow(&c.HTTPClientTimeout, "GATEWAY_HTTP_CLIENT_TIMEOUT", "60", time.Millisecond, time.Hour, `seconds greater than 0 and at most 3600, e.g. "60" or "2.5"`,
			"seconds to wait for an upstream's response headers (decimals or a duration like 90s work); streams may last longer"),
		intRow(&c.MaxConnsPerHost, "GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS", "200", 1, 100000, "a whole number from 1 to 100000",
			"connections per upstream host, at least 1"),
		intRow(&c.MaxIdleConnsPerHost, "GATEWAY_HTTP_CLIENT_MAX_KEEPALIVE_CONNECTIONS", "100", 0, 100000, "a whole number from 0 to GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS",
			"idle keep-alive connections per upstream host, 0..GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS"),
		stringRow(&c.VercelFrontendURL, "VERCEL_FRONTEND_URL", "",
			"CORS: the frontend origin (scheme://host[:port]); its Vercel preview deployments are allowed too",
			explain(parseOrigin, showURL, originExpect)),
		bind(&c.CORSAllowedOrigins, "GATEWAY_CORS_ALLOWED_ORIGINS", "",
			"CORS: extra exact origins, comma-separated; \"*\" is refused because credentials are allowed",
			func(v string) (origins []string, errs error) {
				errs = eachItem(v, func(item string) error {
					o, err := parseOrigin(item)
					if err != nil {
						return fmt.Errorf("item %s %v; expected comma-separated exact origins, each %s", showURL(item), err, originExpect)
					}
					if !slices.Contains(origins, o) {
						origins = append(origins, o)
					}
					return nil
				})
				return origins, errs
			}, func(origins []string) slog.Value { return slog.AnyValue(append([]string{}, origins...)) }),

		// Beyond the SPEC table.
		durationRow(&c.DBTimeout, "GATEWAY_DB_TIMEOUT", "2s", time.Millisecond, time.Minute, `a duration from 1ms to 1m, e.g. "2s"`,
			"deadline of every database call, 1ms..1m").database(),
		durationRow(&c.UserCacheTTL, "GATEWAY_USER_CACHE_TTL", "60s", 0, time.Minute, `a duration from 0 (check every request) to 60s, e.g. "60s"`,
			"how long a user's state (active, company, role, revocations) is cached, 0..60s; 0 checks the database on every request. Changes reach every replica within a second through database notifications; the TTL bounds staleness only while those are down"),
		durationRow(&c.UserStaleIfError, "GATEWAY_USER_CACHE_STALE_IF_ERROR", "10m", 0, 24*time.Hour, `a duration from 0 (off) to 24h, e.g. "10m"`,
			"while the database cannot answer, users seen before keep being served from their last known state for this long past the TTL, 0..24h; 0 = never (every expired user then gets 503). A change made during an outage takes effect when it ends"),
		durationRow(&c.SessionMaxAge, "GATEWAY_SESSION_MAX_AGE", "168h", time.Minute, 8760*time.Hour, `a duration from 1m to 8760h (one year), e.g. "168h"`,
			"refresh never extends a session beyond this time after the original sign-in (auth_time), 1m..8760h; past it the user signs in again"),
		intRow(&c.AdminPort, "GATEWAY_ADMIN_PORT", "9090", 0, 65535, "a TCP port from 1 to 65535, or 0 to disable the admin listener",
			"port of the admin listener (/metrics, pprof), never the public one; 0 disables it"),
		bind(&c.Docs, "GATEWAY_DOCS", "true",
			"true serves the OpenAPI description at /openapi.json and a page rendering it at /docs on the public port; false makes both answer 404",
			func(v string) (bool, error) {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return false, fmt.Errorf("%s is not a boolean; expected true or false", show(v))
				}
				return b, nil
			}, slog.BoolValue),
		durationRow(&c.ShutdownGrace, "GATEWAY_SHUTDOWN_GRACE", "25s", time.Second, 10*time.Minute, `a duration from 1s to 10m, e.g. "25s"`,
			"bound on finishing in-flight requests after SIGTERM, 1s..10m; keep it below the pod's termination grace"),
		durationRow(&c.DrainDelay, "GATEWAY_DRAIN_DELAY", "10s", 0, 10*time.Minute, `a duration shorter than GATEWAY_SHUTDOWN_GRACE, e.g. "10s"`,
			"after SIGTERM, time spent reporting not-ready on /readyz while still serving, so load balancers stop routing; longer than the readiness probe takes to notice (k8s: 2s period x 2 failures + 2s timeout = 6s) and shorter than GATEWAY_SHUTDOWN_GRACE"),
		durationRow(&c.ReadHeaderTimeout, "GATEWAY_READ_HEADER_TIMEOUT", "10s", time.Millisecond, 5*time.Minute, `a duration from 1ms to 5m, e.g. "10s"`,
			"time a client has to send its request headers, and the body of a login or ensure-company (408 after it), 1ms..5m"),
		durationRow(&c.IdleTimeout, "GATEWAY_IDLE_TIMEOUT", "30s", time.Millisecond, time.Hour, `a duration from 1ms to 1h, e.g. "120s"`,
			"how long an idle client keep-alive connection stays open, 1ms..1h; keep the ingress's upstream keep-alive timeout below it"),
		ranged(&c.MaxBodyBytes, "GATEWAY_MAX_BODY_BYTES", "16384", 1<<10, 1<<20, "a size from 1KiB to 1MiB, in bytes or with a unit (e.g. 16384 or 16KiB)",
			"body limit of the gateway's own JSON endpoints (413 above it), 1KiB..1MiB; proxied bodies are not limited",
			parseSize, slog.Int64Value),
		bind(&c.TrustedProxies, "GATEWAY_TRUSTED_PROXIES", "",
			"comma-separated CIDRs or IPs of proxies whose X-Forwarded-For is believed; empty trusts none",
			parseTrustedProxies, func(ps []netip.Prefix) slog.Value { return slog.AnyValue(append([]netip.Prefix{}, ps...)) }),
		intRow(&c.LoginIPBurst, "GATEWAY_LOGIN_IP_BURST", "10", 0, 1000000, burstExpect,
			"failed logins allowed at once per client IP; 0 turns this limit off"),
		floatRow(&c.LoginIPPerMinute, "GATEWAY_LOGIN_IP_PER_MINUTE", "10", 0.01, 1000000, perMinuteExpect,
			"failed logins per minute regained per client IP (decimal allowed)"),
		intRow(&c.LoginEmailBurst, "GATEWAY_LOGIN_EMAIL_BURST", "10", 0, 1000000, burstExpect,
			"failed logins allowed at once per email; 0 turns this limit off"),
		floatRow(&c.LoginEmailPerMinute, "GATEWAY_LOGIN_EMAIL_PER_MINUTE", "5", 0.01, 1000000, perMinuteExpect,
			"failed logins per minute regained per email (decimal allowed)"),
		durationRow(&c.BcryptQueueWait, "GATEWAY_BCRYPT_QUEUE_WAIT", "1s", 0, 30*time.Second, `a duration from 0 to 30s, e.g. "1s"`,
			"how long a login waits for a free bcrypt slot before a 503, 0..30s"),
		floatRow(&c.CompanyRPS, "GATEWAY_RATE_LIMIT_COMPANY_RPS", "0", 0, 1000000, "requests per second from 0 (limit off) to 1000000",
			"proxied requests per second allowed per company (decimal allowed); 0 turns the limit off"),
		intRow(&c.CompanyBurst, "GATEWAY_RATE_LIMIT_COMPANY_BURST", "0", 0, 1000000, "a whole number from 0 (one second's worth of GATEWAY_RATE_LIMIT_COMPANY_RPS) to 1000000",
			"proxied requests allowed at once per company; 0 means ceil(GATEWAY_RATE_LIMIT_COMPANY_RPS)"),
		bind(&c.GCPercent, "GATEWAY_GC_PERCENT", "100",
			"Go garbage-collector target percentage (like GOGC), -1..10000; -1 or off relies on GATEWAY_MEMORY_LIMIT alone. Chosen with the memory limit: at 100 the heap stays near twice the live heap, which meets the limit only at about 1000 concurrent clients",
			func(v string) (int, error) {
				if strings.EqualFold(v, "off") {
					return -1, nil
				}
				return parseInt(v, -1, 10000, "a percentage from -1 (off) to 10000, like GOGC")
			}, slog.IntValue),
		// auto, resolved at start from the cgroup, always ends with a limit: an off GC is never unbounded.
		{Name: "GATEWAY_MEMORY_LIMIT", Default: "auto",
			Doc: "soft memory limit of the Go runtime (like GOMEMLIMIT), in bytes or with B/KiB/MiB/GiB/TiB; 0 = none. auto (or unset) = 75% of the container's cgroup memory limit, or 96MiB when there is none",
			parse: func(v string) (err error) {
				if c.MemoryLimitAuto = strings.EqualFold(v, "auto"); !c.MemoryLimitAuto {
					c.MemoryLimit, err = explain(func(v string) (int64, error) {
						if n, err := parseSize(v); err != nil || n == 0 || n >= 1<<20 {
							return n, err
						}
						return 0, errors.New("is out of range")
					}, show, "auto, 0 (none) or a size of at least 1MiB, in bytes or with a unit (e.g. 512MiB or 1GiB)")(v)
				}
				return err
			},
			show: func() slog.Value { // the value auto resolves to is on the "runtime" log line
				if c.MemoryLimitAuto {
					return slog.StringValue("auto")
				}
				return slog.StringValue(strconv.FormatInt(c.MemoryLimit, 10))
			}},
		bind(&c.OTLPEndpoint, "GATEWAY_OTLP_ENDPOINT", "",
			"base URL of an OpenTelemetry collector's OTLP/HTTP receiver (e.g. http://otel-collector:4318); spans are posted as JSON to {this}/v1/traces. Unset = no export (traceparent is propagated all the same)",
			parseBaseURL, func(u *url.URL) slog.Value { return showBaseURL(u, "unset (no export)") }),
		bind(&c.OTLPHeaders, "GATEWAY_OTLP_HEADERS", "",
			"extra headers of the export requests, comma-separated key=value (values may be percent-encoded), e.g. a collector's API key",
			func(v string) ([]otlpHeader, error) {
				h, err := parseOTLPHeaders(v)
				if err != nil {
					return h, fmt.Errorf("%v; expected comma-separated key=value pairs, e.g. x-api-key=…", err)
				}
				return h, nil
			}, nil).secret(func() slog.Value { return slog.StringValue(c.otlpHeadersText()) }),
		floatRow(&c.TraceSampleRatio, "GATEWAY_TRACE_SAMPLE_RATIO", "1.0", 0, 1, "a fraction from 0 (no new trace exported) to 1 (every one), e.g. 0.1",
			"share of the traces this gateway starts that are exported, 0..1; a request with a valid traceparent follows its sampled flag instead"),

		// The edge under abuse (SPEC §8).
		intRow(&c.LoginGlobalBurst, "GATEWAY_LOGIN_GLOBAL_BURST", "60", 0, 1000000, burstExpect,
			"failed logins allowed at once per replica from addresses that never logged in with that email (a password spray over many addresses meets it); 0 turns this limit off"),
		floatRow(&c.LoginGlobalPerMinute, "GATEWAY_LOGIN_GLOBAL_PER_MINUTE", "120", 0.01, 1000000, perMinuteExpect,
			"failed logins per minute regained by the per-replica budget (decimal allowed)"),
		durationRow(&c.ProxyIdleTimeout, "GATEWAY_PROXY_IDLE_TIMEOUT", "30s", time.Millisecond, time.Hour, `a duration from 1ms to 1h, e.g. "30s"`,
			"a proxied request body that sends no byte, or a client that reads no byte of a proxied response, for this long is cut, 1ms..1h; a stream that keeps moving is never cut"),
		durationRow(&c.UpstreamQueueWait, "GATEWAY_UPSTREAM_QUEUE_WAIT", "5s", 0, time.Minute, `a duration from 0 to 1m, e.g. "5s"`,
			"how long a proxied request waits for a free upstream connection before 503 upstream_busy, 0..1m"),
		intRow(&c.CompanyMaxInflight, "GATEWAY_COMPANY_MAX_INFLIGHT", "", 0, 100000, "a whole number from 0 (cap off) to GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS",
			"proxied requests in flight at once per company (429 rate_limited above it), at most GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS; unset means half of GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS; 0 turns the cap off"),
		bind(&c.MaxConnections, "GATEWAY_MAX_CONNECTIONS", "2048",
			"open client connections at most; past it the connection idle for longest is closed to make room; 0 = no cap. Sized for the 128Mi pod (see Performance)",
			func(v string) (int, error) {
				n, err := parseInt(v, 0, 1000000, "a whole number from 16 to 1000000, or 0 for no cap")
				if err == nil && n > 0 && n < 16 {
					return n, fmt.Errorf("%d is too few to serve a load balancer's keep-alive pool; expected at least 16, or 0 for no cap", n)
				}
				return n, err
			}, slog.IntValue),
		boolRow(&c.ForwardCredentials, "GATEWAY_PROXY_FORWARD_CREDENTIALS", "false",
			"true forwards the client's Authorization and Cookie headers to the ingest and query backends; by default they get only the identity headers"),
		boolRow(&c.PProf, "GATEWAY_PPROF", "false",
			"true serves /debug/pprof/ on the admin listener (GATEWAY_ADMIN_PORT)"),
		checkedRow(&c.PostgresSSLMode, "GATEWAY_POSTGRES_SSLMODE", "prefer",
			"PostgreSQL TLS: disable, allow, prefer, require, verify-ca or verify-full (libpq's meanings)", strings.ToLower,
			func(v string) bool {
				return slices.Contains([]string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}, v)
			},
			"is not an sslmode; expected disable, allow, prefer, require, verify-ca or verify-full").database(),
		checkedRow(&c.PostgresSSLRootCert, "GATEWAY_POSTGRES_SSLROOTCERT", "",
			"path of the CA certificate(s) that sign the PostgreSQL server's certificate, for verify-ca and verify-full",
			nil, func(v string) bool { return strings.HasPrefix(v, "/") },
			"is not an absolute path; expected the path of a PEM file, e.g. /etc/atenex/postgres-ca/ca.crt").database(),
		// The frontend's dev server is on localhost; a production gateway allowing it would let
		// any page a user's machine serves there call the API with their credentials.
		boolRow(&c.CORSAllowLocalhost, "GATEWAY_CORS_ALLOW_LOCALHOST", "",
			"CORS: true allows http://localhost:3000…3009 (a developer's frontend); unset means true with -dev and false otherwise"),
		checkedRow(&c.CORSVercelTeam, "GATEWAY_CORS_VERCEL_TEAM", "",
			"CORS: the Vercel team slug; when set, preview origins must also end in -<team>.vercel.app", strings.ToLower,
			func(team string) bool { return len(team) <= 48 && validDNSLabel(team) },
			"is not a Vercel team slug; expected lower-case letters, digits and '-', as in https://<project>-<hash>-<team>.vercel.app"),
	}...)
}

// settings is the table's metadata; the README and the Kubernetes manifests are checked against it.
var settings = settingsOf(new(Config))

type settingError struct{ Name, Problem string }

func (e *settingError) Error() string { return e.Name + ": " + e.Problem }

// envReader collects every problem, so an operator fixes them all with one restart.
type envReader struct {
	set  map[string]bool // names given a non-empty value
	errs []error
}

// readEnv parses each row's value, or its default when unset, into cfg. Secrets are not trimmed,
// so tokens signed elsewhere keep verifying; a stray space from YAML must not change a port.
func readEnv(getenv func(string) string, cfg *Config, rows []setting) *envReader {
	r := &envReader{set: map[string]bool{}}
	for _, s := range rows {
		v := getenv(s.Name)
		if !s.Secret {
			v = strings.TrimSpace(v)
		}
		if v != "" {
			r.set[s.Name] = true
		} else {
			v = s.Default
		}
		if v != "" {
			r.add(s.Name, s.parse(v))
		}
	}
	if cfg.PostgresSSLRootCert != "" && cfg.PostgresSSLMode == "disable" {
		cfg.PostgresSSLRootCert = ""
		r.fail("GATEWAY_POSTGRES_SSLROOTCERT", "is set but GATEWAY_POSTGRES_SSLMODE is disable; expected verify-full (or verify-ca) to use it, or leave it unset")
	}
	return r
}

// add records err against name, one line per joined problem.
func (r *envReader) add(name string, err error) {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			r.add(name, e)
		}
	} else if err != nil {
		r.errs = append(r.errs, &settingError{Name: name, Problem: err.Error()})
	}
}

func (r *envReader) fail(name, format string, args ...any) { r.add(name, fmt.Errorf(format, args...)) }

// ok reports whether none of names has a problem, so a rule relating them may be checked.
func (r *envReader) ok(names ...string) bool {
	return !slices.ContainsFunc(r.errs, func(e error) bool { return slices.Contains(names, e.(*settingError).Name) })
}

// loadDatabaseConfig reads only the Database rows: the subcommands run without a JWT secret.
func loadDatabaseConfig(getenv func(string) string) (*Config, error) {
	cfg := &Config{}
	r := readEnv(getenv, cfg, slices.DeleteFunc(settingsOf(cfg), func(s setting) bool { return !s.Database }))
	if !r.set["GATEWAY_POSTGRES_PASSWORD"] {
		r.fail("GATEWAY_POSTGRES_PASSWORD", "is not set; expected the PostgreSQL password (an empty one is refused)")
	}
	return r.done(cfg)
}

func (r *envReader) done(cfg *Config) (*Config, error) {
	if err := errors.Join(r.errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// loadConfig reads every setting ("" means unset); only with dev may a missing secret,
// password or URL become a DevShortcut.
func loadConfig(getenv func(string) string, dev bool) (*Config, error) {
	cfg := &Config{Dev: dev}
	r := readEnv(getenv, cfg, settingsOf(cfg))

	// In -dev an unset URL means the built-in echo upstream, not the cluster default.
	for _, up := range upstreamServices {
		if dev && up.devEcho && !r.set[up.setting] {
			delete(cfg.Upstreams, up.name)
			cfg.DevShortcuts = append(cfg.DevShortcuts, fmt.Sprintf("built-in echo upstream for %s (%s unset)", up.name, up.setting))
		}
	}
	switch {
	case r.set["GATEWAY_JWT_SECRET"]:
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
	switch {
	case r.set["GATEWAY_POSTGRES_PASSWORD"]:
	case dev:
		cfg.UseMemoryStore = true
		cfg.DevShortcuts = append(cfg.DevShortcuts,
			"in-memory user store with a demo company and user (GATEWAY_POSTGRES_PASSWORD unset)")
	default:
		r.fail("GATEWAY_POSTGRES_PASSWORD", "is not set; expected the PostgreSQL password (an empty one is refused), or run with -dev for an in-memory store")
	}
	if !r.set["GATEWAY_CORS_ALLOW_LOCALHOST"] {
		cfg.CORSAllowLocalhost = dev
	}

	// Rules between settings, checked only when each side parsed.
	const maxConns = "GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS"
	if idle := cfg.MaxIdleConnsPerHost; r.ok(maxConns, "GATEWAY_HTTP_CLIENT_MAX_KEEPALIVE_CONNECTIONS") && idle > cfg.MaxConnsPerHost {
		r.fail("GATEWAY_HTTP_CLIENT_MAX_KEEPALIVE_CONNECTIONS", "%d is more than GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS (%d); expected at most that", idle, cfg.MaxConnsPerHost)
	}
	if p := cfg.AdminPort; p != 0 && r.ok("PORT", "GATEWAY_ADMIN_PORT") && p == cfg.Port {
		r.fail("GATEWAY_ADMIN_PORT", "%d is also PORT; expected a different port (metrics and pprof never share the public listener), or 0 to disable", p)
	}
	if d, grace := cfg.DrainDelay, cfg.ShutdownGrace; r.ok("GATEWAY_SHUTDOWN_GRACE", "GATEWAY_DRAIN_DELAY") && d >= grace {
		r.fail("GATEWAY_DRAIN_DELAY", "%v is not shorter than GATEWAY_SHUTDOWN_GRACE (%v); expected a shorter delay so in-flight requests still get time to finish", d, grace)
	}
	if cfg.CompanyBurst == 0 && cfg.CompanyRPS > 0 {
		// A bucket smaller than one second's allowance would refuse a steady client.
		cfg.CompanyBurst = int(math.Ceil(cfg.CompanyRPS))
	}
	if !cfg.MemoryLimitAuto && r.ok("GATEWAY_MEMORY_LIMIT") && cfg.MemoryLimit == 0 && cfg.GCPercent == -1 {
		r.fail("GATEWAY_GC_PERCENT", "-1 turns the garbage collector off and GATEWAY_MEMORY_LIMIT is 0, so memory would grow without bound; expected a percentage, or set GATEWAY_MEMORY_LIMIT")
	}
	if n, inflight := cfg.CompanyMaxInflight, "GATEWAY_COMPANY_MAX_INFLIGHT"; !r.set[inflight] {
		// Half the pool: one company may use a lot of it, never all of it.
		cfg.CompanyMaxInflight = max(cfg.MaxConnsPerHost/2, 1)
	} else if r.ok(maxConns, inflight) && n > cfg.MaxConnsPerHost {
		r.fail(inflight, "%d is more than GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS (%d), so one company could hold every upstream connection; expected at most that, or 0 to turn the cap off", n, cfg.MaxConnsPerHost)
	}

	return r.done(cfg)
}

// LogValue renders the effective configuration for the start-up log line, secrets masked.
func (c *Config) LogValue() slog.Value {
	store := map[bool]string{true: "memory", false: "postgres"}[c.UseMemoryStore]
	attrs := []slog.Attr{slog.Bool("dev", c.Dev), slog.String("store", store)}
	for _, s := range settingsOf(c) {
		attrs = append(attrs, slog.Attr{Key: s.Name, Value: s.show()})
	}
	return slog.GroupValue(attrs...)
}

// parseInt reads a whole number from lo to hi; expect ends each problem.
func parseInt(v string, lo, hi int, expect string) (int, error) {
	n, err := strconv.Atoi(v)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%s is not a whole number; expected %s", show(v), expect)
	case n < lo || n > hi:
		return 0, fmt.Errorf("%d is out of range; expected %s", n, expect)
	}
	return n, nil
}

// eachItem calls parse on every non-blank item of a comma-separated list, joining the problems.
func eachItem(v string, parse func(item string) error) error {
	var errs []error
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			errs = append(errs, parse(item))
		}
	}
	return errors.Join(errs...)
}

// postgresName checks a user or database name: PostgreSQL identifiers are at most 63 bytes,
// and control characters only ever come from a broken manifest.
func postgresName(kind string) func(string) (string, error) {
	return func(v string) (string, error) {
		if len(v) > 63 {
			return v, fmt.Errorf("is %d bytes long; expected at most 63; expected a PostgreSQL %s name", len(v), kind)
		}
		if strings.ContainsFunc(v, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
			return v, fmt.Errorf("contains a control character; expected a PostgreSQL %s name", kind)
		}
		return v, nil
	}
}

// show quotes a non-secret value for an error line, shortened so one line stays one line.
func show(v string) string {
	if len(v) > 64 {
		return strconv.Quote(v[:64]) + "..."
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

// parseDuration accepts a Go duration or a bare number of seconds, the original configuration's form.
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

// parseSize accepts a byte count with an optional binary unit, as GOMEMLIMIT does (e.g. 512KiB).
func parseSize(v string) (int64, error) {
	num := strings.TrimRightFunc(v, func(r rune) bool { return 'a' <= r|0x20 && r|0x20 <= 'z' })
	shift, ok := map[string]int{"": 0, "b": 0, "kib": 10, "mib": 20, "gib": 30, "tib": 40}[strings.ToLower(v[len(num):])]
	num = strings.TrimSpace(num)
	switch {
	case num == "":
		return 0, errors.New("is not a size")
	case !ok:
		return 0, errors.New("has an unknown unit (B, KiB, MiB, GiB or TiB are understood)")
	}
	n, err := strconv.ParseInt(num, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, errors.New("is too large")
	case err != nil:
		return 0, errors.New("is not a size")
	case n < 0:
		return 0, errors.New("is negative")
	case n > math.MaxInt64>>shift:
		return 0, errors.New("is too large")
	}
	return n << shift, nil
}

// parseHTTPURL reads an absolute http or https URL without credentials, query or fragment
// (an origin also without a path) and checks and lower-cases its host.
func parseHTTPURL(v string, origin bool) (*url.URL, error) {
	// '?' and '#' only ever delimit a query or fragment, even empty ones url.Parse forgets.
	if strings.ContainsAny(v, "?#") {
		return nil, errors.New("has a query or fragment")
	}
	u, err := url.Parse(v)
	switch {
	case (err != nil || !u.IsAbs() || u.Opaque != "") && origin:
		return nil, errors.New("is not an origin")
	case err != nil || !u.IsAbs() || u.Opaque != "":
		return nil, errors.New("is not an absolute URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("has scheme %q", u.Scheme)
	case u.User != nil:
		return nil, errors.New("contains credentials (user:password@), which are not allowed")
	case origin && u.Path != "" && u.Path != "/":
		return nil, errors.New("has a path")
	}
	if u.Host, err = checkHost(u.Host); err != nil {
		return nil, err
	}
	return u, nil
}

// parseServiceURL trims the path's trailing '/', so the proxy appends paths without doubling it.
func parseServiceURL(v string) (*url.URL, error) {
	u, err := parseHTTPURL(v, false)
	if err == nil {
		u.Path, u.RawPath = strings.TrimRight(u.Path, "/"), strings.TrimRight(u.RawPath, "/")
	}
	return u, err
}

// parseOrigin returns an origin as browsers send it (lower-case, no default port, no trailing
// '/'): CORS matching is exact, so this is where it is made forgiving.
func parseOrigin(v string) (string, error) {
	if v == "*" {
		return "", errors.New("is a wildcard, refused because credentials are allowed")
	}
	u, err := parseHTTPURL(v, true)
	if err != nil {
		return "", err
	}
	return u.Scheme + "://" + strings.TrimSuffix(u.Host, map[string]string{"http": ":80", "https": ":443"}[u.Scheme]), nil
}

// checkHost validates host[:port] (DNS name, IPv4 or bracketed IPv6; port 1..65535), lower-cased.
func checkHost(hostport string) (string, error) {
	host, port, hasPort := hostport, "", false
	if hostport == "" {
		return "", errors.New("has no host")
	} else if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 || end+1 < len(hostport) && hostport[end+1] != ':' {
			return "", errors.New("has an invalid host")
		}
		if end+1 < len(hostport) {
			port, hasPort = hostport[end+2:], true
		}
		if a, err := netip.ParseAddr(hostport[1:end]); err != nil || !a.Is6() || a.Zone() != "" {
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
	if n, err := strconv.Atoi(port); hasPort && (err != nil || n < 1 || n > 65535 || port[0] == '+') {
		return "", errors.New("has an invalid port")
	}
	return strings.ToLower(hostport), nil
}

// validHostName reports whether h is made of dot-separated labels of letters, digits, '-'
// and '_' (the latter exists in the wild); it rules out wildcards and escapes.
func validHostName(h string) bool {
	const hostNameBytes = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || strings.Trim(label, hostNameBytes) != "" {
			return false
		}
	}
	return true
}

// parseTrustedProxies unmaps IPv4-mapped IPv6 forms, since the server sees IPv4 peers as IPv4.
func parseTrustedProxies(v string) (ps []netip.Prefix, err error) {
	err = eachItem(v, func(item string) error {
		const expect = "expected comma-separated CIDRs or IP addresses, e.g. 10.0.0.0/8, 192.168.1.5"
		p, err := netip.ParsePrefix(item)
		if !strings.Contains(item, "/") {
			a, err := netip.ParseAddr(item)
			if err != nil || a.Zone() != "" {
				return fmt.Errorf("item %s is neither an IP address nor a CIDR; %s", show(item), expect)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		} else if err != nil {
			return fmt.Errorf("item %s is not a CIDR; %s", show(item), expect)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		ps = append(ps, p.Masked())
		return nil
	})
	if cerr := checkTrustedProxies(ps); cerr != nil {
		err = errors.Join(err, fmt.Errorf("%v; expected the addresses your ingress or load balancer connects from, e.g. 10.244.0.0/16", cerr))
	}
	return ps, err
}

// checkTrustedProxies refuses trusting every address, alone or together (0.0.0.0/1 + 128.0.0.0/1):
// an attacker would forge X-Forwarded-For and rotate addresses to dodge the login limits.
func checkTrustedProxies(ps []netip.Prefix) error {
	const forged = "so any client could forge X-Forwarded-For and choose the address its login failures count against"
	for _, p := range ps {
		if p.Bits() == 0 {
			return fmt.Errorf("%s trusts every address, %s", p, forged)
		}
	}
	for _, all := range []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")} {
		if covers(ps, all) {
			family := map[bool]string{true: "IPv4", false: "IPv6"}[all.Addr().Is4()]
			return fmt.Errorf("together covers every %s address, %s", family, forged)
		}
	}
	return nil
}

// covers reports whether the union of ps holds every address of q: some prefix holds all
// of q, or both halves of q are covered by the prefixes inside it.
func covers(ps []netip.Prefix, q netip.Prefix) bool {
	var inside []netip.Prefix
	for _, p := range ps {
		if p.Overlaps(q) {
			if p.Bits() <= q.Bits() {
				return true
			}
			inside = append(inside, p)
		}
	}
	if len(inside) == 0 {
		return false
	}
	b := q.Addr().AsSlice()
	b[q.Bits()/8] |= 0x80 >> (q.Bits() % 8)
	upper, _ := netip.AddrFromSlice(b)
	return covers(inside, netip.PrefixFrom(q.Addr(), q.Bits()+1)) && covers(inside, netip.PrefixFrom(upper, q.Bits()+1))
}

// Placeholders from documentation and examples: a deployment that copied one signs forgeable tokens.
var jwtSecretPlaceholders = []string{
	"TU_CLAVE_SECRETA_JWT_DE_PRODUCCION_MUY_SEGURA",
	"una-clave-secreta-muy-fuerte-para-desarrollo-local-1234567890",
	"YOUR_JWT_SECRET_KEY_NEEDS_TO_BE_SET_IN_ENV",
	"CHANGE_ME_to_a_random_secret_of_at_least_32_bytes",
}

const (
	// Below the hash size brute force becomes plausible (RFC 7518 §3.2).
	minJWTSecretBytes = 32
	// Length alone lets "aaaa…a" through. Random 32-byte keys have about 30 distinct bytes
	// (base64 text about 25), so this refuses only hand-typed keys.
	minJWTSecretDistinct = 16
)

// checkJWTSecret refuses keys an attacker could guess. The message never contains the key.
func checkJWTSecret(secret string) error {
	const expect = "expected at least 32 random bytes (e.g. from: openssl rand -base64 48)"
	for _, p := range jwtSecretPlaceholders {
		if strings.EqualFold(strings.TrimSpace(secret), p) {
			return fmt.Errorf("is a published placeholder, so anybody could forge tokens; %s", expect)
		}
	}
	for _, marker := range []string{"change_me", "changeme", "change-me"} {
		if strings.Contains(strings.ToLower(secret), marker) {
			return fmt.Errorf("contains %q, so it is a placeholder; %s", strings.ToUpper(marker), expect)
		}
	}
	if len(secret) < minJWTSecretBytes {
		return fmt.Errorf("is only %d bytes long; %s", len(secret), expect)
	}
	sorted := []byte(secret)
	slices.Sort(sorted)
	if n := len(slices.Compact(sorted)); n < minJWTSecretDistinct {
		return fmt.Errorf("has only %d distinct bytes (at least %d are needed: a repeated pattern is guessable whatever its length); %s", n, minJWTSecretDistinct, expect)
	}
	return nil
}
