//go:build ignore

// balancer.go: a load balancer that follows a readiness probe the way Kubernetes and its
// Service do, for bench/rolling.sh. It probes every backend's readiness path every period
// (each probe bounded by the timeout), takes a backend out after failureThreshold failures
// in a row and puts it back after one success, and sends each request round-robin to a
// backend that is in. It never retries a request on another backend: a request that fails
// counts as lost, as it would for a client behind kube-proxy.
//
// Standard library only, outside the gateway's module build (the ignore tag); run it with
//
//	go build -o bench/out/balancer bench/balancer.go
//	bench/out/balancer -listen 127.0.0.1:28100 -backends 127.0.0.1:28101,127.0.0.1:28102
//
// GET /__balancer on the listen address answers the counts and the backends' states as
// JSON; SIGTERM or SIGINT prints the same and exits.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type backend struct {
	url    *url.URL
	start  time.Time // of the balancer, for event times
	ready  atomic.Bool
	served atomic.Int64 // requests answered by this backend
	failed atomic.Int64 // requests sent here that got no response

	mu       sync.Mutex
	failures int      // consecutive probe failures
	events   []string // state changes and the first failed requests
}

type balancer struct {
	backends []*backend
	next     atomic.Uint64
	started  time.Time

	total      atomic.Int64 // requests received
	noBackend  atomic.Int64 // refused with 503: no backend was ready
	retried    atomic.Int64 // requests the transport re-sent on a fresh connection by itself
	clientGone atomic.Int64 // the client left first (the load generator stopping): not a loss
}

func main() {
	listen := flag.String("listen", "127.0.0.1:28100", "address to serve on")
	list := flag.String("backends", "", "comma-separated host:port of the backends")
	path := flag.String("probe-path", "/readyz", "readiness path probed on every backend")
	period := flag.Duration("period", 10*time.Second, "time between probes (periodSeconds)")
	timeout := flag.Duration("timeout", time.Second, "bound on one probe (timeoutSeconds)")
	threshold := flag.Int("failure-threshold", 3, "probe failures in a row that take a backend out (failureThreshold)")
	flag.Parse()
	if *list == "" {
		log.Fatal("-backends is required")
	}

	b := &balancer{started: time.Now()}
	for _, hostport := range strings.Split(*list, ",") {
		b.backends = append(b.backends, &backend{url: &url.URL{Scheme: "http", Host: strings.TrimSpace(hostport)}, start: b.started})
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, be := range b.backends {
		go b.probe(ctx, be, *path, *period, *timeout, *threshold)
	}

	transport := &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	proxy := &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			be := backendOf(pr.In.Context())
			pr.SetURL(be.url)
			pr.Out.Host = pr.In.Host
			// The transport re-sends a request by itself when a reused keep-alive connection
			// turns out to be closed before the request was written; count those separately,
			// since a balancer without that behaviour would have lost them.
			var conns atomic.Int32
			pr.Out = pr.Out.WithContext(httptrace.WithClientTrace(pr.Out.Context(), &httptrace.ClientTrace{
				GetConn: func(string) {
					if conns.Add(1) == 2 {
						b.retried.Add(1)
						be.note("request re-sent on a fresh connection: the reused one was closed")
					}
				},
			}))
		},
		ModifyResponse: func(resp *http.Response) error {
			backendOf(resp.Request.Context()).served.Add(1)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				b.clientGone.Add(1)
				return
			}
			be := backendOf(r.Context())
			be.failed.Add(1)
			be.note(fmt.Sprintf("request failed: %v", err))
			w.WriteHeader(http.StatusBadGateway)
		},
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /__balancer", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(b.stats())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b.total.Add(1)
		be := b.pick()
		if be == nil {
			b.noBackend.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKey{}, be)))
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	log.Printf("balancer on %s, probing %s every %v (timeout %v, out after %d failures)", *listen, *path, *period, *timeout, *threshold)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
	out, _ := json.MarshalIndent(b.stats(), "", "  ")
	fmt.Println(string(out))
}

type backendKey struct{}

func backendOf(ctx context.Context) *backend { return ctx.Value(backendKey{}).(*backend) }

// pick returns the next ready backend in round-robin order, nil when none is ready.
func (b *balancer) pick() *backend {
	n := uint64(len(b.backends))
	start := b.next.Add(1)
	for i := uint64(0); i < n; i++ {
		if be := b.backends[(start+i)%n]; be.ready.Load() {
			return be
		}
	}
	return nil
}

// probe runs the readiness probe of one backend until ctx ends, like the kubelet: the first
// probe at once, then one every period; out after threshold failures in a row, in after one
// success.
func (b *balancer) probe(ctx context.Context, be *backend, path string, period, timeout time.Duration, threshold int) {
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		resp, err := client.Get(be.url.String() + path)
		ok := err == nil && resp.StatusCode >= 200 && resp.StatusCode < 400
		if resp != nil {
			resp.Body.Close()
		}
		be.mu.Lock()
		if ok {
			be.failures = 0
			if !be.ready.Load() {
				be.ready.Store(true)
				be.noteLocked("ready")
			}
		} else {
			be.failures++
			if be.failures >= threshold && be.ready.Load() {
				be.ready.Store(false)
				be.noteLocked(fmt.Sprintf("not ready after %d failed probes", be.failures))
			}
		}
		be.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// note records a failed request. They can come by the thousand: the first few say why.
func (be *backend) note(event string) {
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.events) < 50 {
		be.noteLocked(event)
	}
}

func (be *backend) noteLocked(event string) {
	log.Printf("%s: %s", be.url.Host, event)
	be.events = append(be.events, fmt.Sprintf("+%.2fs %s", time.Since(be.start).Seconds(), event))
}

type backendStats struct {
	Backend string   `json:"backend"`
	Ready   bool     `json:"ready"`
	Served  int64    `json:"served"`
	Failed  int64    `json:"failed"`
	Events  []string `json:"events"`
}

type stats struct {
	Requests   int64          `json:"requests"`
	Failed     int64          `json:"failed"` // no response from the backend, or no backend ready
	NoBackend  int64          `json:"no_backend"`
	Retried    int64          `json:"retried_by_transport"`
	ClientGone int64          `json:"client_gone"`
	Backends   []backendStats `json:"backends"`
}

func (b *balancer) stats() stats {
	s := stats{Requests: b.total.Load(), NoBackend: b.noBackend.Load(), Retried: b.retried.Load(), ClientGone: b.clientGone.Load()}
	s.Failed = s.NoBackend
	for _, be := range b.backends {
		be.mu.Lock()
		s.Backends = append(s.Backends, backendStats{
			Backend: be.url.Host, Ready: be.ready.Load(), Served: be.served.Load(), Failed: be.failed.Load(),
			Events: append([]string(nil), be.events...),
		})
		be.mu.Unlock()
		s.Failed += be.failed.Load()
	}
	return s
}
