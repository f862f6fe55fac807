package sink

import (
	"context"
	"testing"
	"time"
)

func TestLimiterLetsThroughTheRatePlusABurstInAnySecond(t *testing.T) {
	clock := NewFakeClock()
	l := NewLimiter(clock, 50) // burst 5
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
	l := NewLimiter(clock, 10) // burst 1
	ctx := context.Background()
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- l.Wait(ctx) }()
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

func TestLimiterWaitEndsWithItsContext(t *testing.T) {
	clock := NewFakeClock()
	l := NewLimiter(clock, 10) // burst 1
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Wait(ctx); err == nil {
		t.Fatal("a wait for a token not there yet returned nil with its context ended")
	}
}

func TestLimiterSlowsDownOn429sAndRecovers(t *testing.T) {
	clock := NewFakeClock()
	l := NewLimiter(clock, 100)
	sent := clock.Now()
	clock.Advance(time.Millisecond)
	l.SlowDown(sent)
	if r := l.currentRate(); r != 80 {
		t.Fatalf("rate %v after a 429, want 80", r)
	}
	l.SlowDown(sent) // sent before the slow-down: no news
	if r := l.currentRate(); r != 80 {
		t.Fatalf("rate %v after a second 429 to a request sent before the first, want 80", r)
	}
	for range 20 {
		clock.Advance(time.Millisecond)
		l.SlowDown(clock.Now())
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
	if n := l.slowDowns.Load(); n != 21 {
		t.Errorf("%d slow-downs counted, want 21: the 429 that said nothing new is not one", n)
	}
}
