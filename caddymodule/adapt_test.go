package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// runAdaptGolden adapts every testdata file matching pattern, each a
// Caddyfile and, after a line of ten dashes, what it must adapt to: the
// JSON (compared by caddytest.CompareAdapt, as in Caddy's own adapt tests)
// or, when it is not JSON, a fragment of the adapter's error.
func runAdaptGolden(t *testing.T, pattern string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no testdata file matches %s", pattern)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, expected, ok := strings.Cut(string(data), "----------")
			if !ok {
				t.Fatalf("%s has no ---------- line between the Caddyfile and its expectation", file)
			}
			caddyfile = strings.TrimSpace(caddyfile) + "\n"
			expected = strings.TrimSpace(expected)
			if strings.HasPrefix(expected, "{") {
				if !caddytest.CompareAdapt(t, file, caddyfile, "caddyfile", expected) {
					t.Errorf("%s does not adapt to its JSON", file)
				}
				return
			}
			_, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
			if err == nil {
				t.Fatalf("%s adapted, want an error containing %q", file, expected)
			}
			if !strings.Contains(err.Error(), expected) {
				t.Fatalf("error %q does not contain %q", err, expected)
			}
			// Golden files with a secret use this one: an error must
			// name the option, never show the value.
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error shows the secret: %q", err)
			}
		})
	}
}

// Every directive form the README shows adapts to the JSON it documents,
// and every form it forbids fails at adapt with the block and one line.
func TestCaddyfileAdaptGolden(t *testing.T) {
	runAdaptGolden(t, "jwt_grant_*.caddyfiletest")
}
