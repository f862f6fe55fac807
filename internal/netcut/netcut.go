// Package netcut is a TCP proxy for tests that cut the network between a
// client and its server: Cut drops every connection through the proxy at
// once and refuses new ones, as a failed link or a firewall would, until
// Restore.
package netcut

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards connections to one target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	cut      bool
	conns    map[net.Conn]struct{} // both ends of every forwarded connection
	accepted int
	wg       sync.WaitGroup

	sent, received atomic.Int64 // bytes forwarded to and from the target
}

// Start listens on a free port of 127.0.0.1 and forwards what arrives to
// target. The proxy is closed at cleanup.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("netcut: %v", err)
	}
	p := &Proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// Addr is the host:port clients connect to instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut resets every open connection and makes the proxy reset new ones
// as soon as they are accepted, until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		reset(c)
	}
	clear(p.conns)
}

// Restore lets new connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Accepted is how many connections were forwarded so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Bytes returns how many bytes the proxy forwarded to the target (sent)
// and from it (received) so far, over all connections. A client that stops
// reading stops the received count once the buffers between are full.
func (p *Proxy) Bytes() (sent, received int64) {
	return p.sent.Load(), p.received.Load()
}

// Close stops listening, resets every connection and waits for the
// forwarding goroutines to end.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		refuse := p.cut
		p.mu.Unlock()
		if refuse {
			reset(client)
			continue
		}
		p.wg.Go(func() { p.forward(client) })
	}
}

// forward connects client to the target and copies both ways until either
// side ends or the proxy cuts them.
func (p *Proxy) forward(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		reset(client)
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		reset(client)
		reset(server)
		return
	}
	p.conns[client], p.conns[server] = struct{}{}, struct{}{}
	p.accepted++
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { pipe(counter{server, &p.sent}, client) })
	wg.Go(func() { pipe(counter{client, &p.received}, server) })
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
	client.Close()
	server.Close()
}

// pipe copies from src to dst until src ends. An orderly end is passed on
// as a half close, so a protocol that finishes with one keeps working; a
// failure ends both directions.
func pipe(dst counter, src net.Conn) {
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		src.Close()
		return
	}
	if tc, ok := dst.Conn.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// counter is a connection whose writes are counted in n.
type counter struct {
	net.Conn
	n *atomic.Int64
}

func (c counter) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// reset closes c with a TCP reset rather than an orderly end: the peer sees
// "connection reset", as after a network failure.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
