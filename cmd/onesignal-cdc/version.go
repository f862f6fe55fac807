package main

import (
	"regexp"
	"runtime/debug"
	"strings"
)

// version, when set at build time with -ldflags "-X main.version=…", is the
// version this build reports. Otherwise the build info decides.
var version string

// buildVersion is the version `onesignal-cdc version`, the status page, the
// build_info metric and every event's source.version report.
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return versionOf(bi)
}

// pseudoVersion matches the end of a Go pseudo-version, the version of a
// commit that carries no tag: v0.0.0-20261130011703-fbeba84ae209.
var pseudoVersion = regexp.MustCompile(`[-.][0-9]{14}-[0-9a-f]{12}(\+incompatible)?$`)

// versionOf reads the version from the build info:
//   - a release, as `go install …@v0.1.0` or a build of a clean tagged
//     checkout stamps it: "v0.1.0";
//   - a build of a checkout (go build, go install ./cmd/onesignal-cdc):
//     "devel+" and the commit's first 12 hex digits, with ".modified" when
//     the work tree had changes: "devel+fbeba84ae209.modified";
//   - a commit installed from the module proxy (go install …@latest before
//     a tag): its pseudo-version, which names the commit;
//   - anything else (no VCS information, go run): "devel".
func versionOf(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	release := v != "" && v != "(devel)" && !strings.HasSuffix(v, "+dirty")
	if release && !pseudoVersion.MatchString(v) {
		return v
	}
	var revision string
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if revision != "" {
		if len(revision) > 12 {
			revision = revision[:12]
		}
		v := "devel+" + revision
		if modified {
			v += ".modified"
		}
		return v
	}
	if release {
		return v // a pseudo-version
	}
	return "devel"
}
