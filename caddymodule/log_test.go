package caddymodule

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/url"
	"os"
	"strings"
	"testing"
)

// logTail reads the lines a log file gained since the last call.
type logTail struct {
	path string
	seen int
}

func (l *logTail) next(t testing.TB) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(l.path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(raw) == 0 {
		lines = nil
	}
	var out []map[string]any
	for _, line := range lines[min(l.seen, len(lines)):] {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("a log line is not JSON: %v: %.200s", err, line)
		}
		out = append(out, m)
	}
	l.seen = len(lines)
	return out
}

// grantLines are the log entries of grant decisions.
func grantLines(entries []map[string]any) []map[string]any {
	var out []map[string]any
	for _, e := range entries {
		if e["msg"] == "grant" {
			out = append(out, e)
		}
	}
	return out
}

// secrets collects what must never reach a log: each assertion, each of
// its segments, tokens, the client secret in every form it is sent in,
// and the private keys.
type secrets map[string]string // value -> what it is

func (s secrets) add(what string, values ...string) {
	for _, v := range values {
		if len(v) >= 12 {
			s[v] = what
		}
	}
}

func (s secrets) assertion(a string) {
	s.add("an assertion", a)
	for _, seg := range strings.Split(a, ".") {
		s.add("an assertion segment", seg)
	}
}

// TestLogNeverHoldsSecretsAndHasOneLinePerGrant drives the attack table
// and the happy paths (grant, refresh, introspection, revocation,
// jwt_grant_auth) through a Caddy whose logs, the access log included,
// are files, and reads them after every request: each token request made
// exactly one grant line with client_id, issuer, subject, tenant, outcome
// and reason, its outcome the answer's; and nothing secret appears
// anywhere in either log.
func TestLogNeverHoldsSecretsAndHasOneLinePerGrant(t *testing.T) {
	a := startArena(t)
	logs := &logTail{path: a.logPath}
	logs.next(t) // start-up lines
	s := secrets{}
	escaped := url.QueryEscape(a.f.secret)
	s.add("the client secret", a.f.secret, escaped, base64.StdEncoding.EncodeToString([]byte("app:"+escaped)))
	for name, key := range map[string]any{"the issuer key": fixtureKey(), "a stranger's key": strangerKey(), "the ECDSA issuer key": ecIssuerKey()} {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		block := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		s.add(name, block, base64.StdEncoding.EncodeToString(der))
		for _, line := range strings.Split(block, "\n")[1:] {
			if !strings.HasPrefix(line, "-----") {
				s.add(name+" (a PEM line)", line)
			}
		}
	}

	// wantGrantLines checks the grant lines since the last call: one per
	// decision, with these outcomes in order.
	wantGrantLines := func(t *testing.T, outcomes ...string) {
		t.Helper()
		lines := grantLines(logs.next(t))
		if len(lines) != len(outcomes) {
			t.Fatalf("%d grant lines; want exactly %d: %v", len(lines), len(outcomes), lines)
		}
		for i, line := range lines {
			for _, field := range []string{"client_id", "issuer", "subject", "tenant", "outcome", "reason"} {
				if _, ok := line[field]; !ok {
					t.Errorf("grant line without %s: %v", field, line)
				}
			}
			if line["outcome"] != outcomes[i] || line["reason"] == "" {
				t.Errorf("grant line %v; want outcome %s with a reason", line, outcomes[i])
			}
		}
	}

	for _, row := range attacks(t) {
		t.Run(row.name, func(t *testing.T) {
			r, sent := a.send(t, row)
			if row.assertion {
				s.assertion(sent)
			} else {
				// Assertions, under whatever spelling of the name.
				for _, v := range strings.Split(sent, "&") {
					name, val, _ := strings.Cut(v, "=")
					if n, err := url.QueryUnescape(name); err == nil && n == "assertion" {
						s.assertion(strings.TrimSuffix(val, "%zz"))
					}
				}
			}
			if r.status != row.status {
				t.Fatalf("got %s; want %d", r, row.status)
			}
			if row.setup {
				// The exchange that makes the row a replay is a
				// decision too, and comes first.
				wantGrantLines(t, "issued", row.code)
				return
			}
			wantGrantLines(t, row.code)
		})
	}

	t.Run("happy paths", func(t *testing.T) {
		assertion := a.valid(t, "email", `"alice@example.com"`)
		s.assertion(assertion)
		r := postForm(t, a.tokenURL, jwtBearerForm(assertion), "app", a.f.secret)
		if r.status != 200 {
			t.Fatalf("grant: %s", r)
		}
		wantGrantLines(t, "issued")
		access, refresh := r.str("access_token"), r.str("refresh_token")
		s.add("an access token", access)
		s.add("a refresh token", refresh)
		if g := get(t, a.api+"/", access); g.status != 200 {
			t.Fatalf("jwt_grant_auth: %s", g)
		}
		if g := get(t, a.api+"/", "forged-"+access); g.status != 401 {
			t.Fatalf("jwt_grant_auth with a forged token: %s", g)
		}
		r = postForm(t, a.tokenURL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, "app", a.f.secret)
		if r.status != 200 {
			t.Fatalf("refresh: %s", r)
		}
		wantGrantLines(t, "issued")
		s.add("an access token", r.str("access_token"))
		s.add("a refresh token", r.str("refresh_token"))
		// Reuse of the rotated refresh token: a decision too.
		if r := postForm(t, a.tokenURL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, "app", a.f.secret); r.status != 400 {
			t.Fatalf("refresh token reuse: %s", r)
		}
		wantGrantLines(t, "invalid_grant")
		if r := postForm(t, a.introspectURL, url.Values{"token": {access}}, "app", a.f.secret); r.status != 200 {
			t.Fatalf("introspection: %s", r)
		}
		if r := postForm(t, a.revokeURL, url.Values{"token": {access}}, "app", a.f.secret); r.status != 200 {
			t.Fatalf("revocation: %s", r)
		}
		if lines := grantLines(logs.next(t)); len(lines) != 0 {
			t.Fatalf("introspection and revocation wrote grant lines: %v", lines)
		}
	})

	for _, path := range []string{a.logPath, a.accessPath} {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) == 0 {
			t.Fatalf("%s is empty: the test would prove nothing", path)
		}
		for v, what := range s {
			if strings.Contains(string(raw), v) {
				t.Errorf("%s appears in the log (%s): %.40s…", what, path[strings.LastIndex(path, "/")+1:], v)
			}
		}
	}
	t.Logf("checked %d secret values against %s and %s", len(s), a.logPath, a.accessPath)
}
