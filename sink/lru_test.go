package sink

import "testing"

func TestLRUForgetsTheLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	c := newLRU[string, int](2)
	c.put("a", 1)
	c.put("b", 2)
	c.get("a") // b is now the least recently used
	c.put("c", 3)
	if _, ok := c.get("b"); ok {
		t.Error("b is still there")
	}
	if v, ok := c.get("a"); !ok || v != 1 {
		t.Errorf("a = %d, %v; want 1", v, ok)
	}
	c.put("a", 4)
	if v, _ := c.get("a"); v != 4 || c.len() != 2 {
		t.Errorf("a = %d with %d entries; want 4 with 2", v, c.len())
	}
}
