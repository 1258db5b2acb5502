package embedded

import (
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestZapLevel(t *testing.T) {
	tests := []struct {
		name   string
		logger *slog.Logger
		want   zapcore.Level
		ok     bool
	}{
		{"discard", slog.New(slog.DiscardHandler), zapcore.InvalidLevel, false},
		{"debug", slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})), zapcore.DebugLevel, true},
		{"info", slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})), zapcore.WarnLevel, true},
		{"warn", slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})), zapcore.WarnLevel, true},
		{"error", slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError})), zapcore.ErrorLevel, true},
		{"above error", slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError + 4})), zapcore.InvalidLevel, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := zapLevel(tt.logger)
			if got != tt.want || ok != tt.ok {
				t.Errorf("zapLevel() = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestZapLoggerDetectsRemoval(t *testing.T) {
	var removed atomic.Bool
	zl := newZapLogger(slog.New(slog.DiscardHandler), &removed)
	removedErr := errors.New("the member has been permanently removed from the cluster")

	zl.Info("server error", zap.Error(removedErr))
	zl.Warn("server error", zap.Error(errors.New("something else")))
	if removed.Load() {
		t.Fatalf("removal detected from an info entry or another error")
	}
	zl.With(zap.String("local-member-id", "1")).Warn("server error", zap.Error(removedErr))
	if !removed.Load() {
		t.Fatalf("removal not detected from etcd's warning")
	}
}
