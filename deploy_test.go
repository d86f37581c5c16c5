// deploy_test.go: the Dockerfile and the Kubernetes manifests agree with the settings table
// and with each other, and the binary they ship is static.
package main

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	k8sNamespace     = "nyro-develop"
	configMapName    = "atenex-api-gateway-config"
	secretName       = "atenex-api-gateway-secrets"
	secretExampleYML = "gateway-secret.example.yaml"
)

// ---- A reader for the YAML subset the manifests use -------------------------------------
//
// Block mappings and sequences, plain and quoted scalars, comments, and "---" between
// documents. Everything else (flow collections, block scalars, anchors, tags) is refused
// with an error rather than misread, so a manifest edited beyond the subset fails the tests
// loudly instead of passing them by accident.

// yamlScalar keeps whether the value was quoted: Kubernetes reads a plain 9090 as a number
// and a quoted "9090" as a string, and some fields accept only one of the two.
type yamlScalar struct {
	Text   string
	Quoted bool
}

type yamlLine struct {
	num    int // 1-based, for error messages
	indent int
	text   string // without indentation and comment
}

// parseYAML returns one value per document: map[string]any, []any, yamlScalar or nil.
func parseYAML(src string) ([]any, error) {
	var docs []any
	var lines []yamlLine
	flush := func() error {
		if len(lines) == 0 {
			return nil
		}
		p := &yamlParser{lines: lines}
		v, err := p.block(lines[0].indent)
		if err != nil {
			return err
		}
		if p.i < len(p.lines) {
			return p.errorf("unexpected indentation")
		}
		docs = append(docs, v)
		lines = nil
		return nil
	}
	for n, raw := range strings.Split(src, "\n") {
		raw = strings.TrimRight(raw, " \t\r")
		body := strings.TrimLeft(raw, " ")
		indent := len(raw) - len(body)
		if strings.HasPrefix(body, "\t") {
			return nil, fmt.Errorf("line %d: tab in indentation", n+1)
		}
		text, err := stripComment(body)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		if text == "" {
			continue
		}
		if indent == 0 && (text == "---" || strings.HasPrefix(text, "--- ")) {
			if strings.TrimSpace(text[3:]) != "" {
				return nil, fmt.Errorf("line %d: content after document marker", n+1)
			}
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		if indent == 0 && (text == "..." || strings.HasPrefix(text, "%")) {
			return nil, fmt.Errorf("line %d: directives and document end markers are not supported", n+1)
		}
		lines = append(lines, yamlLine{num: n + 1, indent: indent, text: text})
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

// stripComment removes a trailing comment (a # at the start or after a blank, outside quotes)
// and trailing blanks.
func stripComment(s string) (string, error) {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '"' && c == '\\':
			i++ // the escaped byte cannot end the string
		case quote != 0 && c == quote:
			if quote == '\'' && i+1 < len(s) && s[i+1] == '\'' {
				i++ // '' is an escaped quote inside single quotes
				continue
			}
			quote = 0
		case quote != 0:
		case (c == '"' || c == '\'') && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t' || s[i-1] == '-'):
			// Only a quote that starts a value or key opens a quoted scalar; an apostrophe
			// inside a plain scalar is just a character.
			quote = c
		case c == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t'):
			return strings.TrimRight(s[:i], " \t\r"), nil
		}
	}
	if quote != 0 {
		return "", errors.New("unterminated quoted scalar")
	}
	return strings.TrimRight(s, " \t\r"), nil
}

type yamlParser struct {
	lines []yamlLine
	i     int
}

func (p *yamlParser) errorf(format string, args ...any) error {
	num := 0
	if p.i < len(p.lines) {
		num = p.lines[p.i].num
	} else if len(p.lines) > 0 {
		num = p.lines[len(p.lines)-1].num
	}
	return fmt.Errorf("line %d: %s", num, fmt.Sprintf(format, args...))
}

func isSeqItem(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

// block parses the mapping or sequence whose entries start at column indent.
func (p *yamlParser) block(indent int) (any, error) {
	if isSeqItem(p.lines[p.i].text) {
		return p.sequence(indent)
	}
	return p.mapping(indent)
}

func (p *yamlParser) mapping(indent int) (any, error) {
	m := map[string]any{}
	for p.i < len(p.lines) {
		ln := p.lines[p.i]
		if ln.indent < indent {
			break
		}
		if ln.indent > indent {
			return nil, p.errorf("unexpected indentation")
		}
		if isSeqItem(ln.text) {
			return nil, p.errorf("sequence item where a mapping key was expected")
		}
		key, rest, ok, err := splitKey(ln.text)
		if err != nil {
			return nil, p.errorf("%v", err)
		}
		if !ok {
			return nil, p.errorf("expected \"key: value\", got %q", ln.text)
		}
		if _, dup := m[key]; dup {
			return nil, p.errorf("duplicate key %q", key)
		}
		if rest != "" {
			v, err := parseScalar(rest)
			if err != nil {
				return nil, p.errorf("%s: %v", key, err)
			}
			m[key] = v
			p.i++
			continue
		}
		p.i++
		switch {
		case p.i < len(p.lines) && p.lines[p.i].indent > indent:
			v, err := p.block(p.lines[p.i].indent)
			if err != nil {
				return nil, err
			}
			m[key] = v
		case p.i < len(p.lines) && p.lines[p.i].indent == indent && isSeqItem(p.lines[p.i].text):
			// "key:" followed by "- item" at the same column is a valid, common style.
			v, err := p.sequence(indent)
			if err != nil {
				return nil, err
			}
			m[key] = v
		default:
			m[key] = nil
		}
	}
	return m, nil
}

func (p *yamlParser) sequence(indent int) (any, error) {
	s := []any{}
	for p.i < len(p.lines) {
		ln := p.lines[p.i]
		if ln.indent < indent || (ln.indent == indent && !isSeqItem(ln.text)) {
			break
		}
		if ln.indent > indent {
			return nil, p.errorf("unexpected indentation")
		}
		body := strings.TrimLeft(ln.text[1:], " ")
		if body == "" {
			p.i++
			if p.i < len(p.lines) && p.lines[p.i].indent > indent {
				v, err := p.block(p.lines[p.i].indent)
				if err != nil {
					return nil, err
				}
				s = append(s, v)
			} else {
				s = append(s, nil)
			}
			continue
		}
		_, _, isKey, err := splitKey(body)
		if err != nil {
			return nil, p.errorf("%v", err)
		}
		if isKey || isSeqItem(body) {
			// "- key: v" opens a mapping (or "- - v" a sequence) whose column is where
			// its first entry starts; the following lines continue it at that column.
			p.lines[p.i] = yamlLine{num: ln.num, indent: ln.indent + len(ln.text) - len(body), text: body}
			v, err := p.block(p.lines[p.i].indent)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
			continue
		}
		v, err := parseScalar(body)
		if err != nil {
			return nil, p.errorf("%v", err)
		}
		s = append(s, v)
		p.i++
	}
	return s, nil
}

// splitKey splits "key: rest" at the first ": " (or a final ":") outside quotes.
// ok is false when the text is not a mapping entry.
func splitKey(text string) (key, rest string, ok bool, err error) {
	if text[0] == '"' || text[0] == '\'' {
		end, err := quotedEnd(text)
		if err != nil {
			return "", "", false, err
		}
		after := text[end:]
		if after != ":" && !strings.HasPrefix(after, ": ") {
			return "", "", false, nil // a quoted scalar, not a key
		}
		k, err := parseScalar(text[:end])
		if err != nil {
			return "", "", false, err
		}
		return k.(yamlScalar).Text, strings.TrimLeft(after[1:], " "), true, nil
	}
	for i := 0; i < len(text); i++ {
		if text[i] == ':' && (i+1 == len(text) || text[i+1] == ' ') {
			key = text[:i]
			if key == "" || strings.ContainsAny(key[:1], "[{&*!|>%@`#") || strings.HasSuffix(key, " ") {
				return "", "", false, fmt.Errorf("unsupported key %q", key)
			}
			return key, strings.TrimLeft(text[i+1:], " "), true, nil
		}
	}
	return "", "", false, nil
}

// quotedEnd returns the index just past the closing quote of the scalar text starts with.
func quotedEnd(text string) (int, error) {
	q := text[0]
	for i := 1; i < len(text); i++ {
		switch {
		case q == '"' && text[i] == '\\':
			i++
		case text[i] == q && q == '\'' && i+1 < len(text) && text[i+1] == '\'':
			i++
		case text[i] == q:
			return i + 1, nil
		}
	}
	return 0, errors.New("unterminated quoted scalar")
}

func parseScalar(text string) (any, error) {
	switch text[0] {
	case '"':
		end, err := quotedEnd(text)
		if err != nil {
			return nil, err
		}
		if end != len(text) {
			return nil, fmt.Errorf("text after quoted scalar %q", text)
		}
		// Go's escapes are the subset of YAML's double-quoted escapes the manifests need.
		s, err := strconv.Unquote(text)
		if err != nil {
			return nil, fmt.Errorf("unsupported double-quoted scalar %s: %w", text, err)
		}
		return yamlScalar{Text: s, Quoted: true}, nil
	case '\'':
		end, err := quotedEnd(text)
		if err != nil {
			return nil, err
		}
		if end != len(text) {
			return nil, fmt.Errorf("text after quoted scalar %q", text)
		}
		return yamlScalar{Text: strings.ReplaceAll(text[1:len(text)-1], "''", "'"), Quoted: true}, nil
	case '[', '{', '&', '*', '!', '|', '>', '%', '@', '`':
		return nil, fmt.Errorf("unsupported YAML syntax %q", text)
	}
	if isSeqItem(text) || strings.Contains(text, ": ") || strings.HasSuffix(text, ":") || strings.Contains(text, " #") {
		return nil, fmt.Errorf("ambiguous plain scalar %q: quote it", text)
	}
	return yamlScalar{Text: text}, nil
}

// emitYAML writes v back in the same subset; parseYAML(emitYAML(v)) must give v again.
func emitYAML(v any) string {
	var b strings.Builder
	emitValue(&b, v, 0)
	return b.String()
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]*$`)

func emitValue(b *strings.Builder, v any, indent int) {
	pad := strings.Repeat(" ", indent)
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			name := k
			if !plainKey.MatchString(k) {
				name = strconv.Quote(k)
			}
			b.WriteString(pad + name + ":")
			emitChild(b, v[k], indent)
		}
	case []any:
		for _, item := range v {
			b.WriteString(pad + "-")
			emitChild(b, item, indent)
		}
	}
}

func emitChild(b *strings.Builder, v any, indent int) {
	switch v := v.(type) {
	case nil:
		b.WriteString("\n")
	case yamlScalar:
		if v.Quoted {
			b.WriteString(" " + strconv.Quote(v.Text) + "\n")
		} else {
			b.WriteString(" " + v.Text + "\n")
		}
	case map[string]any, []any:
		b.WriteString("\n")
		emitValue(b, v, indent+2)
	}
}

// ---- Walking parsed manifests ---------------------------------------------------------

type manifest struct {
	file string // base name in k8s/
	obj  map[string]any
}

func (m manifest) kind() string { return str(m.obj, "kind") }
func (m manifest) name() string { return str(m.obj, "metadata", "name") }

// at follows a path of mapping keys; a key "name=x" selects the item of a sequence whose
// "name" is x.
func at(v any, path ...string) any {
	for _, key := range path {
		switch node := v.(type) {
		case map[string]any:
			v = node[key]
		case []any:
			field, want, ok := strings.Cut(key, "=")
			if !ok {
				return nil
			}
			v = nil
			for _, item := range node {
				if str(item, field) == want {
					v = item
					break
				}
			}
		default:
			return nil
		}
	}
	return v
}

// str is the text of the scalar at path, "" when there is none.
func str(v any, path ...string) string {
	s, _ := at(v, path...).(yamlScalar)
	return s.Text
}

// plain reports whether the scalar at path is the unquoted literal want (a bool or number
// to Kubernetes, not a string).
func plain(v any, want string, path ...string) bool {
	s, ok := at(v, path...).(yamlScalar)
	return ok && !s.Quoted && s.Text == want
}

// stringMap reads ConfigMap data or Secret stringData.
func stringMap(v any) (map[string]yamlScalar, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a mapping")
	}
	out := make(map[string]yamlScalar, len(m))
	for k, v := range m {
		s, ok := v.(yamlScalar)
		if !ok {
			return nil, fmt.Errorf("%s: not a scalar", k)
		}
		out[k] = s
	}
	return out, nil
}

func k8sFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no k8s/*.yaml manifests")
	}
	return files
}

func loadManifests(t *testing.T) []manifest {
	t.Helper()
	var out []manifest
	for _, path := range k8sFiles(t) {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := parseYAML(string(src))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, d := range docs {
			obj, ok := d.(map[string]any)
			if !ok {
				t.Fatalf("%s: a document is not a mapping", path)
			}
			out = append(out, manifest{file: filepath.Base(path), obj: obj})
		}
	}
	return out
}

func find(t *testing.T, ms []manifest, kind, name string) manifest {
	t.Helper()
	var found []manifest
	for _, m := range ms {
		if m.kind() == kind && (name == "" || m.name() == name) {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s %q in k8s/, found %d", kind, name, len(found))
	}
	return found[0]
}

// ---- Checks against the settings table ---------------------------------------------------

// settingName matches every environment variable the gateway reads, in values and comments
// alike: a commented example with a misspelt name misleads as much as a live one.
var settingName = regexp.MustCompile(`\b(?:GATEWAY_[A-Z0-9_]*[A-Z0-9]|PORT|VERCEL_FRONTEND_URL)\b`)

// unknownSettings lists "file: NAME" for each name in texts (file → content) that is not a
// row of table.
func unknownSettings(texts map[string]string, table []setting) []string {
	known := map[string]bool{}
	for _, s := range table {
		known[s.Name] = true
	}
	var bad []string
	for file, text := range texts {
		for _, name := range settingName.FindAllString(text, -1) {
			if !known[name] {
				bad = append(bad, file+": "+name)
			}
		}
	}
	sort.Strings(bad)
	return slices.Compact(bad)
}

// misplacedSettings lists what is wrong with where settings are provided: required ones
// missing from both the ConfigMap and the Secret, secrets missing from the Secret or present
// in the ConfigMap, keys that are in both, and values Kubernetes would not read as strings.
func misplacedSettings(configMap, secret map[string]yamlScalar, table []setting) []string {
	var bad []string
	for _, s := range table {
		_, inCM := configMap[s.Name]
		_, inSecret := secret[s.Name]
		if s.Required && !inCM && !inSecret {
			bad = append(bad, s.Name+": required but in neither the ConfigMap nor the Secret")
		}
		if s.Secret && !inSecret {
			bad = append(bad, s.Name+": secret but missing from the Secret")
		}
		if s.Secret && inCM {
			bad = append(bad, s.Name+": secret but in the ConfigMap")
		}
	}
	for name := range configMap {
		if _, dup := secret[name]; dup {
			bad = append(bad, name+": in both the ConfigMap and the Secret (the Secret silently wins)")
		}
	}
	for _, data := range []map[string]yamlScalar{configMap, secret} {
		for name, v := range data {
			if !v.Quoted && looksTyped(v.Text) {
				bad = append(bad, fmt.Sprintf("%s: %s is read as a number, bool or null, not a string: quote it", name, v.Text))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// looksTyped reports whether a plain YAML scalar would not be a string.
func looksTyped(s string) bool {
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", "":
		return true
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

func readK8sTexts(t *testing.T) map[string]string {
	t.Helper()
	texts := map[string]string{}
	for _, path := range k8sFiles(t) {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		texts[filepath.Base(path)] = string(src)
	}
	return texts
}

func requireSettingsTable(t *testing.T) {
	t.Helper()
	if len(settings) == 0 {
		t.Fatal("the settings table in config.go is empty")
	}
}

func TestManifestsUseOnlyKnownSettings(t *testing.T) {
	requireSettingsTable(t)
	texts := readK8sTexts(t)
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	texts["Dockerfile"] = string(dockerfile)
	for _, bad := range unknownSettings(texts, settings) {
		t.Errorf("%s is not in the settings table (config.go)", bad)
	}
}

func configMapAndSecret(t *testing.T, ms []manifest) (cm, secret map[string]yamlScalar) {
	t.Helper()
	cmObj := find(t, ms, "ConfigMap", configMapName)
	secretObj := find(t, ms, "Secret", secretName)
	if secretObj.file != secretExampleYML {
		t.Errorf("Secret %s is in %s, want only in %s", secretName, secretObj.file, secretExampleYML)
	}
	cm, err := stringMap(at(cmObj.obj, "data"))
	if err != nil {
		t.Fatalf("ConfigMap data: %v", err)
	}
	if at(secretObj.obj, "data") != nil {
		t.Error("the Secret example must use stringData, not base64 data")
	}
	secret, err = stringMap(at(secretObj.obj, "stringData"))
	if err != nil {
		t.Fatalf("Secret stringData: %v", err)
	}
	return cm, secret
}

func TestManifestsProvideEveryRequiredSetting(t *testing.T) {
	requireSettingsTable(t)
	cm, secret := configMapAndSecret(t, loadManifests(t))
	for _, bad := range misplacedSettings(cm, secret, settings) {
		t.Error(bad)
	}
}

// The Secret example must never carry a usable value: the gateway refuses these placeholders.
func TestSecretExampleHoldsOnlyPlaceholders(t *testing.T) {
	_, secret := configMapAndSecret(t, loadManifests(t))
	if len(secret) == 0 {
		t.Fatal("the Secret example has no keys")
	}
	for name, v := range secret {
		if !strings.HasPrefix(v.Text, "CHANGE_ME") {
			t.Errorf("%s = %q in %s, want a CHANGE_ME placeholder", name, v.Text, secretExampleYML)
		}
	}
}

// Each check above must be able to fail: run it on manifests with a known mistake.
func TestManifestChecksCatchMistakes(t *testing.T) {
	table := []setting{
		{Name: "PORT", Default: "8080"},
		{Name: "GATEWAY_LOG_LEVEL", Default: "INFO"},
		{Name: "GATEWAY_JWT_SECRET", Required: true, Secret: true},
		{Name: "GATEWAY_POSTGRES_SERVER", Default: "localhost"},
		{Name: "GATEWAY_POSTGRES_PASSWORD", Required: true, Secret: true},
		{Name: "GATEWAY_AUTH_TOKEN", Secret: true}, // optional but secret
	}
	q := func(s string) yamlScalar { return yamlScalar{Text: s, Quoted: true} }
	goodCM := map[string]yamlScalar{"PORT": q("8080"), "GATEWAY_LOG_LEVEL": q("INFO")}
	goodSecret := map[string]yamlScalar{
		"GATEWAY_JWT_SECRET": q("CHANGE_ME"), "GATEWAY_POSTGRES_PASSWORD": q("CHANGE_ME"), "GATEWAY_AUTH_TOKEN": q("CHANGE_ME"),
	}
	with := func(base map[string]yamlScalar, key string, v *yamlScalar) map[string]yamlScalar {
		out := map[string]yamlScalar{}
		for k, v := range base {
			out[k] = v
		}
		if v == nil {
			delete(out, key)
		} else {
			out[key] = *v
		}
		return out
	}
	ptr := func(s yamlScalar) *yamlScalar { return &s }

	t.Run("unknown names", func(t *testing.T) {
		cases := []struct {
			name, text string
			want       []string
		}{
			{"known only", "PORT: \"8080\"\nGATEWAY_LOG_LEVEL: INFO\n", nil},
			{"misspelt key", "GATEWAY_LOG_LEVL: INFO\n", []string{"f: GATEWAY_LOG_LEVL"}},
			{"in a comment", "# GATEWAY_DEFAULT_COMPANY: x\n", []string{"f: GATEWAY_DEFAULT_COMPANY"}},
			{"in a value", "args: --from-literal=GATEWAY_JWT_SECRE=x\n", []string{"f: GATEWAY_JWT_SECRE"}},
			{"part of a longer word is not a name", "XPORT: 1\nGATEWAY_LOG_LEVELS_X: 1\n", []string{"f: GATEWAY_LOG_LEVELS_X"}},
			{"reported once", "GATEWAY_X: 1\n# GATEWAY_X\n", []string{"f: GATEWAY_X"}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				got := unknownSettings(map[string]string{"f": c.text}, table)
				if !reflect.DeepEqual(got, c.want) {
					t.Errorf("got %q, want %q", got, c.want)
				}
			})
		}
	})

	t.Run("placement", func(t *testing.T) {
		cases := []struct {
			name       string
			cm, secret map[string]yamlScalar
			want       int // number of problems
		}{
			{"correct", goodCM, goodSecret, 0},
			{"required secret missing", goodCM, with(goodSecret, "GATEWAY_JWT_SECRET", nil), 2},
			{"optional secret missing from the Secret", goodCM, with(goodSecret, "GATEWAY_AUTH_TOKEN", nil), 1},
			{"secret in the ConfigMap", with(goodCM, "GATEWAY_JWT_SECRET", ptr(q("x"))), goodSecret, 2},
			{"secret only in the ConfigMap", with(goodCM, "GATEWAY_POSTGRES_PASSWORD", ptr(q("x"))), with(goodSecret, "GATEWAY_POSTGRES_PASSWORD", nil), 2},
			{"plain number in the ConfigMap", with(goodCM, "PORT", ptr(yamlScalar{Text: "8080"})), goodSecret, 1},
			{"plain bool in the ConfigMap", with(goodCM, "GATEWAY_LOG_LEVEL", ptr(yamlScalar{Text: "yes"})), goodSecret, 1},
			{"plain word is a string", with(goodCM, "GATEWAY_LOG_LEVEL", ptr(yamlScalar{Text: "INFO"})), goodSecret, 0},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				got := misplacedSettings(c.cm, c.secret, table)
				if len(got) != c.want {
					t.Errorf("got %d problems %q, want %d", len(got), got, c.want)
				}
			})
		}
	})
}

// ---- The Deployment and its companions ---------------------------------------------------

// durationSetting reads a duration the way an operator writes it: "25s", or bare seconds.
func durationSetting(v string) (time.Duration, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return d, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", v)
	}
	return time.Duration(n) * time.Second, nil
}

func TestDeploymentIsHardened(t *testing.T) {
	ms := loadManifests(t)
	dep := find(t, ms, "Deployment", "atenex-api-gateway")
	pod := at(dep.obj, "spec", "template", "spec")
	const ctr = "name=atenex-api-gateway"
	if at(pod, "containers", ctr) == nil {
		t.Fatal("no container named atenex-api-gateway")
	}
	if n := len(at(pod, "containers").([]any)); n != 1 {
		t.Errorf("%d containers, want 1", n)
	}

	bools := []struct {
		path []string
		want string
	}{
		{[]string{"securityContext", "runAsNonRoot"}, "true"},
		{[]string{"securityContext", "runAsUser"}, "65532"},
		{[]string{"securityContext", "runAsGroup"}, "65532"},
		{[]string{"automountServiceAccountToken"}, "false"},
		{[]string{"containers", ctr, "securityContext", "readOnlyRootFilesystem"}, "true"},
		{[]string{"containers", ctr, "securityContext", "allowPrivilegeEscalation"}, "false"},
	}
	for _, b := range bools {
		if !plain(pod, b.want, b.path...) {
			t.Errorf("%s = %v, want plain %s", strings.Join(b.path, "."), at(pod, b.path...), b.want)
		}
	}
	if got := str(pod, "securityContext", "seccompProfile", "type"); got != "RuntimeDefault" {
		t.Errorf("seccompProfile.type = %q, want RuntimeDefault", got)
	}
	drop, _ := at(pod, "containers", ctr, "securityContext", "capabilities", "drop").([]any)
	if !slices.ContainsFunc(drop, func(v any) bool { return str(v) == "ALL" }) {
		t.Errorf("capabilities.drop = %v, want ALL", drop)
	}
	// Nothing may give back what the settings above take away.
	unset := [][]string{
		{"containers", ctr, "securityContext", "capabilities", "add"},
		{"containers", ctr, "securityContext", "privileged"},
		{"containers", ctr, "securityContext", "runAsUser"}, // 0 here would override the pod's 65532
		{"hostNetwork"}, {"hostPID"}, {"hostIPC"},
	}
	for _, path := range unset {
		if v := at(pod, path...); v != nil && !plain(pod, "false", path...) {
			t.Errorf("%s is set to %v", strings.Join(path, "."), v)
		}
	}

	probes := []struct{ probe, path string }{
		{"readinessProbe", "/readyz"},
		{"livenessProbe", "/livez"},
	}
	for _, p := range probes {
		if got := str(pod, "containers", ctr, p.probe, "httpGet", "path"); got != p.path {
			t.Errorf("%s path = %q, want %s", p.probe, got, p.path)
		}
		if got := str(pod, "containers", ctr, p.probe, "httpGet", "port"); got != "http" {
			t.Errorf("%s port = %q, want the http port", p.probe, got)
		}
	}
	// The liveness probe must not depend on the database: a database outage would
	// otherwise restart every pod at once.
	if str(pod, "containers", ctr, "startupProbe", "httpGet", "path") == "/health" {
		t.Error("startupProbe on /health: a database outage would keep pods from ever starting")
	}

	for _, r := range [][]string{{"requests", "cpu"}, {"requests", "memory"}, {"limits", "memory"}} {
		if str(pod, append([]string{"containers", ctr, "resources"}, r...)...) == "" {
			t.Errorf("resources.%s is not set", strings.Join(r, "."))
		}
	}

	cm, _ := configMapAndSecret(t, ms)
	grace, err := durationSetting(cm["GATEWAY_SHUTDOWN_GRACE"].Text)
	if err != nil {
		t.Fatalf("GATEWAY_SHUTDOWN_GRACE: %v", err)
	}
	drain, err := durationSetting(cm["GATEWAY_DRAIN_DELAY"].Text)
	if err != nil {
		t.Fatalf("GATEWAY_DRAIN_DELAY: %v", err)
	}
	tgps, err := strconv.Atoi(str(pod, "terminationGracePeriodSeconds"))
	if err != nil {
		t.Fatalf("terminationGracePeriodSeconds: %v", err)
	}
	if time.Duration(tgps)*time.Second <= grace+drain {
		t.Errorf("terminationGracePeriodSeconds %d is not above GATEWAY_DRAIN_DELAY %v + GATEWAY_SHUTDOWN_GRACE %v: in-flight requests would be killed", tgps, drain, grace)
	}

	if got := str(dep.obj, "spec", "strategy", "rollingUpdate", "maxUnavailable"); got != "0" {
		t.Errorf("rollingUpdate.maxUnavailable = %q, want 0 (no capacity lost during a rollout)", got)
	}

	envFrom := map[string]bool{}
	for _, ref := range []string{"configMapRef", "secretRef"} {
		items, _ := at(pod, "containers", ctr, "envFrom").([]any)
		for _, item := range items {
			if n := str(item, ref, "name"); n != "" {
				envFrom[ref+"/"+n] = true
			}
		}
	}
	for _, want := range []string{"configMapRef/" + configMapName, "secretRef/" + secretName} {
		if !envFrom[want] {
			t.Errorf("envFrom lacks %s", want)
		}
	}

	for _, m := range ms {
		kind := m.kind()
		switch {
		case kind == "Namespace":
			if m.name() != k8sNamespace {
				t.Errorf("%s: Namespace %q, want %s", m.file, m.name(), k8sNamespace)
			}
		case kind == "Kustomization":
			if got := str(m.obj, "namespace"); got != k8sNamespace {
				t.Errorf("%s: namespace %q, want %s", m.file, got, k8sNamespace)
			}
		default:
			if got := str(m.obj, "metadata", "namespace"); got != k8sNamespace {
				t.Errorf("%s: %s %s namespace %q, want %s", m.file, kind, m.name(), got, k8sNamespace)
			}
		}
	}
}

// byteSize reads a Kubernetes quantity ("128Mi") or a gateway size ("100MiB", "2097152").
func byteSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30},
		{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return n * mult, nil
}

// The Go runtime's soft limit must sit below the container's hard one, or the kernel kills
// the pod before the collector reacts, and leave the runtime at least the floor the load
// tests measured for 1000 concurrent clients, or the collector runs back to back first.
func TestGoMemoryLimitFitsTheContainer(t *testing.T) {
	ms := loadManifests(t)
	cm, _ := configMapAndSecret(t, ms)
	pod := at(find(t, ms, "Deployment", "atenex-api-gateway").obj, "spec", "template", "spec")
	hard, err := byteSize(str(pod, "containers", "name=atenex-api-gateway", "resources", "limits", "memory"))
	if err != nil {
		t.Fatalf("resources.limits.memory: %v", err)
	}
	v := cm["GATEWAY_MEMORY_LIMIT"].Text
	if v == "" {
		s, _ := lookupSetting("GATEWAY_MEMORY_LIMIT")
		v = s.Default
	}
	var soft int64
	if strings.EqualFold(v, "auto") {
		// What the gateway derives at start inside this container.
		soft, _, _, err = autoMemoryLimit(cgroupFS(map[string]string{cgroupV2MemoryMax: strconv.FormatInt(hard, 10) + "\n"}))
	} else {
		soft, err = byteSize(v)
	}
	if err != nil || soft == 0 {
		t.Fatalf("GATEWAY_MEMORY_LIMIT %q: want auto or a size below the container limit (%v)", v, err)
	}
	if soft > hard*9/10 {
		t.Errorf("GATEWAY_MEMORY_LIMIT %d bytes leaves under 10%% of the container limit %d for stacks and buffers", soft, hard)
	}
	if soft < memoryLimitFloor {
		t.Errorf("GATEWAY_MEMORY_LIMIT %d bytes is below the %d the load tests need for 1000 clients: raise resources.limits.memory", soft, memoryLimitFloor)
	}
}

// probeTimings are the fields of a Kubernetes probe that decide how soon it notices a failure.
type probeTimings struct {
	period, timeout  time.Duration
	failureThreshold int
}

// readProbeTimings reads a probe, with Kubernetes' defaults for absent fields (period 10 s,
// timeout 1 s, failure threshold 3).
func readProbeTimings(probe any) (probeTimings, error) {
	if probe == nil {
		return probeTimings{}, errors.New("no such probe")
	}
	field := func(name string, def int) (int, error) {
		v := str(probe, name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("%s %q is not a positive whole number", name, v)
		}
		return n, nil
	}
	period, err := field("periodSeconds", 10)
	if err != nil {
		return probeTimings{}, err
	}
	timeout, err := field("timeoutSeconds", 1)
	if err != nil {
		return probeTimings{}, err
	}
	failures, err := field("failureThreshold", 3)
	if err != nil {
		return probeTimings{}, err
	}
	return probeTimings{period: time.Duration(period) * time.Second, timeout: time.Duration(timeout) * time.Second, failureThreshold: failures}, nil
}

// worstCaseDetection is how long after draining starts the kubelet may still call the pod
// ready: draining starts just after a successful probe, then failureThreshold probes must
// fail, one period apart, the last one taking up to its timeout.
func (p probeTimings) worstCaseDetection() time.Duration {
	return p.period*time.Duration(p.failureThreshold) + p.timeout
}

// endpointPropagation is the time, after the kubelet marks a pod unready, that the endpoints
// controller, kube-proxy and an ingress controller take to stop sending it new connections;
// about a second on a healthy cluster, so 2 s of margin.
const endpointPropagation = 2 * time.Second

// drainProblems lists what makes a rolling restart lose requests: a drain that ends (and
// the listener closes) while balancers may still route to the pod, and a termination grace
// period that kills the pod before its drain and shutdown grace are over.
func drainProblems(readiness probeTimings, drain, grace, termination time.Duration) []string {
	var bad []string
	if need := readiness.worstCaseDetection() + endpointPropagation; drain < need {
		bad = append(bad, fmt.Sprintf("GATEWAY_DRAIN_DELAY %v is shorter than the readiness probe's worst-case detection %v (periodSeconds %v x failureThreshold %d + timeoutSeconds %v) plus %v for the endpoint change to reach the balancers: requests arriving after the drain are refused",
			drain, readiness.worstCaseDetection(), readiness.period, readiness.failureThreshold, readiness.timeout, endpointPropagation))
	}
	if termination <= drain+grace {
		bad = append(bad, fmt.Sprintf("terminationGracePeriodSeconds %v is not above GATEWAY_DRAIN_DELAY %v + GATEWAY_SHUTDOWN_GRACE %v: in-flight requests would be killed", termination, drain, grace))
	}
	return bad
}

// The drain delay and the readiness probe are chosen together: the gateway keeps serving
// until every balancer following the probe has stopped sending it requests. Checked for the
// value the ConfigMap ships and for the gateway's default, which applies if the ConfigMap
// row is ever removed.
func TestK8sDrainOutlastsReadinessDetection(t *testing.T) {
	ms := loadManifests(t)
	cm, _ := configMapAndSecret(t, ms)
	pod := at(find(t, ms, "Deployment", "atenex-api-gateway").obj, "spec", "template", "spec")
	readiness, err := readProbeTimings(at(pod, "containers", "name=atenex-api-gateway", "readinessProbe"))
	if err != nil {
		t.Fatalf("readinessProbe: %v", err)
	}
	tgps, err := strconv.Atoi(str(pod, "terminationGracePeriodSeconds"))
	if err != nil {
		t.Fatalf("terminationGracePeriodSeconds: %v", err)
	}
	termination := time.Duration(tgps) * time.Second
	setting := func(name string, fromConfigMap bool) time.Duration {
		t.Helper()
		s, _ := lookupSetting(name)
		v := s.Default
		if cmv, ok := cm[name]; ok && fromConfigMap {
			v = cmv.Text
		}
		d, err := durationSetting(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return d
	}
	for _, shipped := range []struct {
		what          string
		fromConfigMap bool
	}{{"the ConfigMap's values", true}, {"the gateway's defaults", false}} {
		for _, bad := range drainProblems(readiness, setting("GATEWAY_DRAIN_DELAY", shipped.fromConfigMap), setting("GATEWAY_SHUTDOWN_GRACE", shipped.fromConfigMap), termination) {
			t.Errorf("with %s: %s", shipped.what, bad)
		}
	}
}

// The check above must fail on the timings that lost 1.4 % of the requests of a rolling
// restart (a 5 s drain behind a 5 s x 2 + 3 s readiness probe), and on a termination grace
// period that cuts the shutdown short.
func TestK8sDrainCheckCatchesMistakes(t *testing.T) {
	const s = time.Second
	cases := []struct {
		name                      string
		probe                     probeTimings
		drain, grace, termination time.Duration
		want                      int
	}{
		{"shipped", probeTimings{period: 2 * s, timeout: 2 * s, failureThreshold: 2}, 10 * s, 25 * s, 40 * s, 0},
		{"old 5 s drain behind the old probe", probeTimings{period: 5 * s, timeout: 3 * s, failureThreshold: 2}, 5 * s, 25 * s, 40 * s, 1},
		{"drain equal to detection leaves no time for endpoints", probeTimings{period: 2 * s, timeout: 2 * s, failureThreshold: 2}, 6 * s, 25 * s, 40 * s, 1},
		{"Kubernetes' default probe", probeTimings{period: 10 * s, timeout: 1 * s, failureThreshold: 3}, 10 * s, 25 * s, 40 * s, 1},
		{"termination grace too short", probeTimings{period: 2 * s, timeout: 2 * s, failureThreshold: 2}, 10 * s, 25 * s, 35 * s, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := drainProblems(c.probe, c.drain, c.grace, c.termination); len(got) != c.want {
				t.Errorf("got %d problems %q, want %d", len(got), got, c.want)
			}
		})
	}
}

// The public and admin ports agree everywhere they are written, and only the public one
// leaves the pod through the Service.
func TestManifestPortsAgree(t *testing.T) {
	ms := loadManifests(t)
	cm, _ := configMapAndSecret(t, ms)
	pod := at(find(t, ms, "Deployment", "atenex-api-gateway").obj, "spec", "template", "spec")
	ports := at(pod, "containers", "name=atenex-api-gateway", "ports")

	port := cm["PORT"].Text
	if port == "" {
		port = "8080" // the gateway's default
	}
	if got := str(ports, "name=http", "containerPort"); got != port {
		t.Errorf("containerPort http = %q, want PORT %s", got, port)
	}
	admin := cm["GATEWAY_ADMIN_PORT"].Text
	if admin == "" || admin == "0" {
		t.Fatal("GATEWAY_ADMIN_PORT is not set in the ConfigMap, but the pods are scraped for metrics")
	}
	if got := str(ports, "name=admin", "containerPort"); got != admin {
		t.Errorf("containerPort admin = %q, want GATEWAY_ADMIN_PORT %s", got, admin)
	}
	annotations := at(find(t, ms, "Deployment", "atenex-api-gateway").obj, "spec", "template", "metadata", "annotations")
	if got := str(annotations, "prometheus.io/port"); got != admin {
		t.Errorf("prometheus.io/port = %q, want GATEWAY_ADMIN_PORT %s", got, admin)
	}

	svc := find(t, ms, "Service", "atenex-api-gateway")
	if got := str(svc.obj, "spec", "type"); got != "ClusterIP" && got != "" {
		t.Errorf("Service type %q, want ClusterIP", got)
	}
	svcPorts, _ := at(svc.obj, "spec", "ports").([]any)
	if len(svcPorts) != 1 || str(svcPorts[0], "targetPort") != "http" || str(svcPorts[0], "port") != "80" {
		t.Errorf("Service ports = %v, want only 80 → http", svcPorts)
	}
	for _, p := range svcPorts {
		if tp := str(p, "targetPort"); tp == "admin" || tp == admin {
			t.Errorf("the Service exposes the admin port (%s)", tp)
		}
	}
}

// The Service, the budget and the autoscaler all find the Deployment's pods.
func TestManifestSelectorsMatchThePods(t *testing.T) {
	ms := loadManifests(t)
	dep := find(t, ms, "Deployment", "atenex-api-gateway")
	podLabels, _ := at(dep.obj, "spec", "template", "metadata", "labels").(map[string]any)
	matches := func(sel any) bool {
		m, ok := sel.(map[string]any)
		if !ok || len(m) == 0 {
			return false
		}
		for k := range m {
			if str(m, k) == "" || str(m, k) != str(podLabels, k) {
				return false
			}
		}
		return true
	}
	selectors := map[string]any{
		"Deployment":          at(dep.obj, "spec", "selector", "matchLabels"),
		"Service":             at(find(t, ms, "Service", "atenex-api-gateway").obj, "spec", "selector"),
		"PodDisruptionBudget": at(find(t, ms, "PodDisruptionBudget", "").obj, "spec", "selector", "matchLabels"),
	}
	for kind, sel := range selectors {
		if !matches(sel) {
			t.Errorf("%s selector %v does not match the pod labels %v", kind, sel, podLabels)
		}
	}
	hpa := find(t, ms, "HorizontalPodAutoscaler", "")
	if str(hpa.obj, "spec", "scaleTargetRef", "kind") != "Deployment" || str(hpa.obj, "spec", "scaleTargetRef", "name") != dep.name() {
		t.Errorf("HPA scaleTargetRef = %v, want Deployment %s", at(hpa.obj, "spec", "scaleTargetRef"), dep.name())
	}
	minR, _ := strconv.Atoi(str(hpa.obj, "spec", "minReplicas"))
	pdbMin, _ := strconv.Atoi(str(find(t, ms, "PodDisruptionBudget", "").obj, "spec", "minAvailable"))
	if minR <= pdbMin {
		t.Errorf("HPA minReplicas %d is not above the PDB minAvailable %d: node drains would block", minR, pdbMin)
	}
}

// kubectl apply -k applies every manifest except the examples (the Secret's, the backends'
// NetworkPolicy).
func TestKustomizationListsEveryManifestButTheSecretExample(t *testing.T) {
	k := find(t, loadManifests(t), "Kustomization", "")
	var listed []string
	items, _ := at(k.obj, "resources").([]any)
	for _, it := range items {
		listed = append(listed, it.(yamlScalar).Text)
	}
	var want []string
	for _, path := range k8sFiles(t) {
		base := filepath.Base(path)
		if base != "kustomization.yaml" && !strings.HasSuffix(base, ".example.yaml") {
			want = append(want, base)
		}
	}
	sort.Strings(listed)
	sort.Strings(want)
	if !reflect.DeepEqual(listed, want) {
		t.Errorf("kustomization resources = %q, want %q", listed, want)
	}
}

// ---- The image -----------------------------------------------------------------------

// dockerInstr is one Dockerfile instruction with continuation lines joined.
type dockerInstr struct{ op, args string }

func readDockerfile(t *testing.T) []dockerInstr {
	t.Helper()
	src, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerInstr
	var cur strings.Builder
	for _, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if rest, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(line)
		op, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstr{op: strings.ToUpper(op), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// fromImage is the image of a FROM instruction, past any --platform flag.
func fromImage(args string) string {
	for _, f := range strings.Fields(args) {
		if !strings.HasPrefix(f, "--") {
			return f
		}
	}
	return ""
}

func TestDockerfileIsStaticDistrolessNonRoot(t *testing.T) {
	instrs := readDockerfile(t)
	last := -1
	for i, in := range instrs {
		if in.op == "FROM" {
			last = i
		}
	}
	if last < 0 {
		t.Fatal("no FROM")
	}
	if last == 0 {
		t.Error("single stage: want a build stage and a final stage")
	}
	builder, final := instrs[:last], instrs[last:]

	if base := fromImage(final[0].args); base != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final base %q, want gcr.io/distroless/static-debian12:nonroot", base)
	}
	var user, entry string
	var exposed []string
	for _, in := range final {
		switch in.op {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		case "RUN":
			t.Errorf("RUN in the final stage (%s): it has no shell", in.args)
		}
	}
	if user != "nonroot:nonroot" && user != "nonroot" && user != "65532:65532" {
		t.Errorf("final USER %q, want nonroot", user)
	}
	if !strings.HasPrefix(entry, "[") {
		t.Errorf("ENTRYPOINT %q is shell form; the image has no shell, use exec form", entry)
	}
	if !slices.Contains(exposed, "8080") {
		t.Errorf("EXPOSE %v lacks 8080", exposed)
	}

	var build string
	for _, in := range builder {
		if in.op == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath"} {
		if !strings.Contains(build, want) {
			t.Errorf("go build step %q lacks %s", build, want)
		}
	}

	// The builder's Go matches go.mod's minor version.
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("no go directive in go.mod")
	}
	if base := fromImage(builder[0].args); !strings.HasPrefix(base, "golang:"+string(m[1])) {
		t.Errorf("build base %q, want golang:%s", base, m[1])
	}

	ignore, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	patterns := strings.Split(strings.ReplaceAll(string(ignore), "\r", ""), "\n")
	for _, want := range []string{".env", ".git"} {
		if !slices.Contains(patterns, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}

// The image is distroless/static: the binary must not need a dynamic loader or libc.
func TestBinaryBuildsStatically(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the whole binary")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command: %v", err)
	}
	out := filepath.Join(t.TempDir(), "atenex-api-gateway")
	// The same flags as the Dockerfile; the image's build context has no VCS metadata either.
	cmd := exec.Command(gobin, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, msg)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a PT_INTERP program header: it needs a dynamic loader")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
}

// ---- The reader itself -------------------------------------------------------------------

func TestManifestReaderReadsTheSubsetItClaims(t *testing.T) {
	p := func(s string) yamlScalar { return yamlScalar{Text: s} }
	q := func(s string) yamlScalar { return yamlScalar{Text: s, Quoted: true} }
	cases := []struct {
		name, src string
		want      []any // nil with wantErr
		wantErr   bool
	}{
		{"mapping", "a: 1\nb: \"2\"\n", []any{map[string]any{"a": p("1"), "b": q("2")}}, false},
		{"nested and comments", "# top\na:\n  b: x # trailing\n  c: 'it''s'\n", []any{map[string]any{"a": map[string]any{"b": p("x"), "c": q("it's")}}}, false},
		{"hash inside a value", "a: x#y\nb: \"p # q\"\n", []any{map[string]any{"a": p("x#y"), "b": q("p # q")}}, false},
		{"sequence of mappings", "l:\n  - name: x\n    v: 1\n  - name: y\n", []any{map[string]any{"l": []any{map[string]any{"name": p("x"), "v": p("1")}, map[string]any{"name": p("y")}}}}, false},
		{"sequence at key column", "l:\n- a\n- b\nk: v\n", []any{map[string]any{"l": []any{p("a"), p("b")}, "k": p("v")}}, false},
		{"nested sequence item", "l:\n  -\n    a: b\n  - - c\n", []any{map[string]any{"l": []any{map[string]any{"a": p("b")}, []any{p("c")}}}}, false},
		{"null value", "a:\nb: c\n", []any{map[string]any{"a": nil, "b": p("c")}}, false},
		{"documents", "---\na: 1\n---\n# only a comment\n---\nb: 2\n", []any{map[string]any{"a": p("1")}, map[string]any{"b": p("2")}}, false},
		{"quoted key", "\"a b\": c\n", []any{map[string]any{"a b": p("c")}}, false},
		{"url value", "u: http://h:80/p\n", []any{map[string]any{"u": p("http://h:80/p")}}, false},
		{"apostrophe in plain", "a: it's\n", []any{map[string]any{"a": p("it's")}}, false},

		{"flow sequence", "a: [x, y]\n", nil, true},
		{"flow mapping", "a: {}\n", nil, true},
		{"block scalar", "a: |\n  x\n", nil, true},
		{"anchor", "a: &x 1\n", nil, true},
		{"duplicate key", "a: 1\na: 2\n", nil, true},
		{"bad indentation", "a:\n    b: 1\n  c: 2\n", nil, true},
		{"value then child", "a: 1\n  b: 2\n", nil, true},
		{"tab indentation", "a:\n\tb: 1\n", nil, true},
		{"unterminated quote", "a: \"x\n", nil, true},
		{"text after quote", "a: \"x\" y\n", nil, true},
		{"nested colon", "a: b: c\n", nil, true},
		{"mixed mapping and sequence", "a: 1\n- b\n", nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseYAML(c.src)
			if c.wantErr {
				if err == nil {
					t.Fatalf("no error, got %#v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %#v\nwant %#v", got, c.want)
			}
		})
	}
}

// FuzzManifestReader: never panics, and whatever it reads it reads the same after writing
// it back out.
func FuzzManifestReader(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	for _, path := range files {
		if src, err := os.ReadFile(path); err == nil {
			f.Add(string(src))
		}
	}
	for _, s := range []string{
		"a: 1\n", "l:\n- a\n- b: c\n  d: e\n", "- - - x\n", "a: 'x''y'\n", "\"k\\n\": \"v\\t\"\n",
		"a:\n  -\n  - b\n", "---\n---\n", "a: x #c\n#d\n", "a: \"\\u00e9\"\n", "? x\n", "a:b\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		docs, err := parseYAML(src)
		if err != nil {
			return
		}
		for _, d := range docs {
			if _, isScalar := d.(yamlScalar); isScalar || d == nil {
				continue // emitYAML writes collections; a bare scalar document has no round trip to check
			}
			out := emitYAML(d)
			again, err := parseYAML(out)
			if err != nil {
				t.Fatalf("re-reading %q (from %q): %v", out, src, err)
			}
			if len(again) != 1 || !reflect.DeepEqual(again[0], d) {
				t.Fatalf("round trip changed the value:\nsource %q\nfirst  %#v\nwrote  %q\nsecond %#v", src, d, out, again)
			}
		}
	})
}

// ---- The edge under abuse (SPEC §8) ------------------------------------------------------

// shippedEnv is the environment a pod gets: the ConfigMap plus stand-ins for the Secret.
func shippedEnv(t *testing.T) map[string]string {
	t.Helper()
	cm, _ := configMapAndSecret(t, loadManifests(t))
	env := map[string]string{
		"GATEWAY_JWT_SECRET":        "k8s-test-secret-Zq8Xv2Lm9Rk4Wp7Ny1Hb-0123456789",
		"GATEWAY_POSTGRES_PASSWORD": "k8s-test-password",
	}
	for k, v := range cm {
		env[k] = v.Text
	}
	return env
}

// The shipped configuration is one the gateway starts with, and it is the production one:
// behind the ingress, least privilege in the database, TLS to it, no localhost origins.
func TestShippedConfigurationHoldsAtTheEdge(t *testing.T) {
	env := shippedEnv(t)
	cfg, err := loadConfig(func(k string) string { return env[k] }, false)
	if err != nil {
		t.Fatalf("the gateway refuses the shipped ConfigMap:\n%v", err)
	}
	if len(cfg.TrustedProxies) == 0 {
		t.Error("GATEWAY_TRUSTED_PROXIES is not set: behind the ingress every client would have its address")
	}
	if cfg.PostgresUser == "postgres" || cfg.PostgresUser == "" {
		t.Errorf("GATEWAY_POSTGRES_USER = %q, want the gateway's own least-privilege role", cfg.PostgresUser)
	}
	if cfg.PostgresSSLMode != "verify-full" || cfg.PostgresSSLRootCert == "" {
		t.Errorf("PostgreSQL TLS: sslmode %q, root cert %q; want verify-full with a CA", cfg.PostgresSSLMode, cfg.PostgresSSLRootCert)
	}
	if cfg.CORSAllowLocalhost || cfg.PProf || cfg.ForwardCredentials {
		t.Errorf("localhost CORS %v, pprof %v, credential forwarding %v; want all off in production", cfg.CORSAllowLocalhost, cfg.PProf, cfg.ForwardCredentials)
	}
	if cfg.IdleTimeout > 30*time.Second || cfg.MaxConnections == 0 || cfg.CompanyMaxInflight == 0 {
		t.Errorf("idle %v, max connections %d, per-company in-flight %d", cfg.IdleTimeout, cfg.MaxConnections, cfg.CompanyMaxInflight)
	}

	// The CA file is where the Deployment mounts it, from a Secret.
	pod := at(find(t, loadManifests(t), "Deployment", "atenex-api-gateway").obj, "spec", "template", "spec")
	mounts, _ := at(pod, "containers", "name=atenex-api-gateway", "volumeMounts").([]any)
	mounted := false
	for _, mnt := range mounts {
		dir := str(mnt, "mountPath")
		if dir != "" && strings.HasPrefix(cfg.PostgresSSLRootCert, strings.TrimSuffix(dir, "/")+"/") {
			vol := at(pod, "volumes", "name="+str(mnt, "name"))
			mounted = plain(mnt, "true", "readOnly") && str(vol, "secret", "secretName") != ""
		}
	}
	if !mounted {
		t.Errorf("%s is not on a read-only volume from a Secret in the Deployment", cfg.PostgresSSLRootCert)
	}
}

func TestImageIsReferencedByVersionTag(t *testing.T) {
	dep := find(t, loadManifests(t), "Deployment", "atenex-api-gateway")
	ctr := at(dep.obj, "spec", "template", "spec", "containers", "name=atenex-api-gateway")
	image := str(ctr, "image")
	release := regexp.MustCompile(`^[a-z0-9.-]+(/[a-z0-9._-]+)+(:v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?|@sha256:[0-9a-f]{64})$`)
	if !release.MatchString(image) {
		t.Errorf("image %q: want a release tag (name:1.2.3) or a digest, never latest or no tag", image)
	}
	if got := str(ctr, "imagePullPolicy"); got == "Always" {
		t.Errorf("imagePullPolicy %s with a fixed tag only adds a registry round trip per start", got)
	}
}

// pprof listened unauthenticated on the admin port and no NetworkPolicy limited who could
// reach either port.
func TestNetworkPoliciesAdmitOnlyIngressAndMonitoring(t *testing.T) {
	ms := loadManifests(t)
	cm, _ := configMapAndSecret(t, ms)
	np := find(t, ms, "NetworkPolicy", "atenex-api-gateway")
	dep := find(t, ms, "Deployment", "atenex-api-gateway")
	podLabels := at(dep.obj, "spec", "template", "metadata", "labels")
	sel, _ := at(np.obj, "spec", "podSelector", "matchLabels").(map[string]any)
	if len(sel) == 0 {
		t.Fatal("the policy selects no pods")
	}
	for k := range sel {
		if str(sel, k) != str(podLabels, k) {
			t.Errorf("podSelector %s=%s does not match the gateway's pods", k, str(sel, k))
		}
	}
	if types, _ := at(np.obj, "spec", "policyTypes").([]any); !slices.ContainsFunc(types, func(v any) bool { return str(v) == "Ingress" }) {
		t.Error("policyTypes lacks Ingress")
	}
	wantFrom := map[string]string{cm["PORT"].Text: "ingress-nginx", cm["GATEWAY_ADMIN_PORT"].Text: "monitoring"}
	if cm["PORT"].Text == "" {
		wantFrom["8080"] = "ingress-nginx"
		delete(wantFrom, "")
	}
	rules, _ := at(np.obj, "spec", "ingress").([]any)
	got := map[string]string{}
	for _, rule := range rules {
		from, _ := at(rule, "from").([]any)
		ports, _ := at(rule, "ports").([]any)
		if len(from) != 1 || len(ports) == 0 {
			t.Fatalf("rule %v: want exactly one source and explicit ports (an empty list admits everyone)", rule)
		}
		ns := str(from[0], "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name")
		if ns == "" || at(from[0], "podSelector") != nil || at(from[0], "ipBlock") != nil {
			t.Fatalf("rule source %v: want one namespace by name", from[0])
		}
		for _, p := range ports {
			got[str(p, "port")] = ns
		}
	}
	if !reflect.DeepEqual(got, wantFrom) {
		t.Errorf("ports admitted from namespaces %v, want %v", got, wantFrom)
	}

	// The example for the backends admits only the gateway's pods.
	var backends []manifest
	for _, m := range ms {
		if m.kind() == "NetworkPolicy" && m.file == "backends-networkpolicy.example.yaml" {
			backends = append(backends, m)
		}
	}
	if len(backends) < 2 {
		t.Fatalf("%d backend policies in the example, want one for ingest and one for query", len(backends))
	}
	for _, m := range backends {
		rules, _ := at(m.obj, "spec", "ingress").([]any)
		for _, rule := range rules {
			from, _ := at(rule, "from").([]any)
			if len(from) != 1 || str(from[0], "podSelector", "matchLabels", "app.kubernetes.io/name") != str(podLabels, "app.kubernetes.io/name") {
				t.Errorf("%s: source %v, want only the gateway's pods", m.name(), from)
			}
		}
	}
}
