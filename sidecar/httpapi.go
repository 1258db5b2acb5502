package sidecar

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sidecar-dev/sidecar/api"
)

// Limits of the local API.
const (
	maxBodyBytes      = 1 << 20
	maxHeaderBytes    = 64 << 10
	readHeaderTimeout = 5 * time.Second
	maxConns          = 1024
)

// route is one entry of the local API's route table.
type route struct {
	method, pattern string
	handle          http.HandlerFunc
}

// routes is the route table of the unix socket. Every handler is reached
// only through the peer check in serveHTTP.
func (d *Daemon) routes() []route {
	return []route{
		{"GET", "/v1/health", d.handleHealth},
		{"GET", "/v1/status", d.handleStatus},
		{"GET", "/v1/cluster", d.handleCluster},
		{"GET", "/v1/services", d.handleServices},
		{"GET", "/v1/services/{name}", d.handleService},
		{"GET", "/v1/services/{name}/pick", d.handlePick},
		{"PUT", "/v1/registration/weight", d.handleWeight},
		{"GET", "/metrics", d.handleMetrics},
	}
}

// newMux builds a mux from routes; a known path with another method gets
// 405 and an unknown path 404, both as JSON errors.
func (d *Daemon) newMux(rs []route) *http.ServeMux {
	mux := http.NewServeMux()
	allowed := map[string][]string{}
	for _, r := range rs {
		mux.Handle(r.method+" "+r.pattern, d.instrument(r.pattern, r.handle))
		allowed[r.pattern] = append(allowed[r.pattern], r.method)
	}
	for pattern, methods := range allowed {
		allow := strings.Join(methods, ", ")
		mux.Handle(pattern, d.instrument(pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s: use %s", r.Method, r.URL.Path, allow))
		}))
	}
	mux.Handle("/", d.instrument("unknown", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s", r.URL.Path))
	}))
	return mux
}

// socketHandler guards the unix-socket API: peer uid check, body cap.
func (d *Daemon) socketHandler() http.Handler {
	mux := d.newMux(d.routes())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, ok := peerFrom(r.Context())
		if !ok || !d.uidAllowed(peer.UID) {
			d.metrics.apiRejected.WithLabelValues("uid").Inc()
			writeError(w, http.StatusForbidden, fmt.Sprintf("uid %d is not allowed to use this socket (api.allowed_uids)", peer.UID))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		mux.ServeHTTP(w, r)
	})
}

// tcpHandler serves the optional api.http listener: GET /metrics and GET
// /v1/health only.
func (d *Daemon) tcpHandler() http.Handler {
	mux := d.newMux([]route{
		{"GET", "/v1/health", d.handleHealth},
		{"GET", "/metrics", d.handleMetrics},
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		mux.ServeHTTP(w, r)
	})
}

// uidAllowed: root and the daemon's own uid always; others when listed, or
// everyone when api.allowed_uids is empty (the socket mode decides).
func (d *Daemon) uidAllowed(uid int) bool {
	if len(d.cfg.API.AllowedUIDs) == 0 || uid == 0 || uid == os.Geteuid() {
		return true
	}
	return slices.Contains(d.cfg.API.AllowedUIDs, uid)
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush lets NDJSON streams flush through the recorder.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// instrument counts requests per route and code, and turns a handler panic
// into a 500 without taking the daemon down.
func (d *Daemon) instrument(name string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		d.metrics.apiInFlight.Inc()
		defer func() {
			d.metrics.apiInFlight.Dec()
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				d.log.Error("api handler panic", "route", name, "panic", fmt.Sprint(p))
				if rec.code == 0 {
					writeError(rec, http.StatusInternalServerError, "internal error")
				}
			}
			d.metrics.apiRequests.WithLabelValues(name, strconv.Itoa(rec.code)).Inc()
		}()
		h(rec, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.Error{Error: msg})
}

// decodeJSON reads a JSON request body into v: unknown fields, trailing data
// and syntax errors are 400, a body over 1 MiB is 413. On error it has
// written the answer.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q: want application/json", ct))
		return false
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON object")
	} else if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", tooBig.Limit))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "empty request body: want a JSON object")
	default:
		writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
	}
	return false
}

func (d *Daemon) promHandler() http.Handler {
	return promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)})
}

func (d *Daemon) handleMetrics(w http.ResponseWriter, r *http.Request) {
	d.metricsHandler.ServeHTTP(w, r)
}
