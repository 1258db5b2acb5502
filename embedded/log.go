package embedded

import (
	"context"
	"log/slog"
	"os"
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

// newZapLogger builds etcd's logger: JSON on stderr with component=etcd at the
// level derived from l, or nothing at all when l discards. Whatever the level,
// warnings that say this member was removed set removed.
func newZapLogger(l *slog.Logger, removed *atomic.Bool) *zap.Logger {
	inner := zapcore.NewNopCore()
	if lvl, ok := zapLevel(l); ok {
		enc := zap.NewProductionEncoderConfig()
		enc.EncodeTime = zapcore.ISO8601TimeEncoder
		inner = zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(os.Stderr), lvl)
		inner = inner.With([]zapcore.Field{zap.String("component", "etcd")})
	}
	return zap.New(watchCore{Core: inner, removed: removed})
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
