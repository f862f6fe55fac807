package main

import (
	"runtime/debug"
	"testing"
)

func TestVersionComesFromTheBuildInfo(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "fbeba84ae2093d42a8dc7c34635960f01ffa9e25"
	cases := []struct {
		name     string
		version  string
		settings []debug.BuildSetting
		want     string
	}{
		{"go install …@v0.1.0 from the module proxy", "v0.1.0", nil, "v0.1.0"},
		{"a clean checkout at a tag", "v0.1.0", vcs(rev, "false"), "v0.1.0"},
		{"a checkout at a tag, with changes", "v0.1.0+dirty", vcs(rev, "true"), "devel+fbeba84ae209.modified"},
		{"a clean checkout past any tag", "v0.0.0-20261130011703-fbeba84ae209", vcs(rev, "false"), "devel+fbeba84ae209"},
		{"a checkout with changes", "v0.0.0-20261130011703-fbeba84ae209+dirty", vcs(rev, "true"), "devel+fbeba84ae209.modified"},
		{"a checkout after a tag", "v0.1.1-0.20261130011703-fbeba84ae209", vcs(rev, "false"), "devel+fbeba84ae209"},
		{"a build without VCS stamping that knows the checkout", "(devel)", vcs(rev, "false"), "devel+fbeba84ae209"},
		{"go install …@latest before any tag", "v0.0.0-20261130011703-fbeba84ae209", nil, "v0.0.0-20261130011703-fbeba84ae209"},
		{"a prerelease", "v0.2.0-rc.1", nil, "v0.2.0-rc.1"},
		{"no VCS information (a git worktree, -buildvcs=false)", "(devel)", nil, "devel"},
		{"nothing known", "", nil, "devel"},
	}
	for _, tc := range cases {
		bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/onesignal-cdc/onesignal-cdc", Version: tc.version}, Settings: tc.settings}
		if got := versionOf(bi); got != tc.want {
			t.Errorf("%s: version %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestAVersionSetWithLdflagsWins(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "v1.2.3"
	if got := buildVersion(); got != "v1.2.3" {
		t.Errorf("buildVersion() = %q with main.version set to v1.2.3", got)
	}
	version = ""
	if got := buildVersion(); got == "" || got == "dev" {
		t.Errorf("buildVersion() = %q without main.version, want one from the build info", got)
	}
}
