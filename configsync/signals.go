package configsync

import (
	"strings"
	"syscall"
)

var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
	"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "TERM": syscall.SIGTERM,
	"KILL": syscall.SIGKILL, "WINCH": syscall.SIGWINCH, "CONT": syscall.SIGCONT,
	"STOP": syscall.SIGSTOP, "ALRM": syscall.SIGALRM,
}

// SignalByName returns the signal named HUP or SIGHUP (any case).
func SignalByName(name string) (syscall.Signal, bool) {
	s, ok := signals[strings.TrimPrefix(strings.ToUpper(name), "SIG")]
	return s, ok
}
