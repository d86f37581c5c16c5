// dotenv_test.go: .env files and their place beneath the real environment.
package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDotEnv(t *testing.T) {
	tests := []struct {
		name, in string
		want     map[string]string
	}{
		{"empty file", "", map[string]string{}},
		{"plain", "A=1\nB=two", map[string]string{"A": "1", "B": "two"}},
		{"export prefix", "export A=1\nexport\tB=2", map[string]string{"A": "1", "B": "2"}},
		{"variable named export", "export=1", map[string]string{"export": "1"}},
		{"spaces around", "  A = 1  \n", map[string]string{"A": "1"}},
		{"comments and blank lines", "# comment\n\n   # indented\nA=1\n\n", map[string]string{"A": "1"}},
		{"trailing comment", "A=value # comment", map[string]string{"A": "value"}},
		{"tab before comment", "A=value\t# comment", map[string]string{"A": "value"}},
		{"hash inside a value", "A=val#ue", map[string]string{"A": "val#ue"}},
		{"hash starting a value", "A=#abc", map[string]string{"A": "#abc"}},
		{"only a comment", "A= # comment", map[string]string{"A": ""}},
		{"empty value", "A=", map[string]string{"A": ""}},
		{"equals in value", "A=a=b=c", map[string]string{"A": "a=b=c"}},
		{"url value", "A=postgres://u:p@h:5432/db?sslmode=disable", map[string]string{"A": "postgres://u:p@h:5432/db?sslmode=disable"}},
		{"double quoted", `A="  spaced  "`, map[string]string{"A": "  spaced  "}},
		{"double quoted escapes", `A="x\ny \"q\" back\\slash"`, map[string]string{"A": "x\ny \"q\" back\\slash"}},
		{"other escapes kept", `A="C:\temp\x"`, map[string]string{"A": `C:\temp\x`}},
		{"double quoted hash", `A="#not a comment" # comment`, map[string]string{"A": "#not a comment"}},
		{"double quoted then comment", `A="x"#c`, map[string]string{"A": "x"}},
		{"single quoted literal", `A='lit \n "q" $HOME # x'`, map[string]string{"A": `lit \n "q" $HOME # x`}},
		{"single quoted then comment", `A='x' # c`, map[string]string{"A": "x"}},
		{"quote inside bare value", `A=it's`, map[string]string{"A": "it's"}},
		{"no expansion", "A=${HOME}/x", map[string]string{"A": "${HOME}/x"}},
		{"CRLF", "A=1\r\nB=\"2\"\r\n", map[string]string{"A": "1", "B": "2"}},
		{"byte-order mark", "\xef\xbb\xbfA=1", map[string]string{"A": "1"}},
		{"last wins", "A=1\nA=2", map[string]string{"A": "2"}},
		{"lower-case names", "a_b=1", map[string]string{"a_b": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDotEnv([]byte(tt.in))
			if err != nil {
				t.Fatalf("parseDotEnv: %v", err)
			}
			if !equalMaps(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseDotEnvNamesTheBadLineWithoutEchoingIt(t *testing.T) {
	tests := []struct {
		name, in string
		line     int
		problem  string
	}{
		{"a pasted secret", "A=1\nsup3rsecretvalue", 2, dotEnvNoEquals},
		{"digit first", "1A=sup3rsecretvalue", 1, dotEnvBadName},
		{"space in name", "A B=sup3rsecretvalue", 1, dotEnvBadName},
		{"no name", "=sup3rsecretvalue", 1, dotEnvBadName},
		{"dash in name", "MY-VAR=sup3rsecretvalue", 1, dotEnvBadName},
		{"export without assignment", "export sup3rsecretvalue", 1, dotEnvNoEquals},
		{"unterminated double", "\n\nA=\"sup3rsecretvalue", 3, dotEnvUnterminated},
		{"escaped closing quote", `A="sup3rsecretvalue\"`, 1, dotEnvUnterminated},
		{"unterminated single", "A='sup3rsecretvalue", 1, dotEnvUnterminated},
		{"text after quote", `A="sup3rsecretvalue"x`, 1, dotEnvAfterQuote},
		{"text after single quote", `A='sup3rsecretvalue' x`, 1, dotEnvAfterQuote},
		{"NUL byte", "A=sup3rsecretvalue\x00", 1, dotEnvNUL},
		{"too large", "A=sup3rsecretvalue\n" + strings.Repeat("#", maxDotEnvBytes), 0, dotEnvFileTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDotEnv([]byte(tt.in))
			if err == nil {
				t.Fatalf("parseDotEnv accepted it: %q", got)
			}
			var de *dotEnvError
			if !errors.As(err, &de) || de.Line != tt.line || de.Problem != tt.problem {
				t.Errorf("got %#v, want line %d %q", err, tt.line, tt.problem)
			}
			if strings.Contains(err.Error(), "sup3rsecretvalue") {
				t.Errorf("error echoes the value: %v", err)
			}
		})
	}
}

func TestReadDotEnv(t *testing.T) {
	dir := t.TempDir()
	env, err := readDotEnv(filepath.Join(dir, "missing.env"))
	if err != nil || len(env) != 0 {
		t.Errorf("missing file: %v, %v; want an empty map and no error", env, err)
	}

	good := filepath.Join(dir, "good.env")
	if err := os.WriteFile(good, []byte("GATEWAY_LOG_LEVEL=DEBUG\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env, err = readDotEnv(good)
	if err != nil || env["GATEWAY_LOG_LEVEL"] != "DEBUG" {
		t.Errorf("good file: %v, %v", env, err)
	}

	bad := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(bad, []byte("A=1\nhunter2hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = readDotEnv(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "line 2") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad file error %v: want its path and line 2, never its content", err)
	}

	if _, err := readDotEnv(dir); err == nil {
		t.Error("reading a directory as .env succeeded")
	}
}

func TestRealEnvironmentWinsOverDotEnv(t *testing.T) {
	real := map[string]string{"A": "real", "B": ""}
	dotenv := map[string]string{"A": "file", "B": "file", "C": "file"}
	get := layeredGetenv(envOf(real), dotenv)
	for name, want := range map[string]string{"A": "real", "B": "file", "C": "file", "D": ""} {
		if got := get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}

	// The whole chain: a .env file configures the gateway, the deployment overrides it.
	fileEnv, err := parseDotEnv([]byte("GATEWAY_JWT_SECRET=\"" + testJWTSecret + "\"\nGATEWAY_POSTGRES_PASSWORD='" + testDBPassword + "'\nPORT=3000\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(layeredGetenv(envOf(map[string]string{"PORT": "4000"}), fileEnv), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 4000 || string(cfg.JWTSecret) != testJWTSecret || cfg.PostgresPassword != testDBPassword {
		t.Errorf("port %d secret %q password %q", cfg.Port, cfg.JWTSecret, cfg.PostgresPassword)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// formatDotEnv writes env back as double-quoted lines parseDotEnv must read identically.
func formatDotEnv(env map[string]string) []byte {
	var b bytes.Buffer
	for k, v := range env {
		v = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
		b.WriteString(k + `="` + v + "\"\n")
	}
	return b.Bytes()
}

func FuzzParseDotEnv(f *testing.F) {
	for _, seed := range []string{
		"", "A=1", "export A=1\nB=2", "# c\n\nA = 1 # c", `A="x\ny\"z\\"`, "A='x # y'",
		"A=\"unterminated", "A='x'y", "1A=x", "=x", "A", "A=\x00", "\xef\xbb\xbfA=1\r\n",
		"A=#x\nB= # c\nC=a#b", `A="\`, "A=\"\\\"\"", "export", "export =1", "A=\r", "A=\"x\r\"\r",
	} {
		f.Add([]byte(seed))
	}
	known := map[string]bool{dotEnvNoEquals: true, dotEnvBadName: true, dotEnvUnterminated: true,
		dotEnvAfterQuote: true, dotEnvNUL: true, dotEnvFileTooLarge: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := parseDotEnv(data)
		if err != nil {
			var de *dotEnvError
			if !errors.As(err, &de) || !known[de.Problem] {
				t.Fatalf("unexpected error form %#v", err)
			}
			if de.Line < 0 || de.Line > bytes.Count(data, []byte("\n"))+1 {
				t.Fatalf("line %d out of range", de.Line)
			}
			return
		}
		for k := range env {
			if !validEnvName(k) {
				t.Fatalf("invalid name %q accepted", k)
			}
		}
		again, err := parseDotEnv(formatDotEnv(env))
		if err != nil {
			t.Fatalf("re-parse of formatted values: %v", err)
		}
		if !equalMaps(env, again) {
			t.Fatalf("round trip changed values: %q -> %q", env, again)
		}
	})
}

// FuzzLoadConfigValue puts one value into each setting in turn: loadConfig must never panic,
// every problem line must name a setting, and a refused secret must never be echoed.
