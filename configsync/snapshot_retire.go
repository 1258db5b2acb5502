package configsync

import (
	"cmp"
	"fmt"
	"time"
)

// payloadGrace is how long a payload stays after a Commit replaced it.
// The kernel resolves "db/pool" → "..data/db/pool" → "<payload>/db/pool"
// one name at a time, and a loaded machine (or a VM whose vCPU the host
// pauses) can stall a reader between two names; a payload removed at once
// could fail such a read with "no such file" (the fault suite's reader
// once found a file missing, in 41,000 reads while batches came back to
// back). A reader that resolved "..data" and reads several files through
// it is covered too. What stays is small: a payload is hard links, made
// no faster than Begin makes them.
const payloadGrace = time.Second

// retiredPayload is a payload a Commit replaced, and when to remove it.
type retiredPayload struct {
	name string
	due  time.Time
}

// retire schedules the removal of a payload a Commit replaced, after
// payloadGrace.
func (s *Snapshot) retire(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retired = append(s.retired, retiredPayload{name, time.Now().Add(payloadGrace)})
	if s.reaper == nil {
		s.reaper = time.AfterFunc(payloadGrace, s.reap)
	}
}

// reap removes the retired payloads that are due, without holding the
// lock (Commit may retire the next meanwhile), and schedules itself for
// the next. A payload it cannot remove is left for the next OpenSnapshot,
// and the failure is returned by the next Commit.
func (s *Snapshot) reap() {
	s.mu.Lock()
	s.reaper = nil
	if s.closed { // Close removes them
		s.mu.Unlock()
		return
	}
	var due []retiredPayload
	for len(s.retired) > 0 && !time.Now().Before(s.retired[0].due) {
		due, s.retired = append(due, s.retired[0]), s.retired[1:]
	}
	s.reaping.Add(1)
	defer s.reaping.Done()
	s.mu.Unlock()
	var err error
	for _, p := range due {
		if e := s.d.root.RemoveAll(p.name); e != nil {
			err = cmp.Or(err, fmt.Errorf("remove the replaced payload %s: %w", p.name, e))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reapErr = cmp.Or(s.reapErr, err)
	if len(s.retired) > 0 && !s.closed && s.reaper == nil {
		s.reaper = time.AfterFunc(time.Until(s.retired[0].due), s.reap)
	}
}

// dropRetired stops reap, waits for a reap under way, and removes every
// retired payload now.
func (s *Snapshot) dropRetired() error {
	s.mu.Lock()
	s.closed = true
	if s.reaper != nil {
		s.reaper.Stop()
	}
	s.mu.Unlock()
	s.reaping.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for _, p := range s.retired {
		err = cmp.Or(err, s.d.root.RemoveAll(p.name))
	}
	s.retired = nil
	return err
}

// takeReapErr returns, once, why reap could not remove a payload.
func (s *Snapshot) takeReapErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.reapErr
	s.reapErr = nil
	return err
}
