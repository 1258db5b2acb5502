// Package client is the Go client of sidecar's local API on its unix socket.
// The CLI is built on it; applications beside the sidecar can use it too.
// It speaks HTTP/1.1 + JSON and returns the wire types of package api.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/sidecar-dev/sidecar/api"
)

// Client talks to one sidecar daemon. It is safe for concurrent use.
type Client struct {
	socket string
	hc     *http.Client
}

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
// codes listed in pass, whose response is returned as is.
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
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, &NotRunningError{Socket: c.socket, Err: err}
		}
		return nil, fmt.Errorf("sidecar: %s %s: %w", method, path, err)
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
		return resp.StatusCode, fmt.Errorf("sidecar: decode %s: %w", path, err)
	}
	return resp.StatusCode, nil
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
