package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/sidecar-dev/sidecar/api"
)

// ErrLost is matched (with errors.Is) by [HoldStream.Err] when the daemon
// reported the hold lost; the error is a *LostError saying why.
var ErrLost = errors.New("sidecar: hold lost")

// LostError is the lost event of a hold's stream: the lock or leadership
// is no longer held, for Reason (api.ReasonShutdown when the daemon
// stopped).
type LostError struct {
	Kind   string // api.KindLock or api.KindElection
	Name   string
	Fence  int64
	Reason string
}

func (e *LostError) Error() string {
	return fmt.Sprintf("sidecar: %s %q (fence %d) lost: %s", e.Kind, e.Name, e.Fence, e.Reason)
}

func (e *LostError) Is(target error) bool { return target == ErrLost }

// Lock waits until lock name is held through the daemon, then returns the
// hold; it is held until the HoldStream is closed, ctx ends or the hold is
// lost. wait bounds the wait: nil waits as long as ctx lasts, 0 tries once.
// Not acquired (held by another, or not within wait): an *APIError with
// StatusCode 409.
func (c *Client) Lock(ctx context.Context, name string, wait *time.Duration) (*HoldStream, error) {
	return c.hold(ctx, api.KindLock, "/v1/locks/"+url.PathEscape(name)+waitQuery(wait), nil)
}

// Campaign waits until this caller leads election name with value, then
// returns the leadership; it lasts until the HoldStream is closed, ctx
// ends or it is lost. wait is as for [Client.Lock]; another leader at the
// end of it is an *APIError with StatusCode 409.
func (c *Client) Campaign(ctx context.Context, name, value string, wait *time.Duration) (*HoldStream, error) {
	body, _ := json.Marshal(api.Campaign{Value: value})
	return c.hold(ctx, api.KindElection, "/v1/elections/"+url.PathEscape(name)+waitQuery(wait), body)
}

func waitQuery(wait *time.Duration) string {
	if wait == nil {
		return ""
	}
	return "?wait=" + url.QueryEscape(wait.String())
}

// hold POSTs path and reads the first event of the hold's stream.
func (c *Client) hold(ctx context.Context, kind, path string, body []byte) (*HoldStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	resp, err := c.Do(ctx, http.MethodPost, path, rd)
	if err != nil {
		cancel()
		return nil, err
	}
	st := &Stream[api.HoldEvent]{ctx: ctx, c: c, body: resp.Body, dec: json.NewDecoder(resp.Body)}
	ev, err := st.Next()
	if err == nil && ev.Event != api.EventAcquired && ev.Event != api.EventElected {
		err = fmt.Errorf("sidecar: %s %q: unexpected first event %q", kind, ev.Name, ev.Event)
	}
	if err != nil {
		st.Close()
		cancel()
		return nil, err
	}
	h := &HoldStream{kind: kind, ev: ev, st: st, cancel: cancel, done: make(chan struct{})}
	go h.follow()
	return h, nil
}

// HoldStream is a lock or leadership held through the daemon. It belongs
// to its connection: Close (or the end of the context it was acquired
// with) closes the connection, and the daemon releases the lock or
// resigns at once. It is safe for concurrent use.
type HoldStream struct {
	kind   string
	ev     api.HoldEvent
	st     *Stream[api.HoldEvent]
	cancel context.CancelFunc
	done   chan struct{}
	closed atomic.Bool
	err    error // set before done closes
}

// Event returns the acquired (or elected) event: name, key and fence.
func (h *HoldStream) Event() api.HoldEvent { return h.ev }

// Done is closed when the hold has ended; Err then says how.
func (h *HoldStream) Done() <-chan struct{} { return h.done }

// Err is nil while the hold lasts. Once Done is closed it is one of:
//   - a *LostError (matching ErrLost): the daemon reported the hold lost;
//   - an error matching ErrDaemonGone: the daemon went away, which counts
//     as losing the hold;
//   - the context's error when the context the hold was acquired with
//     ended, or one matching net.ErrClosed after Close: the hold was given
//     up, which is not a failure.
func (h *HoldStream) Err() error {
	select {
	case <-h.done:
		return h.err
	default:
		return nil
	}
}

// Close gives the hold up: it closes the connection, and the daemon
// releases the lock or resigns. It waits until the stream has ended and is
// safe to call more than once.
func (h *HoldStream) Close() error {
	h.closed.Store(true)
	h.st.Close()
	h.cancel()
	<-h.done
	return nil
}

// follow reads the stream after the first event until a lost event or
// its end. Each valid event (and the first event) says until when the
// hold is surely valid; when that passes with no newer word — the daemon
// may be paused — the hold counts as lost here, without waiting for it.
func (h *HoldStream) follow() {
	defer close(h.done)
	defer h.cancel()
	defer h.st.Close()
	type read struct {
		ev  api.HoldEvent
		err error
	}
	reads := make(chan read, 1)
	go func() {
		for {
			ev, err := h.st.Next()
			select {
			case reads <- read{ev, err}:
			case <-h.done:
				return
			}
			if err != nil || ev.Event == api.EventLost {
				return
			}
		}
	}()
	expiry := newExpiry(h.ev.ValidForMS)
	defer expiry.Stop()
	for {
		select {
		case r := <-reads:
			if h.ended(r.ev, r.err) {
				return
			}
			if r.ev.Event == api.EventValid {
				expiry.Reset(time.Duration(r.ev.ValidForMS)*time.Millisecond + expiryGrace)
			}
		case <-expiry.C:
			h.err = &LostError{Kind: h.kind, Name: h.ev.Name, Fence: h.ev.Fence,
				Reason: "no word from the sidecar before the hold's deadline (is it paused?)"}
			return
		}
	}
}

// expiryGrace is how long after the validity it was told a hold waits
// for the daemon's own word before it counts itself lost: a live daemon
// says "lost", with the reason, at that same deadline. The grace comes out
// of the hold's safety margin (at least 300 ms), which still leaves the
// holder time to stop before etcd could grant the hold elsewhere.
const expiryGrace = 100 * time.Millisecond

// newExpiry returns a timer that fires when a validity of ms (and the
// grace) runs out; it never fires for 0 (a daemon that does not say).
func newExpiry(ms int64) *time.Timer {
	t := time.NewTimer(time.Duration(ms)*time.Millisecond + expiryGrace)
	if ms <= 0 {
		t.Stop()
	}
	return t
}

// ended records how the stream ended, if ev/err end it: a read error, or
// the lost event. Events it does not know are skipped.
func (h *HoldStream) ended(ev api.HoldEvent, err error) bool {
	switch {
	case err != nil && h.closed.Load():
		h.err = fmt.Errorf("sidecar: %s %q: %w", h.kind, h.ev.Name, net.ErrClosed)
	case err != nil:
		h.err = err
	case ev.Event == api.EventLost:
		h.err = &LostError{Kind: h.kind, Name: h.ev.Name, Fence: h.ev.Fence, Reason: ev.Reason}
	default:
		return false
	}
	return true
}

// Leader returns the leader of election name: its value, key and fence;
// Leader.Leader is nil when the election has no leader (not an error).
func (c *Client) Leader(ctx context.Context, name string) (api.Leader, error) {
	var l api.Leader
	code, err := c.getJSON(ctx, "/v1/elections/"+url.PathEscape(name), &l, http.StatusNotFound)
	if err == nil && code == http.StatusNotFound {
		return api.Leader{Name: name}, nil
	}
	return l, err
}

// WatchLeader streams the leader of election name now and after every
// change, with Leader nil while there is none, until ctx ends or the
// stream is closed. See [Stream.Next] for how a stream ends.
func (c *Client) WatchLeader(ctx context.Context, name string) (*Stream[api.Leader], error) {
	return watch[api.Leader](ctx, c, "/v1/elections/"+url.PathEscape(name)+"?watch=true")
}
