// example_test.go: how a route is added, as runnable documentation.
package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
)

// A route is one row of routeTable (main.go): a ServeMux pattern, the auth wrapper it needs
// and a handler made by a handleX constructor. The handler returns its failure as an
// *apiError (or any error, answered 500) and handle writes it; serveMux wraps each row in
// its auth and answers unmatched paths and methods.
func Example_addRoute() {
	g := &gateway{log: slog.New(slog.DiscardHandler)}
	handleGreeting := func() http.Handler {
		return g.handle(func(w http.ResponseWriter, r *http.Request) error {
			name := r.PathValue("name")
			if name == "nobody" {
				return newError(http.StatusNotFound, codeNotFound, "No such person")
			}
			writeJSON(w, http.StatusOK, map[string]string{"greeting": "Hello, " + name})
			return nil
		})
	}
	mux := g.serveMux([]route{
		{"GET /api/v1/hello/{name}", authNone, handleGreeting()},
		{"GET /api/v1/hello-me", authInitial, handleGreeting()}, // needs a valid token
	})

	for _, req := range []struct{ method, path string }{
		{"GET", "/api/v1/hello/ana"},
		{"GET", "/api/v1/hello/nobody"},
		{"GET", "/api/v1/hello-me"},
		{"POST", "/api/v1/hello/ana"},
	} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(req.method, req.path, nil))
		fmt.Print(w.Code, " ", w.Body.String())
	}
	// Output:
	// 200 {"greeting":"Hello, ana"}
	// 404 {"detail":"No such person","code":"not_found"}
	// 401 {"detail":"Not authenticated","code":"not_authenticated"}
	// 405 {"detail":"Method Not Allowed","code":"method_not_allowed"}
}
