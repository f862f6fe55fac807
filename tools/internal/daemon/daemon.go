// Package daemon gives the deployment checks the daemon's own view: its
// binary, built from the repository, to validate configuration files, and
// the configuration keys it reads. It goes through the go command and the
// source rather than importing the daemon's packages, so that this module's
// go.mod does not have to follow every change of the daemon's.
package daemon

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Root is the repository's root directory, seen from a package of this module.
func Root(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "onesignal-cdc")); err != nil {
		t.Fatalf("the daemon's source is not at %s: %v", root, err)
	}
	return root
}

// Build builds the daemon into a temporary directory and returns its path.
// Test binaries of several packages build it at the same time under go
// test ./...; a lock makes them take turns, so the daemon's packages are
// compiled once and the others link from the build cache.
func Build(t testing.TB) string {
	t.Helper()
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "onesignal-cdc-tools-build.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing the file unlocks too

	bin := filepath.Join(t.TempDir(), "onesignal-cdc")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/onesignal-cdc")
	cmd.Dir = Root(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the daemon: %v\n%s", err, out)
	}
	return bin
}

// Validate runs onesignal-cdc validate on a configuration file with env
// added to the environment, and returns its output and whether it found
// the file valid.
func Validate(t testing.TB, bin, configPath string, env ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(bin, "validate", "--config", configPath)
	cmd.Env = append(cleanEnv(), env...)
	out, err := cmd.CombinedOutput()
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		t.Fatalf("run %s validate: %v", bin, err)
	}
	return string(out), err == nil
}

// cleanEnv is the environment without the daemon's own variables, so that
// the caller's shell cannot change what a check sees.
func cleanEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "ONESIGNAL_CDC_")
	})
}

// ConfigKeys lists the dotted YAML keys of the daemon's configuration,
// read from the source of its config and transform packages (config.Config
// and the structs it holds). Maps, lists and types from elsewhere (durations)
// are listed without what is inside them.
func ConfigKeys(t testing.TB) []string {
	t.Helper()
	structs := map[string]*ast.StructType{} // "package.Type"
	for _, pkg := range []string{"config", "transform"} {
		for name, st := range structsIn(t, filepath.Join(Root(t), pkg)) {
			structs[pkg+"."+name] = st
		}
	}
	root, ok := structs["config.Config"]
	if !ok {
		t.Fatal("no Config struct in the config package")
	}
	var keys []string
	var walk func(st *ast.StructType, pkg, prefix string)
	walk = func(st *ast.StructType, pkg, prefix string) {
		for _, field := range st.Fields.List {
			if field.Tag == nil {
				continue
			}
			tag, err := strconv.Unquote(field.Tag.Value)
			if err != nil {
				t.Fatal(err)
			}
			name, _, _ := strings.Cut(reflect.StructTag(tag).Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			keys = append(keys, prefix+name)
			typ := field.Type
			if star, ok := typ.(*ast.StarExpr); ok {
				typ = star.X
			}
			switch typ := typ.(type) {
			case *ast.Ident:
				if inner, ok := structs[pkg+"."+typ.Name]; ok {
					walk(inner, pkg, prefix+name+".")
				}
			case *ast.SelectorExpr:
				if x, ok := typ.X.(*ast.Ident); ok {
					if inner, ok := structs[x.Name+"."+typ.Sel.Name]; ok {
						walk(inner, x.Name, prefix+name+".")
					}
				}
			}
		}
	}
	walk(root, "config", "")
	slices.Sort(keys)
	return keys
}

// structsIn returns the struct types declared in the non-test files of dir.
func structsIn(t testing.TB, dir string) map[string]*ast.StructType {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	structs := map[string]*ast.StructType{}
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if ts, ok := n.(*ast.TypeSpec); ok {
				if st, ok := ts.Type.(*ast.StructType); ok {
					structs[ts.Name.Name] = st
				}
			}
			return true
		})
	}
	return structs
}
