package etcdtest

import (
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on a free loopback port in front of one etcd client
// URL, to cut a client off from etcd the way a network does. It forwards
// bytes unchanged, so TLS passes through. It is safe for concurrent use.
type Proxy struct {
	t      testing.TB
	target string // host:port
	scheme string
	addr   string // 127.0.0.1:PORT, the same for the proxy's life

	mu     sync.Mutex
	ln     net.Listener  // nil while dropped
	open   chan struct{} // closed while forwarding; a new, open one while blackholed
	conns  map[*proxyConn]struct{}
	reset  bool          // new connections are reset after their first bytes
	delay  time.Duration // bytes from the target wait this long before the client gets them
	closed bool
	wg     sync.WaitGroup
}

type proxyConn struct {
	client, upstream net.Conn
	once             sync.Once
	done             chan struct{}
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		close(c.done)
		c.client.Close()
		c.upstream.Close()
	})
}

// StartProxy starts a proxy to target, a client URL (http://host:port or
// https://host:port) or a plain host:port, forwarding at once. It is
// closed, with all its connections, at test cleanup.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	scheme, host := "http", target
	if strings.Contains(target, "://") {
		u, err := url.Parse(target)
		if err != nil || u.Host == "" {
			t.Fatalf("etcdtest: proxy target %q: not a URL with a host", target)
		}
		scheme, host = u.Scheme, u.Host
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: proxy listen: %v", err)
	}
	open := make(chan struct{})
	close(open)
	p := &Proxy{
		t: t, target: host, scheme: scheme, addr: ln.Addr().String(),
		ln: ln, open: open, conns: map[*proxyConn]struct{}{},
	}
	p.serve(ln)
	t.Cleanup(p.Close)
	return p
}

// URL is the proxy's address with the target's scheme, for a client's
// endpoints.
func (p *Proxy) URL() string { return p.scheme + "://" + p.addr }

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// Blackhole stops forwarding in both directions while keeping every
// connection open, and accepts new connections without forwarding on them:
// peers see silence, as across a partition. Bytes already read are held,
// not lost, and delivered after Heal, as TCP would retransmit them.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reset = false
	if p.forwardingLocked() {
		p.open = make(chan struct{})
	}
	p.listenLocked()
}

// Drop closes every connection and the listener, so new connections are
// refused until Heal or Blackhole.
func (p *Proxy) Drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.close()
	}
}

// Reset makes the proxy reset connections (a TCP RST, not a FIN), as a
// proxy or load balancer does whose backend is not up yet: every open
// connection now, and each new one after reading what the client sends
// first (a TLS ClientHello, an HTTP/2 preface), so that the client sees the
// reset in the middle of its handshake. It lasts until Heal or Blackhole,
// and listens again after Drop.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reset = true
	p.listenLocked()
	for c := range p.conns {
		resetConn(c.client)
		c.close()
	}
}

// Heal accepts connections again, on the same address, and forwards on
// all of them.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reset = false
	p.listenLocked()
	if !p.forwardingLocked() {
		close(p.open)
	}
}

// Delay holds every byte that the target sends from then on for d before
// passing it to the client, on every connection, without closing any and
// without reordering: an answer is late on its way back, as across a slow
// or congested link, while requests arrive at once. Each chunk waits d from
// when the proxy read it, so chunks that follow one another are not delayed
// more than d each. Delay(0) ends it for bytes read afterwards.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = max(d, 0)
}

// Close stops the proxy and closes every connection. It is called at test
// cleanup; calling it again does nothing.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) forwardingLocked() bool {
	select {
	case <-p.open:
		return true
	default:
		return false
	}
}

// listenLocked listens again on the proxy's address after Drop.
func (p *Proxy) listenLocked() {
	if p.ln != nil || p.closed {
		return
	}
	var err error
	for i := 0; i < 20; i++ { // the port is ours, but the kernel may need a moment
		var ln net.Listener
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.ln = ln
			p.serve(ln)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Errorf("etcdtest: proxy listen again on %s: %v", p.addr, err)
}

// serve accepts on ln until it is closed.
func (p *Proxy) serve(ln net.Listener) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go p.handle(c)
		}
	}()
}

func (p *Proxy) handle(client net.Conn) {
	defer p.wg.Done()
	p.mu.Lock()
	reset := p.reset
	p.mu.Unlock()
	if reset {
		_ = client.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = client.Read(make([]byte, 4096)) // the start of the client's handshake
		resetConn(client)
		return
	}
	upstream, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	c := &proxyConn{client: client, upstream: upstream, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed || p.ln == nil { // closed or dropped while dialing
		p.mu.Unlock()
		c.close()
		return
	}
	p.conns[c] = struct{}{}
	p.wg.Add(2)
	p.mu.Unlock()
	go p.pipe(c, upstream, client, false)
	go p.pipe(c, client, upstream, true)
}

// pipe copies src to dst while forwarding is on; either side failing
// closes both. fromTarget marks the direction that Delay slows down; the
// bytes of each read pass on to a writer that sends them when they are due.
func (p *Proxy) pipe(c *proxyConn, dst, src net.Conn, fromTarget bool) {
	defer p.wg.Done()
	out := make(chan chunk, 256)
	wrote := make(chan struct{})
	go func() { defer close(wrote); p.writeChunks(c, dst, out) }()
	defer func() {
		close(out)
		<-wrote // bytes already read still reach dst, late or not
		c.close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			open, delay := p.open, p.delay
			p.mu.Unlock()
			due := time.Now()
			if fromTarget {
				due = due.Add(delay)
			}
			select {
			case <-open:
			case <-c.done:
				return
			}
			select {
			case out <- chunk{b: append([]byte(nil), buf[:n]...), due: due}:
			case <-c.done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// chunk is bytes read by a pipe and the time to pass them on.
type chunk struct {
	b   []byte
	due time.Time
}

// writeChunks writes each chunk of out to dst when it is due and the proxy
// forwards, until out is closed or the connection is; a failed write closes
// the connection.
func (p *Proxy) writeChunks(c *proxyConn, dst net.Conn, out <-chan chunk) {
	for ch := range out {
		if wait := time.Until(ch.due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.done:
				t.Stop()
				return
			}
		}
		p.mu.Lock()
		open := p.open
		p.mu.Unlock()
		select {
		case <-open:
		case <-c.done:
			return
		}
		if _, err := dst.Write(ch.b); err != nil {
			c.close()
			return
		}
	}
}

// resetConn closes c with a TCP RST: with SO_LINGER 0, close discards
// unsent data and resets the connection.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}
