package etcdclient

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Kind classifies why an etcd endpoint could not be used.
type Kind int

const (
	// KindRefused: nothing listens on the endpoint's port.
	KindRefused Kind = iota + 1
	// KindTLS: the server stated a TLS failure (unknown authority, wrong
	// host name, client certificate missing or refused: an x509 error or a
	// TLS alert), or TLS was spoken to a plain endpoint or the reverse (the
	// server answers the other protocol). A connection merely closed or
	// reset during the handshake is KindUnavailable.
	KindTLS
	// KindAuth: etcd refused the user name, password or token.
	KindAuth
	// KindTimeout: no answer in time (blackholed address, stopped process).
	KindTimeout
	// KindDNS: a host name or DNS SRV domain did not resolve.
	KindDNS
	// KindUnavailable: etcd answered but cannot serve (no leader, stopped,
	// too many requests), or the network refused in another way, such as
	// a connection closed or reset before the server answered (a server
	// restarting, or a proxy in front of one that is not up yet).
	KindUnavailable
)

var kindNames = map[Kind]string{
	KindRefused:     "refused",
	KindTLS:         "tls",
	KindAuth:        "auth",
	KindTimeout:     "timeout",
	KindDNS:         "dns",
	KindUnavailable: "unavailable",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ConnError says why an etcd endpoint could not be used. New and Check
// return one per failing endpoint, joined with errors.Join and wrapped.
// Endpoint is as configured (e.g. "https://10.0.0.1:2379"); for a failed
// DNS SRV lookup it is "_etcd-client(-ssl)._tcp.<domain>", and when the
// request failed but no single endpoint could be blamed, all endpoints
// joined by commas.
type ConnError struct {
	Endpoint string
	Kind     Kind
	User     string        // KindAuth: the configured user name
	Timeout  time.Duration // KindTimeout: how long the request waited
	Err      error         // the underlying error
}

func (e *ConnError) Error() string {
	var what string
	switch e.Kind {
	case KindRefused:
		what = "connection refused"
	case KindTimeout:
		what = fmt.Sprintf("no response within %s", e.Timeout)
	case KindTLS:
		what = "TLS handshake failed: " + tlsText(e.Err)
	case KindAuth:
		if e.User == "" {
			what = "authentication failed (no user name configured): " + authText(e.Err)
		} else {
			what = fmt.Sprintf("authentication failed for user %q: %s", e.User, authText(e.Err))
		}
	case KindDNS:
		what = fmt.Sprintf("DNS lookup failed: %v", e.Err)
	default:
		what = fmt.Sprintf("unavailable: %v", e.Err)
	}
	return "etcd endpoint " + e.Endpoint + ": " + what
}

func (e *ConnError) Unwrap() error { return e.Err }

// tlsText is the most specific text of a TLS failure: the x509 reason rather
// than crypto/tls's "tls: failed to verify certificate: " wrapper.
func tlsText(err error) string {
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) && cv.Err != nil {
		return cv.Err.Error()
	}
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

// authText drops the "etcdserver: authentication failed, " prefix of etcd's
// message, which ConnError.Error already says.
func authText(err error) string {
	if errors.Is(err, rpctypes.ErrAuthFailed) {
		return "invalid user ID or password"
	}
	if err == nil {
		return "unknown error"
	}
	return strings.TrimPrefix(err.Error(), "etcdserver: ")
}

// Permanent reports whether err is a configuration problem that retrying
// will not fix, so the daemon should stop: an invalid Config (*FieldError)
// or any endpoint failing with KindTLS or KindAuth. The auth store is shared
// by all members and they normally share one CA, so one endpoint saying
// "wrong password" or "unknown authority" speaks for the cluster. Refused,
// timeout, DNS and unavailable are transient (a connection reset during
// the TLS handshake among them); so is cancellation.
func Permanent(err error) bool {
	permanent := false
	walk(err, func(e error) {
		switch e := e.(type) {
		case *FieldError:
			permanent = true
		case *ConnError:
			if e.Kind == KindTLS || e.Kind == KindAuth {
				permanent = true
			}
		}
	})
	return permanent
}

// walk calls fn for err and every error in its tree.
func walk(err error, fn func(error)) {
	if err == nil {
		return
	}
	fn(err)
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		walk(u.Unwrap(), fn)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walk(e, fn)
		}
	}
}

// connErrors returns the ConnErrors in err's tree.
func connErrors(err error) []*ConnError {
	var out []*ConnError
	walk(err, func(e error) {
		if ce, ok := e.(*ConnError); ok {
			out = append(out, ce)
		}
	})
	return out
}

// Reasons returns what err (from New, Check or Validate) says about each
// endpoint (a *ConnError) and each configuration field (a *FieldError) at
// fault, in words for people: one line each, without this package's
// prefixes ("etcdclient: check: "), as the CLI, the log and status should
// show them. It returns nil when err names no endpoint or field.
func Reasons(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		var ce *ConnError
		var fe *FieldError
		switch {
		case err == nil:
		case asExact(err, &ce):
			out = append(out, ce.Error())
		case asExact(err, &fe):
			if fe.Value == "" {
				out = append(out, fe.Field+": "+fe.Reason)
			} else {
				out = append(out, fe.Field+": "+fe.Value+": "+fe.Reason)
			}
		default:
			switch u := err.(type) {
			case interface{ Unwrap() []error }:
				for _, e := range u.Unwrap() {
					walk(e)
				}
			case interface{ Unwrap() error }:
				walk(u.Unwrap())
			}
		}
	}
	walk(err)
	return out
}

// asExact is errors.As without looking down the chain: it reports whether
// err itself is a T, so that Reasons finds every T of a joined tree once.
func asExact[T error](err error, target *T) bool {
	t, ok := err.(T)
	if ok {
		*target = t
	}
	return ok
}

// NoSpaceAdvice is what etcd's NOSPACE alarm means for its clients and
// what an operator does about it; the API's errors and `sidecar cluster`
// say it alike.
const NoSpaceAdvice = "the cluster takes only reads and deletes until it is compacted, defragmented " +
	"and the alarm disarmed (`etcdctl alarm disarm`; see docs/operations.md)"

// RequestReason is the failure of an etcd request in the user's words:
// what etcd said, without the wrapping of the packages it went through;
// for NOSPACE, what it means and what to do (NoSpaceAdvice).
func RequestReason(err error) string {
	var ee rpctypes.EtcdError
	switch {
	case errors.Is(err, rpctypes.ErrNoSpace):
		return "etcd is out of space (NOSPACE alarm): " + NoSpaceAdvice
	case errors.As(err, &ee):
		return ee.Error()
	}
	return err.Error()
}
