package caddymodule

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// caddyfileUnmarshalers are the modules whose Caddyfile syntax is this
// plugin's own; each fuzz input is handed to every one of them.
var caddyfileUnmarshalers = map[string]func() caddyfile.Unmarshaler{
	"jwt_grant":      func() caddyfile.Unmarshaler { return new(Handler) },
	"jwt_grant_auth": func() caddyfile.Unmarshaler { return new(AuthHandler) },
	"store memory":   func() caddyfile.Unmarshaler { return new(MemoryStore) },
	"store redis":    func() caddyfile.Unmarshaler { return new(RedisStore) },
}

// FuzzCaddyfile hands arbitrary tokens to the UnmarshalCaddyfile of
// jwt_grant, jwt_grant_auth and both stores: none panics, and what one
// accepts marshals to JSON that reads back to the same JSON, so that
// whatever adapts is a config Caddy can load.
func FuzzCaddyfile(f *testing.F) {
	for _, block := range caddyfileSeedBlocks(f) {
		f.Add(block)
	}
	f.Add("jwt_grant {\n\tstore redis redis://:hunter2@localhost:1/0 {\n\t\tdb 1\n\t}\n}")
	f.Add("memory {\n\tmax_entries -1\n}")
	f.Add("redis {\n\tsentinel m a:1 b:2\n\tkey_prefix \"\"\n\tdial_timeout 1h\n}")
	f.Add("jwt_grant {\n\ttenant a {\n\t\ttenant b {\n\t\t}\n\t}\n\t}\n}")
	f.Add("jwt_grant_auth {\n\tscope \"a b\" `c`\n\trealm \"\\\"\"\n}")
	f.Add("jwt_grant {\n\tclient_auth {\n\tclient {\n}\n}\n\ttrusted_issuer {\n\t\tjwks_url\n\t}\n}")

	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return // the lexer's input, not this plugin's
		}
		for name, newModule := range caddyfileUnmarshalers {
			m := newModule()
			if m.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)) != nil {
				continue
			}
			first, err := json.Marshal(m)
			if err != nil {
				t.Fatalf("%s accepted %q but does not marshal: %v", name, input, err)
			}
			again := newModule()
			if err := json.Unmarshal(first, again); err != nil {
				t.Fatalf("%s: its JSON %s does not read back: %v", name, first, err)
			}
			second, err := json.Marshal(again)
			if err != nil || !bytes.Equal(first, second) {
				t.Fatalf("%s: JSON %s reads back as %s (%v)", name, first, second, err)
			}
		}
	})
}

// caddyfileSeedBlocks are the jwt_grant and jwt_grant_auth blocks of the
// adapt golden files, and their store blocks from the backend name on:
// every form the README documents.
func caddyfileSeedBlocks(f *testing.F) []string {
	files, err := filepath.Glob(filepath.Join("testdata", "*.caddyfiletest"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no adapt golden files: %v", err)
	}
	var blocks []string
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		src, _, _ := strings.Cut(string(data), "----------")
		// A directive block opens on a line of one tab and closes on the
		// first line that is one tab and a brace.
		for _, start := range strings.Split(src, "\n\tjwt_grant")[1:] {
			body, _, _ := strings.Cut(start, "\n\t}")
			blocks = append(blocks, "jwt_grant"+body+"\n}")
		}
		for _, start := range strings.Split(src, "store ")[1:] {
			body, _, found := strings.Cut(start, "}")
			if !found || !strings.Contains(body, "{") {
				body, _, _ = strings.Cut(start, "\n")
				blocks = append(blocks, body)
				continue
			}
			blocks = append(blocks, body+"}")
		}
	}
	return blocks
}
