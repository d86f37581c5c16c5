// devmode.go: the -dev shortcuts: the demo company and user of the in-memory store and the
// built-in echo upstream. Config only allows them with -dev, and each is announced at WARN.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Public by design: the in-memory store exists only in -dev, which then listens on loopback only.
const (
	demoEmail    = "demo@atenex.dev"
	demoPassword = "atenex-demo-password"
	// A cost-12 hash of demoPassword, so that -dev does not spend a bcrypt at every start.
	demoHash = "$2b$12$BGsX/avW7Sbn9K1XnEPCdeqSY6NAIWWUoZbWMMt/mMrAdbk4DL.Ze"
	// An administrator, so the README's administration examples work with nothing set up.
	demoRole = "admin"
)

// seedDemo creates the demo company and its user, an administrator, and announces them.
func seedDemo(ctx context.Context, store Store, log *slog.Logger) error {
	company, err := store.CreateCompany(ctx, "Atenex Demo")
	if err != nil {
		return fmt.Errorf("create demo company: %w", err)
	}
	if _, err := store.CreateUser(ctx, NewUser{
		Email: demoEmail, HashedPassword: demoHash, FullName: "Demo User", Role: demoRole, CompanyID: company.ID,
	}); err != nil {
		return fmt.Errorf("create demo user: %w", err)
	}
	log.Warn("development shortcut: demo user ready, an administrator (in-memory store; log in with these)",
		"demo_email", demoEmail, "demo_password", demoPassword, "demo_role", demoRole, "demo_company_id", company.ID)
	return nil
}

// startDevEchoUpstreams serves the echo upstream on loopback for every upstream -dev left unset.
func startDevEchoUpstreams(ctx context.Context, cfg *Config, log *slog.Logger, wg *sync.WaitGroup) error {
	var unset []string
	for _, up := range upstreamServices {
		if up.devEcho && cfg.Upstreams[up.name] == nil {
			unset = append(unset, up.name)
		}
	}
	if len(unset) == 0 {
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the echo upstream: %w", err)
	}
	srv := &http.Server{Handler: echoHandler(), ReadHeaderTimeout: 10 * time.Second}
	wg.Go(func() { srv.Serve(ln) })
	wg.Go(func() { <-ctx.Done(); srv.Close() })
	echoURL := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	for _, name := range unset {
		cfg.Upstreams[name] = echoURL
	}
	log.Warn("development shortcut: echo upstream serving unset upstreams", "url", echoURL.String())
	return nil
}

const echoMaxBody = 64 << 10

type echoResponse struct {
	Echo      string              `json:"echo"`
	Method    string              `json:"method"`
	Path      string              `json:"path"`
	RawQuery  string              `json:"raw_query"`
	Headers   map[string][]string `json:"headers"`
	BodyBytes int64               `json:"body_bytes"`
	Body      string              `json:"body"`
}

// echoHandler answers with what it received: the mapped path and injected identity headers.
func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		head, _ := io.ReadAll(io.LimitReader(r.Body, echoMaxBody))
		rest, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(echoResponse{
			Echo: "atenex-dev-echo-upstream", Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
			Headers: r.Header, BodyBytes: int64(len(head)) + rest, Body: string(head),
		})
	})
}
