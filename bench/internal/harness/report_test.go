package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const begin, end = "<!-- BEGIN x -->", "<!-- END x -->"

func TestWriteResultsReplacesOnlyWhatIsBetweenTheMarkers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	old := "# Benchmarks\n\nintro\n\n" + begin + "\n\nold table\n\n" + end + "\n\nanalysis\n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteResults(path, begin, end, "new table\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := "# Benchmarks\n\nintro\n\n" + begin + "\n\nnew table\n\n" + end + "\n\nanalysis\n"
	if string(got) != want {
		t.Errorf("file =\n%s\nwant\n%s", got, want)
	}
}

func TestWriteResultsRefusesAFileWithoutTheMarkers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := os.WriteFile(path, []byte("# Benchmarks\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteResults(path, begin, end, "")
	if err == nil || !strings.Contains(err.Error(), "add them") {
		t.Errorf("err = %v, want one saying to add the markers", err)
	}
}

func TestFiguresPrintTheWayTheTableShowsThem(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Thousands(1234567), "1,234,567"},
		{Thousands(-1000), "-1,000"},
		{Millis(2300 * time.Microsecond), "2.3 ms"},
		{Millis(740 * time.Millisecond), "740 ms"},
		{Millis(1234 * time.Millisecond), "1.23 s"},
		{RatioVerdict(0.9, 0.8), "met"},
		{RatioVerdict(0.4, 0.8), "**missed** by 0.40 (needs 2.00× its throughput)"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
