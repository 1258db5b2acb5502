// Package client is the Go client of sidecar's local API on its unix socket.
// The CLI is built on it; applications beside the sidecar can use it too.
// It speaks HTTP/1.1 + JSON and returns the wire types of package api.
//
// It depends on the standard library and package api only, not on the
// daemon (nor on etcd): NewDefault finds the daemon's socket by the same
// rule the daemon uses.
//
// Errors a caller can tell apart: *NotRunningError (no daemon on the
// socket), *APIError (the daemon answered non-2xx), ErrDaemonGone (the
// daemon went away during a request or a stream), and the context's own
// error when the caller's context ended: a cancellation is not a failure.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/sidecar-dev/sidecar/api"
)

// Client talks to one sidecar daemon. It is safe for concurrent use.
type Client struct {
	socket string
	hc     *http.Client
}

// SocketEnv is the environment variable naming the daemon's socket; the
// daemon and the CLI honour it too.
const SocketEnv = "SIDECAR_SOCKET"

// DefaultSocket returns the socket a client dials when the caller names
// none: $SIDECAR_SOCKET when set, else [api.DefaultSocketPath], where the
// daemon listens when api.socket is not configured.
func DefaultSocket() string {
	if s := os.Getenv(SocketEnv); s != "" {
		return s
	}
	return api.DefaultSocketPath()
}

// NewDefault returns a client of the daemon on [DefaultSocket].
func NewDefault() *Client { return New(DefaultSocket()) }

// New returns a client of the daemon listening on the unix socket path.
func New(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		Proxy:               nil,
		MaxIdleConns:        4,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
		TLSHandshakeTimeout: 0,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// Close closes idle connections to the daemon. The client stays usable.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Socket returns the socket path the client dials.
func (c *Client) Socket() string { return c.socket }

// NotRunningError means no daemon answers on the socket.
type NotRunningError struct {
	Socket string
	Err    error
}

func (e *NotRunningError) Error() string {
	reason := "no daemon answers"
	switch {
	case errors.Is(e.Err, syscall.ENOENT):
		reason = "the socket does not exist"
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		reason = "connection refused"
	case errors.Is(e.Err, syscall.EACCES):
		return fmt.Sprintf("sidecar: permission denied on socket %s: run as a user allowed by api.socket_mode / api.allowed_uids", e.Socket)
	}
	return fmt.Sprintf("sidecar: no daemon on socket %s (%s): start it with `sidecar run`, or point --socket / SIDECAR_SOCKET at its socket", e.Socket, reason)
}

func (e *NotRunningError) Unwrap() error { return e.Err }

// ErrDaemonGone is matched (with errors.Is) by the error of a request or a
// stream that the daemon ended before the caller did: it stopped, crashed
// or restarted. The error's text names the socket. Streams of the local API
// last as long as the request, so a stream that ends while the caller's
// context is alive ends with this error, never with io.EOF.
var ErrDaemonGone = errors.New("sidecar: the daemon went away")

// goneError is the ErrDaemonGone of one socket; err is what the broken
// connection reported.
type goneError struct {
	socket string
	closed bool // the daemon ended the stream cleanly; else the connection broke
	err    error
}

func (e *goneError) Error() string {
	how := "connection lost"
	if e.closed {
		how = "it ended the stream"
	}
	return fmt.Sprintf("sidecar: the daemon on socket %s went away (%s)", e.socket, how)
}

func (e *goneError) Is(target error) bool { return target == ErrDaemonGone }
func (e *goneError) Unwrap() error        { return e.err }

// transportError classifies an error of the HTTP round trip or of reading a
// body (what says which): the caller's context ended, no daemon answers,
// the daemon went away, or something else.
func (c *Client) transportError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return &NotRunningError{Socket: c.socket, Err: err}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return &goneError{socket: c.socket, err: err}
	}
	return fmt.Errorf("sidecar: %s: %w", what, err)
}

// APIError is a non-2xx answer of the daemon.
type APIError struct {
	StatusCode int
	Message    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("sidecar: %s (HTTP %d)", e.Message, e.StatusCode)
}

// Do sends a request and returns the response; the caller closes its body.
// A non-2xx answer is returned as *APIError (body consumed), except for the
// codes listed in pass, whose response is returned as is. No daemon on the
// socket is a *NotRunningError; a daemon that drops the connection before
// it answers, an error matching ErrDaemonGone. When ctx ends first, Do
// returns ctx.Err().
func (c *Client) Do(ctx context.Context, method, path string, body io.Reader, pass ...int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://sidecar"+path, body)
	if err != nil {
		return nil, fmt.Errorf("sidecar: request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, method+" "+path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	for _, p := range pass {
		if resp.StatusCode == p {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	var e api.Error
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e); err != nil || e.Error == "" {
		e.Error = http.StatusText(resp.StatusCode)
	}
	return nil, &APIError{StatusCode: resp.StatusCode, Message: e.Error}
}

// getJSON GETs path into v, accepting the extra codes in pass.
func (c *Client) getJSON(ctx context.Context, path string, v any, pass ...int) (int, error) {
	resp, err := c.Do(ctx, http.MethodGet, path, nil, pass...)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		if !isJSONError(err) {
			return resp.StatusCode, c.transportError(ctx, "read "+path, err)
		}
		return resp.StatusCode, fmt.Errorf("sidecar: decode %s: %w", path, err)
	}
	return resp.StatusCode, nil
}

// isJSONError reports whether a decoder's error is about the bytes it read
// rather than about reading them.
func isJSONError(err error) bool {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	return errors.As(err, &syn) || errors.As(err, &typ)
}

// Health returns the daemon's health; an unhealthy daemon (503) is not an
// error: look at Health.Healthy.
func (c *Client) Health(ctx context.Context) (api.Health, error) {
	var h api.Health
	_, err := c.getJSON(ctx, "/v1/health", &h, http.StatusServiceUnavailable)
	return h, err
}

// Status returns everything `sidecar status` shows.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	var s api.Status
	_, err := c.getJSON(ctx, "/v1/status", &s)
	return s, err
}

// Cluster returns the etcd members and the status of their endpoints.
func (c *Client) Cluster(ctx context.Context) (api.Cluster, error) {
	var cl api.Cluster
	_, err := c.getJSON(ctx, "/v1/cluster", &cl)
	return cl, err
}

// Config returns the config mappings and their state.
func (c *Client) Config(ctx context.Context) (api.ConfigMappings, error) {
	var cm api.ConfigMappings
	_, err := c.getJSON(ctx, "/v1/config", &cm)
	return cm, err
}

// WatchConfig streams each batch of mirrored changes once it is on disk,
// until ctx ends or the stream is closed.
func (c *Client) WatchConfig(ctx context.Context) (*Stream[api.ConfigBatch], error) {
	return watch[api.ConfigBatch](ctx, c, "/v1/config?watch=true")
}
