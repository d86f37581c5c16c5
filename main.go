// main.go: run() wires config → logger → store → handler → server → drain; routes() is
// the one table of every route.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const serviceName = "Atenex API Gateway"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitCode(err))
	}
}

// exitError carries a process exit code: 2 for invalid configuration or usage, 1 otherwise.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if ee, ok := errors.AsType[*exitError](err); ok {
		return ee.code
	}
	return 1
}

func usageError(err error) error { return &exitError{code: 2, err: err} }

// run is the whole program, so tests can start the real server as main does.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	dotenv, err := readDotEnv(".env")
	if err != nil {
		return usageError(fmt.Errorf("read .env: %w", err))
	}
	getenv = layeredGetenv(getenv, dotenv)

	if len(args) > 0 && isSubcommand(args[0]) {
		return runSubcommand(ctx, args, getenv, stdin, stdout, stderr)
	}

	flags := flag.NewFlagSet(programName, flag.ContinueOnError)
	flags.SetOutput(stderr)
	dev := flags.Bool("dev", false, "development mode: ephemeral secret, in-memory demo users and echo upstreams when not configured")
	flags.Usage = func() {
		fmt.Fprintf(stderr, "Usage: atenex-api-gateway [-dev]\n       atenex-api-gateway migrate | company … | user …  (run `atenex-api-gateway help`)\n\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return usageError(err)
	}
	if flags.NArg() > 0 {
		return usageError(fmt.Errorf("unknown command %q (run `atenex-api-gateway help`)", flags.Arg(0)))
	}

	cfg, err := loadConfig(getenv, *dev)
	if err != nil {
		return usageError(fmt.Errorf("invalid configuration:\n%w", err))
	}
	return serve(ctx, cfg, getenv, stdout)
}

func serve(ctx context.Context, cfg *Config, getenv func(string) string, stdout io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel}))
	applyRuntimeLimits(cfg, getenv, os.DirFS("/"), log)
	log.Info("configuration", "config", cfg)
	for _, shortcut := range cfg.DevShortcuts {
		log.Warn("development shortcut: " + shortcut)
	}

	m := newMetrics()
	store, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	// A database migrate has not brought to this version fails every request; one that cannot
	// answer now is only logged, since the gateway recovers when it returns.
	if err := store.CheckSchema(ctx); errors.Is(err, errSchemaNotMigrated) {
		return fmt.Errorf("%w; run `atenex-api-gateway migrate` with the same GATEWAY_POSTGRES_* settings, then start the gateway again", err)
	} else if err != nil {
		log.Warn("could not check the database schema: database unavailable", "error", err.Error())
	}
	m.setPoolStats(store.Stats)
	if id := cfg.DefaultCompanyID; id != "" {
		if ok, err := store.CompanyActive(ctx, id); err != nil {
			log.Warn("could not check GATEWAY_DEFAULT_COMPANY_ID: database unavailable", "error", err.Error())
		} else if !ok {
			log.Warn("GATEWAY_DEFAULT_COMPANY_ID names no active company in the database", "company_id", id)
		}
	}

	var background sync.WaitGroup
	defer background.Wait()
	echoCtx, stopEcho := context.WithCancel(context.Background())
	defer stopEcho()
	if err := startDevEchoUpstreams(echoCtx, cfg, log, &background); err != nil {
		return err
	}

	gw := newGateway(cfg, log, store, m)
	defer gw.close()

	listenHost := ""
	if cfg.Dev && cfg.UseMemoryStore {
		// The demo credentials are printed in the log: keep such a gateway off the network.
		listenHost = "127.0.0.1"
		log.Warn("development shortcut: listening on loopback only because the demo credentials are public")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(listenHost, strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("listen on port %d: %w", cfg.Port, err)
	}
	// No ReadTimeout or WriteTimeout: either would cut a slow upload or a long SSE stream; the
	// proxy cuts a stalled body or reader instead (GATEWAY_PROXY_IDLE_TIMEOUT).
	srv := newServer(cfg, log, gw.routes())
	// Every open connection costs memory: the cap keeps the sum under the pod's limit.
	cl := newConnLimiter(ln, cfg.MaxConnections, m)
	ln, srv.ConnState = cl, cl.connState
	log.Info("listening", "addr", ln.Addr().String(), "service", serviceName)
	serveErr := make(chan error, 2)

	admin := newServer(cfg, log, newAdminHandlerFor(m, cfg.PProf))
	// So a slow scraper cannot hold a connection open at will (pprof caps its ?seconds=).
	admin.WriteTimeout = adminWriteTimeout
	defer admin.Close()
	if cfg.AdminPort > 0 {
		adminLn, err := net.Listen("tcp", net.JoinHostPort(listenHost, strconv.Itoa(cfg.AdminPort)))
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on admin port %d: %w", cfg.AdminPort, err)
		}
		go func() { serveErr <- admin.Serve(adminLn) }()
		log.Info("admin listening", "addr", adminLn.Addr().String())
	}
	// The public listener serves last: once it answers, the admin listener is up too.
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		srv.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	// Drain: not-ready at once, serve on for DrainDelay while load balancers notice, then let
	// in-flight requests finish within the grace period.
	gw.draining.Store(true)
	srv.SetKeepAlivesEnabled(false)
	log.Info("shutdown requested: draining", "drain_delay", cfg.DrainDelay.String(), "grace", cfg.ShutdownGrace.String())
	time.Sleep(cfg.DrainDelay)
	graceCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(graceCtx); err != nil {
		log.Warn("grace period over: closing remaining connections", "error", err.Error())
		srv.Close()
	}
	// The spans of the requests just finished, within what is left of the grace.
	if err := gw.tracer.shutdown(graceCtx); err != nil {
		log.Warn("grace period over: unsent spans dropped", "error", err.Error())
	}
	log.Info("stopped")
	return nil
}

func newServer(cfg *Config, log *slog.Logger, h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: cfg.IdleTimeout,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
}

// applyRuntimeLimits sets the collector unless GOGC or GOMEMLIMIT is set, and logs the result: a
// less eager collector trades a few MiB for much less CPU, and the limit bounds those MiB.
func applyRuntimeLimits(cfg *Config, getenv func(string) string, cgroupFS fs.FS, log *slog.Logger) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.GCPercent)
	}
	limit, source := cfg.MemoryLimit, "GATEWAY_MEMORY_LIMIT"
	if cfg.MemoryLimitAuto && getenv("GOMEMLIMIT") == "" {
		var small bool
		var err error
		limit, source, small, err = autoMemoryLimit(cgroupFS)
		if err != nil {
			log.Warn("container memory limit unreadable: using the floor", "error", err.Error(), "memory_limit", limit)
		}
		if small {
			log.Warn("container memory limit is small: the Go memory limit it leaves is below the floor measured for 1000 concurrent clients; raise resources.limits.memory",
				"memory_limit", limit, "floor", memoryLimitFloor, "want_container_limit_at_least", memoryLimitFloor*100/memoryLimitPercent)
		}
	}
	switch {
	case getenv("GOMEMLIMIT") != "":
		source = "GOMEMLIMIT"
	case limit > 0:
		debug.SetMemoryLimit(limit)
	default:
		debug.SetMemoryLimit(math.MaxInt64) // the runtime's "no limit"
	}
	effective := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	rtmetrics.Read(effective)
	// An "off" percentage reads as the largest uint64, which is -1 as an int64.
	gcPercent, limit := int64(effective[0].Value.Uint64()), int64(effective[1].Value.Uint64())
	if limit == math.MaxInt64 {
		limit, source = 0, "none"
	}
	log.Info("runtime", "gomaxprocs", runtime.GOMAXPROCS(0), "gc_percent", gcPercent,
		"memory_limit", limit, "memory_limit_source", source)
}

func openStore(ctx context.Context, cfg *Config, log *slog.Logger) (Store, error) {
	if cfg.UseMemoryStore {
		store := newMemoryStore()
		if err := seedDemo(ctx, store, log); err != nil {
			return nil, fmt.Errorf("seed demo data: %w", err)
		}
		return store, nil
	}
	store, err := openPostgres(ctx, postgresConnString(cfg), cfg.DBTimeout)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return store, nil
}

// gateway holds every dependency of the handlers; each handler is a closure over what it needs.
type gateway struct {
	cfg          *Config
	log          *slog.Logger
	store        Store
	metrics      *metrics
	users        *userCache
	hashes       *hashPool
	tokens       *tokenVerifier
	loginByIP    *limiter
	loginByEmail *limiter
	knownClients *knownClients
	companyRate  *limiter
	loginGlobal  *limiter      // per-replica failed-login budget (one key)
	transport    *upstreamGate // the shared upstream pool behind its admission checks
	tracer       *tracer       // nil: spans are not exported
	draining     atomic.Bool
	now          func() time.Time

	stopWatching context.CancelFunc
	watching     sync.WaitGroup
}

// newGateway starts following the store's change notifications; close stops it.
func newGateway(cfg *Config, log *slog.Logger, store Store, m *metrics) *gateway {
	g := &gateway{
		cfg:          cfg,
		log:          log,
		store:        store,
		metrics:      m,
		users:        newUserCache(store, cfg.UserCacheTTL, cfg.UserStaleIfError, userCacheMaxEntries, m),
		hashes:       newHashPool(0, cfg.BcryptQueueWait),
		tokens:       newTokenVerifier(cfg.JWTSecret),
		loginByIP:    newLimiter(cfg.LoginIPPerMinute/60, cfg.LoginIPBurst, limiterMaxKeys),
		loginByEmail: newLimiter(cfg.LoginEmailPerMinute/60, cfg.LoginEmailBurst, limiterMaxKeys),
		knownClients: newKnownClients(knownClientTTL, limiterMaxKeys),
		companyRate:  newLimiter(cfg.CompanyRPS, cfg.CompanyBurst, limiterMaxKeys),
		loginGlobal:  newLimiter(cfg.LoginGlobalPerMinute/60, cfg.LoginGlobalBurst, 1),
		transport:    newUpstreamGate(cfg),
		tracer:       newTracer(cfg, log, m),
		now:          time.Now,
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.stopWatching = cancel
	g.watching.Go(func() { g.users.watchUsers(ctx, log) })
	return g
}

const (
	knownClientTTL = 30 * 24 * time.Hour // a login exempts its (email, address) from the per-email limit
	limiterMaxKeys = 100_000             // bounds a limiter's memory under an attack from many IPs or emails
)

func (g *gateway) close() {
	g.stopWatching()
	g.watching.Wait()
	g.hashes.close()
	g.transport.CloseIdleConnections()
	g.tracer.close() // serve has flushed it already; this only stops it elsewhere
}

// route is one row of the table /openapi.json also describes, so it cannot miss a served route.
type route struct {
	pattern string
	auth    routeAuth
	handler http.Handler
}

type routeAuth int

const (
	authNone    routeAuth = iota
	authInitial           // InitialAuth (user routes): a valid token of an active user, with or without a company
	authStrict            // StrictAuth (proxied routes): and the token's company is the user's current one
	authAdmin             // AdminAuth: StrictAuth, and the user's database role is admin
)

func (g *gateway) routes() http.Handler {
	return withTracedMiddleware(rejectUnsafePaths(g.serveMux(g.routeTable())), g.cfg, g.log, g.metrics, g.tracer)
}

// serveMux answers what no row matches with a JSON 404 or 405.
func (g *gateway) serveMux(table []route) *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range table {
		mux.Handle(rt.pattern, g.withAuth(rt.auth, rt.handler))
	}
	mux.Handle("/", handleUnmatched(mux))
	return mux
}

func (g *gateway) withAuth(auth routeAuth, h http.Handler) http.Handler {
	switch auth {
	case authNone:
		return h
	case authAdmin:
		return g.adminAuth(h)
	}
	return g.requireAuth(h, auth)
}

func (g *gateway) routeTable() []route {
	table := []route{
		{"GET /{$}", authNone, g.handleRoot()},
		{"GET /health", authNone, g.handleHealth()},
		{"GET /livez", authNone, handleLivez()},
		{"GET /readyz", authNone, g.handleReadyz()},

		{"POST /api/v1/users/login", authNone, g.handleLogin()},
		{"POST /api/v1/users/me/ensure-company", authInitial, g.handleEnsureCompany()},
		{"POST /api/v1/users/refresh", authInitial, g.handleRefresh()},
		{"GET /api/v1/users/me", authInitial, g.handleMe()},
		{"POST /api/v1/users/logout", authInitial, g.handleLogout()},
		{"POST /api/v1/users/me/password", authInitial, g.handleChangePassword()},
	}

	// Every route of every configured upstream service (upstreamServices).
	transport := g.tracer.wrapTransport(g.transport) // a client span per upstream call
	for _, up := range upstreamServices {
		target := g.cfg.Upstreams[up.name]
		if target == nil {
			continue // an optional service left unset: its routes answer 404
		}
		for _, rt := range up.routes {
			h := newProxy(upstream{up.name, target, rt.gatewayPrefix, rt.upstreamPrefix}, transport, g.cfg, g.log, g.metrics)
			if up.auth != authNone {
				h = g.limitCompany(h)
			}
			for _, pattern := range rt.patterns {
				table = append(table, route{pattern, up.auth, h})
			}
		}
	}

	table = append(table, []route{
		{"GET /api/v1/admin/stats", authAdmin, g.handleAdminStats()},
		{"POST /api/v1/admin/companies", authAdmin, g.handleAdminCreateCompany()},
		{"GET /api/v1/admin/companies/select", authAdmin, g.handleAdminCompanySelect()},
		{"PATCH /api/v1/admin/companies/{id}", authAdmin, g.handleAdminUpdateCompany()},
		{"POST /api/v1/admin/companies/{id}/invitations", authAdmin, g.handleAdminCreateInvitation()},
		{"GET /api/v1/admin/companies/{id}/invitations", authAdmin, g.handleAdminListInvitations()},
		{"DELETE /api/v1/admin/companies/{id}/invitations/{inv}", authAdmin, g.handleAdminRevokeInvitation()},
		{"PUT /api/v1/admin/companies/{id}/domains/{domain}", authAdmin, g.handleAdminPutDomain()},
		{"DELETE /api/v1/admin/companies/{id}/domains/{domain}", authAdmin, g.handleAdminDeleteDomain()},
		{"POST /api/v1/admin/users", authAdmin, g.handleAdminCreateUser()},
		{"GET /api/v1/admin/users/by_company/{company_id}", authAdmin, g.handleAdminUsersByCompany()},
		{"PATCH /api/v1/admin/users/{id}", authAdmin, g.handleAdminUpdateUser()},
		{"POST /api/v1/admin/users/{id}/revoke-sessions", authAdmin, g.handleAdminRevokeSessions()},
	}...)

	if g.cfg.Docs {
		// Last: the document describes every row, these two included.
		table = append(table, route{"GET /openapi.json", authNone, nil}, route{"GET /docs", authNone, nil})
		api := newAPIDescription(table)
		table[len(table)-2].handler, table[len(table)-1].handler = api.handleJSON(), api.handlePage()
	}
	return table
}

func (g *gateway) handleRoot() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"message": serviceName + " is running!"})
	})
}

type healthResponse struct {
	Status  string            `json:"status"`
	Service string            `json:"service"`
	Checks  map[string]string `json:"checks"`
}

// handleHealth needs the database to answer, and the gateway not to be draining.
func (g *gateway) handleHealth() http.Handler {
	return g.probe("healthy", "unhealthy", 0, true)
}

// handleReadyz is 503 only while draining: during a database outage signed-in users are
// served from the user cache, and an empty Service would turn it into a full outage.
func (g *gateway) handleReadyz() http.Handler {
	return g.probe("ready", "not_ready", 500*time.Millisecond, false) // below any sane probe timeout
}

// probe answers notOK/503 while draining and, if needDatabase, while the database does not answer.
func (g *gateway) probe(ok, notOK string, wait time.Duration, needDatabase bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := healthResponse{Status: ok, Service: serviceName, Checks: map[string]string{"database": "ok"}}
		status := http.StatusOK
		ctx := r.Context()
		if wait > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, wait)
			defer cancel()
		}
		if err := g.users.probe(ctx); err != nil {
			resp.Checks["database"] = "unavailable"
			if needDatabase {
				g.log.Warn("health check: database unavailable", "error", err.Error())
				resp.Status, status = notOK, http.StatusServiceUnavailable
			}
		}
		if g.draining.Load() {
			resp.Checks["shutdown"] = "draining"
			resp.Status, status = notOK, http.StatusServiceUnavailable
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, status, resp)
	})
}

// handleLivez checks no dependency: a database outage must not make Kubernetes restart gateways.
func handleLivez() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
}

// handleUnmatched answers 405 (with Allow) when the path exists for other methods, else 404,
// both as JSON rather than net/http's plain text.
func handleUnmatched(mux *http.ServeMux) http.Handler {
	methods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allowed []string
		for _, method := range methods {
			probe := r.Clone(r.Context())
			probe.Method = method
			if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
				allowed = append(allowed, method)
			}
		}
		if len(allowed) > 0 && !slices.Contains(allowed, r.Method) {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeError(w, r, http.StatusMethodNotAllowed, codeMethodNotAllowed, "Method Not Allowed")
			return
		}
		writeError(w, r, http.StatusNotFound, codeNotFound, "Not Found")
	})
}
