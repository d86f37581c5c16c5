// deploy_test.go: the Dockerfile and the Kubernetes manifests agree with the settings table
// and with each other, and the binary they ship is static.
package main

import (
	"debug/elf"
	"flag"
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
	podSpec          = "spec.template.spec."
	gatewayCtr       = podSpec + "containers[atenex-api-gateway]."
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// ---- The manifests as "path: value" facts -------------------------------------------------
//
// The manifests use block mappings and sequences of scalars only, so each scalar is one line
// and its path follows from the indentation. testdata/k8s.golden pins the whole rendering:
// a manifest change, or a manifest the flattening misreads, shows up there as a diff.

// k8sDoc is one YAML document of k8s/: each scalar keyed by its path, such as
// spec.template.spec.containers[atenex-api-gateway].ports[http].containerPort. A sequence
// item is named by its name: field when that comes first, else by its index.
type k8sDoc struct {
	file  string
	facts map[string]string // scalars as written, quotes kept
	order []string
}

// flattenYAML splits src into documents of facts.
func flattenYAML(file, src string) []k8sDoc {
	type frame struct {
		indent int
		path   string
	}
	var docs []k8sDoc
	var stack []frame
	count := map[string]int{}
	doc := k8sDoc{file: file, facts: map[string]string{}}
	emit := func(path, v string) {
		doc.facts[path] = v
		doc.order = append(doc.order, path)
	}
	for _, line := range strings.Split(src, "\n") {
		text := strings.TrimSpace(line)
		if text == "---" {
			docs, doc, stack, count = append(docs, doc), k8sDoc{file: file, facts: map[string]string{}}, nil, map[string]int{}
			continue
		}
		if i := strings.Index(text, " #"); i >= 0 && !strings.ContainsAny(text[:i], `"'`) {
			text = strings.TrimSpace(text[:i])
		}
		if text == "" || text[0] == '#' {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		parent := ""
		if len(stack) > 0 {
			parent = stack[len(stack)-1].path + "."
		}
		if item, ok := strings.CutPrefix(text, "- "); ok {
			key := strconv.Itoa(count[parent])
			count[parent]++
			if name, ok := strings.CutPrefix(item, "name: "); ok {
				key = name
			}
			parent = strings.TrimSuffix(parent, ".") + "[" + key + "]"
			stack = append(stack, frame{indent, parent})
			parent, indent, text = parent+".", indent+2, item
			if !strings.Contains(item, ":") {
				emit(strings.TrimSuffix(parent, "."), item)
				continue
			}
		}
		k, v, _ := strings.Cut(text, ":")
		if v = strings.TrimSpace(v); v == "" {
			stack = append(stack, frame{indent, parent + k})
		} else {
			emit(parent+k, v)
		}
	}
	if len(doc.order) > 0 {
		docs = append(docs, doc)
	}
	return slices.DeleteFunc(docs, func(d k8sDoc) bool { return len(d.order) == 0 })
}

// raw is the scalar at path as written; get is its text, without quotes.
func (d k8sDoc) raw(path string) string { return d.facts[path] }
func (d k8sDoc) get(path string) string {
	v := d.facts[path]
	if s, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
		return s
	}
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return strings.ReplaceAll(v[1:len(v)-1], "''", "'")
	}
	return v
}

func (d k8sDoc) kind() string { return d.get("kind") }
func (d k8sDoc) name() string { return d.get("metadata.name") }

// has reports whether anything is written at or below path.
func (d k8sDoc) has(path string) bool {
	return slices.ContainsFunc(d.order, func(p string) bool {
		return p == path || strings.HasPrefix(p, path+".") || strings.HasPrefix(p, path+"[")
	})
}

// items lists the paths of the items of the sequence at path, in order.
func (d k8sDoc) items(path string) []string {
	var out []string
	for _, p := range d.order {
		if rest, ok := strings.CutPrefix(p, path+"["); ok {
			if item := path + "[" + rest[:strings.IndexByte(rest, ']')+1]; !slices.Contains(out, item) {
				out = append(out, item)
			}
		}
	}
	return out
}

// values is the scalars of the items of the sequence at path.
func (d k8sDoc) values(path string) []string {
	var out []string
	for _, item := range d.items(path) {
		out = append(out, d.get(item))
	}
	return out
}

// mapping is the scalars right below path, such as labels, by key.
func (d k8sDoc) mapping(path string) map[string]string {
	out := map[string]string{}
	for _, p := range d.order {
		if k, ok := strings.CutPrefix(p, path+"."); ok {
			out[k] = d.get(p)
		}
	}
	return out
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

func loadManifests(t *testing.T) []k8sDoc {
	t.Helper()
	var out []k8sDoc
	for _, path := range k8sFiles(t) {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, flattenYAML(filepath.Base(path), string(src))...)
	}
	return out
}

func find(t *testing.T, ds []k8sDoc, kind, name string) k8sDoc {
	t.Helper()
	var found []k8sDoc
	for _, d := range ds {
		if d.kind() == kind && (name == "" || d.name() == name) {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s %q in k8s/, found %d", kind, name, len(found))
	}
	return found[0]
}

func deployment(t *testing.T, ds []k8sDoc) k8sDoc {
	t.Helper()
	return find(t, ds, "Deployment", "atenex-api-gateway")
}

// The rendering of every manifest is pinned; run `go test -run K8sGolden -update` after
// changing one, and review the diff of testdata/k8s.golden.
func TestK8sGolden(t *testing.T) {
	var b strings.Builder
	for _, d := range loadManifests(t) {
		fmt.Fprintf(&b, "--- %s %s %s\n", d.file, d.kind(), d.name())
		for _, p := range d.order {
			fmt.Fprintf(&b, "%s: %s\n", p, d.raw(p))
		}
	}
	golden := filepath.Join("testdata", "k8s.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("k8s/ renders differently from %s (run go test -run K8sGolden -update and review the diff):\n%s", golden, b.String())
	}
}

func TestFlattenYAMLNamesEveryScalarByItsPath(t *testing.T) {
	src := "# top\na:\n  b: x # trailing\n  c: \"p # q\"\nl:\n  - name: n1\n    v: 1\n  - k:\n      - s\n---\nl:\n  - y\n"
	var got []string
	for _, d := range flattenYAML("f", src) {
		for _, p := range d.order {
			got = append(got, p+"="+d.get(p))
		}
		got = append(got, "---")
	}
	want := []string{"a.b=x", "a.c=p # q", "l[n1].name=n1", "l[n1].v=1", "l[1].k[0]=s", "---", "l[0]=y", "---"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// yamlScalar keeps whether a value was quoted: Kubernetes reads a plain 9090 as a number
// and a quoted "9090" as a string, and a ConfigMap accepts only strings.
type yamlScalar struct {
	Text   string
	Quoted bool
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

// configMapAndSecret reads the ConfigMap's data and the Secret example's stringData.
func configMapAndSecret(t *testing.T, ds []k8sDoc) (cm, secret map[string]yamlScalar) {
	t.Helper()
	block := func(d k8sDoc, name string) map[string]yamlScalar {
		out := map[string]yamlScalar{}
		for _, p := range d.order {
			if k, ok := strings.CutPrefix(p, name+"."); ok {
				if !validEnvName(k) {
					t.Fatalf("%s %s: %s is not a flat KEY: value line", d.kind(), name, p)
				}
				out[k] = yamlScalar{Text: d.get(p), Quoted: strings.ContainsAny(d.raw(p)[:1], `"'`)}
			}
		}
		return out
	}
	cmDoc := find(t, ds, "ConfigMap", configMapName)
	secretDoc := find(t, ds, "Secret", secretName)
	if secretDoc.file != secretExampleYML {
		t.Errorf("Secret %s is in %s, want only in %s", secretName, secretDoc.file, secretExampleYML)
	}
	if secretDoc.has("data") {
		t.Error("the Secret example must use stringData, not base64 data")
	}
	return block(cmDoc, "data"), block(secretDoc, "stringData")
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
	ds := loadManifests(t)
	dep := deployment(t, ds)
	if !dep.has(gatewayCtr + "name") {
		t.Fatal("no container named atenex-api-gateway")
	}
	if n := len(dep.items(podSpec + "containers")); n != 1 {
		t.Errorf("%d containers, want 1", n)
	}

	literals := map[string]string{ // booleans and numbers to Kubernetes, not strings
		podSpec + "securityContext.runAsNonRoot":                "true",
		podSpec + "securityContext.runAsUser":                   "65532",
		podSpec + "securityContext.runAsGroup":                  "65532",
		podSpec + "automountServiceAccountToken":                "false",
		gatewayCtr + "securityContext.readOnlyRootFilesystem":   "true",
		gatewayCtr + "securityContext.allowPrivilegeEscalation": "false",
	}
	for path, want := range literals {
		if got := dep.raw(path); got != want {
			t.Errorf("%s = %q, want plain %s", path, got, want)
		}
	}
	texts := map[string]string{
		podSpec + "securityContext.seccompProfile.type": "RuntimeDefault",
		gatewayCtr + "readinessProbe.httpGet.path":      "/readyz",
		gatewayCtr + "readinessProbe.httpGet.port":      "http",
		gatewayCtr + "livenessProbe.httpGet.path":       "/livez",
		gatewayCtr + "livenessProbe.httpGet.port":       "http",
		"spec.strategy.rollingUpdate.maxUnavailable":    "0", // no capacity lost during a rollout
	}
	for path, want := range texts {
		if got := dep.get(path); got != want {
			t.Errorf("%s = %q, want %s", path, got, want)
		}
	}
	if drop := dep.values(gatewayCtr + "securityContext.capabilities.drop"); !slices.Contains(drop, "ALL") {
		t.Errorf("capabilities.drop = %v, want ALL", drop)
	}
	for _, want := range []string{"configMapRef.name=" + configMapName, "secretRef.name=" + secretName} {
		ref, name, _ := strings.Cut(want, "=")
		if !slices.ContainsFunc(dep.items(gatewayCtr+"envFrom"), func(item string) bool { return dep.get(item+"."+ref) == name }) {
			t.Errorf("envFrom lacks %s %s", ref, name)
		}
	}
	// Nothing may give back what the settings above take away.
	for _, path := range []string{
		gatewayCtr + "securityContext.capabilities.add",
		gatewayCtr + "securityContext.privileged",
		gatewayCtr + "securityContext.runAsUser", // 0 here would override the pod's 65532
		podSpec + "hostNetwork", podSpec + "hostPID", podSpec + "hostIPC",
	} {
		if dep.has(path) && dep.raw(path) != "false" {
			t.Errorf("%s is set to %q", path, dep.raw(path))
		}
	}
	// The liveness probe must not depend on the database: a database outage would
	// otherwise restart every pod at once.
	if dep.get(gatewayCtr+"startupProbe.httpGet.path") == "/health" {
		t.Error("startupProbe on /health: a database outage would keep pods from ever starting")
	}
	for _, r := range []string{"requests.cpu", "requests.memory", "limits.memory"} {
		if dep.get(gatewayCtr+"resources."+r) == "" {
			t.Errorf("resources.%s is not set", r)
		}
	}

	cm, _ := configMapAndSecret(t, ds)
	grace, err := durationSetting(cm["GATEWAY_SHUTDOWN_GRACE"].Text)
	if err != nil {
		t.Fatalf("GATEWAY_SHUTDOWN_GRACE: %v", err)
	}
	drain, err := durationSetting(cm["GATEWAY_DRAIN_DELAY"].Text)
	if err != nil {
		t.Fatalf("GATEWAY_DRAIN_DELAY: %v", err)
	}
	tgps, err := strconv.Atoi(dep.get(podSpec + "terminationGracePeriodSeconds"))
	if err != nil {
		t.Fatalf("terminationGracePeriodSeconds: %v", err)
	}
	if time.Duration(tgps)*time.Second <= grace+drain {
		t.Errorf("terminationGracePeriodSeconds %d is not above GATEWAY_DRAIN_DELAY %v + GATEWAY_SHUTDOWN_GRACE %v: in-flight requests would be killed", tgps, drain, grace)
	}

	for _, d := range ds {
		path := "metadata.namespace"
		switch d.kind() {
		case "Namespace":
			path = "metadata.name"
		case "Kustomization":
			path = "namespace"
		}
		if got := d.get(path); got != k8sNamespace {
			t.Errorf("%s: %s %s %s %q, want %s", d.file, d.kind(), d.name(), path, got, k8sNamespace)
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
	ds := loadManifests(t)
	cm, _ := configMapAndSecret(t, ds)
	hard, err := byteSize(deployment(t, ds).get(gatewayCtr + "resources.limits.memory"))
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

// readProbeTimings reads the probe at path, with Kubernetes' defaults for absent fields
// (period 10 s, timeout 1 s, failure threshold 3).
func readProbeTimings(d k8sDoc, path string) (probeTimings, error) {
	if !d.has(path) {
		return probeTimings{}, fmt.Errorf("no probe at %s", path)
	}
	var n [3]int
	for i, f := range []struct {
		name string
		def  int
	}{{"periodSeconds", 10}, {"timeoutSeconds", 1}, {"failureThreshold", 3}} {
		v := d.get(path + "." + f.name)
		if v == "" {
			n[i] = f.def
			continue
		}
		var err error
		if n[i], err = strconv.Atoi(v); err != nil || n[i] < 1 {
			return probeTimings{}, fmt.Errorf("%s %q is not a positive whole number", f.name, v)
		}
	}
	return probeTimings{period: time.Duration(n[0]) * time.Second, timeout: time.Duration(n[1]) * time.Second, failureThreshold: n[2]}, nil
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
	ds := loadManifests(t)
	cm, _ := configMapAndSecret(t, ds)
	dep := deployment(t, ds)
	readiness, err := readProbeTimings(dep, gatewayCtr+"readinessProbe")
	if err != nil {
		t.Fatalf("readinessProbe: %v", err)
	}
	tgps, err := strconv.Atoi(dep.get(podSpec + "terminationGracePeriodSeconds"))
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
	ds := loadManifests(t)
	cm, _ := configMapAndSecret(t, ds)
	dep := deployment(t, ds)

	port := cm["PORT"].Text
	if port == "" {
		port = "8080" // the gateway's default
	}
	if got := dep.get(gatewayCtr + "ports[http].containerPort"); got != port {
		t.Errorf("containerPort http = %q, want PORT %s", got, port)
	}
	admin := cm["GATEWAY_ADMIN_PORT"].Text
	if admin == "" || admin == "0" {
		t.Fatal("GATEWAY_ADMIN_PORT is not set in the ConfigMap, but the pods are scraped for metrics")
	}
	if got := dep.get(gatewayCtr + "ports[admin].containerPort"); got != admin {
		t.Errorf("containerPort admin = %q, want GATEWAY_ADMIN_PORT %s", got, admin)
	}
	if got := dep.get("spec.template.metadata.annotations.prometheus.io/port"); got != admin {
		t.Errorf("prometheus.io/port = %q, want GATEWAY_ADMIN_PORT %s", got, admin)
	}

	svc := find(t, ds, "Service", "atenex-api-gateway")
	if got := svc.get("spec.type"); got != "ClusterIP" && got != "" {
		t.Errorf("Service type %q, want ClusterIP", got)
	}
	svcPorts := svc.items("spec.ports")
	if len(svcPorts) != 1 || svc.get(svcPorts[0]+".targetPort") != "http" || svc.get(svcPorts[0]+".port") != "80" {
		t.Errorf("Service ports = %v, want only 80 → http", svcPorts)
	}
	for _, p := range svcPorts {
		if tp := svc.get(p + ".targetPort"); tp == "admin" || tp == admin {
			t.Errorf("the Service exposes the admin port (%s)", tp)
		}
	}
}

// selects reports whether the label selector sel is non-empty and matches labels.
func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if v == "" || labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// The Service, the budget and the autoscaler all find the Deployment's pods.
func TestManifestSelectorsMatchThePods(t *testing.T) {
	ds := loadManifests(t)
	dep := deployment(t, ds)
	podLabels := dep.mapping("spec.template.metadata.labels")
	selectors := map[string]map[string]string{
		"Deployment":          dep.mapping("spec.selector.matchLabels"),
		"Service":             find(t, ds, "Service", "atenex-api-gateway").mapping("spec.selector"),
		"PodDisruptionBudget": find(t, ds, "PodDisruptionBudget", "").mapping("spec.selector.matchLabels"),
	}
	for kind, sel := range selectors {
		if !selects(sel, podLabels) {
			t.Errorf("%s selector %v does not match the pod labels %v", kind, sel, podLabels)
		}
	}
	hpa := find(t, ds, "HorizontalPodAutoscaler", "")
	if hpa.get("spec.scaleTargetRef.kind") != "Deployment" || hpa.get("spec.scaleTargetRef.name") != dep.name() {
		t.Errorf("HPA scaleTargetRef = %v, want Deployment %s", hpa.mapping("spec.scaleTargetRef"), dep.name())
	}
	minR, _ := strconv.Atoi(hpa.get("spec.minReplicas"))
	pdbMin, _ := strconv.Atoi(find(t, ds, "PodDisruptionBudget", "").get("spec.minAvailable"))
	if minR <= pdbMin {
		t.Errorf("HPA minReplicas %d is not above the PDB minAvailable %d: node drains would block", minR, pdbMin)
	}
}

// kubectl apply -k applies every manifest except the examples (the Secret's, the backends'
// NetworkPolicy).
func TestKustomizationListsEveryManifestButTheSecretExample(t *testing.T) {
	listed := find(t, loadManifests(t), "Kustomization", "").values("resources")
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
	t.Parallel()
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
	dep := deployment(t, loadManifests(t))
	mounted := false
	for _, mnt := range dep.items(gatewayCtr + "volumeMounts") {
		dir := dep.get(mnt + ".mountPath")
		if dir != "" && strings.HasPrefix(cfg.PostgresSSLRootCert, strings.TrimSuffix(dir, "/")+"/") {
			vol := podSpec + "volumes[" + dep.get(mnt+".name") + "]"
			mounted = dep.raw(mnt+".readOnly") == "true" && dep.get(vol+".secret.secretName") != ""
		}
	}
	if !mounted {
		t.Errorf("%s is not on a read-only volume from a Secret in the Deployment", cfg.PostgresSSLRootCert)
	}
}

func TestImageIsReferencedByVersionTag(t *testing.T) {
	dep := deployment(t, loadManifests(t))
	image := dep.get(gatewayCtr + "image")
	release := regexp.MustCompile(`^[a-z0-9.-]+(/[a-z0-9._-]+)+(:v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?|@sha256:[0-9a-f]{64})$`)
	if !release.MatchString(image) {
		t.Errorf("image %q: want a release tag (name:1.2.3) or a digest, never latest or no tag", image)
	}
	if got := dep.get(gatewayCtr + "imagePullPolicy"); got == "Always" {
		t.Errorf("imagePullPolicy %s with a fixed tag only adds a registry round trip per start", got)
	}
}

// pprof listened unauthenticated on the admin port and no NetworkPolicy limited who could
// reach either port.
func TestNetworkPoliciesAdmitOnlyIngressAndMonitoring(t *testing.T) {
	ds := loadManifests(t)
	cm, _ := configMapAndSecret(t, ds)
	np := find(t, ds, "NetworkPolicy", "atenex-api-gateway")
	podLabels := deployment(t, ds).mapping("spec.template.metadata.labels")
	if sel := np.mapping("spec.podSelector.matchLabels"); !selects(sel, podLabels) {
		t.Errorf("podSelector %v does not match the gateway's pods", sel)
	}
	if !slices.Contains(np.values("spec.policyTypes"), "Ingress") {
		t.Error("policyTypes lacks Ingress")
	}
	wantFrom := map[string]string{cm["PORT"].Text: "ingress-nginx", cm["GATEWAY_ADMIN_PORT"].Text: "monitoring"}
	if cm["PORT"].Text == "" {
		wantFrom["8080"] = "ingress-nginx"
		delete(wantFrom, "")
	}
	got := map[string]string{}
	for _, rule := range np.items("spec.ingress") {
		from, ports := np.items(rule+".from"), np.items(rule+".ports")
		if len(from) != 1 || len(ports) == 0 {
			t.Fatalf("rule %s: want exactly one source and explicit ports (an empty list admits everyone)", rule)
		}
		ns := np.get(from[0] + ".namespaceSelector.matchLabels.kubernetes.io/metadata.name")
		if ns == "" || np.has(from[0]+".podSelector") || np.has(from[0]+".ipBlock") {
			t.Fatalf("rule source %s: want one namespace by name", from[0])
		}
		for _, p := range ports {
			got[np.get(p+".port")] = ns
		}
	}
	if !reflect.DeepEqual(got, wantFrom) {
		t.Errorf("ports admitted from namespaces %v, want %v", got, wantFrom)
	}

	// The example for the backends admits only the gateway's pods.
	var backends []k8sDoc
	for _, d := range ds {
		if d.kind() == "NetworkPolicy" && d.file == "backends-networkpolicy.example.yaml" {
			backends = append(backends, d)
		}
	}
	if len(backends) < 2 {
		t.Fatalf("%d backend policies in the example, want one for ingest and one for query", len(backends))
	}
	for _, d := range backends {
		for _, rule := range d.items("spec.ingress") {
			from := d.items(rule + ".from")
			if len(from) != 1 || d.get(from[0]+".podSelector.matchLabels.app.kubernetes.io/name") != podLabels["app.kubernetes.io/name"] {
				t.Errorf("%s: source %v, want only the gateway's pods", d.name(), from)
			}
		}
	}
}
