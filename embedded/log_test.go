package embedded

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
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
	var st lifeState
	removed := &st.removed
	zl := newZapLogger(slog.New(slog.DiscardHandler), &st)
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

// etcd's entries reach the sidecar's slog handler in its format, with
// component=etcd and their fields; listener noise is dropped only while
// closing.
func TestZapLoggerForwardsToSlog(t *testing.T) {
	var buf bytes.Buffer
	var st lifeState
	closing := &st.closing
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	zl := newZapLogger(l, &st)
	zl.Info("below etcd's level")
	zl.With(zap.String("local-member-id", "8e9e")).Warn("slow fdatasync", zap.Duration("took", 1500e6))
	closed := errors.New("accept tcp 127.0.0.1:2379: use of closed network connection")
	zl.Error("serving failed", zap.Error(closed))
	closing.Store(true)
	zl.Error("serving failed at close", zap.Error(closed))
	zl.Error("setting up serving from embedded etcd failed.", zap.Error(errors.New("mux: server closed")))
	zl.Error("other error at close", zap.Error(errors.New("disk full")))
	out := buf.String()
	for _, want := range []string{
		`level=WARN msg="slow fdatasync" component=etcd local-member-id=8e9e took=1.5s`,
		`level=ERROR msg="serving failed" component=etcd error="accept tcp`,
		`level=ERROR msg="other error at close" component=etcd error="disk full"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"below etcd's level", "serving failed at close", "setting up serving"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("log has %q:\n%s", unwanted, out)
		}
	}
}

// Lines etcd prints in a known situation of the member's own life are
// debug; the same lines outside it, and other lines in it, keep their level.
func TestZapLoggerQuietsKnownSituations(t *testing.T) {
	var buf bytes.Buffer
	var st lifeState
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	zl := newZapLogger(l, &st)
	noTerm := errors.New("cannot detect storage schema version: missing term information")
	lost := "lost TCP streaming connection with remote peer"

	zl.Error("failed to update storage version", zap.Error(noTerm))
	zl.Warn(lost, zap.Error(errors.New("EOF")))
	zl.Warn("failed to process Raft message", zap.Error(errors.New("raft: stopped")))
	st.starting.Store(true)
	zl.Error("failed to update storage version", zap.String("cluster-version", "3.7.0"), zap.Error(noTerm))
	zl.Warn("Failed to detect schema version", zap.Error(errors.New("missing term information")))
	zl.Error("failed to update storage version", zap.Error(errors.New("disk full")))
	zl.Error("setting up serving from embedded etcd failed.", zap.Error(errors.New("server is stopping")))
	st.starting.Store(false)
	st.closing.Store(true)
	zl.Warn(lost, zap.Error(errors.New("context canceled")))
	zl.Warn("closed TCP streaming connection with remote peer")
	zl.Warn("leadership transfer failed", zap.Error(errors.New("etcdserver: unhealthy cluster")))
	zl.Warn("slow fdatasync")
	zl.Warn("failed to process Raft message", zap.Error(errors.New("raft: stopped")))
	zl.Warn("failed to process Raft message", zap.Error(errors.New("raft: proposal dropped")))
	zl.Warn("simple token is not cryptographically signed")
	zl.Warn("Running http and grpc server on single port. This is not recommended for production.")

	got := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`level=ERROR msg="failed to update storage version"`,
		`level=WARN msg="lost TCP streaming connection with remote peer"`,
		`level=WARN msg="failed to process Raft message"`,
		`level=DEBUG msg="failed to update storage version"`,
		`level=DEBUG msg="Failed to detect schema version"`,
		`level=ERROR msg="failed to update storage version" component=etcd error="disk full"`,
		`level=DEBUG msg="setting up serving from embedded etcd failed."`,
		`level=DEBUG msg="lost TCP streaming connection with remote peer"`,
		`level=DEBUG msg="closed TCP streaming connection with remote peer"`,
		`level=DEBUG msg="leadership transfer failed"`,
		`level=WARN msg="slow fdatasync"`,
		`level=DEBUG msg="failed to process Raft message" component=etcd error="raft: stopped"`,
		`level=WARN msg="failed to process Raft message" component=etcd error="raft: proposal dropped"`,
		`level=DEBUG msg="simple token is not cryptographically signed"`,
		`level=DEBUG msg="Running http and grpc server on single port.`,
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(got), len(want), buf.String())
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("line %d = %s\nwant it to contain %s", i+1, got[i], want[i])
		}
	}
}
