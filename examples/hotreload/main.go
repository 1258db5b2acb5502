package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sync/errgroup"
)

func main() {
	dir := flag.String("dir", "./hello-config", "directory the sidecar mirrors the settings into")
	addr := flag.String("addr", "127.0.0.1:8080", "address to serve HTTP on")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err == nil {
		err = run(ctx, ln, *dir, log)
	}
	if err != nil {
		log.Error("hotreload failed", "err", err)
		os.Exit(1)
	}
}

// service holds the current settings and serves them. It is safe for
// concurrent use: a reload stores a new values, and each request reads
// whichever is current.
type service struct {
	dir string
	log *slog.Logger
	cur atomic.Pointer[values]
}

// run serves the settings of dir on ln, reloading them on every change in
// dir, until ctx ends; it returns nil once the server and the watch have
// stopped. dir is created if missing, so the service may start before the
// sidecar.
func run(ctx context.Context, ln net.Listener, dir string, log *slog.Logger) error {
	defer ln.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	defer w.Close()
	// Watch first, read second: a change between the two is then seen.
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	s := &service{dir: dir, log: log}
	cur, err := load(dir, defaults())
	if err != nil {
		log.Warn("settings not fully read; using defaults for those", "dir", dir, "err", err)
	}
	s.cur.Store(&cur)
	log.Info("serving", append([]any{"addr", ln.Addr().String(), "dir", dir}, cur.attrs()...)...)

	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 5 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.watch(gctx, w) })
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}

// routes is the service's HTTP API: GET / and GET /healthz.
func (s *service) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		v := *s.cur.Load()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s (color=%s)\n", v["greeting"], v["color"])
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	return mux
}
