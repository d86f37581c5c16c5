// openapi_test.go: the API description against the route table it is built from (every
// route, its auth, schemas and error codes), the /docs page without network access,
// GATEWAY_DOCS, and the error-code table against the constants and the handlers.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// docsEnv serves a gateway on the memory store: the description needs no database.
func docsEnv(t *testing.T, env map[string]string) *testEnv {
	t.Helper()
	return serveTestEnv(t, testConfig(t, env), newMemoryStore(), "", nil)
}

// openAPIOf fetches and decodes /openapi.json.
func openAPIOf(t *testing.T, e *testEnv) map[string]any {
	t.Helper()
	r := e.do("GET", "/openapi.json", "", "")
	mustStatus(t, r, http.StatusOK)
	if !json.Valid(r.body) {
		t.Fatalf("/openapi.json is not valid JSON")
	}
	doc := r.json(t)
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi = %v, want 3.1.0", doc["openapi"])
	}
	return doc
}

// tableOperations converts the route table's patterns on its own (not with splitPattern):
// "METHOD /path" is one operation, a pattern without a method is every method the
// description lists for proxies.
func tableOperations(t *testing.T, g *gateway) map[string]route {
	t.Helper()
	ops := map[string]route{}
	for _, rt := range g.routeTable() {
		method, path, ok := strings.Cut(rt.pattern, " ")
		methods := []string{strings.ToLower(method)}
		if !ok {
			path, methods = rt.pattern, []string{"get", "post", "put", "patch", "delete"}
		}
		path = strings.TrimSuffix(path, "{$}")
		path = strings.ReplaceAll(path, "...}", "}")
		for _, m := range methods {
			key := m + " " + path
			if _, dup := ops[key]; dup {
				t.Fatalf("route table has %s twice", key)
			}
			ops[key] = rt
		}
	}
	return ops
}

// resolve follows a local $ref.
func resolveRef(t *testing.T, doc map[string]any, ref string) map[string]any {
	t.Helper()
	name, ok := strings.CutPrefix(ref, "#/components/schemas/")
	s, found := doc["components"].(map[string]any)["schemas"].(map[string]any)[name].(map[string]any)
	if !ok || !found {
		t.Fatalf("$ref %q does not resolve", ref)
	}
	return s
}

// walkRefs calls f with every $ref in v.
func walkRefs(v any, f func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" {
				f(s)
			}
			walkRefs(x, f)
		}
	case []any:
		for _, x := range v {
			walkRefs(x, f)
		}
	}
}

func TestOpenAPIListsExactlyTheRouteTable(t *testing.T) {
	t.Parallel()
	configs := []struct {
		name string
		env  map[string]string
	}{
		{"without auth service", nil},
		{"with auth service", map[string]string{"GATEWAY_AUTH_SERVICE_URL": "http://auth.example:8000"}},
	}
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			e := docsEnv(t, c.env)
			doc := openAPIOf(t, e)
			want := tableOperations(t, e.gw)
			got := map[string]map[string]any{}
			for path, item := range doc["paths"].(map[string]any) {
				for method, op := range item.(map[string]any) {
					got[method+" "+path] = op.(map[string]any)
				}
			}
			for key := range want {
				if _, ok := got[key]; !ok {
					t.Errorf("route %s is served but not described", key)
				}
			}
			for key := range got {
				if _, ok := want[key]; !ok {
					t.Errorf("%s is described but not served", key)
				}
			}
			if _, proxied := got["get /api/v1/auth/{path}"]; proxied != (c.env != nil) {
				t.Errorf("auth proxy described = %v with GATEWAY_AUTH_SERVICE_URL %v", proxied, c.env)
			}
			for key, rt := range want {
				if op := got[key]; op != nil {
					checkOperation(t, doc, key, rt, op)
				}
			}
		})
	}
}

// checkOperation checks that one described operation carries the route's auth, its
// parameters, schemas that resolve, a success answer and error codes consistent with
// errorCodes (including the refusals of its auth).
func checkOperation(t *testing.T, doc map[string]any, key string, rt route, op map[string]any) {
	t.Helper()
	if op["x-auth"] != rt.auth.String() {
		t.Errorf("%s: x-auth %v, route table says %s", key, op["x-auth"], rt.auth)
	}
	if _, secured := op["security"]; secured != (rt.auth != authNone) {
		t.Errorf("%s: security %v for auth %s", key, op["security"], rt.auth)
	}
	if s, _ := op["summary"].(string); s == "" || s == "undocumented" {
		t.Errorf("%s: no summary; add it to routeDocs", key)
	}
	path := strings.SplitN(key, " ", 2)[1]
	params := map[string]bool{}
	for _, p := range anyList(op["parameters"]) {
		p := p.(map[string]any)
		if p["in"] == "path" {
			params[p["name"].(string)] = true
		}
	}
	for _, name := range pathParams(path) {
		if !params[name] {
			t.Errorf("%s: path parameter %s not described", key, name)
		}
	}
	walkRefs(op, func(ref string) { resolveRef(t, doc, ref) })

	responses := op["responses"].(map[string]any)
	success := false
	codesByStatus := map[string][]string{}
	for status, resp := range responses {
		if status == "default" || status[0] == '2' {
			success = true
			continue
		}
		content, _ := resp.(map[string]any)["content"].(map[string]any)
		media, _ := content["application/json"].(map[string]any)
		schema, _ := media["schema"].(map[string]any)
		if schema == nil {
			continue // e.g. /health's 503 with the health body
		}
		props, _ := schema["properties"].(map[string]any)
		code, _ := props["code"].(map[string]any)
		if enum, ok := code["enum"].([]any); ok {
			for _, code := range enum {
				codesByStatus[status] = append(codesByStatus[status], code.(string))
			}
		} else if schema["$ref"] == "#/components/schemas/Error" {
			t.Errorf("%s: %s response declares no codes", key, status)
		}
	}
	if !success {
		t.Errorf("%s: no success response", key)
	}
	if len(codesByStatus) == 0 {
		t.Errorf("%s: no error codes", key)
	}
	for status, codes := range codesByStatus {
		n, _ := strconv.Atoi(status)
		for _, code := range codes {
			i := slices.IndexFunc(errorCodes, func(c errorCode) bool { return c.Code == code })
			if i < 0 {
				t.Errorf("%s: code %s is not in errorCodes", key, code)
			} else if !slices.Contains(errorCodes[i].Statuses, n) {
				t.Errorf("%s: code %s with status %d, errorCodes allows %v", key, code, n, errorCodes[i].Statuses)
			}
		}
	}
	for _, e := range docAuthErrors(rt.auth) {
		if !slices.Contains(codesByStatus[strconv.Itoa(e.status)], e.code) {
			t.Errorf("%s: %s route lacks %d %s", key, rt.auth, e.status, e.code)
		}
	}
}

func anyList(v any) []any {
	l, _ := v.([]any)
	return l
}

func TestOpenAPIDeclaresEveryErrorCode(t *testing.T) {
	doc := openAPIOf(t, docsEnv(t, nil))
	code := resolveRef(t, doc, "#/components/schemas/Error")["properties"].(map[string]any)["code"].(map[string]any)
	var got []string
	for _, c := range code["enum"].([]any) {
		got = append(got, c.(string))
	}
	var want []string
	for _, c := range errorCodes {
		want = append(want, c.Code)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Error.code enum = %v\nerrorCodes       = %v", got, want)
	}
}

// TestOpenAPIAdminSchemasMatchResponses compares the members the description promises with
// what the administration routes answer, so the document cannot drift from the handlers.
func TestOpenAPIAdminSchemasMatchResponses(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	doc := openAPIOf(t, e.testEnv)
	props := func(name string) []string {
		s := resolveRef(t, doc, "#/components/schemas/"+name)
		var req []string
		for _, r := range s["required"].([]any) {
			req = append(req, r.(string))
		}
		slices.Sort(req)
		if got := jsonKeys(s["properties"].(map[string]any)); !slices.Equal(got, req) {
			t.Fatalf("schema %s: properties %v, required %v", name, got, req)
		}
		return req
	}
	r := e.do("POST", "/api/v1/admin/companies", e.tok, `{"name":"Acme"}`)
	created := r.json(t)
	mustKeys(t, created, props("CompanyCreated")...)
	mustKeys(t, e.do("PATCH", "/api/v1/admin/companies/"+created["id"].(string), e.tok, `{"name":"Acme 2"}`).json(t), props("Company")...)
	mustKeys(t, e.do("GET", "/api/v1/admin/stats", e.tok, "").json(t), props("AdminStats")...)
	mustKeys(t, jsonList(t, e.do("GET", "/api/v1/admin/companies/select", e.tok, ""))[0], props("CompanyOption")...)
	mustKeys(t, jsonList(t, e.do("GET", "/api/v1/admin/users/by_company/"+e.home, e.tok, ""))[0], props("User")...)
	mustKeys(t, e.do("PATCH", "/api/v1/admin/users/"+e.admin.ID, e.tok, `{"name":"Me"}`).json(t), props("User")...)
	mustKeys(t, e.do("POST", "/api/v1/admin/companies/"+e.home+"/invitations", e.tok, `{"email":"x@example.com"}`).json(t), props("Invitation")...)
	mustKeys(t, e.do("PUT", "/api/v1/admin/companies/"+e.home+"/domains/example.com", e.tok, "").json(t), props("Domain")...)
	mustKeys(t, e.do("GET", "/api/v1/users/me", e.tok, "").json(t), props("Me")...)
}

func TestDocsPageShowsEveryRouteWithoutNetwork(t *testing.T) {
	e := docsEnv(t, nil)
	r := e.do("GET", "/docs", "", "")
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("/docs: %d %s", r.status, r.header.Get("Content-Type"))
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'none'") {
		t.Fatalf("Content-Security-Policy = %q; the page must need nothing from the network", csp)
	}
	page := string(r.body)
	for _, forbidden := range []string{"<script", "src=", "http://", "https://", "@import", "url("} {
		if strings.Contains(page, forbidden) {
			t.Errorf("the page contains %q: it would load something or fail offline", forbidden)
		}
	}
	for key := range tableOperations(t, e.gw) {
		method, path, _ := strings.Cut(key, " ")
		want := `<span class="m ` + strings.ToUpper(method) + `">` + strings.ToUpper(method) + `</span> <code>` + html.EscapeString(path) + `</code>`
		if !strings.Contains(page, want) {
			t.Errorf("the page does not show %s", key)
		}
	}
	for _, want := range []string{"AdminAuth", "StrictAuth", "InitialAuth", codeAdminRequired, "CompanyCreated", `href="/openapi.json"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
}

func TestDocsOffAnswers404(t *testing.T) {
	e := docsEnv(t, map[string]string{"GATEWAY_DOCS": "false"})
	for _, path := range []string{"/openapi.json", "/docs"} {
		mustCode(t, e.do("GET", path, "", ""), http.StatusNotFound, codeNotFound)
	}
	for _, rt := range e.gw.routeTable() {
		if rt.pattern == "GET /openapi.json" || rt.pattern == "GET /docs" {
			t.Fatalf("route table serves %s with GATEWAY_DOCS=false", rt.pattern)
		}
	}
	if _, err := loadConfig(func(k string) string {
		return map[string]string{"GATEWAY_JWT_SECRET": testSecret, "GATEWAY_POSTGRES_PASSWORD": "pw", "GATEWAY_DOCS": "maybe"}[k]
	}, false); err == nil || !strings.Contains(err.Error(), "GATEWAY_DOCS") {
		t.Fatalf("GATEWAY_DOCS=maybe: error %v, want one naming GATEWAY_DOCS", err)
	}
	if cfg := testConfig(t, nil); !cfg.Docs {
		t.Fatal("GATEWAY_DOCS does not default to true")
	}
}

// codeConstants returns the code… constants errors.go declares, by value.
func codeConstants(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	for _, decl := range f.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "code") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("%s is not a string literal", name.Name)
				}
				v, _ := strconv.Unquote(lit.Value)
				consts[v] = name.Name
			}
		}
	}
	return consts
}

func TestErrorCodeConstantsAreExactlyTheTable(t *testing.T) {
	consts := codeConstants(t)
	inTable := map[string]bool{}
	for _, c := range errorCodes {
		inTable[c.Code] = true
		if _, ok := consts[c.Code]; !ok {
			t.Errorf("errorCodes lists %s, which errors.go declares no constant for", c.Code)
		}
		if len(c.Statuses) == 0 || c.Meaning == "" {
			t.Errorf("errorCodes row %s lacks statuses or meaning", c.Code)
		}
	}
	for value, name := range consts {
		if !inTable[value] {
			t.Errorf("%s (%q) is declared in errors.go but missing from errorCodes", name, value)
		}
	}
}

// TestErrorWritersNameDeclaredCodes reads every place the gateway names an error code (a
// writeError or newError call, an apiError literal): the code is a declared constant or a
// value carried from one (a field or variable named code), never a literal that could escape
// the table or be empty.
func TestErrorWritersNameDeclaredCodes(t *testing.T) {
	consts := codeConstants(t)
	names := map[string]bool{}
	for _, name := range consts {
		names[name] = true
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	calls := 0
	check := func(what string, code ast.Expr) {
		calls++
		switch arg := code.(type) {
		case *ast.Ident:
			if !names[arg.Name] && arg.Name != "code" {
				t.Errorf("%s: %s with code %s, not a declared code constant", fset.Position(arg.Pos()), what, arg.Name)
			}
		case *ast.SelectorExpr:
			if arg.Sel.Name != "code" {
				t.Errorf("%s: %s with code from .%s", fset.Position(arg.Pos()), what, arg.Sel.Name)
			}
		default:
			t.Errorf("%s: %s with a code that is not a declared constant", fset.Position(code.Pos()), what)
		}
	}
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, file, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if fn, ok := n.Fun.(*ast.Ident); ok && fn.Name == "writeError" && len(n.Args) == 5 {
					check("writeError", n.Args[3])
				} else if ok && fn.Name == "newError" && len(n.Args) == 3 {
					check("newError", n.Args[1])
				}
			case *ast.CompositeLit:
				// apiError{…} literals, also the elided ones of a map or slice of them.
				if typ, ok := n.Type.(*ast.Ident); (ok && typ.Name == "apiError") || n.Type == nil {
					for _, elt := range n.Elts {
						if kv, ok := elt.(*ast.KeyValueExpr); ok {
							if key, ok := kv.Key.(*ast.Ident); ok && key.Name == "code" {
								check("apiError", kv.Value)
							}
						}
					}
				}
			}
			return true
		})
	}
	if calls < 30 {
		t.Fatalf("found only %d places naming an error code; is the scan broken?", calls)
	}
}

// TestHandlerErrorsAreAnsweredAndTheirCausesLogged pins the wrapper every route handler goes
// through: an *apiError is answered as it says (with its headers), any other error is a 500
// whose cause reaches the log with the request id, never the client.
func TestHandlerErrorsAreAnsweredAndTheirCausesLogged(t *testing.T) {
	var logs syncBuffer
	g := &gateway{log: slog.New(slog.NewJSONHandler(&logs, nil))}
	for _, c := range []struct {
		name   string
		err    error
		status int
		code   string
		detail string
		header string
		logged bool
	}{
		{"apiError", &apiError{status: 429, code: codeRateLimited, detail: "Slow down", retryAfter: "3"}, 429, codeRateLimited, "Slow down", "Retry-After", false},
		{"refusal", refusals["expired_token"], 401, codeTokenExpired, "Token has expired", "WWW-Authenticate", false},
		{"wrapped apiError", fmt.Errorf("context: %w", unprocessable("Field %s is odd", "x")), 422, codeValidation, "Field x is odd", "", false},
		{"database", databaseUnavailable("Try later", "load thing", errors.New("cause-one")), 503, codeDatabaseUnavailable, "Try later", "", true},
		{"plain error", errors.New("cause-two"), 500, codeInternal, "Internal server error", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(logs.String())
			h := g.handle(func(http.ResponseWriter, *http.Request) error { return c.err })
			r := httptest.NewRequest("GET", "/x", nil)
			r = r.WithContext(withRequestInfo(r.Context(), &requestInfo{ID: "req-" + c.name}))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			var body errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != c.status || body.Code != c.code ||
				body.Detail != c.detail || body.RequestID != "req-"+c.name {
				t.Fatalf("answer %d %s (%v), want %d %s %q", w.Code, w.Body, err, c.status, c.code, c.detail)
			}
			if strings.Contains(w.Body.String(), "cause") {
				t.Fatalf("the cause reached the client: %s", w.Body)
			}
			if c.header != "" && w.Header().Get(c.header) == "" {
				t.Fatalf("no %s header: %v", c.header, w.Header())
			}
			line := logs.String()[before:]
			if logged := strings.Contains(line, `"request_id":"req-`+c.name+`"`) && strings.Contains(line, "cause"); logged != c.logged {
				t.Fatalf("logged = %v, want %v: %q", logged, c.logged, line)
			}
		})
	}
}
