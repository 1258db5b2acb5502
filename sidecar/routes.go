package sidecar

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sidecar-dev/sidecar/internal/names"
)

// Limits of the local API.
const (
	maxBodyBytes      = 1 << 20
	maxHeaderBytes    = 64 << 10
	readHeaderTimeout = 5 * time.Second
	// bodyReadTimeout bounds the read of a request's body, from the end of
	// its header: a body that never completes is cut off (408), not served
	// for ever.
	bodyReadTimeout = 10 * time.Second
	// streamWriteTimeout bounds each write of an NDJSON stream: a client
	// that stops reading loses its stream rather than hold a connection and
	// a goroutine for ever.
	streamWriteTimeout = 10 * time.Second
	// maxConns caps the socket's open connections; streams may take all
	// but reservedConns of them, so that a client holding the most streams
	// it may still leaves room for /v1/health and everyone else.
	maxConns      = 1024
	reservedConns = 64
	maxStreams    = maxConns - reservedConns
)

// route is one entry of the local API's route table. Each feature's file
// (routes_status.go, routes_services.go, registration.go, ...) lists its
// own routes; routes puts them in one table.
type route struct {
	method, pattern string
	handle          func(http.ResponseWriter, *request)
	// noun names what {name} in the pattern is ("service", "lock", ...);
	// the preamble answers 400 to a name that is not valid.
	noun string
	// stream: the route answers ?watch=true with an NDJSON stream, which
	// takes one of maxStreams slots while it lasts.
	stream bool
	// hold: the route always streams (a lock or leadership, waited for and
	// then held for as long as the request lasts): it always takes a slot.
	hold bool
}

// request is an API request after the shared preamble.
type request struct {
	*http.Request
	name  string // {name}, valid; empty when the route has none
	watch bool   // ?watch=true on a stream route
}

// routes is the route table of the unix socket. Every handler is reached
// only through the peer check in socketHandler and the preamble.
func (d *Daemon) routes() []route {
	return slices.Concat(d.statusRoutes(), d.serviceRoutes(), d.registrationRoutes(), d.configRoutes(), d.coordRoutes())
}

// newMux builds a mux from routes; a known path with another method gets
// 405 and an unknown path 404, both as JSON errors.
func (d *Daemon) newMux(rs []route) *http.ServeMux {
	mux := http.NewServeMux()
	allowed := map[string][]string{}
	for _, r := range rs {
		mux.Handle(r.method+" "+r.pattern, d.instrument(r.pattern, d.preamble(r)))
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

// preamble is what every route shares before its handler: the {name}
// check, ?watch= parsing and a stream slot for a stream. On a bad request
// it answers and the handler does not run.
func (d *Daemon) preamble(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req := &request{Request: r}
		if rt.noun != "" {
			req.name = r.PathValue("name")
			if !names.Valid(req.name) {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("bad %s name %q: want %s", rt.noun, req.name, names.Pattern))
				return
			}
		}
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("bad query %q: %v", r.URL.RawQuery, err))
			return
		}
		if rt.stream {
			if v := r.URL.Query().Get("watch"); v != "" {
				b, err := strconv.ParseBool(v)
				if err != nil {
					writeError(w, http.StatusBadRequest, fmt.Sprintf("bad watch=%q: want true or false", v))
					return
				}
				req.watch = b
			}
		}
		if req.watch || rt.hold {
			if !d.takeStream(w) {
				return
			}
			defer func() { <-d.streams }()
		}
		rt.handle(w, req)
	}
}

// takeStream takes one of maxStreams stream slots, or answers 503 when
// none is free; the caller gives a taken slot back with <-d.streams.
func (d *Daemon) takeStream(w http.ResponseWriter) bool {
	select {
	case d.streams <- struct{}{}:
		return true
	default:
		d.metrics.apiRejected.WithLabelValues("streams").Inc()
		w.Header().Set("Connection", "close") // give the connection back too
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("too many open streams (%d): close some and retry", maxStreams))
		return false
	}
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
		limitBody(w, r)
		mux.ServeHTTP(w, r)
	})
}

// limitBody caps the request's body at maxBodyBytes and its read at
// bodyReadTimeout (408, see decodeJSON). net/http lifts the read deadline
// when the body has been read to its end, before it reads on to see the
// client hang up, so a hold or stream lives on; a request without a body
// gets no deadline, since that read has already begun. A body the handler
// leaves unread is still bounded when the server drains it afterwards.
func limitBody(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
}

// tcpHandler serves the optional api.http listener: GET /metrics and GET
// /v1/health only.
func (d *Daemon) tcpHandler() http.Handler {
	mux := d.newMux(d.tcpRoutes())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limitBody(w, r)
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
