package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/election"
	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/lease"
	"github.com/sidecar-dev/sidecar/lock"
)

// leaderTimeout bounds the read of an election's leader.
const leaderTimeout = 5 * time.Second

// errWaitOver ends the wait of a request whose ?wait= has passed.
var errWaitOver = errors.New("wait over")

// coordRoutes are the routes of locks and elections.
func (d *Daemon) coordRoutes() []route {
	return []route{
		{method: "POST", pattern: "/v1/locks/{name}", handle: d.handleLock, noun: "lock", hold: true},
		{method: "POST", pattern: "/v1/elections/{name}", handle: d.handleCampaign, noun: "election", hold: true},
		{method: "GET", pattern: "/v1/elections/{name}", handle: d.handleLeader, noun: "election", stream: true},
	}
}

// holdRequest is a request for a lock or a leadership, parsed.
type holdRequest struct {
	kind, name, value string
	wait              *time.Duration // nil: as long as the request lasts; 0: try once
}

// acquireFunc acquires a lock or wins an election at prefix; try: fail at
// once (lock.ErrHeld, election.ErrNotElected) rather than wait.
type acquireFunc func(ctx context.Context, cli *clientv3.Client, prefix string, try bool) (holding, error)

func (d *Daemon) handleLock(w http.ResponseWriter, r *request) {
	wait, ok := parseWait(w, r)
	if !ok {
		return
	}
	// Read the body (none is expected) to its end: only then does net/http
	// watch the connection and end the request's context when it closes.
	io.Copy(io.Discard, r.Body)
	c := d.coord
	d.serveHold(w, r, holdRequest{kind: api.KindLock, name: r.name, wait: wait},
		func(ctx context.Context, cli *clientv3.Client, prefix string, try bool) (holding, error) {
			h, err := lock.Acquire(ctx, cli, lock.Config{Prefix: prefix, TTL: c.ttl, Logger: c.pkgLog}, try)
			if err != nil {
				return holding{}, err
			}
			return holding{held: h, release: h.Release}, nil
		})
}

func (d *Daemon) handleCampaign(w http.ResponseWriter, r *request) {
	wait, ok := parseWait(w, r)
	if !ok {
		return
	}
	var body struct {
		Value *string `json:"value"`
	}
	if !decodeJSON(w, r.Request, &body) {
		return
	}
	if body.Value == nil {
		writeError(w, http.StatusBadRequest, `want {"value":"..."}: the value observers see while this caller leads`)
		return
	}
	c, value := d.coord, *body.Value
	d.serveHold(w, r, holdRequest{kind: api.KindElection, name: r.name, value: value, wait: wait},
		func(ctx context.Context, cli *clientv3.Client, prefix string, try bool) (holding, error) {
			l, err := election.Campaign(ctx, cli, election.Config{Prefix: prefix, TTL: c.ttl, Logger: c.pkgLog}, value, try)
			if err != nil {
				return holding{}, err
			}
			return holding{held: l, release: l.Resign}, nil
		})
}

// parseWait reads ?wait=DUR: nil when absent. On a bad value it answers 400.
func parseWait(w http.ResponseWriter, r *request) (*time.Duration, bool) {
	q := r.URL.Query()
	if !q.Has("wait") {
		return nil, true
	}
	v := q.Get("wait")
	wait, err := time.ParseDuration(v)
	if err != nil || wait < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad wait=%q: want a duration such as 10s, or 0 to try once", v))
		return nil, false
	}
	return &wait, true
}

// admit admits a request to the coordinator, or answers 503 while it does
// not run.
func (d *Daemon) admit(w http.ResponseWriter) (*clientv3.Client, context.Context, func(), bool) {
	cli, base, end, err := d.coord.begin()
	switch {
	case errors.Is(err, errShuttingDown):
		writeError(w, http.StatusServiceUnavailable, errShuttingDown.Error())
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "etcd unavailable: "+d.notReadyReason())
	}
	return cli, base, end, err == nil
}

// awaitAdmission lets a hold request that may wait (no wait=, or one
// above 0), and comes while the daemon still connects to etcd, wait for
// lock and election requests to be admitted, within its wait, as it would
// wait for the hold itself: a job started with the daemon is not refused
// for being a moment early. It returns what is left of the wait (a wait
// used up becomes 0: try once). A try (wait=0) is not held back.
func (d *Daemon) awaitAdmission(ctx context.Context, wait *time.Duration) *time.Duration {
	if wait != nil && *wait == 0 {
		return wait
	}
	select {
	case <-d.coord.Admitting():
		return wait // admitted already: the usual case, no timer
	default:
	}
	start := time.Now()
	var timeout <-chan time.Time
	if wait != nil {
		t := time.NewTimer(*wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-d.coord.Admitting():
	case <-ctx.Done():
	case <-timeout:
	}
	if wait == nil {
		return nil
	}
	left := max(*wait-time.Since(start), 0)
	return &left
}

// serveHold waits for the lock or leadership, then streams its events for
// as long as the request lasts; see coordinator.stream.
func (d *Daemon) serveHold(w http.ResponseWriter, r *request, hr holdRequest, acquire acquireFunc) {
	hr.wait = d.awaitAdmission(r.Context(), hr.wait)
	cli, base, end, ok := d.admit(w)
	if !ok {
		return
	}
	defer end()
	c := d.coord
	peer, hasPeer := peerFrom(r.Context())
	e := &holdEntry{kind: hr.kind, name: hr.name, value: hr.value, peer: peer, hasPeer: hasPeer, since: time.Now()}
	c.enter(e)
	ctx, cancel := waitContext(r.Context(), base, hr.wait)
	h, err := c.acquireWaiting(ctx, cli, hr, acquire)
	cause := context.Cause(ctx)
	cancel()
	if err != nil {
		c.remove(e)
		d.writeAcquireError(w, r, hr, cause, err)
		return
	}
	c.won(e, h)
	if base.Err() != nil { // the daemon began to stop as this caller won
		c.giveUp(e, h, "shutdown")
		c.remove(e)
		writeError(w, http.StatusServiceUnavailable, errShuttingDown.Error())
		return
	}
	c.log.Info("acquired", "kind", e.kind, "name", e.name, "key", e.key, "fence", e.fence, "pid", peer.PID, "uid", peer.UID)
	c.stream(w, r.Context(), base, e, h)
}

// rewaitPause is the pause before a wait whose session was lost goes on
// with a new session.
const rewaitPause = 100 * time.Millisecond

// acquireWaiting runs acquire for hr and, when a wait (not a try) failed
// only because its session was lost while it waited (keep-alives
// unanswered for a TTL, as during an etcd leader election), runs it again
// on a new session for as long as ctx lasts: nothing was held, no fence
// handed out, and the caller asked to wait. A new session that cannot be
// granted (etcd down) ends the wait with that error.
func (c *coordinator) acquireWaiting(ctx context.Context, cli *clientv3.Client, hr holdRequest, acquire acquireFunc) (holding, error) {
	try := hr.wait != nil && *hr.wait == 0
	for {
		h, err := acquire(ctx, cli, c.prefix(hr.kind, hr.name), try)
		if err == nil || try || ctx.Err() != nil ||
			!errors.Is(err, lease.ErrUnacknowledged) && !errors.Is(err, lease.ErrExpired) {
			return h, err
		}
		c.log.Warn("session lost while waiting; waiting again on a new session", "kind", hr.kind, "name", hr.name, "err", err)
		select {
		case <-ctx.Done():
			return h, err
		case <-time.After(rewaitPause):
		}
	}
}

// waitContext is the context of a wait for a hold: it ends with the
// request, when the daemon stops (cause errShuttingDown) and when wait
// has passed (cause errWaitOver).
func waitContext(req, base context.Context, wait *time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(req)
	stop := context.AfterFunc(base, func() { cancel(errShuttingDown) })
	wctx, wcancel := context.Context(ctx), context.CancelFunc(func() {})
	if wait != nil && *wait > 0 {
		wctx, wcancel = context.WithTimeoutCause(ctx, *wait, errWaitOver)
	}
	return wctx, func() { wcancel(); stop(); cancel(nil) }
}

// writeAcquireError answers a request whose lock or leadership was not
// won: 409 when another holds it, 503 when etcd fails (or is silent at the
// end of the wait) or the daemon stops, nothing when the caller has gone.
func (d *Daemon) writeAcquireError(w http.ResponseWriter, r *request, hr holdRequest, cause, err error) {
	what, won := fmt.Sprintf("lock %q is held by another holder", hr.name), "acquired"
	if hr.kind == api.KindElection {
		what, won = fmt.Sprintf("election %q has another leader", hr.name), "won"
	}
	switch {
	case errors.Is(err, lock.ErrHeld), errors.Is(err, election.ErrNotElected):
		writeError(w, http.StatusConflict, what)
	case errors.Is(cause, errWaitOver) && !d.etcd.up():
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("etcd unavailable: %s %q not %s within wait=%s", hr.kind, hr.name, won, *hr.wait))
	case errors.Is(cause, errWaitOver):
		writeError(w, http.StatusConflict, fmt.Sprintf("%s: not %s within wait=%s", what, won, *hr.wait))
	case errors.Is(cause, errShuttingDown):
		writeError(w, http.StatusServiceUnavailable, errShuttingDown.Error())
	case r.Context().Err() != nil:
		// the caller went away; nobody reads an answer
	default:
		writeError(w, http.StatusServiceUnavailable, "etcd unavailable: "+etcdclient.RequestReason(err))
	}
}

// stream answers 200 with the acquired (or elected) event, then holds
// until one of: the hold is lost (the holder gets the lost event at once,
// the stream ends, the hold is given up behind it); the request ends (the
// connection closed: the hold is given up at once); the daemon stops (the
// holder gets the lost event, then the hold is given up). The entry leaves
// the table when the hold is no longer held.
func (c *coordinator) stream(w http.ResponseWriter, req, base context.Context, e *holdEntry, h holding) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w) // one value per line
	enc.SetEscapeHTML(false)
	ev := api.HoldEvent{Event: api.EventAcquired, Name: e.name, Key: e.key, Fence: e.fence, ValidForMS: validFor(h)}
	if e.kind == api.KindElection {
		ev.Event = api.EventElected
	}
	if enc.Encode(ev) != nil || rc.Flush() != nil {
		c.giveUp(e, h, "caller gone")
		c.remove(e)
		return
	}
	ev.ValidForMS = 0
	ev.Event = api.EventLost
	switch renewals(req, base, h, rc, enc, ev) {
	case endLost:
		c.remove(e)
		label, reason := lossReason(h.Err())
		c.metrics.lost.WithLabelValues(e.kind, label).Inc()
		c.log.Warn("lost", "kind", e.kind, "name", e.name, "key", e.key, "fence", e.fence, "reason", reason)
		ev.Reason = reason
		tell(rc, enc, ev)
		c.reqs.Add(1) // within this request's count: Run waits for it too
		go func() { defer c.reqs.Done(); c.giveUp(e, h, "lost") }()
	case endCaller:
		c.giveUp(e, h, "caller gone")
		c.remove(e)
	case endShutdown:
		c.metrics.lost.WithLabelValues(e.kind, lossShutdown).Inc()
		ev.Reason = api.ReasonShutdown
		tell(rc, enc, ev)
		c.giveUp(e, h, "shutdown")
		c.remove(e)
	}
}

// tell writes the last event of a hold's stream; a caller that reads
// nothing cannot hold the daemon up for more than a second.
// How a hold's stream ends.
const (
	endLost = iota
	endCaller
	endShutdown
)

// renewEvery is how often a hold's stream checks whether the hold's
// deadline moved, to tell the holder (EventValid).
const renewEvery = 250 * time.Millisecond

// renewals tells the holder each time the hold's deadline moves on, so
// that a holder who hears nothing by the last deadline told counts the
// hold as lost by itself (this sidecar may be paused), until the hold is
// lost, the caller goes, or the daemon stops; it returns which.
func renewals(req, base context.Context, h held, rc *http.ResponseController, enc *json.Encoder, ev api.HoldEvent) int {
	t := time.NewTicker(renewEvery)
	defer t.Stop()
	told := h.Deadline()
	valid := api.HoldEvent{Event: api.EventValid, Name: ev.Name, Key: ev.Key, Fence: ev.Fence}
	for {
		select {
		case <-h.Lost():
			return endLost
		case <-req.Done():
			return endCaller
		case <-base.Done():
			return endShutdown
		case <-t.C:
			if d := h.Deadline(); d.After(told) {
				told, valid.ValidForMS = d, validFor(h)
				tell(rc, enc, valid)
			}
		}
	}
}

// validFor is how long the hold is surely valid from now, in ms.
func validFor(h held) int64 { return max(time.Until(h.Deadline()).Milliseconds(), 0) }

func tell(rc *http.ResponseController, enc *json.Encoder, ev api.HoldEvent) {
	rc.SetWriteDeadline(time.Now().Add(time.Second))
	if enc.Encode(ev) == nil {
		rc.Flush()
	}
}

// Reasons of a loss, as the label of sidecar_coordination_lost_total.
const (
	lossSession  = "session"
	lossDeleted  = "deleted"
	lossShutdown = "shutdown"
)

var lossReasons = []string{lossSession, lossDeleted, lossShutdown}

// lossReason translates why a hold was lost (its Err) into a metric label
// and words for the holder.
func lossReason(err error) (label, reason string) {
	switch {
	case errors.Is(err, lease.ErrUnacknowledged):
		return lossSession, "etcd acknowledged no keep-alive in time: the session's deadline passed"
	case errors.Is(err, lease.ErrExpired):
		return lossSession, "the session expired: etcd no longer has its lease"
	case errors.Is(err, lease.ErrKeyDeleted):
		return lossDeleted, "the holder's key was deleted by someone else"
	case err == nil:
		return lossSession, "the session was lost"
	}
	return lossSession, "the session was lost: " + err.Error()
}

func (d *Daemon) handleLeader(w http.ResponseWriter, r *request) {
	cli, base, end, ok := d.admit(w)
	if !ok {
		return
	}
	defer end()
	prefix, name := d.coord.prefix(api.KindElection, r.name), r.name
	if r.watch {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(base, cancel)() // observers end when the daemon stops
		ch := leaderStream(ctx, election.Observe(ctx, cli, prefix), d.etcd.live.Load(), name)
		streamNDJSON(w, r.Request, ch, func(l api.Leader) api.Leader { return l })
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), leaderTimeout)
	defer cancel()
	l, err := election.Current(ctx, cli, prefix)
	switch {
	case err != nil && r.Context().Err() != nil:
		// the caller went away
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "etcd unavailable: "+err.Error())
	case l == nil:
		writeError(w, http.StatusNotFound, fmt.Sprintf("election %q has no leader", name))
	default:
		writeJSON(w, http.StatusOK, toAPILeader(name, l))
	}
}

// toAPILeader is the wire form of an election's leader; nil: no leader.
func toAPILeader(name string, l *election.Leader) api.Leader {
	if l == nil {
		return api.Leader{Name: name}
	}
	v := l.Value
	return api.Leader{Name: name, Leader: &v, Key: l.Key, Fence: l.Fence}
}
