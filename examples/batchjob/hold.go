package main

import (
	"errors"
	"fmt"
	"strconv"
)

// hold is the lock or leadership the job runs under, as the wrapper
// (`sidecar lock` or `sidecar elect`) put it in the environment.
type hold struct {
	kind  string // "lock" or "election"
	name  string
	fence int64
}

func (h hold) String() string { return fmt.Sprintf("%s %q (fence %d)", h.kind, h.name, h.fence) }

// errNoHold is the error of a job run without a wrapper.
var errNoHold = errors.New("batchjob: not run under `sidecar lock NAME --` or `sidecar elect NAME --`: SIDECAR_LOCK_FENCE and SIDECAR_ELECTION_FENCE are both unset")

// holdFromEnv reads the hold from SIDECAR_LOCK_NAME and SIDECAR_LOCK_FENCE
// or from SIDECAR_ELECTION_NAME and SIDECAR_ELECTION_FENCE; exactly one
// pair must be set.
func holdFromEnv(getenv func(string) string) (hold, error) {
	lockFence, electFence := getenv("SIDECAR_LOCK_FENCE"), getenv("SIDECAR_ELECTION_FENCE")
	var h hold
	var fence string
	switch {
	case lockFence != "" && electFence != "":
		return hold{}, errors.New("batchjob: both SIDECAR_LOCK_FENCE and SIDECAR_ELECTION_FENCE are set: run the job under one wrapper, its ledger under one lock or election")
	case lockFence != "":
		h, fence = hold{kind: "lock", name: getenv("SIDECAR_LOCK_NAME")}, lockFence
	case electFence != "":
		h, fence = hold{kind: "election", name: getenv("SIDECAR_ELECTION_NAME")}, electFence
	default:
		return hold{}, errNoHold
	}
	var err error
	if h.fence, err = strconv.ParseInt(fence, 10, 64); err != nil || h.fence < 1 {
		return hold{}, fmt.Errorf("batchjob: %s fence %q: want a positive integer (an etcd revision)", h.kind, fence)
	}
	if h.name == "" {
		return hold{}, fmt.Errorf("batchjob: %s fence set without its name", h.kind)
	}
	return h, nil
}
