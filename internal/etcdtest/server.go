package etcdtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ServerOptions configures StartServer. The zero value is a plain-HTTP
// single-member cluster on 127.0.0.1.
type ServerOptions struct {
	Name string     // member name; default "test"
	Host string     // IP address to listen on; default 127.0.0.1
	TLS  *ServerTLS // client-facing TLS; nil serves plain http
	Args []string   // extra etcd flags, appended last
}

// ServerTLS is the client-facing TLS of a server started by StartServer.
type ServerTLS struct {
	CertFile, KeyFile string // --cert-file, --key-file
	TrustedCAFile     string // --trusted-ca-file
	ClientCertAuth    bool   // --client-cert-auth

	// ClientCertFile and ClientKeyFile are presented by the readiness probe
	// and by Server.Client; needed when ClientCertAuth is set. The probe
	// trusts TrustedCAFile, or CAFile when set.
	ClientCertFile, ClientKeyFile string
	CAFile                        string
}

// Server is an etcd server process (go tool server) with its data in a
// temporary directory, killed at test cleanup. Its methods are not safe for
// concurrent use.
type Server struct {
	ClientURL string // http(s)://HOST:PORT
	PeerURL   string
	DataDir   string
	LogFile   string // the process's stderr (etcd logs JSON there)

	t    testing.TB
	opts ServerOptions
	args []string
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
}

const readyTimeout = 60 * time.Second

// StartServer starts an etcd server process on free ports of opts.Host,
// waits until it answers a linearizable read, and kills it at test cleanup;
// when the test failed, the tail of its log is written to the test log.
func StartServer(t testing.TB, opts ServerOptions) *Server {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "test"
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	bin := ServerBinary(t)
	dir := t.TempDir()
	s := &Server{t: t, opts: opts, DataDir: filepath.Join(dir, "data"), LogFile: filepath.Join(dir, "etcd.log")}
	t.Cleanup(s.cleanup)
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		s.setPorts(freePortOn(t, opts.Host), freePortOn(t, opts.Host))
		if err = s.start(bin); err != nil {
			t.Fatalf("etcdtest: start etcd: %v", err)
		}
		if err = s.waitReady(); err == nil {
			return s
		}
		if !s.exited() || !s.logContains("address already in use") {
			break
		}
		t.Logf("etcdtest: etcd lost a port race, retrying: %v", err)
		_ = os.RemoveAll(s.DataDir)
	}
	t.Fatalf("etcdtest: etcd not ready: %v", err)
	return nil
}

func (s *Server) setPorts(clientPort, peerPort int) {
	scheme := "http"
	if s.opts.TLS != nil {
		scheme = "https"
	}
	host := net.JoinHostPort(s.opts.Host, strconv.Itoa(clientPort))
	s.ClientURL = scheme + "://" + host
	s.PeerURL = "http://" + net.JoinHostPort(s.opts.Host, strconv.Itoa(peerPort))
	s.args = []string{
		"--name=" + s.opts.Name,
		"--data-dir=" + s.DataDir,
		"--listen-client-urls=" + s.ClientURL,
		"--advertise-client-urls=" + s.ClientURL,
		"--listen-peer-urls=" + s.PeerURL,
		"--initial-advertise-peer-urls=" + s.PeerURL,
		"--initial-cluster=" + s.opts.Name + "=" + s.PeerURL,
		"--initial-cluster-state=new",
	}
	if tc := s.opts.TLS; tc != nil {
		s.args = append(s.args, "--cert-file="+tc.CertFile, "--key-file="+tc.KeyFile)
		if tc.TrustedCAFile != "" {
			s.args = append(s.args, "--trusted-ca-file="+tc.TrustedCAFile)
		}
		if tc.ClientCertAuth {
			s.args = append(s.args, "--client-cert-auth")
		}
	}
	s.args = append(s.args, s.opts.Args...)
}

func (s *Server) start(bin string) error {
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(bin, s.args...)
	cmd.Env = cleanEnv()
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	return nil
}

func (s *Server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Running reports whether the server process is alive (possibly paused).
func (s *Server) Running() bool { return s.cmd != nil && !s.exited() }

// waitReady polls with a real request until the server answers, it exits,
// or readyTimeout passes.
func (s *Server) waitReady() error {
	cli, err := s.newClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if s.exited() {
			return fmt.Errorf("etcd exited (%v) before it was ready; log: %s\n%s",
				s.cmd.ProcessState, s.LogFile, s.logTail(20))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health", clientv3.WithCountOnly())
		cancel()
		if answered(err) {
			return nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no answer from %s within %s (last error: %v); log: %s\n%s",
		s.ClientURL, readyTimeout, last, s.LogFile, s.logTail(20))
}

// answered reports whether err means the server served a linearizable read:
// success, or an auth error (checked after the read index, like etcdctl
// endpoint health does).
func answered(err error) bool {
	return err == nil ||
		errors.Is(err, rpctypes.ErrPermissionDenied) ||
		errors.Is(err, rpctypes.ErrUserEmpty) ||
		errors.Is(err, rpctypes.ErrInvalidAuthToken)
}

// ClientTLS returns the TLS configuration used by the readiness probe and
// Client, or nil for a plain server.
func (s *Server) ClientTLS() (*tls.Config, error) {
	tc := s.opts.TLS
	if tc == nil {
		return nil, nil
	}
	ca := tc.CAFile
	if ca == "" {
		ca = tc.TrustedCAFile
	}
	info := transport.TLSInfo{CertFile: tc.ClientCertFile, KeyFile: tc.ClientKeyFile, TrustedCAFile: ca, Logger: zap.NewNop()}
	return info.ClientConfig()
}

func (s *Server) newClient() (*clientv3.Client, error) {
	tlsCfg, err := s.ClientTLS()
	if err != nil {
		return nil, err
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{s.ClientURL},
		TLS:         tlsCfg,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// Client returns a client of the server using the ServerTLS client
// certificate (if any), closed at test cleanup.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := s.newClient()
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Stop sends SIGTERM and waits for the process to exit, killing it after 10s.
func (s *Server) Stop() {
	s.t.Helper()
	if !s.Running() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused process cannot handle SIGTERM
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.t.Logf("etcdtest: etcd ignored SIGTERM for 10s; killing it")
		s.Kill()
	}
}

// Kill sends SIGKILL and waits for the process to exit.
func (s *Server) Kill() {
	if !s.Running() {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Pause stops the process with SIGSTOP: its sockets stay open but nothing
// answers, as with a blackholed host.
func (s *Server) Pause() {
	s.t.Helper()
	if !s.Running() {
		s.t.Fatalf("etcdtest: pause etcd: not running")
	}
	if err := StopProcess(s.cmd.Process.Pid); err != nil {
		s.t.Fatalf("etcdtest: pause etcd: %v", err)
	}
}

// Resume continues a paused process with SIGCONT.
func (s *Server) Resume() {
	s.t.Helper()
	if !s.Running() {
		s.t.Fatalf("etcdtest: resume etcd: not running")
	}
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		s.t.Fatalf("etcdtest: resume etcd: %v", err)
	}
}

// Restart stops the process if it runs and starts it again on the same
// ports with the same data, waiting until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(ServerBinary(s.t)); err != nil {
		s.t.Fatalf("etcdtest: restart etcd: %v", err)
	}
	if err := s.waitReady(); err != nil {
		s.t.Fatalf("etcdtest: etcd not ready after restart: %v", err)
	}
}

func (s *Server) cleanup() {
	s.Kill()
	if s.t.Failed() {
		s.t.Logf("etcdtest: last lines of %s:\n%s", s.LogFile, s.logTail(40))
	}
}

func (s *Server) logContains(sub string) bool {
	b, _ := os.ReadFile(s.LogFile)
	return strings.Contains(string(b), sub)
}

func (s *Server) logTail(n int) string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePortOn returns a TCP port of host that was free a moment ago.
func freePortOn(t testing.TB, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("etcdtest: free port on %s: %v", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
