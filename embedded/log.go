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

// newZapLogger builds etcd's logger: entries go to l's handler (so etcd's
// lines share the sidecar's format and destination) with component=etcd, at
// the level derived from l, or nowhere when l discards. Whatever the level,
// warnings that say this member was removed set removed. Once closing is
// set, etcd's complaints about its own listeners closing are dropped.
func newZapLogger(l *slog.Logger, removed, closing *atomic.Bool) *zap.Logger {
	inner := zapcore.NewNopCore()
	if lvl, ok := zapLevel(l); ok {
		inner = slogCore{h: l.With("component", "etcd").Handler(), lvl: lvl, closing: closing}
	}
	return zap.New(watchCore{Core: inner, removed: removed})
}

// slogCore is a zap core that hands etcd's entries to a slog handler.
type slogCore struct {
	h       slog.Handler
	lvl     zapcore.Level
	closing *atomic.Bool
}

func (c slogCore) Enabled(l zapcore.Level) bool { return l >= c.lvl }
func (c slogCore) Sync() error                  { return nil }

func (c slogCore) With(fields []zapcore.Field) zapcore.Core {
	return slogCore{h: c.h.WithAttrs(slogAttrs(fields)), lvl: c.lvl, closing: c.closing}
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

func (c slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	attrs := slogAttrs(fields)
	if c.closing.Load() && shutdownNoise(e.Message, attrs) {
		return nil // normal shutdown, not an error worth a line
	}
	level := slog.LevelError
	switch {
	case e.Level <= zapcore.DebugLevel:
		level = slog.LevelDebug
	case e.Level == zapcore.InfoLevel:
		level = slog.LevelInfo
	case e.Level == zapcore.WarnLevel:
		level = slog.LevelWarn
	}
	r := slog.NewRecord(e.Time, level, e.Message, 0)
	r.AddAttrs(attrs...)
	return c.h.Handle(context.Background(), r)
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
// errors to a removalCore, whatever the inner core's level.
type watchCore struct {
	zapcore.Core
	removed *atomic.Bool
}

func (c watchCore) Enabled(l zapcore.Level) bool {
	return l >= zapcore.WarnLevel || c.Core.Enabled(l)
}

func (c watchCore) With(fields []zapcore.Field) zapcore.Core {
	return watchCore{Core: c.Core.With(fields), removed: c.removed}
}

func (c watchCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	ce = c.Core.Check(e, ce)
	if e.Level >= zapcore.WarnLevel {
		ce = ce.AddCore(e, removalCore{removed: c.removed})
	}
	return ce
}

// removalCore records whether an entry reports this member's removal.
type removalCore struct {
	removed *atomic.Bool
}

func (c removalCore) Enabled(zapcore.Level) bool        { return true }
func (c removalCore) With([]zapcore.Field) zapcore.Core { return c }
func (c removalCore) Sync() error                       { return nil }
func (c removalCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(e, c)
}

func (c removalCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	hit := strings.Contains(e.Message, removedMessage)
	for _, f := range fields {
		if err, ok := f.Interface.(error); ok && f.Type == zapcore.ErrorType && err != nil {
			hit = hit || strings.Contains(err.Error(), removedMessage)
		}
	}
	if hit {
		c.removed.Store(true)
	}
	return nil
}
