package redisstore

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// fullAccessRecord has every member of an access record set, so that the
// test below notices a member added to grant.AccessRecord that
// compactAccess does not know (every record would then take the slow
// path, correct but no longer cheap).
func fullAccessRecord() *grant.AccessRecord {
	return &grant.AccessRecord{
		TokenRecord: grant.TokenRecord{
			V: grant.RecordVersion, Sub: "alice", ClientID: "client-1", Scope: "read write",
			Aud: []string{"api", "other"}, Iss: "https://as.example", AssertionIss: "https://idp.example",
			Iat: 1700000000, Exp: 1700003600, Tenant: "acme",
			Claims: map[string]json.RawMessage{"email": json.RawMessage(`"a@example.com"`), "groups": json.RawMessage(`["a","b"]`),
				"n": json.RawMessage(`-1.5e3`), "o": json.RawMessage(`{"k":[1,{"x":null}],"q":"\"}"}`), "t": json.RawMessage(`true`)},
			Cnf:      &grant.Confirmation{JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
			Resource: []string{"https://api.example/"},
			Profile:  "id-jag",
		},
		JTI:   "jti-1",
		Chain: "c0ffee",
	}
}

func TestCompactAccessReadsEveryMemberTheGatewayWrites(t *testing.T) {
	rec := fullAccessRecord()
	v := reflect.ValueOf(rec).Elem()
	for _, f := range reflect.VisibleFields(v.Type()) {
		if !f.Anonymous && v.FieldByIndex(f.Index).IsZero() {
			t.Fatalf("fullAccessRecord leaves %s unset", f.Name)
		}
	}
	for name, r := range map[string]*grant.AccessRecord{
		"every member":     rec,
		"a minimal record": {TokenRecord: grant.TokenRecord{V: 1, Aud: []string{}, Claims: map[string]json.RawMessage{}}},
		"non-ASCII strings": {TokenRecord: grant.TokenRecord{Sub: "zoë", Aud: []string{"ünïcode"},
			Claims: map[string]json.RawMessage{"名前": json.RawMessage(`"値"`)}}},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := compactAccess(string(b))
			if !ok {
				t.Fatalf("compactAccess left %s to json.Unmarshal", b)
			}
			if !reflect.DeepEqual(got, r) {
				t.Errorf("compactAccess(%s) = %+v, want %+v", b, got, r)
			}
		})
	}
}

// Texts the fast path must leave to json.Unmarshal, which then decides:
// some are errors, some decode differently from what a naive reading
// would give.
func TestCompactAccessLeavesTheRestToJSON(t *testing.T) {
	for _, s := range []string{
		``, `null`, ` {}`, `{} `, `{"sub":"a"}x`, `{"sub" :"a"}`, `{"Sub":"a"}`, `{"sub":"a","sub":"b"}`,
		`{"sub":"a\u0062"}`, `{"sub":"a\nb"}`, "{\"sub\":\"\xff\"}", `{"sub":1}`, `{"v":1.0}`, `{"v":01}`,
		`{"v":1e3}`, `{"iat":99999999999999999999}`, `{"aud":"a"}`, `{"aud":[1]}`, `{"aud":["a",]}`,
		`{"claims":{"a":}}`, `{"claims":{"a":1 }}`, `{"claims":{"a":[1,}}`, `{"claims":{"a\u0062":1}}`,
		`{"claims":{"a":"` + "\x01" + `"}}`, `{"cnf":{"JKT":"x"}}`, `{"cnf":{"jkt":"x","jkt":"y"}}`,
		`{"cnf":[]}`, `{"extra":1}`, `{"v":true}`, `{"sub":"a",}`, `{,"sub":"a"}`,
	} {
		if rec, ok := compactAccess(s); ok {
			t.Errorf("compactAccess(%q) = %+v; want it left to json.Unmarshal", s, rec)
		}
	}
}

// FuzzDecodeAccess checks that compactAccess reads nothing json.Unmarshal
// would refuse or read otherwise.
func FuzzDecodeAccess(f *testing.F) {
	for _, r := range []*grant.AccessRecord{fullAccessRecord(), {}, issuance("", 3600).Access} {
		b, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	for _, s := range []string{`{"v":null,"aud":null,"claims":null,"cnf":null}`, `{"cnf":{}}`, `{"cnf":{"jkt":null}}`,
		`{"claims":{"a":"\"","b":"\\","c":[[]],"a":{}}}`, `{"iat":-0}`, `{"exp":-9223372036854775808}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := compactAccess(s)
		if !ok {
			return
		}
		want := new(grant.AccessRecord)
		if err := json.Unmarshal([]byte(s), want); err != nil {
			t.Fatalf("compactAccess accepted %q, which json.Unmarshal refuses: %v", s, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("compactAccess(%q) = %#v, json.Unmarshal %#v", s, got, want)
		}
	})
}
