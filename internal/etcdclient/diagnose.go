package etcdclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// diagnosis probes every endpoint, layer by layer, to say why a request
// failed. It is used by one goroutine (supervise); start runs the probes in
// goroutines of their own, which stop waits for.
type diagnosis struct {
	cfg    Config
	tlsCfg *tls.Config
	budget time.Duration // what the failed request waited, for KindTimeout

	cancel context.CancelFunc
	done   chan struct{} // closed when errs is final
	errs   []error       // per endpoint: nil or *ConnError
}

// start probes eps concurrently for at most within and returns a channel
// closed when all probes are done.
func (d *diagnosis) start(ctx context.Context, eps []endpoint, within time.Duration) <-chan struct{} {
	pctx, cancel := context.WithTimeout(ctx, within)
	d.cancel, d.done, d.errs = cancel, make(chan struct{}), make([]error, len(eps))
	go func() {
		defer close(d.done)
		var wg sync.WaitGroup
		for i, e := range eps {
			wg.Go(func() { d.errs[i] = d.probe(pctx, e) })
		}
		wg.Wait()
	}()
	return d.done
}

func (d *diagnosis) started() bool { return d.done != nil }

// stop cancels running probes and waits for them.
func (d *diagnosis) stop() {
	if d.done != nil {
		d.cancel()
		<-d.done
	}
}

// allFailed reports whether the finished probes found every endpoint at fault.
func (d *diagnosis) allFailed() bool {
	for _, err := range d.errs {
		if err == nil {
			return false
		}
	}
	return len(d.errs) > 0
}

// explain waits for the probes and returns their errors, joined, or if they
// found nothing, one *ConnError for all endpoints classifying opErr.
func (d *diagnosis) explain(eps []endpoint, opErr error) error {
	<-d.done
	var errs []error
	for _, err := range d.errs {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 || opErr == nil {
		return errors.Join(errs...)
	}
	return d.connError(joinEndpoints(eps), classify(opErr), opErr)
}

func (d *diagnosis) connError(ep string, kind Kind, err error) *ConnError {
	ce := &ConnError{Endpoint: ep, Kind: kind, Err: err}
	switch kind {
	case KindAuth:
		ce.User = d.cfg.Username
	case KindTimeout:
		ce.Timeout = d.budget
	}
	return ce
}

// probe checks one endpoint: DNS, TCP, TLS and HTTP/2, then an etcd request
// of its own. It returns nil when the endpoint looks usable.
func (d *diagnosis) probe(ctx context.Context, e endpoint) error {
	if e.host == "" {
		return nil // not an endpoint we can parse (set by another program)
	}
	if net.ParseIP(e.host) == nil {
		if _, err := d.cfg.Resolver.LookupHost(ctx, e.host); err != nil {
			if ctx.Err() != nil {
				return d.connError(e.raw, KindTimeout, err)
			}
			return d.connError(e.raw, KindDNS, err)
		}
	}
	dialer := net.Dialer{Resolver: d.cfg.Resolver}
	conn, err := dialer.DialContext(ctx, "tcp", e.hostPort())
	if err != nil {
		return d.connError(e.raw, dialKind(err), err)
	}
	err = d.handshake(ctx, conn, e)
	conn.Close()
	if err != nil {
		return err
	}
	return d.request(ctx, e)
}

func dialKind(err error) Kind {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindRefused
	case isTimeout(err):
		return KindTimeout
	default:
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			return KindDNS
		}
		return KindUnavailable
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// h2Hello is the HTTP/2 client connection preface followed by an empty
// SETTINGS frame; an etcd (gRPC) server answers with a SETTINGS frame.
var h2Hello = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)

// handshake does the TLS handshake, if the endpoint uses TLS, and checks
// that the server speaks HTTP/2. Servers that refuse a client certificate
// send their alert after the TLS 1.3 handshake, so it shows when reading.
func (d *diagnosis) handshake(ctx context.Context, conn net.Conn, e endpoint) error {
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	secure := usesTLS(e, d.tlsCfg)
	if secure {
		tc := tls.Client(conn, d.probeTLS(e))
		if err := tc.HandshakeContext(ctx); err != nil {
			if isTimeout(err) {
				return d.connError(e.raw, KindTimeout, err)
			}
			if closedConn(err) {
				return d.closedError(ctx, e, true, err)
			}
			return d.connError(e.raw, KindTLS, err) // what the server stated: x509, an alert, not TLS at all
		}
		conn = tc
	}
	hdr, err := h2Preface(conn)
	var opErr *net.OpError
	switch {
	case err == nil && hdr[3] == 4: // a SETTINGS frame
		return nil
	case err == nil && !secure && (hdr[0] == 0x15 || bytes.HasPrefix(hdr[:], []byte("HTTP/"))):
		return d.connError(e.raw, KindTLS, errors.New("the server expects TLS; use an https:// endpoint"))
	case err == nil:
		return d.connError(e.raw, KindUnavailable, fmt.Errorf("not an etcd server: unexpected answer %q to an HTTP/2 preface", hdr[:]))
	case isTimeout(err):
		return d.connError(e.raw, KindTimeout, err)
	case secure && errors.As(err, &opErr) && opErr.Op == "remote error":
		return d.connError(e.raw, KindTLS, err) // a TLS alert, e.g. "certificate required"
	case !secure && closedConn(err):
		return d.closedError(ctx, e, false, err)
	default:
		return d.connError(e.raw, KindUnavailable, err)
	}
}

// h2Preface sends the HTTP/2 client preface on conn and reads the first 9
// bytes of the answer (a frame header, from an HTTP/2 server).
func h2Preface(conn net.Conn) (hdr [9]byte, err error) {
	if _, err = conn.Write(h2Hello); err == nil {
		_, err = io.ReadFull(conn, hdr[:])
	}
	return hdr, err
}

// closedConn reports whether err says only that the connection ended (EOF,
// a reset, a broken pipe) without a word from the server.
func closedConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

// closedError classifies a connection to e that was closed or reset before
// the server answered the TLS handshake (secure) or the plain HTTP/2
// preface. That alone is transient (KindUnavailable): a server restarting,
// or a proxy or load balancer in front of one that is not up yet, does it.
// It is a configuration error (KindTLS) only when the server, asked again
// in the other protocol, answers it: then the endpoint's scheme is wrong.
// This is the one place where a closed connection is judged.
func (d *diagnosis) closedError(ctx context.Context, e endpoint, secure bool, err error) error {
	switch {
	case secure && d.speaksOther(ctx, e, true):
		return d.connError(e.raw, KindTLS, fmt.Errorf("the server does not speak TLS (it closed the connection: %w, and answers plain HTTP/2); use an http:// endpoint", err))
	case !secure && d.speaksOther(ctx, e, false):
		return d.connError(e.raw, KindTLS, fmt.Errorf("the server expects TLS (it closed the connection on an HTTP/2 preface: %w, and answers TLS); use an https:// endpoint", err))
	case secure:
		return d.connError(e.raw, KindUnavailable, fmt.Errorf("the connection was closed during the TLS handshake: %w", err))
	default:
		return d.connError(e.raw, KindUnavailable, fmt.Errorf("the connection was closed on an HTTP/2 preface: %w", err))
	}
}

// speaksOther reports whether e answers, on a new connection, in the
// protocol the client did not use: a plain HTTP/2 or HTTP/1 answer to the
// HTTP/2 preface when secure; otherwise a TLS handshake (completed, or
// refused with an alert, which only a TLS server sends).
func (d *diagnosis) speaksOther(ctx context.Context, e endpoint, secure bool) bool {
	dialer := net.Dialer{Resolver: d.cfg.Resolver}
	conn, err := dialer.DialContext(ctx, "tcp", e.hostPort())
	if err != nil {
		return false
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if secure {
		hdr, err := h2Preface(conn)
		return err == nil && (hdr[3] == 4 || bytes.HasPrefix(hdr[:], []byte("HTTP/")))
	}
	// Only asks whether the server speaks TLS; nothing is sent over it.
	probe := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12} //nolint:gosec
	err = tls.Client(conn, probe).HandshakeContext(ctx)
	var opErr *net.OpError
	return err == nil || (errors.As(err, &opErr) && opErr.Op == "remote error")
}

// probeTLS is the client's TLS configuration for a probe of e, with the
// server name gRPC would verify and HTTP/2 negotiated.
func (d *diagnosis) probeTLS(e endpoint) *tls.Config {
	var c *tls.Config
	if d.tlsCfg != nil {
		c = d.tlsCfg.Clone()
	} else {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.ServerName == "" {
		c.ServerName = e.host
	}
	c.NextProtos = []string{"h2"}
	return c
}

// request asks etcd, through e alone, what Check asks: it authenticates
// (when a user is configured) and reads the health key with a leader.
func (d *diagnosis) request(ctx context.Context, e endpoint) error {
	timeout := time.Second
	if deadline, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(deadline), time.Millisecond)
	}
	ccfg := clientConfig(d.cfg, []endpoint{e}, d.tlsCfg, timeout)
	ccfg.MaxUnaryRetries = 1 // retries would turn "no leader" into a timeout
	cli, err := newCancelable(ctx, ccfg)
	if err != nil {
		return d.connError(e.raw, classify(err), err)
	}
	defer cli.Close()
	_, err = cli.Get(clientv3.WithRequireLeader(ctx), healthKey, clientv3.WithCountOnly())
	if err == nil || errors.Is(err, rpctypes.ErrPermissionDenied) {
		return nil
	}
	return d.connError(e.raw, classify(err), err)
}

var authErrors = []error{
	rpctypes.ErrAuthFailed, rpctypes.ErrUserEmpty, rpctypes.ErrUserNotFound,
	rpctypes.ErrInvalidAuthToken, rpctypes.ErrAuthOldRevision, rpctypes.ErrInvalidAuthMgmt,
	rpctypes.ErrRoleNotGranted, rpctypes.ErrPermissionNotGranted,
}

// classify the error of an etcd request.
func classify(err error) Kind {
	for _, target := range authErrors {
		if errors.Is(err, target) {
			return KindAuth
		}
	}
	if isTimeout(err) {
		return KindTimeout
	}
	switch s, _ := status.FromError(err); s.Code() {
	case codes.Unauthenticated:
		return KindAuth
	case codes.DeadlineExceeded:
		return KindTimeout
	case codes.Unavailable:
		if msg := s.Message(); strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:") {
			return KindTLS
		}
	}
	return KindUnavailable
}
