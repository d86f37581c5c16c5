// openapi.go: the API description (OpenAPI 3.1) of every row of the route table, served at
// /openapi.json, and /docs, a page rendered from it on the server (no script, no CDN: it works
// offline). Auth comes from the route table and error codes from errorCodes, so neither can drift.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// anyMethod describes a route without a method (a proxied prefix): every method the frontend uses.
var anyMethod = []string{"get", "post", "put", "patch", "delete"}

// Document types: only the parts of OpenAPI 3.1 this gateway uses.
type (
	oaDocument struct {
		OpenAPI    string                `json:"openapi"`
		Info       oaInfo                `json:"info"`
		Tags       []oaTag               `json:"tags"`
		Paths      map[string]oaPathItem `json:"paths"`
		Components oaComponents          `json:"components"`
	}
	oaInfo struct {
		Title       string `json:"title"`
		Version     string `json:"version"`
		Description string `json:"description"`
	}
	oaTag struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	oaPathItem  map[string]*oaOperation // by lower-case method
	oaOperation struct {
		OperationID string                `json:"operationId"`
		Tags        []string              `json:"tags"`
		Summary     string                `json:"summary"`
		Description string                `json:"description,omitempty"`
		Auth        string                `json:"x-auth"` // none, InitialAuth, StrictAuth or AdminAuth
		Security    []map[string][]string `json:"security,omitempty"`
		Parameters  []oaParameter         `json:"parameters,omitempty"`
		RequestBody *oaRequestBody        `json:"requestBody,omitempty"`
		Responses   map[string]oaResponse `json:"responses"`
	}
	oaParameter struct {
		Name        string     `json:"name"`
		In          string     `json:"in"`
		Required    bool       `json:"required"`
		Description string     `json:"description"`
		Schema      jsonSchema `json:"schema"`
	}
	oaRequestBody struct {
		Required bool               `json:"required"`
		Content  map[string]oaMedia `json:"content"`
	}
	oaMedia struct {
		Schema jsonSchema `json:"schema"`
	}
	oaResponse struct {
		Description string             `json:"description"`
		Content     map[string]oaMedia `json:"content,omitempty"`
	}
	oaComponents struct {
		Schemas         map[string]jsonSchema `json:"schemas"`
		SecuritySchemes map[string]jsonSchema `json:"securitySchemes"`
	}
	jsonSchema = map[string]any
)

type routeDoc struct {
	tag, summary, description string
	request                   string // components schema of the JSON body; "" for none
	optionalBody              bool
	query                     []oaParameter
	status                    int            // the success status
	response                  jsonSchema     // its body; nil for none
	extra                     map[int]string // other non-error statuses → components schema
	errors                    []errorRef     // besides those of the route's auth and kind
	proxied                   bool
}

type errorRef struct {
	status int
	code   string
}

func schemaRef(name string) jsonSchema { return jsonSchema{"$ref": "#/components/schemas/" + name} }
func schemaListOf(name string) jsonSchema {
	return jsonSchema{"type": "array", "items": schemaRef(name)}
}
func jsonContent(s jsonSchema) map[string]oaMedia {
	return map[string]oaMedia{"application/json": {Schema: s}}
}

var (
	stringSchema       = jsonSchema{"type": "string"}
	boolSchema         = jsonSchema{"type": "boolean"}
	bearerSchema       = jsonSchema{"const": "bearer"}
	emailSchema        = jsonSchema{"type": "string", "format": "email"}
	uuidSchema         = jsonSchema{"type": "string", "format": "uuid"}
	nullableUUIDSchema = jsonSchema{"type": []string{"string", "null"}, "format": "uuid"}
	nullableString     = jsonSchema{"type": []string{"string", "null"}}
	rolesSchema        = jsonSchema{"type": "array", "minItems": 1, "items": jsonSchema{"type": "string", "enum": []string{"user", "admin"}},
		"description": "the database keeps one role per user: admin when the list holds it, else user"}
	timeSchema         = jsonSchema{"type": "string", "format": "date-time"}
	nullableTimeSchema = jsonSchema{"type": []string{"string", "null"}, "format": "date-time"}
)

// object is an object schema of the space-separated names (a trailing '!' marks a required
// one), each with the schema at its position in props.
func object(names string, props ...jsonSchema) jsonSchema {
	properties := jsonSchema{}
	var required []string
	for i, name := range strings.Fields(names) {
		name, req := strings.CutSuffix(name, "!")
		properties[name] = props[i]
		if req {
			required = append(required, name)
		}
	}
	s := jsonSchema{"type": "object", "properties": properties}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}

func described(s jsonSchema, description string) jsonSchema {
	c := maps.Clone(s)
	c["description"] = description
	return c
}

func apiSchemas() map[string]jsonSchema {
	codes := make([]string, len(errorCodes))
	for i, c := range errorCodes {
		codes[i] = c.Code
	}
	password := func(minLength int) jsonSchema {
		return jsonSchema{"type": "string", "minLength": minLength, "maxLength": maxPasswordBytes}
	}
	loginEmail := jsonSchema{"type": "string", "format": "email", "maxLength": maxEmailBytes}
	name := jsonSchema{"type": "string", "minLength": 1, "maxLength": maxNameBytes}
	return map[string]jsonSchema{
		"Error": object("detail! code! request_id", described(stringSchema, "for humans; may change"),
			jsonSchema{"type": "string", "enum": codes, "description": "stable; clients branch on it"}, stringSchema),
		"Message": object("message!", stringSchema),
		"Health": object("status! service! checks!", stringSchema, stringSchema,
			jsonSchema{"type": "object", "additionalProperties": stringSchema}),
		"Status":       object("status!", stringSchema),
		"LoginRequest": object("email! password!", loginEmail, password(1)),
		"LoginResponse": object("access_token! token_type! user_id! email! full_name! role! company_id!",
			stringSchema, bearerSchema, uuidSchema, stringSchema, nullableString, stringSchema, nullableUUIDSchema),
		"EnsureCompanyRequest": object("company_id", uuidSchema),
		"EnsureCompanyResponse": object("user_id! company_id! message! new_access_token! token_type!",
			uuidSchema, uuidSchema, stringSchema, stringSchema, bearerSchema),
		"TokenResponse":  object("access_token! token_type!", stringSchema, bearerSchema),
		"PasswordChange": object("current_password! new_password!", password(1), password(minUserPasswordBytes)),
		"Me": object("user_id! email! full_name! role! company_id! is_active!",
			uuidSchema, stringSchema, nullableString, stringSchema, nullableUUIDSchema, boolSchema),
		"AdminStats": object("company_count! users_per_company!", jsonSchema{"type": "integer", "description": "active companies"},
			jsonSchema{"type": "array", "items": object("company_id! name! user_count!",
				uuidSchema, stringSchema, jsonSchema{"type": "integer", "description": "active users"})}),
		"CompanyCreate":  object("name!", name),
		"CompanyCreated": object("id! name! created_at!", uuidSchema, stringSchema, nullableTimeSchema),
		"CompanyOption":  object("id! name!", uuidSchema, stringSchema),
		"Company":        object("id! name! is_active! created_at!", uuidSchema, stringSchema, boolSchema, nullableTimeSchema),
		"CompanyPatch":   withNoOther(object("name is_active", name, boolSchema)),
		"UserCreate": object("email! password! name company_id roles", loginEmail, password(minUserPasswordBytes), nullableString,
			described(nullableUUIDSchema, "an active company; null or absent: none yet"), rolesSchema),
		"User": object("id! email! name! company_id! roles! is_active! created_at!",
			uuidSchema, emailSchema, nullableString, nullableUUIDSchema, rolesSchema, boolSchema, nullableTimeSchema),
		"UserPatch": withNoOther(object("name is_active roles company_id", nullableString,
			described(boolSchema, "false also revokes every token"), rolesSchema, described(nullableUUIDSchema, "null: no company"))),
		"InvitationCreate": object("email! role expires_in_days", emailSchema,
			jsonSchema{"type": "string", "enum": []string{"user", "admin"}, "default": "user"},
			jsonSchema{"type": "integer", "minimum": 1, "maximum": maxInvitationDays, "default": defaultInvitationDays}),
		"Invitation": object("id! company_id! email! role! created_by! created_at! expires_at!",
			uuidSchema, uuidSchema, stringSchema, stringSchema, nullableUUIDSchema, timeSchema, timeSchema),
		"Domain": object("domain! company_id!", stringSchema, uuidSchema),
	}
}

// withNoOther makes a partial update refuse unknown fields and want one at least, as the handlers do.
func withNoOther(s jsonSchema) jsonSchema {
	s["additionalProperties"] = false
	s["minProperties"] = 1
	return s
}

// docProxyErrors are the answers of a proxied route that the gateway writes itself.
var docProxyErrors = []errorRef{
	{400, codeValidation}, {413, codeBodyTooLarge}, {502, codeUpstreamError}, {503, codeUpstreamUnavailable},
	{503, codeUpstreamBusy}, {504, codeUpstreamTimeout},
}

// docBodyErrors are the answers of every route that reads a JSON body.
var docBodyErrors = []errorRef{{408, codeRequestTimeout}, {413, codeBodyTooLarge}, {422, codeValidation}}

func docAuthErrors(auth routeAuth) []errorRef {
	if auth == authNone {
		return nil
	}
	errs := []errorRef{{401, codeNotAuthenticated}, {401, codeInvalidToken}, {401, codeTokenExpired},
		{401, codeTokenRevoked}, {403, codeCompanyInactive}, {503, codeDatabaseUnavailable}}
	if auth >= authStrict {
		errs = append(errs, errorRef{401, codeTokenStale}, errorRef{403, codeCompanyRequired})
	}
	if auth == authAdmin {
		errs = append(errs, errorRef{403, codeAdminRequired})
	}
	return errs
}

func (a routeAuth) String() string {
	return [...]string{"none", "InitialAuth", "StrictAuth", "AdminAuth"}[a]
}

var (
	limitParam = oaParameter{Name: "limit", In: "query", Description: "page size",
		Schema: jsonSchema{"type": "integer", "minimum": 1, "maximum": maxPageLimit, "default": defaultPageLimit}}
	offsetParam = oaParameter{Name: "offset", In: "query", Description: "users to skip",
		Schema: jsonSchema{"type": "integer", "minimum": 0, "default": 0}}
)

var pathParamDocs = map[string]oaParameter{
	"id":         {Description: "company id", Schema: uuidSchema}, // a user's under /users/ (operationOf)
	"company_id": {Description: "company id", Schema: uuidSchema},
	"inv":        {Description: "invitation id", Schema: uuidSchema},
	"domain":     {Description: "email domain, e.g. example.com (stored in lower case)", Schema: stringSchema},
	"path":       {Description: "the rest of the path, forwarded unchanged (may hold slashes)", Schema: stringSchema},
}

// routeDocs documents every route pattern of the route table; a row without one fails
// TestOpenAPIListsExactlyTheRouteTable.
var routeDocs = map[string]routeDoc{
	"GET /{$}": {tag: "system", summary: "Say the gateway is running", status: 200, response: schemaRef("Message")},
	"GET /health": {tag: "system", summary: "Health for monitors: 503 while the database does not answer or during shutdown",
		status: 200, response: schemaRef("Health"), extra: map[int]string{503: "Health"}},
	"GET /livez": {tag: "system", summary: "Liveness: 200 while the process serves", status: 200, response: schemaRef("Status")},
	"GET /readyz": {tag: "system", summary: "Readiness: 503 only while draining; the database state is in the body",
		status: 200, response: schemaRef("Health"), extra: map[int]string{503: "Health"}},

	"POST /api/v1/users/login": {tag: "users", summary: "Sign in with email and password",
		description: "Unknown email, wrong password and inactive user get the same 401 after the same work. A user without a company joins their invited, domain or default company.",
		request:     "LoginRequest", status: 200, response: schemaRef("LoginResponse"),
		errors: []errorRef{{401, codeInvalidCredentials}, {403, codeCompanyInactive}, {429, codeLoginRateLimited},
			{503, codeDatabaseUnavailable}, {503, codeLoginBusy}}},
	"POST /api/v1/users/me/ensure-company": {tag: "users", summary: "Join a company the caller is entitled to and get a token for it",
		request: "EnsureCompanyRequest", optionalBody: true, status: 200, response: schemaRef("EnsureCompanyResponse"),
		errors: []errorRef{{400, codeCompanyNotFound}, {400, codeCompanyRequired}, {403, codeCompanyForbidden}, {401, codeSessionExpired}}},
	"POST /api/v1/users/refresh": {tag: "users", summary: "A fresh token from the current database row, in the same session",
		status: 200, response: schemaRef("TokenResponse"), errors: []errorRef{{401, codeSessionExpired}}},
	"GET /api/v1/users/me":      {tag: "users", summary: "The caller's profile from the database", status: 200, response: schemaRef("Me")},
	"POST /api/v1/users/logout": {tag: "users", summary: "Sign out everywhere: revokes every token of the caller", status: 204},
	"POST /api/v1/users/me/password": {tag: "users", summary: "Change the password; older tokens are revoked and no token is returned",
		request: "PasswordChange", status: 204,
		errors: []errorRef{{400, codeInvalidCredentials}, {429, codeLoginRateLimited}, {503, codeLoginBusy}}},

	"/api/v1/ingest/{path...}": {tag: "proxy", summary: "Proxied to the Ingest service: /api/v1/ingest/{path}", proxied: true},
	"/api/v1/ingest":           {tag: "proxy", summary: "Proxied to the Ingest service: /api/v1/ingest/", proxied: true},
	"/api/v1/query/{path...}":  {tag: "proxy", summary: "Proxied to the Query service: /api/v1/{path}", proxied: true},
	"/api/v1/query":            {tag: "proxy", summary: "Proxied to the Query service: /api/v1/", proxied: true},
	"/api/v1/auth/{path...}":   {tag: "proxy", summary: "Proxied to the auth service: /api/v1/auth/{path}", proxied: true},
	"/api/v1/auth":             {tag: "proxy", summary: "Proxied to the auth service: /api/v1/auth/", proxied: true},
	"GET /api/v1/documents/stats": {tag: "proxy", summary: "Document statistics, proxied to the Ingest service's /api/v1/ingest/stats (query string kept)",
		proxied: true},

	"GET /api/v1/admin/stats": {tag: "admin", summary: "Active companies and the active users of each",
		status: 200, response: schemaRef("AdminStats")},
	"POST /api/v1/admin/companies": {tag: "admin", summary: "Create a company", request: "CompanyCreate",
		status: 201, response: schemaRef("CompanyCreated")},
	"GET /api/v1/admin/companies/select": {tag: "admin", summary: "Active companies by name, for a selector",
		status: 200, response: schemaListOf("CompanyOption")},
	"PATCH /api/v1/admin/companies/{id}": {tag: "admin", summary: "Rename, deactivate or activate a company",
		description: "A deactivation refuses every user of the company at once (403 company_inactive); activating it again restores their sessions.",
		request:     "CompanyPatch", status: 200, response: schemaRef("Company"),
		errors: []errorRef{{404, codeCompanyNotFound}, {409, codeSelfLockout}}},
	"POST /api/v1/admin/companies/{id}/invitations": {tag: "admin", summary: "Invite an email into the company",
		request: "InvitationCreate", status: 201, response: schemaRef("Invitation"), errors: []errorRef{{404, codeCompanyNotFound}}},
	"GET /api/v1/admin/companies/{id}/invitations": {tag: "admin", summary: "The company's open invitations, newest first",
		status: 200, response: schemaListOf("Invitation"), errors: []errorRef{{422, codeValidation}, {404, codeCompanyNotFound}}},
	"DELETE /api/v1/admin/companies/{id}/invitations/{inv}": {tag: "admin", summary: "Revoke an open invitation of the company",
		status: 204, errors: []errorRef{{422, codeValidation}, {404, codeNotFound}}},
	"PUT /api/v1/admin/companies/{id}/domains/{domain}": {tag: "admin", summary: "Register an email domain for the company (one company per domain)",
		status: 200, response: schemaRef("Domain"), errors: []errorRef{{422, codeValidation}, {404, codeCompanyNotFound}, {409, codeAlreadyExists}}},
	"DELETE /api/v1/admin/companies/{id}/domains/{domain}": {tag: "admin", summary: "Unregister an email domain of the company",
		status: 204, errors: []errorRef{{422, codeValidation}, {404, codeNotFound}}},
	"POST /api/v1/admin/users": {tag: "admin", summary: "Create a user (password hashed with bcrypt)", request: "UserCreate",
		status: 201, response: schemaRef("User"),
		errors: []errorRef{{409, codeAlreadyExists}, {422, codeCompanyNotFound}, {503, codeLoginBusy}}},
	"GET /api/v1/admin/users/by_company/{company_id}": {tag: "admin", summary: "A page of the company's users, active or not, by email",
		query: []oaParameter{limitParam, offsetParam}, status: 200, response: schemaListOf("User"),
		errors: []errorRef{{422, codeValidation}, {404, codeCompanyNotFound}}},
	"PATCH /api/v1/admin/users/{id}": {tag: "admin", summary: "Rename, activate, deactivate, change the roles of or move a user",
		description: "A deactivation revokes every token issued before it.",
		request:     "UserPatch", status: 200, response: schemaRef("User"),
		errors: []errorRef{{404, codeNotFound}, {422, codeCompanyNotFound}, {409, codeSelfLockout}}},
	"POST /api/v1/admin/users/{id}/revoke-sessions": {tag: "admin", summary: "Sign a user out everywhere",
		status: 204, errors: []errorRef{{422, codeValidation}, {404, codeNotFound}}},

	"GET /openapi.json": {tag: "docs", summary: "This document (OpenAPI 3.1)", status: 200, response: jsonSchema{"type": "object"}},
	"GET /docs":         {tag: "docs", summary: "This document as a page", status: 200},
}

// apiDescription is the document, built once from the route table, as JSON and as a page.
type apiDescription struct{ json, page []byte }

// newAPIDescription documents every row of table; one without routeDocs is listed as
// undocumented, so the test that compares the two names it.
func newAPIDescription(table []route) *apiDescription {
	doc := oaDocument{
		OpenAPI: "3.1.0",
		Info: oaInfo{Title: serviceName, Version: "2",
			Description: "Every error the gateway writes itself is JSON {detail, code, request_id}; clients branch on code. " +
				"InitialAuth: a valid bearer token of an active user. StrictAuth: also the token's company_id is the user's current company. " +
				"AdminAuth: StrictAuth, and the user's role in the database is admin (a token's roles claim is never enough)."},
		Tags: []oaTag{
			{"system", "probes"}, {"users", "sign-in and the caller's own account"},
			{"proxy", "forwarded to the backends with X-User-ID, X-Company-ID and X-User-Email set from the token"},
			{"admin", "platform administration: an administrator manages every company"},
			{"docs", "this description"},
		},
		Paths: map[string]oaPathItem{},
		Components: oaComponents{
			Schemas: apiSchemas(),
			SecuritySchemes: map[string]jsonSchema{"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
				"description": "Authorization: Bearer <access_token from login>"}},
		},
	}
	for _, rt := range table {
		methods, path := splitPattern(rt.pattern)
		item := doc.Paths[path]
		if item == nil {
			item = oaPathItem{}
			doc.Paths[path] = item
		}
		for _, m := range methods {
			item[m] = operationOf(rt, m, path)
		}
	}
	js, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic("openapi: " + err.Error()) // only maps, slices and strings: cannot fail
	}
	return &apiDescription{json: js, page: renderAPIPage(doc)}
}

// splitPattern turns a ServeMux pattern into OpenAPI methods and path: no method means any,
// "{name...}" is "{name}" and "/{$}" is "/".
func splitPattern(pattern string) (methods []string, path string) {
	methods = anyMethod
	if method, rest, ok := strings.Cut(pattern, " "); ok {
		methods, pattern = []string{strings.ToLower(method)}, rest
	}
	return methods, strings.ReplaceAll(strings.TrimSuffix(pattern, "{$}"), "...}", "}")
}

// pathParams lists the {names} of an OpenAPI path (ServeMux wildcards are whole segments).
func pathParams(path string) []string {
	var names []string
	for _, seg := range strings.Split(path, "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			names = append(names, strings.TrimSuffix(name, "}"))
		}
	}
	return names
}

func operationOf(rt route, method, path string) *oaOperation {
	d, documented := routeDocs[rt.pattern]
	if !documented {
		d = routeDoc{tag: "undocumented", summary: "undocumented"}
	}
	op := &oaOperation{
		OperationID: method + strings.NewReplacer("/", "_", "{", "", "}", "", ".", "_", "-", "_").Replace(strings.TrimSuffix(path, "/")),
		Tags:        []string{d.tag}, Summary: d.summary, Description: d.description,
		Auth: rt.auth.String(), Responses: map[string]oaResponse{},
	}
	if rt.auth != authNone {
		op.Security = []map[string][]string{{"bearer": {}}}
	}
	for _, name := range pathParams(path) {
		p := pathParamDocs[name]
		p.Name, p.In, p.Required = name, "path", true
		if name == "id" && strings.Contains(path, "/users/") {
			p.Description = "user id"
		}
		op.Parameters = append(op.Parameters, p)
	}
	op.Parameters = append(op.Parameters, d.query...)

	errs := append(docAuthErrors(rt.auth), d.errors...)
	errs = append(errs, errorRef{400, codeInvalidPath}, errorRef{500, codeInternal})
	if d.request != "" {
		op.RequestBody = &oaRequestBody{Required: !d.optionalBody, Content: jsonContent(schemaRef(d.request))}
		errs = append(errs, docBodyErrors...)
	}
	switch {
	case d.proxied:
		op.Description = "Forwarded with method, query string, headers and body unchanged (streamed both ways); the upstream's status, headers and body come back unchanged. The errors below are the gateway's own."
		op.Responses["default"] = oaResponse{Description: "the upstream's answer, unchanged"}
		errs = append(errs, docProxyErrors...)
		if rt.auth != authNone {
			errs = append(errs, errorRef{429, codeRateLimited})
		}
	case path == "/docs":
		op.Responses["200"] = oaResponse{Description: "HTML page", Content: map[string]oaMedia{"text/html": {Schema: stringSchema}}}
	default:
		resp := oaResponse{Description: http.StatusText(d.status)}
		if d.response != nil {
			resp.Content = jsonContent(d.response)
		}
		op.Responses[strconv.Itoa(d.status)] = resp
	}
	for status, name := range d.extra {
		op.Responses[strconv.Itoa(status)] = oaResponse{Description: http.StatusText(status),
			Content: jsonContent(schemaRef(name))}
	}
	addErrorResponses(op.Responses, errs)
	return op
}

// addErrorResponses declares each error status's codes, in errorCodes' order: in the schema for
// machines, and with their meanings in the description for people.
func addErrorResponses(responses map[string]oaResponse, errs []errorRef) {
	codes, lines := map[int][]string{}, map[int][]string{}
	for _, c := range errorCodes {
		for _, e := range errs {
			if e.code == c.Code && !slices.Contains(codes[e.status], c.Code) {
				codes[e.status] = append(codes[e.status], c.Code)
				lines[e.status] = append(lines[e.status], fmt.Sprintf("`%s`: %s", c.Code, c.Meaning))
			}
		}
	}
	for status := range codes {
		responses[strconv.Itoa(status)] = oaResponse{Description: strings.Join(lines[status], "\n\n"),
			Content: jsonContent(jsonSchema{
				"$ref": "#/components/schemas/Error", "properties": jsonSchema{"code": jsonSchema{"enum": codes[status]}},
			})}
	}
}

func (api *apiDescription) handleJSON() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSONBody(w, http.StatusOK, api.json)
	})
}

// handlePage serves the page; its policy forbids every load but inline style: it needs no network.
func (api *apiDescription) handlePage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		w.Write(api.page)
	})
}

type pageOperation struct {
	Method, Path string
	*oaOperation
}

// pageSchema is a link to a named schema (List: an array of it), or inline JSON.
type pageSchema struct {
	Name   string
	List   bool
	Inline string
}

// pageSchemaOf shows s as a link when it names a schema of the document. Error responses
// list their codes in the description, so their schema is not shown: nil.
func pageSchemaOf(s jsonSchema) *pageSchema {
	if s == nil || s["$ref"] == "#/components/schemas/Error" {
		return nil
	}
	ref, list := any(s), s["type"] == "array"
	if list {
		ref = s["items"]
	}
	if m, ok := ref.(jsonSchema); ok && len(m) == 1 {
		r, _ := m["$ref"].(string)
		if name, ok := strings.CutPrefix(r, "#/components/schemas/"); ok {
			return &pageSchema{Name: name, List: list}
		}
	}
	return &pageSchema{Inline: prettyJSON(s)}
}

func prettyJSON(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// renderAPIPage renders doc as one page: the operations by tag, then the schemas.
func renderAPIPage(doc oaDocument) []byte {
	byTag := map[string][]pageOperation{}
	for _, p := range slices.Sorted(maps.Keys(doc.Paths)) {
		for _, m := range anyMethod {
			if op := doc.Paths[p][m]; op != nil {
				byTag[op.Tags[0]] = append(byTag[op.Tags[0]], pageOperation{strings.ToUpper(m), p, op})
			}
		}
	}
	var buf bytes.Buffer
	if err := apiPageTemplate.Execute(&buf, struct {
		oaDocument
		ByTag map[string][]pageOperation
	}{doc, byTag}); err != nil {
		panic("render /docs: " + err.Error()) // a template bug, caught by the tests
	}
	return buf.Bytes()
}

var apiPageTemplate = template.Must(template.New("docs").Funcs(template.FuncMap{"schemaOf": pageSchemaOf, "pretty": prettyJSON}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Info.Title}}: API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem 1.5rem;color:#1d2430}
h1{margin-bottom:.2rem} h2{border-bottom:2px solid #d9dee7;padding-bottom:.3rem;margin-top:2.2rem}
section.op{border:1px solid #d9dee7;border-radius:6px;margin:.8rem 0;padding:.2rem .9rem .6rem}
h3{font-size:1rem;margin:.6rem 0 .2rem} code,pre{font:13px/1.4 ui-monospace,monospace}
pre{background:#f4f6f9;padding:.5rem;overflow:auto;margin:.2rem 0} .m{display:inline-block;min-width:4.2rem;font-weight:700}
.get{color:#17643a}.post{color:#174a8c}.put{color:#7a4b00}.patch{color:#6b2f8a}.delete{color:#9b1c1c}
.auth{float:right;font-weight:400;font-size:.85rem;background:#eef1f6;border-radius:4px;padding:0 .4rem}
table{border-collapse:collapse;width:100%;margin:.3rem 0} td,th{border-top:1px solid #e4e8ee;padding:.25rem .4rem;text-align:left;vertical-align:top}
td.s{width:4rem;font-weight:700} .d{white-space:pre-line}
</style></head><body>
<h1>{{.Info.Title}}</h1>
<p>API version {{.Info.Version}} · OpenAPI {{.OpenAPI}} · the document: <a href="/openapi.json">/openapi.json</a></p>
<p>{{.Info.Description}}</p>
{{range $tag := .Tags}}{{with index $.ByTag $tag.Name}}<h2 id="tag-{{$tag.Name}}">{{$tag.Name}}</h2><p>{{$tag.Description}}</p>
{{range .}}<section class="op" id="{{.OperationID}}">
<h3><span class="m {{.Method}}">{{.Method}}</span> <code>{{.Path}}</code> <span class="auth">{{.Auth}}</span></h3>
<p>{{.Summary}}</p>{{if .Description}}<p>{{.Description}}</p>{{end}}
{{if .Parameters}}<table><tr><th>parameter</th><th>in</th><th>description</th></tr>{{range .Parameters}}<tr><td><code>{{.Name}}</code></td><td>{{.In}}</td><td>{{.Description}}</td></tr>{{end}}</table>{{end}}
{{with .RequestBody}}<p>request body{{if not .Required}} (optional){{end}}: {{template "schema" schemaOf (index .Content "application/json").Schema}}</p>{{end}}
<table>{{range $status, $r := .Responses}}<tr><td class="s">{{$status}}</td><td><div class="d">{{$r.Description}}</div>{{with schemaOf (index $r.Content "application/json").Schema}}{{template "schema" .}}{{end}}</td></tr>{{end}}</table>
</section>{{end}}{{end}}{{end}}
<h2 id="schemas">schemas</h2>
{{range $name, $s := .Components.Schemas}}<h3 id="schema-{{$name}}">{{$name}}</h3><pre>{{pretty $s}}</pre>{{end}}
</body></html>
{{define "schema"}}{{if .Name}}{{if .List}}list of {{end}}<a href="#schema-{{.Name}}">{{.Name}}</a>{{else}}<pre>{{.Inline}}</pre>{{end}}{{end}}`))
