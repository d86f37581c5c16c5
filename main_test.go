// main_test.go: the real program through run(): configuration refusal, -dev end to end,
// the admin listener, and draining on SIGTERM.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// runningGateway is run() started in the background.
type runningGateway struct {
	t      *testing.T
	base   string
	stdout *syncBuffer
	done   chan error
}

// startRun starts run() with env and args and waits until /livez answers.
func startRun(t *testing.T, ctx context.Context, args []string, env map[string]string) *runningGateway {
	t.Helper()
	if env["PORT"] == "" {
		env["PORT"] = freePort(t)
	}
	if env["GATEWAY_ADMIN_PORT"] == "" {
		env["GATEWAY_ADMIN_PORT"] = "0"
	}
	g := &runningGateway{t: t, base: "http://127.0.0.1:" + env["PORT"], stdout: &syncBuffer{}, done: make(chan error, 1)}
	go func() {
		g.done <- run(ctx, args, func(k string) string { return env[k] }, strings.NewReader(""), g.stdout, io.Discard)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(g.base + "/livez")
		if err == nil {
			resp.Body.Close()
			return g
		}
		select {
		case err := <-g.done:
			t.Fatalf("run returned early: %v\n%s", err, g.stdout)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway did not start: %v\n%s", err, g.stdout)
		}
		time.Sleep(10 * time.Millisecond) // polls until the listener is up
	}
}

func (g *runningGateway) wait(timeout time.Duration) error {
	g.t.Helper()
	select {
	case err := <-g.done:
		return err
	case <-time.After(timeout):
		g.t.Fatalf("run did not return within %v\n%s", timeout, g.stdout)
		return nil
	}
}

// logLines decodes every JSON log line written so far.
func (g *runningGateway) logLines() []map[string]any {
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(g.stdout.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines
}

func postJSON(t *testing.T, u, token, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp, m
}

func TestRunRefusesUnsafeConfigurationWithExitCode2(t *testing.T) {
	cases := []struct {
		name  string
		env   map[string]string
		names []string
	}{
		{"nothing set", map[string]string{}, []string{"GATEWAY_JWT_SECRET", "GATEWAY_POSTGRES_PASSWORD"}},
		{"short secret", map[string]string{"GATEWAY_JWT_SECRET": "tiny-secret-value", "GATEWAY_POSTGRES_PASSWORD": "pw"}, []string{"GATEWAY_JWT_SECRET"}},
		{"other algorithm", map[string]string{"GATEWAY_JWT_SECRET": testSecret, "GATEWAY_POSTGRES_PASSWORD": "pw", "GATEWAY_JWT_ALGORITHM": "none"}, []string{"GATEWAY_JWT_ALGORITHM"}},
		{"bad level and url", map[string]string{"GATEWAY_JWT_SECRET": testSecret, "GATEWAY_POSTGRES_PASSWORD": "pw", "GATEWAY_LOG_LEVEL": "LOUD", "GATEWAY_QUERY_SERVICE_URL": "ftp://x"}, []string{"GATEWAY_LOG_LEVEL", "GATEWAY_QUERY_SERVICE_URL"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout syncBuffer
			err := run(context.Background(), nil, func(k string) string { return tc.env[k] }, strings.NewReader(""), &stdout, io.Discard)
			if err == nil || exitCode(err) != 2 {
				t.Fatalf("run = %v (exit %d), want exit code 2", err, exitCode(err))
			}
			for _, name := range tc.names {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("error does not name %s:\n%v", name, err)
				}
			}
			if s := tc.env["GATEWAY_JWT_SECRET"]; s != "" && strings.Contains(err.Error()+stdout.String(), s) {
				t.Fatal("the secret was printed")
			}
		})
	}
}

func TestRunDevModeLogsInAndEchoesIdentity(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := startRun(t, ctx, []string{"-dev"}, map[string]string{"GATEWAY_DRAIN_DELAY": "0s"})

	var email, password string
	warnings := 0
	for _, line := range g.logLines() {
		if line["level"] == "WARN" {
			warnings++
		}
		if e, ok := line["demo_email"].(string); ok {
			email, password = e, line["demo_password"].(string)
		}
	}
	if email == "" || password == "" {
		t.Fatalf("no demo credentials in the start log:\n%s", g.stdout)
	}
	if warnings < 3 {
		t.Fatalf("dev shortcuts not announced at WARN (%d warnings):\n%s", warnings, g.stdout)
	}

	resp, login := postJSON(t, g.base+"/api/v1/users/login", "", fmt.Sprintf(`{"email":%q,"password":%q}`, email, password))
	if resp.StatusCode != 200 {
		t.Fatalf("demo login: %d %v", resp.StatusCode, login)
	}
	req, _ := http.NewRequest("GET", g.base+"/api/v1/query/chats?limit=5", nil)
	req.Header.Set("Authorization", "Bearer "+login["access_token"].(string))
	req.Header.Set("X-Company-ID", "forged")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var echo echoResponse
	if err := json.NewDecoder(resp.Body).Decode(&echo); err != nil || resp.StatusCode != 200 {
		t.Fatalf("echo: %d %v", resp.StatusCode, err)
	}
	if echo.Path != "/api/v1/chats" || echo.RawQuery != "limit=5" {
		t.Fatalf("echo saw %s?%s", echo.Path, echo.RawQuery)
	}
	if got := echo.Headers["X-Company-Id"]; len(got) != 1 || got[0] != login["company_id"] {
		t.Fatalf("X-Company-ID at the upstream = %v, want [%v]", got, login["company_id"])
	}
	if got := echo.Headers["X-User-Email"]; len(got) != 1 || got[0] != email {
		t.Fatalf("X-User-Email at the upstream = %v", got)
	}
	cancel()
	if err := g.wait(10 * time.Second); err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestDevShortcutsNeedDevFlag(t *testing.T) {
	err := run(context.Background(), nil, func(string) string { return "" }, strings.NewReader(""), io.Discard, io.Discard)
	if exitCode(err) != 2 {
		t.Fatalf("without -dev an empty environment must refuse to start, got %v", err)
	}
}

// postgresEnv splits a test database URL into the gateway's settings.
func postgresEnv(t *testing.T, dbURL string) map[string]string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(u.Host)
	return map[string]string{
		"GATEWAY_POSTGRES_USER":     u.User.Username(),
		"GATEWAY_POSTGRES_PASSWORD": "trust-auth-ignores-it",
		"GATEWAY_POSTGRES_SERVER":   host,
		"GATEWAY_POSTGRES_PORT":     port,
		"GATEWAY_POSTGRES_DB":       strings.TrimPrefix(u.Path, "/"),
	}
}

func TestRunDrainsInFlightStreamOnSIGTERM(t *testing.T) {
	dbURL := testDatabaseURL(t)
	store, err := openPostgres(context.Background(), dbURL, testDBTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	company, _ := store.CreateCompany(context.Background(), "Acme")
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw-pw-pw-pw"), bcrypt.MinCost)
	user, err := store.CreateUser(context.Background(), NewUser{Email: "drain@example.com", HashedPassword: string(hash), CompanyID: company.ID})
	if err != nil {
		t.Fatal(err)
	}

	// An upstream whose SSE stream sends its first event, then the rest only once the
	// gateway has stopped accepting connections: it is surely in flight through shutdown.
	shuttingDown := make(chan struct{})
	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 6; i++ {
			if i == 1 {
				select {
				case <-shuttingDown:
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "data: %d\n\n", i)
			http.NewResponseController(w).Flush()
		}
	})}
	upLn, _ := net.Listen("tcp", "127.0.0.1:0")
	go upstream.Serve(upLn)
	defer upstream.Close()

	env := postgresEnv(t, dbURL)
	env["GATEWAY_JWT_SECRET"] = testSecret
	env["GATEWAY_QUERY_SERVICE_URL"] = "http://" + upLn.Addr().String()
	env["GATEWAY_DRAIN_DELAY"] = "500ms"
	env["GATEWAY_SHUTDOWN_GRACE"] = "10s"
	env["GATEWAY_ADMIN_PORT"] = freePort(t)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	g := startRun(t, ctx, nil, env)

	// The admin listener serves metrics; the public one does not.
	if resp, err := http.Get("http://127.0.0.1:" + env["GATEWAY_ADMIN_PORT"] + "/metrics"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("admin /metrics: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := http.Get(g.base + "/metrics"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("public /metrics must be 404: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	tok, err := signToken([]byte(testSecret), Claims{Subject: user.ID, Email: user.Email, CompanyID: company.ID, ExpiresAt: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", g.base+"/api/v1/query/ask", strings.NewReader(`{"query":"hi"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %v", resp, err)
	}
	reader := bufio.NewReader(resp.Body)
	if first, _ := reader.ReadString('\n'); first != "data: 0\n" {
		t.Fatalf("first event %q", first)
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Not-ready at once, while still accepting during the drain delay.
	deadline := time.Now().Add(2 * time.Second)
	for {
		h, err := http.Get(g.base + "/health")
		if err == nil {
			h.Body.Close()
			if h.StatusCode == http.StatusServiceUnavailable {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health did not turn 503 after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond) // polls
	}
	// After the drain delay the listener closes while the stream is still open.
	waitFor(t, 5*time.Second, "the listener closed", func() bool {
		c, err := net.Dial("tcp", strings.TrimPrefix(g.base, "http://"))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(shuttingDown)

	rest, err := io.ReadAll(reader)
	resp.Body.Close()
	if err != nil || !strings.Contains(string(rest), "data: 5") {
		t.Fatalf("in-flight stream cut during drain: %q %v", rest, err)
	}
	if err := g.wait(15 * time.Second); err != nil {
		t.Fatalf("run after SIGTERM: %v", err)
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(g.base, "http://"), time.Second); err == nil {
		t.Fatal("still accepting connections after shutdown")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Logf("dial after shutdown: %v", err)
	}
}

func TestREADMEDocumentsEverySettingAndTheTwoCommands(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		if !strings.Contains(string(readme), "| `"+s.Name+"` |") {
			t.Errorf("README configuration table lacks %s", s.Name)
		}
	}
	for _, command := range []string{"go run . -dev", "go test -race -timeout 30m ./..."} {
		if !strings.Contains(string(readme), "\n"+command+"\n") {
			t.Errorf("README lacks the set-up command %q", command)
		}
	}
	ci, err := os.ReadFile(".ci/run")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ci), "\ngo test -race -timeout 30m ./...\n") {
		t.Error(".ci/run does not run the README's test command")
	}
}

func TestREADMEListsEveryErrorCode(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{} // code → the rest of its row
	for _, line := range strings.Split(string(readme), "\n") {
		if rest, ok := strings.CutPrefix(line, "| `"); ok {
			if code, row, ok := strings.Cut(rest, "` | "); ok && !strings.ContainsAny(code, " /{") {
				documented[code] = row
			}
		}
	}
	seen := map[string]bool{}
	for _, c := range errorCodes {
		if seen[c.Code] {
			t.Errorf("code %s listed twice in errorCodes", c.Code)
		}
		seen[c.Code] = true
		row, ok := documented[c.Code]
		if !ok {
			t.Errorf("README's error table lacks %s", c.Code)
			continue
		}
		statuses := make([]string, len(c.Statuses))
		for i, s := range c.Statuses {
			statuses[i] = fmt.Sprint(s)
		}
		if want := strings.Join(statuses, ", ") + " | " + c.Meaning + " |"; row != want {
			t.Errorf("README row of %s = %q, want %q", c.Code, row, want)
		}
	}
}
