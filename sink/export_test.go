package sink

// Waiting counts the messages folded into a target's state that wait in the
// scheduler for a request to cover them, for tests that must know every
// fetched message reached the scheduler before they move the clock.
func (s *Sink) Waiting() int {
	s.gen.Lock()
	g := s.gen.generation
	s.gen.Unlock()
	if g == nil {
		return 0
	}
	g.sched.mu.Lock()
	defer g.sched.mu.Unlock()
	n := 0
	for _, t := range g.sched.active {
		n += len(t.pending)
	}
	return n
}
