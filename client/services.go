package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"

	"github.com/sidecar-dev/sidecar/api"
)

// Services returns the names of the registered services.
func (c *Client) Services(ctx context.Context) ([]string, error) {
	var s api.Services
	_, err := c.getJSON(ctx, "/v1/services", &s)
	return s.Services, err
}

// Service returns one service's instances; an unknown service has none.
func (c *Client) Service(ctx context.Context, name string) (api.Service, error) {
	var s api.Service
	_, err := c.getJSON(ctx, "/v1/services/"+url.PathEscape(name), &s)
	return s, err
}

// WatchService streams the service's instances now and after every change,
// until ctx ends or the stream is closed. See [Stream.Next] for how a
// stream ends.
func (c *Client) WatchService(ctx context.Context, name string) (*Stream[api.Service], error) {
	return watch[api.Service](ctx, c, "/v1/services/"+url.PathEscape(name)+"?watch=true")
}

// Pick returns one instance chosen by smooth weighted round robin; an
// *APIError with StatusCode 404 when no instance may be picked.
func (c *Client) Pick(ctx context.Context, name string) (api.Instance, error) {
	var in api.Instance
	_, err := c.getJSON(ctx, "/v1/services/"+url.PathEscape(name)+"/pick", &in)
	return in, err
}

// SetWeight sets this sidecar's registered weight (0 = drain); it returns
// once etcd holds it.
func (c *Client) SetWeight(ctx context.Context, weight int) error {
	body, _ := json.Marshal(api.Weight{Weight: weight})
	resp, err := c.Do(ctx, http.MethodPut, "/v1/registration/weight", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// watch opens the NDJSON stream of a GET request.
func watch[T any](ctx context.Context, c *Client, path string) (*Stream[T], error) {
	resp, err := c.Do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	return &Stream[T]{ctx: ctx, c: c, body: resp.Body, dec: json.NewDecoder(resp.Body)}, nil
}

// Stream is an NDJSON stream of the local API. Next and Close may be
// called from different goroutines; Next is not safe for concurrent use.
type Stream[T any] struct {
	ctx    context.Context // the request's: when it ends, so does the stream
	c      *Client
	body   io.ReadCloser
	dec    *json.Decoder
	closed atomic.Bool
}

// Next returns the next value. The stream lasts as long as the request, so
// it only ends with an error:
//   - the caller's context ended: ctx.Err() (errors.Is(err,
//     context.Canceled) after a cancel), which is not a failure;
//   - the caller called Close: an error matching net.ErrClosed;
//   - the daemon ended the stream or the connection broke (the daemon
//     stopped, crashed or restarted): an error matching ErrDaemonGone,
//     whose text names the socket.
func (s *Stream[T]) Next() (T, error) {
	var v T
	err := s.dec.Decode(&v)
	switch {
	case err == nil:
		return v, nil
	case s.ctx.Err() != nil:
		return v, s.ctx.Err()
	case s.closed.Load():
		return v, fmt.Errorf("sidecar: stream: %w", net.ErrClosed)
	case err == io.EOF:
		return v, &goneError{socket: s.c.socket, closed: true} // not io.EOF: it is no normal end
	case isJSONError(err):
		return v, fmt.Errorf("sidecar: stream: %w", err)
	}
	return v, s.c.transportError(s.ctx, "stream", err)
}

// Close ends the stream; it is safe to call more than once.
func (s *Stream[T]) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.body.Close()
}
