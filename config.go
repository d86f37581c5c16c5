// config.go: every setting of the gateway, its default, its validation, in one table.
package main

import (
	"log/slog"
	"net/netip"
	"net/url"
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
	AdminPort         int            // GATEWAY_ADMIN_PORT: 0 disables the admin listener
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

	GCPercent   int   // GATEWAY_GC_PERCENT
	MemoryLimit int64 // GATEWAY_MEMORY_LIMIT bytes (0 = none)

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
var settings = []setting{}
