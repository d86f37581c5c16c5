// config_test.go: the settings table, loadConfig's defaults and refusals, and -dev shortcuts.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

const (
	testJWTSecret  = "t3st-jwt-secret-Zq8Xv2Lm9Rk4Wp7Ny1Hb"
	testDBPassword = "pg-pa55word-Kx7Qw"
)

// envOf turns a map into a getenv function.
func envOf(m map[string]string) func(string) string {
	return func(name string) string { return m[name] }
}

// productionEnv is the smallest valid production environment.
func productionEnv() map[string]string {
	return map[string]string{
		"GATEWAY_JWT_SECRET":        testJWTSecret,
		"GATEWAY_POSTGRES_PASSWORD": testDBPassword,
	}
}

// problemLines splits a loadConfig error into its lines.
func problemLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// lookupSetting returns the row of the table named name.
func lookupSetting(name string) (setting, bool) {
	i := slices.IndexFunc(settings, func(s setting) bool { return s.Name == name })
	if i < 0 {
		return setting{}, false
	}
	return settings[i], true
}

// recordingEnv wraps getenv and records every name asked for.
func recordingEnv(m map[string]string, seen map[string]bool) func(string) string {
	return func(name string) string {
		seen[name] = true
		return m[name]
	}
}

func TestConfigDefaultsApplied(t *testing.T) {
	cfg, err := loadConfig(envOf(productionEnv()), false)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Dev", cfg.Dev, false},
		{"Port", cfg.Port, 8080},
		{"LogLevel", cfg.LogLevel, slog.LevelInfo},
		{"IngestURL", cfg.Upstreams["ingest"].String(), "http://ingest-api-service.nyro-develop.svc.cluster.local:80"},
		{"QueryURL", cfg.Upstreams["query"].String(), "http://query-service.nyro-develop.svc.cluster.local:80"},
		{"AuthURL nil", cfg.Upstreams["auth"] == nil, true},
		{"JWTSecret", string(cfg.JWTSecret), testJWTSecret},
		{"JWTExpire", cfg.JWTExpire, 1440 * time.Minute},
		{"PostgresUser", cfg.PostgresUser, "postgres"},
		{"PostgresPassword", cfg.PostgresPassword, testDBPassword},
		{"PostgresServer", cfg.PostgresServer, "postgresql.nyro-develop.svc.cluster.local"},
		{"PostgresPort", cfg.PostgresPort, 5432},
		{"PostgresDB", cfg.PostgresDB, "atenex"},
		{"UseMemoryStore", cfg.UseMemoryStore, false},
		{"DefaultCompanyID", cfg.DefaultCompanyID, ""},
		{"HTTPClientTimeout", cfg.HTTPClientTimeout, 60 * time.Second},
		{"MaxConnsPerHost", cfg.MaxConnsPerHost, 200},
		{"MaxIdleConnsPerHost", cfg.MaxIdleConnsPerHost, 100},
		{"VercelFrontendURL", cfg.VercelFrontendURL, ""},
		{"CORSAllowedOrigins", len(cfg.CORSAllowedOrigins), 0},
		{"DBTimeout", cfg.DBTimeout, 2 * time.Second},
		{"UserCacheTTL", cfg.UserCacheTTL, time.Minute},
		{"UserStaleIfError", cfg.UserStaleIfError, 10 * time.Minute},
		{"SessionMaxAge", cfg.SessionMaxAge, 168 * time.Hour},
		{"AdminPort", cfg.AdminPort, 9090},
		{"ShutdownGrace", cfg.ShutdownGrace, 25 * time.Second},
		{"DrainDelay", cfg.DrainDelay, 10 * time.Second},
		{"ReadHeaderTimeout", cfg.ReadHeaderTimeout, 10 * time.Second},
		{"IdleTimeout", cfg.IdleTimeout, 30 * time.Second},
		{"MaxBodyBytes", cfg.MaxBodyBytes, int64(16384)},
		{"TrustedProxies", len(cfg.TrustedProxies), 0},
		{"LoginIPBurst", cfg.LoginIPBurst, 10},
		{"LoginIPPerMinute", cfg.LoginIPPerMinute, 10.0},
		{"LoginEmailBurst", cfg.LoginEmailBurst, 10},
		{"LoginEmailPerMinute", cfg.LoginEmailPerMinute, 5.0},
		{"BcryptQueueWait", cfg.BcryptQueueWait, time.Second},
		{"CompanyRPS", cfg.CompanyRPS, 0.0},
		{"CompanyBurst", cfg.CompanyBurst, 0},
		{"GCPercent", cfg.GCPercent, 100},
		{"MemoryLimitAuto", cfg.MemoryLimitAuto, true},
		{"MemoryLimit", cfg.MemoryLimit, int64(0)},
		{"DevShortcuts", len(cfg.DevShortcuts), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestConfigAcceptsEveryDocumentedForm(t *testing.T) {
	tests := []struct {
		name, value string
		extra       map[string]string
		got         func(*Config) any
		want        any
	}{
		{"PORT", " 3000 ", nil, func(c *Config) any { return c.Port }, 3000},
		{"GATEWAY_LOG_LEVEL", "debug", nil, func(c *Config) any { return c.LogLevel }, slog.LevelDebug},
		{"GATEWAY_LOG_LEVEL", "Warning", nil, func(c *Config) any { return c.LogLevel }, slog.LevelWarn},
		{"GATEWAY_LOG_LEVEL", "WARN", nil, func(c *Config) any { return c.LogLevel }, slog.LevelWarn},
		{"GATEWAY_LOG_LEVEL", "error", nil, func(c *Config) any { return c.LogLevel }, slog.LevelError},
		{"GATEWAY_INGEST_SERVICE_URL", "http://localhost:8001/", nil, func(c *Config) any { return c.Upstreams["ingest"].String() }, "http://localhost:8001"},
		{"GATEWAY_QUERY_SERVICE_URL", "HTTPS://Query.Example:8443/base//", nil, func(c *Config) any { return c.Upstreams["query"].String() }, "https://query.example:8443/base"},
		{"GATEWAY_QUERY_SERVICE_URL", "http://[::1]:8002", nil, func(c *Config) any { return c.Upstreams["query"].String() }, "http://[::1]:8002"},
		{"GATEWAY_AUTH_SERVICE_URL", "http://auth-service:80", nil, func(c *Config) any { return c.Upstreams["auth"].String() }, "http://auth-service:80"},
		{"GATEWAY_JWT_SECRET", "  " + testJWTSecret + "\n", nil, func(c *Config) any { return string(c.JWTSecret) }, "  " + testJWTSecret + "\n"},
		{"GATEWAY_JWT_EXPIRE_MINUTES", "525600", nil, func(c *Config) any { return c.JWTExpire }, 525600 * time.Minute},
		{"GATEWAY_POSTGRES_SERVER", "127.0.0.1", nil, func(c *Config) any { return c.PostgresServer }, "127.0.0.1"},
		{"GATEWAY_POSTGRES_SERVER", "::1", nil, func(c *Config) any { return c.PostgresServer }, "::1"},
		{"GATEWAY_DEFAULT_COMPANY_ID", "0F8FAD5B-D9CB-469F-A165-70867728950E", nil, func(c *Config) any { return c.DefaultCompanyID }, "0f8fad5b-d9cb-469f-a165-70867728950e"},
		{"GATEWAY_HTTP_CLIENT_TIMEOUT", "2.5", nil, func(c *Config) any { return c.HTTPClientTimeout }, 2500 * time.Millisecond},
		{"GATEWAY_HTTP_CLIENT_TIMEOUT", "90s", nil, func(c *Config) any { return c.HTTPClientTimeout }, 90 * time.Second},
		{"GATEWAY_HTTP_CLIENT_MAX_KEEPALIVE_CONNECTIONS", "0", nil, func(c *Config) any { return c.MaxIdleConnsPerHost }, 0},
		{"GATEWAY_HTTP_CLIENT_MAX_KEEPALIVE_CONNECTIONS", "10", map[string]string{"GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS": "10"}, func(c *Config) any { return c.MaxIdleConnsPerHost }, 10},
		{"VERCEL_FRONTEND_URL", "https://Atenex-Frontend.vercel.app/", nil, func(c *Config) any { return c.VercelFrontendURL }, "https://atenex-frontend.vercel.app"},
		{"VERCEL_FRONTEND_URL", "https://app.example:443", nil, func(c *Config) any { return c.VercelFrontendURL }, "https://app.example"},
		{"VERCEL_FRONTEND_URL", "http://localhost:3000", nil, func(c *Config) any { return c.VercelFrontendURL }, "http://localhost:3000"},
		{"GATEWAY_CORS_ALLOWED_ORIGINS", " https://a.example , ,http://b.example:8080/,https://a.example,", nil,
			func(c *Config) any { return strings.Join(c.CORSAllowedOrigins, " ") }, "https://a.example http://b.example:8080"},
		{"GATEWAY_DB_TIMEOUT", "250ms", nil, func(c *Config) any { return c.DBTimeout }, 250 * time.Millisecond},
		{"GATEWAY_DB_TIMEOUT", "0.5", nil, func(c *Config) any { return c.DBTimeout }, 500 * time.Millisecond},
		{"GATEWAY_USER_CACHE_TTL", "0", nil, func(c *Config) any { return c.UserCacheTTL }, time.Duration(0)},
		{"GATEWAY_USER_CACHE_TTL", "60s", nil, func(c *Config) any { return c.UserCacheTTL }, time.Minute},
		{"GATEWAY_ADMIN_PORT", "0", nil, func(c *Config) any { return c.AdminPort }, 0},
		{"GATEWAY_DRAIN_DELAY", "0", nil, func(c *Config) any { return c.DrainDelay }, time.Duration(0)},
		{"GATEWAY_DRAIN_DELAY", "24s", nil, func(c *Config) any { return c.DrainDelay }, 24 * time.Second},
		{"GATEWAY_MAX_BODY_BYTES", "1KiB", nil, func(c *Config) any { return c.MaxBodyBytes }, int64(1024)},
		{"GATEWAY_MAX_BODY_BYTES", "1048576", nil, func(c *Config) any { return c.MaxBodyBytes }, int64(1 << 20)},
		{"GATEWAY_TRUSTED_PROXIES", "10.1.2.3/8, 192.168.0.7,,2001:db8::1, ::ffff:172.16.0.0/108", nil,
			func(c *Config) any { return prefixesString(c.TrustedProxies) }, "10.0.0.0/8 192.168.0.7/32 2001:db8::1/128 172.16.0.0/12"},
		{"GATEWAY_LOGIN_IP_BURST", "0", nil, func(c *Config) any { return c.LoginIPBurst }, 0},
		{"GATEWAY_LOGIN_EMAIL_PER_MINUTE", "0.5", nil, func(c *Config) any { return c.LoginEmailPerMinute }, 0.5},
		{"GATEWAY_BCRYPT_QUEUE_WAIT", "0", nil, func(c *Config) any { return c.BcryptQueueWait }, time.Duration(0)},
		{"GATEWAY_RATE_LIMIT_COMPANY_RPS", "2.5", nil, func(c *Config) any { return c.CompanyBurst }, 3},
		{"GATEWAY_RATE_LIMIT_COMPANY_BURST", "7", map[string]string{"GATEWAY_RATE_LIMIT_COMPANY_RPS": "2.5"}, func(c *Config) any { return c.CompanyBurst }, 7},
		{"GATEWAY_GC_PERCENT", "100", nil, func(c *Config) any { return c.GCPercent }, 100},
		{"GATEWAY_GC_PERCENT", "off", map[string]string{"GATEWAY_MEMORY_LIMIT": "512MiB"}, func(c *Config) any { return c.GCPercent }, -1},
		{"GATEWAY_MEMORY_LIMIT", "64MiB", nil, func(c *Config) any { return c.MemoryLimit }, int64(64 << 20)},
		{"GATEWAY_MEMORY_LIMIT", "1gib", nil, func(c *Config) any { return c.MemoryLimit }, int64(1 << 30)},
		{"GATEWAY_MEMORY_LIMIT", "2097152", nil, func(c *Config) any { return c.MemoryLimit }, int64(2 << 20)},
		{"GATEWAY_MEMORY_LIMIT", "AUTO", nil, func(c *Config) any { return c.MemoryLimitAuto }, true},
		{"GATEWAY_MEMORY_LIMIT", "0", nil, func(c *Config) any { return c.MemoryLimitAuto }, false},
		{"GATEWAY_MEMORY_LIMIT", "96MiB", nil, func(c *Config) any { return c.MemoryLimitAuto }, false},
		// auto always ends with a limit (the floor at least), so the collector may be off.
		{"GATEWAY_GC_PERCENT", "off", map[string]string{"GATEWAY_MEMORY_LIMIT": "auto"}, func(c *Config) any { return c.GCPercent }, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			env := productionEnv()
			env[tt.name] = tt.value
			for k, v := range tt.extra {
				env[k] = v
			}
			cfg, err := loadConfig(envOf(env), false)
			if err != nil {
				t.Fatalf("loadConfig refused a valid value: %v", err)
			}
			if got := tt.got(cfg); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func prefixesString(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}

func TestConfigRefusesInvalidSetting(t *testing.T) {
	long64 := strings.Repeat("a", 64)
	tests := []struct {
		name   string
		values []string
		extra  map[string]string
	}{
		{"PORT", []string{"abc", "0", "65536", "-1", "80.5"}, nil},
		{"GATEWAY_LOG_LEVEL", []string{"TRACE", "verbose", "10"}, nil},
		{"GATEWAY_INGEST_SERVICE_URL", []string{"ftp://ingest", "ingest:80", "ingest-service", "/api", "http://", "http://user:pass@ingest", "http://ingest/?debug=1", "http://ingest?", "http://ingest/#frag", "http://ingest:99999", "http://ingest:", "http://*.ingest", "http://in gest"}, nil},
		{"GATEWAY_QUERY_SERVICE_URL", []string{"query-service:80", "http://[::1", "http://[fe80::1%25eth0]:80"}, nil},
		{"GATEWAY_AUTH_SERVICE_URL", []string{"mailto:auth@example.com"}, nil},
		{"GATEWAY_JWT_SECRET", []string{"too-short-secret", "TU_CLAVE_SECRETA_JWT_DE_PRODUCCION_MUY_SEGURA", "una-clave-secreta-muy-fuerte-para-desarrollo-local-1234567890", "YOUR_JWT_SECRET_KEY_NEEDS_TO_BE_SET_IN_ENV", "CHANGE_ME_to_a_random_secret_of_at_least_32_bytes", "prefix-0123456789-ChangeMe-0123456789abcdef", "0123456789abcdef0123456789abcdef-change_me"}, nil},
		{"GATEWAY_JWT_ALGORITHM", []string{"HS512", "none", "RS256"}, nil},
		{"GATEWAY_JWT_EXPIRE_MINUTES", []string{"0", "525601", "1.5", "a day"}, nil},
		{"GATEWAY_POSTGRES_PASSWORD", []string{""}, nil},
		{"GATEWAY_POSTGRES_USER", []string{long64, "a\x01b"}, nil},
		{"GATEWAY_POSTGRES_SERVER", []string{"db host", "db/x"}, nil},
		{"GATEWAY_POSTGRES_PORT", []string{"0", "70000", "pg"}, nil},
		{"GATEWAY_POSTGRES_DB", []string{long64}, nil},
		{"GATEWAY_DEFAULT_COMPANY_ID", []string{"not-a-uuid", "0f8fad5bd9cb469fa16570867728950e", "un-uuid-valido-de-compania-en-tu-db-local"}, nil},
		{"GATEWAY_HTTP_CLIENT_TIMEOUT", []string{"0", "-5", "-5s", "NaN", "Inf", "1e300", "sixty", "2h"}, nil},
		{"GATEWAY_HTTP_CLIENT_MAX_CONNECTIONS", []string{"0", "many"}, nil},
		{"GATEWAY_HTTP_CLIENT_MAX_KEEPALIVE_CONNECTIONS", []string{"-1", "201"}, nil},
		{"VERCEL_FRONTEND_URL", []string{"https://atenex.vercel.app/login", "atenex.vercel.app", "ftp://atenex.vercel.app", "https://atenex.vercel.app?x=1", "https://atenex.vercel.app/#top", "https://user@atenex.vercel.app", "*"}, nil},
		{"GATEWAY_CORS_ALLOWED_ORIGINS", []string{"*", "https://ok.example, *", "https://*.example.com", "https://ok.example,https://x.example/path", "ok.example"}, nil},
		{"GATEWAY_DB_TIMEOUT", []string{"0", "-1s", "2m", "soon"}, nil},
		{"GATEWAY_USER_CACHE_TTL", []string{"61s", "-1"}, nil},
		{"GATEWAY_ADMIN_PORT", []string{"8080"}, nil},
		{"GATEWAY_ADMIN_PORT", []string{"3000"}, map[string]string{"PORT": "3000"}},
		{"GATEWAY_ADMIN_PORT", []string{"-1", "65536"}, nil},
		{"GATEWAY_SHUTDOWN_GRACE", []string{"0", "11m"}, nil},
		{"GATEWAY_DRAIN_DELAY", []string{"25s", "30", "-1s"}, nil},
		{"GATEWAY_READ_HEADER_TIMEOUT", []string{"0", "6m"}, nil},
		{"GATEWAY_IDLE_TIMEOUT", []string{"0s", "2h"}, nil},
		{"GATEWAY_MAX_BODY_BYTES", []string{"1023", "1048577", "2MiB", "16KB", "-1", "0"}, nil},
		{"GATEWAY_TRUSTED_PROXIES", []string{"10.0.0.0/33", "proxy.internal", "fe80::1%eth0", "10.0.0.1, bogus"}, nil},
		{"GATEWAY_LOGIN_IP_BURST", []string{"-1", "ten"}, nil},
		{"GATEWAY_LOGIN_IP_PER_MINUTE", []string{"0", "-1", "NaN"}, nil},
		{"GATEWAY_LOGIN_EMAIL_BURST", []string{"1.5"}, nil},
		{"GATEWAY_LOGIN_EMAIL_PER_MINUTE", []string{"+Inf", "0"}, nil},
		{"GATEWAY_BCRYPT_QUEUE_WAIT", []string{"31s", "-1"}, nil},
		{"GATEWAY_RATE_LIMIT_COMPANY_RPS", []string{"-1", "NaN", "fast"}, nil},
		{"GATEWAY_RATE_LIMIT_COMPANY_BURST", []string{"-1", "1.5"}, nil},
		{"GATEWAY_GC_PERCENT", []string{"-2", "10001", "half"}, nil},
		{"GATEWAY_GC_PERCENT", []string{"-1"}, map[string]string{"GATEWAY_MEMORY_LIMIT": "0"}}, // off with no memory limit
		{"GATEWAY_GC_PERCENT", []string{"off"}, map[string]string{"GATEWAY_MEMORY_LIMIT": "0"}},
		{"GATEWAY_MEMORY_LIMIT", []string{"100", "64MB", "-1", "1XiB", "99999999999TiB", "99999999999999999999", "automatic"}, nil},
	}
	for _, tt := range tests {
		for _, value := range tt.values {
			t.Run(tt.name+"="+value, func(t *testing.T) {
				env := productionEnv()
				env[tt.name] = value
				for k, v := range tt.extra {
					env[k] = v
				}
				cfg, err := loadConfig(envOf(env), false)
				if err == nil {
					t.Fatalf("loadConfig accepted %s=%q: %+v", tt.name, value, cfg)
				}
				if cfg != nil {
					t.Errorf("loadConfig returned a config along with an error")
				}
				lines := problemLines(err)
				if len(lines) != 1 || !strings.HasPrefix(lines[0], tt.name+": ") {
					t.Fatalf("want one line naming %s, got:\n%v", tt.name, err)
				}
				if !strings.Contains(lines[0], "expected") {
					t.Errorf("line does not say what is expected: %s", lines[0])
				}
				if strings.Contains(err.Error(), testJWTSecret) || strings.Contains(err.Error(), testDBPassword) {
					t.Errorf("error shows a secret: %v", err)
				}
				if s, _ := lookupSetting(tt.name); s.Secret && value != "" && strings.Contains(err.Error(), value) {
					t.Errorf("error shows the refused secret: %v", err)
				}
			})
		}
	}
}

func TestConfigReportsEveryProblemOnItsOwnLine(t *testing.T) {
	env := map[string]string{
		"PORT":                           "eighty",
		"GATEWAY_LOG_LEVEL":              "LOUD",
		"GATEWAY_JWT_SECRET":             "short",
		"GATEWAY_JWT_ALGORITHM":          "none",
		"GATEWAY_DEFAULT_COMPANY_ID":     "acme",
		"GATEWAY_CORS_ALLOWED_ORIGINS":   "*, https://ok.example, ftp://bad.example",
		"GATEWAY_TRUSTED_PROXIES":        "nope",
		"GATEWAY_MEMORY_LIMIT":           "lots",
		"GATEWAY_LOGIN_EMAIL_PER_MINUTE": "-3",
		// GATEWAY_POSTGRES_PASSWORD unset
	}
	_, err := loadConfig(envOf(env), false)
	lines := problemLines(err)
	var got []string
	for _, l := range lines {
		name, _, ok := strings.Cut(l, ": ")
		if !ok {
			t.Errorf("line without a variable name: %q", l)
		}
		got = append(got, name)
	}
	want := []string{
		"PORT", "GATEWAY_LOG_LEVEL", "GATEWAY_JWT_SECRET", "GATEWAY_JWT_ALGORITHM",
		"GATEWAY_POSTGRES_PASSWORD", "GATEWAY_DEFAULT_COMPANY_ID",
		"GATEWAY_CORS_ALLOWED_ORIGINS", "GATEWAY_CORS_ALLOWED_ORIGINS",
		"GATEWAY_TRUSTED_PROXIES", "GATEWAY_LOGIN_EMAIL_PER_MINUTE", "GATEWAY_MEMORY_LIMIT",
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("problem lines name\n %v\nwant\n %v\nerror:\n%v", got, want, err)
	}
}

func TestRequiredSettingsRefuseWhenUnset(t *testing.T) {
	_, err := loadConfig(envOf(nil), false)
	var got, want []string
	for _, l := range problemLines(err) {
		name, _, _ := strings.Cut(l, ": ")
		got = append(got, name)
	}
	for _, s := range settings {
		if s.Required {
			want = append(want, s.Name)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("an empty environment refuses %v, want exactly the required settings %v", got, want)
	}
}

func TestConfigErrorsNeverShowSecrets(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		hidden []string
	}{
		{"short JWT secret", map[string]string{"GATEWAY_JWT_SECRET": "tiny-Secret-9", "GATEWAY_POSTGRES_PASSWORD": testDBPassword}, []string{"tiny-Secret-9", testDBPassword}},
		{"placeholder JWT secret", map[string]string{"GATEWAY_JWT_SECRET": "CHANGE_ME-zz-0123456789abcdef0123456789", "GATEWAY_POSTGRES_PASSWORD": testDBPassword}, []string{"CHANGE_ME-zz-0123456789abcdef0123456789", testDBPassword}},
		{"credentials in an upstream URL", map[string]string{"GATEWAY_JWT_SECRET": testJWTSecret, "GATEWAY_POSTGRES_PASSWORD": testDBPassword,
			"GATEWAY_QUERY_SERVICE_URL": "http://admin:hunter2pass@query:80"}, []string{"hunter2pass", testJWTSecret, testDBPassword}},
		{"credentials in a broken URL", map[string]string{"GATEWAY_JWT_SECRET": testJWTSecret, "GATEWAY_POSTGRES_PASSWORD": testDBPassword,
			"GATEWAY_AUTH_SERVICE_URL": "http://admin:hunter2pass@auth:80/\x7f"}, []string{"hunter2pass"}},
		{"credentials in an origin", map[string]string{"GATEWAY_JWT_SECRET": testJWTSecret, "GATEWAY_POSTGRES_PASSWORD": testDBPassword,
			"GATEWAY_CORS_ALLOWED_ORIGINS": "https://u:hunter2pass@app.example"}, []string{"hunter2pass"}},
		{"everything else wrong", map[string]string{"GATEWAY_JWT_SECRET": testJWTSecret, "GATEWAY_POSTGRES_PASSWORD": testDBPassword,
			"PORT": "x", "GATEWAY_POSTGRES_PORT": "x", "GATEWAY_DB_TIMEOUT": "x"}, []string{testJWTSecret, testDBPassword}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(envOf(tt.env), false)
			if err == nil {
				t.Fatal("loadConfig accepted a bad configuration")
			}
			for _, h := range tt.hidden {
				if strings.Contains(err.Error(), h) {
					t.Errorf("error shows %q:\n%v", h, err)
				}
			}
		})
	}
}

func TestConfigLogValueMasksSecrets(t *testing.T) {
	env := productionEnv()
	env["GATEWAY_AUTH_SERVICE_URL"] = "http://auth:80"
	env["GATEWAY_TRUSTED_PROXIES"] = "10.0.0.0/8"
	env["GATEWAY_CORS_ALLOWED_ORIGINS"] = "https://a.example"
	cfg, err := loadConfig(envOf(env), false)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("configuration", "config", cfg)
	out := buf.String()
	for _, secret := range []string{testJWTSecret, testDBPassword} {
		if strings.Contains(out, secret) {
			t.Fatalf("log line shows a secret: %s", out)
		}
	}
	var line struct {
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log line is not JSON: %v\n%s", err, out)
	}
	for _, s := range settings {
		if _, ok := line.Config[s.Name]; !ok {
			t.Errorf("log line lacks %s", s.Name)
		}
	}
	want := map[string]any{
		"GATEWAY_JWT_SECRET":        fmt.Sprintf("set (%d bytes)", len(testJWTSecret)),
		"GATEWAY_POSTGRES_PASSWORD": "***",
		"PORT":                      8080.0,
		"GATEWAY_DB_TIMEOUT":        "2s",
		"GATEWAY_AUTH_SERVICE_URL":  "http://auth:80",
		"GATEWAY_LOG_LEVEL":         "INFO",
		"GATEWAY_MEMORY_LIMIT":      "auto", // the resolved value is on the "runtime" line
	}
	for k, v := range want {
		if line.Config[k] != v {
			t.Errorf("%s logged as %v, want %v", k, line.Config[k], v)
		}
	}
}

func TestDevShortcutsOnlyWithDev(t *testing.T) {
	full := productionEnv()
	full["GATEWAY_INGEST_SERVICE_URL"] = "http://localhost:8001"
	full["GATEWAY_QUERY_SERVICE_URL"] = "http://localhost:8002"
	tests := []struct {
		name        string
		env         map[string]string
		dev         bool
		wantErr     string // variable the error must name; "" = success
		wantCuts    int
		memoryStore bool
		echo        bool
	}{
		{"dev on a bare machine takes every shortcut", nil, true, "", 4, true, true},
		{"dev with everything configured takes none", full, true, "", 0, false, false},
		{"production on a bare machine refuses", nil, false, "GATEWAY_JWT_SECRET", 0, false, false},
		{"production without URLs uses the cluster defaults", productionEnv(), false, "", 0, false, false},
		{"dev still validates a secret that is set", map[string]string{"GATEWAY_JWT_SECRET": "short"}, true, "GATEWAY_JWT_SECRET", 0, false, false},
		{"dev still refuses a placeholder secret", map[string]string{"GATEWAY_JWT_SECRET": "CHANGE_ME_to_a_random_secret_of_at_least_32_bytes"}, true, "GATEWAY_JWT_SECRET", 0, false, false},
		{"dev still validates a URL that is set", map[string]string{"GATEWAY_QUERY_SERVICE_URL": "query:80"}, true, "GATEWAY_QUERY_SERVICE_URL", 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(envOf(tt.env), tt.dev)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr+": ") {
					t.Fatalf("want an error naming %s, got %v", tt.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if cfg.Dev != tt.dev {
				t.Errorf("Dev = %v", cfg.Dev)
			}
			if len(cfg.DevShortcuts) != tt.wantCuts {
				t.Errorf("shortcuts %q, want %d", cfg.DevShortcuts, tt.wantCuts)
			}
			if cfg.UseMemoryStore != tt.memoryStore {
				t.Errorf("UseMemoryStore = %v", cfg.UseMemoryStore)
			}
			if (cfg.Upstreams["ingest"] == nil) != tt.echo || (cfg.Upstreams["query"] == nil) != tt.echo {
				t.Errorf("ingest %v query %v, want echo upstreams: %v", cfg.Upstreams["ingest"], cfg.Upstreams["query"], tt.echo)
			}
			if len(cfg.JWTSecret) < minJWTSecretBytes {
				t.Errorf("JWT secret of %d bytes", len(cfg.JWTSecret))
			}
		})
	}

	a, err := loadConfig(envOf(nil), true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadConfig(envOf(nil), true)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.JWTSecret, b.JWTSecret) || bytes.Equal(a.JWTSecret, make([]byte, minJWTSecretBytes)) {
		t.Error("ephemeral JWT secrets are not random")
	}
	joined := strings.Join(a.DevShortcuts, "\n")
	for _, want := range []string{"ephemeral JWT secret", "in-memory user store", "echo upstream for ingest", "echo upstream for query"} {
		if !strings.Contains(joined, want) {
			t.Errorf("shortcuts do not announce %q:\n%s", want, joined)
		}
	}
}

func TestEverySettingReadIsInTheTable(t *testing.T) {
	everything := map[string]string{}
	for _, s := range settings {
		everything[s.Name] = "x" // invalid mostly: the error path must read everything too
	}
	seen := map[string]bool{}
	for _, run := range []struct {
		env map[string]string
		dev bool
	}{
		{productionEnv(), false},
		{nil, true},
		{nil, false},
		{everything, false},
		{everything, true},
	} {
		loadConfig(recordingEnv(run.env, seen), run.dev)
	}
	for name := range seen {
		if _, ok := lookupSetting(name); !ok {
			t.Errorf("loadConfig reads %s, which is not in the settings table", name)
		}
	}
	for _, s := range settings {
		if !seen[s.Name] {
			t.Errorf("settings lists %s, which loadConfig never reads", s.Name)
		}
	}
}

func TestSettingsTableIsWellFormed(t *testing.T) {
	names := map[string]bool{}
	for _, s := range settings {
		if names[s.Name] {
			t.Errorf("%s listed twice", s.Name)
		}
		names[s.Name] = true
		if s.Doc == "" {
			t.Errorf("%s has no doc", s.Name)
		}
		if s.Required && s.Default != "" {
			t.Errorf("%s is required but has a default", s.Name)
		}
		if s.Secret && s.Default != "" {
			t.Errorf("secret %s has a default", s.Name)
		}
		if s.Name != "PORT" && s.Name != "VERCEL_FRONTEND_URL" && !strings.HasPrefix(s.Name, "GATEWAY_") {
			t.Errorf("%s lacks the GATEWAY_ prefix", s.Name)
		}
	}
}

func TestLoadDatabaseConfigNeedsNoJWTSecret(t *testing.T) {
	seen := map[string]bool{}
	env := map[string]string{
		"GATEWAY_POSTGRES_PASSWORD": testDBPassword,
		"GATEWAY_POSTGRES_SERVER":   "127.0.0.1",
		"GATEWAY_DB_TIMEOUT":        "3",
		"PORT":                      "not read",
		"GATEWAY_JWT_SECRET":        "short, and not read",
	}
	cfg, err := loadDatabaseConfig(recordingEnv(env, seen))
	if err != nil {
		t.Fatalf("loadDatabaseConfig: %v", err)
	}
	if cfg.PostgresServer != "127.0.0.1" || cfg.PostgresPort != 5432 || cfg.PostgresUser != "postgres" ||
		cfg.PostgresDB != "atenex" || cfg.PostgresPassword != testDBPassword || cfg.DBTimeout != 3*time.Second {
		t.Errorf("database config %+v", cfg)
	}
	for name := range seen {
		if !strings.HasPrefix(name, "GATEWAY_POSTGRES_") && name != "GATEWAY_DB_TIMEOUT" {
			t.Errorf("loadDatabaseConfig reads %s", name)
		}
	}

	tests := []struct {
		name string
		env  map[string]string
	}{
		{"GATEWAY_POSTGRES_PASSWORD", map[string]string{}},
		{"GATEWAY_POSTGRES_PORT", map[string]string{"GATEWAY_POSTGRES_PASSWORD": "p", "GATEWAY_POSTGRES_PORT": "0"}},
		{"GATEWAY_DB_TIMEOUT", map[string]string{"GATEWAY_POSTGRES_PASSWORD": "p", "GATEWAY_DB_TIMEOUT": "-1"}},
		{"GATEWAY_POSTGRES_SERVER", map[string]string{"GATEWAY_POSTGRES_PASSWORD": "p", "GATEWAY_POSTGRES_SERVER": "a b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadDatabaseConfig(envOf(tt.env))
			lines := problemLines(err)
			if len(lines) != 1 || !strings.HasPrefix(lines[0], tt.name+": ") {
				t.Errorf("want one line naming %s, got %v", tt.name, err)
			}
		})
	}
}

func FuzzLoadConfigValue(f *testing.F) {
	for _, seed := range []string{
		"", "0", "-1", "1e300", "NaN", "0x10", "5s", "-5s", "0.5", "16KiB", "9999999999999TiB", "off",
		"http://h:80/", "http://u:p@h", "https://[::1]:443", "http://[", "*", "a,b,,*", "10.0.0.0/8",
		"::ffff:10.0.0.0/104", "fe80::1%eth0", "0f8fad5b-d9cb-469f-a165-70867728950e", "DEBUG", "\x00\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		for _, s := range settings {
			env := productionEnv()
			if s.Secret {
				value = "Zq9#" + value // a marker makes any echo detectable
			}
			env[s.Name] = value
			_, err := loadConfig(envOf(env), false)
			for _, line := range problemLines(err) {
				name, _, _ := strings.Cut(line, ": ")
				if _, ok := lookupSetting(name); !ok {
					t.Fatalf("%s=%q: line names no setting: %q", s.Name, value, line)
				}
			}
			if s.Secret && err != nil && strings.Contains(err.Error(), value) {
				t.Fatalf("%s: error echoes the secret: %v", s.Name, err)
			}
			if s.Secret {
				value = strings.TrimPrefix(value, "Zq9#")
			}
		}
	})
}
