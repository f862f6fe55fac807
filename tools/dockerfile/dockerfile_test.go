// Package dockerfile checks the repository's Dockerfile without a Docker
// engine: BuildKit's own lint rules run in-process (what docker build
// --check runs), with a stub image resolver so no registry is contacted,
// and the image's shape is read from BuildKit's parse of the file.
package dockerfile

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/onesignal-cdc/onesignal-cdc/tools/internal/daemon"
)

// The image's contract with the chart, the Compose file and the docs.
const (
	binary     = "/onesignal-cdc"
	opsPort    = "9090"
	nonrootUID = "65532"
)

func readDockerfile(t *testing.T) []byte {
	t.Helper()
	dt, err := os.ReadFile(filepath.Join(daemon.Root(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return dt
}

// stubResolver answers every base image lookup with a minimal Linux image
// config instead of asking a registry, and remembers what was asked.
type stubResolver struct {
	mu   sync.Mutex
	refs []string
}

func (r *stubResolver) ResolveImageConfig(_ context.Context, ref string, opt sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	r.mu.Lock()
	r.refs = append(r.refs, ref)
	r.mu.Unlock()
	platform := ocispecs.Platform{OS: "linux", Architecture: "amd64"}
	if opt.ImageOpt != nil && opt.ImageOpt.Platform != nil {
		platform = *opt.ImageOpt.Platform
	}
	cfg, err := json.Marshal(ocispecs.Image{
		Platform: platform,
		Config: ocispecs.ImageConfig{
			Env:        []string{"PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			WorkingDir: "/",
		},
		RootFS: ocispecs.RootFS{Type: "layers"},
	})
	return ref, "", cfg, err
}

func TestDockerfileHasNoLintWarnings(t *testing.T) {
	dt := readDockerfile(t)
	resolver := &stubResolver{}
	sm := llb.NewSourceMap(nil, "Dockerfile", "Dockerfile", dt)
	sm.Definition = &llb.Definition{}
	results, err := dockerfile2llb.DockerfileLint(context.Background(), dt, dockerfile2llb.ConvertOpt{
		SourceMap:    sm,
		MetaResolver: resolver,
	})
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	if results.Error != nil {
		t.Errorf("BuildKit cannot build the Dockerfile: %s", results.Error.Message)
	}
	for _, w := range results.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		t.Errorf("Dockerfile:%d: %s: %s (%s)", line, w.RuleName, w.Detail, w.URL)
	}
	if len(resolver.refs) == 0 {
		t.Error("the linter resolved no base image: the stub resolver was not used, so the build stages were not checked")
	}
	if _, _, _, ok := parser.ParseDirective("check", dt); !ok {
		t.Error("the Dockerfile lacks the `# check=error=true` directive: a real build would only warn about lint findings")
	}
}

// image is the Dockerfile as BuildKit reads it.
type image struct {
	stages []instructions.Stage
	final  instructions.Stage
}

func parseDockerfile(t *testing.T) image {
	t.Helper()
	res, err := parser.Parse(bytes.NewReader(readDockerfile(t)))
	if err != nil {
		t.Fatalf("parse the Dockerfile: %v", err)
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("parse the Dockerfile's instructions: %v", err)
	}
	if len(stages) == 0 {
		t.Fatal("the Dockerfile has no stage")
	}
	return image{stages: stages, final: stages[len(stages)-1]}
}

func commands[T instructions.Command](s instructions.Stage) []T {
	var out []T
	for _, c := range s.Commands {
		if tc, ok := c.(T); ok {
			out = append(out, tc)
		}
	}
	return out
}

func TestImageIsBuiltInOneStageAndShippedInADistrolessOne(t *testing.T) {
	img := parseDockerfile(t)
	if len(img.stages) < 2 {
		t.Fatalf("%d stage(s), want a build stage and a final one", len(img.stages))
	}
	if base := img.final.BaseName; !strings.HasPrefix(base, "gcr.io/distroless/static") || !strings.HasSuffix(base, ":nonroot") {
		t.Errorf("the final image is based on %q, want gcr.io/distroless/static…:nonroot: no shell, no libc, a nonroot user", base)
	}
	for _, s := range img.stages[:len(img.stages)-1] {
		if !strings.HasPrefix(s.BaseName, "golang:") {
			t.Errorf("build stage %q is based on %q, want a golang image", s.Name, s.BaseName)
		}
	}
	copies := commands[*instructions.CopyCommand](img.final)
	if len(copies) != 1 || copies[0].From == "" || copies[0].DestPath != binary {
		t.Errorf("the final stage copies %+v, want only the binary from the build stage to %s", copies, binary)
	}
}

func TestBinaryIsStaticTrimmedAndVersioned(t *testing.T) {
	img := parseDockerfile(t)
	var build string
	for _, s := range img.stages[:len(img.stages)-1] {
		for _, run := range commands[*instructions.RunCommand](s) {
			if cmd := strings.Join(run.CmdLine, " "); strings.Contains(cmd, "go build") {
				build = cmd
			}
		}
	}
	if build == "" {
		t.Fatal("no RUN with go build in the build stages")
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version=$VERSION", "./cmd/onesignal-cdc", "-o /out" + binary} {
		if !strings.Contains(build, want) {
			t.Errorf("the build command lacks %q:\n%s", want, build)
		}
	}
}

func TestImageRunsAsNonRootThroughAnExecFormEntrypoint(t *testing.T) {
	final := parseDockerfile(t).final
	users := commands[*instructions.UserCommand](final)
	if len(users) == 0 {
		t.Error("the final stage sets no USER")
	} else if u := users[len(users)-1].User; u != nonrootUID+":"+nonrootUID {
		t.Errorf("USER %s, want %s:%s (numeric, so Kubernetes can verify runAsNonRoot)", u, nonrootUID, nonrootUID)
	}
	eps := commands[*instructions.EntrypointCommand](final)
	if len(eps) != 1 || eps[0].PrependShell || !slices.Equal(eps[0].CmdLine, []string{binary}) {
		t.Errorf("ENTRYPOINT %+v, want exactly one, in exec form: [%q] (a shell form needs a shell the image lacks, and would not pass signals)", eps, binary)
	}
	cmds := commands[*instructions.CmdCommand](final)
	if len(cmds) != 1 || cmds[0].PrependShell || !slices.Equal(cmds[0].CmdLine, []string{"run", "--config", "/etc/onesignal-cdc/config.yaml"}) {
		t.Errorf("CMD %+v, want exec form [run --config /etc/onesignal-cdc/config.yaml]", cmds)
	}
	exposes := commands[*instructions.ExposeCommand](final)
	if len(exposes) != 1 || !slices.Equal(exposes[0].Ports, []string{opsPort}) {
		t.Errorf("EXPOSE %+v, want the ops port %s", exposes, opsPort)
	}
}

// The build context is what .dockerignore leaves; the build must still find
// go.mod, go.sum and every source and embedded file of the daemon.
func TestDockerignoreKeepsEveryFileTheBuildNeeds(t *testing.T) {
	root := daemon.Root(t)
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	ignored := func(rel string) bool {
		m, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}{{end}}`,
		"./cmd/onesignal-cdc")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	needed := []string{"go.mod", "go.sum"}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		dir, err := filepath.Rel(root, fields[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range fields[1:] {
			needed = append(needed, filepath.Join(dir, file))
		}
	}
	if len(needed) < 10 {
		t.Fatalf("go list found only %v", needed)
	}
	for _, rel := range needed {
		if ignored(rel) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", rel)
		}
	}
	for _, rel := range []string{".git", ".env", "tools/go.mod", "deploy/helm", "onesignal-cdc"} {
		if !ignored(rel) {
			t.Errorf(".dockerignore lets %s into the build context", rel)
		}
	}
}
