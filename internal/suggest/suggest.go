// Package suggest finds, for a name that matches nothing, the one it was
// most likely meant to be: the configuration and the start-up checks use
// it to name the fix for a misspelt column or broker.
package suggest

import "strings"

// Closest returns the candidate nearest to name, ignoring case, when it is
// near enough to be a slip of the keyboard (a few letters left out, added,
// swapped or changed, or a difference of case only), and false otherwise.
// A candidate equal to name is not returned: it would be no suggestion.
func Closest(name string, candidates []string) (string, bool) {
	best, bestDist := "", -1
	for _, c := range candidates {
		if c == name {
			continue
		}
		d := distance(strings.ToLower(name), strings.ToLower(c))
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist < 0 || bestDist > maxDistance(name) {
		return "", false
	}
	return best, true
}

// maxDistance is how far a name may be from what was meant: one edit for
// a short name, about one in three letters for a longer one.
func maxDistance(name string) int {
	return max(1, min(3, len([]rune(name))/3))
}

// distance is the optimal string alignment distance of a and b: the
// fewest insertions, deletions, substitutions and swaps of neighbouring
// letters that turn one into the other.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
