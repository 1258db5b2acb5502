package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

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
// until ctx ends or the stream is closed.
func (c *Client) WatchService(ctx context.Context, name string) (*Stream[api.Service], error) {
	resp, err := c.Do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(name)+"?watch=true", nil)
	if err != nil {
		return nil, err
	}
	return &Stream[api.Service]{body: resp.Body, dec: json.NewDecoder(resp.Body)}, nil
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

// Stream is an NDJSON stream of the local API. Next and Close may be
// called from different goroutines; Next is not safe for concurrent use.
type Stream[T any] struct {
	body io.ReadCloser
	dec  *json.Decoder
}

// Next returns the next value; io.EOF when the daemon ended the stream.
func (s *Stream[T]) Next() (T, error) {
	var v T
	if err := s.dec.Decode(&v); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return v, io.EOF
		}
		return v, fmt.Errorf("sidecar: stream: %w", err)
	}
	return v, nil
}

// Close ends the stream.
func (s *Stream[T]) Close() error { return s.body.Close() }
