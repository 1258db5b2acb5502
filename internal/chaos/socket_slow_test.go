package chaos

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// The daemon's timeouts for slow clients (sidecar/routes.go) and the
// slack the test gives them on a loaded machine.
const (
	fuzzHeaderTimeout = 5 * time.Second  // readHeaderTimeout
	fuzzBodyTimeout   = 10 * time.Second // bodyReadTimeout
	fuzzWriteTimeout  = 10 * time.Second // streamWriteTimeout
	fuzzSlack         = 3 * time.Second
	fuzzGiveUp        = 40 * time.Second // a client the daemon never cuts off
)

// fuzzSlow is the set of slow clients of TestSocketAbuse.
type fuzzSlow struct {
	p    *sidecarProc
	w    *world
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []string
	cut  []*sample // per kind: from the client's last byte to the daemon closing
	deaf net.Conn  // the stream that is never read
	base float64   // in-flight requests before the slow clients
}

// fuzzSlowClients starts the slow clients against p: a header sent a byte
// every 100 ms, three requests whose body never completes, and a
// ?watch=true stream on a service of 40 instances with 4 KiB of metadata
// each that is never read while the service changes 50 times.
func fuzzSlowClients(t *testing.T, w *world, p *sidecarProc) *fuzzSlow {
	t.Helper()
	s := &fuzzSlow{p: p, w: w}
	base, err := fuzzReadProc(p)
	if err != nil {
		t.Fatal(err)
	}
	s.base = base.inFlight
	header := &sample{name: "socket_abuse_slow_header_cut"}
	s.cut = append(s.cut, header)
	s.wg.Go(func() { s.slowHeader(header) })
	stalled := []struct {
		name, head string
		want       int
	}{
		{"weight", "PUT /v1/registration/weight HTTP/1.1\r\nContent-Type: application/json\r\n", http.StatusRequestTimeout},
		{"election", "POST /v1/elections/fuzzs HTTP/1.1\r\nContent-Type: application/json\r\n", http.StatusRequestTimeout},
		{"health", "GET /v1/health HTTP/1.1\r\n", http.StatusOK},
	}
	for _, st := range stalled {
		smp := &sample{name: "socket_abuse_stalled_body_" + st.name + "_cut"}
		s.cut = append(s.cut, smp)
		s.wg.Go(func() { s.stalledBody(st.head, st.want, smp) })
	}
	s.deafStream(t)
	return s
}

func (s *fuzzSlow) fail(format string, args ...any) {
	s.mu.Lock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

// slowHeader sends a request header a byte every 100 ms, never ending it,
// until a write fails: the daemon has closed the connection.
func (s *fuzzSlow) slowHeader(cut *sample) {
	c, err := net.Dial("unix", s.p.socket)
	if err != nil {
		s.fail("slow header: dial: %v", err)
		return
	}
	defer c.Close()
	start := time.Now()
	head := "GET /v1/health HTTP/1.1\r\nHost: sidecar\r\nX-Slow: "
	for i := 0; time.Since(start) < fuzzGiveUp; i++ {
		b := byte('a')
		if i < len(head) {
			b = head[i]
		}
		if _, err := c.Write([]byte{b}); err != nil {
			d := time.Since(start)
			cut.add(d)
			if d > fuzzHeaderTimeout+fuzzSlack {
				s.fail("slow header: cut off after %s, want <= %s", d, fuzzHeaderTimeout+fuzzSlack)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.fail("slow header: still served after %s of one byte every 100 ms", fuzzGiveUp)
}

// stalledBody sends head with Content-Length: 100 and 10 bytes of body,
// then nothing, and waits for the daemon to close the connection. A route
// that reads the body must answer 408; GET /v1/health does not read it and
// answers 200, but the connection must end all the same.
func (s *fuzzSlow) stalledBody(head string, want int, cut *sample) {
	c, err := net.Dial("unix", s.p.socket)
	if err != nil {
		s.fail("stalled body: dial: %v", err)
		return
	}
	defer c.Close()
	if _, err := io.WriteString(c, head+"Host: sidecar\r\nContent-Length: 100\r\n\r\n{\"weight\":"); err != nil {
		s.fail("stalled body %q: write: %v", head, err)
		return
	}
	start := time.Now()
	c.SetReadDeadline(start.Add(fuzzGiveUp))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		s.fail("stalled body %q: no answer: %v", head, err)
		return
	}
	_, err = io.Copy(io.Discard, br) // the rest of the answer, then the end of the connection
	d := time.Since(start)
	cut.add(d)
	switch {
	case err != nil:
		s.fail("stalled body %q: connection not closed by the daemon within %s: %v", head, fuzzGiveUp, err)
	case d > fuzzBodyTimeout+fuzzSlack:
		s.fail("stalled body %q: cut off after %s, want <= %s", head, d, fuzzBodyTimeout+fuzzSlack)
	case resp.StatusCode != want:
		s.fail("stalled body %q: status %d, want %d", head, resp.StatusCode, want)
	}
}

// deafStream registers the 40 instances of service fuzzbig, opens a
// ?watch=true stream on it that is never read, and changes the service 50
// times in the background.
func (s *fuzzSlow) deafStream(t *testing.T) {
	t.Helper()
	blob := strings.Repeat("m", 4<<10)
	put := func(i, v int) error {
		c, cancel := ctx(t)
		defer cancel()
		val := fmt.Sprintf(`{"Op":0,"Addr":"127.0.0.1:%d","Metadata":{"id":"i%d","weight":100,"metadata":{"v":"%d","blob":"%s"}}}`, 10000+i, i, v, blob)
		_, err := s.w.cli.Put(c, namespace+"services/fuzzbig/i"+strconv.Itoa(i), val)
		return err
	}
	for i := range 40 {
		if err := put(i, 0); err != nil {
			t.Fatal(err)
		}
	}
	c, err := net.Dial("unix", s.p.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "GET /v1/services/fuzzbig?watch=true HTTP/1.1\r\nHost: sidecar\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	s.deaf = c
	deaf := &sample{name: "socket_abuse_deaf_stream_cut"}
	s.cut = append(s.cut, deaf)
	s.wg.Go(func() {
		for v := range 50 {
			if err := put(v%40, v+1); err != nil {
				s.fail("deaf stream: change fuzzbig: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		churn := time.Now()
		for !fuzzHungUp(c) {
			if time.Since(churn) > fuzzWriteTimeout+fuzzSlack {
				s.fail("deaf stream: still open %s after its service last changed", time.Since(churn).Round(time.Millisecond))
				return
			}
			time.Sleep(etcdtest.PollInterval)
		}
		deaf.add(time.Since(churn))
	})
}

// fuzzHungUp reports whether the other end of c has closed it, without
// reading (so that a daemon still writing is not helped along).
func fuzzHungUp(c net.Conn) bool {
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return false
	}
	var hup bool
	raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(fds, 0); err == nil && n == 1 {
			hup = fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP) != 0
		}
	})
	return hup
}

// wait waits for the slow clients, then checks that the daemon ended the
// deaf stream: no request left in flight beyond those before the slow
// clients, and the stream's connection, read only now, ending in EOF.
func (s *fuzzSlow) wait(t *testing.T) {
	t.Helper()
	s.wg.Wait()
	for _, e := range s.errs {
		t.Error(e)
	}
	now, err := fuzzReadProc(s.p)
	if err == nil && now.inFlight > s.base {
		err = fmt.Errorf("%.0f requests in flight, %.0f before the slow clients", now.inFlight, s.base)
	}
	if err != nil {
		t.Error(err)
	}
	s.deaf.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, s.deaf)
	if err != nil {
		t.Errorf("deaf stream: read %d bytes, then %v; want the end of the stream", n, err)
		return
	}
	t.Logf("deaf stream: %d bytes were left unread when the daemon closed it", n)
}

// fuzzProc is a daemon's own figures, from its /metrics.
type fuzzProc struct {
	goroutines, fds, rss, inFlight float64
}

func (a fuzzProc) max(b fuzzProc) fuzzProc {
	return fuzzProc{max(a.goroutines, b.goroutines), max(a.fds, b.fds), max(a.rss, b.rss), max(a.inFlight, b.inFlight)}
}

// fuzzReadProc reads goroutines, open fds, RSS and in-flight API requests
// (this one included) from p's /metrics.
func fuzzReadProc(p *sidecarProc) (fuzzProc, error) {
	m, err := fuzzMetrics(p)
	if err != nil {
		return fuzzProc{}, err
	}
	return fuzzProc{m["go_goroutines"], m["process_open_fds"], m["process_resident_memory_bytes"], m["sidecar_api_in_flight_requests"]}, nil
}

// fuzzSampleProc is fuzzReadProc for the baseline, failing t on error.
func fuzzSampleProc(t *testing.T, p *sidecarProc) fuzzProc {
	t.Helper()
	s, err := fuzzReadProc(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fuzzMetrics reads the samples without labels of p's /metrics.
func fuzzMetrics(p *sidecarProc) (map[string]float64, error) {
	resp, err := p.http.Get("http://sidecar/metrics")
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: status %d", resp.StatusCode)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			m[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("GET /metrics: read: %w", err)
	}
	if len(m) == 0 {
		return nil, errors.New("GET /metrics: no samples")
	}
	return m, nil
}
