package emulator

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"time"
)

// Server is an emulator listening on a real address, for a demo or a CI
// job that runs the daemon against it.
type Server struct {
	emu  *Emulator
	url  string
	srv  *http.Server
	done chan struct{}
}

// Start validates cfg and serves a new emulator on addr ("host:port"; empty
// means a free port on 127.0.0.1) until Close.
func Start(cfg Config, addr string) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &ListenError{Addr: addr, Err: err}
	}
	s := &Server{
		emu:  New(cfg),
		url:  "http://" + dialable(ln.Addr()),
		done: make(chan struct{}),
	}
	s.srv = &http.Server{Handler: s.emu.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln) // returns ErrServerClosed after Close
	}()
	return s, nil
}

// ListenError is Start's error when the address cannot be bound.
// errors.Is(err, syscall.EADDRINUSE) tells an address in use.
type ListenError struct {
	Addr string
	Err  error // net.Listen's
}

func (e *ListenError) Error() string {
	var errno syscall.Errno
	switch {
	case errors.Is(e.Err, syscall.EADDRINUSE):
		return fmt.Sprintf("the emulator cannot listen on %s: the address is in use (another emulator, or another program, listens there)", e.Addr)
	case errors.As(e.Err, &errno):
		return fmt.Sprintf("the emulator cannot listen on %s: %s", e.Addr, errno.Error())
	}
	var addrErr *net.AddrError
	if errors.As(e.Err, &addrErr) {
		return fmt.Sprintf("the emulator cannot listen on %s: %s", e.Addr, addrErr.Err)
	}
	return fmt.Sprintf("the emulator cannot listen on %s: %v", e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// dialable turns a listener's address into one a client can dial: a
// wildcard host (":8080" listens on all of them) becomes localhost.
func dialable(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("localhost", fmt.Sprint(tcp.Port))
}

// Emulator returns the emulator the server serves.
func (s *Server) Emulator() *Emulator { return s.emu }

// URL is the base URL to give the client, e.g. "http://127.0.0.1:43123".
func (s *Server) URL() string { return s.url }

// Close stops the server at once, dropping open connections, and waits
// for it to be gone.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// TB is what NewTestServer needs of a test; *testing.T, *testing.B and
// *testing.F have it. It is declared here so that the emulator does not
// import package testing, and a program that serves it (the emulator
// subcommand) does not carry the test framework.
type TB interface {
	Helper()
	Fatal(args ...any)
	Cleanup(func())
}

// NewTestServer starts an emulator on an httptest server that closes when
// the test ends. It returns the emulator and the base URL for the client.
func NewTestServer(t TB, cfg Config) (*Emulator, string) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := New(cfg)
	srv := httptest.NewServer(e.Handler())
	t.Cleanup(srv.Close)
	return e, srv.URL
}
