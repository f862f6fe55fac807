package netcut_test

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/internal/netcut"
)

// echo serves a line-echo server for the test and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line over c and reads it back.
func roundTrip(c net.Conn, line string) (string, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return got[:len(got)-1], nil
}

func TestProxyForwardsUntilCutRefusesWhileCutAndForwardsAgainAfterRestore(t *testing.T) {
	t.Parallel()
	p := netcut.Start(t, echo(t))

	before, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	if got, err := roundTrip(before, "hello"); err != nil || got != "hello" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}

	p.Cut()
	if _, err := roundTrip(before, "lost"); err == nil {
		t.Fatal("a connection open at the cut still works")
	}
	during, err := net.Dial("tcp", p.Addr())
	if err == nil {
		_, err = roundTrip(during, "refused")
		during.Close()
	}
	if err == nil {
		t.Fatal("a connection opened during the cut works")
	}

	p.Restore()
	after, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if got, err := roundTrip(after, "again"); err != nil || got != "again" {
		t.Fatalf("after restore: %q, %v", got, err)
	}
	// The proxy counts a write once it returned, which may be after the
	// echo came back.
	sent, received := p.Bytes()
	for deadline := time.Now().Add(time.Second); (sent != 12 || received != 12) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		sent, received = p.Bytes()
	}
	if sent != 12 || received != 12 {
		t.Errorf("forwarded %d bytes to the target and %d back, want 12 each way (hello and again)", sent, received)
	}
	if n := p.Accepted(); n != 2 {
		t.Errorf("forwarded %d connections, want 2 (none during the cut)", n)
	}
}
