package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestStoreCaddyfileAdapt runs the golden files of the store forms, read
// as Caddy's own caddyfile_adapt tests read theirs: a Caddyfile, a line of
// dashes, then either the JSON it adapts to or a part of the error that
// adapting it fails with (which names the offending line).
func TestStoreCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/store_*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, expected, ok := strings.Cut(string(data), "----------")
			if !ok {
				t.Fatal("no ---------- separator")
			}
			caddyfile, expected = strings.TrimSpace(caddyfile)+"\n", strings.TrimSpace(expected)
			if strings.HasPrefix(expected, "{") {
				if !caddytest.CompareAdapt(t, file, caddyfile, "caddyfile", expected) {
					t.Errorf("%s does not adapt to its JSON", file)
				}
				return
			}
			_, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
			switch {
			case err == nil:
				t.Fatalf("adapted; want an error containing %q", expected)
			case !strings.Contains(err.Error(), expected):
				t.Fatalf("error %q does not contain %q", err, expected)
			case strings.Contains(err.Error(), "hunter2"):
				t.Fatalf("error shows the password: %q", err)
			}
		})
	}
}
