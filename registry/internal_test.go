package registry

import (
	"errors"
	"testing"
	"time"
)

func TestAckDeadline(t *testing.T) {
	const ttl = 3 * time.Second
	t0 := time.Now()
	s := &session{sent: t0, rtt: 10 * time.Millisecond}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	tests := []struct {
		name      string
		prev, now time.Time
		want      time.Time
	}{
		{"first answer: sent after the grant", time.Time{}, at(50 * time.Millisecond), at(ttl)},
		{"next answer: one round trip before arrival", at(0), at(1500 * time.Millisecond), at(1490*time.Millisecond + ttl)},
		{"slow round trip: no sooner than ttl/3 after the previous answer", at(0), at(960 * time.Millisecond), at(950*time.Millisecond + ttl)},
		{"repeated keep-alive's answer: no move", at(time.Second), at(1500 * time.Millisecond), time.Time{}},
		{"answer read late: still moves", at(time.Second), at(1990 * time.Millisecond), at(1980*time.Millisecond + ttl)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.ackDeadline(tt.prev, tt.now, ttl); !got.Equal(tt.want) {
				t.Errorf("ackDeadline = t0%+v, want t0%+v", got.Sub(t0), tt.want.Sub(t0))
			}
		})
	}
}

func TestCheckTracker(t *testing.T) {
	fail := errors.New("fail")
	ct := checkTracker{state: CheckPending, threshold: 2}
	steps := []struct {
		err     error
		state   string
		changed bool
	}{
		{fail, CheckPending, false},
		{fail, CheckCritical, true}, // 2 failures before any pass
		{nil, CheckPassing, true},
		{fail, CheckPassing, false}, // 1 failure: still passing
		{nil, CheckPassing, false},  // the count starts again
		{fail, CheckPassing, false},
		{fail, CheckCritical, true},
		{fail, CheckCritical, false},
		{nil, CheckPassing, true},
	}
	for i, st := range steps {
		if changed := ct.record(st.err); changed != st.changed || ct.state != st.state {
			t.Fatalf("step %d (%v): state %s changed %v, want %s %v", i, st.err, ct.state, changed, st.state, st.changed)
		}
	}
}
