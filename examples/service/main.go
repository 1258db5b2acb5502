// Command service is the app of the service example: a tiny HTTP server
// that the sidecar registers as "orders" while its health endpoint
// answers 200.
//
//	GET  /         "orders at <addr>"
//	GET  /healthz  200 "ok", or 503 "sick" after POST /sick
//	POST /sick     make /healthz fail (the sidecar then withdraws the instance)
//	POST /well     make /healthz pass again
//
// Run it beside `sidecar run --config examples/service/sidecar.yaml`; the
// walk-through is in README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "listen address (the port sidecar.yaml registers)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "service:", err)
		os.Exit(1)
	}
}

// serve answers on addr until ctx ends.
func serve(ctx context.Context, addr string) error {
	srv := &http.Server{Addr: addr, Handler: newHandler(addr), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("serving on http://%s (GET /healthz; POST /sick, /well)", addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newHandler is the app's routes; /healthz fails while sick is set.
func newHandler(addr string) http.Handler {
	var sick atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "orders at %s\n", addr)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if sick.Load() {
			http.Error(w, "sick", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /sick", func(w http.ResponseWriter, _ *http.Request) {
		sick.Store(true)
		log.Print("/healthz now answers 503")
		fmt.Fprintln(w, "sick: /healthz answers 503")
	})
	mux.HandleFunc("POST /well", func(w http.ResponseWriter, _ *http.Request) {
		sick.Store(false)
		log.Print("/healthz now answers 200")
		fmt.Fprintln(w, "well: /healthz answers 200")
	})
	return mux
}
