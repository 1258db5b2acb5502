package configsync_test

import (
	"testing"

	"github.com/sidecar-dev/sidecar/configsync"
)

func TestSignalByName(t *testing.T) {
	for _, n := range []string{"HUP", "SIGHUP", "hup", "sighup"} {
		if s, ok := configsync.SignalByName(n); !ok || s.String() != "hangup" {
			t.Errorf("SignalByName(%q) = %v %v", n, s, ok)
		}
	}
	if _, ok := configsync.SignalByName("NOPE"); ok {
		t.Error("NOPE accepted")
	}
}
