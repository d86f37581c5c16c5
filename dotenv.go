// dotenv.go: reading a developer's .env file, beneath the real environment.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// maxDotEnvBytes bounds the .env file: it holds a few dozen settings, never megabytes.
const maxDotEnvBytes = 1 << 20

// Fixed strings on purpose: a malformed line may be a misplaced secret, so none of it is echoed.
const (
	dotEnvNoEquals     = "expected KEY=VALUE"
	dotEnvBadName      = "invalid variable name (letters, digits and '_', not starting with a digit)"
	dotEnvUnterminated = "unterminated quoted value"
	dotEnvAfterQuote   = "unexpected text after the closing quote"
	dotEnvNUL          = "contains a NUL byte"
	dotEnvFileTooLarge = "file larger than 1 MiB"
)

// dotEnvError is a malformed .env line: its number (0: the whole file) and a fixed problem.
type dotEnvError struct {
	Line    int
	Problem string
}

func (e *dotEnvError) Error() string {
	if e.Line == 0 {
		return e.Problem
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Problem)
}

// parseDotEnv reads [export] KEY=VALUE lines, blank lines and '#' comments. A value is double-quoted
// (escapes \n, \" and \\; other backslashes kept), single-quoted (literal) or bare (" #" starts a
// comment). Nothing is expanded; a later KEY wins.
func parseDotEnv(data []byte) (map[string]string, error) {
	if len(data) > maxDotEnvBytes {
		return nil, &dotEnvError{Problem: dotEnvFileTooLarge}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte-order mark from Windows editors
	env := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		key, value, problem := parseDotEnvLine(line)
		if problem != "" {
			return nil, &dotEnvError{Line: i + 1, Problem: problem}
		}
		if key != "" {
			env[key] = value
		}
	}
	return env, nil
}

// parseDotEnvLine returns an empty key for a blank or comment line.
func parseDotEnvLine(line string) (key, value, problem string) {
	if strings.IndexByte(line, 0) >= 0 {
		return "", "", dotEnvNUL
	}
	line = strings.TrimLeft(strings.TrimSuffix(line, "\r"), " \t")
	if line == "" || line[0] == '#' {
		return "", "", ""
	}
	if rest, ok := strings.CutPrefix(line, "export"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
		line = strings.TrimLeft(rest, " \t")
	}
	key, raw, ok := strings.Cut(line, "=")
	if key = strings.TrimRight(key, " \t"); !ok {
		return "", "", dotEnvNoEquals
	} else if !validEnvName(key) {
		return "", "", dotEnvBadName
	}
	if v := strings.TrimLeft(raw, " \t"); v != "" && (v[0] == '"' || v[0] == '\'') {
		q, i := v[0], 1
		var b strings.Builder
		for ; i < len(v) && v[i] != q; i++ {
			c := v[i]
			if q == '"' && c == '\\' && i+1 < len(v) && strings.IndexByte(`n"\`, v[i+1]) >= 0 {
				if i++; v[i] == 'n' {
					c = '\n'
				} else {
					c = v[i]
				}
			}
			b.WriteByte(c)
		}
		if i >= len(v) {
			return "", "", dotEnvUnterminated
		}
		if rest := strings.TrimLeft(v[i+1:], " \t"); rest != "" && rest[0] != '#' {
			return "", "", dotEnvAfterQuote
		}
		return key, b.String(), ""
	}
	for i := 1; i < len(raw); i++ { // a '#' after a blank starts a comment
		if raw[i] == '#' && (raw[i-1] == ' ' || raw[i-1] == '\t') {
			raw = raw[:i]
			break
		}
	}
	return key, strings.TrimSpace(raw), ""
}

// validEnvName reports whether s is a portable environment variable name.
func validEnvName(s string) bool {
	const digits = "0123456789"
	return s != "" && !strings.ContainsRune(digits, rune(s[0])) &&
		strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"+digits) == ""
}

// readDotEnv reads the .env file at path; a missing file is an empty map.
func readDotEnv(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	} else if err != nil {
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
