package main

import (
	"strings"
	"testing"
)

func TestAConnectorFlagNeedsOneOfItsPhases(t *testing.T) {
	for _, c := range []struct {
		given, phases []string
		refused       string // "" when taken
	}{
		{[]string{"cpuprofile"}, []string{"stream"}, ""},
		{[]string{"cpuprofile", "blockprofile"}, []string{"snapshot", "sink"}, ""},
		{[]string{"connector-env"}, []string{"memory"}, ""},
		{nil, []string{"sink"}, ""},
		{[]string{"cpuprofile"}, []string{"memory", "latency"}, "-cpuprofile"},
		{[]string{"diagnose"}, []string{"snapshot"}, "-diagnose"},
		{[]string{"connector-env"}, []string{"sinkmem"}, "-connector-env"},
	} {
		err := checkPhaseFlags(set(c.given), set(c.phases))
		switch {
		case c.refused == "" && err != nil:
			t.Errorf("%v with -phases %v: %v", c.given, c.phases, err)
		case c.refused != "" && (err == nil || !strings.Contains(err.Error(), c.refused+" applies")):
			t.Errorf("%v with -phases %v: err = %v, want one naming %s", c.given, c.phases, err, c.refused)
		}
	}
}

func set(names []string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}
