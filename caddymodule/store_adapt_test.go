package caddymodule

import "testing"

// TestStoreCaddyfileAdapt runs the golden files of the store forms: each
// adapts to its JSON, or fails with the block and one line (and, for the
// files that carry a password, never shows it: the expected error texts
// name the option, not its value).
func TestStoreCaddyfileAdapt(t *testing.T) {
	runAdaptGolden(t, "store_*.caddyfiletest")
}
