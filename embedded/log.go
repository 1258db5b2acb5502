package embedded

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// removedMessage is how etcd words the error it raises (and logs, but does not
// return to the embedding program) when peers report that this member was
// removed from the cluster.
const removedMessage = "permanently removed from the cluster"

// zapLevel maps the slog logger's enabled level onto etcd's: debug when the
// logger logs debug, otherwise the higher of warn and the logger's level.
// ok is false when the logger logs nothing.
func zapLevel(l *slog.Logger) (lvl zapcore.Level, ok bool) {
	ctx := context.Background()
	switch {
	case l.Enabled(ctx, slog.LevelDebug):
		return zapcore.DebugLevel, true
	case l.Enabled(ctx, slog.LevelWarn):
		return zapcore.WarnLevel, true
	case l.Enabled(ctx, slog.LevelError):
		return zapcore.ErrorLevel, true
	}
	return zapcore.InvalidLevel, false
}

// lifeState is what etcd's logger knows of the member's life; Member sets
// it, the zap cores read it. Safe for concurrent use.
type lifeState struct {
	removed  atomic.Bool            // etcd said this member was removed
	closing  atomic.Bool            // stopping began: peer and listener losses are expected
	starting atomic.Bool            // start-up (join, catch-up) not finished yet
	tlsErr   atomic.Pointer[string] // the last TLS failure etcd logged, for start-up errors
}

// noteTLS records msg if it is a TLS failure. One that says why a
// certificate was refused (x509) is kept over a bare TLS alert, which only
// says that the other side refused.
func (st *lifeState) noteTLS(msg string) {
	x509 := strings.Contains(msg, "x509: ")
	if !x509 && (!strings.Contains(msg, "tls: ") || strings.Contains(st.tlsFailure(), "x509: ")) {
		return
	}
	st.tlsErr.Store(&msg)
}

// tlsFailure returns what etcd last logged about a failed TLS handshake,
// or "".
func (st *lifeState) tlsFailure() string {
	if p := st.tlsErr.Load(); p != nil {
		return *p
	}
	return ""
}

// newZapLogger builds etcd's logger: entries go to l's handler (so etcd's
// lines share the sidecar's format and destination) with component=etcd, at
// the level derived from l, or nowhere when l discards. Whatever the level,
// warnings that say this member was removed set st.removed, and those with
// a TLS error set st.tlsErr. Known-harmless
// lines of the member's own start-up and shutdown are demoted (see quiet).
func newZapLogger(l *slog.Logger, st *lifeState) *zap.Logger {
	inner := zapcore.NewNopCore()
	if lvl, ok := zapLevel(l); ok {
		inner = slogCore{h: l.With("component", "etcd").Handler(), lvl: lvl, st: st}
	}
	return zap.New(watchCore{Core: inner, st: st})
}

// slogCore is a zap core that hands etcd's entries to a slog handler.
type slogCore struct {
	h   slog.Handler
	lvl zapcore.Level
	st  *lifeState
}

func (c slogCore) Enabled(l zapcore.Level) bool { return l >= c.lvl }
func (c slogCore) Sync() error                  { return nil }

func (c slogCore) With(fields []zapcore.Field) zapcore.Core {
	return slogCore{h: c.h.WithAttrs(slogAttrs(fields)), lvl: c.lvl, st: c.st}
}

func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

// closedListener is how etcd reports its listeners closing under it.
const closedListener = "use of closed network connection"

// servingFailed is what etcd logs when a client or peer server stops
// serving, which Close makes every server do.
const servingFailed = "setting up serving from embedded etcd failed."

// shutdownNoise reports whether an entry only says that etcd's servers
// stopped, which is what Close asked for.
func shutdownNoise(msg string, attrs []slog.Attr) bool {
	if msg == servingFailed {
		return true
	}
	for _, a := range attrs {
		if strings.Contains(a.Value.String(), closedListener) {
			return true
		}
	}
	return false
}

// closingQuiet are the warnings etcd prints about its own peer connections
// and leadership while this member stops on purpose: every other member
// reports the loss of this one, this one need not.
var closingQuiet = []string{
	"closed TCP streaming connection with remote peer",
	"lost TCP streaming connection with remote peer",
	"peer became inactive (message send to peer failed)",
	"failed to find remote peer in cluster",
	"leadership transfer failed",
	"failed to publish local member to cluster through raft",
	"stopped publish because server is stopping",
}

// raftStopped is the error of a peer's message that arrives while this
// member's raft node stops (raft.ErrStopped), logged with
// raftMessageFailed; the sender delivers it to the cluster's other members.
const (
	raftMessageFailed = "failed to process Raft message"
	raftStopped       = "raft: stopped"
)

// serverStopping is the error of etcd's servers when the etcd server stops
// under them; why it stopped is reported on its own.
const serverStopping = "server is stopping"

// startingQuiet are the lines a new member (a learner catching up) prints
// about its storage version before it has applied its first term, with
// missingTerm in their error; the version monitor tries again later.
var startingQuiet = []string{"Failed to detect schema version", "failed to update storage version"}

const missingTerm = "missing term information"

// settingsQuiet are warnings etcd prints on every start about settings the
// sidecar chooses for its member and does not let the user change (one
// port for a client URL's gRPC and HTTP; simple auth tokens, which matter
// only once auth is enabled): a newcomer's first start shows no warning
// they cannot act on.
var settingsQuiet = []string{
	"Running http and grpc server on single port. This is not recommended for production.",
	"simple token is not cryptographically signed",
}

// quiet reports whether an entry is expected in the member's present
// situation and so belongs at debug level.
func (c slogCore) quiet(msg string, attrs []slog.Attr) bool {
	switch {
	case c.st.closing.Load() && slices.Contains(closingQuiet, msg):
		return true
	case c.st.closing.Load() && msg == raftMessageFailed:
		return hasError(attrs, raftStopped)
	case msg == servingFailed:
		return hasError(attrs, serverStopping)
	case c.st.starting.Load() && slices.Contains(startingQuiet, msg):
		return hasError(attrs, missingTerm)
	case slices.Contains(settingsQuiet, msg):
		return true
	}
	return false
}

// hasError reports whether attrs has an error attribute containing text.
func hasError(attrs []slog.Attr, text string) bool {
	return slices.ContainsFunc(attrs, func(a slog.Attr) bool {
		return a.Key == "error" && strings.Contains(a.Value.String(), text)
	})
}

func (c slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	attrs := slogAttrs(fields)
	if c.st.closing.Load() && shutdownNoise(e.Message, attrs) {
		return nil // normal shutdown, not an error worth a line
	}
	level := slog.LevelError
	switch {
	case e.Level <= zapcore.DebugLevel || c.quiet(e.Message, attrs):
		level = slog.LevelDebug
	case e.Level == zapcore.InfoLevel:
		level = slog.LevelInfo
	case e.Level == zapcore.WarnLevel:
		level = slog.LevelWarn
	}
	ctx := context.Background()
	if !c.h.Enabled(ctx, level) {
		return nil
	}
	r := slog.NewRecord(e.Time, level, e.Message, 0)
	r.AddAttrs(attrs...)
	return c.h.Handle(ctx, r)
}

// slogAttrs turns zap fields into slog attributes, sorted by key.
func slogAttrs(fields []zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	slices.SortFunc(attrs, func(a, b slog.Attr) int { return strings.Compare(a.Key, b.Key) })
	return attrs
}

// watchCore passes entries to its inner core and also shows warnings and
// errors to a stateCore, whatever the inner core's level.
type watchCore struct {
	zapcore.Core
	st *lifeState
}

func (c watchCore) Enabled(l zapcore.Level) bool {
	return l >= zapcore.WarnLevel || c.Core.Enabled(l)
}

func (c watchCore) With(fields []zapcore.Field) zapcore.Core {
	return watchCore{Core: c.Core.With(fields), st: c.st}
}

func (c watchCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	ce = c.Core.Check(e, ce)
	if e.Level >= zapcore.WarnLevel {
		ce = ce.AddCore(e, stateCore{st: c.st})
	}
	return ce
}

// stateCore records in lifeState whether an entry reports this member's
// removal, and the entry's TLS error if it has one.
type stateCore struct {
	st *lifeState
}

func (c stateCore) Enabled(zapcore.Level) bool        { return true }
func (c stateCore) With([]zapcore.Field) zapcore.Core { return c }
func (c stateCore) Sync() error                       { return nil }
func (c stateCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(e, c)
}

func (c stateCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	hit := strings.Contains(e.Message, removedMessage)
	for _, f := range fields {
		if err, ok := f.Interface.(error); ok && f.Type == zapcore.ErrorType && err != nil {
			msg := err.Error()
			hit = hit || strings.Contains(msg, removedMessage)
			c.st.noteTLS(msg)
		}
	}
	if hit {
		c.st.removed.Store(true)
	}
	return nil
}
