package registry

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
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

// TestSetCurIgnoresOlderStates: what the key holds is ordered by etcd
// revision, whatever order the watch and the answers of writes arrive in.
// A delete the watch delivers after the answer of our later put neither
// drops the record nor counts a re-registration.
func TestSetCurIgnoresOlderStates(t *testing.T) {
	const id = clientv3.LeaseID(7)
	r := &Registrar{log: slog.New(slog.DiscardHandler), key: "/k", leaseID: id, check: checkTracker{state: CheckNone}}
	s := &session{r: r, id: id}
	ours := &keyState{lease: id, value: []byte("v")}
	foreign := &keyState{lease: 9, value: []byte(`{"Op":0,"Addr":"10.0.0.9:8080","Metadata":{"id":"x","node":"n"}}`)}

	s.setCur(ours, 10)    // first registration
	s.setCur(foreign, 11) // another writer's record: lost, recovering
	s.setCur(ours, 13)    // our put's answer after the foreign lease went at 12
	s.setCur(nil, 12)     // the watch's delete of the foreign record, read late
	s.setCur(ours, 13)    // the watch's event of our put
	if !s.ours() || s.curRev != 13 {
		t.Fatalf("cur %+v at %d, want our record at 13", s.cur, s.curRev)
	}
	if st := r.Status(); st.Reregistrations != 1 || st.State != StateRegistered {
		t.Fatalf("status %+v, want registered with 1 re-registration", st)
	}
}
