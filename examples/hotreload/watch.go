package main

import (
	"context"
	"errors"
	"time"

	"github.com/fsnotify/fsnotify"
)

// quiet is how long events must stop before the settings are read again:
// one write of the files layout is several events (temporary file created,
// written, renamed), a snapshot swap more, and a batch of keys more still.
const quiet = 50 * time.Millisecond

// watch reloads the settings after every burst of events in the watched
// directory, until ctx ends (nil) or the watcher fails. Any event counts:
// a temporary file coming and going costs one read of the settings, which
// finds nothing changed. An error from the watcher (such as a queue
// overflow, where events were lost) is logged and also causes a reload.
func (s *service) watch(ctx context.Context, w *fsnotify.Watcher) error {
	timer := time.NewTimer(quiet)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watch: watcher closed")
			}
			s.log.Debug("config dir event", "path", ev.Name, "op", ev.Op.String())
			timer.Reset(quiet)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watch: watcher closed")
			}
			s.log.Warn("config dir watch error; reloading", "err", err)
			timer.Reset(quiet)
		case <-timer.C:
			s.reload()
		}
	}
}

// reload reads the settings again, makes them current and logs what
// changed. Only the watch loop calls it.
func (s *service) reload() {
	old := *s.cur.Load()
	cur, err := load(s.dir, old)
	if err != nil {
		s.log.Warn("settings not fully read; keeping the last value of the others", "dir", s.dir, "err", err)
	}
	s.cur.Store(&cur)
	if c := changes(old, cur); len(c) > 0 {
		s.log.Info("settings reloaded", c...)
	} else {
		s.log.Debug("settings unchanged")
	}
}
