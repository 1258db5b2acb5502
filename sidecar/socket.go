package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// umaskMu serialises the process-wide umask change around bind.
var umaskMu sync.Mutex

// ErrDaemonRunning means another live sidecar serves the socket path.
var ErrDaemonRunning = errors.New("sidecar: another sidecar daemon is running on this socket")

// socketListener is the local API's unix listener plus the flock that makes
// it ours.
type socketListener struct {
	net.Listener
	lock *os.File
}

// listenSocket creates the unix socket at path, born with mode (umask
// around bind, never chmod after), after taking an exclusive flock on
// path+".lock" so two daemons never race for it. A stale socket left by a
// dead daemon is removed; a live daemon makes this one refuse to start; a
// path that is not a socket is never removed.
func listenSocket(path string, mode os.FileMode) (*socketListener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		dirMode := os.FileMode(0o700)
		if mode&0o077 != 0 {
			dirMode = 0o711 // others may reach the socket, not list the directory
		}
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return nil, fmt.Errorf("sidecar: create socket directory: %w", err)
		}
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sidecar: open socket lock: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (lock %s.lock is held)", ErrDaemonRunning, path, path)
		}
		return nil, fmt.Errorf("sidecar: lock %s.lock: %w", path, err)
	}
	ln, err := bindSocket(path, mode)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return &socketListener{Listener: ln, lock: lock}, nil
}

func bindSocket(path string, mode os.FileMode) (net.Listener, error) {
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	umaskMu.Lock()
	old := unix.Umask(int(0o777 &^ mode))
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	umaskMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("sidecar: listen on %s: %w", path, err)
	}
	return ln, nil
}

// removeStaleSocket removes a socket nobody answers on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sidecar: socket path: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("sidecar: %s exists and is not a socket: refusing to replace it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: %s answers", ErrDaemonRunning, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("sidecar: probe existing socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("sidecar: remove stale socket: %w", err)
	}
	return nil
}

// Close closes the listener (removing the socket) and releases the lock.
func (l *socketListener) Close() error {
	err := l.Listener.Close()
	l.lock.Close()
	return err
}

// peerCred is the identity of the process at the other end of a unix connection.
type peerCred struct {
	PID, UID, GID int
}

type credConn struct {
	net.Conn
	cred    peerCred
	release func()
	once    sync.Once
}

func (c *credConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// credListener reads SO_PEERCRED of every accepted connection and caps the
// number of open connections (Accept waits for a free place).
type credListener struct {
	net.Listener
	sem chan struct{}
}

func newCredListener(l net.Listener, max int) *credListener {
	return &credListener{Listener: l, sem: make(chan struct{}, max)}
}

func (l *credListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	release := func() { <-l.sem }
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			release()
			return nil, err
		}
		cred, err := readPeerCred(c)
		if err != nil {
			c.Close() // a connection we cannot identify is never served
			continue
		}
		return &credConn{Conn: c, cred: cred, release: release}, nil
	}
}

func readPeerCred(c net.Conn) (peerCred, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return peerCred{}, errors.New("not a unix connection")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return peerCred{}, err
	}
	var uc *unix.Ucred
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		uc, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peerCred{}, err
	}
	if gerr != nil {
		return peerCred{}, gerr
	}
	return peerCred{PID: int(uc.Pid), UID: int(uc.Uid), GID: int(uc.Gid)}, nil
}

type credKey struct{}

// connContext stores the peer credentials in each request's context.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if cc, ok := c.(*credConn); ok {
		return context.WithValue(ctx, credKey{}, cc.cred)
	}
	return ctx
}

// peerFrom returns the credentials of the request's peer, if it came over the socket.
func peerFrom(ctx context.Context) (peerCred, bool) {
	c, ok := ctx.Value(credKey{}).(peerCred)
	return c, ok
}
