package sink

import (
	"context"
	"testing"
	"time"
)

func TestLimiterLetsThroughTheRatePlusABurstInAnySecond(t *testing.T) {
	clock := NewFakeClock()
	l := newLimiter(clock, 50) // burst 5
	start := clock.Now()
	var at []time.Duration // when each of 200 requests asked at once may go
	for range 200 {
		at = append(at, l.reserve())
	}
	for i, d := range at {
		if want := time.Duration(max(0, i+1-5)) * time.Second / 50; d < want {
			t.Fatalf("request %d may go after %s, want %s", i, d, want)
		}
	}
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j] < at[i]+time.Second; j++ {
			n++
		}
		if n > 55 {
			t.Fatalf("%d requests in the second from %s, want at most 55", n, at[i])
		}
	}
	if clock.Now() != start {
		t.Fatal("reserve moved the clock")
	}
}

func TestLimiterWaitsOnTheClock(t *testing.T) {
	clock := NewFakeClock()
	l := newLimiter(clock, 10) // burst 1
	ctx := context.Background()
	if err := l.wait(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- l.wait(ctx) }()
	for clock.Timers() == 0 {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("the second request went before its token was there")
	default:
	}
	clock.Advance(100 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l.waits.Load() != 1 || time.Duration(l.waited.Load()) != 100*time.Millisecond {
		t.Errorf("waits %d, waited %s; want 1 and 100ms", l.waits.Load(), time.Duration(l.waited.Load()))
	}
}

func TestLimiterSlowsDownOn429sAndRecovers(t *testing.T) {
	clock := NewFakeClock()
	l := newLimiter(clock, 100)
	sent := clock.Now()
	clock.Advance(time.Millisecond)
	l.slowDown(sent)
	if r := l.currentRate(); r != 80 {
		t.Fatalf("rate %v after a 429, want 80", r)
	}
	l.slowDown(sent) // sent before the slow-down: no news
	if r := l.currentRate(); r != 80 {
		t.Fatalf("rate %v after a second 429 to a request sent before the first, want 80", r)
	}
	for range 20 {
		clock.Advance(time.Millisecond)
		l.slowDown(clock.Now())
	}
	if r := l.currentRate(); r < 10 || r > 10.5 {
		t.Fatalf("rate %v after many 429s, want the floor, 10", r)
	}
	clock.Advance(time.Second)
	if r := l.currentRate(); r < 14.9 || r > 15.1 {
		t.Fatalf("rate %v a second later, want 15 (+5 %% of 100)", r)
	}
	clock.Advance(time.Minute)
	if r := l.currentRate(); r != 100 {
		t.Fatalf("rate %v a minute later, want 100, and no more", r)
	}
}
