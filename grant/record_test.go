package grant

import (
	"encoding/json"
	"reflect"
	"testing"
)

// goldenClaims holds a number no float64 holds, which a record must keep.
var goldenClaims = map[string]json.RawMessage{
	"email": json.RawMessage(`"alice@example.com"`),
	"n":     json.RawMessage(`12345678901234567890`),
}

func goldenBase(exp int64) TokenRecord {
	return TokenRecord{
		V: 1, Sub: "alice", ClientID: "app", Scope: "read write", Aud: []string{"api", "app"},
		Iss: "https://as.example", AssertionIss: "https://idp.example", Iat: 1700000000, Exp: exp,
		Tenant: "acme.example", Claims: goldenClaims,
	}
}

func TestRecordJSONIsTheStoredFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  any
		// want is the JSON records had before TokenRecord was factored
		// out, byte for byte, unless legacy says otherwise.
		want string
		// legacy, when set, is the JSON written before, which must still
		// decode to the same record: only the members' order differs.
		legacy string
		decode func([]byte) (any, error)
	}{
		{
			name: "an access record keeps its bytes",
			rec:  &AccessRecord{TokenRecord: goldenBase(1700003600), JTI: "jti-1", Chain: "chain-1"},
			want: `{"v":1,"sub":"alice","client_id":"app","scope":"read write","aud":["api","app"],"iss":"https://as.example","assertion_iss":"https://idp.example","iat":1700000000,"exp":1700003600,"tenant":"acme.example","claims":{"email":"alice@example.com","n":12345678901234567890},"jti":"jti-1","chain":"chain-1"}`,
			decode: func(b []byte) (any, error) {
				r := new(AccessRecord)
				return r, json.Unmarshal(b, r)
			},
		},
		{
			name: "an empty access record keeps its bytes",
			rec:  &AccessRecord{},
			want: `{"v":0,"sub":"","client_id":"","scope":"","aud":null,"iss":"","assertion_iss":"","iat":0,"exp":0,"tenant":"","claims":null}`,
			decode: func(b []byte) (any, error) {
				r := new(AccessRecord)
				return r, json.Unmarshal(b, r)
			},
		},
		{
			name:   "a refresh record keeps its members, chain after the shared ones",
			rec:    &RefreshRecord{TokenRecord: goldenBase(1700086400), Chain: "chain-1", Rotated: true},
			want:   `{"v":1,"sub":"alice","client_id":"app","scope":"read write","aud":["api","app"],"iss":"https://as.example","assertion_iss":"https://idp.example","iat":1700000000,"exp":1700086400,"tenant":"acme.example","claims":{"email":"alice@example.com","n":12345678901234567890},"chain":"chain-1","rotated":true}`,
			legacy: `{"v":1,"chain":"chain-1","sub":"alice","client_id":"app","scope":"read write","aud":["api","app"],"iss":"https://as.example","assertion_iss":"https://idp.example","iat":1700000000,"exp":1700086400,"tenant":"acme.example","claims":{"email":"alice@example.com","n":12345678901234567890},"rotated":true}`,
			decode: func(b []byte) (any, error) {
				r := new(RefreshRecord)
				return r, json.Unmarshal(b, r)
			},
		},
		{
			name:   "an empty refresh record keeps its members",
			rec:    &RefreshRecord{},
			want:   `{"v":0,"sub":"","client_id":"","scope":"","aud":null,"iss":"","assertion_iss":"","iat":0,"exp":0,"tenant":"","claims":null,"chain":""}`,
			legacy: `{"v":0,"chain":"","sub":"","client_id":"","scope":"","aud":null,"iss":"","assertion_iss":"","iat":0,"exp":0,"tenant":"","claims":null}`,
			decode: func(b []byte) (any, error) {
				r := new(RefreshRecord)
				return r, json.Unmarshal(b, r)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("JSON =\n%s\nwant\n%s", got, tc.want)
			}
			for _, b := range []string{tc.want, tc.legacy} {
				if b == "" {
					continue
				}
				back, err := tc.decode([]byte(b))
				if err != nil {
					t.Fatalf("decoding %s: %v", b, err)
				}
				if !reflect.DeepEqual(back, tc.rec) {
					t.Fatalf("decoding %s = %+v; want %+v", b, back, tc.rec)
				}
			}
			// Both orders hold the same members with the same values.
			if tc.legacy != "" {
				var a, b map[string]json.RawMessage
				_ = json.Unmarshal(got, &a)
				_ = json.Unmarshal([]byte(tc.legacy), &b)
				if !reflect.DeepEqual(a, b) {
					t.Fatalf("members differ from the earlier format:\n%v\n%v", a, b)
				}
			}
		})
	}
}
