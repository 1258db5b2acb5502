package client_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar/api"
	"github.com/sidecar-dev/sidecar/client"
)

// sendEvent writes one line of a hold's stream and flushes it.
func sendEvent(w http.ResponseWriter, ev api.HoldEvent) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	json.NewEncoder(w).Encode(ev)
	http.NewResponseController(w).Flush()
}

var acquired = api.HoldEvent{Event: api.EventAcquired, Name: "job", Key: "/sidecar/locks/job/694d", Fence: 42}

// How a hold's stream ends: a lost event is a *LostError with the reason;
// a daemon that goes away is ErrDaemonGone; Close is net.ErrClosed and the
// daemon sees the request end.
func TestHoldStreamEnds(t *testing.T) {
	ended := make(chan struct{}, 1)
	tests := []struct {
		name  string
		then  func(*testing.T, http.ResponseWriter, *http.Request)
		close bool
		check func(error) bool
	}{
		{"lost", func(_ *testing.T, w http.ResponseWriter, _ *http.Request) {
			sendEvent(w, api.HoldEvent{Event: api.EventLost, Name: "job", Reason: api.ReasonShutdown})
		}, false, func(err error) bool {
			var le *client.LostError
			return errors.As(err, &le) && errors.Is(err, client.ErrLost) && le.Reason == api.ReasonShutdown && le.Fence == 42
		}},
		{"daemon cut", func(t *testing.T, w http.ResponseWriter, _ *http.Request) { cut(t, w) }, false,
			func(err error) bool { return errors.Is(err, client.ErrDaemonGone) && !errors.Is(err, client.ErrLost) }},
		{"daemon ended the stream", func(*testing.T, http.ResponseWriter, *http.Request) {}, false,
			func(err error) bool { return errors.Is(err, client.ErrDaemonGone) }},
		{"closed", func(_ *testing.T, _ http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
			ended <- struct{}{}
		}, true, func(err error) bool { return errors.Is(err, net.ErrClosed) && !errors.Is(err, client.ErrDaemonGone) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := daemon(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/v1/locks/job" || r.URL.RawQuery != "" {
					http.Error(w, `{"error":"wrong request"}`, http.StatusBadRequest)
					return
				}
				sendEvent(w, acquired)
				tc.then(t, w, r)
			})
			h, err := c.Lock(t.Context(), "job", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if h.Event() != acquired {
				t.Fatalf("event %+v, want %+v", h.Event(), acquired)
			}
			if tc.close {
				closeAndSeeEnd(t, h, ended)
			}
			select {
			case <-h.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("Done not closed")
			}
			if err := h.Err(); !tc.check(err) {
				t.Fatalf("Err = %v", err)
			}
		})
	}
}

// Campaign sends the value and the wait; a 409 is an *APIError.
func TestCampaignRequest(t *testing.T) {
	c := daemon(t, func(w http.ResponseWriter, r *http.Request) {
		var body api.Campaign
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil || body.Value != "node-a" || r.URL.Path != "/v1/elections/primary" ||
			r.URL.Query().Get("wait") != "1.5s" {
			http.Error(w, `{"error":"wrong request: `+string(b)+`"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `{"error":"election \"primary\" has another leader"}`)
	})
	wait := 1500 * time.Millisecond
	_, err := c.Campaign(t.Context(), "primary", "node-a", &wait)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict || ae.Message != `election "primary" has another leader` {
		t.Fatalf("err = %v, want the 409", err)
	}
}

// Leader: 404 is no leader, not an error; WatchLeader reads null leaders.
func TestLeader(t *testing.T) {
	c := daemon(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/elections/none":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"election \"none\" has no leader"}`)
		case r.URL.Query().Get("watch") == "true":
			w.Header().Set("Content-Type", "application/x-ndjson")
			io.WriteString(w, `{"name":"primary","leader":"node-a","key":"/k","fence":7}`+"\n"+`{"name":"primary","leader":null}`+"\n")
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
		default:
			io.WriteString(w, `{"name":"primary","leader":"node-a","key":"/k","fence":7}`)
		}
	})
	if l, err := c.Leader(t.Context(), "none"); err != nil || l.Leader != nil || l.Name != "none" {
		t.Fatalf("no leader: %+v %v", l, err)
	}
	if l, err := c.Leader(t.Context(), "primary"); err != nil || l.Leader == nil || *l.Leader != "node-a" || l.Fence != 7 {
		t.Fatalf("leader: %+v %v", l, err)
	}
	st, err := c.WatchLeader(t.Context(), "primary")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if l, err := st.Next(); err != nil || l.Leader == nil || *l.Leader != "node-a" {
		t.Fatalf("first: %+v %v", l, err)
	}
	if l, err := st.Next(); err != nil || l.Leader != nil {
		t.Fatalf("second: %+v %v, want leader null", l, err)
	}
}

// closeAndSeeEnd closes a hold still held and waits until the daemon saw
// its request end.
func closeAndSeeEnd(t *testing.T, h *client.HoldStream, ended <-chan struct{}) {
	t.Helper()
	if h.Err() != nil {
		t.Fatalf("Err while held = %v", h.Err())
	}
	h.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the daemon did not see the request end after Close")
	}
}

// TestHoldStreamExpires: a hold whose daemon goes quiet (paused) counts as
// lost when the last validity it was told runs out; each valid event
// extends it.
func TestHoldStreamExpires(t *testing.T) {
	c := daemon(t, func(w http.ResponseWriter, r *http.Request) {
		ev := acquired
		ev.ValidForMS = 300
		sendEvent(w, ev)
		time.Sleep(200 * time.Millisecond)
		sendEvent(w, api.HoldEvent{Event: api.EventValid, Name: "job", ValidForMS: 300})
		<-r.Context().Done() // then quiet, the connection open
	})
	start := time.Now()
	h, err := c.Lock(t.Context(), "job", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	select {
	case <-h.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a quiet daemon's hold never expired")
	}
	var le *client.LostError
	if took := time.Since(start); took < 450*time.Millisecond || !errors.As(h.Err(), &le) || !strings.Contains(le.Reason, "no word from the sidecar") {
		t.Fatalf("after %s: Err = %v; want lost, about 500 ms in (the valid event extended it)", took, h.Err())
	}
}
